"""Out of scope means offboarded: exclusion events and the reconcile remove watershed through the
work queue (unless RETAIN_ON_EXCLUSION), and a departure is recorded without a call into it."""

import pytest

from onboarding.removal import RETAINED

HUB = ("us-east-1", "eu-west-1", "eu-central-1")


def _onboarded(function, reader, account):
    function.invoke({"accounts": [account]})
    function.poll()
    assert reader.role(account) is not None


def _has_nothing_of_ours(reader, account) -> bool:
    return reader.role(account) is None and all(reader.rule(account, r) is None for r in HUB)


def _excluded_ou(reader, org) -> tuple[str, str]:
    orgs = reader.client(org.management, "organizations")
    root = orgs.list_roots()["Roots"][0]["Id"]
    ou = orgs.create_organizational_unit(ParentId=root, Name="sandbox")["OrganizationalUnit"]
    return root, ou["Id"]


def _move_event(org_event, root, ou):
    event = org_event("organizations-move-account")
    event["detail"]["requestParameters"].update(sourceParentId=root, destinationParentId=ou)
    return event


def _move(reader, org, root, ou):
    reader.client(org.management, "organizations").move_account(
        AccountId=org.member, SourceParentId=root, DestinationParentId=ou
    )


def test_a_move_into_an_excluded_ou_offboards_the_account_through_the_queue(
    org, queued_env, function, queues, reader, org_event
):
    # Given an onboarded member, and an excluded OU it is then moved into
    root, ou = _excluded_ou(reader, org)
    queued_env(EXCLUDED_OUS=ou)
    _onboarded(function, reader, org.member)
    _move(reader, org, root, ou)

    # When the MoveAccount event arrives (enqueued), and the queue is consumed
    enqueued = function.invoke(_move_event(org_event, root, ou))
    assert enqueued["accounts"] == [org.member]
    [body] = queues.bodies(queues.work)
    assert body["action"] == "scope"
    [response] = function.poll()

    # Then watershed's rule, target and role are gone from the member, GuardDuty stays
    [report] = response["accounts"]
    assert report["reason"] == f"excluded by EXCLUDED_OUS ({ou}): offboarded"
    assert _has_nothing_of_ours(reader, org.member)
    assert reader.detector(org.member, "eu-west-1")["Status"] == "ENABLED"


def test_retain_on_exclusion_keeps_the_resources(
    org, queued_env, function, reader, org_event, recorder
):
    root, ou = _excluded_ou(reader, org)
    queued_env(EXCLUDED_OUS=ou, RETAIN_ON_EXCLUSION="true")
    _onboarded(function, reader, org.member)
    _move(reader, org, root, ou)
    recorder.clear()

    function.invoke(_move_event(org_event, root, ou))
    [response] = function.poll()

    [report] = response["accounts"]
    assert report["status"] == "refused" and RETAINED in report["reason"]
    assert reader.role(org.member) is not None
    assert all(reader.rule(org.member, r) is not None for r in HUB)
    assert [w for w in recorder.writes if w[0] not in ("SendMessageBatch",)] == []


def test_a_move_out_of_the_excluded_ou_onboards_the_account(
    org, queued_env, function, reader, org_event
):
    root, ou = _excluded_ou(reader, org)
    queued_env(EXCLUDED_OUS=ou)
    _move(reader, org, root, ou)
    reader.client(org.management, "organizations").move_account(
        AccountId=org.member, SourceParentId=ou, DestinationParentId=root
    )

    function.invoke(_move_event(org_event, ou, root))
    function.poll()

    assert reader.role(org.member) is not None
    assert all(reader.rule(org.member, r) is not None for r in HUB)


def test_tagging_an_account_with_the_exclude_tag_offboards_it(
    org, queued_env, function, reader, org_event
):
    queued_env(EXCLUDE_TAG="watershed=skip")
    _onboarded(function, reader, org.member)
    reader.client(org.management, "organizations").tag_resource(
        ResourceId=org.member, Tags=[{"Key": "watershed", "Value": "skip"}]
    )

    function.invoke(org_event("organizations-tag-resource"))
    function.poll()

    assert _has_nothing_of_ours(reader, org.member)


