"""The sandbox's EventBridge delivery: what AWS does, where moto does something else."""

import json
from datetime import UTC, datetime

import pytest
from moto.events.models import Rule

from sandbox import bus_policy
from sandbox.embedded import EmbeddedAws
from sandbox.shims import envelope_bytes
from sandbox.streams import read_stream

REGION = "eu-west-1"


def _stream(session, name, region=REGION):
    kinesis = session.client("kinesis", region_name=region)
    kinesis.create_stream(StreamName=name, ShardCount=2)
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


def _queue(session, name, region=REGION):
    sqs = session.client("sqs", region_name=region)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return sqs, url, arn


def _finding(**extra):
    return {
        "Source": "aws.guardduty",
        "DetailType": "GuardDuty Finding",
        "Detail": json.dumps({"severity": 5, "type": "Recon:EC2/PortProbeUnprotectedPort"}),
        "Resources": ["arn:aws:ec2:eu-west-1:333333333333:instance/i-0123456789abcdef0"],
        "Time": datetime(2026, 3, 7, 3, 10, tzinfo=UTC),
        **extra,
    }


def test_a_member_event_reaches_the_security_stream_with_its_envelope_intact(
    aws, org, forward_rule, open_bus
):
    # Given a member forwarding rule and a Security collect rule with a Kinesis target
    member = org.members[0]
    security = aws.session(org.security.account_id)
    open_bus(security, REGION)
    stream_arn = _stream(security, "regional")
    collect = security.client("events", region_name=REGION)
    collect.put_rule(Name="collect", EventPattern=json.dumps({"source": ["aws.guardduty"]}))
    collect.put_targets(Rule="collect", Targets=[{"Id": "stream", "Arn": stream_arn}])
    events = forward_rule(
        aws.session(member.account_id), REGION, org.security.account_id, ["aws.guardduty"]
    )

    # When GuardDuty's finding lands on the member's bus
    event_id = events.put_events(Entries=[_finding()])["Entries"][0]["EventId"]

    # Then the stream holds exactly the event as EventBridge writes it, keyed by the event id
    (record,) = read_stream(security, stream_arn)
    assert record["PartitionKey"] == event_id
    assert (
        record["Data"]
        == json.dumps(
            {
                "version": "0",
                "id": event_id,
                "detail-type": "GuardDuty Finding",
                "source": "aws.guardduty",
                "account": member.account_id,
                "time": "2026-03-07T03:10:00Z",
                "region": REGION,
                "resources": ["arn:aws:ec2:eu-west-1:333333333333:instance/i-0123456789abcdef0"],
                "detail": {"severity": 5, "type": "Recon:EC2/PortProbeUnprotectedPort"},
            },
            separators=(",", ":"),
        ).encode()
    )
    assert [hop.step for hop in aws.journal.hops(event_id)] == [
        "rule watershed-forward → bus",
        "rule collect → Kinesis (shim)",
    ]


def test_the_partition_key_path_of_the_target_is_honoured(aws, org):
    security = aws.session(org.security.account_id)
    stream_arn = _stream(security, "by-account")
    events = security.client("events", region_name=REGION)
    events.put_rule(Name="collect", EventPattern=json.dumps({"source": ["aws.guardduty"]}))
    events.put_targets(
        Rule="collect",
        Targets=[
            {
                "Id": "stream",
                "Arn": stream_arn,
                "KinesisParameters": {"PartitionKeyPath": "$.detail.type"},
            }
        ],
    )

    events.put_events(Entries=[_finding()])

    (record,) = read_stream(security, stream_arn)
    assert record["PartitionKey"] == "Recon:EC2/PortProbeUnprotectedPort"


