"""Not ready yet: only the failed regions are re-queued with a growing SQS delay, the cap ends in
the dead-letter queue with a replayable message, and nothing sleeps.

The delays are observed on the queue itself: moto's SQS honours DelaySeconds, and its clock is
moved by hand (`clock`), so a retry must be invisible one second before its delay and visible
at it. The faults stand in for what a fresh account answers (moto itself never refuses)."""

import pytest
from botocore.exceptions import ClientError

from onboarding.cli import cli
from onboarding.queue.workqueue import QueueSendFailed, WorkQueue, retry_delay, retry_schedule

SCHEDULE_3600 = (30, 60, 120, 240, 480, 900, 900, 870)


def test_the_documented_retry_schedule():
    assert retry_schedule(3600) == SCHEDULE_3600
    assert sum(retry_schedule(3600)) == 3600
    assert retry_schedule(100) == (30, 60, 10)
    assert retry_schedule(0) == ()
    assert max(retry_schedule(43200)) == 900  # never above the SQS maximum
    assert retry_delay(1, 3600) == 30
    assert retry_delay(8, 3600) == 870
    assert retry_delay(9, 3600) is None


def _wait_for_retry(function, queues, clock, delay):
    """Move the clock to the retry: not visible a second early, visible exactly at `delay`."""
    assert queues.counts(queues.work)["ApproximateNumberOfMessages"] == 0
    assert queues.counts(queues.work)["ApproximateNumberOfMessagesDelayed"] == 1
    clock.advance(delay - 1)
    assert queues.receive(queues.work) == []
    clock.advance(1)
    [body] = queues.bodies(queues.work)
    return body


def test_a_region_that_keeps_failing_is_isolated_retried_alone_and_dead_lettered(
    org, function, queues, clock, faults, reader
):
    # Stands in for a region whose GuardDuty subscription never becomes active.
    faults.add("ListDetectors", "SubscriptionRequiredException", "not yet", region="eu-west-1")
    function.invoke({"accounts": [org.member]})

    [first] = function.poll()

    # The message itself is done; the other regions are configured.
    assert first["batchItemFailures"] == []
    assert first["accounts"][0]["status"] == "partial"
    for region in ("us-east-1", "eu-central-1"):
        assert reader.detector(org.member, region)["Status"] == "ENABLED"
    assert reader.targets(org.member, "eu-west-1")  # forwarding in the failing region went on

    attempts = []
    for attempt, delay in enumerate(SCHEDULE_3600, start=2):
        body = _wait_for_retry(function, queues, clock, delay)
        assert body == {
            "accounts": [org.member],
            "regions": ["eu-west-1"],
            "reason": "manual",
            "attempt": attempt,
        }
        [response] = function.poll()
        assert response["batchItemFailures"] == []
        attempts.append(list(response["accounts"][0]["regions"]))

    assert attempts == [["eu-west-1"]] * len(SCHEDULE_3600)  # only that region each time
    counts = queues.counts(queues.work)
    assert counts["ApproximateNumberOfMessages"] + counts["ApproximateNumberOfMessagesDelayed"] == 0

    [dead] = queues.bodies(queues.dead_letter)
    assert dead["kind"] == "failed"
    assert dead["request"] == {
        "accounts": [org.member],
        "regions": ["eu-west-1"],
        "reason": "manual",
        "attempt": 9,
    }
    assert dead["reason"].startswith("not ready after 9 attempt(s) and 3600 s of delays")
    assert dead["report"]["regions"]["eu-west-1"]["error"] == "SubscriptionRequiredException"

    # Once the fault is gone, the dead letter is replayed and the region configured.
    faults.faults.clear()
    code = cli.main(["replay", "--dlq-url", queues.dead_letter, "--queue-url", queues.work])
    assert code == 0
    [replayed] = queues.bodies(queues.work)
    assert replayed["attempt"] == 1 and replayed["regions"] == ["eu-west-1"]
    [response] = function.poll()
    assert response["accounts"][0]["status"] == "ok"
    assert reader.detector(org.member, "eu-west-1")["Status"] == "ENABLED"
    assert queues.receive(queues.dead_letter) == []


