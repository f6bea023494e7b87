"""The coverage audit: is every account collecting in every hub region right now, and if not, why.

    ListAccounts (ACTIVE, page by page) or DescribeAccount for named accounts
    → per account, in parallel: `Onboarder.plan()` — the very reads and comparisons onboarding
      makes, writing nothing — classified into one state per hub region
    → the Security account's side per region (onboarding.audit.hub)
    → AuditReport (JSON schema below, rendered to HTML by onboarding.audit.audit_html)

Cell states, one per account x region:

- `ok`: configured as desired;
- `drift`: something of ours is there but differs (each difference is a *finding* with a `kind`,
  see FINDING_KINDS); forwarder-role problems are global (IAM) and make every configured region
  drift, which the detail says;
- `missing`: nothing of ours there (no forwarding rule, and whatever exists — e.g. a detector
  created by GuardDuty's organization auto-enable — matches);
- `skipped`: not configurable by design — region not enabled, denied by a service control
  policy, account not ACTIVE, account excluded (EXCLUDED_ACCOUNTS, EXCLUDED_OUS, EXCLUDE_TAG:
  the same `onboarding.exclusions` onboarding applies) — with the reason;
- `error`: could not look, with the AWS error code.

JSON (schema_version 1): see `AuditReport.as_dict` and docs/operations.md "Coverage audit".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from onboarding import organization
from onboarding.audit import hub
from onboarding.errors import AccountRefused, StepFailed, error_code, step_failed
from onboarding.events import OnboardingRequest
from onboarding.report import AccountReport, Change
from onboarding.service import Onboarder
from onboarding.sessions import SessionFactory
from onboarding.settings import Settings

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # UTC
State = Literal["ok", "drift", "missing", "skipped", "error"]
STATES: tuple[State, ...] = ("ok", "drift", "missing", "skipped", "error")
# Which state an account shows when its regions differ (most urgent first).
SEVERITY: tuple[State, ...] = ("error", "drift", "missing", "skipped", "ok")
DEFAULT_ACCOUNT_WORKERS = 16

# kind → what it means. A finding's kind is derived from the plan's Change (resource, action).
FINDING_KINDS = {
    "detector-missing": "GuardDuty detector missing",
    "detector-suspended": "GuardDuty detector suspended",
    "detector-frequency": "GuardDuty publishing frequency differs",
    "detector-features": "GuardDuty protection plans differ",
    "detector-administrator": "GuardDuty administrator is not the organization's delegated one",
    "rule-missing": "forwarding rule missing",
    "rule-pattern": "forwarding rule pattern changed",
    "rule-disabled": "forwarding rule disabled",
    "target-missing": "forwarding target missing",
    "target-elsewhere": "forwarding target points elsewhere",
    "target-delivery": "forwarding target's retry policy or dead-letter queue differs",
    "role-missing": "forwarder role missing",
    "role-trust": "forwarder role trust policy changed",
    "role-policy-missing": "forwarder role policy missing",
    "role-policy-changed": "forwarder role policy changed",
    "target-foreign": "foreign target on the forwarding rule",
    "role-policy-foreign": "foreign inline policy on the forwarder role",
    "role-attached-policy": "foreign managed policy attached to the forwarder role",
    # Offboarding (issue 14): an older deployment without the managed-by tag (the reconcile adds
    # it), and a member still forwarding to a Security bus whose policy is gone (the Security
    # stack deleted before the members were removed: every event is refused).
    "rule-tag-create": "forwarding rule not tagged managed-by=watershed",
    "role-tag-create": "forwarder role not tagged managed-by=watershed",
    "target-refused": "forwarding to a Security bus that refuses it",
}
GLOBAL_NOTE = "global: IAM is account-wide, so every region drifts"


@dataclass(frozen=True)
class Finding:
    """One difference between an account and the desired state."""

    kind: str
    detail: str
    is_global: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "detail": self.detail, "global": self.is_global}

    def __str__(self) -> str:
        return f"{self.detail} ({GLOBAL_NOTE})" if self.is_global else self.detail


def finding(change: Change, is_global: bool = False) -> Finding:
    """Classify one planned change (what onboarding would do) as an audit finding."""
    resource, action, detail = change.resource, change.action, change.detail
    kind = f"{resource}-{action}"
    if resource == "detector":
        if action == "create":
            kind = "detector-missing"
        elif detail.startswith("enable"):
            kind = "detector-suspended"
        elif detail.startswith("publishing frequency"):
            kind = "detector-frequency"
        elif detail.startswith("feature"):
            kind = "detector-features"
    elif resource == "rule":
        if action == "create":
            kind = "rule-missing"
        elif "pattern" in detail:
            kind = "rule-pattern"
        else:
            kind = "rule-disabled"
    elif resource == "target":
        kinds = {"create": "target-missing", "update": "target-elsewhere"}
        kind = kinds.get(action, "target-foreign")
        if action == "update" and " delivery: " in detail:
            kind = "target-delivery"
    elif resource == "forwarder-role":
        kind = "role-missing" if action == "create" else "role-trust"
    elif resource == "role-policy":
        kinds = {"create": "role-policy-missing", "update": "role-policy-changed"}
        kind = kinds.get(action, "role-policy-foreign")
    elif resource == "attached-policy":
        kind = "role-attached-policy"
    label = FINDING_KINDS.get(kind, f"{resource} would be {action}d")
    return Finding(kind, f"{label}: {detail}" if detail else label, is_global)


@dataclass(frozen=True)
class Cell:
    """The state of one account in one region."""

    state: State
    detail: str = ""
    findings: tuple[Finding, ...] = ()
    error: str | None = None
    retryable: bool = False
    # The region's GuardDuty as read: mode, status, plans_on, administrator, notes and the path
    # its findings take (findings_path). None when not read (GUARDDUTY=off, skipped, error).
    guardduty: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state}
        if self.guardduty is not None:
            out["guardduty"] = dict(self.guardduty)
        if self.state == "ok":
            return out
        out["detail"] = self.detail
        if self.findings:
            out["findings"] = [f.as_dict() for f in self.findings]
        if self.state == "error":
            out["error"] = self.error or "Unknown"
            out["retryable"] = self.retryable
        return out


@dataclass(frozen=True)
class Member:
    """An account to audit, as the organization lists it."""

    account_id: str
    name: str = ""


@dataclass(frozen=True)
class AccountAudit:
    account_id: str
    name: str
    regions: dict[str, Cell]
    findings: tuple[Finding, ...] = ()  # account-wide (forwarder role)

    @property
    def state(self) -> State:
        states = {c.state for c in self.regions.values()}
        return next((s for s in SEVERITY if s in states), "ok")

    def as_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "name": self.name,
            "state": self.state,
            "findings": [f.as_dict() for f in self.findings],
            "regions": {region: cell.as_dict() for region, cell in self.regions.items()},
        }


@dataclass(frozen=True)
class AuditReport:
    generated_at: datetime
    regions: tuple[str, ...]
    accounts: tuple[AccountAudit, ...]
    security: tuple[hub.HubRegion, ...]
    management_account_id: str
    security_account_id: str
    organization_id: str | None = None
    duration_seconds: float = 0.0
    # The organization's GuardDuty delegated administrator per region (None: none or unknown);
    # absent with GUARDDUTY=off.
    guardduty_administrators: Mapping[str, str | None] | None = None

    @property
    def totals(self) -> dict[str, int]:
        """Number of account x region cells in each state (every state present, 0 included)."""
        totals = dict.fromkeys(STATES, 0)
        for account in self.accounts:
            for cell in account.regions.values():
                totals[cell.state] += 1
        return totals

    @property
    def security_state(self) -> str:
        states = {r.state for r in self.security}
        return next((s for s in SEVERITY if s in states), "ok")

    @property
    def ok(self) -> bool:
        return self.security_state == "ok" and all(a.state == "ok" for a in self.accounts)

    def passes(self, allow_skipped: bool = False) -> bool:
        """`ok`; with `allow_skipped`, `skipped` cells (region not enabled, denied by an SCP,
        account excluded or not ACTIVE) pass too - drift, missing and error never do."""
        passing = {"ok", "skipped"} if allow_skipped else {"ok"}
        return self.security_state == "ok" and all(
            cell.state in passing for a in self.accounts for cell in a.regions.values()
        )

    def not_ok(self) -> Iterator[tuple[AccountAudit, str, Cell]]:
        for account in self.accounts:
            for region, cell in account.regions.items():
                if cell.state != "ok":
                    yield account, region, cell

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON (schema_version 1). Keys are only ever added, never renamed."""
        return {
            "schema_version": SCHEMA_VERSION,
            "generated_at": self.generated_at.strftime(TIMESTAMP_FORMAT),
            "duration_seconds": round(self.duration_seconds, 3),
            "organization_id": self.organization_id,
            "management_account_id": self.management_account_id,
            "security_account_id": self.security_account_id,
            "regions": list(self.regions),
            "ok": self.ok,
            "totals": self.totals,
            "security": {
                "state": self.security_state,
                "regions": {r.region: r.as_dict() for r in self.security},
            },
            "accounts": [a.as_dict() for a in self.accounts],
            **(
                {"guardduty_administrators": dict(self.guardduty_administrators)}
                if self.guardduty_administrators is not None
                else {}
            ),
        }


