"""End to end: the demo story on the embedded AWS, and the final state read back.

The same story as `make demo` (sandbox/story.py): the project's templates deployed in moto,
lifecycle events onboarding the members through the work queue and the onboarding handler,
member events travelling to the destination stream through the collect rules, the Kinesis shim
and the relay handler. What stands in for AWS is listed in docs/architecture.md; these tests
read the resulting world back through the AWS APIs, independently of what the story concluded.
"""

import json

import pytest

from sandbox.embedded import EmbeddedAws
from sandbox.story import DemoOptions, Story
from sandbox.streams import read_stream

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")


@pytest.fixture(scope="module")
def played():
    """The story played once, its embedded AWS kept open for the tests to read back."""
    with EmbeddedAws() as aws:
        # Without the canary act, whose sample findings would join the destination stream: it
        # has its own read-back (tests/e2e/test_demo_canary.py).
        options = DemoOptions(regions=REGIONS, members=3, control_tower_members=1, canary=False)
        story = Story(aws, options)
        yield aws, story.play()


def test_every_member_is_configured_in_every_hub_region_and_nowhere_else(played):
    aws, result = played
    org = result.organization
    security_bus = "arn:aws:events:{}:" + org.security.account_id + ":event-bus/default"
    for member in org.members:
        session = aws.session(member.account_id, member.admin_role)
        role = session.client("iam").get_role(RoleName="watershed-forwarder")["Role"]
        trust = role["AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        assert trust["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}
        for region in (*REGIONS, "sa-east-1"):
            guardduty = session.client("guardduty", region_name=region)
            events = session.client("events", region_name=region)
            detectors = guardduty.list_detectors()["DetectorIds"]
            rules = [r["Name"] for r in events.list_rules()["Rules"]]
            if region not in REGIONS:
                assert (detectors, rules) == ([], []), f"{member.name} touched in {region}"
                continue
            assert len(detectors) == 1, f"{member.name} {region}"
            assert guardduty.get_detector(DetectorId=detectors[0])["Status"] == "ENABLED"
            (target,) = events.list_targets_by_rule(Rule="watershed-forward")["Targets"]
            assert target["Id"] == "security-bus"
            assert target["Arn"] == security_bus.format(region)
            assert target["RoleArn"] == role["Arn"]


def test_the_vended_account_was_reached_through_its_control_tower_role(played):
    _, result = played
    vended = result.organization.members[-1]
    assert vended.vended_by == "control tower"
    assert {r for (a, r), s in result.configured.items() if a == vended.account_id} == set(REGIONS)
    assert not result.unconfigured


def test_onboarding_ran_from_the_work_queue_without_a_function_error(played):
    _, result = played
    invocations = [d for d in result.onboarding if d.mapping.kind == "sqs"]
    assert invocations
    assert all(d.invocation.ok for d in invocations), [d.invocation.error for d in invocations]
    assert all(d.mapping.function.name == "watershed-onboarding" for d in invocations)
    assert sum(d.records for d in invocations) == len(result.triggers)


def test_every_trigger_became_an_onboarding_and_every_queue_is_empty(played):
    # read back independently: every queue of every stack, through SQS
    aws, result = played
    assert result.unhandled == []
    assert {q.logical_id for q in result.queues} >= {
        "WorkQueue",
        "WorkDeadLetterQueue",
        "OnboardingInvokeFailureQueue",
        "EventsDeadLetterQueue",
        "RelayFailureQueue",
    }
    for queue in result.queues:
        account, region = queue.stack.split()[:2]
        sqs = aws.session(account).client("sqs", region_name=region)
        attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])
        counts = {k: v for k, v in attributes["Attributes"].items() if "NumberOfMessages" in k}
        assert set(counts.values()) == {"0"}, (queue.logical_id, counts)


def test_the_reconcile_gave_the_security_account_guardduty_only_and_the_management_all(played):
    aws, result = played
    org = result.organization
    assert [d.records for d in result.reconcile if d.mapping.kind == "sqs"]  # through the queue
    security = aws.session(org.security.account_id)
    management = aws.session(org.management.account_id)
    for region in REGIONS:
        guardduty = security.client("guardduty", region_name=region)
        (detector,) = guardduty.list_detectors()["DetectorIds"]
        assert guardduty.get_detector(DetectorId=detector)["Status"] == "ENABLED"
        rules = security.client("events", region_name=region).list_rules()["Rules"]
        assert "watershed-forward" not in {r["Name"] for r in rules}
        events = management.client("events", region_name=region)
        (target,) = events.list_targets_by_rule(Rule="watershed-forward")["Targets"]
        assert (
            target["Arn"] == f"arn:aws:events:{region}:{org.security.account_id}:event-bus/default"
        )
        assert management.client("guardduty", region_name=region).list_detectors()["DetectorIds"]


