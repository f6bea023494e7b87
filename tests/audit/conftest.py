"""Fixtures for the audit tests (the organization builders and hooks are in auditzoo.py)."""

import sys
from pathlib import Path

import pytest
from moto import mock_aws

# pytest runs with --import-mode=importlib: make the helper module next to this file importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from auditzoo import Zoo, build_zoo

_SCRUBBED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")


@pytest.fixture(scope="module")
def module_aws(tmp_path_factory):
    """moto for a whole module (the zoo is built once and only read by the module's tests).
    Sets the same fake environment as the suite's autouse fixture, which is per test."""
    with pytest.MonkeyPatch.context() as patch:
        for name in (*_SCRUBBED, "MOTO_ACCOUNT_ID"):
            patch.delenv(name, raising=False)
        config = tmp_path_factory.mktemp("aws")
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_CONFIG_FILE", str(config / "config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(config / "credentials"))
        patch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        with mock_aws():
            yield


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    with mock_aws():
        yield


@pytest.fixture(scope="module")
def zoo(module_aws) -> Zoo:
    return build_zoo()
