"""The Security account's side of one hub region, as template.yaml deploys it (read only).

Four checks per region, each `ok` or not with the reason:

- `bus_policy`: the default bus has a policy statement that allows `events:PutEvents` to
  `Principal: "*"` on condition `aws:PrincipalOrgID` = this organization (what members need:
  their forwarding targets are refused without it);
- `collect_rule`: rule `watershed-collect` exists on the default bus, is ENABLED and has a
  Kinesis target;
- `collect_stream`: that target's stream exists and is ACTIVE (or UPDATING);
- `bus_policy_foreign`: no other statement of the bus policy (not watershed's, which is
  `WatershedOrganizationPutEvents`) grants `events:PutEvents` beyond the organization -
  to everyone (`*`, `NotPrincipal`) without an `aws:PrincipalOrgID` condition naming this
  organization. Such a statement lets anyone put events (e.g. forged findings of a custom
  source) on the Security bus. It is not watershed's to delete: the audit reports it as
  Security-side drift and nothing ever removes it. (Explicit account principals are not
  checked against the organization's membership.)

The region's state: `ok` (all four), `missing` (no statement granting anyone and no collect
rule: the template is not deployed there), `drift` (anything else not ok), `error` (a read
failed; the code is kept).

Direct delivery mode (issue 13), a region other than the home region: members deliver to the
home region's bus, so this region needs no bus policy and no stream; what it needs is the
collect rule sending the Security account's own events to the home region's bus
(`home_bus_arn`). The same checks are reported, judged against that.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from onboarding.errors import error_code, error_message

COLLECT_RULE_NAME = "watershed-collect"
LIVE_STREAM_STATUSES = frozenset({"ACTIVE", "UPDATING"})


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class HubRegion:
    """The Security side of one region: its state and the four checks (empty on error)."""

    region: str
    state: str  # ok | drift | missing | error
    checks: dict[str, Check] = field(default_factory=dict)
    error: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": self.state,
            "checks": {name: check.as_dict() for name, check in self.checks.items()},
        }
        if self.state != "ok":
            out["detail"] = self.detail
        if self.error:
            out["error"] = self.error
        return out


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _grants_everyone(statement: dict[str, Any]) -> bool:
    """`Principal: "*"` (how AWS stores it), `{"AWS": "*"}` or any account's root (moto)."""
    principal = statement.get("Principal")
    if principal == "*":
        return True
    aws = principal.get("AWS") if isinstance(principal, dict) else None
    return any(p == "*" or re.fullmatch(r"arn:[a-z-]+:iam::\*:root", p) for p in _as_list(aws))


def _allows_put_events(statement: dict[str, Any]) -> bool:
    actions = _as_list(statement.get("Action"))
    return statement.get("Effect") == "Allow" and any(
        a in ("events:PutEvents", "events:*", "*") for a in actions
    )


def _org_ids(statement: dict[str, Any]) -> list[str]:
    condition = statement.get("Condition") or {}
    return [
        str(v)
        for operator in ("StringEquals", "ForAnyValue:StringEquals")
        for v in _as_list((condition.get(operator) or {}).get("aws:PrincipalOrgID"))
    ]


def check_bus_policy(policy_text: str | None, organization_id: str | None) -> Check:
    """Does the default bus policy let every account of the organization put events?"""
    if not policy_text:
        return Check(False, "no policy on the default bus: members' events are refused")
    statements = _as_list(json.loads(policy_text).get("Statement"))
    candidates = [s for s in statements if _allows_put_events(s) and _grants_everyone(s)]
    orgs = sorted({org for s in candidates for org in _org_ids(s)})
    if organization_id and organization_id in orgs:
        return Check(True, f"grants events:PutEvents to organization {organization_id}")
    if organization_id is None:  # a grant to *some* organization is not a grant to ours
        granted = f"grants organization {', '.join(orgs)}" if orgs else "grants no organization"
        return Check(False, f"cannot verify: organization id unknown ({granted})")
    if orgs:
        return Check(
            False,
            f"grants organization {', '.join(orgs)}, not this organization ({organization_id})",
        )
    return Check(False, "no statement grants events:PutEvents by aws:PrincipalOrgID")


OWN_STATEMENT_ID = "WatershedOrganizationPutEvents"  # template.yaml's OrganizationBusPolicy


def _may_put_events(statement: dict[str, Any]) -> bool:
    actions = [str(a).lower() for a in _as_list(statement.get("Action"))]
    return statement.get("Effect") == "Allow" and any(
        fnmatch.fnmatchcase("events:putevents", a) for a in actions
    )


def _beyond_organization(statement: dict[str, Any], organization_id: str | None) -> bool:
    """Everyone (or everyone but someone) may use it, and no condition limits it to this
    organization (with the organization unknown: to an organization at all)."""
    if "NotPrincipal" not in statement and not _grants_everyone(statement):
        return False
    orgs = _org_ids(statement)
    return organization_id not in orgs if organization_id else not orgs


