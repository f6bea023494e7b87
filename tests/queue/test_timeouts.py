"""A request never outlives the invocation: each one is bounded by a deadline read from the
Lambda context, what did not finish is re-queued for just those regions (or the account), and
the rest of the batch is handed back unchanged — so Lambda never times out on a batch and
redelivers messages that were already settled.

The context's remaining time is the clock here: a "slow step" is a fault that moves it forward
(standing in for a call that hangs on a slow endpoint, or the SDK's retries of it)."""

import threading
from dataclasses import dataclass

from onboarding.queue.workqueue import TIME_MARGIN_MS


@dataclass
class Clock:
    """A Lambda context whose remaining time the test sets."""

    remaining: int
    function_name: str = "watershed-onboarding"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:watershed-onboarding"
    )
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining


def _batch_of_two(org, function, queues):
    """The member's message first, then the other member's, as one SQS batch."""
    function.invoke({"accounts": [org.member]})
    function.invoke({"accounts": [org.other_member]})
    messages = queues.receive(queues.work, visibility=1800)
    messages.sort(key=lambda m: m["Body"].find(org.member) < 0)
    return messages


def _settled(queues, messages):
    for message in messages:  # what the event source does with a batch without failures
        queues.sqs.delete_message(QueueUrl=queues.work, ReceiptHandle=message["ReceiptHandle"])


def test_region_steps_still_running_at_the_deadline_are_requeued_alone(
    org, queued_env, function, queues, faults, reader, clock
):
    # Given one region worker (steps run in hub-region order), 70 s left in the invocation,
    # and GuardDuty in eu-west-1 hanging until the invocation has 20 s left
    queued_env(REGION_WORKERS="1")
    context = function.context = Clock(remaining=70_000)
    release = threading.Event()

    def hang():
        context.remaining = 20_000
        release.wait(5)  # never returns in time; released when the test is done

    faults.add("ListDetectors", None, response={"DetectorIds": []}, region="eu-west-1", before=hang)
    messages = _batch_of_two(org, function, queues)
    try:
        # When the batch is processed
        response = function.invoke(function.event(messages))
    finally:
        release.set()
    _settled(queues, messages)

    # Then the invocation answered in time, nothing handed back to SQS
    assert response["batchItemFailures"] == []
    [report] = response["accounts"]
    assert report["account_id"] == org.member
    assert report["regions"]["us-east-1"]["status"] == "ok"
    for region in ("eu-west-1", "eu-central-1"):  # the hung one, and the one never started
        assert report["regions"][region]["error"] == "DeadlineExceeded"
        assert report["regions"][region]["retryable"] is True
    assert reader.detector(org.member, "eu-central-1") is None

    # And the queue holds: the other member's message, back unchanged and visible at once ...
    [deferred] = queues.bodies(queues.work)
    assert deferred == {"accounts": [org.other_member], "reason": "manual", "attempt": 1}
    # ... and one retry for only the regions that did not finish
    clock.advance(30)
    bodies = queues.bodies(queues.work)
    assert {"accounts": [org.member], "regions": ["eu-central-1", "eu-west-1"],
            "reason": "manual", "attempt": 2} in bodies  # fmt: skip
    assert len(bodies) == 2
    assert queues.receive(queues.dead_letter) == []


def test_no_call_starts_after_the_deadline_and_the_account_is_requeued(
    org, function, queues, faults, reader, clock
):
    # Given DescribeAccount (membership, before anything is written) taking until only 50 s of
    # the invocation are left: less than the margin every request keeps
    context = function.context = Clock(remaining=200_000)

    def slow():
        context.remaining = TIME_MARGIN_MS - 10_000

    real_describe = {"Account": {"Id": org.member, "Status": "ACTIVE", "State": "ACTIVE"}}
    faults.add("DescribeAccount", None, response=real_describe, before=slow)
    messages = _batch_of_two(org, function, queues)

    # When the batch is processed
    response = function.invoke(function.event(messages))
    _settled(queues, messages)

    # Then the member's request failed as a whole, retryably, before any write
    assert response["batchItemFailures"] == []
    [report] = response["accounts"]
    assert (report["status"], report["error"], report["retryable"]) == (
        "failed",
        "DeadlineExceeded",
        True,
    )
    assert reader.role(org.member) is None

    # And the queue holds the other member's message as it was, and the member's retry
    [deferred] = queues.bodies(queues.work)
    assert deferred["accounts"] == [org.other_member]
    clock.advance(30)
    retry = next(b for b in queues.bodies(queues.work) if b["accounts"] == [org.member])
    assert retry == {"accounts": [org.member], "reason": "manual", "attempt": 2}
