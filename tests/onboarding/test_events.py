"""Trigger parsing: every trigger becomes one OnboardingRequest; foreign events are Ignored;
malformed manual requests are refused naming the value. Pure functions: no AWS involved."""

import json

import pytest

from onboarding.errors import InvalidRequest
from onboarding.events import (
    AllAccountsRequest,
    Ignored,
    OnboardingRequest,
    is_sqs_batch,
    parse_input,
    parse_manual,
    parse_sqs_record,
)

MEMBER = "803456789012"


@pytest.mark.parametrize(
    ("fixture", "reason", "regions"),
    [
        ("organizations-create-account-result-succeeded", "CreateAccountResult", None),
        ("organizations-account-joined-organization", "AccountJoinedOrganization", None),
        ("organizations-accept-handshake", "AcceptHandshake", None),
        ("controltower-create-managed-account", "CreateManagedAccount", None),
        ("controltower-update-managed-account", "UpdateManagedAccount", None),
        ("account-region-opt-in-enabled", "RegionOptIn", ("eu-central-1",)),
    ],
)
def test_each_trigger_becomes_one_request_for_the_member(
    event, fixture_settings, fixture, reason, regions
):
    parsed = parse_input(event(fixture), fixture_settings)

    assert parsed == [OnboardingRequest(MEMBER, regions=regions, reason=reason)]


def _mutated(event, name, change):
    payload = event(name)
    change(payload)
    return payload


@pytest.mark.parametrize(
    ("fixture", "why"),
    [
        ("organizations-create-account-in-progress", "no account id"),
        ("organizations-create-account-result-failed", "FAILED: EMAIL_ALREADY_EXISTS"),
        ("organizations-create-account-result-from-member", "not the management account"),
        ("guardduty-finding", "not a trigger"),
    ],
)
def test_events_that_are_not_ours_are_ignored_with_a_reason(event, fixture_settings, fixture, why):
    [parsed] = parse_input(event(fixture), fixture_settings)

    assert isinstance(parsed, Ignored)
    assert why in parsed.reason


@pytest.mark.parametrize(
    ("fixture", "change", "why"),
    [
        (
            "controltower-create-managed-account",
            lambda e: e["detail"]["serviceEventDetails"]["createManagedAccountStatus"].update(
                state="FAILED"
            ),
            "state FAILED",
        ),
        (
            "controltower-update-managed-account",
            lambda e: e.update(account="999988887777"),
            "not the management account",
        ),
        (
            "account-region-opt-in-enabled",
            lambda e: e["detail"].update(status="ENABLING"),
            "ENABLING",
        ),
        (
            "account-region-opt-in-enabled",
            lambda e: e["detail"].update(regionName="ap-southeast-7"),
            "not a hub region",
        ),
        (
            "organizations-account-joined-organization",
            lambda e: e["detail"].update(serviceEventDetails={"joinedMethod": "Invited"}),
            "no valid account id",
        ),
        (
            "organizations-accept-handshake",
            lambda e: e["detail"].update(errorCode="HandshakeConstraintViolationException"),
            "failed with HandshakeConstraintViolationException",
        ),
        (
            "organizations-accept-handshake",
            lambda e: e.update(account="999988887777"),
            "sent by account '999988887777'",
        ),
        (
            "organizations-create-account-result-succeeded",
            lambda e: e["detail"].update(eventName="InviteAccountToOrganization"),
            "not a trigger",
        ),
    ],
)
def test_variants_that_must_not_onboard_are_ignored(event, fixture_settings, fixture, change, why):
    [parsed] = parse_input(_mutated(event, fixture, change), fixture_settings)

    assert isinstance(parsed, Ignored)
    assert why in parsed.reason


@pytest.mark.parametrize(
    "detail_type", ["AWS Service Event via CloudTrail", "AWS API Call via CloudTrail"]
)
def test_account_joined_onboards_whatever_its_detail_type(event, fixture_settings, detail_type):
    payload = event("organizations-account-joined-organization")
    payload["detail-type"] = detail_type

    assert parse_input(payload, fixture_settings) == [
        OnboardingRequest(MEMBER, reason="AccountJoinedOrganization")
    ]


