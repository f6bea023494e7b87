"""The audit fanned out through the work queue (onboarding.audit.audit_fanout), end to end on moto.

Given the zoo (an account in every state, including accounts whose audit fails: an admin role
that cannot be assumed, a region denied), the fan-out audit puts one message per ACTIVE account
on the work queue; the queue consumer (QueueWorker, as the Lambda runs it) audits each and
writes its result to S3; the message that completes the set assembles one report, equal to the
inline audit's for the same organization. A lost message shows up as an `error`, never as an
omission. moto's S3 honours `If-None-Match: *` (412 PreconditionFailed), which decides who
assembles."""

import json
import threading

import boto3
import pytest
from auditzoo import InjectingFactory

from onboarding.audit import audit_fanout
from onboarding.audit.audit import Auditor
from onboarding.audit.audit_fanout import NO_RESULT, AuditStore, FanoutAudit
from onboarding.errors import InvalidRequest
from onboarding.queue.workqueue import QueueSendFailed, QueueWorker, WorkQueue

BUCKET = "watershed-audit-test"
VOLATILE = ("generated_at", "duration_seconds")  # differ between any two runs


@pytest.fixture(scope="module")
def world(zoo):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    sqs = boto3.client("sqs", region_name="us-east-1")
    work = sqs.create_queue(QueueName="watershed-work-audit")["QueueUrl"]
    dead = sqs.create_queue(QueueName="watershed-work-audit-dlq")["QueueUrl"]
    factory = InjectingFactory(zoo.org.settings, zoo.faults)
    auditor = Auditor(zoo.org.settings, factory)
    queue = WorkQueue(sqs, work, dead)
    fanout = FanoutAudit(auditor, AuditStore(s3, BUCKET), queue.send)
    inline = auditor.run().as_dict()
    return s3, sqs, queue, fanout, inline


def receive_all(sqs, url):
    messages = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600
    ).get("Messages", []):
        messages += batch
    return messages


def as_records(messages, url):
    """The SQS event records Lambda hands the function (aws-events.md, SQS batch)."""
    return [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1767225600000"},
            "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:watershed-work-audit",
            "awsRegion": "us-east-1",
        }
        for m in messages
    ]


def keys(s3, prefix):
    return sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    )


def started_run(world, monkeypatch, run, group_size):
    """A run started in groups of `group_size`: its messages, and the queue consumer."""
    _, sqs, queue, fanout, _ = world
    monkeypatch.setattr(audit_fanout, "GROUP_SIZE", group_size)
    started = fanout.start(run=run)
    worker = QueueWorker(fanout.auditor.onboarder, queue, fanout.audit_account)
    return started, receive_all(sqs, queue.queue_url), worker


def stable(report):
    return {k: v for k, v in report.items() if k not in VOLATILE}


