"""Onboarding one account against moto, asserted by reading the accounts back."""

import json

import botocore.session

from onboarding.events import OnboardingRequest
from onboarding.resources.iam import POLICY_NAME

# Every plan of the installed SDK's GuardDuty model, read here independently of the code; at
# creation each is sent DISABLED but EKS_RUNTIME_MONITORING (superseded by RUNTIME_MONITORING).
MODEL_PLANS = (
    botocore.session.get_session().get_service_model("guardduty").shape_for("DetectorFeature").enum
)
CREATED_PLANS = {name: "DISABLED" for name in MODEL_PLANS if name != "EKS_RUNTIME_MONITORING"}


def _assert_member_configured(reader, settings, account_id, region):
    detector = reader.detector(account_id, region)
    assert detector is not None, f"no detector in {region}"
    assert detector["Status"] == "ENABLED"
    assert detector["FindingPublishingFrequency"] == "FIFTEEN_MINUTES"
    assert {f["Name"]: f["Status"] for f in detector["Features"]} == CREATED_PLANS
    rule = reader.rule(account_id, region)
    assert rule["State"] == "ENABLED"
    assert json.loads(rule["EventPattern"]) == settings.forward_event_pattern
    [target] = reader.targets(account_id, region)
    assert target["Id"] == "security-bus"
    assert (
        target["Arn"] == f"arn:aws:events:{region}:{settings.security_account_id}:event-bus/default"
    )
    assert target["RoleArn"] == f"arn:aws:iam::{account_id}:role/watershed-forwarder"
    # EventBridge's longest retries, then the Security account's queue in the same region: a
    # refusal for a missing permission or bus (not retried) is kept instead of dropped
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
    assert target["DeadLetterConfig"] == {
        "Arn": f"arn:aws:sqs:{region}:{settings.security_account_id}:watershed-forward-dlq"
    }


def _assert_untouched(reader, account_id, regions, declared_role=None):
    assert reader.role(account_id) == declared_role  # the management account's: management.yaml
    for region in regions:
        assert reader.detector(account_id, region) is None, region
        assert reader.rule(account_id, region) is None, region


def test_every_hub_region_of_the_member_is_configured(org, settings, onboarder, reader):
    report = onboarder.onboard(OnboardingRequest(org.member))

    assert report.status == "ok"
    assert set(report.regions) == set(settings.hub_regions)
    for region in settings.hub_regions:
        assert report.regions[region].status == "ok"
        _assert_member_configured(reader, settings, org.member, region)

    role = reader.role(org.member)
    [statement] = role["trust"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": org.member},
        "ArnLike": {"aws:SourceArn": f"arn:aws:events:*:{org.member}:rule/watershed-forward"},
    }
    [allow] = role["policies"][POLICY_NAME]["Statement"]
    assert allow["Action"] == "events:PutEvents"
    assert sorted(allow["Resource"]) == sorted(
        f"arn:aws:events:{r}:{org.security}:event-bus/default" for r in settings.hub_regions
    )


def test_nothing_outside_the_hub_regions(org, settings, onboarder, reader):
    onboarder.onboard(OnboardingRequest(org.member))

    outside = [r for r in reader.enabled_regions(org.member) if r not in settings.hub_regions]
    assert len(outside) > 10
    for region in outside:
        assert reader.detector(org.member, region) is None, region
        assert reader.rule(org.member, region) is None, region


def test_nothing_of_the_members_setup_lands_in_management_or_security(
    org, settings, onboarder, reader
):
    declared = reader.role(org.management)
    onboarder.onboard(OnboardingRequest(org.member))

    _assert_untouched(reader, org.management, settings.hub_regions, declared)
    _assert_untouched(reader, org.security, settings.hub_regions)
    _assert_untouched(reader, org.other_member, settings.hub_regions)


def test_a_second_run_makes_no_write_call(org, onboarder, recorder):
    onboarder.onboard(OnboardingRequest(org.member))
    assert len(recorder.writes) == 2 + 3 * 3  # role + policy, then detector, rule, target x 3
    recorder.clear()

    again = onboarder.onboard(OnboardingRequest(org.member))

    assert recorder.writes == []
    assert recorder.calls, "the second run must still read"
    assert again.status == "ok"
    assert again.all_changes == []


def test_plan_and_dry_run_write_nothing_and_report_what_would_change(
    org, settings, onboarder, recorder, reader
):
    planned = onboarder.plan(OnboardingRequest(org.member))
    dry = onboarder.onboard(OnboardingRequest(org.member, dry_run=True))

    assert recorder.writes == []
    _assert_untouched(reader, org.member, settings.hub_regions)
    for report in (planned, dry):
        assert str(report.changes[0]) == "create forwarder-role: watershed-forwarder"
        for region in settings.hub_regions:
            kinds = [(c.resource, c.action) for c in report.regions[region].changes]
            assert kinds == [("detector", "create"), ("rule", "create"), ("target", "create")]


def test_requested_regions_limit_the_run(org, settings, onboarder, reader):
    report = onboarder.onboard(OnboardingRequest(org.member, regions=("eu-west-1",)))

    assert list(report.regions) == ["eu-west-1"]
    _assert_member_configured(reader, settings, org.member, "eu-west-1")
    assert reader.detector(org.member, "us-east-1") is None


def test_the_security_account_gets_guardduty_only(org, settings, onboarder, reader):
    report = onboarder.onboard(OnboardingRequest(org.security))

    assert report.status == "ok"
    assert reader.role(org.security) is None
    for region in settings.hub_regions:
        assert reader.detector(org.security, region)["Status"] == "ENABLED"
        assert reader.rule(org.security, region) is None


def test_the_management_account_is_onboarded_with_its_own_credentials(
    org, settings, onboarder, reader, recorder
):
    # No launcher: own credentials are the management account's (e.g. the CLI run there by an
    # administrator). moto does not enforce IAM; what the deployed onboarding role may do is
    # checked in test_permissions.py.
    report = onboarder.onboard(OnboardingRequest(org.management))

    assert report.status == "ok"
    assert [op for op, _, _ in recorder.calls if op == "AssumeRole"] == []
    for region in settings.hub_regions:
        _assert_member_configured(reader, settings, org.management, region)


def test_an_account_outside_the_organization_is_refused_and_nothing_written(
    org, onboarder, recorder
):
    report = onboarder.onboard(OnboardingRequest("999988887777"))

    assert report.status == "refused"
    assert "not a member of this organization" in report.reason
    assert recorder.writes == []
    assert report.as_dict() == {
        "account_id": "999988887777",
        "status": "refused",
        "reason": "not a member of this organization",
        "regions": {},
    }


def test_an_account_that_left_the_organization_is_refused(org, onboarder, recorder, reader):
    reader.client(org.management, "organizations").remove_account_from_organization(
        AccountId=org.other_member
    )

    report = onboarder.onboard(OnboardingRequest(org.other_member))

    assert report.status == "refused"
    assert recorder.writes == []


def test_the_report_json_has_the_documented_shape(org, onboarder):
    as_json = json.loads(json.dumps(onboarder.onboard(OnboardingRequest(org.member)).as_dict()))

    assert set(as_json) == {"account_id", "status", "changes", "regions"}
    for region in as_json["regions"].values():
        assert region["status"] == "ok"
        assert all(isinstance(change, str) for change in region["changes"])
