"""Malformed input, table-driven: every fixture in tests/events, with each field (at every depth)
removed or replaced by a value of another type, is ignored or refused - never an exception that
would send a message round the retry loop, never an AWS call. Strict ids: a trailing newline or
non-ASCII digits are refused before any AWS call; a manual request names at most 1,000 accounts.

Where a mutated event still yields a request (the field was not one a trigger reads, e.g.
`detail.eventVersion` as a number), it is exactly the request of the intact event: a mutation can
never make watershed onboard another account or region. (kinesis_esm_batch.json is the relay's
input, not the onboarding function's: it is not part of this table.)
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import botocore.client
import pytest

from onboarding import handler
from onboarding.errors import ConfigError, InvalidRequest
from onboarding.events import (
    MAX_REQUEST_ACCOUNTS,
    Ignored,
    OnboardingRequest,
    parse_input,
    parse_sqs_record,
)
from onboarding.settings import Settings

EVENTS = Path(__file__).resolve().parents[1] / "events"
FIXTURES = sorted(p.stem for p in EVENTS.glob("*.json") if p.stem != "kinesis_esm_batch")
SETTINGS = Settings(
    security_account_id="702345678901",
    management_account_id="601234567890",
    hub_regions=("us-east-1", "eu-west-1", "eu-central-1"),
    home_region="us-east-1",
)
REMOVED = object()
WRONG_VALUES = ("text", 7, 1.5, True, None, [], {}, ["x"], {"x": 1})


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def _mutated(event, path, value):
    copied = copy.deepcopy(event)
    parent = copied
    for step in path[:-1]:
        parent = parent[step]
    if value is REMOVED:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copied


def _mutations(event):
    for path in _paths(event):
        yield path, "removed", _mutated(event, path, REMOVED)
        for value in WRONG_VALUES:
            yield path, repr(value), _mutated(event, path, value)


@pytest.fixture
def no_aws_call(monkeypatch):
    """Every botocore API call is recorded and fails: parsing must never make one."""
    calls = []

    def refuse(self, operation, params):
        calls.append(operation)
        raise AssertionError(f"AWS call {operation} while parsing input")

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", refuse)
    return calls


def _outcome(payload):
    try:
        return parse_input(payload, SETTINGS)
    except InvalidRequest as refused:
        return refused


@pytest.mark.parametrize("name", FIXTURES)
def test_every_malformed_shape_of_every_fixture_is_ignored_or_refused(name, no_aws_call):
    # Given the fixture as AWS sends it, and what it parses to intact
    event = json.loads((EVENTS / f"{name}.json").read_text())
    intact = _outcome(event)
    assert not isinstance(intact, InvalidRequest), intact
    mutations = list(_mutations(event))
    assert len(mutations) > 50, name  # every field at every depth, ten shapes each

    for path, how, mutated in mutations:
        # When it is parsed as a direct invocation and as an SQS message body
        direct = _outcome(mutated)
        record = {"messageId": "m", "body": json.dumps(mutated), "eventSource": "aws:sqs"}
        try:
            queued = parse_sqs_record(record, SETTINGS)
        except InvalidRequest as refused:
            queued = refused
        # Then each is refused, ignored, or (an unread field) exactly the intact request
        for result in (direct, queued):
            where = f"{name} {'.'.join(map(str, path))} {how}"
            if isinstance(result, InvalidRequest):
                continue
            for item in result:
                if isinstance(item, Ignored):
                    assert item.reason, where
                else:
                    assert isinstance(item, OnboardingRequest), where
                    assert [item] == intact, where
    assert no_aws_call == []


def test_a_mutation_of_a_decisive_field_is_ignored_with_its_reason(no_aws_call):
    event = json.loads((EVENTS / "organizations-create-account-result-succeeded.json").read_text())
    status = ("detail", "serviceEventDetails", "createAccountStatus")
    for path, value, reason in [
        (status, "SUCCEEDED", "createAccountStatus is str, not an object"),
        (("detail",), ["x"], "detail is list, not an object"),
        (("source",), ["aws.organizations"], "source is list, not a string"),
        (("detail", "eventName"), {"x": 1}, "detail.eventName is dict, not a string"),
        ((*status, "accountId"), 803456789012, "no valid account id"),
    ]:
        [ignored] = parse_input(_mutated(event, path, value), SETTINGS)
        assert isinstance(ignored, Ignored)
        assert reason in ignored.reason
    assert no_aws_call == []


def _digits(text: str, zero: int) -> str:
    """`text` with its ASCII digits written in another Unicode digit set (`\\d` matches them)."""
    return "".join(chr(zero + int(c)) if c.isascii() and c.isdigit() else c for c in text)


ARABIC_INDIC_ZERO, FULLWIDTH_ZERO = 0x0660, 0xFF10
NOT_ACCOUNT_IDS = [
    "123456789012\n",  # `$` matches before a trailing newline
    _digits("123456789012", ARABIC_INDIC_ZERO),
    _digits("123456789012", FULLWIDTH_ZERO),
    "12345678901" + _digits("2", FULLWIDTH_ZERO),
    " 123456789012",
]


@pytest.mark.parametrize("account", NOT_ACCOUNT_IDS)
def test_a_lookalike_account_id_is_refused_or_ignored_everywhere(account, no_aws_call, event):
    # a manual request and a queue body: refused
    with pytest.raises(InvalidRequest, match="is not 12 digits"):
        parse_input({"accounts": [account]}, SETTINGS)
    record = {"messageId": "m", "body": json.dumps({"accounts": [account]})}
    with pytest.raises(InvalidRequest, match="is not 12 digits"):
        parse_sqs_record(record, SETTINGS)
    # an event naming it: ignored
    created = event("organizations-create-account-result-succeeded")
    created["detail"]["serviceEventDetails"]["createAccountStatus"]["accountId"] = account
    [ignored] = parse_input(created, SETTINGS)
    assert isinstance(ignored, Ignored) and "no valid account id" in ignored.reason
    opt_in = event("account-region-opt-in-enabled")
    opt_in["detail"]["accountId"] = account
    [ignored] = parse_input(opt_in, SETTINGS)
    assert isinstance(ignored, Ignored)
    # a setting: refused at start-up (surrounding whitespace is trimmed from environment
    # variables before the check, so only the non-ASCII forms reach it)
    if account.strip() != "123456789012":
        env = {"SECURITY_ACCOUNT_ID": account, "MANAGEMENT_ACCOUNT_ID": "601234567890"}
        with pytest.raises(ConfigError, match="SECURITY_ACCOUNT_ID"):
            Settings.from_env({**env, "HUB_REGIONS": "eu-west-1"})
    assert no_aws_call == []


@pytest.mark.parametrize(
    "region",
    [
        "eu-west-1\n",
        _digits("eu-west-1", ARABIC_INDIC_ZERO),
        _digits("eu-west-1", FULLWIDTH_ZERO),
        "EU-WEST-1",
    ],
)
def test_a_lookalike_region_is_refused_everywhere(region, no_aws_call, event):
    with pytest.raises(InvalidRequest, match="is not a region name"):
        parse_input({"accounts": ["803456789012"], "regions": [region]}, SETTINGS)
    opt_in = event("account-region-opt-in-enabled")
    opt_in["detail"]["regionName"] = region
    [ignored] = parse_input(opt_in, SETTINGS)
    assert isinstance(ignored, Ignored)
    if region.strip() != "eu-west-1":
        env = {"SECURITY_ACCOUNT_ID": "702345678901", "MANAGEMENT_ACCOUNT_ID": "601234567890"}
        with pytest.raises(ConfigError, match="HUB_REGIONS"):
            Settings.from_env({**env, "HUB_REGIONS": f"us-east-1,{region}"})
    assert no_aws_call == []


def test_a_manual_request_names_at_most_1000_accounts(no_aws_call):
    accounts = [f"{n:012d}" for n in range(1, MAX_REQUEST_ACCOUNTS + 2)]
    assert len(parse_input({"accounts": accounts[:-1]}, SETTINGS)) == MAX_REQUEST_ACCOUNTS
    with pytest.raises(InvalidRequest) as refused:
        parse_input({"accounts": accounts}, SETTINGS)
    assert "1001 accounts, at most 1000" in str(refused.value)
    assert "watershed backfill" in str(refused.value)
    assert no_aws_call == []


def test_a_body_nested_too_deep_is_refused_not_crashed(no_aws_call):
    body = '{"accounts": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(InvalidRequest, match="nested too deep"):
        parse_sqs_record({"messageId": "m", "body": body}, SETTINGS)
    assert no_aws_call == []


def test_the_handler_refuses_malformed_queue_bodies_without_an_aws_call(
    monkeypatch, no_aws_call, lambda_context, event
):
    # Given the function without a queue (inline), and a batch of malformed bodies
    class NoAccounts:
        settings = SETTINGS

        def handle(self, items):
            assert all(isinstance(i, Ignored) for i in items), items
            from onboarding.report import Report

            return Report(())

    monkeypatch.setattr(handler, "onboarder", lambda: NoAccounts())
    created = event("organizations-create-account-result-succeeded")
    bodies = [
        json.dumps(_mutated(created, ("detail",), [])),
        json.dumps(_mutated(created, ("detail", "serviceEventDetails"), "x")),
        json.dumps({"accounts": ["123456789012\n"]}),
        json.dumps({"accounts": [f"{n:012d}" for n in range(1, 1002)]}),
        "[" * 50_000,
    ]
    records = [
        {"messageId": str(i), "body": body, "eventSource": "aws:sqs", "receiptHandle": "r"}
        for i, body in enumerate(bodies)
    ]
    # When it is invoked, Then no message is handed back for a retry and no AWS call was made
    response = handler.lambda_handler({"Records": records}, lambda_context)
    assert response["batchItemFailures"] == []
    assert no_aws_call == []
