"""Given little time left, or records too large for any PutRecords call, when the relay handles
a batch, then it stops within its budget and hands back or stores what it could not send."""

import base64
from urllib.parse import unquote

import boto3
import pytest

from relay.events import parse_batch
from relay.sender import TimeBudget
from relay.service import Relay

MiB = 1024 * 1024
BUCKET = "watershed-oversize-eu-west-1"


def _reported(outcome_or_response) -> list[int]:
    items = outcome_or_response["batchItemFailures"]
    return [int(item["itemIdentifier"]) for item in items]


def _sequences(event) -> list[int]:
    return [int(r["kinesis"]["sequenceNumber"]) for r in event["Records"]]


def test_with_no_time_left_nothing_is_sent_and_all_is_handed_back(
    destination, read_back, handler, make_event, make_records, context
):
    # Given a context with less time left than the margin (1 s in the test settings)
    context.deadline_ms = 800
    event = make_event(make_records(600))

    response = handler.lambda_handler(event, context)

    # Then no record was written and the whole batch is handed back, lowest first
    assert read_back() == []
    assert _reported(response) == _sequences(event)


def test_backoff_never_sleeps_into_the_margin(
    make_settings,
    destination,
    read_back,
    make_event,
    make_records,
    flaky,
    injected_clients,
    clock,
    context,
):
    # Given a destination that always throttles some entries, 10 s left, a 5 s margin, and
    # backoff waits of 2 s, 4 s, 8 s... (jitter pinned to its maximum)
    pairs = make_records(50)
    stuck = {pairs[5][0], pairs[30][0]}
    kinesis = flaky(
        fail_entry=lambda key, seen: (
            "ProvisionedThroughputExceededException" if key in stuck else None
        )
    )
    settings = make_settings(
        RELAY_MAX_ATTEMPTS="10",
        RELAY_BACKOFF_BASE_MS="2000",
        RELAY_BACKOFF_MAX_MS="8000",
        RELAY_TIME_MARGIN_MS="5000",
    )
    relay = Relay(settings, injected_clients(kinesis), sleep=clock.sleep, rng=lambda: 1.0)
    context.deadline_ms = 10_000
    event = make_event(pairs)

    # When the relay handles the batch on the fake clock
    outcome = relay.handle(
        parse_batch(event), TimeBudget(context.get_remaining_time_in_millis, 5_000)
    )

    # Then it gave up before the margin: one wait of 2 s fitted, the next 4 s would not have
    assert context.get_remaining_time_in_millis() >= 5_000
    assert clock.now == pytest.approx(2.0)
    assert kinesis.entries_failed == 2 * 2  # two tries each, far fewer than the 10 allowed
    assert [int(s) for s in outcome.handed_back] == [_sequences(event)[5], _sequences(event)[30]]
    assert len(read_back()) == 48


