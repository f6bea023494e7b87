"""Offboarding against moto: tags, `remove`, dry runs, ownership, asserted by reading back."""

import json
from dataclasses import replace

from onboarding.cli import cli
from onboarding.events import REMOVE, OnboardingRequest
from onboarding.resources.iam import MANAGEMENT_ROLE_RETAINED
from onboarding.resources.ownership import MANAGED_TAG_KEY, MANAGED_TAG_VALUE

from .conftest import env_for

TAG = {"Key": MANAGED_TAG_KEY, "Value": MANAGED_TAG_VALUE}


def _remove(account, **kw) -> OnboardingRequest:
    return OnboardingRequest(account, action=REMOVE, **kw)


def _rule_tags(reader, account, region, name="watershed-forward"):
    events = reader.client(account, "events", region)
    return events.list_tags_for_resource(ResourceARN=reader.rule(account, region, name)["Arn"])[
        "Tags"
    ]


def _role_tags(reader, account, name="watershed-forwarder"):
    return reader.client(account, "iam").get_role(RoleName=name)["Role"].get("Tags", [])


def _assert_nothing_of_ours(reader, settings, account):
    assert reader.role(account) is None
    for region in settings.hub_regions:
        assert reader.rule(account, region) is None, region


# Tags ----------------------------------------------------------------------------------------


def test_onboarding_tags_the_role_the_rules_and_the_detectors_it_creates(
    org, settings, onboarder, reader
):
    onboarder.onboard(OnboardingRequest(org.member))

    assert TAG in _role_tags(reader, org.member)
    for region in settings.hub_regions:
        assert TAG in _rule_tags(reader, org.member, region), region
        assert reader.detector(org.member, region)["Tags"] == {MANAGED_TAG_KEY: MANAGED_TAG_VALUE}


def test_a_reconcile_tags_an_untagged_deployment_then_writes_nothing(
    org, settings, onboarder, reader, recorder
):
    # Given a deployment from before the tags: rules and role without them
    onboarder.onboard(OnboardingRequest(org.member))
    reader.client(org.member, "iam").untag_role(
        RoleName="watershed-forwarder", TagKeys=[MANAGED_TAG_KEY]
    )
    for region in settings.hub_regions:
        arn = reader.rule(org.member, region)["Arn"]
        reader.client(org.member, "events", region).untag_resource(
            ResourceARN=arn, TagKeys=[MANAGED_TAG_KEY]
        )

    # When the reconcile runs
    report = onboarder.onboard(OnboardingRequest(org.member, reason="schedule"))

    # Then the tags are back, reported as changes, and the next run writes nothing
    assert [str(c) for c in report.changes] == ["create role-tag: managed-by=watershed"]
    for region in settings.hub_regions:
        assert [c.resource for c in report.regions[region].changes] == ["rule-tag"]
        assert TAG in _rule_tags(reader, org.member, region)
    assert TAG in _role_tags(reader, org.member)
    recorder.clear()
    assert onboarder.onboard(OnboardingRequest(org.member)).all_changes == []
    assert recorder.writes == []


# remove ----------------------------------------------------------------------------------------


def test_remove_leaves_no_rule_target_or_role_and_a_rerun_writes_nothing(
    org, settings, onboarder, reader, recorder
):
    onboarder.onboard(OnboardingRequest(org.member))

    report = onboarder.onboard(_remove(org.member))

    assert report.status == "ok", report.as_dict()
    _assert_nothing_of_ours(reader, settings, org.member)
    for region in settings.hub_regions:
        assert [str(c) for c in report.regions[region].changes] == [
            "delete target: security-bus",
            "delete rule: watershed-forward",
        ]
        # GuardDuty keeps running unless --guardduty
        assert reader.detector(org.member, region)["Status"] == "ENABLED"
    assert [str(c) for c in report.changes] == [
        "delete role-policy: watershed-put-events",
        "delete forwarder-role: watershed-forwarder",
    ]
    recorder.clear()
    again = onboarder.onboard(_remove(org.member))
    assert again.status == "ok" and again.all_changes == []
    assert recorder.writes == []


