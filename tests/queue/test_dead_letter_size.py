"""A dead letter always fits in one SQS message: the envelope is capped in encoded bytes.

The cap used to be 200,000 *characters* of the refused body. As sent (compact JSON, non-ASCII
escaped) one character can take 6 bytes (`\\u00e9`) or 12 (a surrogate pair), so a body of
non-ASCII text produced an envelope SQS refuses (256 KiB) and the poison message was lost with
its evidence. moto's SQS enforces the 262,144-byte limit, so the queue read back is the proof.
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from onboarding.events import OnboardingRequest
from onboarding.queue.workqueue import (
    MAX_DEAD_LETTER_BYTES,
    WorkQueue,
    dead_letter_envelope,
)
from onboarding.report import AccountReport, RegionResult

SQS_MAX_MESSAGE_BYTES = 262_144


@pytest.fixture
def queue():
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-1")
        work = sqs.create_queue(QueueName="work")["QueueUrl"]
        dead = sqs.create_queue(QueueName="dead")["QueueUrl"]
        yield sqs, WorkQueue(sqs, work, dead), dead


def _read(sqs, url) -> dict:
    [message] = sqs.receive_message(QueueUrl=url)["Messages"]
    assert len(message["Body"].encode()) <= SQS_MAX_MESSAGE_BYTES
    return json.loads(message["Body"])


def test_moto_refuses_what_the_old_character_cap_let_through(queue):
    # what this test stands on: an envelope of 200,000 "é" is over SQS's limit
    sqs, _, dead = queue
    old = {"kind": "invalid", "body": "é" * 200_000}
    with pytest.raises(sqs.exceptions.ClientError):
        sqs.send_message(QueueUrl=dead, MessageBody=json.dumps(old, separators=(",", ":")))


@pytest.mark.parametrize("character", ["é", "😈", "x", '"'])
def test_an_invalid_body_of_any_text_is_dead_lettered_cut_to_fit(queue, character):
    sqs, work_queue, dead = queue
    body = character * 300_000
    envelope = dead_letter_envelope("invalid", "body is not JSON", message_id="m1", body=body)

    assert work_queue.dead_letter(envelope)

    kept = _read(sqs, dead)
    assert kept["body_truncated"] is True
    assert body.startswith(kept["body"]) and len(kept["body"]) > 10_000
    assert kept["reason"] == "body is not JSON" and kept["message_id"] == "m1"
    encoded = len(json.dumps(kept, separators=(",", ":")).encode())
    assert encoded <= MAX_DEAD_LETTER_BYTES < SQS_MAX_MESSAGE_BYTES


def test_a_small_body_is_kept_whole(queue):
    sqs, work_queue, dead = queue
    work_queue.dead_letter(dead_letter_envelope("invalid", "x", message_id="m", body="[1,"))
    kept = _read(sqs, dead)
    assert kept["body"] == "[1," and "body_truncated" not in kept


def test_an_oversized_report_is_left_out_the_replayable_request_kept(queue):
    sqs, work_queue, dead = queue
    request = OnboardingRequest("123456789012", ("eu-west-1",), "CreateAccountResult", 9)
    reason = "é" * 30_000  # a long AWS error message, repeated in every region
    regions = [RegionResult(f"r-{i}", "failed", reason=reason, error="X") for i in range(8)]
    report = AccountReport.build("123456789012", regions)
    envelope = dead_letter_envelope("failed", "out of retries", request, report, "m")

    assert work_queue.dead_letter(envelope)

    kept = _read(sqs, dead)
    assert kept["request"] == request.as_message()
    assert "report" not in kept and "over the SQS message size" in kept["report_omitted"]


def test_hostile_bodies_are_dead_lettered_once_never_retried_never_an_aws_call(
    raw, org, function, queues, recorder
):
    # Given messages anyone allowed on the queue could write: nested past the parser's stack,
    # 1,001 accounts, a look-alike account id, an event whose detail is a list
    created = {
        "version": "0",
        "id": "1",
        "detail-type": "AWS Service Event via CloudTrail",
        "source": "aws.organizations",
        "account": org.management,
        "time": "2026-03-02T10:15:03Z",
        "region": "us-east-1",
        "resources": [],
        "detail": ["CreateAccountResult"],
    }
    batch = raw(
        "[" * 100_000 + "]" * 100_000,
        {"accounts": [f"{n:012d}" for n in range(1, 1002)]},
        {"accounts": ["123456789012\n"]},
        created,
    )

    # When the function processes the batch
    response = function.invoke(batch)

    # Then nothing is handed back, the three malformed requests are dead-lettered as invalid
    # (the deep body cut to fit), the event is ignored, and no account was reached
    assert response["batchItemFailures"] == []
    dead = {d["message_id"]: d for d in queues.bodies(queues.dead_letter)}
    assert set(dead) == {"hand-0", "hand-1", "hand-2"}
    assert "nested too deep" in dead["hand-0"]["reason"]
    assert "watershed backfill" in dead["hand-1"]["reason"]
    assert "is not 12 digits" in dead["hand-2"]["reason"]
    assert {d["kind"] for d in dead.values()} == {"invalid"}
    # (the only AWS calls: the three dead letters sent with the function's own credentials)
    assert [(op, params["QueueUrl"]) for op, _, params in recorder.calls] == [
        ("SendMessage", queues.dead_letter)
    ] * 3
    assert queues.receive(queues.work) == []
