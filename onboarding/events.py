"""Every trigger becomes one `OnboardingRequest`; everything else is `Ignored` with a reason.

Inputs, as the onboarding function receives them:
- EventBridge events exactly as AWS sends them (Organizations, Control Tower, Account
  Management), forwarded from the management account; Region Opt-In Status Change also from a
  member, whose own forwarding carries it (docs/onboarding.md);
- manual requests `{"accounts": [...] | "ALL", "regions"?: [...], "dry_run"?: bool,
  "action"?: "onboard" | "remove" | "scope" | "departed", "guardduty"?: bool}`, and the
  shorthand `{"remove": [...] | "ALL", ...}` for `"action": "remove"` (see `parse_manual`);
- SQS records whose bodies are either of the above (see `parse_sqs_record`).

Events that are not ours are *ignored* (returned as `Ignored`, logged by the caller, never
raised). Malformed manual requests are *refused* with `InvalidRequest` naming the offending
value, before any AWS call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import boto3

from onboarding.errors import InvalidRequest
from onboarding.settings import ACCOUNT_ID, REGION_NAME, Settings

MANUAL_KEYS = frozenset(
    {"accounts", "regions", "dry_run", "reason", "attempt", "action", "guardduty", "remove"}
)
# What a request does with its account (issue 14). A body without "action" onboards, as before.
ONBOARD = "onboard"
REMOVE = "remove"  # take watershed's resources out of the account (`watershed remove`)
SCOPE = "scope"  # onboard if in scope, remove if excluded (exclusion events, daily reconcile)
DEPARTED = "departed"  # the account left the organization: record it, call nothing in it
ACTIONS = (ONBOARD, REMOVE, SCOPE, DEPARTED)
# A manual request names at most this many accounts; more is what `backfill` is for (one queue
# message per account, never thousands of accounts in one request).
MAX_REQUEST_ACCOUNTS = 1000
ALL_ACCOUNTS = "ALL"
REGION_OPT_IN = "RegionOptIn"  # the reason of a Region Opt-In Status Change request
_REASON = re.compile(r"\A[\w .:/@()+-]{1,128}\Z", re.ASCII)


@dataclass(frozen=True)
class OnboardingRequest:
    """Onboard one account: all hub regions, or only `regions` (a retry, an opt-in event)."""

    account_id: str
    regions: tuple[str, ...] | None = None
    reason: str = "manual"
    attempt: int = 1
    dry_run: bool = False
    action: str = ONBOARD
    guardduty: bool = False  # REMOVE only: also delete a GuardDuty detector watershed created

    def as_message(self) -> dict[str, Any]:
        """The manual-request form of this request (what a queue message or replay carries)."""
        message: dict[str, Any] = {
            "accounts": [self.account_id],
            "reason": self.reason,
            "attempt": self.attempt,
        }
        if self.regions is not None:
            message["regions"] = list(self.regions)
        if self.dry_run:
            message["dry_run"] = True
        if self.action != ONBOARD:
            message["action"] = self.action
        if self.guardduty:
            message["guardduty"] = True
        return message


@dataclass(frozen=True)
class AllAccountsRequest:
    """`{"accounts": "ALL"}`: every ACTIVE account of the organization (schedule, backfill)."""

    regions: tuple[str, ...] | None = None
    reason: str = "manual"
    dry_run: bool = False
    action: str = ONBOARD
    guardduty: bool = False


@dataclass(frozen=True)
class Ignored:
    """An input that is not ours. Logged with its reason; causes no AWS call and no retry."""

    reason: str
    event: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


Request = OnboardingRequest | AllAccountsRequest
Parsed = OnboardingRequest | AllAccountsRequest | Ignored


# Entry points --------------------------------------------------------------------------------


def is_sqs_batch(payload: Any) -> bool:
    records = payload.get("Records") if isinstance(payload, Mapping) else None
    return bool(records) and all(
        isinstance(r, Mapping) and r.get("eventSource") == "aws:sqs" for r in records
    )


def parse_input(payload: Any, settings: Settings) -> list[Parsed]:
    """A direct invocation: one EventBridge event or one manual request (not an SQS batch)."""
    if not isinstance(payload, Mapping):
        raise InvalidRequest(
            f"input must be a JSON object, got {type(payload).__name__}: {payload!r:.80}"
        )
    if "accounts" in payload or "remove" in payload:
        return list(parse_manual(payload, settings))
    if "detail-type" in payload and "source" in payload:
        return [parse_event(payload, settings)]
    raise InvalidRequest(
        f"unrecognised input (keys {sorted(payload)!r}): expected an EventBridge event "
        'or {"accounts": [...]}'
    )


def parse_sqs_record(record: Mapping[str, Any], settings: Settings) -> list[Parsed]:
    """One SQS message whose body is an EventBridge event or a manual request."""
    body = record.get("body")
    try:
        payload = json.loads(body) if isinstance(body, str) else None
    except json.JSONDecodeError as err:
        raise InvalidRequest(
            f"message {record.get('messageId')!r}: body is not JSON ({err.msg})"
        ) from err
    except RecursionError as err:  # nested deeper than the interpreter's stack
        raise InvalidRequest(f"message {record.get('messageId')!r}: body nested too deep") from err
    if is_sqs_batch(payload):
        raise InvalidRequest(f"message {record.get('messageId')!r}: nested SQS batch")
    return parse_input(payload, settings)


# Manual requests -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _known_regions() -> frozenset[str]:
    session = boto3.session.Session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(regions)


def validate_regions(value: Any, settings: Settings) -> tuple[str, ...]:
    """A request's region list: known region names, all of them hub regions, no duplicates."""
    if not isinstance(value, list | tuple) or not value:
        raise InvalidRequest(
            f"regions must be a non-empty list of region names, got {value!r:.200}"
        )
    regions: list[str] = []
    for region in value:
        if not isinstance(region, str) or not REGION_NAME.fullmatch(region):
            raise InvalidRequest(f"region {region!r} is not a region name (e.g. eu-west-1)")
        if region not in settings.hub_regions:
            if region not in _known_regions():
                raise InvalidRequest(f"region {region!r} is not a known AWS region")
            raise InvalidRequest(
                f"region {region!r} is not in HUB_REGIONS ({','.join(settings.hub_regions)})"
            )
        if region not in regions:
            regions.append(region)
    return tuple(regions)


