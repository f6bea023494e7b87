"""`watershed backfill` (via the queue, or inline, accounts in parallel) and `watershed replay`."""

import json

from onboarding.queue.workqueue import replay_dead_letters


def test_backfill_onto_the_queue(big_org, org_env, queues, capsys):
    org_env(EXCLUDED_ACCOUNTS=big_org.extra_active[0])

    code = cli_main(["backfill", "--all", "--regions", "eu-west-1", "--queue-url", queues.work])

    assert code == 0
    assert "enqueued 10 account(s)" in capsys.readouterr().out
    bodies = queues.bodies(queues.work)
    assert {b["accounts"][0] for b in bodies} == big_org.active - {big_org.extra_active[0]}
    assert {(tuple(b["regions"]), b["reason"]) for b in bodies} == {(("eu-west-1",), "backfill")}


def test_backfill_inline_configures_every_account_with_a_progress_line(
    big_org, org_env, capsys, reader
):
    org_env(EXCLUDED_OUS=big_org.ou, EXCLUDE_TAG="watershed=skip")

    code = cli_main(
        ["backfill", "--all", "--regions", "eu-west-1", "--inline", "--concurrency", "3",
         "--progress", "--json"]
    )  # fmt: skip

    captured = capsys.readouterr()
    assert code == 0
    report = json.loads(captured.out)
    statuses = {a["account_id"]: a["status"] for a in report["accounts"]}
    expected = big_org.active - {big_org.in_ou, big_org.in_child_ou}
    assert set(statuses) == expected
    assert statuses.pop(big_org.tagged) == "refused"
    assert set(statuses.values()) == {"ok"}
    assert report["excluded"] == {
        big_org.in_ou: f"excluded by EXCLUDED_OUS ({big_org.ou})",
        big_org.in_child_ou: f"excluded by EXCLUDED_OUS ({big_org.ou})",
    }
    assert report["inactive"] == {big_org.suspended: "SUSPENDED"}
    assert f"backfill {len(expected)}/{len(expected)}" in captured.err
    for account in statuses:
        assert reader.detector(account, "eu-west-1")["Status"] == "ENABLED"
    assert reader.detector(big_org.tagged, "eu-west-1") is None
    assert reader.detector(big_org.in_child_ou, "eu-west-1") is None


def test_backfill_refuses_a_region_outside_the_hub(org, org_env, capsys):
    org_env()

    assert cli_main(["backfill", "--all", "--regions", "ap-south-1", "--inline"]) == 2
    assert "not in HUB_REGIONS" in capsys.readouterr().err


def test_replay_moves_failed_requests_back_and_leaves_invalid_ones(org, org_env, queues, capsys):
    org_env()
    failed = {
        "format": "watershed/dead-letter",
        "kind": "failed",
        "reason": "permanent failure: eu-west-1: AccessDeniedException",
        "request": {"accounts": [org.member], "regions": ["eu-west-1"], "attempt": 4},
    }
    invalid = {"format": "watershed/dead-letter", "kind": "invalid", "reason": "not JSON"}
    redriven = {"accounts": [org.other_member], "reason": "manual", "attempt": 1}
    for body in (failed, invalid, redriven):
        queues.sqs.send_message(QueueUrl=queues.dead_letter, MessageBody=json.dumps(body))

    assert cli_main(["replay", "--dlq-url", queues.dead_letter, "--queue-url", queues.work,
                     "--dry-run"]) == 0  # fmt: skip
    assert "would replay 2 message(s)" in capsys.readouterr().out
    assert queues.receive(queues.work) == []

    assert len(queues.receive(queues.dead_letter)) == 3  # a dry run leaves them all visible

    assert cli_main(["replay", "--dlq-url", queues.dead_letter, "--queue-url", queues.work]) == 0
    out = capsys.readouterr().out
    assert "replayed 2 message(s)" in out
    assert "left on the dead-letter queue" in out and "invalid: not JSON" in out
    bodies = sorted(queues.bodies(queues.work), key=lambda b: b["accounts"][0])
    assert {json.dumps(b, sort_keys=True) for b in bodies} == {
        json.dumps({**failed["request"], "attempt": 1}, sort_keys=True),
        json.dumps(redriven, sort_keys=True),
    }
    [left] = queues.bodies(queues.dead_letter)
    assert left["kind"] == "invalid"


def cli_main(argv):
    from onboarding.cli import cli

    return cli.main(argv)


class ShortPollSamplesNothing:
    """An SQS client whose short polls (no WaitTimeSeconds) answer nothing, however many
    messages the queue holds. Stands in for SQS short polling, which samples a subset of the
    queue's servers and may return no message from a non-empty queue; moto always answers."""

    def __init__(self, sqs):
        self.sqs = sqs

    def receive_message(self, **params):
        if not params.get("WaitTimeSeconds"):
            return {"Messages": []}
        return self.sqs.receive_message(**params)

    def __getattr__(self, name):
        return getattr(self.sqs, name)


def test_replay_long_polls_so_an_empty_short_poll_does_not_end_it_early(org, queues):
    # Given three replayable dead letters
    for account in (org.member, org.other_member, org.security):
        body = {"accounts": [account], "reason": "manual", "attempt": 1}
        queues.sqs.send_message(QueueUrl=queues.dead_letter, MessageBody=json.dumps(body))

    # When replay reads the dead-letter queue through SQS's sampling receive
    result = replay_dead_letters(
        ShortPollSamplesNothing(queues.sqs), queues.dead_letter, queues.work
    )

    # Then all three are back on the work queue and the dead-letter queue is empty
    assert len(result.replayed) == 3
    assert sorted(b["accounts"][0] for b in queues.bodies(queues.work)) == sorted(
        (org.member, org.other_member, org.security)
    )
    assert queues.receive(queues.dead_letter) == []
