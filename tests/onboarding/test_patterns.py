"""The patterns watershed ships let no forged CloudTrail event through; configured patterns are
checked against EventBridge's grammar and the `aws.` source fence before any account is touched.

PutEvents refuses any `source` starting with `aws.`, so that prefix is the one thing a principal
allowed on the Security bus (the whole organization) cannot forge. Matching is checked with
moto's EventBridge pattern engine, twice: its matcher directly (`EventPattern`), and end to end
(a rule with the pattern and an SQS target in moto, `PutEvents`, the queue read back).

A second, independent engine was looked for on PyPI: `event-ruler` 0.3.0 wraps quamina v1.0.0
(Go), which rejects `prefix` and `$or` as "invalid pattern" and aborts the interpreter on an
empty array; `aws-eventbridge-rule-syncer` 3.1.0 has no pattern operators. Neither can evaluate
these patterns, so moto's is the only engine here (AWS's TestEventPattern is not reachable).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import boto3
import pytest
from moto.events.models import EventPattern

from onboarding.errors import ConfigError
from onboarding.patterns import check_pattern
from onboarding.settings import DEFAULT_FORWARD_EVENT_PATTERN, Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "templates"))
from cfnmodel import (
    HOME_REGION,
    MANAGEMENT_ACCOUNT,
    MANAGEMENT_PARAMETERS,
    MANAGEMENT_TEMPLATE,
    RELAY_REGION,
    SAM_PARAMETERS,
    SAM_TEMPLATE,
    SECURITY_ACCOUNT,
    Deployment,
    load_template,
)

MEMBER = "333333333333"
CLOUDTRAIL_DETAIL_TYPES = {
    # detail-type → the source AWS sends it with
    "AWS API Call via CloudTrail": "aws.ec2",
    "AWS Console Sign In via CloudTrail": "aws.signin",
    "AWS Console Signin via CloudTrail": "aws.signin",
}
# Sources an organization principal may send (PutEvents refuses only "aws.…").
FORGED_SOURCES = ("com.attacker", "aws", "awsx.ec2", "AWS.ec2", "aws-ec2", "ec2.aws.")


def _event(source: str, detail_type: str) -> dict:
    """A CloudTrail-shaped event (aws-events.md: a member's API call), with a made-up identity
    when forged."""
    return {
        "version": "0",
        "id": "77ee88ff-6666-4f70-8b1c-000000000007",
        "detail-type": detail_type,
        "source": source,
        "account": MEMBER,
        "time": "2026-03-05T14:02:11Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.09",
            "userIdentity": {
                "type": "AssumedRole",
                "accountId": MEMBER,
                "arn": f"arn:aws:sts::{MEMBER}:assumed-role/OrganizationAccountAccessRole/ceo",
            },
            "eventSource": "ec2.amazonaws.com",
            "eventName": "AuthorizeSecurityGroupIngress",
            "awsRegion": "eu-west-1",
            "readOnly": False,
            "eventType": "AwsApiCall",
            "recipientAccountId": MEMBER,
        },
    }


REAL = [_event(source, kind) for kind, source in CLOUDTRAIL_DETAIL_TYPES.items()]
FORGED = [_event(source, kind) for kind in CLOUDTRAIL_DETAIL_TYPES for source in FORGED_SOURCES]


def _collect_rule_pattern() -> dict:
    template = load_template(SAM_TEMPLATE)
    deployment = Deployment(template, HOME_REGION, SECURITY_ACCOUNT, SAM_PARAMETERS)
    return deployment.resolve(template["Resources"]["CollectRule"]["Properties"])["EventPattern"]


SHIPPED = {
    "default FORWARD_EVENT_PATTERN": DEFAULT_FORWARD_EVENT_PATTERN,
    "template.yaml CollectRule": _collect_rule_pattern(),
}


@pytest.mark.parametrize("name", SHIPPED)
def test_forged_cloudtrail_events_match_no_shipped_pattern_real_ones_do(name):
    matcher = EventPattern.load(json.dumps(SHIPPED[name]))
    for event in REAL:
        assert matcher.matches_event(event), (name, event["detail-type"])
    for event in FORGED:
        assert not matcher.matches_event(event), (name, event["source"], event["detail-type"])
    # and the other families still match
    assert matcher.matches_event({**_event("aws.guardduty", "GuardDuty Finding")})
    assert matcher.matches_event(_event("aws.trustedadvisor", "Trusted Advisor Check Item"))


def _every_rule_pattern() -> dict[str, dict]:
    """Every EventBridge rule pattern both templates create, in every deployment they have (the
    Security home and a relay region, in relay and direct mode; the management account's two
    regions), so a rule added later is checked without being listed here."""
    sam = load_template(SAM_TEMPLATE)
    management = load_template(MANAGEMENT_TEMPLATE)
    direct = {**SAM_PARAMETERS, "DeliveryMode": "direct"}
    deployments = {
        "template.yaml home": Deployment(sam, HOME_REGION, SECURITY_ACCOUNT, SAM_PARAMETERS),
        "template.yaml relay": Deployment(sam, RELAY_REGION, SECURITY_ACCOUNT, SAM_PARAMETERS),
        "template.yaml direct home": Deployment(sam, HOME_REGION, SECURITY_ACCOUNT, direct),
        "template.yaml direct spoke": Deployment(sam, RELAY_REGION, SECURITY_ACCOUNT, direct),
        "management.yaml us-east-1": Deployment(
            management, "us-east-1", MANAGEMENT_ACCOUNT, MANAGEMENT_PARAMETERS
        ),
        "management.yaml CT home": Deployment(
            management, HOME_REGION, MANAGEMENT_ACCOUNT, MANAGEMENT_PARAMETERS
        ),
    }
    found = {}
    for where, deployment in deployments.items():
        for logical_id, resource in deployment.resources().items():
            if resource["Type"] == "AWS::Events::Rule":
                properties = deployment.resolve(resource["Properties"])
                if "EventPattern" in properties:
                    found[f"{where} {logical_id}"] = properties["EventPattern"]
    return found


EVERY_SHIPPED = {**SHIPPED, **_every_rule_pattern()}


def test_every_rule_the_templates_create_is_checked():
    rules = {name.rsplit(" ", 1)[-1] for name in EVERY_SHIPPED}
    assert {"CollectRule", "TriggerRule", "LifecycleRule", "OrganizationsTriggerRule"} <= rules
    assert "ControlTowerTriggerRule" in rules


@pytest.mark.parametrize("name", EVERY_SHIPPED)
def test_every_shipped_pattern_passes_the_grammar_and_fence_check(name):
    check_pattern(EVERY_SHIPPED[name])  # raises naming the branch otherwise


def test_end_to_end_in_moto_only_the_real_events_reach_the_rule_target(aws):
    # Given a rule with the default forwarding pattern (as onboarding writes it) and the collect
    # rule's pattern, each with an SQS queue as target (moto delivers to SQS)
    events = boto3.client("events", region_name="eu-west-1")
    sqs = boto3.client("sqs", region_name="eu-west-1")
    queues = {}
    for i, (name, pattern) in enumerate(SHIPPED.items()):
        url = sqs.create_queue(QueueName=f"q{i}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        events.put_rule(Name=f"r{i}", EventPattern=json.dumps(pattern))
        events.put_targets(Rule=f"r{i}", Targets=[{"Id": "q", "Arn": arn["QueueArn"]}])
        queues[name] = url

    # When every forged and every real CloudTrail-shaped event is put on the bus
    for event in FORGED + REAL:
        response = events.put_events(
            Entries=[
                {
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": json.dumps(event["detail"]),
                }
            ]
        )
        assert response["FailedEntryCount"] == 0

    # Then each queue holds exactly the real ones
    for name, url in queues.items():
        received = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            received += [json.loads(m["Body"]) for m in batch]
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                ],
            )
        got = sorted((e["source"], e["detail-type"]) for e in received)
        want = sorted((e["source"], e["detail-type"]) for e in REAL)
        assert got == want, name


# Configured patterns -----------------------------------------------------------------------------


def _settings(pattern) -> Settings:
    return Settings.from_env(
        {
            "SECURITY_ACCOUNT_ID": SECURITY_ACCOUNT,
            "MANAGEMENT_ACCOUNT_ID": MANAGEMENT_PARAMETERS["SecurityAccountId"].replace("2", "1"),
            "HUB_REGIONS": "eu-west-1",
            "FORWARD_EVENT_PATTERN": pattern if isinstance(pattern, str) else json.dumps(pattern),
        }
    )


CLOUDTRAIL = ["AWS API Call via CloudTrail"]


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        # the fence: a branch that can match CloudTrail-shaped events without an aws. source
        ({"detail-type": CLOUDTRAIL}, "pattern"),
        ({"$or": [{"source": ["aws.guardduty"]}, {"detail-type": CLOUDTRAIL}]}, "$or[1]"),
        ({"source": ["com.example"]}, "pattern"),  # no detail-type: matches forged CloudTrail
        ({"source": [{"prefix": "aws"}], "detail-type": CLOUDTRAIL}, "pattern"),  # "aws" ≠ "aws."
        ({"source": [{"anything-but": "aws.x"}], "detail-type": CLOUDTRAIL}, "pattern"),
        ({"source": ["aws.ec2", "com.example"], "detail-type": CLOUDTRAIL}, "pattern"),
        ({"detail-type": [{"prefix": "AWS API"}], "source": [{"suffix": ".ec2"}]}, "pattern"),
        ({"detail-type": [{"wildcard": "*"}]}, "pattern"),
        ({"account": [MEMBER]}, "pattern"),
        ({"$or": [{"$or": [{"source": ["aws.a"]}, {"account": [MEMBER]}]}]}, "$or[0].$or[1]"),
    ],
)
def test_a_configured_pattern_without_the_fence_is_refused_naming_the_branch(pattern, path):
    with pytest.raises(ConfigError) as refused:
        _settings(pattern)
    message = str(refused.value)
    assert message.startswith("FORWARD_EVENT_PATTERN: refused at ")
    assert f"at {path}: this branch does not require the source to start with" in message
    assert "CloudTrail-shaped events" in message
    assert '"source": [{"prefix": "aws."}]' in message


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        # Not CloudTrail-shaped, forgeable all the same: a made-up "GuardDuty Finding" from any
        # organization principal would reach the SIEM stream beside the real ones.
        (
            {"$or": [{"source": ["aws.guardduty"]}, {"detail-type": ["GuardDuty Finding"]}]},
            "$or[1]",
        ),
        ({"detail-type": ["Custom App Event"], "source": ["com.example"]}, "pattern"),
    ],
)
def test_every_branch_needs_the_fence_not_only_cloudtrail_shaped_ones(pattern, path):
    with pytest.raises(ConfigError) as refused:
        _settings(pattern)
    message = str(refused.value)
    assert f"at {path}: this branch does not require the source to start with" in message
    assert "events of its detail-type" in message


@pytest.mark.parametrize(
    "pattern",
    [
        {"source": [{"prefix": "aws."}], "detail-type": CLOUDTRAIL},
        {"source": ["aws.ec2", {"prefix": "aws.sig"}]},
        {"$or": [{"source": ["aws.guardduty"]}, {"detail-type": ["GuardDuty Finding"]}]}
        | {"source": ["aws.guardduty"]},
        {"source": [{"prefix": "aws."}], "$or": [{"detail-type": CLOUDTRAIL}, {"account": ["1"]}]},
        {"source": ["aws.guardduty"], "detail-type": ["GuardDuty Finding"]},
    ],
)
def test_fenced_patterns_are_accepted(pattern):
    assert _settings(pattern).forward_event_pattern == pattern


@pytest.mark.parametrize(
    ("pattern", "path", "problem"),
    [
        ("[]", "pattern", "top level must be a non-empty JSON object"),
        ('"aws.ec2"', "pattern", "top level must be a non-empty JSON object"),
        ("{}", "pattern", "top level must be a non-empty JSON object"),
        ({"source": []}, "source", "empty arrays are not allowed"),
        ({"source": "aws.ec2"}, "source", "must be an object or an array of values, not str"),
        ({"detail": {"severity": 8}, "source": ["aws.x"]}, "detail.severity", "not int"),
        ({"source": [{"startswith": "aws."}]}, "source[0].startswith", "unknown operator"),
        ({"source": [{"prefix": "aws.", "suffix": "x"}]}, "source[0]", "exactly one operator"),
        ({"source": [{"prefix": 1}]}, "source[0].prefix", "must be a string"),
        ({"source": [["aws.x"]]}, "source[0]", "not a list"),
        (
            {"source": ["aws.x"], "detail": {"n": [{"numeric": [">"]}]}},
            "detail.n[0].numeric",
            "[op, number]",
        ),
        (
            {"source": ["aws.x"], "detail": {"n": [{"numeric": ["~", 1]}]}},
            "detail.n[0].numeric[0]",
            "is not one of",
        ),
        (
            {"source": ["aws.x"], "detail": {"n": [{"exists": "yes"}]}},
            "detail.n[0].exists",
            "true or false",
        ),
        ({"source": ["aws.x"], "detail": {}}, "detail", "empty object"),
        ({"$or": []}, "$or", "non-empty array of objects"),
        ({"$or": [{"source": ["aws.x"]}, "x"]}, "$or[1]", "must be an object"),
        (
            {"source": ["aws.x"], "detail": {"a": [{"anything-but": {"foo": "x"}}]}},
            "detail.a[0].anything-but",
            "takes a value",
        ),
    ],
)
def test_pattern_grammar_errors_are_refused_naming_the_path(pattern, path, problem):
    with pytest.raises(ConfigError) as refused:
        _settings(pattern)
    message = str(refused.value)
    assert f"refused at {path}: " in message, message
    assert problem in message, message


def test_a_case_insensitive_prefix_is_no_fence():
    # "AWS.ec2" is not "aws.…": only an exact, case-sensitive aws. prefix is what PutEvents refuses
    fenced_loosely = {"source": [{"prefix": {"equals-ignore-case": "aws."}}]}
    with pytest.raises(ConfigError, match="does not require the source to start"):
        _settings(fenced_loosely)


def test_every_operator_eventbridge_documents_is_accepted():
    check_pattern(
        {
            "source": ["aws.ec2", {"prefix": "aws."}],
            "detail": {
                "a": ["x", 1, 1.5, True, None],
                "b": [{"suffix": ".png"}, {"equals-ignore-case": "x"}, {"wildcard": "a*b"}],
                "c": [{"anything-but": "x"}, {"anything-but": ["x", 1]}],
                "d": [{"anything-but": {"prefix": "x"}}, {"anything-but": {"suffix": ["a", "b"]}}],
                "e": [{"numeric": [">", 0, "<=", 5]}, {"exists": False}],
                "f": [{"cidr": "10.0.0.0/24"}, {"prefix": {"equals-ignore-case": "ab"}}],
            },
        }
    )
