"""SQS batches: a poison message never blocks the others and is never retried forever;
Region Opt-In events; duplicate triggers cost reads, not a second configuration."""

from dataclasses import dataclass

import boto3

from onboarding import handler


def _body(org, account):
    return {"accounts": [account], "regions": ["eu-west-1"]}


def test_poison_messages_do_not_block_the_batch_and_are_parked_once(
    raw, org, function, queues, reader
):

    batch = raw(
        "{not json",
        _body(org, org.member),
        {"hello": "world"},  # JSON, unknown shape
        "[1, 2, 3]",  # JSON, not an object
        {"accounts": ["12345"]},  # a malformed account id
        _body(org, org.other_member),
    )

    response = function.invoke(batch)

    assert response["batchItemFailures"] == []  # nothing handed back: never retried
    assert [a["status"] for a in response["accounts"]] == ["ok", "ok"]
    assert reader.detector(org.member, "eu-west-1")["Status"] == "ENABLED"
    assert reader.detector(org.other_member, "eu-west-1")["Status"] == "ENABLED"
    dead = queues.bodies(queues.dead_letter)
    assert sorted(d["message_id"] for d in dead) == ["hand-0", "hand-2", "hand-3", "hand-4"]
    assert {d["kind"] for d in dead} == {"invalid"}
    assert next(d for d in dead if d["message_id"] == "hand-0")["body"] == "{not json"
    assert queues.receive(queues.work) == []  # and nothing re-queued


def test_a_bug_in_one_message_hands_back_only_that_message(raw, org, function, monkeypatch):

    from onboarding.service import Onboarder

    real = Onboarder.onboard

    def explode_for_member(self, request, known_active=False, deadline=None):
        if request.account_id == org.member:
            raise RuntimeError("bug")
        return real(self, request, known_active, deadline)

    monkeypatch.setattr(Onboarder, "onboard", explode_for_member)

    response = function.invoke(raw(_body(org, org.member), _body(org, org.other_member)))

    # Handed back: SQS redelivers it, and after maxReceiveCount (3) parks it on the DLQ.
    assert response["batchItemFailures"] == [{"itemIdentifier": "hand-0"}]
    assert [a["account_id"] for a in response["accounts"]] == [org.other_member]


def test_out_of_time_the_rest_of_the_batch_is_put_back_not_failed(
    raw, org, function, queues, monkeypatch
):

    @dataclass
    class Hurried:
        function_name: str = "watershed-onboarding"
        memory_limit_in_mb: int = 512
        invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:x"
        aws_request_id: str = "req"
        left: int = 120_000

        def get_remaining_time_in_millis(self) -> int:
            self.left -= 50_000  # each message looks like it took 50 s
            return self.left

    response = handler.lambda_handler(
        raw(_body(org, org.member), _body(org, org.other_member)), Hurried()
    )

    assert response["batchItemFailures"] == []
    assert [a["account_id"] for a in response["accounts"]] == [org.member]
    [put_back] = queues.bodies(queues.work)
    assert put_back == _body(org, org.other_member)


def test_a_multi_account_message_fans_out_to_one_message_each(raw, org, function, queues):

    response = function.invoke(raw({"accounts": [org.member, org.other_member]}))

    assert response["accounts"] == []
    assert sorted(b["accounts"][0] for b in queues.bodies(queues.work)) == sorted(
        [org.member, org.other_member]
    )


def test_region_opt_in_onboards_exactly_that_account_and_region(
    org, function, queues, org_event, reader
):
    function.invoke(org_event("account-region-opt-in-enabled"))
    [body] = queues.bodies(queues.work)
    assert body["regions"] == ["eu-central-1"]

    [response] = function.poll()

    assert list(response["accounts"][0]["regions"]) == ["eu-central-1"]
    assert reader.detector(org.member, "eu-central-1")["Status"] == "ENABLED"
    assert reader.detector(org.member, "us-east-1") is None
    assert reader.detector(org.other_member, "eu-central-1") is None


