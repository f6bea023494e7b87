"""Suite-wide guard rails: nothing here may reach real AWS.

Every test runs with fake credentials and without any endpoint, profile or ambient credential
source taken from the developer's shell, so a test that forgets to start moto fails instead of
touching an account. Area-specific fixtures live in the conftest.py of each sub-folder
(tests/onboarding, tests/relay, ...).
"""

from pathlib import Path

import pytest

# The same list the demo's embedded AWS scrubs (profiles, endpoints, container and web-identity
# credentials, MOTO_ACCOUNT_ID — which overrides assumed-role credentials in moto).
from sandbox.embedded import SCRUBBED_VARIABLES


def _apply_fake_aws_environment(patch: pytest.MonkeyPatch, config_dir: Path) -> None:
    for name in SCRUBBED_VARIABLES:
        patch.delenv(name, raising=False)
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    patch.setenv("AWS_CONFIG_FILE", str(config_dir / "no-aws-config"))
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(config_dir / "no-aws-credentials"))
    patch.setenv("POWERTOOLS_METRICS_NAMESPACE", "watershed-test")
    patch.setenv("POWERTOOLS_SERVICE_NAME", "watershed-test")
    patch.setenv("POWERTOOLS_TRACE_DISABLED", "true")


@pytest.fixture(scope="session")
def fake_aws_environment():
    """For fixtures wider than one test: `fake_aws_environment(monkeypatch, directory)`."""
    return _apply_fake_aws_environment


@pytest.fixture(autouse=True)
def _fake_aws_environment(monkeypatch, tmp_path):
    _apply_fake_aws_environment(monkeypatch, tmp_path)


@pytest.fixture(autouse=True)
def _no_heap_freeze(monkeypatch):
    """Onboarders freeze the process's heap after their first account (onboarding/heap.py). A
    test process builds hundreds of them: each freeze would keep that test's moto state for
    good. tests/onboarding/test_heap.py checks the freeze itself."""
    monkeypatch.setattr("onboarding.heap._collect_and_freeze", lambda: None)
