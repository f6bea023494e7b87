"""The forwarder role in a member account (IAM is global: once per account, not per region).

Trusted by `events.amazonaws.com` only when acting for this very account (`aws:SourceAccount`)
and for its forwarding rule (`aws:SourceArn`: EventBridge sets it to the ARN of the rule whose
target assumes the role), allowed `events:PutEvents` on exactly the Security buses the delivery
mode uses (relay: the default bus of every hub region; direct: the home region's only) —
nothing else. `read_*` / `plan_*` never write; `ensure_forwarder_role` writes only the
difference, and converges the role to exactly that: a trust that differs is rewritten, any
other inline policy is deleted and any attached managed policy is detached (each reported as a
Change naming it).

In the management account the role is declared by management.yaml (no principal of watershed
may write IAM there): `verify_declared_role` reads it and reports how it differs, and
onboarding never writes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from onboarding.errors import error_code
from onboarding.report import Change
from onboarding.resources import ownership
from onboarding.settings import Settings, canonical_json

POLICY_NAME = "watershed-put-events"
EVENTS_PRINCIPAL = "events.amazonaws.com"
ROLE_DESCRIPTION = "watershed: lets EventBridge forward this account's events to the Security bus"
ROLE_TAG = "role-tag"  # the Change resource for the managed-by tag of an existing role
MANAGEMENT_ROLE_RETAINED = (
    "declared by management.yaml in the management account: delete that stack"
)


@dataclass(frozen=True)
class RoleState:
    exists: bool
    trust_policy: dict[str, Any] | None = None
    permissions_policy: dict[str, Any] | None = None
    inline_policy_names: tuple[str, ...] = ()  # every inline policy, ours included
    attached_policy_arns: tuple[str, ...] = ()  # managed policies attached to the role
    tags: tuple[dict[str, str], ...] = ()


def forward_rule_arn_pattern(settings: Settings, account_id: str) -> str:
    """The forwarding rule of `account_id` in any region (one rule name in every hub region)."""
    return f"arn:{settings.partition()}:events:*:{account_id}:rule/{settings.forward_rule_name}"


def trust_policy(settings: Settings, account_id: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": EVENTS_PRINCIPAL},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account_id},
                    "ArnLike": {"aws:SourceArn": forward_rule_arn_pattern(settings, account_id)},
                },
            }
        ],
    }


def permissions_policy(settings: Settings) -> dict[str, Any]:
    return _put_events_on(settings.target_bus_arns())


def _put_events_on(buses: Iterable[str]) -> dict[str, Any]:
    """The forwarder role's one inline policy: PutEvents on these buses, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PutEventsOnSecurityBus",
                "Effect": "Allow",
                "Action": "events:PutEvents",
                "Resource": list(buses),
            }
        ],
    }


def management_permissions_policy(settings: Settings) -> dict[str, Any]:
    """The inline policy management.yaml declares on the management account's forwarder role:
    the Security account's default bus in any region (a template cannot map a region list to
    ARNs; only the hub regions' buses have watershed's bus policy, the others refuse)."""
    partition, security = settings.partition(), settings.security_account_id
    return _put_events_on([f"arn:{partition}:events:*:{security}:event-bus/default"])


def _document(value: Any) -> dict[str, Any] | None:
    """IAM returns policy documents URL-encoded as text or (boto3) already decoded."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return json.loads(unquote(value))
        except json.JSONDecodeError:  # never from IAM; kept as text, so it compares as differing
            return {"unparseable": value[:200]}
    return dict(value)


def _normalise(document: Any) -> Any:
    """Compare policies by meaning: one-element lists equal scalars, list order is irrelevant."""
    if isinstance(document, dict):
        return {k: _normalise(v) for k, v in document.items()}
    if isinstance(document, list):
        items = [_normalise(v) for v in document]
        if len(items) == 1:
            return items[0]
        return sorted(items, key=canonical_json)
    return document


def same_policy(a: Any, b: Any) -> bool:
    return canonical_json(_normalise(a)) == canonical_json(_normalise(b))


def read_forwarder_role(iam: Any, settings: Settings) -> RoleState:
    name = settings.forwarder_role_name
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return RoleState(exists=False)
        raise
    try:
        policy = iam.get_role_policy(RoleName=name, PolicyName=POLICY_NAME)["PolicyDocument"]
    except ClientError as err:
        if error_code(err) != "NoSuchEntity":
            raise
        policy = None
    inline, attached = _role_policies(iam, name)
    return RoleState(
        True,
        _document(role.get("AssumeRolePolicyDocument")),
        _document(policy),
        inline,
        attached,
        tuple(role.get("Tags", [])),
    )


def _role_policies(iam: Any, name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(inline policy names, attached managed policy ARNs) of the role `name`."""
    inline = [
        policy
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=name)
        for policy in page.get("PolicyNames", [])
    ]
    attached = [
        policy["PolicyArn"]
        for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name)
        for policy in page.get("AttachedPolicies", [])
    ]
    return tuple(inline), tuple(attached)


