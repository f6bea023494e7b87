"""Drift repair: whatever changed in the member is put back, and only that is written."""

import json
from dataclasses import replace

import pytest

from onboarding.events import OnboardingRequest
from onboarding.resources.iam import POLICY_NAME


@pytest.fixture
def onboarded(org, onboarder, recorder):
    onboarder.onboard(OnboardingRequest(org.member))
    recorder.clear()
    return org.member


def test_suspended_detector_is_re_enabled(onboarded, onboarder, reader, recorder):
    gd = reader.client(onboarded, "guardduty", "eu-west-1")
    gd.update_detector(
        DetectorId=reader.detector(onboarded, "eu-west-1")["DetectorId"], Enable=False
    )

    report = onboarder.onboard(OnboardingRequest(onboarded))

    assert reader.detector(onboarded, "eu-west-1")["Status"] == "ENABLED"
    assert [str(c) for c in report.regions["eu-west-1"].changes] == [
        "update detector: enable (was DISABLED)"
    ]
    assert recorder.writes == [("UpdateDetector", "eu-west-1")]


def test_configured_frequency_and_named_plan_are_put_back(
    onboarded, settings, make_onboarder, reader, recorder
):
    # Given a member whose frequency and EBS malware plan drifted from what is configured
    configured = replace(
        settings,
        finding_publishing_frequency="FIFTEEN_MINUTES",
        guardduty_features=(("EBS_MALWARE_PROTECTION", "DISABLED"),),
    )
    gd = reader.client(onboarded, "guardduty", "us-east-1")
    detector_id = reader.detector(onboarded, "us-east-1")["DetectorId"]
    gd.update_detector(
        DetectorId=detector_id,
        FindingPublishingFrequency="SIX_HOURS",
        Features=[
            {"Name": "EBS_MALWARE_PROTECTION", "Status": "ENABLED"},
            {"Name": "S3_DATA_EVENTS", "Status": "ENABLED"},
        ],
    )

    # When it is reconciled with those settings
    make_onboarder(configured).onboard(OnboardingRequest(onboarded))

    # Then what is configured is put back, in one call naming only the plan that differs
    detector = reader.detector(onboarded, "us-east-1")
    assert detector["FindingPublishingFrequency"] == "FIFTEEN_MINUTES"
    features = {f["Name"]: f["Status"] for f in detector["Features"]}
    assert features["EBS_MALWARE_PROTECTION"] == "DISABLED"
    assert features["S3_DATA_EVENTS"] == "ENABLED"  # not named: the owner's
    assert recorder.writes == [("UpdateDetector", "us-east-1")]
    [(_, _, params)] = [c for c in recorder.calls if c[0] == "UpdateDetector"]
    assert params["Features"] == [{"Name": "EBS_MALWARE_PROTECTION", "Status": "DISABLED"}]


def test_changed_pattern_is_restored(onboarded, onboarder, reader, recorder, settings):
    events = reader.client(onboarded, "events", "eu-central-1")
    events.put_rule(
        Name="watershed-forward", EventPattern='{"source": ["aws.ec2"]}', State="ENABLED"
    )

    report = onboarder.onboard(OnboardingRequest(onboarded))

    rule = reader.rule(onboarded, "eu-central-1")
    assert json.loads(rule["EventPattern"]) == settings.forward_event_pattern
    assert report.regions["eu-central-1"].changes[0].resource == "rule"
    assert recorder.writes == [("PutRule", "eu-central-1")]
    assert len(reader.targets(onboarded, "eu-central-1")) == 1  # target survived the update


def test_disabled_rule_is_enabled(onboarded, onboarder, reader, recorder):
    reader.client(onboarded, "events", "us-east-1").disable_rule(Name="watershed-forward")

    onboarder.onboard(OnboardingRequest(onboarded))

    assert reader.rule(onboarded, "us-east-1")["State"] == "ENABLED"
    assert recorder.writes == [("PutRule", "us-east-1")]


def test_removed_target_is_put_back(onboarded, onboarder, reader, recorder, settings):
    events = reader.client(onboarded, "events", "eu-west-1")
    events.remove_targets(Rule="watershed-forward", Ids=["security-bus"])
    assert reader.targets(onboarded, "eu-west-1") == []

    onboarder.onboard(OnboardingRequest(onboarded))

    [target] = reader.targets(onboarded, "eu-west-1")
    assert target["Arn"] == settings.security_bus_arn("eu-west-1")
    assert recorder.writes == [("PutTargets", "eu-west-1")]


def test_a_target_without_dead_letter_queue_gets_one_and_then_nothing_is_written(
    onboarded, onboarder, reader, recorder, settings
):
    # Given the target as watershed wrote it before it had a retry policy and dead-letter queue
    events = reader.client(onboarded, "events", "eu-west-1")
    events.put_targets(
        Rule="watershed-forward",
        Targets=[
            {
                "Id": "security-bus",
                "Arn": settings.security_bus_arn("eu-west-1"),
                "RoleArn": f"arn:aws:iam::{onboarded}:role/watershed-forwarder",
            }
        ],
    )

    report = onboarder.onboard(OnboardingRequest(onboarded))

    # Then that one target is rewritten with both, and the report says why
    [target] = reader.targets(onboarded, "eu-west-1")
    assert target["DeadLetterConfig"] == {"Arn": settings.member_dead_letter_queue_arn("eu-west-1")}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
    assert recorder.writes == [("PutTargets", "eu-west-1")]
    details = [c.detail for c in report.regions["eu-west-1"].changes]
    assert details == ["security-bus delivery: RetryPolicy, DeadLetterConfig differ"]

    # And a re-run writes nothing
    recorder.clear()
    onboarder.onboard(OnboardingRequest(onboarded))
    assert recorder.writes == []


