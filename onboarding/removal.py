"""Offboarding: take watershed out of an account, or record that the account left.

    remove:   membership (no exclusion check: excluded accounts are what removal is for)
              → session into the account → the member's enabled regions ∩ requested hub regions
              → per region, in parallel (the onboarding's own fan-out): our target, then our
                rule | with `guardduty`, a detector watershed created
              → the forwarder role, once no region failed and no rule of ours is left elsewhere
    scope:    exclusions read → in scope: onboard; excluded: remove (RETAIN_ON_EXCLUSION: keep)
    departed: no call at all (the organization's roles no longer reach the account); the report
              says what was left behind there, from the last known state

Same report as onboarding (status per region, changes), read first and write only what exists:
a second run writes nothing, and `dry_run` lists the same changes and writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from onboarding import organization, regions
from onboarding.errors import AccountRefused, StepFailed, step_failed
from onboarding.events import ONBOARD, REMOVE, OnboardingRequest
from onboarding.report import AccountReport, Change, RegionResult
from onboarding.resources import forwarding, guardduty, iam
from onboarding.service import Onboarder, _account_failed, _region_result
from onboarding.sessions import AccountSession
from onboarding.settings import Settings

logger = logging.getLogger(__name__)

STEP_FORWARDING = "forwarding"
STEP_GUARDDUTY = "guardduty"
RETAINED = "RETAIN_ON_EXCLUSION=true: watershed's resources are kept"
T = TypeVar("T")


def scope(onboarder: Onboarder, request: OnboardingRequest, known_active: bool) -> AccountReport:
    """Bring the account to what its scope says: onboard it, or remove watershed if excluded.
    `known_active` skips DescribeAccount only: the exclusions are always read for the account
    itself, since a scope backfill hands over the excluded accounts too."""
    account_id = request.account_id

    def exclusion() -> str | None:
        orgs = onboarder.sessions.management_or_fail(account_id).client(
            "organizations", onboarder.settings.home_region
        )
        if not known_active:
            organization.check_active_member(orgs, account_id)
        return onboarder.exclusions.excluded_reason(orgs, account_id)

    excluded = _guarded(account_id, "membership", exclusion)
    if isinstance(excluded, AccountReport):
        return excluded
    if not excluded:
        return onboarder._onboard(replace(request, action=ONBOARD), known_active=True)
    if onboarder.settings.retain_on_exclusion:
        return AccountReport.refused(account_id, f"{excluded}; {RETAINED}")
    return _offboard(onboarder, request, excluded)


def _offboard(onboarder: Onboarder, request: OnboardingRequest, excluded: str) -> AccountReport:
    """Remove watershed from an excluded account - after one cheap probe, because the daily
    reconcile sends every excluded account here, every day: the forwarder role (one GetRole).
    Onboarding creates it before any rule and removal deletes it after the last one, so no
    role means nothing of watershed's is left. An account that cannot be reached (excluded
    accounts often lack the member role) is reported, not retried: it has nothing we could
    remove, and tomorrow's reconcile looks again."""
    account_id, settings = request.account_id, onboarder.settings
    session = None
    if account_id not in (settings.management_account_id, settings.security_account_id):

        def probe() -> tuple[AccountSession, bool]:
            reached = onboarder.sessions.for_account(account_id)
            client = reached.client("iam", settings.home_region)
            return reached, iam.read_removal(client, settings, policies=False).exists

        probed = _guarded(account_id, "assume-role", probe)
        if isinstance(probed, AccountReport):
            why = f"not reachable ({probed.error}: {probed.reason})"
            return AccountReport.refused(account_id, f"{excluded}; {why}: nothing removed")
        session, has_role = probed
        if not has_role:
            why = f"no role {settings.forwarder_role_name}, so nothing of watershed's is left"
            return AccountReport.refused(account_id, f"{excluded}; {why}")
    removal = replace(request, action=REMOVE)
    report = remove(onboarder, removal, known_active=True, session=session)
    return replace(report, reason=report.reason or f"{excluded}: offboarded")


