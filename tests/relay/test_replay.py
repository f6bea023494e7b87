"""Given on-failure records in the relay's failure queue (shaped as Lambda writes them for a
Kinesis event source mapping), when `watershed relay-replay` runs, then the named records are
read back from the regional stream and delivered byte for byte, and each message is deleted only
once its records were delivered; what the stream no longer holds is counted as expired.

moto holds the regional stream, the destination stream and the queue. Two behaviours moto does
not have are stood in for: a destination that keeps failing (FlakyKinesis, see conftest) and a
stream that trimmed records past its retention (``TrimmedKinesis`` below)."""

import json

import boto3
import pytest

from onboarding.cli.cli import main
from relay.replay import Replayer, UnreadableMessage, parse_failure_message
from relay.service import Relay

SOURCE_REGION = "eu-west-1"
ACCOUNT = "123456789012"
REGIONAL = "watershed-regional"
REGIONAL_ARN = f"arn:aws:kinesis:{SOURCE_REGION}:{ACCOUNT}:stream/{REGIONAL}"
SHARD = "shardId-000000000000"


@pytest.fixture
def regional(aws):
    """The regional stream (one shard) holding ten records; returns [(seq, key, data)]."""
    client = boto3.client("kinesis", region_name=SOURCE_REGION)
    client.create_stream(StreamName=REGIONAL, ShardCount=1)
    written = []
    for index in range(10):
        key = f"event-{index:02d}"
        data = json.dumps({"id": key, "detail": {"n": index, "bin": "\u00e9"}}).encode() + bytes(
            [0, 255, index]  # not JSON-clean on purpose: bytes are forwarded as they are
        )
        seq = client.put_record(StreamARN=REGIONAL_ARN, PartitionKey=key, Data=data)
        written.append((seq["SequenceNumber"], key, data))
    return written


@pytest.fixture
def failure_queue(aws):
    sqs = boto3.client("sqs", region_name=SOURCE_REGION)
    return sqs.create_queue(QueueName="watershed-relay-failures")["QueueUrl"]


def _on_failure_record(records, stream_arn=REGIONAL_ARN, shard=SHARD) -> str:
    """The body Lambda sends to an SQS on-failure destination for a Kinesis mapping."""
    return json.dumps(
        {
            "requestContext": {
                "requestId": "c9b8fa9f-5a7f-4aa2-af9c-0c604cde93a5",
                "functionArn": f"arn:aws:lambda:{SOURCE_REGION}:{ACCOUNT}:function:watershed-relay",
                "condition": "RecordAgeExceeded",
                "approximateInvokeCount": 612,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "",
            },
            "version": "1.0",
            "timestamp": "2026-03-08T08:38:06.021Z",
            "KinesisBatchInfo": {
                "shardId": shard,
                "startSequenceNumber": records[0][0],
                "endSequenceNumber": records[-1][0],
                "approximateArrivalOfFirstRecord": "2026-03-07T11:38:04.835Z",
                "approximateArrivalOfLastRecord": "2026-03-07T11:38:05.580Z",
                "batchSize": len(records),
                "streamArn": stream_arn,
            },
        }
    )


def _send(queue_url, body):
    boto3.client("sqs", region_name=SOURCE_REGION).send_message(
        QueueUrl=queue_url, MessageBody=body
    )


def _messages_left(queue_url) -> int:
    attributes = boto3.client("sqs", region_name=SOURCE_REGION).get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


class TrimmedKinesis:
    """The regional stream's client, hiding records before ``first_kept`` as Kinesis does once
    they passed the stream's retention (moto never trims)."""

    def __init__(self, real, first_kept: str) -> None:
        self._real = real
        self._first_kept = int(first_kept)

    def get_shard_iterator(self, **kwargs):
        return self._real.get_shard_iterator(**kwargs)

    def get_records(self, **kwargs):
        page = self._real.get_records(**kwargs)
        page["Records"] = [
            r for r in page["Records"] if int(r["SequenceNumber"]) >= self._first_kept
        ]
        return page


def test_replay_delivers_the_range_byte_identical_and_deletes_the_message(
    regional, failure_queue, destination, read_back, monkeypatch, capsys
):
    # Given an on-failure record naming records 3..7 of the regional stream
    monkeypatch.setenv("DESTINATION_STREAM_ARN", destination)
    _send(failure_queue, _on_failure_record(regional[3:8]))

    # When the operator replays the failure queue
    code = main(["relay-replay", "--failure-queue-url", failure_queue, "--json"])

    # Then exactly those records are in the destination, bytes and partition keys unchanged,
    # and the message is gone
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert sorted(read_back()) == sorted((key, data) for _, key, data in regional[3:8])
    assert _messages_left(failure_queue) == 0
    assert (summary["replayed"], summary["records_delivered"], summary["records_expired"]) == (
        1,
        5,
        0,
    )