def test_a_dry_run_lists_the_same_changes_and_writes_nothing(
    org, settings, onboarder, reader, recorder
):
    onboarder.onboard(OnboardingRequest(org.member))
    recorder.clear()

    planned = onboarder.onboard(_remove(org.member, dry_run=True, guardduty=True))

    assert recorder.writes == []
    assert reader.role(org.member) is not None
    for region in settings.hub_regions:
        assert reader.rule(org.member, region) is not None
        assert reader.detector(org.member, region) is not None
    done = onboarder.onboard(_remove(org.member, guardduty=True))
    assert planned.as_dict()["regions"] == done.as_dict()["regions"]
    assert planned.as_dict()["changes"] == done.as_dict()["changes"]


def test_guardduty_removes_only_a_detector_watershed_created(org, settings, onboarder, reader):
    # Given a detector the owner made in eu-west-1 before watershed came (untagged)
    owners = reader.client(org.member, "guardduty", "eu-west-1").create_detector(Enable=True)
    onboarder.onboard(OnboardingRequest(org.member))

    report = onboarder.onboard(_remove(org.member, guardduty=True))

    assert report.status == "ok", report.as_dict()
    assert reader.detector(org.member, "eu-west-1")["DetectorId"] == owners["DetectorId"]
    [kept] = [c for c in report.regions["eu-west-1"].changes if c.resource == "detector"]
    assert kept.action == "retain" and "not created by watershed" in kept.detail
    for region in ("us-east-1", "eu-central-1"):
        assert reader.detector(org.member, region) is None, region


def test_foreign_rules_and_roles_are_untouched(org, settings, onboarder, reader, recorder):
    # Given another team's rule and role next to ours, and in another account a rule and a
    # role that merely use our names (untagged, another description)
    onboarder.onboard(OnboardingRequest(org.member))
    pattern = json.dumps({"source": ["aws.ec2"]})
    trust = json.dumps(
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
    )
    for account in (org.member, org.other_member):
        reader.client(account, "iam").create_role(
            RoleName="team-forwarder", AssumeRolePolicyDocument=trust
        )
        for region in settings.hub_regions:
            reader.client(account, "events", region).put_rule(
                Name="team-rule", EventPattern=pattern
            )
    reader.client(org.other_member, "iam").create_role(
        RoleName="watershed-forwarder", AssumeRolePolicyDocument=trust
    )
    reader.client(org.other_member, "events", "eu-west-1").put_rule(
        Name="watershed-forward", EventPattern=pattern, Description="someone else's"
    )

    mine = onboarder.onboard(_remove(org.member))
    recorder.clear()
    theirs = onboarder.onboard(_remove(org.other_member))

    assert mine.status == "ok"
    _assert_nothing_of_ours(reader, settings, org.member)
    for account in (org.member, org.other_member):
        assert reader.role(account, "team-forwarder") is not None
        for region in settings.hub_regions:
            assert reader.rule(account, region, "team-rule") is not None
    assert recorder.writes == []  # nothing of the other account was watershed's
    assert reader.role(org.other_member) is not None
    assert reader.rule(org.other_member, "eu-west-1") is not None
    assert theirs.changes[0].action == "retain"
    assert theirs.regions["eu-west-1"].changes[0].action == "retain"


def test_the_management_accounts_role_is_left_to_management_yaml(org, settings, onboarder, reader):
    onboarder.onboard(OnboardingRequest(org.management))

    report = onboarder.onboard(_remove(org.management))

    assert report.status == "ok", report.as_dict()
    [kept] = report.changes
    assert kept.action == "retain" and MANAGEMENT_ROLE_RETAINED in kept.detail
    assert reader.role(org.management) is not None
    for region in settings.hub_regions:
        assert reader.rule(org.management, region) is None


def test_removing_some_regions_keeps_the_role_while_a_rule_remains(
    org, settings, onboarder, reader
):
    onboarder.onboard(OnboardingRequest(org.member))

    first = onboarder.onboard(_remove(org.member, regions=("eu-west-1",)))
    assert reader.rule(org.member, "eu-west-1") is None
    assert reader.role(org.member) is not None
    [kept] = first.changes
    assert kept.action == "retain" and "eu-central-1" in kept.detail

    onboarder.onboard(_remove(org.member, regions=("us-east-1", "eu-central-1")))
    _assert_nothing_of_ours(reader, settings, org.member)