def test_a_rule_pinned_to_the_sending_account_matches_after_the_hop(aws, org, open_bus):
    # Given the Security bus routes events from one account only to a queue (the trigger rule)
    management = aws.management_session()
    security = aws.session(org.security.account_id)
    open_bus(security, REGION)
    sqs, url, queue_arn = _queue(security, "work")
    trigger = security.client("events", region_name=REGION)
    trigger.put_rule(
        Name="trigger",
        EventPattern=json.dumps(
            {"account": [org.management.account_id], "source": ["aws.organizations"]}
        ),
    )
    trigger.put_targets(Rule="trigger", Targets=[{"Id": "q", "Arn": queue_arn}])
    # and the management account forwards Organizations events from us-east-1 to it
    forward = management.client("events", region_name="us-east-1")
    forward.put_rule(Name="org", EventPattern=json.dumps({"source": ["aws.organizations"]}))
    forward.put_targets(
        Rule="org",
        Targets=[
            {
                "Id": "sec",
                "Arn": f"arn:aws:events:{REGION}:{org.security.account_id}:event-bus/default",
                "RoleArn": f"arn:aws:iam::{org.management.account_id}:role/trigger-forwarder",
            }
        ],
    )

    # When an Organizations event happens in the management account
    event = {
        "Source": "aws.organizations",
        "DetailType": "AWS Service Event via CloudTrail",
        "Detail": json.dumps({"eventName": "CreateAccountResult"}),
    }
    event_id = forward.put_events(Entries=[event])["Entries"][0]["EventId"]

    # Then the queue holds the whole event, still from the management account, in us-east-1
    body = json.loads(sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"])
    assert body["id"] == event_id
    assert body["account"] == org.management.account_id
    assert body["region"] == "us-east-1"
    assert list(body) == [
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    ]


def test_schedules_and_disabled_rules_never_match_events(aws, org):
    security = aws.session(org.security.account_id)
    sqs, url, queue_arn = _queue(security, "never")
    events = security.client("events", region_name=REGION)
    events.put_rule(Name="daily", ScheduleExpression="rate(1 day)")
    events.put_targets(
        Rule="daily",
        Targets=[
            {"Id": "f", "Arn": f"arn:aws:lambda:{REGION}:{org.security.account_id}:function:f"}
        ],
    )
    events.put_rule(Name="off", EventPattern=json.dumps({"source": ["x"]}), State="DISABLED")
    events.put_targets(Rule="off", Targets=[{"Id": "q", "Arn": queue_arn}])

    response = events.put_events(Entries=[{"Source": "x", "DetailType": "y", "Detail": "{}"}])

    assert response["FailedEntryCount"] == 0
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []


def test_a_second_cross_account_hop_is_dropped_as_aws_drops_it(aws, org, forward_rule, open_bus):
    # Given member 1 forwards to member 2, which forwards everything on to Security
    first, second = org.members[0], org.members[1]
    security = aws.session(org.security.account_id)
    open_bus(security, REGION)
    open_bus(aws.session(second.account_id), REGION)
    sqs, url, queue_arn = _queue(security, "third")
    sink = security.client("events", region_name=REGION)
    sink.put_rule(Name="all", EventPattern=json.dumps({"source": ["aws.guardduty"]}))
    sink.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": queue_arn}])
    forward_rule(aws.session(second.account_id), REGION, org.security.account_id, ["aws.guardduty"])
    events = forward_rule(
        aws.session(first.account_id), REGION, second.account_id, ["aws.guardduty"]
    )

    event_id = events.put_events(Entries=[_finding()])["Entries"][0]["EventId"]

    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    (notice,) = aws.journal.notices("hop-limit")
    assert event_id in notice.message and "THIRD_ACCOUNT_HOP_DETECTED" in notice.message


def test_a_missing_stream_sends_the_event_to_the_target_dead_letter_queue(aws, org):
    security = aws.session(org.security.account_id)
    sqs, url, dlq_arn = _queue(security, "collect-dlq")
    events = security.client("events", region_name=REGION)
    events.put_rule(Name="collect", EventPattern=json.dumps({"source": ["aws.guardduty"]}))
    gone = f"arn:aws:kinesis:{REGION}:{org.security.account_id}:stream/gone"
    events.put_targets(
        Rule="collect",
        Targets=[{"Id": "s", "Arn": gone, "DeadLetterConfig": {"Arn": dlq_arn}}],
    )

    event_id = events.put_events(Entries=[_finding()])["Entries"][0]["EventId"]

    body = json.loads(sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"])
    assert body["id"] == event_id
    assert [n.kind for n in aws.journal.notices()] == ["dead-lettered"]


def test_assume_role_is_refused_for_a_role_the_account_does_not_have(aws, org):
    vended = org.members[-1]
    assert vended.admin_role == "AWSControlTowerExecution"
    with pytest.raises(Exception, match="AccessDenied"):
        aws.session(vended.account_id, "OrganizationAccountAccessRole").client(
            "sts", region_name="us-east-1"
        ).get_caller_identity()
    identity = (
        aws.session(vended.account_id, "AWSControlTowerExecution")
        .client("sts", region_name="us-east-1")
        .get_caller_identity()
    )
    assert identity["Account"] == vended.account_id


def test_envelope_bytes_are_compact_and_ordered():
    event = {
        "detail": {"a": 1},
        "ingestion-time": 1.0,
        "id": "e",
        "version": "0",
        "source": "s",
        "detail-type": "d",
        "account": "1",
        "time": 1772852400.0,
        "region": "r",
        "resources": [],
    }
    assert envelope_bytes(event) == (
        b'{"version":"0","id":"e","detail-type":"d","source":"s","account":"1",'
        b'"time":"2026-03-07T03:00:00Z","region":"r","resources":[],"detail":{"a":1}}'
    )


def test_moto_is_restored_when_the_sandbox_closes():
    original = Rule.send_to_targets
    with EmbeddedAws():
        assert Rule.send_to_targets is not original
    assert Rule.send_to_targets is original


def _forward_to_security_queue(aws, org, forward_rule, role=True):
    """Member 1 forwards findings to Security, where every finding goes to a queue."""
    security = aws.session(org.security.account_id)
    sqs, url, queue_arn = _queue(security, "seen")
    sink = security.client("events", region_name=REGION)
    sink.put_rule(Name="all", EventPattern=json.dumps({"source": ["aws.guardduty"]}))
    sink.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": queue_arn}])
    events = forward_rule(
        aws.session(org.members[0].account_id), REGION, org.security.account_id, ["aws.guardduty"]
    )
    if not role:
        (target,) = events.list_targets_by_rule(Rule="watershed-forward")["Targets"]
        target.pop("RoleArn")
        events.put_targets(Rule="watershed-forward", Targets=[target])
    return events, sqs, url


def test_a_bus_without_a_policy_refuses_events_from_another_account(aws, org, forward_rule):
    # stands in for AWS's resource policy check, which moto does not make
    events, sqs, url = _forward_to_security_queue(aws, org, forward_rule)

    event_id = events.put_events(Entries=[_finding()])["Entries"][0]["EventId"]

    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    (notice,) = aws.journal.notices("bus-policy")
    assert event_id in notice.message and "has no policy" in notice.message


def test_an_organization_grant_needs_a_role_on_the_sending_target(aws, org, forward_rule, open_bus):
    open_bus(aws.session(org.security.account_id), REGION)
    events, sqs, url = _forward_to_security_queue(aws, org, forward_rule, role=False)

    events.put_events(Entries=[_finding()])

    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    (notice,) = aws.journal.notices("bus-policy")
    assert "needs a RoleArn" in notice.message


def test_an_organization_grant_lets_a_member_with_a_role_in(aws, org, forward_rule, open_bus):
    open_bus(aws.session(org.security.account_id), REGION)
    events, sqs, url = _forward_to_security_queue(aws, org, forward_rule)

    event_id = events.put_events(Entries=[_finding()])["Entries"][0]["EventId"]

    (message,) = sqs.receive_message(QueueUrl=url)["Messages"]
    assert json.loads(message["Body"])["id"] == event_id
    assert aws.journal.notices() == []


def test_the_policy_model_refuses_an_account_outside_the_organization(aws, org):
    policy = {
        "Statement": [
            {
                "Sid": "org",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "events:PutEvents",
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": org.organization_id}},
            },
            {
                "Sid": "unknown",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "events:PutEvents",
                "Condition": {"ArnLike": {"aws:SourceArn": "*"}},
            },
        ]
    }

    inside, _ = bus_policy.evaluate(policy, org.members[0].account_id, has_role=True)
    outside, unevaluated = bus_policy.evaluate(policy, "999999999999", has_role=True)

    assert inside.allowed and not outside.allowed
    assert unevaluated == ["statement unknown: condition not modelled, not applied"]


def test_an_explicit_deny_wins(org):
    member = org.members[0].account_id
    policy = {
        "Statement": [
            {"Sid": "all", "Effect": "Allow", "Principal": "*", "Action": "events:*"},
            {"Sid": "no", "Effect": "Deny", "Principal": {"AWS": member}, "Action": "*"},
        ]
    }

    verdict, _ = bus_policy.evaluate(policy, member, has_role=True)

    assert not verdict.allowed and verdict.reason == "denied by statement no"


# --- cross-region bus targets (direct delivery mode, issue 13) ---------------------------------


def _forward_cross_region(aws, org, forward_rule, open_bus, role=True):
    """Member 1 in ap-southeast-2 forwards findings to the Security bus in REGION (the home
    region), where every finding goes to a queue; the home bus grants the organization."""
    security = aws.session(org.security.account_id)
    open_bus(security, REGION)
    sqs, url, queue_arn = _queue(security, "seen")
    sink = security.client("events", region_name=REGION)
    sink.put_rule(Name="all", EventPattern=json.dumps({"source": ["aws.guardduty"]}))
    sink.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": queue_arn}])
    member = aws.session(org.members[0].account_id)
    events = forward_rule(member, "ap-southeast-2", org.security.account_id, ["aws.guardduty"])
    target = {
        "Id": "security-bus",
        "Arn": f"arn:aws:events:{REGION}:{org.security.account_id}:event-bus/default",
    }
    if role:
        target["RoleArn"] = f"arn:aws:iam::{org.members[0].account_id}:role/watershed-forwarder"
    events.put_targets(Rule="watershed-forward", Targets=[target])
    return events, sqs, url


def test_a_cross_region_bus_target_delivers_the_envelope_unchanged_in_one_hop(
    aws, org, forward_rule, open_bus
):
    events, sqs, url = _forward_cross_region(aws, org, forward_rule, open_bus)

    event_id = events.put_events(Entries=[_finding()])["Entries"][0]["EventId"]

    (message,) = sqs.receive_message(QueueUrl=url)["Messages"]
    body = json.loads(message["Body"])
    assert (body["id"], body["region"]) == (event_id, "ap-southeast-2")
    assert body["account"] == org.members[0].account_id
    bus_hops = [h for h in aws.journal.hops(event_id) if h.step.endswith("→ bus")]
    assert [h.where for h in bus_hops] == [f"{org.security.account_id} {REGION} default bus"]
    assert aws.journal.notices() == []


def test_a_cross_region_bus_target_without_a_role_is_refused(aws, org, forward_rule, open_bus):
    events, sqs, url = _forward_cross_region(aws, org, forward_rule, open_bus, role=False)

    event_id = events.put_events(Entries=[_finding()])["Entries"][0]["EventId"]

    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    (notice,) = aws.journal.notices("bus-policy")
    assert (
        event_id in notice.message and "cross-Region bus target needs a RoleArn" in notice.message
    )
