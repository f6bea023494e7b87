"""The event source mapping stand-in: real-shaped events in, partial batch responses honoured."""

import json

import pytest

from sandbox.streams import read_stream

REGION = "eu-west-1"


@pytest.fixture(autouse=True)
def member_forwards(aws, org, forward_rule):
    """Member 1 forwards its test events to the Security bus, as an onboarded member would."""
    forward_rule(
        aws.session(org.members[0].account_id), REGION, org.security.account_id, ["sandbox.test"]
    )


def _put(aws, account_id, entries):
    events = aws.session(account_id).client("events", region_name=REGION)
    return [e["EventId"] for e in events.put_events(Entries=entries)["Entries"]]


def _test_event(**detail):
    return {"Source": "sandbox.test", "DetailType": "test", "Detail": json.dumps(detail)}


def _finding(n):
    return {
        "Source": "aws.guardduty",
        "DetailType": "GuardDuty Finding",
        "Detail": json.dumps({"n": n}),
    }


def _mapping(poller, kind):
    (mapping,) = [m for m in poller.mappings if m.kind == kind]
    return mapping


def _queue_counts(aws, org, hub, logical_id):
    sqs = aws.session(org.security.account_id).client("sqs", region_name=REGION)
    url = sqs.get_queue_url(QueueName=hub.physical_id(logical_id).rsplit("/", 1)[-1])["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_mappings_are_read_from_the_deployed_template(poller, hub):
    sqs, kinesis = _mapping(poller, "sqs"), _mapping(poller, "kinesis")
    assert (sqs.batch_size, sqs.report_batch_item_failures) == (5, True)
    assert kinesis.source_arn.endswith(hub.physical_id("Regional"))
    assert (kinesis.batch_size, kinesis.maximum_retry_attempts, kinesis.bisect_on_error) == (
        3,
        2,
        True,
    )
    assert kinesis.on_failure_arn.endswith(hub.physical_id("Failures").rsplit("/", 1)[-1])
    assert kinesis.function.environment["FAIL_KEYS"] == "poison"


def test_sqs_batches_arrive_in_the_lambda_shape_with_the_function_environment(
    aws, org, poller, runtime
):
    # Given two events from the pinned account on their way to the queue
    event_ids = _put(aws, org.members[0].account_id, [_test_event(n=1), _test_event(n=2)])

    # When the poller drains the mappings
    deliveries = poller.drain()

    # Then the record function ran once, as the Security account, in its region, with its settings
    mapping = _mapping(poller, "sqs")
    (seen,) = runtime.module(mapping.function, "sandbox_fixture.record").SEEN
    assert [d.records for d in deliveries] == [2]
    assert seen["account"] == org.security.account_id
    assert seen["region"] == REGION
    assert seen["setting"] == "from-template"
    assert 0 < seen["remaining_ms"] <= 30_000
    records = seen["event"]["Records"]
    assert [json.loads(r["body"])["id"] for r in records] == event_ids
    assert set(records[0]) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert records[0]["eventSource"] == "aws:sqs"
    assert records[0]["eventSourceARN"] == mapping.source_arn
    assert records[0]["attributes"]["ApproximateReceiveCount"] == "1"


def test_only_the_messages_that_succeeded_are_deleted(aws, org, hub, poller):
    _put(
        aws, org.members[0].account_id, [_test_event(n=1), _test_event(fail=True), _test_event(n=3)]
    )

    (delivery,) = poller.drain()

    assert len(delivery.failed) == 1 and not delivery.whole_batch_failed
    assert _queue_counts(aws, org, hub, "Inbox") == (0, 1)  # the failed one waits in flight


def test_a_function_error_leaves_the_whole_batch_on_the_queue(aws, org, hub, poller):
    _put(aws, org.members[0].account_id, [_test_event(n=1), _test_event(**{"raise": True})])

    (delivery,) = poller.drain()

    assert delivery.whole_batch_failed and "asked to raise" in delivery.invocation.error
    assert _queue_counts(aws, org, hub, "Inbox") == (0, 2)


def test_kinesis_records_are_relayed_and_a_poison_record_ends_at_the_on_failure_queue(
    aws, org, hub, poller, runtime
):
    # Given findings on the regional stream, the third one keyed so that the function hands it back
    security = aws.session(org.security.account_id)
    regional = (
        f"arn:aws:kinesis:{REGION}:{org.security.account_id}:stream/{hub.physical_id('Regional')}"
    )
    kinesis = security.client("kinesis", region_name=REGION)
    for key in ("a", "b", "poison", "c", "d"):
        kinesis.put_record(StreamARN=regional, Data=key.encode(), PartitionKey=key)

    # When the poller drains the stream
    poller.drain()

    # Then every other record reached the output stream: the ones before the poison exactly once,
    # the ones after it once per retry of the batch that starts at the poison (at-least-once)
    out = [r["Data"] for r in read_stream(security, hub.outputs["OutStreamArn"])]
    assert out == [b"a", b"b", b"c", b"d", b"c", b"d"]
    # and the batch from the poison on was tried 1 + MaximumRetryAttempts times, then described
    # on the on-failure queue
    mapping = _mapping(poller, "kinesis")
    assert runtime.invocations(mapping.function) == 3
    sqs = security.client("sqs", region_name=REGION)
    url = sqs.get_queue_url(QueueName=hub.physical_id("Failures").rsplit("/", 1)[-1])["QueueUrl"]
    (message,) = sqs.receive_message(QueueUrl=url)["Messages"]
    description = json.loads(message["Body"])
    info = description["KinesisBatchInfo"]
    assert (info["batchSize"], info["streamArn"]) == (3, regional)
    assert description["requestContext"]["condition"] == "RetryAttemptsExhausted"
    poison = next(r for r in read_stream(security, regional) if r["PartitionKey"] == "poison")
    assert info["startSequenceNumber"] == poison["SequenceNumber"]


def test_kinesis_events_have_the_lambda_shape(aws, org, hub, poller, runtime):
    event_id = _put(aws, org.security.account_id, [_finding(1)])[0]

    poller.drain()

    mapping = _mapping(poller, "kinesis")
    forwarded = read_stream(aws.session(org.security.account_id), hub.outputs["OutStreamArn"])
    assert json.loads(forwarded[0]["Data"])["id"] == event_id
    assert forwarded[0]["PartitionKey"] == event_id
    steps = [hop.step for hop in aws.journal.hops(event_id)]
    assert steps == [
        f"rule {hub.physical_id('CollectRule')} → Kinesis (shim)",
        f"kinesis mapping → {mapping.function.name}",
    ]


@pytest.mark.parametrize("response", [{"batchItemFailures": [{"itemIdentifier": ""}]}, "nonsense"])
def test_an_invalid_partial_response_fails_the_whole_batch(response):
    from sandbox.poller import _batch_item_failures

    assert _batch_item_failures(response, {"1", "2"}) is None


def test_a_latest_mapping_starts_after_what_the_stream_already_holds(
    aws, org, runtime, fixture_app
):
    from sandbox.lambda_runtime import FunctionSpec
    from sandbox.poller import EventSourceMappingPoller, Mapping

    security = aws.session(org.security.account_id)
    kinesis = security.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="latest", ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName="latest")["StreamDescriptionSummary"][
        "StreamARN"
    ]
    kinesis.put_record(StreamARN=arn, Data=b"old", PartitionKey="k")
    role = security.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")
    function = FunctionSpec(
        account_id=org.security.account_id,
        region=REGION,
        name="latest-reader",
        arn=f"arn:aws:lambda:{REGION}:{org.security.account_id}:function:latest-reader",
        handler="sandbox_fixture.coldstart.lambda_handler",
        role_arn=role["Role"]["Arn"],
        timeout_seconds=10,
    )
    mapping = Mapping("m", function, arn, 10, False, starting_position="LATEST")
    poller = EventSourceMappingPoller(aws, runtime, [mapping])

    assert poller.drain() == []
    kinesis.put_record(StreamARN=arn, Data=b"new", PartitionKey="k")
    (delivery,) = poller.drain()
    assert delivery.records == 1