def test_a_fresh_account_that_is_not_ready_ends_configured_after_the_delays(
    org, function, queues, clock, faults, reader, settings
):
    # A brand-new account: its admin role cannot be assumed for the first two attempts (the
    # whole request is re-queued), then GuardDuty is not subscribed yet in two regions once.
    faults.add("AssumeRole", "AccessDenied", "not assumable yet", times=4)  # 2 roles, 2 tries
    faults.add(
        "ListDetectors", "SubscriptionRequiredException", "pending", region="eu-west-1", times=1
    )
    faults.add("CreateDetector", "OptInRequired", "pending", region="eu-central-1", times=1)
    function.invoke({"accounts": [org.member], "reason": "CreateAccountResult"})

    [first] = function.poll()
    assert first["accounts"][0]["status"] == "failed"
    assert first["accounts"][0]["retryable"] is True
    body = _wait_for_retry(function, queues, clock, 30)
    assert "regions" not in body and body["attempt"] == 2  # account-level: the whole request

    function.poll()
    body = _wait_for_retry(function, queues, clock, 60)
    assert body["attempt"] == 3

    [third] = function.poll()
    assert third["accounts"][0]["status"] == "partial"
    body = _wait_for_retry(function, queues, clock, 120)
    assert body["regions"] == ["eu-central-1", "eu-west-1"] and body["attempt"] == 4

    [fourth] = function.poll()
    assert fourth["accounts"][0]["status"] == "ok"
    for region in settings.hub_regions:
        assert reader.detector(org.member, region)["Status"] == "ENABLED"
        assert reader.targets(org.member, region)
    counts = queues.counts(queues.work)
    assert counts["ApproximateNumberOfMessages"] + counts["ApproximateNumberOfMessagesDelayed"] == 0
    assert queues.receive(queues.dead_letter) == []


def test_a_permanent_error_is_dead_lettered_at_once_and_the_retryable_part_retried(
    org, function, queues, faults, reader
):
    # eu-central-1: a plain access denial (no SCP) — retrying will not help.
    # eu-west-1: not subscribed yet — worth retrying.
    faults.add("CreateDetector", "AccessDeniedException", "denied", region="eu-central-1")
    faults.add("ListDetectors", "SubscriptionRequiredException", "not yet", region="eu-west-1")
    function.invoke({"accounts": [org.member]})

    [response] = function.poll()

    assert response["batchItemFailures"] == []
    [dead] = queues.bodies(queues.dead_letter)
    assert dead["request"]["regions"] == ["eu-central-1"]
    assert dead["reason"].startswith("permanent failure")
    assert dead["report"]["regions"]["eu-central-1"]["retryable"] is False
    counts = queues.counts(queues.work)
    assert counts["ApproximateNumberOfMessagesDelayed"] == 1  # eu-west-1 only, see next
    assert reader.detector(org.member, "us-east-1")["Status"] == "ENABLED"


def test_an_account_level_permanent_failure_dead_letters_the_whole_request(
    org, function, queues, faults
):
    # IAM refuses CreateRole for good (say a permissions boundary): the account cannot be set up.
    faults.add("CreateRole", "AccessDenied", "boundary says no")
    function.invoke({"accounts": [org.member], "regions": ["eu-west-1"]})

    function.poll()

    [dead] = queues.bodies(queues.dead_letter)
    assert dead["request"] == {
        "accounts": [org.member],
        "regions": ["eu-west-1"],
        "reason": "manual",
        "attempt": 1,
    }
    assert dead["report"]["status"] == "failed" and dead["report"]["retryable"] is False
    assert queues.counts(queues.work)["ApproximateNumberOfMessagesDelayed"] == 0


