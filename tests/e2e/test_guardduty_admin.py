"""End to end, in the demo's sandbox: the Security account as GuardDuty administrator.

sandbox.guardduty_admin plays the demo's organization, templates and onboarding with the
Security account designated GuardDuty delegated administrator in every hub region (members
related to it by sandbox.guardduty_org, standing in for auto-enable), then puts each member's
finding where GuardDuty puts it: on the member's bus and on the Security bus. Read back here:
the destination stream holds each finding once, and the members' rules leave findings out.
"""

import json

import pytest

from sandbox.embedded import EmbeddedAws
from sandbox.guardduty_admin import play_guardduty_administrator
from sandbox.story import DemoOptions
from sandbox.streams import read_stream

REGIONS = ("eu-west-1", "us-east-1")


@pytest.fixture(scope="module", params=["relay", "direct"])
def played(request):
    """Both delivery modes: in direct mode the native copy on a spoke region's Security bus is
    sent home by that region's collect rule, and the member's rule targets the home bus."""
    with EmbeddedAws() as aws:
        options = DemoOptions(
            regions=REGIONS, members=2, control_tower_members=1, delivery=request.param
        )
        yield aws, play_guardduty_administrator(aws, options)


def test_a_member_guardduty_finding_reaches_the_destination_exactly_once(played):
    aws, result = played
    assert len(result.copies) == 2 * len(REGIONS), result.copies
    assert result.ok, result.summary()
    # read back independently: every record on the destination stream, by finding id
    org = result.story.result.organization
    records = read_stream(aws.session(org.security.account_id), result.story.result.destination_arn)
    findings = [json.loads(r["Data"]) for r in records]
    ids = [f["detail"]["id"] for f in findings if f.get("source") == "aws.guardduty"]
    assert sorted(ids) == sorted(result.copies)


def test_onboarding_left_guardduty_findings_out_of_every_member_rule(played):
    _, result = played
    assert result.forwarded_patterns
    for (member, region), text in result.forwarded_patterns.items():
        pattern = json.loads(text)
        branches = [b for b in pattern["$or"] if "aws.guardduty" in b.get("source", [])]
        assert branches == [
            {"source": ["aws.guardduty"], "detail-type": [{"anything-but": "GuardDuty Finding"}]}
        ], (member, region)


def test_the_rest_of_the_demo_still_holds(played):
    _, result = played
    story = result.story.result
    assert story.configured and not story.unconfigured
    assert story.unhandled == []