def test_a_message_stays_while_the_destination_still_fails(
    regional, failure_queue, destination, read_back, flaky, injected_clients, make_settings
):
    # Given a destination that still throttles every call (stands in for an ongoing outage)
    _send(failure_queue, _on_failure_record(regional[0:4]))
    relay = Relay(
        make_settings(), injected_clients(flaky(fail_call=lambda call: "ThrottlingException"))
    )
    replayer = Replayer(
        relay,
        boto3.client("sqs", region_name=SOURCE_REGION),
        lambda region: boto3.client("kinesis", region_name=region),
        seconds_per_message=0.2,
    )

    # When the failure queue is replayed
    summary = replayer.run(failure_queue)

    # Then nothing was written, the message is still in the queue, and the summary says so
    assert read_back() == []
    assert _messages_left(failure_queue) == 1
    assert (summary.kept, summary.replayed, summary.ok) == (1, 0, False)
    assert summary.details[0]["undelivered"] == 4


def test_expired_records_are_counted_and_what_is_left_is_delivered(
    regional, failure_queue, destination, read_back, make_settings
):
    # Given a stream that no longer holds records 0..3 (past its retention), one message whose
    # range lies wholly in the trimmed part and one that straddles the trim point
    _send(failure_queue, _on_failure_record(regional[0:2]))
    _send(failure_queue, _on_failure_record(regional[2:7]))
    real = boto3.client("kinesis", region_name=SOURCE_REGION)
    relay = Relay(make_settings(DESTINATION_STREAM_ARN=destination))
    replayer = Replayer(
        relay,
        boto3.client("sqs", region_name=SOURCE_REGION),
        lambda region: TrimmedKinesis(real, first_kept=regional[4][0]),
    )

    # When the failure queue is replayed
    summary = replayer.run(failure_queue)

    # Then the records still held (4..6) were delivered, the six others counted as expired in
    # two ranges, and both messages are done with
    assert sorted(read_back()) == sorted((key, data) for _, key, data in regional[4:7])
    assert (summary.records_delivered, summary.records_expired, summary.expired_ranges) == (
        3,
        4,
        2,
    )
    assert summary.ok is False  # a loss happened: the exit code says so
    assert _messages_left(failure_queue) == 0


def test_a_message_that_is_not_an_on_failure_record_is_left_and_named(
    regional, failure_queue, destination, monkeypatch, capsys, read_back
):
    # Given a message someone sent by hand, one naming a stream by a malformed ARN, and one
    # naming another stream than the regional stream next to the queue (whoever can write to
    # the queue must not get a stream of their choice copied into the SIEM)
    monkeypatch.setenv("DESTINATION_STREAM_ARN", destination)
    boto3.client("kinesis", region_name=SOURCE_REGION).create_stream(
        StreamName="someone-elses", ShardCount=1
    )
    other = REGIONAL_ARN.replace(REGIONAL, "someone-elses")
    _send(failure_queue, '{"hello": "world"}')
    _send(failure_queue, _on_failure_record(regional[0:2], stream_arn="watershed-regional"))
    _send(failure_queue, _on_failure_record(regional[0:2], stream_arn=other))

    code = main(["relay-replay", "--failure-queue-url", failure_queue])

    # Then both are left in the queue, nothing is written, and the output names the problem
    out = capsys.readouterr().out
    assert code == 1
    assert _messages_left(failure_queue) == 3
    assert read_back() == []
    assert "no KinesisBatchInfo object" in out
    assert "KinesisBatchInfo.streamArn is missing or malformed" in out
    assert f"{other} is not the regional stream {REGIONAL_ARN}" in out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--failure-queue-url", "watershed-relay-failures"], "--failure-queue-url"),
        (
            [
                "--failure-queue-url",
                "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
                "--seconds-per-message",
                "0",
            ],
            "--seconds-per-message",
        ),
        (
            [
                "--failure-queue-url",
                "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
                "--destination-stream-arn",
                "streamalert",
            ],
            "DESTINATION_STREAM_ARN",
        ),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_read(argv, named, monkeypatch, capsys):
    monkeypatch.setenv("DESTINATION_STREAM_ARN", "arn:aws:kinesis:us-east-1:123456789012:stream/d")

    code = main(["relay-replay", *argv])

    assert code == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("startSequenceNumber", "49659876543210987654321098765432109876543210987654321098\n"),
        ("endSequenceNumber", "4965987654321098765432109876543210987654321098765432109" + "\u0661"),
        ("shardId", "shardId-000000000000\n"),
        ("streamArn", REGIONAL_ARN + "\n"),
    ],
)
def test_a_range_with_a_trailing_newline_or_non_ascii_digits_is_unreadable(field, value):
    # Nothing but ASCII, whole-string values reaches GetShardIterator
    body = json.loads(
        _on_failure_record([("49659876543210987654321098765432109876543210987654321098", b"x")])
    )
    body["KinesisBatchInfo"][field] = value
    with pytest.raises(
        UnreadableMessage, match=f"KinesisBatchInfo.{field} is missing or malformed"
    ):
        parse_failure_message(json.dumps(body))