def test_target_pointing_elsewhere_is_redirected(onboarded, onboarder, reader, recorder, settings):
    events = reader.client(onboarded, "events", "us-east-1")
    events.put_targets(
        Rule="watershed-forward",
        Targets=[
            {
                "Id": "security-bus",
                "Arn": "arn:aws:events:us-east-1:999988887777:event-bus/default",
                "RoleArn": f"arn:aws:iam::{onboarded}:role/watershed-forwarder",
            }
        ],
    )

    onboarder.onboard(OnboardingRequest(onboarded))

    [target] = reader.targets(onboarded, "us-east-1")
    assert target["Arn"] == settings.security_bus_arn("us-east-1")
    assert recorder.writes == [("PutTargets", "us-east-1")]


def test_changed_role_policy_is_restored(onboarded, onboarder, reader, recorder, settings):
    iam = reader.client(onboarded, "iam")
    iam.put_role_policy(
        RoleName="watershed-forwarder",
        PolicyName=POLICY_NAME,
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "events:*", "Resource": "*"}],
            }
        ),
    )

    report = onboarder.onboard(OnboardingRequest(onboarded))

    [statement] = reader.role(onboarded)["policies"][POLICY_NAME]["Statement"]
    assert statement["Action"] == "events:PutEvents"
    assert len(statement["Resource"]) == len(settings.hub_regions)
    assert [str(c) for c in report.changes] == [f"update role-policy: {POLICY_NAME} differs"]
    assert recorder.writes == [("PutRolePolicy", "aws-global")]


def test_loosened_trust_is_pinned_again(onboarded, onboarder, reader, recorder):
    reader.client(onboarded, "iam").update_assume_role_policy(
        RoleName="watershed-forwarder",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "events.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )

    onboarder.onboard(OnboardingRequest(onboarded))

    [statement] = reader.role(onboarded)["trust"]["Statement"]
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": onboarded},
        "ArnLike": {"aws:SourceArn": f"arn:aws:events:*:{onboarded}:rule/watershed-forward"},
    }
    assert recorder.writes == [("UpdateAssumeRolePolicy", "aws-global")]


def test_a_role_pinned_by_account_only_gets_pinned_to_the_forward_rule(
    onboarded, onboarder, reader, recorder
):
    # Given a forwarder role created by an older watershed: trust pinned with aws:SourceAccount
    # only, so any rule of the member (not just watershed-forward) could use it
    account_only = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": onboarded}},
            }
        ],
    }
    reader.client(onboarded, "iam").update_assume_role_policy(
        RoleName="watershed-forwarder", PolicyDocument=json.dumps(account_only)
    )

    # When the account is reconciled
    report = onboarder.onboard(OnboardingRequest(onboarded))

    # Then the trust also names the forwarding rule, and only the trust was written
    [statement] = reader.role(onboarded)["trust"]["Statement"]
    assert statement["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:events:*:{onboarded}:rule/watershed-forward"
    }
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": onboarded}
    assert [str(c) for c in report.changes] == ["update forwarder-role: trust policy differs"]
    assert recorder.writes == [("UpdateAssumeRolePolicy", "aws-global")]


def test_a_detector_suspended_by_its_guardduty_administrator_is_left_to_it(
    onboarded, onboarder, reader, recorder, faults
):
    # moto cannot build a GuardDuty administrator relationship: inject GetAdministratorAccount.
    faults.add(
        "GetAdministratorAccount",
        None,
        response={
            "Administrator": {
                "AccountId": "222233334444",
                "InvitationId": "inv-1",
                "RelationshipStatus": "Enabled",
            }
        },
    )
    gd = reader.client(onboarded, "guardduty", "eu-west-1")
    detector_id = reader.detector(onboarded, "eu-west-1")["DetectorId"]
    gd.update_detector(DetectorId=detector_id, Enable=False, FindingPublishingFrequency="ONE_HOUR")

    report = onboarder.onboard(OnboardingRequest(onboarded))

    # Suspending and re-enabling an organization member is the administrator's action
    # (StopMonitoringMembers / StartMonitoringMembers): watershed reports it, writes nothing.
    detector = reader.detector(onboarded, "eu-west-1")
    assert detector["Status"] == "DISABLED"
    assert detector["FindingPublishingFrequency"] == "ONE_HOUR"  # the administrator's choice
    assert recorder.writes == []
    view = report.regions["eu-west-1"].guardduty
    assert view["administrator"] == "222233334444"
    assert any("suspended by administrator 222233334444" in n for n in view["notes"])
