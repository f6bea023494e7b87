"""A model of the receiving bus's check when a rule in another account sends it an event.

moto stores event bus policies but never consults them, so a template that forgot its bus
policy, or an onboarding that wrote a forwarding target without `RoleArn`, would still deliver
in the sandbox. This evaluates the receiving bus's policy for the one request that matters
here — `events:PutEvents` from the sending rule's account — the way AWS documents it:

- an explicit Deny that matches wins; otherwise an Allow must match;
- Principal `"*"`, `{"AWS": "*"}`, the account id or `arn:<partition>:iam::<account>:root`;
- conditions `StringEquals` / `StringLike` (exact match only) on `aws:PrincipalOrgID` and
  `aws:PrincipalAccount`; a statement with any other condition is not evaluated and does not
  apply (the notice says so);
- a statement that grants through `aws:PrincipalOrgID` requires the sending target to have a
  `RoleArn` (shared/design.md, "AWS facts to rely on").

It is a model, not IAM: it cannot prove that AWS would accept a policy, only catch one that is
missing or does not name the organization. Same-account deliveries are not checked (AWS does
not consult the policy for them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_KNOWN_KEYS = {"aws:principalorgid", "aws:principalaccount"}


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str


def organization_of(account_id: str) -> str | None:
    """The organization moto has the account in, or None."""
    from moto.organizations.models import organizations_backends

    try:
        description = organizations_backends[account_id]["aws"].describe_organization()
    except Exception:
        return None
    organization = description.get("Organization", description)
    return organization.get("Id")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _principal_matches(principal: Any, account_id: str) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        return any(
            p == "*"
            or p == account_id
            or (isinstance(p, str) and p.endswith(f"::{account_id}:root"))
            for p in _as_list(principal.get("AWS", []))
        )
    return principal == account_id


def _action_matches(action: Any) -> bool:
    return any(a in ("*", "events:*", "events:PutEvents") for a in _as_list(action))


def _conditions(
    statement: dict[str, Any], context: dict[str, str | None]
) -> tuple[bool | None, bool]:
    """(matched, by organization): matched is None when a condition cannot be evaluated."""
    by_org = False
    for operator, pairs in (statement.get("Condition") or {}).items():
        if operator not in ("StringEquals", "StringLike"):
            return None, by_org
        for key, expected in pairs.items():
            if key.lower() not in _KNOWN_KEYS:
                return None, by_org
            by_org = by_org or key.lower() == "aws:principalorgid"
            if context.get(key.lower()) not in _as_list(expected):
                return False, by_org
    return True, by_org


def evaluate(
    policy: str | dict[str, Any] | None, sender_account: str, has_role: bool
) -> tuple[Verdict, list[str]]:
    """Would the bus accept PutEvents from `sender_account`'s rule? Plus what was not evaluated."""
    if not policy:
        return Verdict(False, "the receiving bus has no policy"), []
    document = json.loads(policy) if isinstance(policy, str) else policy
    context = {
        "aws:principalaccount": sender_account,
        "aws:principalorgid": organization_of(sender_account),
    }
    unevaluated: list[str] = []
    allowed: Verdict | None = None
    for statement in _as_list(document.get("Statement", [])):
        if not _action_matches(statement.get("Action")):
            continue
        if not _principal_matches(statement.get("Principal"), sender_account):
            continue
        matched, by_org = _conditions(statement, context)
        sid = statement.get("Sid", "?")
        if matched is None:
            unevaluated.append(f"statement {sid}: condition not modelled, not applied")
            continue
        if not matched:
            continue
        if statement.get("Effect") == "Deny":
            return Verdict(False, f"denied by statement {sid}"), unevaluated
        if by_org and not has_role:
            allowed = allowed or Verdict(
                False, f"statement {sid} grants by aws:PrincipalOrgID: the target needs a RoleArn"
            )
            continue
        if allowed is None or not allowed.allowed:
            allowed = Verdict(True, f"allowed by statement {sid}")
    return allowed or Verdict(False, "no statement allows it"), unevaluated