# Classification ---------------------------------------------------------------------------------


def classify(
    member: Member, report: AccountReport, regions: Sequence[str], settings: Settings
) -> AccountAudit:
    """One state per region from the plan of one account (what onboarding would change)."""
    if report.status == "refused":
        cells = {r: Cell("skipped", report.reason or "account refused") for r in regions}
        return AccountAudit(member.account_id, member.name, cells)
    if report.status == "failed" and not report.regions:  # assume-role, iam, regions
        detail = report.reason or "account could not be read"
        cell = Cell("error", detail, error=report.error, retryable=report.retryable)
        return AccountAudit(member.account_id, member.name, dict.fromkeys(regions, cell))

    role = tuple(finding(c, is_global=True) for c in report.changes)
    is_security = member.account_id == settings.security_account_id
    cells: dict[str, Cell] = {}
    for region in regions:
        result = report.regions.get(region)
        if result is None:
            cells[region] = Cell("error", "region was not examined", error="NotExamined")
            continue
        local = tuple(finding(c) for c in result.changes)
        guardduty = result.guardduty
        if guardduty and guardduty.get("unexpected_administrator"):
            label = FINDING_KINDS["detector-administrator"]
            why = f"{guardduty.get('administrator')} (left alone; only visible here)"
            local += (Finding("detector-administrator", f"{label}: {why}"),)
        if result.status == "skipped":
            cells[region] = Cell("skipped", result.reason or "skipped")
        elif result.status == "failed":
            detail = result.reason or result.error or "failed"
            if local:
                detail += "; also: " + "; ".join(str(f) for f in local)
            cells[region] = Cell(
                "error", detail, local, result.error, result.retryable, guardduty=guardduty
            )
        elif not local and not role:
            cells[region] = Cell("ok", guardduty=guardduty)
        elif _nothing_of_ours(local, is_security):
            missing = [FINDING_KINDS[f.kind] for f in local]
            missing += [f"{FINDING_KINDS.get(f.kind, f.kind)} (account-wide)" for f in role]
            detail = "not onboarded: " + ", ".join(missing)
            cells[region] = Cell("missing", detail, (*role, *local), guardduty=guardduty)
        else:
            findings = (*role, *local)
            detail = "; ".join(str(f) for f in findings)
            cells[region] = Cell("drift", detail, findings, guardduty=guardduty)
    return AccountAudit(member.account_id, member.name, cells, role)


