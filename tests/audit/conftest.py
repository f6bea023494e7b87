"""Fixtures for the audit tests (the organization builders and hooks are in auditzoo.py)."""

import sys
from pathlib import Path

import pytest
from moto import mock_aws

# pytest runs with --import-mode=importlib: make the helper module next to this file importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from auditzoo import Zoo, build_zoo


@pytest.fixture(scope="module")
def module_aws(tmp_path_factory, fake_aws_environment):
    """moto for a whole module (the zoo is built once and only read by the module's tests).
    Sets the same fake environment as the suite's autouse fixture, which is per test."""
    with pytest.MonkeyPatch.context() as patch:
        fake_aws_environment(patch, tmp_path_factory.mktemp("aws"))
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
