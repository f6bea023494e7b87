"""Orchestration: one request → one account configured in every hub region, as a report.

    membership (management side) → session into the account → forwarder role (global)
    → the member's enabled regions ∩ requested hub regions
    → per region, in parallel: GuardDuty detector | forwarding rule + target
    → AccountReport

`Onboarder.plan()` runs the same reads and comparisons and writes nothing: it is the
state-reading code that `watershed plan` and the audit use. Errors in one region never stop the
others; every failure is reported with its code and whether it is retryable.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from onboarding import organization, regions
from onboarding.errors import (
    AccountRefused,
    PermanentStepFailed,
    RetryableStepFailed,
    StepFailed,
    error_code,
    is_scp_denial,
    step_failed,
)
from onboarding.events import (
    ONBOARD,
    REGION_OPT_IN,
    REMOVE,
    SCOPE,
    AllAccountsRequest,
    Ignored,
    OnboardingRequest,
    Parsed,
)
from onboarding.exclusions import Exclusions
from onboarding.heap import WarmHeap
from onboarding.queue.backfill import requests_for, select_accounts
from onboarding.report import AccountReport, Change, RegionResult, Report
from onboarding.resources import forwarding, guardduty, iam
from onboarding.sessions import (
    AccountSession,
    Deadline,
    DeadlineExceeded,
    SessionFactory,
    current_deadline,
    deadline_scope,
)
from onboarding.settings import Settings

logger = logging.getLogger(__name__)

STEP_GUARDDUTY = "guardduty"
STEP_FORWARDING = "forwarding"
# A region named by an opt-in ENABLED event that the member does not show as enabled yet.
REGION_NOT_ENABLED_YET = "RegionNotEnabledYet"
# The management account's forwarder role (declared by management.yaml) is missing or drifted.
FORWARDER_ROLE_NOT_AS_DECLARED = "ForwarderRoleNotAsDeclared"
# How often a request with a deadline looks at the clock while its region threads run.
WAIT_POLL_SECONDS = 0.2
# The organization's GuardDuty delegated administrator per region is read from the management
# account once and kept this long by a (warm) function, not once per account.
ADMINISTRATORS_TTL_SECONDS = 300.0
# Which path a region's GuardDuty findings of an account take to the Security bus.
PATH_NATIVE = "native: the Security account is its GuardDuty administrator"
PATH_FORWARDED = "forwarded by the member's rule"
PATH_OWN_BUS = "own bus (the Security account)"


@dataclass(frozen=True)
class StepOutcome:
    region: str
    step: str
    changes: tuple[Change, ...] = ()
    skipped: str | None = None  # reason, e.g. denied by an SCP
    failure: StepFailed | None = None


class Onboarder:
    """Onboards accounts. Pass a SessionFactory to substitute how accounts are reached."""

    def __init__(self, settings: Settings, sessions: SessionFactory | None = None) -> None:
        self.settings = settings
        self.sessions = sessions or SessionFactory(settings)
        self.exclusions = Exclusions.from_settings(settings)
        self._administrators: dict[str, tuple[float, str | None]] = {}
        self._administrators_lock = threading.Lock()
        self._heap = WarmHeap()  # frozen after the first account: onboarding/heap.py

    # Entry points -------------------------------------------------------------------------

    def handle(self, items: Iterable[Parsed]) -> Report:
        """Process parsed inputs inline: ignored ones are logged, requests are onboarded."""
        reports: list[AccountReport] = []
        seen: set[tuple[str, tuple[str, ...] | None, bool, str]] = set()
        for item in items:
            if isinstance(item, Ignored):
                logger.info("ignored input", extra={"reason": item.reason})
                continue
            for request in self._expand(item):
                key = (request.account_id, request.regions, request.dry_run, request.action)
                if key in seen:  # Control Tower sends two triggers for one account: do it once
                    continue
                seen.add(key)
                reports.append(
                    self.onboard(request, known_active=isinstance(item, AllAccountsRequest))
                )
        return Report(tuple(reports))

    def plan(self, request: OnboardingRequest, known_active: bool = False) -> AccountReport:
        """What onboarding would change in the account. Reads only; writes nothing.

        Each change's `action` says `create` (missing) or `update` (drifted); an empty plan for
        an `ok` region means the region is configured as desired."""
        return self.onboard(replace(request, dry_run=True), known_active)

    def onboard(
        self,
        request: OnboardingRequest,
        known_active: bool = False,
        deadline: Deadline | None = None,
    ) -> AccountReport:
        """Configure one account (or, with request.dry_run, only report what would change).

        `known_active=True` is for a caller that has just read the account as ACTIVE from the
        ListAccounts pages and applied the account and OU exclusions in bulk
        (`backfill.select_accounts`): DescribeAccount and the ListParents walk are skipped; the
        per-account tag exclusion is still checked. Anything that waited on a queue is not
        "known": membership can change while a message waits, and anyone allowed to send to
        the queue could name any account.

        With a `deadline` (the queue consumer's share of the Lambda invocation) no call starts
        after it, and region steps still running when it is nearly spent are abandoned: what
        did not finish is reported as a retryable `DeadlineExceeded` failure, for just those
        regions (or the whole account if it happened before the regions)."""
        with self._heap.account(), deadline_scope(deadline):
            report = self._dispatch(request, known_active)
        logger.info(
            "account report",
            extra={
                "account_id": request.account_id,
                "reason": request.reason,
                "attempt": request.attempt,
                "dry_run": request.dry_run,
                "action": request.action,
                "report": report.as_dict(),
            },
        )
        return report

    # Steps --------------------------------------------------------------------------------

    def _dispatch(self, request: OnboardingRequest, known_active: bool) -> AccountReport:
        """Onboard, or one of the offboarding actions (onboarding/removal.py)."""
        if request.action == ONBOARD:
            return self._onboard(request, known_active)
        from onboarding import removal  # it builds on this module (fan-out, region results)

        if request.action == REMOVE:
            return removal.remove(self, request, known_active)
        if request.action == SCOPE:
            return removal.scope(self, request, known_active)
        return removal.departed(self, request)

    def _expand(self, item: OnboardingRequest | AllAccountsRequest) -> list[OnboardingRequest]:
        if isinstance(item, OnboardingRequest):
            return [item]
        # Inline backfill: fine for a small organization; with WORK_QUEUE_URL the handler fans
        # out to the queue instead, and `watershed backfill` runs accounts in parallel.
        management = self.sessions.management()
        orgs = management.client("organizations", self.settings.home_region)
        selection = select_accounts(orgs, self.exclusions)
        return requests_for(selection, item, self.settings.retain_on_exclusion)

    def _onboard(self, request: OnboardingRequest, known_active: bool) -> AccountReport:
        account_id, home = request.account_id, self.settings.home_region
        try:
            if not known_active or self.exclusions.tag:
                management = self.sessions.management_or_fail(account_id)
                orgs = management.client("organizations", home)
                if not known_active:
                    organization.check_active_member(orgs, account_id)
                    excluded = self.exclusions.excluded_reason(orgs, account_id)
                else:  # account and OU exclusions were applied in bulk by the caller
                    excluded = self.exclusions.tag_reason(orgs, account_id)
                if excluded:
                    raise AccountRefused(account_id, excluded)
            session = self.sessions.for_account(account_id)
        except AccountRefused as refused:
            return AccountReport.refused(account_id, refused.reason)
        except StepFailed as failed:
            return _account_failed(failed)
        except (ClientError, BotoCoreError) as err:
            return _account_failed(step_failed(err, account_id, None, "membership"))

        is_security = account_id == self.settings.security_account_id
        # The forwarder role (IAM, global), the member's region list and the organization's
        # GuardDuty administrators (management side) do not depend on each other: they run side
        # by side. The region steps start as soon as the region list is known and read their
        # region while the role is still being written; each waits for the role before its
        # first write, so an account whose role could not be written gets no region write.
        wanted = request.regions or self.settings.hub_regions
        views: dict[str, dict[str, Any]] = {}  # region -> GuardDuty as read (the steps fill it)
        paths: dict[str, str] = {}  # region -> the path its GuardDuty findings take
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="prologue") as prologue:
            role = prologue.submit(
                contextvars.copy_context().run,
                self._forwarder_role,
                session.client("iam", home),
                account_id,
                request.dry_run,
                is_security,
            )
            listed = prologue.submit(
                contextvars.copy_context().run, regions.region_statuses, session.client("ec2", home)
            )
            admins = prologue.submit(
                contextvars.copy_context().run, self.guardduty_administrators, wanted, account_id
            )
            # While those wait on the network, build the regional clients the steps will use
            # (a few ms of CPU each, 34 for 17 regions): the steps then start at once.
            self._clients(session, wanted, is_security)
            if listed.exception() is None:
                # An opt-in ENABLED event can arrive before the member's own DescribeRegions
                # shows the region as enabled (eventual consistency): "not enabled" is "not yet".
                selection = regions.select_regions(
                    wanted, listed.result(), expect_enabled=request.reason == REGION_OPT_IN
                )
                administrators = {
                    r: a for r, a in admins.result().items() if r in selection.configure
                }
                steps = self._region_steps(
                    session, request, selection.configure, administrators, views, paths, role
                )
                outcomes = self._run(account_id, steps)
                for region_outcomes in outcomes.values():  # reported GuardDuty first, as before
                    region_outcomes.sort(key=lambda o: o.step != STEP_GUARDDUTY)
        try:  # the role's failure first: the region steps wrote nothing then
            account_changes, after_repoint = role.result()
        except StepFailed as failed:
            return _account_failed(failed)
        except (ClientError, BotoCoreError) as err:
            return _account_failed(step_failed(err, account_id, None, "iam"))
        try:
            listed.result()
        except (ClientError, BotoCoreError) as err:
            return _account_failed(step_failed(err, account_id, None, "regions"))

        results = [RegionResult(r, "skipped", reason=why) for r, why in selection.skipped.items()]
        results += [
            RegionResult(r, "failed", reason=why, error=REGION_NOT_ENABLED_YET, retryable=True)
            for r, why in selection.pending.items()
        ]
        for region in selection.configure:
            result = _region_result(region, outcomes.get(region, []))
            if self.settings.guardduty_mode != "off" and region in views:
                path = PATH_OWN_BUS if is_security else paths.get(region, PATH_FORWARDED)
                result = replace(result, guardduty={**views[region], "findings_path": path})
            results.append(result)
        if after_repoint:
            # Narrow only once every hub region's target is known to be repointed; until then
            # the relay policy (which includes the home bus) keeps every region delivering.
            every_region = request.regions is None or set(self.settings.hub_regions) <= set(
                request.regions
            )
            if request.dry_run or (
                every_region
                and not selection.pending
                and all(r.status != "failed" for r in results)
            ):
                try:
                    if not request.dry_run:
                        iam.apply_forwarder_role(
                            session.client("iam", home), self.settings, account_id, after_repoint
                        )
                except (ClientError, BotoCoreError) as err:
                    return _account_failed(step_failed(err, account_id, None, "iam"))
                account_changes += after_repoint
        return AccountReport.build(account_id, results, account_changes, request.dry_run)

    def _region_steps(
        self,
        session: AccountSession,
        request: OnboardingRequest,
        configure: Iterable[str],
        administrators: dict[str, str | None],
        views: dict[str, dict[str, Any]],
        paths: dict[str, str],
        role: Future[tuple[list[Change], list[Change]]],
    ) -> list[tuple[str, str, Callable[[], list[Change]]]]:
        """GuardDuty and forwarding in each region, each waiting for the forwarder role (and
        writing nothing if it failed) before its first write. Forwarding's steps come first: on
        a first run each makes three calls in a row (DescribeRule, PutRule, PutTargets) against
        GuardDuty's two, so with 34 threads starting at once the longest chains should not queue
        behind the shorter ones."""
        is_security = request.account_id == self.settings.security_account_id

        def role_written() -> None:
            role.result()  # raises the role's failure: the step then writes nothing

        forwarding_steps: list[tuple[str, str, Callable[[], list[Change]]]] = []
        guardduty_steps: list[tuple[str, str, Callable[[], list[Change]]]] = []
        for region in configure:
            admin = administrators.get(region)
            if self.settings.guardduty_mode != "off":
                known = region in administrators
                step = self._guardduty(session, region, request, admin, views, known, role_written)
                guardduty_steps.append((region, STEP_GUARDDUTY, step))
            if not is_security:
                step = self._forwarding(session, region, request, admin, paths, role_written)
                forwarding_steps.append((region, STEP_FORWARDING, step))
        return forwarding_steps + guardduty_steps

    def _clients(self, session: AccountSession, wanted: Iterable[str], is_security: bool) -> None:
        services = [] if self.settings.guardduty_mode == "off" else ["guardduty"]
        services += [] if is_security else ["events"]
        for region in wanted:
            for service in services:
                session.client(service, region)

    def guardduty_administrators(
        self, regions: Iterable[str], account_id: str = ""
    ) -> dict[str, str | None]:
        """The organization's GuardDuty delegated administrator in each region (None: none; a
        region whose administrator could not be read is left out - logged; its findings are
        then forwarded, which may duplicate but never loses them). Read from the management
        account (ListOrganizationAdminAccounts, through the launcher) once per
        ADMINISTRATORS_TTL_SECONDS; nothing with GUARDDUTY=off."""
        if self.settings.guardduty_mode == "off":
            return {}
        now = time.monotonic()
        out: dict[str, str | None] = {}
        with self._administrators_lock:
            missing = []
            for region in regions:
                cached = self._administrators.get(region)
                if cached and now - cached[0] < ADMINISTRATORS_TTL_SECONDS:
                    out[region] = cached[1]
                else:
                    missing.append(region)
            if not missing:
                return out
            try:
                management = self.sessions.management()
            except (ClientError, BotoCoreError) as err:
                logger.warning(
                    "GuardDuty administrators not read",
                    extra={"error": error_code(err), "account_id": account_id},
                )
                return out
            # One call per region, all at once (17 in sequence would be most of an onboarding).
            with ThreadPoolExecutor(len(missing), thread_name_prefix="administrators") as pool:
                read = list(pool.map(partial(_delegated_administrator, management), missing))
            for region, (ok, admin) in zip(missing, read, strict=True):
                if ok:  # unknown is not cached: read again next time
                    self._administrators[region] = (now, admin)
                    out[region] = admin
        return out

    def _forwarder_role(
        self, client: Any, account_id: str, dry_run: bool, is_security: bool = False
    ) -> tuple[list[Change], list[Change]]:
        """(changes now, changes after every target is repointed). Members: converge the role
        (a relay -> direct switch narrows its policy last). The management account:
        management.yaml declares the role and nothing of watershed may write IAM there, so it
        is only verified; drift is reported (plan, audit) and stops onboarding (a permanent
        failure naming it), never repaired. The Security account gets none: its events are
        already on its own bus."""
        if is_security:
            return [], []
        if account_id != self.settings.management_account_id:
            now, later = iam.plan_in_switch_order(client, self.settings, account_id)
            if now and not dry_run:
                iam.apply_forwarder_role(client, self.settings, account_id, now)
            return now, later
        drift = iam.verify_declared_role(client, self.settings, account_id)
        if drift and not dry_run:
            raise PermanentStepFailed(
                account_id,
                None,
                "iam",
                FORWARDER_ROLE_NOT_AS_DECLARED,
                "the management account's forwarder role differs from management.yaml ("
                + "; ".join(str(c) for c in drift)
                + "): onboarding never writes IAM there; update or redeploy that stack",
            )
        return drift, []

    def _guardduty(
        self,
        session: AccountSession,
        region: str,
        request: OnboardingRequest,
        delegated_admin: str | None,
        views: dict[str, dict[str, Any]],
        administrator_known: bool = True,
        before_write: Callable[[], None] | None = None,
    ) -> Callable[[], list[Change]]:
        def step() -> list[Change]:
            client = session.client("guardduty", region)
            outcome = guardduty.ensure_detector(
                client,
                self.settings,
                request.dry_run,
                request.account_id,
                delegated_admin,
                administrator_known,
                before_write,
            )
            views[region] = outcome.view.as_dict()
            return outcome.changes

        return step

    def _forwarding(
        self,
        session: AccountSession,
        region: str,
        request: OnboardingRequest,
        delegated_admin: str | None = None,
        paths: dict[str, str] | None = None,
        before_write: Callable[[], None] | None = None,
    ) -> Callable[[], list[Change]]:
        def step() -> list[Change]:
            settings, path = self.settings, PATH_FORWARDED
            if delegated_admin and delegated_admin == settings.security_account_id:
                # The Security account administers GuardDuty here: if it administers this
                # member, GuardDuty already puts the member's findings on its bus.
                member_admin = _member_administrator(session, region, request.account_id)
                if member_admin == settings.security_account_id:
                    pattern = forwarding.pattern_without_guardduty_findings(
                        settings.forward_event_pattern
                    )
                    settings = replace(settings, forward_event_pattern=pattern)
                    path = PATH_NATIVE
            if paths is not None:
                paths[region] = path
            client = session.client("events", region)
            return forwarding.ensure_forwarding(
                client, settings, request.account_id, region, request.dry_run, before_write
            )

        return step

    def _run(
        self, account_id: str, steps: list[tuple[str, str, Callable[[], list[Change]]]]
    ) -> dict[str, list[StepOutcome]]:
        """Run every (region, step); one failure never stops another.

        Every step has its own thread, so no step waits for a free worker: a region's steps
        (GuardDuty, forwarding) run side by side, and up to REGION_WORKERS regions at once —
        the regions beyond that start in hub-region order as earlier ones finish."""
        outcomes: dict[str, list[StepOutcome]] = {}
        if not steps:
            return outcomes
        deadline = current_deadline()
        window = _RegionWindow([region for region, _, _ in steps], self.settings.region_workers)
        pool = ThreadPoolExecutor(max_workers=len(steps), thread_name_prefix="region")
        try:
            # Each step runs in a copy of this context: the deadline follows it into its thread.
            futures = [
                (
                    region,
                    name,
                    pool.submit(
                        contextvars.copy_context().run,
                        window.run,
                        region,
                        deadline,
                        _outcome,
                        account_id,
                        region,
                        name,
                        fn,
                    ),
                )
                for region, name, fn in steps
            ]
            _wait([f for _, _, f in futures], deadline)
            for region, name, future in futures:
                outcome = future.result() if future.done() and not future.cancelled() else None
                if outcome is None:  # still running, not started, or let go at the deadline
                    future.cancel()
                    outcome = StepOutcome(
                        region, name, failure=_timed_out(account_id, region, name)
                    )
                outcomes.setdefault(region, []).append(outcome)
        finally:
            # Without a deadline every step has finished; with one, a step still on the wire is
            # left to end on its own (its next call fails at once: the deadline has passed).
            pool.shutdown(wait=deadline is None, cancel_futures=True)
        return outcomes


class _RegionWindow:
    """At most `width` regions have steps running; regions start in the order first named.

    A region is open from when its first step starts until its last step ends. A step whose
    region may not start yet waits; with a deadline it gives up once it is time to stop
    waiting, and is then reported as timed out without having made any call."""

    def __init__(self, regions: list[str], width: int) -> None:
        self._order = {region: i for i, region in enumerate(dict.fromkeys(regions))}
        self._left = {region: regions.count(region) for region in self._order}
        self._width = max(1, width)
        self._finished = 0
        self._changed = threading.Condition()

    def run(
        self,
        region: str,
        deadline: Deadline | None,
        fn: Callable[..., StepOutcome],
        *args: Any,
    ) -> StepOutcome | None:
        with self._changed:
            while self._order[region] >= self._finished + self._width:
                if deadline is not None and deadline.stop_waiting():
                    return None
                self._changed.wait(timeout=WAIT_POLL_SECONDS if deadline else None)
        try:
            return fn(*args)
        finally:
            with self._changed:
                self._left[region] -= 1
                if not self._left[region]:
                    self._finished += 1
                    self._changed.notify_all()


def _delegated_administrator(management: AccountSession, region: str) -> tuple[bool, str | None]:
    """(read?, the organization's GuardDuty delegated administrator in `region`)."""
    try:
        return True, guardduty.delegated_administrator(management.client("guardduty", region))
    except (ClientError, BotoCoreError) as err:
        logger.warning(
            "GuardDuty administrator not read", extra={"region": region, "error": error_code(err)}
        )
        return False, None


def _member_administrator(session: AccountSession, region: str, account_id: str) -> str | None:
    """The member's GuardDuty administrator, for the forwarding decision. A read that fails
    (e.g. GuardDuty denied by an SCP) must not fail forwarding: unknown means forward all."""
    try:
        return guardduty.read_administrator(session.client("guardduty", region))
    except (ClientError, BotoCoreError) as err:
        logger.warning(
            "GuardDuty administrator of the member not read: forwarding every finding",
            extra={"account_id": account_id, "region": region, "error": error_code(err)},
        )
        return None


def _wait(futures: list[Future[StepOutcome | None]], deadline: Deadline | None) -> None:
    """Until every step is done, or — with a deadline — until it is time to stop waiting."""
    if deadline is None:
        wait(futures)
        return
    pending = set(futures)
    while pending and not deadline.stop_waiting():
        _, pending = wait(pending, timeout=WAIT_POLL_SECONDS)


def _timed_out(account_id: str, region: str, step: str) -> StepFailed:
    return RetryableStepFailed(
        account_id,
        region,
        step,
        DeadlineExceeded.__name__,
        "still running when the invocation ran out of time",
    )


def _outcome(
    account_id: str, region: str, step: str, fn: Callable[[], list[Change]]
) -> StepOutcome:
    try:
        return StepOutcome(region, step, tuple(fn()))
    except StepFailed as failed:
        return StepOutcome(region, step, failure=failed)
    except (ClientError, BotoCoreError) as err:
        if is_scp_denial(err):
            return StepOutcome(
                region,
                step,
                skipped=f"denied by a service control policy ({step}: {error_code(err)})",
            )
        return StepOutcome(region, step, failure=step_failed(err, account_id, region, step))
    except Exception as err:  # a bug must not take the other regions down with it
        logger.exception("unexpected error", extra={"account_id": account_id, "region": region})
        failure = step_failed(err, account_id, region, step)
        return StepOutcome(region, step, failure=failure)


def _region_result(region: str, outcomes: list[StepOutcome]) -> RegionResult:
    changes = tuple(c for o in outcomes for c in o.changes)
    failures = [o.failure for o in outcomes if o.failure is not None]
    if failures:
        return RegionResult(
            region,
            "failed",
            changes,
            reason="; ".join(f"{f.step}: {f.message or f.code}" for f in failures),
            error=failures[0].code,
            retryable=all(f.retryable for f in failures),
        )
    skipped = [o.skipped for o in outcomes if o.skipped]
    if skipped:
        return RegionResult(region, "skipped", changes, reason="; ".join(skipped))
    return RegionResult(region, "ok", changes)


def _account_failed(failed: StepFailed) -> AccountReport:
    return AccountReport.account_failed(
        failed.account_id, failed.step, failed.code, failed.message, failed.retryable
    )