def test_every_expected_event_reached_the_destination_byte_identical(played):
    aws, result = played
    security_id = result.organization.security.account_id
    security = aws.session(security_id)
    destination = read_stream(security, result.destination_arn)
    by_id = {json.loads(r["Data"])["id"]: r for r in destination}
    expected = {a.event_id: a for a in result.arrivals if a.expected}

    assert set(by_id) == set(expected)
    assert len(destination) == len(expected)  # no duplicates either
    for event_id, arrival in expected.items():
        record, event = by_id[event_id], arrival.event
        document = json.loads(record["Data"])
        assert document["account"] == event.account.account_id
        assert document["region"] == event.region
        assert (document["source"], document["detail-type"]) == (
            event.entry["Source"],
            event.entry["DetailType"],
        )
        assert document["detail"] == event.detail
        assert record["PartitionKey"] == event_id
        if event.region != REGIONS[0]:  # relayed: the same bytes as on the regional stream
            regional = f"arn:aws:kinesis:{event.region}:{security_id}:stream/watershed-regional"
            (original,) = [
                r
                for r in read_stream(security, regional)
                if json.loads(r["Data"])["id"] == event_id
            ]
            assert (original["Data"], original["PartitionKey"]) == (
                record["Data"],
                record["PartitionKey"],
            )


def test_every_journey_ends_in_the_destination_stream(played):
    # The journey printer shows hops in the journal's order: the arrival comes last, after the
    # rules and the relay that put it there (home-region events included).
    _, result = played
    for arrival in (a for a in result.arrivals if a.expected):
        steps = [h.step for h in result.journal.hops(arrival.event_id)]
        assert steps[0] == "raised"
        assert steps[-1] == "in the destination stream", steps


def test_events_that_must_not_be_forwarded_stayed_where_they_were_raised(played):
    _, result = played
    kept = [a for a in result.arrivals if not a.expected]
    assert {a.event.label for a in kept} == {"EC2 state change", "GuardDuty finding"}
    assert not any(a.arrived for a in kept)
    assert result.ok


def test_nothing_was_refused_dropped_or_left_to_moto_on_the_way(played):
    # notices: bus policy refusals, hop-limit drops, dead-lettered or unrun targets
    _, result = played
    assert result.notices == []


def test_a_region_opt_in_raised_in_a_member_reaches_the_work_queue_and_onboards_that_region(
    played,
):
    # The member enabled ap-southeast-2 itself: AWS put the event on the member's us-east-1 bus
    # only. Before it, the story took that region back from the member (rule and target deleted)
    # and disabled the rule of a control region (eu-west-1).
    aws, result = played
    opt_in = result.opt_in
    assert (opt_in.region, opt_in.control_region) == ("ap-southeast-2", "eu-west-1")

    # Then it travelled member us-east-1 → Security us-east-1 bus (one hop) → lifecycle rule →
    # topic → the home work queue, and the onboarding function took it from there
    steps = [hop.step for hop in result.journal.hops(opt_in.event_id)]
    assert steps[:3] == ["raised", "rule watershed-forward → bus", "rule watershed-lifecycle → SNS"]
    assert any(step.startswith("sqs mapping → watershed-onboarding") for step in steps)
    assert not [n for n in result.notices if opt_in.event_id in n]  # no hop dropped on the way

    # And exactly that region came back: read back after the act, the opted-in region is
    # configured, and the control region's rule stayed disabled until the story put it back
    session = aws.session(opt_in.member.account_id, opt_in.member.admin_role)
    events = session.client("events", region_name=opt_in.region)
    assert events.describe_rule(Name="watershed-forward")["State"] == "ENABLED"
    (target,) = events.list_targets_by_rule(Rule="watershed-forward")["Targets"]
    assert target["DeadLetterConfig"]["Arn"].endswith(
        f":{opt_in.region}:{result.organization.security.account_id}:watershed-forward-dlq"
    )
    assert opt_in.region_state.detector == "enabled"
    assert opt_in.control_state.rule == "rule DISABLED"
