"""Suite-wide guard rails: nothing here may reach real AWS.

Every test runs with fake credentials and without any endpoint or profile taken from the
developer's shell, so a test that forgets to start moto fails instead of touching an account.
Area-specific fixtures live in the conftest.py of each sub-folder
(tests/onboarding, tests/relay, ...).
"""

import pytest

_SCRUBBED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "MOTO_ACCOUNT_ID",  # overrides assumed-role credentials in moto: never set it
)


@pytest.fixture(autouse=True)
def _fake_aws_environment(monkeypatch, tmp_path):
    for name in _SCRUBBED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "watershed-test")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "watershed-test")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