def test_one_message_per_account_results_in_s3_and_one_report_equal_to_the_inline_audit(zoo, world):
    s3, sqs, queue, fanout, inline = world
    # When the audit is started
    started = fanout.start(run="run-complete")

    # Then one message per ACTIVE account is on the queue, and the manifest and listed.json
    # (the listing is finished: 1 group) are written last
    messages = receive_all(sqs, queue.queue_url)
    bodies = [json.loads(m["Body"]) for m in messages]
    accounts = sorted(b["audit"]["account"] for b in bodies)
    assert accounts == sorted(zoo.expected) and started.expected == len(accounts)
    assert {(b["audit"]["group"], b["audit"]["group_size"]) for b in bodies} == {(0, len(bodies))}
    assert keys(s3, "audits/run-complete/") == [
        "audits/run-complete/listed.json",
        "audits/run-complete/manifest.json",
    ]
    assert fanout.store.get_json("audits/run-complete/listed.json") == {"groups": 1}

    # When the queue consumer processes them (two batches, as two invocations would)
    worker = QueueWorker(fanout.auditor.onboarder, queue, fanout.audit_account)
    records = as_records(messages, queue.queue_url)
    first = worker.process(records[:5])
    assert keys(s3, "audits/run-complete/report") == []  # not complete yet: no report
    second = worker.process(records[5:])

    # Then every account's result is in S3, and exactly one report, equal to the inline audit
    assert first.failures == second.failures == []
    assert keys(s3, "audits/run-complete/accounts/") == [  # one group: fewer than 100
        f"audits/run-complete/accounts/00000/{a}.json" for a in accounts
    ]
    # the group's roll-up holds every result of the group, as written
    assert keys(s3, "audits/run-complete/groups/") == ["audits/run-complete/groups/00000.json"]
    rollup = fanout.store.get_json("audits/run-complete/groups/00000.json")
    assert sorted(r["account_id"] for r in rollup) == accounts
    report = json.loads(
        s3.get_object(Bucket=BUCKET, Key="audits/run-complete/report.json")["Body"].read()
    )
    assert stable(report) == stable(inline)
    assert {a["account_id"]: {r: c["state"] for r, c in a["regions"].items()}
            for a in report["accounts"]} == zoo.expected  # fmt: skip
    locked = next(a for a in report["accounts"] if a["account_id"] == zoo.org.accounts["locked"])
    assert {c["error"] for c in locked["regions"].values()} == {"AccessDenied"}  # failed: error
    html = s3.get_object(Bucket=BUCKET, Key="audits/run-complete/report.html")["Body"].read()
    assert zoo.org.accounts["locked"].encode() in html
    assert b"<script>window.pwned=1</script>" not in html  # the zoo's hostile name, escaped

    # And assembling again (a late duplicate) writes nothing: If-None-Match decides
    assert fanout.assemble("run-complete") is None
    # A message SQS delivers a second time re-rolls its group but does not re-assemble
    read = []
    get_json = fanout.store.get_json
    fanout.store.get_json = lambda key: read.append(key) or get_json(key)
    try:
        assert fanout.audit_account(json.loads(messages[0]["Body"])) is None
    finally:
        del fanout.store.get_json
    assert not [k for k in read if "/groups/" in k]  # no roll-up read to assemble again


def test_a_lost_account_is_an_error_in_the_report_never_an_omission(zoo, world):
    s3, sqs, queue, fanout, inline = world
    fanout.start(run="run-lost")
    messages = receive_all(sqs, queue.queue_url)
    lost = next(m for m in messages if zoo.org.accounts["configured"] in m["Body"])
    worker = QueueWorker(fanout.auditor.onboarder, queue, fanout.audit_account)

    # When every message but one is processed (the other one dead-lettered, say)
    worker.process(as_records([m for m in messages if m is not lost], queue.queue_url))

    # Then the count is not complete, so nothing is assembled ...
    assert keys(s3, "audits/run-lost/report") == []
    assert fanout.unfinished_runs() == ["run-lost"]
    # ... until the run is finalized (the next scheduled start does it, or the CLI's timeout)
    assert fanout.finalize("run-lost") == "audits/run-lost/report.json"
    report = json.loads(
        s3.get_object(Bucket=BUCKET, Key="audits/run-lost/report.json")["Body"].read()
    )
    [account] = [a for a in report["accounts"] if a["account_id"] == zoo.org.accounts["configured"]]
    assert account["state"] == "error"
    assert {c["error"] for c in account["regions"].values()} == {NO_RESULT}
    others = [a for a in report["accounts"] if a is not account]
    assert others == [a for a in inline["accounts"] if a["account_id"] != account["account_id"]]
    assert report["ok"] is False and report["totals"]["error"] >= 3
    assert fanout.unfinished_runs() == []


