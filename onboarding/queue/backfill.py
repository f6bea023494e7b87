"""Backfill: every ACTIVE account of the organization, minus the exclusions.

Membership and state come from the ListAccounts pages (20 accounts a call, 8 req/s for the whole
organization) — never one DescribeAccount per account. Excluded OUs are resolved in bulk
(`Exclusions.excluded_by_ou`); the tag exclusion is checked per account by whoever onboards it.

Two ways to run the selection:
- `enqueue_backfill` (handler with WORK_QUEUE_URL, `watershed backfill --queue-url`): one message
  per account on the work queue; the queue's consumers onboard them at the mapping's concurrency.
- `run_inline` (`watershed backfill` without a queue): accounts in parallel on a bounded thread
  pool (each account's regions on its own pool, REGION_WORKERS), with a progress callback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from onboarding.exclusions import Exclusions
from onboarding.organization import account_state
from onboarding.report import AccountReport, Report

if TYPE_CHECKING:  # import cycle: service uses select_accounts for its own inline "ALL"
    from onboarding.events import AllAccountsRequest, OnboardingRequest
    from onboarding.service import Onboarder

DEFAULT_ACCOUNT_WORKERS = 8
MAX_ACCOUNT_WORKERS = 64

Progress = Callable[[int, int, AccountReport], None]  # (done, total, the report just finished)


@dataclass(frozen=True)
class Selection:
    """The accounts a backfill onboards, and why the others are left out."""

    accounts: tuple[str, ...]  # ACTIVE and not excluded, in ListAccounts order
    excluded: Mapping[str, str] = field(default_factory=dict)  # account → reason
    inactive: Mapping[str, str] = field(default_factory=dict)  # account → its state
    missing_ous: tuple[str, ...] = ()  # EXCLUDED_OUS not found in the organization (skipped)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "selected": len(self.accounts),
            "excluded": dict(self.excluded),
            "inactive": dict(self.inactive),
        }
        if self.missing_ous:
            out["excluded_ous_not_found"] = list(self.missing_ous)
        return out


def select_accounts(orgs: Any, exclusions: Exclusions) -> Selection:
    """ACTIVE accounts from the ListAccounts pages, minus excluded ids and OUs (bulk reads)."""
    excluded_reason = exclusions.listing(orgs)
    accounts: list[str] = []
    excluded: dict[str, str] = {}
    inactive: dict[str, str] = {}
    for page in orgs.get_paginator("list_accounts").paginate():
        for account in page.get("Accounts", []):
            account_id, state = account["Id"], account_state(account)
            if state != "ACTIVE":
                inactive[account_id] = str(state)
            elif reason := excluded_reason(account_id):
                excluded[account_id] = reason
            else:
                accounts.append(account_id)
    return Selection(tuple(accounts), excluded, inactive, excluded_reason.missing_ous)


def requests_for(
    selection: Selection, item: AllAccountsRequest, retain_on_exclusion: bool = False
) -> list[OnboardingRequest]:
    """One request per selected account, with the item's action. Removal and a scope
    reconcile also take the accounts left out by EXCLUDED_ACCOUNTS / EXCLUDED_OUS: removal is
    for every account; a scope request for an excluded account removes watershed there after
    one cheap probe (unless RETAIN_ON_EXCLUSION, when they are left out as before)."""
    from onboarding.events import REMOVE, SCOPE, OnboardingRequest

    def request(account: str, action: str) -> OnboardingRequest:
        return OnboardingRequest(
            account,
            item.regions,
            item.reason,
            dry_run=item.dry_run,
            action=action,
            guardduty=item.guardduty,
        )

    requests = [request(a, item.action) for a in selection.accounts]
    if item.action == REMOVE or (item.action == SCOPE and not retain_on_exclusion):
        requests += [request(a, item.action) for a in selection.excluded]
    return requests


def run_inline(
    onboarder: Onboarder,
    requests: Sequence[OnboardingRequest],
    workers: int = DEFAULT_ACCOUNT_WORKERS,
    progress: Progress | None = None,
) -> Report:
    """Onboard `requests` (accounts from `select_accounts`) with at most `workers` accounts in
    flight. Reports come back in the order of `requests`; one account never stops another."""
    reports: dict[int, AccountReport] = {}
    if not requests:
        return Report()
    workers = max(1, min(workers, MAX_ACCOUNT_WORKERS, len(requests)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="account") as pool:
        futures = {
            pool.submit(onboarder.onboard, request, True): index
            for index, request in enumerate(requests)
        }
        for done, future in enumerate(as_completed(futures), start=1):
            index = futures[future]
            try:
                report = future.result()
            except Exception as err:  # a bug in one account must not lose the others' reports
                report = AccountReport.account_failed(
                    requests[index].account_id, "onboard", type(err).__name__, str(err), False
                )
            reports[index] = report
            if progress:
                progress(done, len(requests), report)
    return Report(tuple(reports[i] for i in range(len(requests))))