def forwarding_refused(
    audits: Sequence[AccountAudit], security: Sequence[hub.HubRegion], settings: Settings
) -> list[AccountAudit]:
    """A member cell that is `ok` in a region whose Security bus has no policy granting the
    organization is not collecting: its target delivers to a bus that refuses every event (the
    Security stack was deleted, or its policy lost, while members still forward). It drifts."""
    refused = {
        r.region: r.checks["bus_policy"].detail
        for r in security
        if "bus_policy" in r.checks and not r.checks["bus_policy"].ok
    }
    if not refused:
        return list(audits)
    out = []
    for audit in audits:
        if audit.account_id == settings.security_account_id:  # forwards nothing
            out.append(audit)
            continue
        cells = dict(audit.regions)
        for region, why in refused.items():
            if region in cells and cells[region].state == "ok":
                found = Finding("target-refused", f"{FINDING_KINDS['target-refused']}: {why}")
                cells[region] = Cell("drift", str(found), (found,))
        out.append(replace(audit, regions=cells))
    return out


def _nothing_of_ours(local: tuple[Finding, ...], is_security: bool) -> bool:
    """Missing, not drifted: our anchor (the forwarding rule; for the Security account, which
    forwards nothing, the detector) is absent and nothing present would be updated."""
    anchor = "detector-missing" if is_security else "rule-missing"
    kinds = {f.kind for f in local}
    creates = {"detector-missing", "rule-missing", "target-missing"}
    return anchor in kinds and kinds <= creates


