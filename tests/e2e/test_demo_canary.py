"""The demo's canary act (sandbox/canary_act.py): `watershed canary` over the sandbox, with one
region's Security bus policy removed on purpose and restored afterwards.

What stands in for AWS: GuardDuty's CreateSampleFindings (moto has none) puts a sample-finding
event on the member's default bus; from there the members' forwarding rules, the bus policy
model, the collect rules, the Kinesis shim and the relay carry it (docs/architecture.md). The
tests read the world back: the destination stream's records, the restored bus policy.
"""

import json

import pytest

from sandbox.embedded import EmbeddedAws
from sandbox.story import DemoOptions, Story
from sandbox.streams import read_stream

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")
BROKEN = REGIONS[-1]


@pytest.fixture(scope="module")
def played():
    with EmbeddedAws() as aws:
        story = Story(aws, DemoOptions(regions=REGIONS, members=2, control_tower_members=1))
        yield aws, story.play()


def test_every_member_region_arrived_with_a_latency_except_the_broken_one(played):
    _, result = played
    act = result.canary
    assert act is not None and act.ok, act.problems
    assert act.broken_region == BROKEN
    cells = {(r.account_id, r.region): r for r in act.report.results}
    members = [m.account_id for m in result.organization.members]
    assert set(cells) == {(a, r) for a in members for r in REGIONS}
    for (_, region), cell in cells.items():
        if region == BROKEN:
            assert cell.status == "missing", cell
            assert cell.latency_seconds is None
        else:
            assert cell.status == "arrived", cell
            assert 0 <= cell.latency_seconds < 60
    # GuardDuty's stand-in was called once per member x region: the broken region was raised too
    assert sorted(act.raised) == sorted(cells)
    assert result.ok


def test_the_arrived_sample_findings_are_in_the_destination_stream_as_guardduty_sends_them(
    played,
):
    aws, result = played
    act = result.canary
    security = aws.session(result.organization.security.account_id)
    samples = {}
    for record in read_stream(security, result.destination_arn):
        document = json.loads(record["Data"])
        info = document.get("detail", {}).get("service", {}).get("additionalInfo", {})
        if info.get("sample") is True:
            samples[(document["account"], document["region"])] = (record, document)
    arrived = {(r.account_id, r.region): r for r in act.report.results if r.status == "arrived"}
    assert set(samples) == set(arrived)  # nothing from the broken region
    for key, (record, document) in samples.items():
        assert document["source"] == "aws.guardduty"
        assert document["detail-type"] == "GuardDuty Finding"
        assert document["detail"]["type"] == act.report.finding_type
        assert document["detail"]["accountId"] == key[0]
        assert arrived[key].sequence_number == record["SequenceNumber"]
        assert arrived[key].shard_id == record["ShardId"]


def test_the_broken_region_was_refused_by_its_bus_and_its_policy_is_back(played):
    aws, result = played
    org = result.organization
    refused = [n for n in aws.journal.notices("bus-policy") if BROKEN in n.message]
    assert len(refused) == len(org.members)  # one refused sample finding per member
    # expected, so not reported as sandbox notices; the member target DLQ kept each refused
    # finding, and the act took exactly those off it again
    assert set(result.canary.expected_notices) == set(refused)
    assert not any(BROKEN in n for n in result.notices)
    assert sum(result.canary.dead_lettered.values()) == len(org.members)
    events = aws.session(org.security.account_id).client("events", region_name=BROKEN)
    policy = json.loads(events.describe_event_bus(Name="default")["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Condition"]["StringEquals"]["aws:PrincipalOrgID"] == org.organization_id
