"""`watershed audit --fix`: hand every account that is not `ok` to onboarding.

One request per account, for the regions that drifted, are missing or could not be read
(`skipped` regions cannot be fixed by onboarding: they are not enabled or denied by policy):

- with a work queue (WORK_QUEUE_URL), as manual-form messages
  `{"accounts": [id], "regions": [...], "reason": "audit-fix", "attempt": 1}` sent through
  `workqueue.WorkQueue.enqueue`, the one way a request is put on the queue (batches of 10,
  refused entries sent once more); the onboarding function picks them up at its own pace;
- without one, onboarded inline, accounts in parallel, through the same `Onboarder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from onboarding.audit.audit import DEFAULT_ACCOUNT_WORKERS, AuditReport
from onboarding.events import OnboardingRequest
from onboarding.queue.workqueue import QueueSendFailed, WorkQueue
from onboarding.report import AccountReport
from onboarding.service import Onboarder

FIXABLE = frozenset({"drift", "missing", "error"})
FIX_REASON = "audit-fix"


@dataclass(frozen=True)
class FixResult:
    mode: str  # "queue" | "inline"
    requests: tuple[OnboardingRequest, ...]
    failed: tuple[tuple[str, str], ...] = ()  # (account id, why) not handed over / not fixed
    reports: tuple[AccountReport, ...] = field(default=(), repr=False)  # inline only

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "requests": [r.as_message() for r in self.requests],
            "failed": [{"account_id": a, "detail": why} for a, why in self.failed],
        }

    def summary(self) -> str:
        where = "queued for onboarding" if self.mode == "queue" else "onboarded inline"
        lines = [f"fix: {len(self.requests) - len(self.failed)} account(s) {where}"]
        lines += [f"fix: {account} not fixed: {why}" for account, why in self.failed]
        return "\n".join(lines)


def fix_requests(report: AuditReport) -> list[OnboardingRequest]:
    """One request per account with a fixable region, for exactly those regions."""
    requests = []
    for account in report.accounts:
        regions = tuple(r for r, cell in account.regions.items() if cell.state in FIXABLE)
        if regions:
            requests.append(OnboardingRequest(account.account_id, regions, reason=FIX_REASON))
    return requests


def enqueue(queue: WorkQueue, requests: Sequence[OnboardingRequest]) -> FixResult:
    """Put the requests on the work queue; those it could not send are reported, by account."""
    failed: list[tuple[str, str]] = []
    try:
        queue.enqueue(requests)
    except QueueSendFailed as err:
        failed = [(r.account_id, str(err)) for r in err.unsent]
    return FixResult("queue", tuple(requests), tuple(failed))


def onboard_inline(
    onboarder: Onboarder,
    requests: Sequence[OnboardingRequest],
    workers: int = DEFAULT_ACCOUNT_WORKERS,
) -> FixResult:
    """Onboard each request now (membership was established by the audit)."""
    if not requests:
        return FixResult("inline", ())
    with ThreadPoolExecutor(max(1, min(workers, len(requests)))) as pool:
        reports = list(pool.map(lambda r: onboarder.onboard(r, known_active=True), requests))
    failed = tuple((r.account_id, _why(r)) for r in reports if r.status != "ok")
    return FixResult("inline", tuple(requests), failed, tuple(reports))


def _why(report: AccountReport) -> str:
    if report.reason:
        return f"{report.reason} [{report.error}]" if report.error else report.reason
    regions = [r for r in report.regions.values() if r.status == "failed"]
    return "; ".join(f"{r.region}: {r.error} {r.reason or ''}".strip() for r in regions)
