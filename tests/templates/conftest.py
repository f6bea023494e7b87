"""Fixtures for the template tests (the model itself is in cfnmodel.py, next to this file)."""

import sys
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib: make the helper module next to this file importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cfnmodel import (
    HOME_REGION,
    MANAGEMENT_TEMPLATE,
    RELAY_REGION,
    SAM_PARAMETERS,
    SAM_TEMPLATE,
    SECURITY_ACCOUNT,
    Deployment,
    load_template,
    management_deployments,
    policy_documents,
    sam_deployments,
)

_SAM = load_template(SAM_TEMPLATE)
_MANAGEMENT = load_template(MANAGEMENT_TEMPLATE)


def pytest_generate_tests(metafunc):
    """Parametrize over every deployment variant, and over every policy document they create."""
    sam = sam_deployments(_SAM)
    management = management_deployments(_MANAGEMENT)
    if "sam_deployment" in metafunc.fixturenames:
        metafunc.parametrize("sam_deployment", list(sam.values()), ids=list(sam))
    if "management_deployment" in metafunc.fixturenames:
        metafunc.parametrize(
            "management_deployment", list(management.values()), ids=list(management)
        )
    kinds = {
        "policy_document": None,
        "identity_policy": "identity",
        "resource_policy": "resource",
        "trust_policy": "trust",
    }
    for fixture, wanted in kinds.items():
        if fixture not in metafunc.fixturenames:
            continue
        cases, ids = [], []
        for template_name, variants in (("template", sam), ("management", management)):
            seen: set[str] = set()
            for variant, deployment in variants.items():
                for logical_id, kind, document in policy_documents(deployment):
                    key = f"{logical_id}-{kind}-{document}"
                    if key in seen or wanted not in (None, kind):
                        continue  # the same document in another variant: lint it once
                    seen.add(key)
                    cases.append((logical_id, kind, document))
                    ids.append(f"{template_name}:{variant}:{logical_id}:{kind}")
        metafunc.parametrize(fixture, cases, ids=ids)


@pytest.fixture(scope="session")
def sam_template():
    return _SAM


@pytest.fixture(scope="session")
def management_template():
    return _MANAGEMENT


@pytest.fixture(scope="session")
def home() -> Deployment:
    return Deployment(_SAM, HOME_REGION, SECURITY_ACCOUNT, SAM_PARAMETERS)


@pytest.fixture(scope="session")
def relay_region() -> Deployment:
    return Deployment(_SAM, RELAY_REGION, SECURITY_ACCOUNT, SAM_PARAMETERS)