def test_a_region_opt_in_raised_in_the_member_itself_onboards_that_region(event, fixture_settings):
    # AWS sends the event to the account that enabled the region: here the member, whose own
    # forwarding carried it to the Security account
    payload = event("account-region-opt-in-enabled")
    payload["account"] = MEMBER
    payload["resources"] = [f"arn:aws:account::{MEMBER}:account"]

    assert parse_input(payload, fixture_settings) == [
        OnboardingRequest(MEMBER, regions=("eu-central-1",), reason="RegionOptIn")
    ]


def test_account_joined_is_read_defensively_from_a_nested_shape(event, fixture_settings):
    payload = event("organizations-account-joined-organization")
    payload["detail"]["serviceEventDetails"] = {
        "accountJoinedOrganizationDetails": {"account": {"accountId": MEMBER}, "method": "Created"}
    }

    assert parse_input(payload, fixture_settings)[0].account_id == MEMBER


def test_manual_request_with_regions_and_dry_run(fixture_settings):
    parsed = parse_input(
        {"accounts": [MEMBER, "111122223333", MEMBER], "regions": ["eu-west-1"], "dry_run": True},
        fixture_settings,
    )

    assert parsed == [
        OnboardingRequest(MEMBER, ("eu-west-1",), "manual", 1, True),
        OnboardingRequest("111122223333", ("eu-west-1",), "manual", 1, True),
    ]


def test_all_accounts_request(fixture_settings):
    parsed = parse_input({"accounts": "ALL", "reason": "schedule"}, fixture_settings)

    assert parsed == [AllAccountsRequest(regions=None, reason="schedule")]


def test_a_request_round_trips_through_its_message_form(fixture_settings):
    request = OnboardingRequest(MEMBER, ("eu-west-1",), "RegionOptIn", attempt=3, dry_run=True)

    assert parse_manual(request.as_message(), fixture_settings) == [request]


@pytest.mark.parametrize(
    ("payload", "names"),
    [
        ({"accounts": ["80345678901"]}, "'80345678901'"),
        ({"accounts": [803456789012]}, "803456789012"),
        ({"accounts": "803456789012"}, "'803456789012'"),
        ({"accounts": []}, "non-empty"),
        ({"accounts": [MEMBER], "regions": ["eu-west-9"]}, "'eu-west-9' is not a known"),
        ({"accounts": [MEMBER], "regions": ["Frankfurt"]}, "'Frankfurt'"),
        ({"accounts": [MEMBER], "regions": ["ap-northeast-1"]}, "not in HUB_REGIONS"),
        ({"accounts": [MEMBER], "regions": "eu-west-1"}, "'eu-west-1'"),
        ({"accounts": [MEMBER], "dry_run": "true"}, "'true'"),
        ({"accounts": [MEMBER], "attempt": 0}, "attempt 0"),
        ({"accounts": [MEMBER], "acounts": [MEMBER]}, "'acounts'"),
        ({"hello": "world"}, "unrecognised input"),
        (["803456789012"], "must be a JSON object"),
    ],
)
def test_malformed_manual_requests_are_refused_naming_the_value(fixture_settings, payload, names):
    with pytest.raises(InvalidRequest) as raised:
        parse_input(payload, fixture_settings)

    assert names in str(raised.value)


def test_sqs_batch_bodies_are_parsed_like_direct_inputs(event, fixture_settings):
    batch = {
        "Records": [
            {
                "messageId": "m-1",
                "eventSource": "aws:sqs",
                "body": json.dumps(event("controltower-create-managed-account")),
            },
            {
                "messageId": "m-2",
                "eventSource": "aws:sqs",
                "body": json.dumps({"accounts": [MEMBER]}),
            },
            {
                "messageId": "m-3",
                "eventSource": "aws:sqs",
                "body": json.dumps(event("guardduty-finding")),
            },
        ]
    }

    assert is_sqs_batch(batch)
    parsed = [
        item for record in batch["Records"] for item in parse_sqs_record(record, fixture_settings)
    ]
    assert parsed[0] == OnboardingRequest(MEMBER, reason="CreateManagedAccount")
    assert parsed[1] == OnboardingRequest(MEMBER)
    assert isinstance(parsed[2], Ignored)


def test_a_poison_sqs_body_is_refused(fixture_settings):
    with pytest.raises(InvalidRequest, match="m-9"):
        parse_sqs_record(
            {"messageId": "m-9", "eventSource": "aws:sqs", "body": "{oops"}, fixture_settings
        )
