"""What moto 5 itself does on watershed's path, without the sandbox's changes.

These pin the findings that sandbox/shims.py is built on. If one fails after a moto upgrade,
moto changed: revisit the shim it justifies (named in each test) rather than the test.
"""

import json
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws


def _session(account_role_arn):
    credentials = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=account_role_arn, RoleSessionName="moto-behaviour"
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


@pytest.fixture
def two_accounts():
    with mock_aws():
        org = boto3.client("organizations", region_name="us-east-1")
        org.create_organization(FeatureSet="ALL")
        ids = [
            org.create_account(Email=f"{n}@example.com", AccountName=n)["CreateAccountStatus"][
                "AccountId"
            ]
            for n in ("security", "member")
        ]
        yield {
            name: (account, _session(f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole"))
            for name, account in zip(("security", "member"), ids, strict=True)
        }


def _queue(session, region, name):
    sqs = session.client("sqs", region_name=region)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return sqs, url, arn


def _forward_findings(two_accounts, member_region):
    """The member's rule in `member_region` sends findings to the Security bus in eu-west-1,
    where a rule puts every finding on a queue. Returns (sqs, queue url, member events)."""
    security_id, security = two_accounts["security"]
    _, member = two_accounts["member"]
    sqs, url, arn = _queue(security, "eu-west-1", "seen")
    security.client("events", region_name="eu-west-1").put_rule(
        Name="all", EventPattern=json.dumps({"source": ["aws.guardduty"]})
    )
    security.client("events", region_name="eu-west-1").put_targets(
        Rule="all", Targets=[{"Id": "q", "Arn": arn}]
    )
    events = member.client("events", region_name=member_region)
    events.put_rule(Name="fwd", EventPattern=json.dumps({"source": ["aws.guardduty"]}))
    events.put_targets(
        Rule="fwd",
        Targets=[{"Id": "bus", "Arn": f"arn:aws:events:eu-west-1:{security_id}:event-bus/default"}],
    )
    return sqs, url, events


def test_bus_to_bus_delivery_rewrites_the_envelope(two_accounts):
    # justifies EventBridgeDelivery._to_bus: AWS keeps id, account, time and resources
    sqs, url, events = _forward_findings(two_accounts, "eu-west-1")

    sent = events.put_events(
        Entries=[
            {
                "Source": "aws.guardduty",
                "DetailType": "GuardDuty Finding",
                "Detail": json.dumps({"severity": 5}),
                "Resources": ["arn:aws:ec2:eu-west-1:1:instance/i-1"],
                "Time": datetime(2026, 3, 7, 3, 10, tzinfo=UTC),
            }
        ]
    )["Entries"][0]

    body = json.loads(sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"])
    assert body["detail"] == {"severity": 5}  # delivered across accounts ...
    assert body["id"] != sent["EventId"]  # ... but as a new event
    assert body["time"] != "2026-03-07T03:10:00Z"
    assert body["resources"] == []
    assert "account" not in body  # and the SQS target gets no `account` at all (see next test)


def test_sqs_target_body_leaves_out_account():
    # justifies EventBridgeDelivery's SQS branch: AWS sends the whole event
    with mock_aws():
        sqs, url, arn = _queue(boto3.Session(), "us-east-1", "q")
        events = boto3.client("events", region_name="us-east-1")
        events.put_rule(Name="r", EventPattern=json.dumps({"source": ["x"]}))
        events.put_targets(Rule="r", Targets=[{"Id": "q", "Arn": arn}])
        events.put_events(Entries=[{"Source": "x", "DetailType": "y", "Detail": "{}"}])
        body = json.loads(sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"])
    assert sorted(body) == sorted(
        ["id", "time", "version", "detail-type", "source", "region", "resources", "detail"]
    )


def test_kinesis_target_makes_put_events_fail():
    # justifies EventBridgeToKinesisShim
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        kinesis.create_stream(StreamName="s", ShardCount=1)
        stream_arn = kinesis.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"][
            "StreamARN"
        ]
        events = boto3.client("events", region_name="us-east-1")
        events.put_rule(Name="r", EventPattern=json.dumps({"source": ["x"]}))
        events.put_targets(Rule="r", Targets=[{"Id": "k", "Arn": stream_arn}])
        with pytest.raises(NotImplementedError):
            events.put_events(Entries=[{"Source": "x", "DetailType": "y", "Detail": "{}"}])


def test_a_scheduled_rule_with_a_lambda_target_makes_every_put_events_fail():
    # justifies skipping scheduled rules: the hub's daily reconcile schedule lives on the same bus
    with mock_aws():
        events = boto3.client("events", region_name="us-east-1")
        events.put_rule(Name="daily", ScheduleExpression="rate(1 day)")
        events.put_targets(
            Rule="daily",
            Targets=[{"Id": "f", "Arn": "arn:aws:lambda:us-east-1:123456789012:function:f"}],
        )
        with pytest.raises(NotImplementedError):
            events.put_events(Entries=[{"Source": "any", "DetailType": "y", "Detail": "{}"}])


def test_a_disabled_rule_still_receives_events():
    # justifies the rule-state check in EventBridgeDelivery.send_to_targets
    with mock_aws():
        sqs, url, arn = _queue(boto3.Session(), "us-east-1", "q")
        events = boto3.client("events", region_name="us-east-1")
        events.put_rule(Name="r", EventPattern=json.dumps({"source": ["x"]}), State="DISABLED")
        events.put_targets(Rule="r", Targets=[{"Id": "q", "Arn": arn}])
        events.put_events(Entries=[{"Source": "x", "DetailType": "y", "Detail": "{}"}])
        assert len(sqs.receive_message(QueueUrl=url).get("Messages", [])) == 1


def test_test_event_pattern_answers_without_a_result():
    # why the shim relies on moto's own matcher (Rule.event_pattern) instead of TestEventPattern
    with mock_aws():
        response = boto3.client("events", region_name="us-east-1").test_event_pattern(
            EventPattern=json.dumps({"source": ["x"]}),
            Event=json.dumps(
                {
                    "id": "1",
                    "source": "x",
                    "detail-type": "d",
                    "account": "123456789012",
                    "time": "2026-01-01T00:00:00Z",
                    "region": "us-east-1",
                    "resources": [],
                    "detail": {},
                }
            ),
        )
    assert "Result" not in response


def test_assume_role_succeeds_for_a_role_that_does_not_exist():
    # justifies the strict AssumeRole patch (Control Tower accounts have another role name)
    with mock_aws():
        org = boto3.client("organizations", region_name="us-east-1")
        org.create_organization(FeatureSet="ALL")
        account = org.create_account(
            Email="ct@example.com", AccountName="ct", RoleName="AWSControlTowerExecution"
        )["CreateAccountStatus"]["AccountId"]
        session = _session(f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole")
        roles = [r["RoleName"] for r in session.client("iam").list_roles()["Roles"]]
        identity = session.client("sts", region_name="us-east-1").get_caller_identity()
    assert roles == ["AWSControlTowerExecution"]  # CreateAccount honours RoleName ...
    assert identity["Account"] == account  # ... yet the missing role was "assumed"


def test_an_sqs_event_source_mapping_consumes_messages_itself():
    # justifies detaching moto's own ESM delivery: the sandbox poller must see the messages
    with mock_aws(config={"lambda": {"use_docker": False}}):
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(
            RoleName="fn",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        lam = boto3.client("lambda", region_name="us-east-1")
        lam.create_function(
            FunctionName="fn",
            Runtime="python3.13",
            Role=role,
            Handler="x.handler",
            Code={"ZipFile": b"not really a zip"},
        )
        sqs, url, arn = _queue(boto3.Session(), "us-east-1", "q")
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="fn", BatchSize=1)
        sqs.send_message(QueueUrl=url, MessageBody="{}")
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        listed = lam.list_event_source_mappings()["EventSourceMappings"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert [m["EventSourceArn"] for m in listed] == [arn]


def test_assume_role_chains_cross_accounts_and_each_hop_lands_in_the_role_s_account(
    two_accounts,
):
    # what the onboarding chain (function role → launcher → member role) relies on
    security_id, _ = two_accounts["security"]
    member_id, member = two_accounts["member"]
    hop = member.client("sts", region_name="eu-west-1").assume_role(
        RoleArn=f"arn:aws:iam::{security_id}:role/OrganizationAccountAccessRole",
        RoleSessionName="second-hop",
    )["Credentials"]
    chained = boto3.Session(
        aws_access_key_id=hop["AccessKeyId"],
        aws_secret_access_key=hop["SecretAccessKey"],
        aws_session_token=hop["SessionToken"],
    )

    identity = chained.client("sts", region_name="eu-west-1").get_caller_identity()
    queues = chained.client("sqs", region_name="eu-west-1").list_queues().get("QueueUrls", [])
    member.client("sqs", region_name="eu-west-1").create_queue(QueueName="member-only")

    assert identity["Account"] == security_id != member_id
    assert identity["Arn"].endswith(":assumed-role/OrganizationAccountAccessRole/second-hop")
    assert queues == []  # each account has its own backends
    assert chained.client("sqs", region_name="eu-west-1").list_queues().get("QueueUrls", []) == []


def test_a_cross_region_bus_target_is_delivered_with_the_envelope_rewritten(two_accounts):
    # justifies EventBridgeDelivery._to_bus for direct delivery mode (issue 13): moto does
    # deliver to a bus in another region, but as a new event stamped with the receiving region
    # (AWS keeps id and region), and without a RoleArn, which AWS requires there.
    sqs, url, events = _forward_findings(two_accounts, "ap-southeast-2")

    sent = events.put_events(
        Entries=[{"Source": "aws.guardduty", "DetailType": "GuardDuty Finding", "Detail": "{}"}]
    )["Entries"][0]

    body = json.loads(sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"])
    assert body["detail"] == {}  # delivered across accounts and regions ...
    assert body["id"] != sent["EventId"]  # ... as a new event
    assert body["region"] == "eu-west-1"  # raised in ap-southeast-2