def _oversize_batch(make_event, make_records):
    """Twenty ordinary records with two that can never fit: 1 MiB of data plus a key, and a
    record under 1 MiB in characters but over it in UTF-8 bytes (its key is multi-byte)."""
    pairs = make_records(20)
    pairs.insert(3, ("too-big", b"\x00\x01" * (MiB // 2)))
    wide_key = "schlüssel-ключ"  # 14 characters, 19 bytes
    pairs.insert(12, (wide_key, b"z" * (MiB - len(wide_key) + 1)))
    return pairs, make_event(pairs)


@pytest.fixture
def bucket(aws):
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return s3


def test_oversize_records_go_to_the_bucket_and_are_not_handed_back(
    destination, read_back, bucket, handler, relay_env, make_event, make_records, context
):
    relay_env(OVERSIZE_BUCKET=BUCKET)
    pairs, event = _oversize_batch(make_event, make_records)
    oversize = {3: pairs[3], 12: pairs[12]}

    response = handler.lambda_handler(event, context)

    # Then the ordinary records are in the stream, the oversize ones in the bucket, byte for
    # byte with their partition keys, and nothing is handed back
    assert response == {"batchItemFailures": []}
    assert sorted(read_back()) == sorted(p for i, p in enumerate(pairs) if i not in oversize)
    for index, (key, data) in oversize.items():
        sequence = event["Records"][index]["kinesis"]["sequenceNumber"]
        obj = bucket.get_object(
            Bucket=BUCKET, Key=f"oversize/watershed-regional/shardId-000000000003/{sequence}"
        )
        assert obj["Body"].read() == data
        metadata = obj["Metadata"]
        assert metadata["destination-stream-arn"] == destination
        if key.isascii():
            assert metadata["partition-key"] == key
        else:  # S3 metadata is ASCII: the multi-byte key travels percent-encoded, and says so
            assert metadata["partition-key-encoding"] == "url"
            assert unquote(metadata["partition-key"]) == key


def test_without_a_bucket_oversize_records_are_handed_back(
    destination, read_back, handler, make_event, make_records, context
):
    pairs, event = _oversize_batch(make_event, make_records)

    response = handler.lambda_handler(event, context)

    # Then everything else is delivered, and the two oversize records are handed back: Lambda
    # restarts at the first, the mapping's on-failure destination records them in the end
    assert sorted(read_back()) == sorted(p for i, p in enumerate(pairs) if i not in (3, 12))
    assert _reported(response) == [_sequences(event)[3], _sequences(event)[12]]


def test_a_failed_bucket_write_hands_the_record_back(
    destination, read_back, handler, relay_env, make_event, make_records, context
):
    # Given a bucket name that does not exist (moto answers NoSuchBucket)
    relay_env(OVERSIZE_BUCKET=BUCKET)
    _, event = _oversize_batch(make_event, make_records)

    response = handler.lambda_handler(event, context)

    assert _reported(response) == [_sequences(event)[3], _sequences(event)[12]]
    assert len(read_back()) == 20


def test_record_data_is_never_logged(
    destination, handler, make_event, make_records, context, caplog
):
    secret = b"TOP-SECRET-FINDING-DETAIL"
    event = make_event([("k-1", secret * 3), ("k-2", b"plain")])
    encoded = base64.b64encode(secret * 3).decode()

    handler.lambda_handler(event, context)

    logged = " ".join(str(vars(r)) for r in caplog.records)
    assert "received" in logged  # the summary line was written ...
    assert "TOP-SECRET" not in logged and encoded not in logged  # ... without the contents


class _RecordingDestination:
    """Accepts every PutRecords call and keeps what it was sent: stands in for a destination
    configured for large records (moto keeps Kinesis' default 1 MiB record limit)."""

    def __init__(self) -> None:
        self.calls: list[list[dict]] = []

    def put_records(self, *, StreamARN: str, Records: list[dict]) -> dict:
        self.calls.append(Records)
        accepted = [{"SequenceNumber": str(n), "ShardId": "shardId-0"} for n in range(len(Records))]
        return {"FailedRecordCount": 0, "Records": accepted}


def test_a_destination_configured_for_large_records_takes_them_directly(
    make_settings, make_event, injected_clients, context
):
    # Given the size limits raised for a stream configured for 10 MiB records, and a batch with
    # a 2 MiB record (oversize for a standard destination) and a small one
    destination = _RecordingDestination()
    settings = make_settings(
        RELAY_MAX_RECORD_BYTES=str(10 * MiB),
        RELAY_MAX_REQUEST_BYTES=str(10 * MiB),
        OVERSIZE_BUCKET=BUCKET,
    )
    big = b"x" * (2 * MiB)
    event = make_event([("big", big), ("small", b"y")])

    outcome = Relay(settings, injected_clients(destination)).handle(
        parse_batch(event), TimeBudget(context.get_remaining_time_in_millis, 1_000)
    )

    # Then both went to the destination in one request, nothing to the bucket or back to Lambda
    assert (outcome.oversize_stored, outcome.handed_back, outcome.relayed) == (0, (), 2)
    assert [[(r["PartitionKey"], r["Data"]) for r in call] for call in destination.calls] == [
        [("big", big), ("small", b"y")]
    ]
