"""The forwarding rule and its target in one member region.

Rule FORWARD_RULE_NAME on the default bus with the forwarding pattern; target id
`security-bus` → the Security account's default bus *in the same region* (one bus-to-bus hop),
with the forwarder role as `RoleArn` (required when the receiving bus policy grants by
`aws:PrincipalOrgID`). Only what differs is written. Every other target on our rule is foreign
and removed: the rule is watershed's, and an extra target would copy the account's security
events elsewhere (each removal is a Change naming the target's id and ARN).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from onboarding.errors import RetryableStepFailed, error_code
from onboarding.report import Change
from onboarding.settings import Settings

TARGET_ID = "security-bus"
RULE_DESCRIPTION = "watershed: forward security events to the Security account, same region"
_TARGET_REWRITES = ("Input", "InputPath", "InputTransformer")  # would alter forwarded events
REMOVE_TARGETS_PER_CALL = 100  # RemoveTargets takes at most 100 ids (a rule has at most 5)


@dataclass(frozen=True)
class ForwardingState:
    rule: dict[str, Any] | None  # DescribeRule output, None when the rule does not exist
    target: dict[str, Any] | None  # our target (id security-bus), None when absent
    # Every other target on our rule: not declared by watershed, so removed (an extra target
    # on the forwarding rule would copy the account's security events somewhere else).
    foreign: tuple[dict[str, Any], ...] = ()


def read_forwarding(events: Any, settings: Settings) -> ForwardingState:
    try:
        rule = events.describe_rule(Name=settings.forward_rule_name)
    except ClientError as err:
        if error_code(err) == "ResourceNotFoundException":
            return ForwardingState(None, None)
        raise
    target = None
    foreign = []
    pages = events.get_paginator("list_targets_by_rule").paginate(Rule=settings.forward_rule_name)
    for page in pages:
        for candidate in page.get("Targets", []):
            if candidate.get("Id") == TARGET_ID:
                target = candidate
            else:
                foreign.append(candidate)
    return ForwardingState(rule, target, tuple(foreign))


def desired_target(settings: Settings, account_id: str, region: str) -> dict[str, str]:
    return {
        "Id": TARGET_ID,
        "Arn": settings.security_bus_arn(region),
        "RoleArn": settings.forwarder_role_arn(account_id),
    }


def _pattern(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        return None


def plan_forwarding(
    state: ForwardingState, settings: Settings, account_id: str, region: str
) -> list[Change]:
    changes = []
    rule_name = settings.forward_rule_name
    if state.rule is None:
        changes.append(Change("rule", "create", rule_name))
    else:
        if _pattern(state.rule.get("EventPattern")) != settings.forward_event_pattern:
            changes.append(Change("rule", "update", f"{rule_name} event pattern differs"))
        if state.rule.get("State") != "ENABLED":
            changes.append(Change("rule", "update", f"{rule_name} state {state.rule.get('State')}"))
    want = desired_target(settings, account_id, region)
    if state.target is None:
        changes.append(Change("target", "create", f"{TARGET_ID} → {want['Arn']}"))
    else:
        diffs = [k for k in ("Arn", "RoleArn") if state.target.get(k) != want[k]]
        diffs += [k for k in _TARGET_REWRITES if state.target.get(k)]
        if diffs:
            changes.append(Change("target", "update", f"{TARGET_ID} {', '.join(diffs)} differ"))
    changes += foreign_target_changes(state)
    return changes


def foreign_target_changes(state: ForwardingState) -> list[Change]:
    """One `delete` per target on our rule that is not ours (any id but `security-bus`)."""
    return [
        Change(
            "target",
            "delete",
            f"foreign target {t.get('Id')} → {t.get('Arn')}",
            subject=str(t.get("Id")),
        )
        for t in state.foreign
    ]


def apply_forwarding(
    events: Any, settings: Settings, account_id: str, region: str, changes: list[Change]
) -> None:
    if any(c.resource == "rule" for c in changes):
        events.put_rule(
            Name=settings.forward_rule_name,
            EventPattern=settings.forward_pattern_json,
            State="ENABLED",
            Description=RULE_DESCRIPTION,
        )
    foreign = [c.subject for c in changes if c.resource == "target" and c.action == "delete"]
    if foreign:
        _remove_targets(events, settings, account_id, region, foreign)
    if any(c.resource == "target" and c.action != "delete" for c in changes):
        response = events.put_targets(
            Rule=settings.forward_rule_name, Targets=[desired_target(settings, account_id, region)]
        )
        # Typically IAM propagation of a brand-new forwarder role: worth a retry.
        _raise_failed_entry(response, account_id, region, "PutTargetsFailed")


def _remove_targets(
    events: Any, settings: Settings, account_id: str, region: str, ids: list[str]
) -> None:
    for start in range(0, len(ids), REMOVE_TARGETS_PER_CALL):
        response = events.remove_targets(
            Rule=settings.forward_rule_name, Ids=ids[start : start + REMOVE_TARGETS_PER_CALL]
        )
        _raise_failed_entry(response, account_id, region, "RemoveTargetsFailed")


def _raise_failed_entry(
    response: dict[str, Any], account_id: str, region: str, default_code: str
) -> None:
    """PutTargets / RemoveTargets answer 200 with per-target failures: raise the first one."""
    if response.get("FailedEntryCount"):
        entry = response.get("FailedEntries", [{}])[0]
        message = entry.get("ErrorMessage", "")
        if entry.get("TargetId"):
            message = f"target {entry['TargetId']}: {message}"
        raise RetryableStepFailed(
            account_id, region, "forwarding", entry.get("ErrorCode", default_code), message
        )


def ensure_forwarding(
    events: Any, settings: Settings, account_id: str, region: str, dry_run: bool = False
) -> list[Change]:
    """Read, compare, write only the difference. Returns the changes made (or planned)."""
    changes = plan_forwarding(read_forwarding(events, settings), settings, account_id, region)
    if changes and not dry_run:
        apply_forwarding(events, settings, account_id, region, changes)
    return changes
