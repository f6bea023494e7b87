"""The audit as one self-contained HTML page (inline CSS and JS, no network, no assets).

Rendered with Jinja2 — autoescaped, `StrictUndefined` — from the template
`onboarding/audit/templates/audit.html`. The page holds, rendered on the server, the verdict,
the Security account's side per region and the totals per state (which double as the state
filter); then a matrix of accounts x regions coloured by state, a search for an account, and
for every cell that is not `ok` the detail of why.

Kept usable at 10,000 accounts x 17 regions: the matrix is not HTML but one JSON block
(`<script type="application/json" id="data">`, with `<`, `>` and `&` written as `\\u003c`...
so no account name can close it), which the page's script filters as a whole and draws one
page of rows at a time (`page_size`, 200 by default) with the "Why" entries of those rows —
through `createElement`/`textContent` only, never `innerHTML`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

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
PAGE_SIZE = 200  # matrix rows drawn at a time


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


def _cell_title(cell: Any) -> str:
    guardduty = guardduty_summary(cell.guardduty, quiet_when_plain=cell.state == "ok")
    return " — ".join(part for part in (cell.detail, guardduty) if part)


def _why(account: AccountAudit, texts: dict[str, int]) -> list[Any]:
    """[account-wide findings, [[region index, detail], ...]] for the regions that are not ok,
    each text as its index in `texts` ("" for no account-wide finding)."""
    account_wide = "; ".join(f.detail for f in account.findings)
    cells: list[list[Any]] = []
    for n, cell in enumerate(account.regions.values()):
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
        cells.append([n, texts.setdefault(detail, len(texts))])
    return [texts.setdefault(account_wide, len(texts)), cells]


def _row(account: AccountAudit, texts: dict[str, int]) -> list[Any]:
    """[id, name, one state initial per region, {region index: hover title} or 0, why or 0],
    every title and reason as its index in `texts`: each is said once for the page (many cells
    share one: the same plans, the same administrator, the same drift after an upgrade)."""
    cells = list(account.regions.values())
    titles = {
        str(n): texts.setdefault(title, len(texts))
        for n, cell in enumerate(cells)
        if (title := _cell_title(cell))
    }
    return [
        account.account_id,
        account.name,
        "".join(cell.state[0] for cell in cells),
        titles or 0,
        _why(account, texts) if account.state != "ok" else 0,
    ]


def page_data(report: AuditReport, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """What the page's script draws the matrix and the "Why" entries from."""
    texts: dict[str, int] = {"": 0}
    rows = [_row(account, texts) for account in report.accounts]
    return {
        "states": list(STATES),
        "regions": list(report.regions),
        "page_size": page_size,
        "texts": list(texts),  # in the order numbered (dicts keep insertion order)
        "rows": rows,
    }


def script_json(data: Any) -> Markup:
    """JSON safe inside a `<script>` element: `<`, `>` and `&` as `\\u003c`, `\\u003e` and
    `\\u0026` (still the same JSON), so no string in it can end the element or open a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - escaped above for the script context


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


def render_html(
    report: AuditReport, canary: CanaryResults | None = None, page_size: int = PAGE_SIZE
) -> str:
    """The report page as a string (UTF-8 text; write it with encoding="utf-8"). With `canary`
    (a saved `watershed canary --json`), the last canary result per account x region too.
    `page_size`: matrix rows drawn at a time."""
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
            not_ok_accounts=sum(1 for account in report.accounts if account.state != "ok"),
            security_state=report.security_state,
            security=report.security,
            states=STATES,
            totals=report.totals,
            data=script_json(page_data(report, page_size)),
            schema_version=SCHEMA_VERSION,
            canary=canary,
            canary_rows=_canary_rows(report, canary) if canary else [],
        )
    )