def validate_account_id(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(
            f"account id {value!r} must be a string of 12 digits, not {type(value).__name__}"
        )
    if not ACCOUNT_ID.fullmatch(value):
        raise InvalidRequest(f"account id {value!r} is not 12 digits")
    return value


def parse_manual(
    payload: Mapping[str, Any], settings: Settings
) -> list[OnboardingRequest] | list[AllAccountsRequest]:
    """`{"accounts": [...] | "ALL", "regions"?, "dry_run"?, "reason"?, "attempt"?, "action"?,
    "guardduty"?}`; `{"remove": [...] | "ALL", ...}` is `{"accounts": ..., "action": "remove"}`."""
    unknown = sorted(set(payload) - MANUAL_KEYS)
    if unknown:
        raise InvalidRequest(
            f"unknown key(s) {unknown!r} in request; allowed: {sorted(MANUAL_KEYS)}"
        )
    action, guardduty, payload = _action(payload)

    regions = None
    if payload.get("regions") is not None:
        regions = validate_regions(payload["regions"], settings)

    dry_run = payload.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidRequest(f"dry_run must be true or false, got {dry_run!r}")

    reason = payload.get("reason", "manual")
    if not isinstance(reason, str) or not _REASON.fullmatch(reason):
        raise InvalidRequest(f"reason {reason!r} must be a short printable string")

    attempt = payload.get("attempt", 1)
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise InvalidRequest(f"attempt {attempt!r} must be a positive integer")

    accounts = payload["accounts"]
    if accounts == ALL_ACCOUNTS:
        if action == DEPARTED:
            raise InvalidRequest('action "departed" names accounts, not "ALL"')
        return [AllAccountsRequest(regions, reason, dry_run, action, guardduty)]
    if not isinstance(accounts, list | tuple) or not accounts:
        raise InvalidRequest(
            f'accounts must be a non-empty list of account ids or "ALL", got {accounts!r:.200}'
        )
    if len(accounts) > MAX_REQUEST_ACCOUNTS:
        raise InvalidRequest(
            f"the request names {len(accounts)} accounts, at most {MAX_REQUEST_ACCOUNTS} per "
            'request: use `watershed backfill` (or {"accounts": "ALL"}) for more'
        )
    ids = list(dict.fromkeys(validate_account_id(a) for a in accounts))
    return [
        OnboardingRequest(
            account_id=a,
            regions=regions,
            reason=reason,
            attempt=attempt,
            dry_run=dry_run,
            action=action,
            guardduty=guardduty,
        )
        for a in ids
    ]


def _action(payload: Mapping[str, Any]) -> tuple[str, bool, Mapping[str, Any]]:
    """The request's action and GuardDuty flag; the shorthand `remove` key folded into
    `accounts`. Refuses an unknown action, both keys at once, and `guardduty` off removal."""
    action = payload.get("action", ONBOARD)
    if action not in ACTIONS:
        raise InvalidRequest(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    if "remove" in payload:
        if "accounts" in payload:
            raise InvalidRequest('give either "accounts" or "remove", not both')
        if action != REMOVE and "action" in payload:
            raise InvalidRequest(f'"remove" with action {action!r}: drop one of them')
        action = REMOVE
        payload = {
            **{k: v for k, v in payload.items() if k != "remove"},
            "accounts": payload["remove"],
        }
    guardduty = payload.get("guardduty", False)
    if not isinstance(guardduty, bool):
        raise InvalidRequest(f"guardduty must be true or false, got {guardduty!r}")
    if guardduty and action != REMOVE:
        raise InvalidRequest('guardduty (delete watershed\'s detectors) applies to "remove" only')
    return action, guardduty, payload


# EventBridge events --------------------------------------------------------------------------

# Organizations API calls (detail-type "AWS API Call via CloudTrail", management account) that
# can put an account out of scope, bring it back, or take it out of the organization.
SCOPE_EVENTS = ("MoveAccount", "TagResource", "UntagResource", "RemoveAccountFromOrganization")


def _get(document: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(document, Mapping):
            return None
        document = document.get(key)
    return document


def _find_account_ids(document: Any) -> list[str]:
    """Every 12-digit `accountId`/`AccountId` value anywhere inside `document`, in document
    order. Walked with an explicit stack: however deep the event, no RecursionError."""
    found: list[str] = []
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            children = []
            for key, value in node.items():
                if key in ("accountId", "AccountId") and isinstance(value, str):
                    children.append(_Found(value))
                else:
                    children.append(value)
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, _Found) and ACCOUNT_ID.fullmatch(node.value):
            found.append(node.value)
    return found


@dataclass(frozen=True)
class _Found:
    value: str


def _request(event: Mapping[str, Any], account: Any, reason: str, **kw: Any) -> Parsed:
    if not isinstance(account, str) or not ACCOUNT_ID.fullmatch(account):
        return Ignored(f"{reason}: no valid account id in the event ({account!r:.80})", event)
    return OnboardingRequest(account_id=account, reason=reason, **kw)


def _wrong_type(event: Mapping[str, Any], where: str, value: Any, expected: str) -> Ignored:
    return Ignored(f"{where} is {type(value).__name__}, not {expected}: not an AWS event", event)


def parse_event(event: Mapping[str, Any], settings: Settings) -> Parsed:
    """One EventBridge event → an OnboardingRequest, or Ignored with the reason.

    Fields are read by type: a field of the wrong type (`detail` a list, `createAccountStatus`
    a string, ...) makes the event Ignored with the reason - never an exception, which would
    send a message round the retry loop."""
    source = event.get("source")
    detail_type = event.get("detail-type")
    for name_, value in (("source", source), ("detail-type", detail_type)):
        if not isinstance(value, str):
            return _wrong_type(event, name_, value, "a string")
    detail = event.get("detail", {})
    if not isinstance(detail, Mapping):
        return _wrong_type(event, "detail", detail, "an object")
    name = detail.get("eventName")
    if name is not None and not isinstance(name, str):
        return _wrong_type(event, "detail.eventName", name, "a string")
    origin = event.get("account")
    from_management = origin == settings.management_account_id
    not_management = f"{name or detail_type} from account {origin!r}, not the management account"

    if source == "aws.organizations":
        if detail.get("errorCode"):
            return Ignored(f"{name} failed with {detail.get('errorCode')}", event)
        if name == "AcceptHandshake":
            # Logged only in the invited account's own trail, so it comes from that account.
            recipient = detail.get("recipientAccountId")
            if origin != recipient:
                return Ignored(
                    f"AcceptHandshake for {recipient!r} sent by account {origin!r}", event
                )
            return _request(event, recipient, "AcceptHandshake")
        if name == "LeaveOrganization":
            return _departure(event, detail, origin)
        if not from_management:
            return Ignored(not_management, event)
        if name in SCOPE_EVENTS:
            return _scope_event(event, detail, name, settings)
        if name == "CreateAccountResult":
            status = _get(detail, "serviceEventDetails", "createAccountStatus")
            if not isinstance(status, Mapping):
                where = "detail.serviceEventDetails.createAccountStatus"
                return _wrong_type(event, where, status, "an object")
            state = status.get("state")
            if state != "SUCCEEDED":
                why = f": {status['failureReason']}" if status.get("failureReason") else ""
                return Ignored(f"CreateAccountResult state {state}{why}", event)
            return _request(event, status.get("accountId"), "CreateAccountResult")
        if name == "AccountJoinedOrganization":
            # Shape not verified against a real event: take the first account id that is not
            # the management account's from anywhere in serviceEventDetails.
            ids = [
                a
                for a in _find_account_ids(detail.get("serviceEventDetails"))
                if a != settings.management_account_id
            ]
            return _request(event, ids[0] if ids else None, "AccountJoinedOrganization")
        if name == "CreateAccount":
            return Ignored("CreateAccount carries no account id yet (IN_PROGRESS)", event)
        return Ignored(f"organizations event {name!r} is not a trigger", event)

    if source == "aws.controltower":
        if name not in ("CreateManagedAccount", "UpdateManagedAccount"):
            return Ignored(f"control tower event {name!r} is not a trigger", event)
        if not from_management:
            return Ignored(not_management, event)
        key = (
            "createManagedAccountStatus"
            if name == "CreateManagedAccount"
            else ("updateManagedAccountStatus")
        )
        status = _get(detail, "serviceEventDetails", key)
        if not isinstance(status, Mapping):
            return _wrong_type(event, f"detail.serviceEventDetails.{key}", status, "an object")
        if status.get("state") != "SUCCEEDED":
            return Ignored(f"{name} state {status.get('state')}", event)
        return _request(event, _get(status, "account", "accountId"), name)

    if source == "aws.account" and detail_type == "Region Opt-In Status Change":
        # From any account: AWS sends it to the account that made the call (a member enabling
        # its own region, a delegated administrator, the management account), and an `aws.`
        # source cannot be put on a bus by anyone but AWS. It names the account it is about;
        # onboarding still checks that account is an ACTIVE member before writing anything.
        status, region = detail.get("status"), detail.get("regionName")
        if status != "ENABLED":
            return Ignored(f"region opt-in status {status} (only ENABLED onboards)", event)
        if region not in settings.hub_regions:
            return Ignored(f"region {region!r} opted in, but it is not a hub region", event)
        return _request(event, detail.get("accountId"), REGION_OPT_IN, regions=(region,))

    return Ignored(f"not a trigger: source={source!r} detail-type={detail_type!r}", event)


def _scope_event(
    event: Mapping[str, Any], detail: Mapping[str, Any], name: str, settings: Settings
) -> Parsed:
    """MoveAccount / TagResource / UntagResource → a SCOPE request (the consumer reads the
    account's exclusions, then onboards or removes) when it can change the account's scope;
    RemoveAccountFromOrganization → a DEPARTED record."""
    params = detail.get("requestParameters")
    params = params if isinstance(params, Mapping) else {}
    if name == "RemoveAccountFromOrganization":
        return _request(event, params.get("accountId"), name, action=DEPARTED)
    if name == "MoveAccount":
        if not settings.excluded_ous:
            return Ignored("MoveAccount: no EXCLUDED_OUS, an account's OU does not matter", event)
        return _request(event, params.get("accountId"), name, action=SCOPE)
    resource = params.get("resourceId")
    if not isinstance(resource, str) or not ACCOUNT_ID.match(resource):
        return Ignored(f"{name} of {resource!r}: not an account", event)
    if settings.exclude_tag is None:
        return Ignored(f"{name}: no EXCLUDE_TAG, an account's tags do not matter", event)
    key = settings.exclude_tag[0]
    if name == "TagResource":
        tags = params.get("tags") if isinstance(params.get("tags"), list) else []
        keys = [t.get("key", t.get("Key")) for t in tags if isinstance(t, Mapping)]
    else:
        keys = params.get("tagKeys") if isinstance(params.get("tagKeys"), list) else []
    if key not in keys:
        return Ignored(f"{name} of {resource}: EXCLUDE_TAG key {key!r} not touched", event)
    return _request(event, resource, name, action=SCOPE)


def _departure(event: Mapping[str, Any], detail: Mapping[str, Any], origin: Any) -> Parsed:
    """LeaveOrganization is called by the member itself and logged in its own trail: only
    believed when the event comes from that very account."""
    recipient = detail.get("recipientAccountId")
    caller = _get(detail, "userIdentity", "accountId")
    if not (origin == recipient == caller):
        return Ignored(f"LeaveOrganization for {recipient!r} sent by account {origin!r}", event)
    return _request(event, origin, "LeaveOrganization", action=DEPARTED)
