"""The audit as one self-contained HTML page (inline CSS and JS, no network, no assets).

Rendered with Jinja2 — autoescaped, `StrictUndefined` — from the template
`onboarding/audit/templates/audit.html`. The page holds a matrix of accounts x regions coloured by
state, the totals per state (which double as the state filter), a search for an account, the
Security account's side per region, and for every cell that is not `ok` the detail of why.

Kept lean for thousands of accounts: one table row per account with one plain cell per region,
no per-cell scripts or hidden elements; the filter walks a precomputed index of rows and only
touches the rows whose visibility changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from onboarding.audit.audit import (
    FINDING_KINDS,
    SCHEMA_VERSION,
    STATES,
    TIMESTAMP_FORMAT,
    AccountAudit,
    AuditReport,
)
from onboarding.canary.canary import CanaryResults

TEMPLATE = "audit.html"


@cache
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("onboarding.audit", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default=True),
        undefined=StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )


def guardduty_summary(view: Mapping[str, Any] | None, *, quiet_when_plain: bool) -> str:
    """One line of a region's GuardDuty as read: status, plans on, administrator, the path its
    findings take. With `quiet_when_plain`, "" for an enabled detector with no plan, no
    administrator and no note (most ok cells: keeps the page lean at thousands of accounts)."""
    if not view:
        return ""
    plans = list(view.get("plans_on") or [])
    administrator = view.get("administrator")
    notes = list(view.get("notes") or [])
    plain = view.get("status") == "ENABLED" and not plans and not administrator and not notes
    if quiet_when_plain and plain:
        return ""
    parts = [f"GuardDuty {view.get('status', '?')} ({view.get('mode', '?')})"]
    parts.append(f"plans on: {', '.join(plans) if plans else 'none'}")
    if administrator:
        unexpected = " (not the organization's delegated administrator)"
        parts.append(
            f"administrator {administrator}"
            + (unexpected if view.get("unexpected_administrator") else "")
        )
    if view.get("findings_path"):
        parts.append(f"findings: {view['findings_path']}")
    parts += notes
    return " · ".join(parts)


def _row(account: AccountAudit) -> dict[str, Any]:
    cells = []
    for cell in account.regions.values():
        guardduty = guardduty_summary(cell.guardduty, quiet_when_plain=cell.state == "ok")
        title = " — ".join(part for part in (cell.detail, guardduty) if part)
        cells.append((cell.state, title))
    return {
        "id": account.account_id,
        "name": account.name,
        "states": " ".join(dict.fromkeys(state for state, _ in cells)) or "ok",
        "q": f"{account.account_id} {account.name}".lower(),
        "cells": cells,
    }


def _problem(account: AccountAudit, row: dict[str, Any]) -> dict[str, Any]:
    account_wide = "; ".join(f.detail for f in account.findings)
    cells = []
    for region, cell in account.regions.items():
        if cell.state == "ok":
            continue
        detail = cell.detail
        local = [f for f in cell.findings if not f.is_global]
        if cell.state == "missing":
            detail = "not onboarded: " + ", ".join(FINDING_KINDS[f.kind] for f in local)
        elif cell.findings and account_wide:  # the account-wide part is said once, above
            detail = "; ".join(str(f) for f in local) or "only the account-wide problem above"
        if cell.error:
            detail = f"[{cell.error}{', retryable' if cell.retryable else ''}] {detail}"
        cells.append((region, cell.state, detail))
    return {**row, "account_wide": account_wide, "cells": cells}


def _canary_rows(report: AuditReport, canary: CanaryResults) -> list[dict[str, Any]]:
    """The canary's result per account x audited region (accounts of the audit, in its order)."""
    rows = []
    for account in report.accounts:
        cells = []
        for region in report.regions:
            result = canary.cell(account.account_id, region)
            if result is None:
                cells.append(("none", "not in the canary report"))
            elif result["status"] == "arrived":
                cells.append(("arrived", f"{float(result.get('latency_seconds') or 0):.1f} s"))
            else:
                cells.append((result["status"], str(result.get("reason") or result["status"])))
        if any(state != "none" for state, _ in cells):
            rows.append({"id": account.account_id, "name": account.name, "cells": cells})
    return rows


def render_html(report: AuditReport, canary: CanaryResults | None = None) -> str:
    """The report page as a string (UTF-8 text; write it with encoding="utf-8"). With `canary`
    (a saved `watershed canary --json`), the last canary result per account x region too."""
    rows = [_row(account) for account in report.accounts]
    problems = [
        _problem(account, row)
        for account, row in zip(report.accounts, rows, strict=True)
        if account.state != "ok"
    ]
    return (
        environment()
        .get_template(TEMPLATE)
        .render(
            generated_at=report.generated_at.strftime(TIMESTAMP_FORMAT),
            duration=f"{report.duration_seconds:.1f}",
            organization_id=report.organization_id or "(unknown)",
            security_account_id=report.security_account_id,
            management_account_id=report.management_account_id,
            regions=report.regions,
            accounts=report.accounts,
            ok=report.ok,
            not_ok_accounts=len(problems),
            security_state=report.security_state,
            security=report.security,
            states=STATES,
            totals=report.totals,
            rows=rows,
            problems=problems,
            schema_version=SCHEMA_VERSION,
            canary=canary,
            canary_rows=_canary_rows(report, canary) if canary else [],
        )
    )
