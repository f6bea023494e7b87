"""The forwarder role in a member account (IAM is global: once per account, not per region).

Trusted by `events.amazonaws.com` only when acting for this very account (`aws:SourceAccount`)
and for its forwarding rule (`aws:SourceArn`: EventBridge sets it to the ARN of the rule whose
target assumes the role), allowed `events:PutEvents` on exactly the Security buses the delivery
mode uses (relay: the default bus of every hub region; direct: the home region's only) —
nothing else. `read_*` / `plan_*` never write; `ensure_forwarder_role` writes
only the difference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from onboarding import ownership
from onboarding.errors import error_code
from onboarding.report import Change
from onboarding.settings import Settings, canonical_json

POLICY_NAME = "watershed-put-events"
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
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account_id},
                    "ArnLike": {"aws:SourceArn": forward_rule_arn_pattern(settings, account_id)},
                },
            }
        ],
    }


def permissions_policy(settings: Settings) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PutEventsOnSecurityBus",
                "Effect": "Allow",
                "Action": "events:PutEvents",
                "Resource": list(settings.target_bus_arns()),
            }
        ],
    }


def _document(value: Any) -> dict[str, Any] | None:
    """IAM returns policy documents URL-encoded as text or (boto3) already decoded."""
    if value is None:
        return None
    if isinstance(value, str):
        return json.loads(unquote(value))
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
    return RoleState(
        True,
        _document(role.get("AssumeRolePolicyDocument")),
        _document(policy),
        tuple(role.get("Tags", [])),
    )


def plan_forwarder_role(state: RoleState, settings: Settings, account_id: str) -> list[Change]:
    if not state.exists:
        return [
            Change("forwarder-role", "create", settings.forwarder_role_name),
            Change("role-policy", "create", f"{POLICY_NAME}: events:PutEvents on Security bus"),
        ]
    changes = []
    if not same_policy(state.trust_policy, trust_policy(settings, account_id)):
        changes.append(Change("forwarder-role", "update", "trust policy differs"))
    if state.permissions_policy is None:
        changes.append(Change("role-policy", "create", f"{POLICY_NAME} missing"))
    elif not same_policy(state.permissions_policy, permissions_policy(settings)):
        changes.append(Change("role-policy", "update", f"{POLICY_NAME} differs"))
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
    later = [c for c in changes if c.resource == "role-policy"]
    return [c for c in changes if c.resource != "role-policy"], later


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
    if any(c.resource == "role-policy" for c in changes):
        iam.put_role_policy(
            RoleName=name,
            PolicyName=POLICY_NAME,
            PolicyDocument=canonical_json(permissions_policy(settings)),
        )
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
    inline = [
        p
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=name)
        for p in page.get("PolicyNames", [])
    ]
    attached = [
        p["PolicyArn"]
        for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name)
        for p in page.get("AttachedPolicies", [])
    ]
    return RoleRemoval(True, tuple(role.get("Tags", [])), tuple(inline), tuple(attached))


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