def test_a_failed_region_keeps_the_role_for_its_retry(org, settings, onboarder, reader, faults):
    onboarder.onboard(OnboardingRequest(org.member))
    faults.add("RemoveTargets", "ThrottlingException", "Rate exceeded", region="eu-west-1")

    report = onboarder.onboard(_remove(org.member))

    assert report.retry_regions() == ("eu-west-1",)
    assert reader.role(org.member) is not None
    faults.faults.clear()
    retry = onboarder.onboard(_remove(org.member, regions=("eu-west-1",), attempt=2))
    assert retry.status == "ok"
    _assert_nothing_of_ours(reader, settings, org.member)


def test_cli_remove_prints_the_table_and_refuses_bad_arguments(
    org, settings, onboarder, reader, monkeypatch, capsys
):
    onboarder.onboard(OnboardingRequest(org.member))
    for name, value in env_for(org).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_REGION", "us-east-1")

    assert cli.main(["remove", org.member, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would change: delete target: security-bus; delete rule: watershed-forward" in out
    assert reader.role(org.member) is not None

    assert cli.main(["remove", org.member, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accounts"][0]["changes"][-1] == "delete forwarder-role: watershed-forwarder"
    _assert_nothing_of_ours(reader, settings, org.member)

    assert cli.main(["remove", "--all", org.member]) == 2
    assert "account ids or --all" in capsys.readouterr().err
    assert cli.main(["remove"]) == 2


def test_remove_all_includes_excluded_accounts(org, settings, make_onboarder, reader):
    onboarder = make_onboarder(replace(settings, excluded_accounts=frozenset()))
    onboarder.onboard(OnboardingRequest(org.member))
    excluding = make_onboarder(replace(settings, excluded_accounts=frozenset({org.member})))

    from onboarding.events import AllAccountsRequest

    report = excluding.handle([AllAccountsRequest(action=REMOVE)])

    assert org.member in {a.account_id for a in report.accounts}
    _assert_nothing_of_ours(reader, settings, org.member)


def test_the_audit_catches_members_forwarding_to_a_bus_without_a_policy(
    org, settings, onboarder, reader
):
    # Given an onboarded member, and a Security account whose stack is gone from eu-west-1 and
    # eu-central-1 (no bus policy there) but still grants the organization in us-east-1
    from onboarding.audit.audit import Auditor

    onboarder.onboard(OnboardingRequest(org.member))
    org_id = reader.client(org.management, "organizations").describe_organization()["Organization"][
        "Id"
    ]
    reader.client(org.security, "events", "us-east-1").put_permission(
        EventBusName="default",
        Action="events:PutEvents",
        Principal="*",
        StatementId="watershed-organization",
        Condition={"Type": "StringEquals", "Key": "aws:PrincipalOrgID", "Value": org_id},
    )

    report = Auditor(settings, onboarder.sessions).run(accounts=[org.member])

    # Then the member's cells where the bus refuses its events drift, naming why
    [audit] = report.accounts
    assert not report.passes()
    for region in ("eu-west-1", "eu-central-1"):
        cell = audit.regions[region]
        assert cell.state == "drift", region
        assert [f.kind for f in cell.findings] == ["target-refused"]
        assert "no policy on the default bus" in cell.detail
    assert audit.regions["us-east-1"].state == "ok"


def test_a_region_denied_by_an_scp_keeps_the_role(org, settings, onboarder, reader, faults):
    # Stands in for a service control policy that denies EventBridge in eu-west-1 after
    # onboarding: the rule there cannot be read, so the role it delivers with must stay.
    onboarder.onboard(OnboardingRequest(org.member))
    faults.add(
        "DescribeRule",
        "AccessDeniedException",
        "User: arn:aws:sts::1:assumed-role/x/y is not authorized to perform: events:DescribeRule "
        "with an explicit deny in a service control policy",
        region="eu-west-1",
    )

    report = onboarder.onboard(_remove(org.member))

    assert report.regions["eu-west-1"].status == "skipped"
    [kept] = report.changes
    assert kept.action == "retain" and "eu-west-1" in kept.detail
    assert reader.role(org.member) is not None