def test_a_forged_audit_message_is_refused_before_any_call(zoo, world):
    s3, sqs, queue, fanout, _ = world
    forged = {"audit": {"run": "../x", "account": zoo.org.accounts["configured"],
                        "regions": ["us-east-1"]}}  # fmt: skip
    with pytest.raises(InvalidRequest, match="bad run id"):
        fanout.audit_account(forged)
    outside = {"audit": {"run": "r", "account": zoo.org.accounts["configured"],
                         "regions": ["eu-north-1"]}}  # fmt: skip
    with pytest.raises(InvalidRequest, match="HUB_REGIONS"):
        fanout.audit_account(outside)
    assert keys(s3, "audits/r/") == [] and keys(s3, "audits/../") == []

    # Through the consumer: dead-lettered as invalid, the batch goes on
    worker = QueueWorker(fanout.auditor.onboarder, queue, fanout.audit_account)
    sqs.send_message(QueueUrl=queue.queue_url, MessageBody=json.dumps(forged))
    result = worker.process(as_records(receive_all(sqs, queue.queue_url), queue.queue_url))
    assert result.failures == [] and result.counts["MessagesRefused"] == 1
    [dead] = receive_all(sqs, queue.dead_letter_url)
    assert "bad run id" in json.loads(dead["Body"])["reason"]


