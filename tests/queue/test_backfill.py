"""Backfill through the work queue: one message per ACTIVE account, exclusions, and feeding the
messages back through the SQS event source configures every account."""

import pytest

from onboarding.settings import Settings

SCHEDULE = {"accounts": "ALL", "reason": "schedule"}


def _configured(reader, account, regions):
    for region in regions:
        detector = reader.detector(account, region)
        if not (detector and detector["Status"] == "ENABLED"):
            return False
    return True


def test_the_schedule_enqueues_one_message_per_active_account(big_org, function, queues, recorder):
    result = function.invoke(SCHEDULE)

    bodies = queues.bodies(queues.work)
    assert sorted(b["accounts"][0] for b in bodies) == sorted(big_org.active)
    assert len(bodies) == len(big_org.active)  # exactly one each
    assert all(len(b["accounts"]) == 1 for b in bodies)
    assert {(b["reason"], b["attempt"]) for b in bodies} == {("schedule", 1)}
    assert "regions" not in bodies[0]  # every hub region
    assert result["enqueued"] == len(big_org.active)
    assert result["inactive"] == {big_org.suspended: "SUSPENDED"}
    assert big_org.removed not in result["accounts"]
    # Membership came from the ListAccounts pages, not one DescribeAccount per account; the
    # messages went out 10 per SendMessageBatch call.
    operations = [op for op, _, _ in recorder.calls]
    assert "DescribeAccount" not in operations
    batches = [p for op, _, p in recorder.calls if op == "SendMessageBatch"]
    assert [len(p["Entries"]) for p in batches] == [10, 1]


def test_feeding_the_messages_back_configures_every_account(
    big_org, function, queues, reader, settings
):
    function.invoke(SCHEDULE)

    responses = function.poll(batch_size=5)

    assert all(r["batchItemFailures"] == [] for r in responses)
    statuses = {a["account_id"]: a["status"] for r in responses for a in r["accounts"]}
    assert statuses == dict.fromkeys(big_org.active, "ok")
    for account in big_org.active:
        assert _configured(reader, account, settings.hub_regions), account
        if account != big_org.base.security:
            assert reader.targets(account, "eu-west-1")
    assert queues.counts(queues.work)["ApproximateNumberOfMessages"] == 0
    assert queues.receive(queues.dead_letter) == []


def test_a_region_subset_is_carried_by_every_message(big_org, function, queues, reader):
    function.invoke({"accounts": "ALL", "regions": ["eu-west-1"], "reason": "backfill"})

    bodies = queues.bodies(queues.work)
    assert {tuple(b["regions"]) for b in bodies} == {("eu-west-1",)}

    function.poll()
    assert reader.detector(big_org.base.member, "eu-west-1")["Status"] == "ENABLED"
    assert reader.detector(big_org.base.member, "us-east-1") is None


def test_exclusions_by_account_and_ou_are_never_enqueued(big_org, queued_env, function, queues):
    # The OU exclusion names the parent OU: the account in its child OU is excluded too.
    queued_env(EXCLUDED_ACCOUNTS=big_org.extra_active[0], EXCLUDED_OUS=big_org.ou)

    result = function.invoke(SCHEDULE)

    enqueued = {b["accounts"][0] for b in queues.bodies(queues.work)}
    excluded = {big_org.extra_active[0], big_org.in_ou, big_org.in_child_ou}
    assert enqueued == big_org.active - excluded
    assert result["excluded"] == {
        big_org.extra_active[0]: "excluded by EXCLUDED_ACCOUNTS",
        big_org.in_ou: f"excluded by EXCLUDED_OUS ({big_org.ou})",
        big_org.in_child_ou: f"excluded by EXCLUDED_OUS ({big_org.ou})",
    }


@pytest.mark.parametrize("tag", ["watershed", "watershed=skip"])
def test_a_tagged_account_is_refused_by_the_consumer_and_left_untouched(
    big_org, queued_env, function, queues, reader, tag
):
    # Organizations has no bulk tag read: the tag is checked per account when it is onboarded.
    queued_env(EXCLUDE_TAG=tag)
    function.invoke(SCHEDULE)

    responses = function.poll()

    reports = {a["account_id"]: a for r in responses for a in r["accounts"]}
    assert reports[big_org.tagged]["status"] == "refused"
    assert reports[big_org.tagged]["reason"].startswith("excluded by EXCLUDE_TAG (watershed")
    assert reader.role(big_org.tagged) is None
    assert reader.detector(big_org.tagged, "us-east-1") is None
    assert reports[big_org.base.member]["status"] == "ok"
    assert queues.receive(queues.dead_letter) == []  # an exclusion is a decision, not a failure


