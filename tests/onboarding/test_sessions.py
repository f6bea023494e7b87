"""One way into an account: own credentials → LAUNCHER_ROLE_ARN → the member's admin role."""

import json
from dataclasses import replace

import boto3
import pytest

from onboarding.events import OnboardingRequest
from onboarding.service import Onboarder
from onboarding.sessions import SessionFactory


class SpyingFactory(SessionFactory):
    """Records which credentials each AssumeRole was made with (public boto3 API only)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.assumed: list[tuple[str, str, str]] = []  # (caller access key, role arn, session)

    def _assume(self, parent, role_arn, session_name):
        caller = parent.session.get_credentials().access_key
        self.assumed.append((caller, role_arn, session_name))
        return super()._assume(parent, role_arn, session_name)


@pytest.fixture
def launcher_settings(org, settings, reader):
    iam = reader.client(org.management, "iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{org.security}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(
        RoleName="watershed-launcher", AssumeRolePolicyDocument=json.dumps(trust)
    )
    return replace(settings, launcher_role_arn=role["Role"]["Arn"])


def test_members_are_reached_through_the_launcher(org, launcher_settings, reader):
    factory = SpyingFactory(launcher_settings)

    report = Onboarder(launcher_settings, factory).onboard(OnboardingRequest(org.member))

    assert report.status == "ok"
    (own_key, launcher_arn, launcher_name), (via_key, member_arn, member_name) = factory.assumed
    assert own_key == boto3.Session().get_credentials().access_key  # the function's own
    assert launcher_arn == launcher_settings.launcher_role_arn
    assert launcher_name == f"watershed-launcher-{org.management}"
    assert via_key == factory.management().session.get_credentials().access_key != own_key
    assert member_arn == f"arn:aws:iam::{org.member}:role/OrganizationAccountAccessRole"
    assert member_name == f"watershed-{org.member}"
    assert reader.detector(org.member, "eu-west-1")["Status"] == "ENABLED"
    assert reader.rule(org.management, "eu-west-1") is None


def test_the_launcher_session_is_reused_across_accounts(org, launcher_settings):
    factory = SpyingFactory(launcher_settings)
    onboarder = Onboarder(launcher_settings, factory)

    onboarder.handle(
        [
            OnboardingRequest(org.member, dry_run=True),
            OnboardingRequest(org.other_member, dry_run=True),
        ]
    )

    launcher_calls = [a for a in factory.assumed if a[1] == launcher_settings.launcher_role_arn]
    assert len(launcher_calls) == 1


def test_the_management_account_is_reached_through_the_launcher_not_itself(
    org, launcher_settings, reader
):
    # moto does not enforce IAM: this shows which session is used, not that the launcher may do
    # it - test_permissions.py checks every call against the launcher's resolved policy.
    factory = SpyingFactory(launcher_settings)

    report = Onboarder(launcher_settings, factory).onboard(OnboardingRequest(org.management))

    assert report.status == "ok"
    assert [arn for _, arn, _ in factory.assumed] == [launcher_settings.launcher_role_arn]
    assert reader.rule(org.management, "us-east-1")["Name"] == "watershed-forward"


def test_clients_name_their_region_and_are_cached(org, settings):
    session = SessionFactory(settings).for_account(org.member)

    client = session.client("guardduty", "eu-central-1")

    assert client.meta.region_name == "eu-central-1"
    assert session.client("guardduty", "eu-central-1") is client
    assert session.via == "OrganizationAccountAccessRole"
    identity = session.client("sts", "eu-central-1").get_caller_identity()
    assert identity["Account"] == org.member
    assert identity["Arn"].endswith(f"/watershed-{org.member}")
