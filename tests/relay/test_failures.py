"""Given failures that moto cannot produce (stood in for by FlakyKinesis, see conftest) or a
destination that is missing, when the relay handles a batch, then every record ends up either in
the destination stream or handed back to Lambda at or after the lowest reported sequence number."""

import base64

import pytest

from relay.service import Relay


@pytest.fixture
def run_flaky(destination, handler, monkeypatch, flaky, injected_clients, make_settings, context):
    """Runs the real handler on an event, its Relay writing to the moto destination through a
    FlakyKinesis built with the given failures; returns (response, the FlakyKinesis)."""

    def run(event, settings: dict | None = None, **failures):
        kinesis = flaky(**failures)
        relay = Relay(make_settings(**(settings or {})), injected_clients(kinesis))
        monkeypatch.setattr(handler, "relay", lambda: relay)
        return handler.lambda_handler(event, context), kinesis

    return run


def _undelivered(event, stream) -> list[int]:
    delivered = set(stream)
    return [
        int(r["kinesis"]["sequenceNumber"])
        for r in event["Records"]
        if (r["kinesis"]["partitionKey"], _data(r)) not in delivered
    ]


def _data(record) -> bytes:
    return base64.b64decode(record["kinesis"]["data"])


def _reported(response) -> list[int]:
    return [int(item["itemIdentifier"]) for item in response["batchItemFailures"]]


def test_entries_that_fail_for_a_while_are_retried_until_delivered(
    run_flaky, read_back, make_event, make_records
):
    # Given a destination where every third entry fails on its first two tries (throughput
    # exceeded, then an internal failure), as real Kinesis does under load
    pairs = make_records(1_100)
    wobbly = {key for index, (key, _) in enumerate(pairs) if index % 3 == 0}
    codes = ["ProvisionedThroughputExceededException", "InternalFailure"]

    # When the relay handles the batch
    response, kinesis = run_flaky(
        make_event(pairs),
        fail_entry=lambda key, seen: codes[seen] if key in wobbly and seen < 2 else None,
    )

    # Then the failures happened, and every record is in the stream exactly once
    assert kinesis.entries_failed == 2 * len(wobbly)
    assert response == {"batchItemFailures": []}
    assert sorted(read_back()) == sorted(pairs)


def test_entries_that_keep_failing_are_handed_back_from_the_lowest(
    run_flaky, read_back, make_event, make_records
):
    # Given a destination where a few records (not the first ones) fail on every try
    pairs = make_records(1_050)
    stuck = {pairs[i][0] for i in (17, 400, 999)}
    throttled = "ProvisionedThroughputExceededException"
    event = make_event(pairs)

    # When the relay handles the batch, allowed four tries per record
    response, kinesis = run_flaky(
        event,
        {"RELAY_MAX_ATTEMPTS": "4"},
        fail_entry=lambda key, seen: throttled if key in stuck else None,
    )

    # Then exactly the stuck records are handed back, and everything that is not in the stream
    # lies at or after the lowest sequence number reported (where Lambda restarts)
    stream = read_back()
    undelivered = _undelivered(event, stream)
    assert sorted(_reported(response)) == sorted(undelivered)
    assert len(undelivered) == 3
    assert all(seq >= min(_reported(response)) for seq in undelivered)
    assert len(stream) == len(pairs) - 3
    assert kinesis.entries_failed == 3 * 4  # tried max-attempts times, not forever


def test_a_throttled_call_is_sent_again(run_flaky, read_back, make_event, make_records):
    # Given a destination that throttles the first two PutRecords calls as a whole
    pairs = make_records(700)

    response, _ = run_flaky(
        make_event(pairs), fail_call=lambda call: "LimitExceededException" if call <= 2 else None
    )

    assert response == {"batchItemFailures": []}
    assert sorted(read_back()) == sorted(pairs)


def test_access_denied_hands_back_the_batch_and_says_so(
    run_flaky, read_back, make_event, make_records, caplog
):
    # Given a destination that denies access (stands in for a missing IAM permission or a
    # stream policy; moto does not enforce IAM here)
    pairs = make_records(1_200)
    event = make_event(pairs)

    response, kinesis = run_flaky(event, fail_call=lambda call: "AccessDeniedException")

    # Then the whole batch is handed back after one call (it would not heal by retrying),
    # and a log line names the error and the stream
    assert read_back() == []
    assert _reported(response) == [int(s["kinesis"]["sequenceNumber"]) for s in event["Records"]]
    assert kinesis.calls == 1
    assert _error_lines(caplog, "AccessDeniedException")


def test_a_missing_destination_hands_back_everything(
    aws, kinesis, handler, make_event, make_records, context, caplog
):
    # Given no destination stream at all (moto answers ResourceNotFoundException)
    event = make_event(make_records(20))

    response = handler.lambda_handler(event, context)

    # Then every record is handed back, the lowest first, and the log names stream and error
    assert _reported(response) == [int(r["kinesis"]["sequenceNumber"]) for r in event["Records"]]
    lines = _error_lines(caplog, "ResourceNotFoundException")
    assert lines and lines[0]["destination_stream"].endswith(":stream/watershed-final")
    assert kinesis.list_streams()["StreamNames"] == []


def test_the_relay_refuses_to_write_into_its_own_source(
    destination, read_back, handler, relay_env, make_event, make_records, context
):
    # Given a relay configured with the very stream its events come from
    relay_env(DESTINATION_STREAM_ARN=destination)
    event = make_event(make_records(5), source_arn=destination)

    # When it is invoked, it refuses, and writes nothing
    with pytest.raises(Exception, match="event source of this batch") as refused:
        handler.lambda_handler(event, context)
    assert type(refused.value).__name__ == "DestinationIsSourceError"
    assert read_back() == []


def test_the_loop_guard_sees_through_an_enhanced_fan_out_consumer(
    destination, read_back, handler, relay_env, make_event, make_records, context
):
    relay_env(DESTINATION_STREAM_ARN=destination)
    consumer = f"{destination}/consumer/watershed-relay:1772852400"
    event = make_event(make_records(5), source_arn=consumer)

    with pytest.raises(Exception, match="event source of this batch"):
        handler.lambda_handler(event, context)
    assert read_back() == []


def _error_lines(caplog, code: str) -> list[dict]:
    """The structured fields of the ERROR log records that carry this error code."""
    return [
        vars(record)
        for record in caplog.records
        if record.levelname == "ERROR" and getattr(record, "error_code", None) == code
    ]
