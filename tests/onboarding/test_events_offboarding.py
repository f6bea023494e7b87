"""Offboarding inputs: exclusion and departure events, the remove request, what is refused."""

from dataclasses import replace

import pytest

from onboarding.errors import InvalidRequest
from onboarding.events import (
    DEPARTED,
    REMOVE,
    SCOPE,
    AllAccountsRequest,
    Ignored,
    OnboardingRequest,
    parse_event,
    parse_input,
)

MEMBER = "803456789012"


@pytest.fixture
def scoped(fixture_settings):
    return replace(
        fixture_settings,
        excluded_ous=frozenset({"ou-w4t3-s4ndb0x1"}),
        exclude_tag=("watershed", "skip"),
    )


@pytest.mark.parametrize(
    "fixture, action",
    [
        ("organizations-move-account", SCOPE),
        ("organizations-tag-resource", SCOPE),
        ("organizations-untag-resource", SCOPE),
        ("organizations-remove-account-from-organization", DEPARTED),
        ("organizations-leave-organization", DEPARTED),
    ],
)
def test_each_offboarding_event_becomes_one_request(event, scoped, fixture, action):
    request = parse_event(event(fixture), scoped)

    assert request == OnboardingRequest(MEMBER, reason=request.reason, action=action)
    assert request.reason == event(fixture)["detail"]["eventName"]


@pytest.mark.parametrize(
    "fixture, change, why",
    [
        (
            "organizations-move-account",
            lambda s: replace(s, excluded_ous=frozenset()),
            "no EXCLUDED_OUS",
        ),
        ("organizations-tag-resource", lambda s: replace(s, exclude_tag=None), "no EXCLUDE_TAG"),
        (
            "organizations-tag-resource",
            lambda s: replace(s, exclude_tag=("cost-centre", None)),
            "not touched",
        ),
    ],
)
def test_events_that_cannot_change_the_scope_are_ignored(event, scoped, fixture, change, why):
    parsed = parse_event(event(fixture), change(scoped))

    assert isinstance(parsed, Ignored) and why in parsed.reason


def test_tagging_an_ou_and_a_forged_departure_are_ignored(event, scoped):
    tag_ou = event("organizations-tag-resource")
    tag_ou["detail"]["requestParameters"]["resourceId"] = "ou-w4t3-s4ndb0x1"
    assert "not an account" in parse_event(tag_ou, scoped).reason

    # A LeaveOrganization event for one account sent by another is not believed
    forged = event("organizations-leave-organization")
    forged["account"] = "999999999999"
    assert isinstance(parse_event(forged, scoped), Ignored)

    # RemoveAccountFromOrganization from anyone but the management account is ignored
    member_sent = event("organizations-remove-account-from-organization")
    member_sent["account"] = MEMBER
    assert isinstance(parse_event(member_sent, scoped), Ignored)


def test_the_remove_request_and_its_message_form(fixture_settings):
    [request] = parse_input(
        {"remove": [MEMBER], "guardduty": True, "regions": ["eu-west-1"]}, fixture_settings
    )

    assert request.action == REMOVE and request.guardduty
    message = request.as_message()
    assert message["action"] == "remove" and message["guardduty"] is True
    assert parse_input(message, fixture_settings) == [request]
    [everyone] = parse_input({"remove": "ALL"}, fixture_settings)
    assert everyone == AllAccountsRequest(action=REMOVE)
    # An existing body (no action) still onboards, and its message form is unchanged
    [onboard] = parse_input({"accounts": [MEMBER]}, fixture_settings)
    assert onboard.action == "onboard" and "action" not in onboard.as_message()


@pytest.mark.parametrize(
    "payload, names",
    [
        ({"remove": [MEMBER], "accounts": [MEMBER]}, "not both"),
        ({"accounts": [MEMBER], "guardduty": True}, "guardduty"),
        ({"remove": [MEMBER], "guardduty": "yes"}, "'yes'"),
        ({"accounts": [MEMBER], "action": "destroy"}, "'destroy'"),
        ({"remove": [MEMBER], "action": "onboard"}, "'onboard'"),
        ({"accounts": "ALL", "action": "departed"}, "departed"),
        ({"remove": ["12345"]}, "'12345'"),
    ],
)
def test_malformed_remove_requests_are_refused_naming_the_value(fixture_settings, payload, names):
    with pytest.raises(InvalidRequest, match=names):
        parse_input(payload, fixture_settings)
