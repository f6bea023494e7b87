"""What the bench scripts share: a call meter and a moto organization with member accounts.

The scripts run as `python bench/<name>.py`, so this folder is on sys.path and they
`import _common` (no package, nothing installed). Call inside `mock_aws()`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import boto3

READS = ("Get", "List", "Describe")


class Meter:
    """before-call hook: counts calls per (service, operation) and sleeps `latency` seconds
    (a network round trip) before each."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()

    def __call__(self, model: Any, **_: Any) -> None:
        with self.lock:
            self.calls[(model.service_model.endpoint_prefix, model.name)] += 1
        if self.latency:
            time.sleep(self.latency)

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self.lock:
            return Counter(self.calls)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()

    def operations(self) -> Counter[str]:
        """Calls per operation name, whatever the service."""
        counts: Counter[str] = Counter()
        for (_, operation), n in self.snapshot().items():
            counts[operation] += n
        return counts

    @property
    def total(self) -> int:
        return sum(self.snapshot().values())

    @property
    def writes(self) -> int:
        """Calls that are not reads (Get*, List*, Describe*) and not AssumeRole."""
        return sum(
            n
            for op, n in self.operations().items()
            if not op.startswith(READS) and op != "AssumeRole"
        )


def organization() -> tuple[Any, str]:
    """A new organization (all features): its Organizations client and the management account."""
    orgs = boto3.client("organizations", region_name="us-east-1")
    orgs.create_organization(FeatureSet="ALL")
    return orgs, orgs.describe_organization()["Organization"]["MasterAccountId"]


def create_account(orgs: Any, n: int) -> str:
    """Member account number `n` of the organization (`bench-00042`); returns its id."""
    status = orgs.create_account(Email=f"bench{n}@example.com", AccountName=f"bench-{n:05d}")
    return str(status["CreateAccountStatus"]["AccountId"])


def create_accounts(orgs: Any, count: int) -> list[str]:
    return [create_account(orgs, n) for n in range(count)]


def declare_management_forwarder(settings: Any) -> None:
    """The management account's forwarder role as management.yaml declares it (onboarding only
    verifies it there): moto's default account is the management account."""
    from onboarding.resources.iam import POLICY_NAME, management_permissions_policy, trust_policy
    from onboarding.settings import canonical_json

    iam = boto3.client("iam", region_name="us-east-1")
    name = settings.forwarder_role_name
    trust = trust_policy(settings, settings.management_account_id)
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=canonical_json(trust))
    policy = canonical_json(management_permissions_policy(settings))
    iam.put_role_policy(RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=policy)
