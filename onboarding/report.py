"""What onboarding did (or would do), per account and per region, as data, JSON and a table.

JSON shape (the handler's return value and the CLI's `--json`):

    {"accounts": [{"account_id": "...", "status": "ok|partial|failed|refused",
                   "reason"?: "...", "error"?: "<code>", "retryable"?: bool,
                   "changes"?: ["<account-wide change>", ...],
                   "regions": {"<region>": {"status": "ok|skipped|failed",
                                            "changes": ["..."], "reason"?: "...",
                                            "error"?: "<code>", "retryable"?: bool}}}]}

`retryable` appears on failures only: true means "not ready yet / throttled, retry later"
(the work queue re-queues exactly those regions), false means permanent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

RegionStatus = Literal["ok", "skipped", "failed"]
AccountStatus = Literal["ok", "partial", "failed", "refused"]


@dataclass(frozen=True)
class Change:
    """One difference between the account and the desired state (made, or to be made)."""

    resource: str  # forwarder-role, role-policy, attached-policy, detector, rule, target
    # delete: removal (`watershed remove`, exclusion) or something foreign on what we own;
    # retain: removal leaves it, with the reason
    action: Literal["create", "update", "delete", "retain"]
    detail: str = ""
    subject: str = ""  # for a delete: the foreign policy name, policy ARN or target id

    def __str__(self) -> str:
        return f"{self.action} {self.resource}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class RegionResult:
    region: str
    status: RegionStatus
    changes: tuple[Change, ...] = ()
    reason: str | None = None
    error: str | None = None
    retryable: bool = False
    # The region's GuardDuty as read (onboarding.resources.guardduty.DetectorView.as_dict) and which
    # path its findings take (`findings_path`); None with GUARDDUTY=off or when it was not read.
    guardduty: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "changes": [str(c) for c in self.changes]}
        if self.reason:
            out["reason"] = self.reason
        if self.error:
            out["error"] = self.error
        if self.status == "failed":
            out["retryable"] = self.retryable
        if self.guardduty is not None:
            out["guardduty"] = dict(self.guardduty)
        return out


@dataclass(frozen=True)
class AccountReport:
    account_id: str
    status: AccountStatus
    regions: Mapping[str, RegionResult] = field(default_factory=dict)
    changes: tuple[Change, ...] = ()  # account-wide (IAM is global)
    reason: str | None = None
    error: str | None = None
    retryable: bool = False  # for an account-level failure (assume-role, IAM, regions)
    dry_run: bool = False

    @classmethod
    def build(
        cls,
        account_id: str,
        regions: Iterable[RegionResult],
        changes: Sequence[Change] = (),
        dry_run: bool = False,
    ) -> AccountReport:
        by_region = {r.region: r for r in sorted(regions, key=lambda r: r.region)}
        failed = [r for r in by_region.values() if r.status == "failed"]
        ok = [r for r in by_region.values() if r.status == "ok"]
        status: AccountStatus = "ok"
        if failed:
            status = "partial" if ok else "failed"
        return cls(account_id, status, by_region, tuple(changes), dry_run=dry_run)

    @classmethod
    def refused(cls, account_id: str, reason: str) -> AccountReport:
        return cls(account_id, "refused", reason=reason)

    @classmethod
    def account_failed(
        cls, account_id: str, step: str, code: str, message: str, retryable: bool
    ) -> AccountReport:
        reason = f"{step}: {message}" if message else step
        return cls(account_id, "failed", reason=reason, error=code, retryable=retryable)

    @property
    def all_changes(self) -> list[Change]:
        return [*self.changes, *(c for r in self.regions.values() for c in r.changes)]

    def retry_regions(self) -> tuple[str, ...]:
        """Regions to try again later (not ready, throttled). Empty if nothing is retryable."""
        return tuple(
            r.region for r in self.regions.values() if r.status == "failed" and r.retryable
        )

    def permanent_failures(self) -> tuple[str, ...]:
        return tuple(
            r.region for r in self.regions.values() if r.status == "failed" and not r.retryable
        )

    @property
    def needs_retry(self) -> bool:
        """True if a later attempt may succeed: a retryable account failure or region failure."""
        return (self.status == "failed" and self.retryable and not self.regions) or bool(
            self.retry_regions()
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"account_id": self.account_id, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        if self.error:
            out["error"] = self.error
        if self.status == "failed" and not self.regions:
            out["retryable"] = self.retryable
        if self.changes:
            out["changes"] = [str(c) for c in self.changes]
        out["regions"] = {name: r.as_dict() for name, r in self.regions.items()}
        return out


@dataclass(frozen=True)
class Report:
    accounts: tuple[AccountReport, ...] = ()

    @property
    def ok(self) -> bool:
        return all(a.status == "ok" for a in self.accounts)

    @property
    def any_region_failed(self) -> bool:
        return any(a.status in ("failed", "partial") for a in self.accounts)

    def as_dict(self) -> dict[str, Any]:
        return {"accounts": [a.as_dict() for a in self.accounts]}


def render_table(report: Report, plan: bool = False) -> str:
    """A readable per-region table: what changed (or would change), what was skipped and why."""
    verb = "would change" if plan else "changed"
    lines: list[str] = []
    for account in report.accounts:
        head = f"account {account.account_id}: {account.status}"
        if account.reason:
            head += f" — {account.reason}"
        if account.error:
            head += f" [{account.error}{', retryable' if account.retryable else ''}]"
        lines.append(head)
        for change in account.changes:
            lines.append(f"  (global)  {verb}: {change}")
        if account.regions:
            width = max(len(r) for r in account.regions)
            lines.append(f"  {'REGION'.ljust(width)}  {'STATUS'.ljust(7)}  DETAIL")
            for name, result in account.regions.items():
                if result.status == "failed":
                    tag = "retryable" if result.retryable else "permanent"
                    detail = f"{result.error} ({tag}): {result.reason or ''}".rstrip(": ")
                elif result.status == "skipped":
                    detail = result.reason or ""
                elif result.changes:
                    detail = f"{verb}: " + "; ".join(str(c) for c in result.changes)
                else:
                    detail = "up to date"
                admin = (result.guardduty or {}).get("administrator")
                if admin:  # watershed leaves this detector's plans and frequency alone
                    detail += f" (GuardDuty managed by administrator {admin})"
                lines.append(f"  {name.ljust(width)}  {result.status.ljust(7)}  {detail}")
        lines.append("")
    totals = {s: 0 for s in ("ok", "partial", "failed", "refused")}
    for account in report.accounts:
        totals[account.status] += 1
    summary = ", ".join(f"{n} {s}" for s, n in totals.items() if n)
    lines.append(
        f"{len(report.accounts)} account(s){': ' + summary if summary else ''}"
        + (" — plan only, nothing written" if plan else "")
    )
    return "\n".join(lines)
