"""The forwarding rule and its target in one member region.

Rule FORWARD_RULE_NAME on the default bus with the forwarding pattern; target id
`security-bus` → the Security account's default bus *in the same region* (one bus-to-bus hop),
with the forwarder role as `RoleArn` (required when the receiving bus policy grants by
`aws:PrincipalOrgID`), EventBridge's longest retry policy and the Security account's dead-letter
queue of that region. Only what differs is written.
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


@dataclass(frozen=True)
class ForwardingState:
    rule: dict[str, Any] | None  # DescribeRule output, None when the rule does not exist
    target: dict[str, Any] | None  # our target (id security-bus), None when absent


def read_forwarding(events: Any, settings: Settings) -> ForwardingState:
    try:
        rule = events.describe_rule(Name=settings.forward_rule_name)
    except ClientError as err:
        if error_code(err) == "ResourceNotFoundException":
            return ForwardingState(None, None)
        raise
    target = None
    pages = events.get_paginator("list_targets_by_rule").paginate(Rule=settings.forward_rule_name)
    for page in pages:
        for candidate in page.get("Targets", []):
            if candidate.get("Id") == TARGET_ID:
                target = candidate
    return ForwardingState(rule, target)


# EventBridge's own maxima (24 h, 185 attempts), and a dead-letter queue in the Security account
# for what still fails: without one, an event refused for a missing permission or a missing bus
# (not retried at all) is dropped.
RETRY_POLICY = {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
_DELIVERY_FIELDS = ("RetryPolicy", "DeadLetterConfig")


def desired_target(settings: Settings, account_id: str, region: str) -> dict[str, Any]:
    return {
        "Id": TARGET_ID,
        "Arn": settings.security_bus_arn(region),
        "RoleArn": settings.forwarder_role_arn(account_id),
        "RetryPolicy": dict(RETRY_POLICY),
        "DeadLetterConfig": {"Arn": settings.member_dead_letter_queue_arn(region)},
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
        delivery = [k for k in _DELIVERY_FIELDS if state.target.get(k) != want[k]]
        if delivery:
            detail = f"{TARGET_ID} delivery: {', '.join(delivery)} differ"
            changes.append(Change("target", "update", detail))
    return changes


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
    if any(c.resource == "target" for c in changes):
        response = events.put_targets(
            Rule=settings.forward_rule_name, Targets=[desired_target(settings, account_id, region)]
        )
        if response.get("FailedEntryCount"):
            entry = response.get("FailedEntries", [{}])[0]
            # Typically IAM propagation of a brand-new forwarder role: worth a retry.
            raise RetryableStepFailed(
                account_id,
                region,
                "forwarding",
                entry.get("ErrorCode", "PutTargetsFailed"),
                entry.get("ErrorMessage", ""),
            )


def ensure_forwarding(
    events: Any, settings: Settings, account_id: str, region: str, dry_run: bool = False
) -> list[Change]:
    """Read, compare, write only the difference. Returns the changes made (or planned)."""
    changes = plan_forwarding(read_forwarding(events, settings), settings, account_id, region)
    if changes and not dry_run:
        apply_forwarding(events, settings, account_id, region, changes)
    return changes
