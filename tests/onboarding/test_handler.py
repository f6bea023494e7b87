"""The Lambda handler: each trigger kind, manual requests and SQS batches take one code path."""

import json

import pytest

from onboarding import handler
from onboarding.errors import ConfigError, InvalidRequest
from onboarding.service import Onboarder
from onboarding.sessions import SessionFactory
from onboarding.settings import Settings


@pytest.fixture
def invoke(org_env, recorder, faults, monkeypatch, lambda_context):
    """Call lambda_handler with the moto organization's environment and instrumented sessions."""
    org_env()

    def build() -> Onboarder:
        settings = Settings.from_env()
        hooks = [("before-parameter-build", recorder), ("before-call", faults)]
        return Onboarder(settings, SessionFactory(settings, hooks=hooks))

    monkeypatch.setattr(handler, "onboarder", build)
    return lambda event: handler.lambda_handler(event, lambda_context)


def _sqs(*bodies):
    return {
        "Records": [
            {
                "messageId": f"msg-{i}",
                "receiptHandle": f"rh-{i}",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:222233334444:watershed-work",
                "awsRegion": "us-east-1",
                "body": body if isinstance(body, str) else json.dumps(body),
            }
            for i, body in enumerate(bodies)
        ]
    }


@pytest.mark.parametrize(
    "fixture",
    [
        "organizations-create-account-result-succeeded",
        "organizations-account-joined-organization",
        "organizations-accept-handshake",
        "controltower-create-managed-account",
        "controltower-update-managed-account",
    ],
)
def test_each_trigger_event_onboards_the_member(org, invoke, org_event, reader, settings, fixture):
    result = invoke(org_event(fixture))

    [account] = result["accounts"]
    assert account["account_id"] == org.member
    assert account["status"] == "ok"
    for region in settings.hub_regions:
        assert reader.detector(org.member, region)["Status"] == "ENABLED"
        assert reader.targets(org.member, region)


def test_region_opt_in_onboards_exactly_that_region(org, invoke, org_event, reader):
    result = invoke(org_event("account-region-opt-in-enabled"))

    assert list(result["accounts"][0]["regions"]) == ["eu-central-1"]
    assert reader.detector(org.member, "eu-central-1")["Status"] == "ENABLED"
    assert reader.detector(org.member, "us-east-1") is None


def test_a_manual_request(org, invoke, reader):
    result = invoke({"accounts": [org.member, org.other_member], "regions": ["eu-west-1"]})

    assert [a["status"] for a in result["accounts"]] == ["ok", "ok"]
    assert reader.rule(org.other_member, "eu-west-1")["State"] == "ENABLED"


def test_a_manual_dry_run_writes_nothing(org, invoke, recorder, reader):
    result = invoke({"accounts": [org.member], "dry_run": True})

    assert result["accounts"][0]["regions"]["us-east-1"]["changes"]
    assert recorder.writes == []
    assert reader.role(org.member) is None


def test_all_accounts_onboards_every_active_account_inline(org, invoke, reader):
    result = invoke({"accounts": "ALL", "reason": "schedule", "regions": ["eu-west-1"]})

    onboarded = {a["account_id"]: a["status"] for a in result["accounts"]}
    assert onboarded == dict.fromkeys(
        [org.management, org.security, org.member, org.other_member], "ok"
    )
    assert reader.rule(org.security, "eu-west-1") is None  # Security: GuardDuty only
    assert reader.detector(org.security, "eu-west-1")["Status"] == "ENABLED"


@pytest.mark.parametrize(
    "fixture",
    [
        "organizations-create-account-in-progress",
        "organizations-create-account-result-failed",
        "organizations-create-account-result-from-member",
        "guardduty-finding",
    ],
)
def test_events_that_are_not_ours_are_ignored_without_aws_writes(
    org, invoke, org_event, recorder, fixture
):
    assert invoke(org_event(fixture)) == {"accounts": []}
    assert recorder.calls == []


def test_a_malformed_manual_request_is_refused_before_any_aws_call(org, invoke, recorder):
    with pytest.raises(InvalidRequest, match="'12345'"):
        invoke({"accounts": ["12345"]})
    assert recorder.calls == []


def test_an_sqs_batch_is_processed_inline_and_duplicates_cost_nothing(
    org, invoke, org_event, recorder, reader
):
    batch = _sqs(
        org_event("organizations-create-account-result-succeeded"),
        org_event("controltower-create-managed-account"),  # same account, Control Tower's copy
        "{not json",
        org_event("guardduty-finding"),
    )

    result = invoke(batch)

    assert [a["account_id"] for a in result["accounts"]] == [org.member, org.member]
    assert result["accounts"][1]["regions"]["eu-west-1"]["changes"] == []  # reads only
    assert result["batchItemFailures"] == []  # the poison message is refused, not retried
    assert reader.detector(org.member, "eu-west-1")["Status"] == "ENABLED"


def test_an_sqs_message_with_a_retryable_failure_is_handed_back(org, invoke, faults):
    faults.add("ListDetectors", "SubscriptionRequiredException", "not yet", region="eu-west-1")

    result = invoke(
        _sqs({"accounts": [org.member]}, {"accounts": [org.other_member], "regions": ["us-east-1"]})
    )

    assert result["batchItemFailures"] == [{"itemIdentifier": "msg-0"}]
    assert result["accounts"][0]["regions"]["eu-west-1"]["retryable"] is True


def test_configuration_errors_name_the_variable_at_cold_start(monkeypatch, lambda_context):
    monkeypatch.setenv("SECURITY_ACCOUNT_ID", "222233334444")
    monkeypatch.setenv("MANAGEMENT_ACCOUNT_ID", "111122223333")
    monkeypatch.delenv("HUB_REGIONS", raising=False)
    handler.onboarder.cache_clear()
    try:
        with pytest.raises(ConfigError, match="HUB_REGIONS"):
            handler.lambda_handler({"accounts": ["333344445555"]}, lambda_context)
    finally:
        handler.onboarder.cache_clear()


def test_duplicate_triggers_in_one_invocation_onboard_once(org, invoke, org_event, recorder):
    # Control Tower accounts produce CreateAccountResult and later CreateManagedAccount.
    from onboarding.events import parse_input

    settings = handler.onboarder().settings
    items = [
        *parse_input(org_event("organizations-create-account-result-succeeded"), settings),
        *parse_input(org_event("controltower-create-managed-account"), settings),
    ]

    report = handler.onboarder().handle(items)

    assert [a.account_id for a in report.accounts] == [org.member]
    assert [op for op, _, _ in recorder.calls].count("DescribeAccount") == 1