# Scanning ---------------------------------------------------------------------------------------


@dataclass
class Progress:
    """Shared progress counters; `total` is None while ListAccounts is still paging."""

    done: int = 0
    not_ok: int = 0
    total: int | None = None
    listed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Auditor:
    """Audits accounts. Pass the SessionFactory to substitute how accounts are reached (tests
    count every call through its hooks); `Onboarder` is built on the same factory, unless the
    process has one already (the Lambda function: one warm heap, one administrators cache)."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory | None = None,
        account_workers: int = DEFAULT_ACCOUNT_WORKERS,
        onboarder: Onboarder | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = onboarder.sessions if onboarder else sessions or SessionFactory(settings)
        self.onboarder = onboarder or Onboarder(settings, self.sessions)
        self.account_workers = max(1, account_workers)

    def run(
        self,
        accounts: Sequence[str] | None = None,
        regions: Sequence[str] | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> AuditReport:
        """Audit `accounts` (None: every ACTIVE account) in `regions` (None: the hub regions).

        Raises StepFailed if the management account cannot be reached or listed."""
        started = time.monotonic()
        generated_at = datetime.now(UTC)
        regions = tuple(regions or self.settings.hub_regions)
        home = self.settings.home_region
        management = self.sessions.management_or_fail(self.settings.management_account_id)
        orgs = management.client("organizations", home)
        organization_id = self._organization_id(orgs)
        # Read once for the whole run (the plans below reuse it): None with GUARDDUTY=off.
        administrators = (
            self.onboarder.guardduty_administrators(regions)
            if self.settings.guardduty_mode != "off"
            else None
        )

        state = Progress()
        results: list[Future[AccountAudit]] = []

        def done(future: Future[AccountAudit]) -> None:
            audit = future.result()
            with state.lock:
                state.done += 1
                state.not_ok += audit.state != "ok"
            if progress:
                progress(state)

        with ThreadPoolExecutor(self.account_workers, thread_name_prefix="account") as pool:
            security = pool.submit(self._security_side, regions, organization_id)
            try:
                excluded = self._exclusions(orgs, accounts)
                for member in self._members(orgs, accounts):
                    future = pool.submit(
                        self._audit_account, orgs, member, regions, accounts, excluded
                    )
                    future.add_done_callback(done)
                    results.append(future)
                    state.listed += 1
            except (ClientError, BotoCoreError) as err:
                for future in results:
                    future.cancel()
                raise step_failed(err, self.settings.management_account_id, None, "list") from err
            state.total = len(results)
            audits = sorted((f.result() for f in results), key=lambda a: a.account_id)
            hub_regions = security.result()
            audits = forwarding_refused(audits, hub_regions, self.settings)

        return AuditReport(
            generated_at=generated_at,
            regions=regions,
            accounts=tuple(audits),
            security=hub_regions,
            management_account_id=self.settings.management_account_id,
            security_account_id=self.settings.security_account_id,
            organization_id=organization_id,
            duration_seconds=time.monotonic() - started,
            guardduty_administrators=administrators,
        )

    # Accounts ----------------------------------------------------------------------------------

    def _members(self, orgs: Any, accounts: Sequence[str] | None) -> Iterable[Member]:
        if accounts is None:  # membership and names from the ListAccounts pages (8 req/s)
            for account in organization.list_active_members(orgs):
                yield Member(account["Id"], account.get("Name", ""))
        else:
            yield from (Member(a) for a in dict.fromkeys(accounts))

    def _exclusions(self, orgs: Any, accounts: Sequence[str] | None) -> Callable[[str], str | None]:
        """EXCLUDED_ACCOUNTS / EXCLUDED_OUS: for the whole organization the OUs are listed once
        in bulk; named accounts walk their own parents. EXCLUDE_TAG is read by the plan."""
        exclusions = self.onboarder.exclusions
        if accounts is None:
            return exclusions.listing(orgs)
        return lambda account_id: exclusions.placement_reason(orgs, account_id)

    def _audit_account(
        self,
        orgs: Any,
        member: Member,
        regions: tuple[str, ...],
        named: Sequence[str] | None,
        excluded: Callable[[str], str | None],
    ) -> AccountAudit:
        try:
            if named is not None:  # named accounts: DescribeAccount (membership and name)
                described = organization.check_active_member(orgs, member.account_id)
                member = Member(member.account_id, described.get("Name", ""))
            reason = excluded(member.account_id)
            if reason:  # never onboarded, so neither missing nor drifted: skipped, saying why
                raise AccountRefused(member.account_id, reason)
        except AccountRefused as refused:
            return classify(
                member, AccountReport.refused(member.account_id, refused.reason), regions,
                self.settings,
            )  # fmt: skip
        except (ClientError, BotoCoreError) as err:
            failed = step_failed(err, member.account_id, None, "membership")
            return classify(member, _failed(failed), regions, self.settings)
        try:
            request = OnboardingRequest(member.account_id, regions, reason="audit")
            report = self.onboarder.plan(request, known_active=True)
        except Exception as err:  # a bug must not cost the audit of the other accounts
            logger.exception("audit failed", extra={"account_id": member.account_id})
            report = _failed(step_failed(err, member.account_id, None, "audit"))
        return classify(member, report, regions, self.settings)

    # Organization and Security side -------------------------------------------------------------

    def _organization_id(self, orgs: Any) -> str | None:
        """This organization's id, which the Security bus policy must grant.

        From the management account's ARN (arn:<partition>:organizations::<management>:account/
        o-xxxx/<id>): DescribeAccount is what the launcher role may call (management.yaml), while
        DescribeOrganization is not granted to it; DescribeOrganization is only the fallback (for
        the management account's own credentials). None when neither answers: the bus policy
        is then reported as unverifiable, never as granting."""
        management = self.settings.management_account_id
        try:
            arn = orgs.describe_account(AccountId=management)["Account"]["Arn"]
            found = organization.organization_id_from_arn(arn)
            if found:
                return found
        except (ClientError, BotoCoreError) as err:
            logger.info("DescribeAccount gave no organization id", extra={"error": error_code(err)})
        try:
            return str(orgs.describe_organization()["Organization"]["Id"])
        except (ClientError, BotoCoreError) as err:
            logger.warning("organization id unknown", extra={"error": error_code(err)})
            return None

    def _security_side(
        self, regions: tuple[str, ...], organization_id: str | None
    ) -> tuple[hub.HubRegion, ...]:
        try:
            session = self.sessions.for_account(self.settings.security_account_id)
        except StepFailed as failed:
            return tuple(
                hub.HubRegion(r, "error", error=failed.code, detail=str(failed)) for r in regions
            )

        settings = self.settings
        home_bus = settings.security_bus_arn(settings.home_region)

        def one(region: str) -> hub.HubRegion:
            try:
                return hub.read_hub_region(
                    session.client("events", region),
                    lambda where: session.client("kinesis", where),
                    region,
                    organization_id,
                    # direct mode: a region other than home needs only its rule to the home bus
                    home_bus if settings.direct and region != settings.home_region else None,
                )
            except Exception as err:
                logger.exception("security side failed", extra={"region": region})
                return hub.HubRegion(region, "error", error=error_code(err), detail=str(err))

        with ThreadPoolExecutor(len(regions), thread_name_prefix="hub") as pool:
            return tuple(pool.map(one, regions))


def _failed(failed: StepFailed) -> AccountReport:
    return AccountReport.account_failed(
        failed.account_id, failed.step, failed.code, failed.message, failed.retryable
    )