def remove(
    onboarder: Onboarder,
    request: OnboardingRequest,
    known_active: bool,
    session: AccountSession | None = None,
) -> AccountReport:
    """Remove watershed's rule, target and role (and, with `request.guardduty`, a detector it
    created) from one account. Writes only what exists and is watershed's. `session`: one the
    caller already has in the account."""
    settings, account_id = onboarder.settings, request.account_id
    home = settings.home_region

    def reach() -> tuple[AccountSession, dict[str, str]]:
        if not known_active:
            orgs = onboarder.sessions.management_or_fail(account_id).client("organizations", home)
            organization.check_active_member(orgs, account_id)
        inside = session or onboarder.sessions.for_account(account_id)
        return inside, regions.region_statuses(inside.client("ec2", home))

    reached = _guarded(account_id, "regions", reach)
    if isinstance(reached, AccountReport):
        return reached
    inside, statuses = reached
    selection = regions.select_regions(request.regions or settings.hub_regions, statuses)

    forwards = account_id != settings.security_account_id  # onboarding gave it no rule or role
    steps: list[tuple[str, str, Callable[[], list[Change]]]] = []
    for region in selection.configure:
        if forwards:
            steps.append((region, STEP_FORWARDING, _forwarding(onboarder, inside, request, region)))
        if request.guardduty:
            steps.append((region, STEP_GUARDDUTY, _detector(settings, inside, request, region)))
    outcomes = onboarder._run(account_id, steps)
    results = [RegionResult(r, "skipped", reason=why) for r, why in selection.skipped.items()]
    results += [_region_result(r, outcomes.get(r, [])) for r in selection.configure]

    account_changes: list[Change] = []
    if forwards:
        kept = _guarded(
            account_id,
            "forwarding",
            lambda: _role_still_needed(onboarder, inside, results, selection.configure, statuses),
        )
        if isinstance(kept, AccountReport):
            return kept
        if kept:
            account_changes = [Change("forwarder-role", "retain", kept)]
        else:
            removed = _guarded(
                account_id,
                "iam",
                lambda: iam.remove_forwarder_role(
                    inside.client("iam", home), settings, account_id, request.dry_run
                ),
            )
            if isinstance(removed, AccountReport):
                return removed
            account_changes = removed
    return AccountReport.build(account_id, results, account_changes, request.dry_run)


def _guarded(account_id: str, step: str, fn: Callable[[], T]) -> T | AccountReport:
    """`fn()`, or the account's report when it was refused or an account-level step failed."""
    try:
        return fn()
    except AccountRefused as refused:
        return AccountReport.refused(account_id, refused.reason)
    except StepFailed as failed:
        return _account_failed(failed)
    except (ClientError, BotoCoreError) as err:
        return _account_failed(step_failed(err, account_id, None, step))


def departed(onboarder: Onboarder, request: OnboardingRequest) -> AccountReport:
    """An account that left the organization: nothing is called, in it or about it.

    watershed keeps no record of what it configured where, so "the last known state" is what
    onboarding always creates: the forwarder role (global) and, in each hub region the account
    had enabled, the rule and its target — plus a GuardDuty detector wherever watershed created
    one. The report lists that per hub region; the account's owner can remove it, or run
    `watershed remove` with credentials of the account itself."""
    settings = onboarder.settings
    rule, role = settings.forward_rule_name, settings.forwarder_role_name
    left = (
        f"left behind (last known state, not read): rule {rule} with target "
        f"{forwarding.TARGET_ID} if the region was enabled; a GuardDuty detector tagged "
        "managed-by=watershed if watershed created one"
    )
    chosen = request.regions or settings.hub_regions
    results = {r: RegionResult(r, "skipped", reason=left) for r in sorted(chosen)}
    changes = (Change("forwarder-role", "retain", f"{role} left behind (IAM, global)"),)
    reason = (
        f"left the organization ({request.reason}): the organization's roles no longer reach "
        "it, nothing was called in it"
    )
    report = AccountReport(request.account_id, "refused", results, changes, reason=reason)
    logger.warning(
        "account departed: watershed resources left behind",
        extra={"account_id": request.account_id, "left_behind": report.as_dict()},
    )
    return report


def _forwarding(
    onboarder: Onboarder, session: AccountSession, request: OnboardingRequest, region: str
) -> Callable[[], list[Change]]:
    def step() -> list[Change]:
        client = session.client("events", region)
        return forwarding.remove_forwarding(
            client, onboarder.settings, request.account_id, region, request.dry_run
        )

    return step


def _detector(
    settings: Settings, session: AccountSession, request: OnboardingRequest, region: str
) -> Callable[[], list[Change]]:
    def step() -> list[Change]:
        if request.account_id == settings.management_account_id:
            return guardduty.retain_management_detector()
        return guardduty.remove_detector(session.client("guardduty", region), request.dry_run)

    return step


def _role_still_needed(
    onboarder: Onboarder,
    session: AccountSession,
    results: list[RegionResult],
    configured: tuple[str, ...],
    statuses: dict[str, str],
) -> str | None:
    """Why the forwarder role must stay for now, or None. A rule of ours left in any hub region
    needs the role to deliver, so the role goes with the last such rule: a region that failed
    now (its retry removes the role), or — when only some regions were asked for — a region
    outside the request that still has the rule (one DescribeRule there, read only)."""
    failed = sorted(r.region for r in results if r.status == "failed")
    if failed:
        return f"kept until the rule is removed in every region (failed: {', '.join(failed)})"
    # An enabled region whose calls a service control policy denied: its rule may still be there.
    denied = sorted(r.region for r in results if r.status == "skipped" and r.region in configured)
    if denied:
        return f"kept: the rule could not be read in {', '.join(denied)} (skipped)"
    done = {r.region for r in results}
    others = regions.select_regions(
        [r for r in onboarder.settings.hub_regions if r not in done], statuses
    ).configure
    remaining = [
        region
        for region in others
        if forwarding.is_our_rule(
            forwarding.read_removal(session.client("events", region), onboarder.settings)
        )
    ]
    if remaining:
        return f"kept: the rule is still in {', '.join(remaining)} (not in this request)"
    return None