def check_foreign_grants(policy_text: str | None, organization_id: str | None) -> Check:
    """Statements that are not watershed's and let principals beyond the organization put
    events on this bus: Security-side drift, reported (never deleted)."""
    statements = _as_list(json.loads(policy_text).get("Statement")) if policy_text else []
    open_ = [
        str(s.get("Sid") or f"#{i}")
        for i, s in enumerate(statements)
        if isinstance(s, dict)
        and s.get("Sid") != OWN_STATEMENT_ID
        and _may_put_events(s)
        and _beyond_organization(s, organization_id)
    ]
    if open_:
        return Check(
            False,
            f"statement(s) {', '.join(open_)} (not watershed's) grant events:PutEvents beyond "
            "the organization: anyone could put events on this bus (reported, not removed)",
        )
    return Check(True, "no other statement grants events:PutEvents beyond the organization")


def _stream(arn: str) -> tuple[str, str] | None:
    """(region, stream name) of a Kinesis stream ARN, None if the ARN is not a stream."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "kinesis" or not parts[5].startswith("stream/"):
        return None
    return parts[3], parts[5].removeprefix("stream/")


def read_hub_region(
    events: Any,
    kinesis_for: Any,
    region: str,
    organization_id: str | None,
    home_bus_arn: str | None = None,
) -> HubRegion:
    """Read and judge one region. `kinesis_for(region)` returns a Kinesis client.
    `home_bus_arn`: direct mode and not the home region (see the module docstring)."""
    if home_bus_arn:
        return _read_direct_region(events, region, home_bus_arn)
    try:
        bus = events.describe_event_bus(Name="default")
        policy = check_bus_policy(bus.get("Policy"), organization_id)
        foreign = check_foreign_grants(bus.get("Policy"), organization_id)
        rule = _collect_rule(events)
        if rule is None:
            collect = Check(False, f"rule {COLLECT_RULE_NAME} missing")
            stream = Check(False, "no collect rule, so no stream to deliver to")
        else:
            collect, stream = _check_collect(events, kinesis_for, rule)
    except (ClientError, BotoCoreError) as err:
        return HubRegion(region, "error", error=error_code(err), detail=error_message(err))

    checks = {
        "bus_policy": policy,
        "collect_rule": collect,
        "collect_stream": stream,
        "bus_policy_foreign": foreign,
    }
    if all(c.ok for c in checks.values()):
        return HubRegion(region, "ok", checks)
    detail = "; ".join(c.detail for c in checks.values() if not c.ok)
    nothing_there = rule is None and not bus.get("Policy")
    return HubRegion(region, "missing" if nothing_there else "drift", checks, detail=detail)


def _collect_rule(events: Any) -> dict[str, Any] | None:
    """DescribeRule of watershed-collect, None when the rule does not exist."""
    try:
        return dict(events.describe_rule(Name=COLLECT_RULE_NAME))
    except ClientError as err:
        if error_code(err) != "ResourceNotFoundException":
            raise
        return None


def _check_collect(events: Any, kinesis_for: Any, rule: dict[str, Any]) -> tuple[Check, Check]:
    targets = events.list_targets_by_rule(Rule=COLLECT_RULE_NAME).get("Targets", [])
    streams = [s for s in (_stream(t.get("Arn", "")) for t in targets) if s]
    if rule.get("State") != "ENABLED":
        collect = Check(False, f"rule {COLLECT_RULE_NAME} is {rule.get('State')}")
    elif not streams:
        collect = Check(False, f"rule {COLLECT_RULE_NAME} has no Kinesis target")
    else:
        collect = Check(True, f"rule {COLLECT_RULE_NAME} enabled")
    if not streams:
        return collect, Check(False, "no stream target")
    region, name = streams[0]
    try:
        summary = kinesis_for(region).describe_stream_summary(StreamName=name)
    except ClientError as err:
        if error_code(err) != "ResourceNotFoundException":
            raise
        return collect, Check(False, f"stream {name} ({region}) does not exist")
    status = summary["StreamDescriptionSummary"].get("StreamStatus", "")
    if status not in LIVE_STREAM_STATUSES:
        return collect, Check(False, f"stream {name} ({region}) is {status}")
    return collect, Check(True, f"stream {name} ({region}) {status}")


def _read_direct_region(events: Any, region: str, home_bus_arn: str) -> HubRegion:
    """Direct mode outside the home region: only the collect rule to the home bus is needed."""
    try:
        rule = _collect_rule(events)
        targets = (
            events.list_targets_by_rule(Rule=COLLECT_RULE_NAME).get("Targets", []) if rule else []
        )
    except (ClientError, BotoCoreError) as err:
        return HubRegion(region, "error", error=error_code(err), detail=error_message(err))
    arns = [t.get("Arn", "") for t in targets]
    if rule is None:
        collect = Check(
            False,
            f"rule {COLLECT_RULE_NAME} missing: this account's own events here are not collected",
        )
    elif rule.get("State") != "ENABLED":
        collect = Check(False, f"rule {COLLECT_RULE_NAME} is {rule.get('State')}")
    elif home_bus_arn not in arns:
        where = ", ".join(arns) or "nothing"
        collect = Check(False, f"rule {COLLECT_RULE_NAME} targets {where}, not {home_bus_arn}")
    else:
        collect = Check(True, f"rule {COLLECT_RULE_NAME} enabled, → {home_bus_arn}")
    checks = {
        "bus_policy": Check(True, "not needed: in direct mode members deliver to the home region"),
        "collect_rule": collect,
        "collect_stream": Check(
            True, "not needed: the home region's collect rule writes the stream"
        ),
    }
    if collect.ok:
        return HubRegion(region, "ok", checks)
    return HubRegion(region, "missing" if rule is None else "drift", checks, detail=collect.detail)
