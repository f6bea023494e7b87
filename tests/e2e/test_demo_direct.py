"""End to end in direct delivery mode (issue 13, `make demo ARGS="--delivery direct"`): the
project's templates deployed with DeliveryMode direct, the members onboarded by the onboarding
handler, and every region's events arriving in the destination stream with one bus hop. Read
back through the AWS APIs, independently of what the story concluded."""

import json

import pytest

from sandbox.embedded import EmbeddedAws
from sandbox.story import DemoOptions, Story
from sandbox.streams import read_stream

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")
HOME = REGIONS[0]


@pytest.fixture(scope="module")
def played():
    with EmbeddedAws() as aws:
        # Without the canary act, whose sample findings would join the destination stream
        # (tests/e2e/test_demo_canary_command.py plays it in direct mode).
        options = DemoOptions(
            regions=REGIONS, members=3, control_tower_members=1, delivery="direct", canary=False
        )
        yield aws, Story(aws, options).play()


def test_every_member_region_targets_the_home_bus_with_the_forwarder_role(played):
    aws, result = played
    org = result.organization
    home_bus = f"arn:aws:events:{HOME}:{org.security.account_id}:event-bus/default"
    for account in (*org.members, org.management):
        session = aws.session(account.account_id, account.admin_role)
        iam = session.client("iam")
        role = iam.get_role(RoleName="watershed-forwarder")["Role"]
        policy = iam.get_role_policy(
            RoleName="watershed-forwarder", PolicyName="watershed-put-events"
        )
        (statement,) = policy["PolicyDocument"]["Statement"]
        if account is org.management:  # declared by management.yaml, for either mode
            any_region = f"arn:aws:events:*:{org.security.account_id}:event-bus/default"
            assert statement["Resource"] in (any_region, [any_region])
        else:
            assert statement["Resource"] in (home_bus, [home_bus])  # the one bus the mode uses
        for region in REGIONS:
            events = session.client("events", region_name=region)
            (target,) = events.list_targets_by_rule(Rule="watershed-forward")["Targets"]
            assert (target["Arn"], target["RoleArn"]) == (home_bus, role["Arn"]), region


def test_no_other_region_has_a_stream_relay_or_relay_queue(played):
    aws, result = played
    security = aws.session(result.organization.security.account_id)
    for region in REGIONS[1:]:
        assert security.client("kinesis", region_name=region).list_streams()["StreamNames"] == []
        assert security.client("lambda", region_name=region).list_functions()["Functions"] == []
        queues = security.client("sqs", region_name=region).list_queues().get("QueueUrls", [])
        # the collect rule's DLQ, and the DLQ of the members' targets whose rule is in this
        # region (a target's dead-letter queue must be in its rule's region)
        names = sorted(url.rsplit("/", 1)[1] for url in queues)
        assert len(names) == 2, queues
        assert "EventsDeadLetterQueue" in names[0] and names[1] == "watershed-forward-dlq"
        bus = security.client("events", region_name=region).describe_event_bus(Name="default")
        assert "Policy" not in bus  # no member delivers here: no organization grant either
    assert {q.logical_id for q in result.queues}.isdisjoint({"RelayFailureQueue"})


def test_every_region_s_events_arrive_byte_identical_after_one_bus_hop(played):
    aws, result = played
    org = result.organization
    destination = read_stream(aws.session(org.security.account_id), result.destination_arn)
    by_id = {json.loads(r["Data"])["id"]: r for r in destination}
    expected = {a.event_id: a for a in result.arrivals if a.expected}

    assert set(by_id) == set(expected) and len(destination) == len(expected)
    assert {a.event.region for a in expected.values()} == set(REGIONS)
    for event_id, arrival in expected.items():
        document = json.loads(by_id[event_id]["Data"])
        assert (document["account"], document["region"]) == (
            arrival.event.account.account_id,
            arrival.event.region,
        )
        assert document["detail"] == arrival.event.detail
        assert arrival.problem == ""  # includes the EventBridge serialisation, byte for byte
        hops = result.journal.hops(event_id)
        bus_hops = [h.where for h in hops if h.step.endswith("→ bus")]
        assert bus_hops == [f"{org.security.account_id} {HOME} default bus"], bus_hops
        writes = [h.where for h in hops if "Kinesis" in h.step]
        assert writes == [f"{org.security.account_id} {HOME} stream watershed"], writes


def test_the_security_account_s_own_event_of_another_region_reaches_home(played):
    _, result = played
    (own,) = [a for a in result.arrivals if a.event.account is result.organization.security]
    assert own.event.region == REGIONS[-1]
    assert own.expected and own.arrived and not own.problem


def test_nothing_was_refused_dropped_or_left_on_a_queue(played):
    _, result = played
    assert result.notices == [] and result.loaded_queues == [] and result.unhandled == []
    assert result.ok