def test_only_a_failed_send_hands_the_message_back(org, function, queues, faults, reader):
    # Stands in for SQS refusing the retry message (throttled, queue policy): the original is
    # handed back so SQS redelivers it, and onboarding runs again (idempotently).
    faults.add("ListDetectors", "SubscriptionRequiredException", "not yet", region="eu-west-1")
    faults.add("SendMessage", "AWS.SimpleQueueService.RequestThrottled", "slow down")
    function.invoke({"accounts": [org.member]})

    [response] = function.poll()

    [failure] = response["batchItemFailures"]
    assert failure["itemIdentifier"]
    assert queues.counts(queues.work)["ApproximateNumberOfMessagesNotVisible"] == 1


def test_a_dry_run_message_writes_nothing_and_is_done(org, function, queues, recorder, reader):
    function.invoke({"accounts": [org.member], "dry_run": True})
    recorder.clear()

    [response] = function.poll()

    assert response["accounts"][0]["regions"]["eu-west-1"]["changes"]
    member_writes = [w for w in recorder.writes if w[0] not in ("SendMessage", "DeleteMessage")]
    assert member_writes == []
    assert reader.role(org.member) is None


@pytest.mark.parametrize("cap", ["0", "45"])
def test_a_small_cap_dead_letters_sooner(org, queued_env, function, queues, clock, faults, cap):
    queued_env(RETRY_CAP_SECONDS=cap)
    faults.add("ListDetectors", "SubscriptionRequiredException", "not yet", region="eu-west-1")
    function.invoke({"accounts": [org.member], "regions": ["eu-west-1"]})

    function.poll()
    for delay in retry_schedule(int(cap)):  # 0: none; 45: 30 then 15
        _wait_for_retry(function, queues, clock, delay)
        function.poll()

    [dead] = queues.bodies(queues.dead_letter)
    assert dead["request"]["attempt"] == len(retry_schedule(int(cap))) + 1


@pytest.mark.parametrize("failing", ["dead letter", "retry"])
def test_a_follow_up_that_fails_part_way_never_forks_the_retry_chain(
    org, function, queues, clock, faults, monkeypatch, failing
):
    # Given a request with one region not ready (retry) and one failing for good (dead letter)
    faults.add("ListDetectors", "SubscriptionRequiredException", "not yet", region="eu-west-1")
    faults.add("ListDetectors", "AccessDeniedException", "no", region="eu-central-1")
    # ... and one SendMessage to the dead-letter queue (or the work queue) that fails once: stands
    # in for SQS refusing the send after the SDK's own retries (throttled, 5xx, network).
    target = queues.dead_letter if failing == "dead letter" else queues.work
    real_send = WorkQueue._send_one
    failures = [1]

    def send_one(self, url, body, delay):
        if url == target and failures:
            failures.pop()
            error = {"Error": {"Code": "ServiceUnavailable", "Message": "injected"}}
            raise QueueSendFailed("SendMessage: ServiceUnavailable") from ClientError(
                error, "SendMessage"
            )
        return real_send(self, url, body, delay)

    monkeypatch.setattr(WorkQueue, "_send_one", send_one)
    function.invoke({"accounts": [org.member]})
    [message] = queues.receive(queues.work, visibility=1800)

    # When the message is processed, handed back, and redelivered (the same SQS record again)
    first = function.invoke(function.event([message]))
    assert first["batchItemFailures"] == [{"itemIdentifier": message["MessageId"]}]
    again = function.invoke(function.event([message]))
    assert again["batchItemFailures"] == []
    queues.sqs.delete_message(QueueUrl=queues.work, ReceiptHandle=message["ReceiptHandle"])

    # Then the work queue holds exactly one live retry chain: one message, the retryable region
    clock.advance(SCHEDULE_3600[0])
    assert queues.bodies(queues.work) == [
        {"accounts": [org.member], "regions": ["eu-west-1"], "reason": "manual", "attempt": 2}
    ]
    # And the dead-letter queue holds the permanent region (a duplicate is possible and inert:
    # a dead letter only moves when someone replays it)
    dead = queues.bodies(queues.dead_letter)
    assert 1 <= len(dead) <= 2
    assert {tuple(d["request"]["regions"]) for d in dead} == {("eu-central-1",)}
