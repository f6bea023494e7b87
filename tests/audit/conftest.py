"""Fixtures for the audit tests (the organization builders and hooks are in auditzoo.py)."""

import functools
import sys
import threading
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


@pytest.fixture(autouse=True, scope="session")
def moto_s3_objects_one_at_a_time():
    """The fanned-out audit writes S3 objects from several threads at once (a batch's accounts
    are audited side by side; two of them may roll up the same group). Real S3 takes concurrent
    writes to one key (the last writer wins); moto's S3 does not: an overwrite closes the
    previous object's buffer while the other thread may still be reading its ETag ("I/O
    operation on closed file"). Its object requests are serialized here; nothing else is."""
    from moto.s3.responses import S3Response

    lock = threading.Lock()
    original = S3Response.key_response

    @functools.wraps(original)
    def one_at_a_time(self, *args, **kwargs):
        with lock:
            return original(self, *args, **kwargs)

    S3Response.key_response = one_at_a_time
    yield
    S3Response.key_response = original