def test_a_tag_with_another_value_does_not_exclude(big_org, queued_env, function, reader):
    queued_env(EXCLUDE_TAG="watershed=keep-out")
    function.invoke({"accounts": [big_org.tagged]})

    function.poll()

    assert reader.detector(big_org.tagged, "us-east-1")["Status"] == "ENABLED"


def test_a_trigger_for_an_account_in_an_excluded_ou_is_refused(
    big_org, queued_env, function, reader
):
    # A new account created straight into an excluded OU: the trigger is enqueued, the consumer
    # walks the account's parents and refuses it.
    queued_env(EXCLUDED_OUS=big_org.ou)
    function.invoke({"accounts": [big_org.in_child_ou], "reason": "CreateAccountResult"})

    [response] = function.poll()

    [report] = response["accounts"]
    assert report["status"] == "refused"
    assert report["reason"] == f"excluded by EXCLUDED_OUS ({big_org.ou})"
    assert reader.role(big_org.in_child_ou) is None


def test_the_consumer_rechecks_membership_of_a_queued_account(big_org, function, queues):
    # A message names an account that was closed after it was enqueued.
    function.invoke({"accounts": [big_org.base.other_member]})
    import boto3

    boto3.client("organizations", region_name="us-east-1").close_account(
        AccountId=big_org.base.other_member
    )

    [response] = function.poll()

    assert response["accounts"][0]["status"] == "refused"
    assert "SUSPENDED" in response["accounts"][0]["reason"]
    assert response["batchItemFailures"] == []


def test_an_event_invocation_is_enqueued_in_its_manual_form(org, function, queues, org_event):
    result = function.invoke(org_event("organizations-create-account-result-succeeded"))

    assert result == {"enqueued": 1, "accounts": [org.member]}
    [body] = queues.bodies(queues.work)
    assert body == {"accounts": [org.member], "reason": "CreateAccountResult", "attempt": 1}


def test_an_ignored_event_enqueues_nothing(org, function, queues, org_event):
    result = function.invoke(org_event("guardduty-finding"))

    assert result["enqueued"] == 0
    assert result["ignored"]
    assert queues.receive(queues.work) == []


def test_empty_exclusion_parameters_mean_no_exclusion(org_env):
    # CloudFormation passes unset parameters as empty strings.
    env = org_env(
        WORK_QUEUE_URL="", DEAD_LETTER_QUEUE_URL="", EXCLUDED_ACCOUNTS="", EXCLUDED_OUS="",
        EXCLUDE_TAG="", RETRY_CAP_SECONDS="",
    )  # fmt: skip
    settings = Settings.from_env(env)
    assert settings.work_queue_url is None
    assert (settings.excluded_accounts, settings.excluded_ous, settings.exclude_tag) == (
        frozenset(),
        frozenset(),
        None,
    )
    assert settings.retry_cap_seconds == 3600


def test_a_stale_excluded_ou_is_skipped_and_the_backfill_goes_on(
    big_org, queued_env, function, queues
):
    # Given EXCLUDED_OUS naming an OU that was deleted (or never existed) next to a real one
    stale = "ou-zzzz-deadbeef"
    queued_env(EXCLUDED_OUS=f"{stale},{big_org.ou}")

    # When the reconcile schedule runs
    result = function.invoke(SCHEDULE)

    # Then every other ACTIVE account is enqueued, the real OU is still excluded,
    # and the stale OU is reported instead of failing the whole backfill
    enqueued = {b["accounts"][0] for b in queues.bodies(queues.work)}
    assert enqueued == big_org.active - {big_org.in_ou, big_org.in_child_ou}
    assert result["excluded_ous_not_found"] == [stale]
    assert set(result["excluded"]) == {big_org.in_ou, big_org.in_child_ou}