def test_groups_complete_one_by_one_and_the_last_group_assembles(zoo, world, monkeypatch):
    # Given groups of 3 accounts (100 in production), processed in reverse order, one by one
    s3, _, queue, _, inline = world
    started, messages, worker = started_run(world, monkeypatch, "run-groups", 3)
    groups = -(-started.expected // 3)

    for done, message in enumerate(reversed(messages), start=1):
        worker.process(as_records([message], queue.queue_url))
        # Then nothing is assembled before the last account's result is written
        assert bool(keys(s3, "audits/run-groups/report.json")) == (done == len(messages))

    assert len(keys(s3, "audits/run-groups/groups/")) == groups > 1
    report = json.loads(
        s3.get_object(Bucket=BUCKET, Key="audits/run-groups/report.json")["Body"].read()
    )
    assert stable(report) == stable(inline)


def test_groups_are_sent_while_the_listing_goes_on_and_the_start_assembles_if_last(
    zoo, world, monkeypatch
):
    """The workers finish every group before the listing ends (here: each group's messages are
    audited the moment they are sent): no worker can assemble (listed.json is not written yet),
    so the start, after writing it, finds every group rolled up and assembles."""
    s3, *_, inline = world
    monkeypatch.setattr(audit_fanout, "GROUP_SIZE", 3)
    listed, first_send_after = [], []
    sent = threading.Event()
    members = Auditor._members

    def listing(self, orgs, accounts):  # ListAccounts, one member at a time
        found = list(members(self, orgs, accounts))
        for i, member in enumerate(found):
            if i == len(found) - 1:  # before the last account is listed, a group was sent
                assert sent.wait(10), "no group was sent while the accounts were listed"
            listed.append(member.account_id)
            yield member

    monkeypatch.setattr(Auditor, "_members", listing)
    auditor = Auditor(zoo.org.settings, InjectingFactory(zoo.org.settings, zoo.faults))
    assembled_by_workers = []

    def send_and_audit(bodies):  # the consumer, as fast as it can be
        if not first_send_after:
            first_send_after.append(len(listed))
        sent.set()
        assembled_by_workers.extend(fanout.audit_account(body) for body in bodies)

    fanout = FanoutAudit(auditor, AuditStore(s3, BUCKET), send_and_audit)
    started = fanout.start(run="run-streamed")

    assert first_send_after[0] < started.expected  # streamed, not sent after the listing
    assert len(assembled_by_workers) == started.expected and not any(assembled_by_workers)
    assert len(keys(s3, "audits/run-streamed/groups/")) == -(-started.expected // 3)
    report = fanout.store.get_json("audits/run-streamed/report.json")  # the start assembled
    assert stable(report) == stable(inline)


def test_the_assembler_reads_one_roll_up_per_group_not_every_account(zoo, world, monkeypatch):
    _, _, queue, fanout, inline = world
    started, messages, worker = started_run(world, monkeypatch, "run-rollups", 4)
    worker.process(as_records(messages[:-1], queue.queue_url))
    read = []
    get_json = fanout.store.get_json
    monkeypatch.setattr(fanout.store, "get_json", lambda key: read.append(key) or get_json(key))

    # When the last message completes the last group
    worker.process(as_records(messages[-1:], queue.queue_url))

    # Then the report was assembled from the roll-ups: the last group's own accounts (its
    # roll-up), listed.json, the manifest, and one roll-up per group
    groups = -(-started.expected // 4)
    rollups = [k for k in read if "/groups/" in k]
    assert len(rollups) == groups and len(set(rollups)) == groups
    assert len([k for k in read if "/accounts/" in k]) <= 4  # the completed group only
    report = fanout.store.get_json("audits/run-rollups/report.json")
    assert stable(report) == stable(inline)


def test_a_batch_of_audit_messages_is_audited_side_by_side(zoo, world):
    """Five messages in one batch run at once (a barrier of five parties would break if they
    ran one after another); a forged one in the same batch is still dead-lettered as invalid."""
    _, sqs, queue, fanout, _ = world
    barrier = threading.Barrier(5, timeout=10)
    audited = []

    def audit(payload):
        audit_fanout._message(payload, fanout.auditor.settings)  # refuses the forged one
        barrier.wait()
        audited.append(payload["audit"]["account"])

    accounts = [f"{n:012d}" for n in range(555500000000, 555500000005)]
    body = {"run": "r", "regions": ["us-east-1"], "group": 0, "group_size": 5}
    for account in [*accounts, "12345"]:
        message = json.dumps({"audit": {**body, "account": account}})
        sqs.send_message(QueueUrl=queue.queue_url, MessageBody=message)
    records = as_records(receive_all(sqs, queue.queue_url), queue.queue_url)

    result = QueueWorker(fanout.auditor.onboarder, queue, audit).process(records)

    assert sorted(audited) == accounts and result.failures == []
    assert result.counts["AccountsAudited"] == 5 and result.counts["MessagesRefused"] == 1
    [dead] = receive_all(sqs, queue.dead_letter_url)
    assert "is not 12 digits" in json.loads(dead["Body"])["reason"]


def test_finalize_reads_roll_ups_and_the_accounts_of_groups_without_one(zoo, world, monkeypatch):
    # Given groups of 3, every message processed but one (its group is never rolled up)
    _, _, queue, fanout, inline = world
    _, messages, worker = started_run(world, monkeypatch, "run-partial", 3)
    lost = messages[4]  # in group 1
    worker.process(as_records([m for m in messages if m is not lost], queue.queue_url))
    rolled = fanout._rollups("run-partial")
    assert len(rolled) == -(-len(messages) // 3) - 1 >= 2  # every group but the lost one's

    # When the run is finalized
    assert fanout.finalize("run-partial") == "audits/run-partial/report.json"

    # Then the rolled-up groups and the other two accounts of group 1 are reported as audited,
    # and only the lost account as NoResult
    report = fanout.store.get_json("audits/run-partial/report.json")
    lost_id = json.loads(lost["Body"])["audit"]["account"]
    by_id = {a["account_id"]: a for a in report["accounts"]}
    assert {c["error"] for c in by_id[lost_id]["regions"].values()} == {NO_RESULT}
    assert [a for a in report["accounts"] if a["account_id"] != lost_id] == [
        a for a in inline["accounts"] if a["account_id"] != lost_id
    ]


def test_a_send_failure_stops_the_start_before_any_manifest(zoo, world, monkeypatch):
    s3, *_ = world
    monkeypatch.setattr(audit_fanout, "GROUP_SIZE", 3)
    sent = []

    def send(bodies):  # the queue refuses the first group (SendMessageBatch failed entries)
        if not sent:
            sent.append(bodies)
            raise QueueSendFailed("1 of 3 not sent", unsent=bodies[:1])
        sent.append(bodies)

    auditor = Auditor(zoo.org.settings, InjectingFactory(zoo.org.settings, zoo.faults))
    fanout = FanoutAudit(auditor, AuditStore(s3, BUCKET), send)
    with pytest.raises(QueueSendFailed, match="not sent"):
        fanout.start(run="run-unsent")
    # No manifest, no listed.json: the run is never assembled as if its listing were whole
    assert keys(s3, "audits/run-unsent/") == []


def test_an_empty_organization_is_assembled_by_the_start(zoo, world, monkeypatch):
    s3, *_ = world
    monkeypatch.setattr(Auditor, "_members", lambda self, orgs, accounts: iter(()))
    auditor = Auditor(zoo.org.settings, InjectingFactory(zoo.org.settings, zoo.faults))
    fanout = FanoutAudit(auditor, AuditStore(s3, BUCKET), lambda bodies: pytest.fail("sent"))
    started = fanout.start(run="run-empty")
    assert started.expected == 0
    report = fanout.store.get_json("audits/run-empty/report.json")
    assert report["accounts"] == [] and fanout.store.get_json("audits/run-empty/listed.json") == {
        "groups": 0
    }


def test_forged_messages_cannot_hide_regions_or_complete_a_run_early(zoo, world):
    """A principal that can send to the queue (an admin of the Security account) forges: a
    message naming one region for a real account, and a group number past the run's groups."""
    _, sqs, queue, fanout, _ = world
    fanout.start(run="run-forged")
    messages = receive_all(sqs, queue.queue_url)
    body = json.loads(messages[0]["Body"])
    account = body["audit"]["account"]
    hub = list(body["audit"]["regions"])
    worker = QueueWorker(fanout.auditor.onboarder, queue, fanout.audit_account)

    # When a forged stray group is rolled up before the real messages are processed
    stray = {"audit": {**body["audit"], "regions": hub[:1], "group": 7, "group_size": 1}}
    assert fanout.audit_account(stray) is None
    assert fanout.store.get_json("audits/run-forged/report.json") is None  # not complete

    # and the real account's result is overwritten by one naming a single region
    forged = {"audit": {**body["audit"], "regions": hub[:1]}}
    worker.process(as_records(messages[1:], queue.queue_url))
    fanout.audit_account(forged)  # its group (0) is complete: rolled up, then assembled
    report = fanout.store.get_json("audits/run-forged/report.json")

    # Then the report still has every region of the run for that account; the others as errors
    [entry] = [a for a in report["accounts"] if a["account_id"] == account]
    assert list(entry["regions"]) == hub
    assert {entry["regions"][r]["error"] for r in hub[1:]} == {NO_RESULT}
    assert report["ok"] is False


def test_a_failing_audit_hands_back_its_message_only_and_late_audits_are_not_deferred(zoo, world):
    _, sqs, queue, fanout, _ = world
    audited = []

    def audit(payload):
        account = payload["audit"]["account"]
        if account.endswith("1"):
            raise RuntimeError("a bug in one account's audit")
        audited.append(account)

    accounts = [f"{n:012d}" for n in range(555600000000, 555600000003)]
    body = {"run": "r", "regions": ["us-east-1"], "group": 0, "group_size": 3}
    for account in accounts:
        message = json.dumps({"audit": {**body, "account": account}})
        sqs.send_message(QueueUrl=queue.queue_url, MessageBody=message)
    records = as_records(receive_all(sqs, queue.queue_url), queue.queue_url)

    # With 10 s of the invocation left (under TIME_MARGIN_MS): audits still run, none deferred
    result = QueueWorker(fanout.auditor.onboarder, queue, audit).process(
        records, remaining_ms=lambda: 10_000
    )

    failed = [
        r["messageId"] for r in records if json.loads(r["body"])["audit"]["account"] == accounts[1]
    ]
    assert result.failures == failed and result.counts["MessagesFailed"] == 1
    assert sorted(audited) == [accounts[0], accounts[2]]
    assert result.counts["AccountsAudited"] == 2 and result.counts["MessagesDeferred"] == 0
    assert receive_all(sqs, queue.queue_url) == []  # nothing resent to the (work) queue
