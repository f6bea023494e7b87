"""The forwarding rule and its target in one member region.

Rule FORWARD_RULE_NAME on the default bus with the forwarding pattern; target id
`security-bus` → the Security account's default bus *in the same region* (relay mode) or *in
the home region* (direct mode; `Settings.target_bus_arn` decides) — one bus-to-bus hop either
way — with the forwarder role as `RoleArn` (required when the receiving bus policy grants by
`aws:PrincipalOrgID`, and for every cross-region bus target), EventBridge's longest retry
policy and the Security account's dead-letter queue of the rule's region. Only what differs is
written.
Every other target on our rule is foreign and removed: the rule is watershed's, and an extra
target would copy the account's security events elsewhere (each removal is a Change naming
the target's id and ARN).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from onboarding.errors import RetryableStepFailed, error_code
from onboarding.report import Change
from onboarding.resources import ownership
from onboarding.settings import Settings

TARGET_ID = "security-bus"
RULE_DESCRIPTION = "watershed: forward security events to the Security account, same region"
_TARGET_REWRITES = ("Input", "InputPath", "InputTransformer")  # would alter forwarded events
REMOVE_TARGETS_PER_CALL = 100  # RemoveTargets takes at most 100 ids (a rule has at most 5)
GUARDDUTY_SOURCE = "aws.guardduty"
GUARDDUTY_FINDING = "GuardDuty Finding"
RULE_TAG = "rule-tag"  # the Change resource for the managed-by tag of an existing rule


@dataclass(frozen=True)
class ForwardingState:
    rule: dict[str, Any] | None  # DescribeRule output, None when the rule does not exist
    target: dict[str, Any] | None  # our target (id security-bus), None when absent
    tags: tuple[dict[str, str], ...] = ()  # the rule's tags (ListTagsForResource)
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
    return ForwardingState(rule, target, read_rule_tags(events, rule), tuple(foreign))


def rule_arn(settings: Settings, account_id: str, region: str) -> str:
    return (
        f"arn:{settings.partition(region)}:events:{region}:{account_id}"
        f":rule/{settings.forward_rule_name}"
    )


def read_rule_tags(events: Any, rule: dict[str, Any] | None) -> tuple[dict[str, str], ...]:
    if rule is None or not rule.get("Arn"):
        return ()
    return tuple(events.list_tags_for_resource(ResourceARN=rule["Arn"]).get("Tags", []))


# EventBridge's own maxima (24 h, 185 attempts), and a dead-letter queue in the Security account
# for what still fails: without one, an event refused for a missing permission or a missing bus
# (not retried at all) is dropped.
RETRY_POLICY = {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
_DELIVERY_FIELDS = ("RetryPolicy", "DeadLetterConfig")


def desired_target(settings: Settings, account_id: str, region: str) -> dict[str, Any]:
    return {
        "Id": TARGET_ID,
        "Arn": settings.target_bus_arn(region),
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
        if not ownership.is_managed(state.tags):
            changes.append(Change(RULE_TAG, "create", f"{rule_name} {ownership.MANAGED_TAG_TEXT}"))
    want = desired_target(settings, account_id, region)
    if state.target is None:
        changes.append(Change("target", "create", f"{TARGET_ID} → {want['Arn']}"))
    else:
        diffs = [k for k in ("Arn", "RoleArn") if state.target.get(k) != want[k]]
        diffs += [k for k in _TARGET_REWRITES if state.target.get(k)]
        others = [k for k in diffs if k != "Arn"]
        detail = ", ".join(others) + " differ" if others else ""
        if "Arn" in diffs:  # e.g. a relay <-> direct switch: say where from and where to
            repoint = f"repoint {state.target.get('Arn')} → {want['Arn']}"
            detail = f"{repoint}; {detail}" if detail else repoint
        if diffs:
            changes.append(Change("target", "update", f"{TARGET_ID} {detail}"))
        delivery = [k for k in _DELIVERY_FIELDS if state.target.get(k) != want[k]]
        if delivery:
            detail = f"{TARGET_ID} delivery: {', '.join(delivery)} differ"
            changes.append(Change("target", "update", detail))
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
        # PutRule takes Tags only when it creates the rule (ignored on an update).
        creating = any(c.resource == "rule" and c.action == "create" for c in changes)
        tags = {"Tags": ownership.tag_list()} if creating else {}
        events.put_rule(
            Name=settings.forward_rule_name,
            EventPattern=settings.forward_pattern_json,
            State="ENABLED",
            Description=RULE_DESCRIPTION,
            **tags,
        )
    foreign = [c.subject for c in changes if c.resource == "target" and c.action == "delete"]
    if foreign:
        _remove_targets(events, settings, account_id, region, foreign)
    if any(c.resource == RULE_TAG for c in changes):
        arn = rule_arn(settings, account_id, region)
        events.tag_resource(ResourceARN=arn, Tags=ownership.tag_list())
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


def _raise_failed_entry(response: Any, account_id: str, region: str, default: str) -> None:
    """Put/RemoveTargets answer 200 with failed entries: the first one as a retryable failure."""
    if response.get("FailedEntryCount"):
        entry = response.get("FailedEntries", [{}])[0]
        raise RetryableStepFailed(
            account_id,
            region,
            "forwarding",
            entry.get("ErrorCode", default),
            entry.get("ErrorMessage", ""),
        )


def ensure_forwarding(
    events: Any,
    settings: Settings,
    account_id: str,
    region: str,
    dry_run: bool = False,
    before_write: Callable[[], None] | None = None,
) -> list[Change]:
    """Read, compare, write only the difference. Returns the changes made (or planned).
    `before_write` is called once before the first write, if any (it may wait, or raise to
    write nothing: onboarding waits there for the account's forwarder role)."""
    changes = plan_forwarding(read_forwarding(events, settings), settings, account_id, region)
    if changes and not dry_run:
        if before_write is not None:
            before_write()
        apply_forwarding(events, settings, account_id, region, changes)
    return changes


def pattern_without_guardduty_findings(pattern: Mapping[str, Any]) -> dict[str, Any]:
    """The configured forwarding pattern, minus GuardDuty findings (docs/architecture.md).

    Where the Security account is the GuardDuty administrator of a member, GuardDuty itself
    puts the member's findings on the Security bus of that region: forwarding them too would
    deliver each finding twice. Every branch (of a top-level `$or`, or the pattern itself) that
    takes `source` aws.guardduty keeps its other sources and keeps GuardDuty's other events
    (malware scan results, health), but no longer matches detail-type "GuardDuty Finding".
    Branches that do not name aws.guardduty (e.g. the CloudTrail branch) are unchanged."""
    branches = pattern["$or"] if isinstance(pattern.get("$or"), list) else [pattern]
    rest = {k: v for k, v in pattern.items() if k != "$or"} if "$or" in pattern else {}
    out: list[dict[str, Any]] = []
    for branch in branches:
        out += _without_findings(branch)
    if "$or" in pattern:
        return {**copy.deepcopy(rest), "$or": out}
    return out[0] if len(out) == 1 else {"$or": out}


def _without_findings(branch: Mapping[str, Any]) -> list[dict[str, Any]]:
    branch = copy.deepcopy(dict(branch))
    sources = branch.get("source")
    if not isinstance(sources, list) or GUARDDUTY_SOURCE not in sources:
        return [branch]
    detail_types = branch.get("detail-type")
    if isinstance(detail_types, list):  # the branch names its detail-types: drop the finding
        kept = [d for d in detail_types if d != GUARDDUTY_FINDING]
        return [{**branch, "detail-type": kept}] if kept else []
    others = [s for s in sources if s != GUARDDUTY_SOURCE]
    guardduty = {
        **branch,
        "source": [GUARDDUTY_SOURCE],
        "detail-type": [{"anything-but": GUARDDUTY_FINDING}],
    }
    return ([{**branch, "source": others}] if others else []) + [guardduty]


# Removal ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemovalState:
    """What removal needs to know about the rule of our name in one region."""

    rule: dict[str, Any] | None
    tags: tuple[dict[str, str], ...] = ()
    ours: bool = False  # our target (id security-bus) is on the rule
    other_targets: tuple[str, ...] = ()  # ids of every other target on it


def read_removal(events: Any, settings: Settings) -> RemovalState:
    try:
        rule = events.describe_rule(Name=settings.forward_rule_name)
    except ClientError as err:
        if error_code(err) == "ResourceNotFoundException":
            return RemovalState(None)
        raise
    pages = events.get_paginator("list_targets_by_rule").paginate(Rule=settings.forward_rule_name)
    ids = [t.get("Id", "") for page in pages for t in page.get("Targets", [])]
    return RemovalState(
        rule,
        read_rule_tags(events, rule),
        TARGET_ID in ids,
        tuple(i for i in ids if i != TARGET_ID),
    )


def is_our_rule(state: RemovalState) -> bool:
    """Ours: tagged managed-by=watershed, or (a deployment older than the tag) untagged with the
    description watershed writes. A rule of our name with neither is someone else's."""
    if state.rule is None:
        return False
    return ownership.is_managed(state.tags) or state.rule.get("Description") == RULE_DESCRIPTION


def plan_remove_forwarding(state: RemovalState, settings: Settings) -> list[Change]:
    """Our target, then our rule — unless the rule is not ours or still has other targets."""
    name = settings.forward_rule_name
    if state.rule is None:
        return []
    if not is_our_rule(state):
        return [
            Change("rule", "retain", f"{name} is not watershed's (untagged, other description)")
        ]
    changes = []
    if state.ours:
        changes.append(Change("target", "delete", TARGET_ID))
    if state.other_targets:
        others = ", ".join(state.other_targets)
        changes.append(Change("rule", "retain", f"{name} still has other targets ({others})"))
    else:
        changes.append(Change("rule", "delete", name))
    return changes


def apply_remove_forwarding(
    events: Any, settings: Settings, account_id: str, region: str, changes: list[Change]
) -> None:
    kinds = {(c.resource, c.action) for c in changes}
    name = settings.forward_rule_name
    if ("target", "delete") in kinds:
        response = events.remove_targets(Rule=name, Ids=[TARGET_ID])
        _raise_failed_entry(response, account_id, region, "RemoveTargetsFailed")
    if ("rule", "delete") in kinds:
        try:
            events.delete_rule(Name=name)
        except ClientError as err:
            if error_code(err) != "ResourceNotFoundException":  # gone meanwhile: done
                raise


def remove_forwarding(
    events: Any, settings: Settings, account_id: str, region: str, dry_run: bool = False
) -> list[Change]:
    """Read, then remove only what exists and is ours. Returns the changes made (or planned)."""
    changes = plan_remove_forwarding(read_removal(events, settings), settings)
    if not dry_run and any(c.action == "delete" for c in changes):
        apply_remove_forwarding(events, settings, account_id, region, changes)
    return changes