def _trusted(trust: dict[str, Any] | None) -> str:
    """Who a trust policy lets in, for the report: its principals, in order."""
    statements = (trust or {}).get("Statement", [])
    principals: list[str] = []
    for statement in statements if isinstance(statements, list) else [statements]:
        principal = statement.get("Principal") if isinstance(statement, dict) else None
        if isinstance(principal, dict):
            for values in principal.values():
                principals += values if isinstance(values, list) else [str(values)]
        elif principal is not None:
            principals.append(str(principal))
    return ", ".join(dict.fromkeys(principals)) or "nobody"


def plan_forwarder_role(
    state: RoleState,
    settings: Settings,
    account_id: str,
    expected_policy: dict[str, Any] | None = None,
) -> list[Change]:
    """What makes the role exactly as declared. `expected_policy` defaults to the members'
    permissions_policy (management_permissions_policy for the management account)."""
    wanted = expected_policy or permissions_policy(settings)
    if not state.exists:
        return [
            Change("forwarder-role", "create", settings.forwarder_role_name),
            Change("role-policy", "create", f"{POLICY_NAME}: events:PutEvents on Security bus"),
        ]
    changes = []
    if not same_policy(state.trust_policy, trust_policy(settings, account_id)):
        trusted = _trusted(state.trust_policy)
        also = "" if trusted == EVENTS_PRINCIPAL else f" (trusts {trusted})"
        changes.append(Change("forwarder-role", "update", f"trust policy differs{also}"))
    if state.permissions_policy is None:
        changes.append(Change("role-policy", "create", f"{POLICY_NAME} missing"))
    elif not same_policy(state.permissions_policy, wanted):
        changes.append(Change("role-policy", "update", f"{POLICY_NAME} differs"))
    for name in state.inline_policy_names:
        if name != POLICY_NAME:
            changes.append(
                Change("role-policy", "delete", f"foreign inline policy {name}", subject=name)
            )
    for arn in state.attached_policy_arns:
        changes.append(
            Change("attached-policy", "delete", f"foreign attached policy {arn}", subject=arn)
        )
    if not ownership.is_managed(state.tags):
        changes.append(Change(ROLE_TAG, "create", ownership.MANAGED_TAG_TEXT))
    return changes


def plan_in_switch_order(
    iam: Any, settings: Settings, account_id: str
) -> tuple[list[Change], list[Change]]:
    """The role's changes as (now, after_repoint). A relay -> direct switch narrows the policy
    from every hub region's bus to the home region's: done before the targets are repointed, it
    would refuse the events of every region still targeting its own region's bus (a permission
    failure is not retried, so they would be lost). Then the policy change comes last, once
    every target is repointed; everything else (a new role, a trust or any other policy
    difference) is done first, as always."""
    state = read_forwarder_role(iam, settings)
    changes = plan_forwarder_role(state, settings, account_id)
    relay = replace(settings, delivery_mode="relay")
    if not (
        settings.direct
        and state.permissions_policy is not None
        and same_policy(state.permissions_policy, permissions_policy(relay))
    ):
        return changes, []
    # (a foreign policy on the role is removed at once, never held back)
    later = [c for c in changes if c.resource == "role-policy" and c.action != "delete"]
    return [c for c in changes if c not in later], later


def apply_forwarder_role(
    iam: Any, settings: Settings, account_id: str, changes: list[Change]
) -> None:
    name = settings.forwarder_role_name
    kinds = {(c.resource, c.action) for c in changes}
    if ("forwarder-role", "create") in kinds:
        try:
            iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=canonical_json(trust_policy(settings, account_id)),
                Description=ROLE_DESCRIPTION,
                Tags=ownership.tag_list(),
            )
        except ClientError as err:
            if error_code(err) != "EntityAlreadyExists":
                raise
            # Lost a race with a concurrent onboarding: make sure the trust is ours.
            iam.update_assume_role_policy(
                RoleName=name, PolicyDocument=canonical_json(trust_policy(settings, account_id))
            )
    elif ("forwarder-role", "update") in kinds:
        iam.update_assume_role_policy(
            RoleName=name, PolicyDocument=canonical_json(trust_policy(settings, account_id))
        )
    if any(c.resource == "role-policy" and c.action != "delete" for c in changes):
        iam.put_role_policy(
            RoleName=name,
            PolicyName=POLICY_NAME,
            PolicyDocument=canonical_json(permissions_policy(settings)),
        )
    for change in changes:  # what is on our role and not ours: removed
        if change.action != "delete":
            continue
        try:
            if change.resource == "role-policy":
                iam.delete_role_policy(RoleName=name, PolicyName=change.subject)
            elif change.resource == "attached-policy":
                iam.detach_role_policy(RoleName=name, PolicyArn=change.subject)
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":  # already gone: the goal is reached
                raise
    if any(c.resource == ROLE_TAG for c in changes):
        iam.tag_role(RoleName=name, Tags=ownership.tag_list())