@pytest.mark.parametrize(
    "fixture",
    ["organizations-remove-account-from-organization", "organizations-leave-organization"],
)
def test_a_departure_is_reported_without_any_call_into_the_account(
    org, function, queues, reader, org_event, recorder, fixture
):
    recorder.clear()

    function.invoke(org_event(fixture))
    [response] = function.poll()

    # Then nothing was called but the work queue: no assume-role, no read in the account
    assert {op for op, _, _ in recorder.calls} <= {"SendMessageBatch", "SendMessage"}
    [report] = response["accounts"]
    assert report["account_id"] == org.member
    assert report["status"] == "refused"
    assert "left the organization" in report["reason"]
    assert report["changes"] == [
        "retain forwarder-role: watershed-forwarder left behind (IAM, global)"
    ]
    assert set(report["regions"]) == set(HUB)
    for region in report["regions"].values():
        assert region["status"] == "skipped"
        assert "rule watershed-forward with target security-bus" in region["reason"]


def test_the_scope_reconcile_removes_from_excluded_accounts(
    org, queued_env, function, queues, reader
):
    # Given an onboarded member that was later excluded by account id
    _onboarded(function, reader, org.member)
    queued_env(EXCLUDED_ACCOUNTS=org.member)

    # When the daily reconcile runs
    function.invoke({"accounts": "ALL", "reason": "schedule", "action": "scope"})
    bodies = {b["accounts"][0]: b for b in queues.bodies(queues.work)}
    assert {bodies[a]["action"] for a in (org.member, org.other_member)} == {"scope"}
    [response] = function.poll(batch_size=10)

    # Then the excluded member has nothing of watershed's, the others are onboarded
    reports = {a["account_id"]: a for a in response["accounts"]}
    assert reports[org.member]["reason"] == "excluded by EXCLUDED_ACCOUNTS: offboarded"
    assert _has_nothing_of_ours(reader, org.member)
    assert reader.role(org.other_member) is not None
    assert reports[org.other_member]["status"] == "ok"


def test_an_excluded_account_with_nothing_of_ours_costs_one_probe(
    org, queued_env, function, queues, recorder
):
    # Given an excluded account watershed never onboarded, as the reconcile hands it over
    queued_env(EXCLUDED_ACCOUNTS=org.member)
    function.invoke({"accounts": [org.member], "reason": "schedule", "action": "scope"})
    recorder.clear()

    [response] = function.poll()

    # Then one GetRole said nothing of watershed's is there: no region read, nothing written
    [report] = response["accounts"]
    assert report["status"] == "refused"
    assert "nothing of watershed's is left" in report["reason"]
    made = {op for op, _, _ in recorder.calls}
    assert made <= {"DescribeAccount", "AssumeRole", "GetRole"}, made
    assert "GetRole" in made
    assert queues.receive(queues.dead_letter) == []


def test_an_excluded_account_that_cannot_be_reached_is_reported_not_retried(
    org, queued_env, function, queues, reader, faults
):
    # Excluded accounts often lack the member role: assume-role is refused (moto lets anyone
    # assume anything, so AccessDenied is injected)
    _onboarded(function, reader, org.member)
    queued_env(EXCLUDED_ACCOUNTS=org.member)
    faults.add("AssumeRole", "AccessDenied", "not authorized to perform: sts:AssumeRole")

    function.invoke({"accounts": [org.member], "action": "scope"})
    [response] = function.poll()

    [report] = response["accounts"]
    assert report["status"] == "refused"
    assert "not reachable" in report["reason"] and "nothing removed" in report["reason"]
    assert queues.receive(queues.dead_letter) == []
    assert queues.receive(queues.work) == []  # no retry scheduled


def test_with_retain_on_exclusion_the_reconcile_leaves_excluded_accounts_alone(
    org, queued_env, function, queues, reader
):
    _onboarded(function, reader, org.member)
    queued_env(EXCLUDED_ACCOUNTS=org.member, RETAIN_ON_EXCLUSION="true")

    function.invoke({"accounts": "ALL", "reason": "schedule", "action": "scope"})

    assert org.member not in {b["accounts"][0] for b in queues.bodies(queues.work)}


def test_remove_all_fans_out_through_the_queue(org, function, queues, reader):
    _onboarded(function, reader, org.member)

    function.invoke({"remove": "ALL"})
    bodies = queues.bodies(queues.work)
    assert {b["action"] for b in bodies} == {"remove"}
    function.poll()

    assert _has_nothing_of_ours(reader, org.member)