def test_an_opted_in_region_not_yet_enabled_in_the_member_is_retried(
    org, function, queues, clock, faults, org_event, reader
):
    # The opt-in event can arrive before the member's own DescribeRegions shows the region as
    # enabled. Stand-in: DescribeRegions answers "not-opted-in" for eu-central-1 once.
    regions = boto3.client("ec2", region_name="us-east-1").describe_regions(AllRegions=True)
    lagging = [
        {**r, "OptInStatus": "not-opted-in"} if r["RegionName"] == "eu-central-1" else r
        for r in regions["Regions"]
    ]
    faults.add("DescribeRegions", None, response={"Regions": lagging}, times=1)
    function.invoke(org_event("account-region-opt-in-enabled"))

    [first] = function.poll()

    region = first["accounts"][0]["regions"]["eu-central-1"]
    assert (region["status"], region["error"], region["retryable"]) == (
        "failed",
        "RegionNotEnabledYet",
        True,
    )
    assert reader.detector(org.member, "eu-central-1") is None
    clock.advance(30)
    [retry] = queues.bodies(queues.work)
    assert retry["regions"] == ["eu-central-1"] and retry["reason"] == "RegionOptIn"

    [second] = function.poll()

    assert second["accounts"][0]["status"] == "ok"
    assert reader.detector(org.member, "eu-central-1")["Status"] == "ENABLED"


def test_a_region_not_enabled_on_a_normal_request_is_still_skipped(org, function, queues, faults):
    regions = boto3.client("ec2", region_name="us-east-1").describe_regions(AllRegions=True)
    lagging = [
        {**r, "OptInStatus": "not-opted-in"} if r["RegionName"] == "eu-central-1" else r
        for r in regions["Regions"]
    ]
    faults.add("DescribeRegions", None, response={"Regions": lagging})
    function.invoke({"accounts": [org.member]})

    [response] = function.poll()

    assert response["accounts"][0]["regions"]["eu-central-1"]["status"] == "skipped"
    assert queues.counts(queues.work)["ApproximateNumberOfMessagesDelayed"] == 0


def test_duplicate_triggers_in_separate_batches_cost_reads_not_writes(
    org, function, queues, org_event, recorder, reader
):
    # Control Tower: CreateAccountResult first, CreateManagedAccount minutes later.
    function.invoke(org_event("organizations-create-account-result-succeeded"))
    function.poll()
    assert reader.detector(org.member, "eu-west-1")["Status"] == "ENABLED"
    first_writes = [w for w in recorder.writes if w[0] not in ("SendMessageBatch",)]
    assert first_writes  # the first trigger configured the account
    recorder.clear()

    function.invoke(org_event("controltower-create-managed-account"))
    [response] = function.poll()

    assert response["accounts"][0]["status"] == "ok"
    assert all(not r["changes"] for r in response["accounts"][0]["regions"].values())
    writes = [w for w in recorder.writes if w[0] != "SendMessageBatch"]  # the enqueue itself
    assert writes == []
    reads = [op for op, _, _ in recorder.calls if op.startswith(("Get", "List", "Describe"))]
    assert reads  # it did look


def test_duplicate_triggers_in_one_batch_onboard_once(org, function, queues, org_event, recorder):
    function.invoke(org_event("organizations-create-account-result-succeeded"))
    function.invoke(org_event("controltower-create-managed-account"))
    recorder.clear()

    [response] = function.poll()

    assert [a["account_id"] for a in response["accounts"]] == [org.member]
    assert [op for op, _, _ in recorder.calls].count("DescribeAccount") == 1


def test_a_redriven_dead_letter_is_replayed_by_the_consumer(raw, org, function, queues, reader):
    # The SQS console's "Start DLQ redrive" moves the envelope itself back to the work queue.

    envelope = {
        "format": "watershed/dead-letter",
        "kind": "failed",
        "reason": "not ready after 9 attempt(s)",
        "request": {"accounts": [org.member], "regions": ["eu-west-1"], "attempt": 9},
        "report": {},
    }

    response = function.invoke(raw(envelope))

    assert response["accounts"][0]["status"] == "ok"
    assert reader.detector(org.member, "eu-west-1")["Status"] == "ENABLED"