def ensure_forwarder_role(
    iam: Any, settings: Settings, account_id: str, dry_run: bool = False
) -> list[Change]:
    """Read, compare, write only the difference. Returns the changes made (or planned)."""
    changes = plan_forwarder_role(read_forwarder_role(iam, settings), settings, account_id)
    if changes and not dry_run:
        apply_forwarder_role(iam, settings, account_id, changes)
    return changes


def verify_declared_role(iam: Any, settings: Settings, account_id: str) -> list[Change]:
    """The management account's forwarder role against what management.yaml declares: the
    differences, read only (onboarding never writes IAM in the management account)."""
    state = read_forwarder_role(iam, settings)
    return plan_forwarder_role(state, settings, account_id, management_permissions_policy(settings))


# Removal ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleRemoval:
    """What removal needs to know about the role of our name."""

    exists: bool
    tags: tuple[dict[str, str], ...] = ()
    inline: tuple[str, ...] = ()  # inline policy names
    attached: tuple[str, ...] = ()  # attached managed policy ARNs


def read_removal(iam: Any, settings: Settings, policies: bool = True) -> RoleRemoval:
    """The role of our name; with `policies=False` only whether it exists and its tags (one
    GetRole: the exclusion reconcile's probe)."""
    name = settings.forwarder_role_name
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return RoleRemoval(exists=False)
        raise
    if not policies:
        return RoleRemoval(True, tuple(role.get("Tags", [])))
    inline, attached = _role_policies(iam, name)
    return RoleRemoval(True, tuple(role.get("Tags", [])), inline, attached)


def plan_remove_forwarder_role(
    state: RoleRemoval, settings: Settings, account_id: str
) -> list[Change]:
    """The role of our name goes only if it carries the managed-by tag (watershed has tagged it
    at creation since the first release, and the reconcile tags a role it converged): a role of
    the same name someone else made is left alone. In the management account the role is never
    deleted here: management.yaml declares it there, and the launcher has no IAM write."""
    name = settings.forwarder_role_name
    if account_id == settings.management_account_id:
        return [Change("forwarder-role", "retain", f"{name} {MANAGEMENT_ROLE_RETAINED}")]
    if not state.exists:
        return []
    if not ownership.is_managed(state.tags):
        why = f"{name} is not tagged {ownership.MANAGED_TAG_TEXT}: not watershed's, left alone"
        return [Change("forwarder-role", "retain", why)]
    changes = [Change("role-policy", "delete", policy) for policy in state.inline]
    changes += [Change("attached-policy", "delete", arn) for arn in state.attached]
    changes.append(Change("forwarder-role", "delete", name))
    return changes


def apply_remove_forwarder_role(iam: Any, settings: Settings, changes: list[Change]) -> None:
    name = settings.forwarder_role_name
    for change in changes:
        if change.action != "delete":
            continue
        try:
            if change.resource == "role-policy":
                iam.delete_role_policy(RoleName=name, PolicyName=change.detail)
            elif change.resource == "attached-policy":
                iam.detach_role_policy(RoleName=name, PolicyArn=change.detail)
            elif change.resource == "forwarder-role":
                iam.delete_role(RoleName=name)
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":  # gone meanwhile: done
                raise


def remove_forwarder_role(
    iam: Any, settings: Settings, account_id: str, dry_run: bool = False
) -> list[Change]:
    """Read, then remove only what exists and is ours. Returns the changes made (or planned).
    In the management account nothing is read or written: the role is management.yaml's."""
    if account_id == settings.management_account_id:
        return plan_remove_forwarder_role(RoleRemoval(False), settings, account_id)
    changes = plan_remove_forwarder_role(read_removal(iam, settings), settings, account_id)
    if not dry_run and any(c.action == "delete" for c in changes):
        apply_remove_forwarder_role(iam, settings, changes)
    return changes
