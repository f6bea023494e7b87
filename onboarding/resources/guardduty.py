"""The GuardDuty detector of one account in one region.

One detector per region. What watershed does with it depends on GUARDDUTY (settings):

- `manage`: a missing detector is created enabled, with the creation frequency and an explicit
  `Features` list naming every plan the installed SDK knows (onboarding.resources.guardduty_model:
  unnamed plans DISABLED, since CreateDetector turns on whatever it is not told about). A suspended
  detector is re-enabled. On an existing detector only what is configured is enforced: the
  plans GUARDDUTY_FEATURES names, and FINDING_PUBLISHING_FREQUENCY when set. A plan it does not
  name is the owner's and is never switched off.
- `observe`: the same reads and comparisons; what would differ is reported as an observation,
  nothing is written.
- `off`: the service makes no GuardDuty call at all (this module is not used).

A detector managed by a GuardDuty administrator - a member whose detector has an administrator,
or the organization's delegated administrator itself (known from the management side: the
administrator's own GetAdministratorAccount answers nothing) - is "managed by administrator
<id>": watershed changes neither its plans nor its frequency. A member's suspended detector is
left to the administrator too: GuardDuty documents suspending and re-enabling an organization
member as the delegated administrator's action (StopMonitoringMembers / StartMonitoringMembers),
not the member's. A concurrent CreateDetector ("a detector already exists") is resolved by
reading again and updating the detector that won.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from onboarding.errors import error_code, error_message
from onboarding.report import Change
from onboarding.resources import ownership
from onboarding.resources.guardduty_model import client_features, creation_features
from onboarding.settings import Settings


@dataclass(frozen=True)
class DetectorState:
    detector_id: str
    status: str  # ENABLED | DISABLED
    finding_publishing_frequency: str
    features: Mapping[str, str] = field(default_factory=dict)
    administrator: str | None = None  # set when a GuardDuty administrator manages the detector


@dataclass(frozen=True)
class DetectorView:
    """What the report and the audit show of one region's GuardDuty (schema: audit `guardduty`)."""

    mode: str  # manage | observe
    status: str  # ENABLED | DISABLED | missing
    plans_on: tuple[str, ...] = ()
    administrator: str | None = None  # the account that manages this detector, if any
    notes: tuple[str, ...] = ()  # observations: what is left alone, and why
    # the detector's administrator is not the organization's delegated administrator of the
    # region (e.g. an invitation from any account): left alone, but never reported as fine
    unexpected_administrator: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "status": self.status,
            "plans_on": list(self.plans_on),
        }
        if self.administrator:
            out["administrator"] = self.administrator
        if self.notes:
            out["notes"] = list(self.notes)
        if self.unexpected_administrator:
            out["unexpected_administrator"] = True
        return out


@dataclass(frozen=True)
class DetectorOutcome:
    changes: list[Change]
    view: DetectorView


def read_detector(guardduty: Any) -> DetectorState | None:
    ids = guardduty.list_detectors().get("DetectorIds", [])
    if not ids:
        return None
    detector_id = sorted(ids)[0]
    detector = guardduty.get_detector(DetectorId=detector_id)
    return DetectorState(
        detector_id=detector_id,
        status=detector.get("Status", "DISABLED"),
        finding_publishing_frequency=detector.get("FindingPublishingFrequency", ""),
        features={f["Name"]: f.get("Status", "") for f in detector.get("Features", [])},
        administrator=administrator_of(guardduty, detector_id),
    )


def administrator_of(guardduty: Any, detector_id: str) -> str | None:
    admin = guardduty.get_administrator_account(DetectorId=detector_id).get("Administrator") or {}
    # AWS answers RelationshipStatus "Enabled"; moto "ENABLED".
    enabled = str(admin.get("RelationshipStatus", "")).lower() == "enabled"
    return str(admin["AccountId"]) if enabled and admin.get("AccountId") else None


def read_administrator(guardduty: Any) -> str | None:
    """The GuardDuty administrator of this account's detector in this region (None: none, or no
    detector). Two reads; used to decide whether the member's findings reach the Security
    account natively."""
    ids = guardduty.list_detectors().get("DetectorIds", [])
    return administrator_of(guardduty, sorted(ids)[0]) if ids else None


def managed_by(
    state: DetectorState | None, account_id: str, delegated_admin: str | None
) -> str | None:
    """The administrator that manages this detector: the member's administrator, or the account
    itself when it is the region's delegated administrator."""
    if state is not None and state.administrator:
        return state.administrator
    if delegated_admin and delegated_admin == account_id:
        return account_id
    return None


def plan_detector(
    state: DetectorState | None, settings: Settings, administrator: str | None = None
) -> list[Change]:
    """The writes `manage` would make. `administrator`: see `managed_by`."""
    if state is None:
        enabled = [name for name, status in settings.guardduty_features if status == "ENABLED"]
        return [
            Change(
                "detector",
                "create",
                f"enabled, {settings.creation_frequency}, "
                f"paid features: {', '.join(enabled) or 'none'}",
            )
        ]
    changes = []
    if state.status != "ENABLED" and not state.administrator:
        changes.append(Change("detector", "update", f"enable (was {state.status})"))
    if administrator:
        return changes  # the GuardDuty administrator owns frequency and features
    wanted = settings.finding_publishing_frequency
    if wanted and state.finding_publishing_frequency != wanted:
        changes.append(
            Change(
                "detector",
                "update",
                f"publishing frequency {state.finding_publishing_frequency} → {wanted}",
            )
        )
    for name, status in settings.guardduty_features:
        current = state.features.get(name, "DISABLED")
        if current != status:
            changes.append(Change("detector", "update", f"feature {name} {current} → {status}"))
    return changes


def _notes(state: DetectorState | None, administrator: str | None, account_id: str) -> list[str]:
    notes = []
    if administrator == account_id:
        notes.append("GuardDuty delegated administrator: its plans and frequency are left to it")
    elif administrator:
        notes.append(f"managed by administrator {administrator}: plans and frequency left to it")
    if state is not None and state.administrator and state.status != "ENABLED":
        notes.append(
            f"suspended by administrator {state.administrator}: only the administrator can "
            "re-enable it (StartMonitoringMembers)"
        )
    return notes


def view_of(
    state: DetectorState | None,
    mode: str,
    administrator: str | None,
    notes: list[str],
    unexpected: bool = False,
) -> DetectorView:
    if state is None:
        return DetectorView(mode, "missing", notes=tuple(notes))
    plans = tuple(sorted(n for n, s in state.features.items() if s == "ENABLED"))
    return DetectorView(mode, state.status, plans, administrator, tuple(notes), unexpected)


def _update(
    guardduty: Any, state: DetectorState, settings: Settings, administrator: str | None
) -> None:
    kwargs: dict[str, Any] = {"DetectorId": state.detector_id}
    if state.status != "ENABLED" and not state.administrator:
        kwargs["Enable"] = True
    if not administrator:
        wanted = settings.finding_publishing_frequency
        if wanted and wanted != state.finding_publishing_frequency:
            kwargs["FindingPublishingFrequency"] = wanted
        differing = [
            {"Name": name, "Status": status}
            for name, status in settings.guardduty_features
            if state.features.get(name, "DISABLED") != status
        ]
        if differing:  # only the named plans that differ: GuardDuty leaves the others as they are
            kwargs["Features"] = differing
    if len(kwargs) > 1:
        guardduty.update_detector(**kwargs)


def _already_exists(err: ClientError) -> bool:
    return (
        error_code(err) == "BadRequestException" and "already exists" in error_message(err).lower()
    )


def apply_detector(
    guardduty: Any,
    state: DetectorState | None,
    settings: Settings,
    administrator: str | None = None,
    account_id: str = "",
    delegated_admin: str | None = None,
) -> None:
    if state is not None:
        _update(guardduty, state, settings, administrator)
        return
    try:
        guardduty.create_detector(
            Enable=True,
            FindingPublishingFrequency=settings.creation_frequency,
            Features=creation_features(
                dict(settings.guardduty_features), client_features(guardduty)
            ),
            Tags=ownership.tag_map(),  # created by watershed: the only detector removal deletes
        )
    except ClientError as err:
        if not _already_exists(err):
            raise
        # Someone (another invocation, GuardDuty org auto-enable) created it meanwhile.
        winner = read_detector(guardduty)
        if winner is not None:
            owner = managed_by(winner, account_id, delegated_admin)
            if plan_detector(winner, settings, owner):
                _update(guardduty, winner, settings, owner)


def ensure_detector(
    guardduty: Any,
    settings: Settings,
    dry_run: bool = False,
    account_id: str = "",
    delegated_admin: str | None = None,
    administrator_known: bool = False,
    before_write: Callable[[], None] | None = None,
) -> DetectorOutcome:
    """Read, compare, write only the difference (GUARDDUTY=manage). Returns the changes made
    (or planned, with dry_run) and what the region's GuardDuty looks like. With observe, the
    differences are observations in the view, never changes, and nothing is written.
    `before_write` is called once before the first write, if any (it may wait, or raise to
    write nothing: onboarding waits there for the account's forwarder role)."""
    state = read_detector(guardduty)
    administrator = managed_by(state, account_id, delegated_admin)
    changes = plan_detector(state, settings, administrator)
    notes = _notes(state, administrator, account_id)
    # Anyone can invite a detector into GuardDuty membership; only the organization's delegated
    # administrator of the region is expected. Another one is left alone (watershed does not
    # fight GuardDuty relationships) but reported, so a member cannot hide from enforcement.
    unexpected = bool(
        administrator_known
        and state is not None
        and state.administrator
        and state.administrator != delegated_admin
    )
    if unexpected:
        notes.append(
            f"administrator {administrator} is not the organization's GuardDuty delegated "
            f"administrator in this region ({delegated_admin or 'none'})"
        )
    mode = settings.guardduty_mode
    if mode != "manage":
        notes += [f"not written (GUARDDUTY={mode}): {c}" for c in changes]
        return DetectorOutcome([], view_of(state, mode, administrator, notes, unexpected))
    if changes and not dry_run:
        if before_write is not None:
            before_write()
        apply_detector(guardduty, state, settings, administrator, account_id, delegated_admin)
    return DetectorOutcome(changes, view_of(state, mode, administrator, notes, unexpected))


def delegated_administrator(management_guardduty: Any) -> str | None:
    """The organization's GuardDuty delegated administrator in the client's region, or None.

    ListOrganizationAdminAccounts, called with the management account's credentials (only the
    management account may call it); GuardDuty designates the administrator per region and
    answers at most one. One that is being removed (DISABLE_IN_PROGRESS) no longer counts."""
    accounts = management_guardduty.list_organization_admin_accounts().get("AdminAccounts", [])
    for account in accounts:
        if account.get("AdminStatus") == "ENABLED":
            return str(account["AdminAccountId"])
    return None


# Removal (only with `watershed remove --guardduty`) ----------------------------------------------


MANAGEMENT_DETECTOR_RETAINED = (
    "in the management account: left to its owner (watershed holds no guardduty:DeleteDetector "
    "there: with the TagResource it needs at creation it could otherwise tag the owner's "
    "detector and then delete it)"
)


def retain_management_detector() -> list[Change]:
    """`remove --guardduty` in the management account: no call, the detector stays."""
    return [Change("detector", "retain", MANAGEMENT_DETECTOR_RETAINED)]


def plan_remove_detector(detectors: Mapping[str, Mapping[str, str]]) -> list[Change]:
    """`detectors`: detector id → its tags. Only a detector tagged at its creation by watershed
    is deleted; one that existed before (the owner's, GuardDuty auto-enable's) stays running."""
    changes = []
    for detector_id, tags in sorted(detectors.items()):
        if ownership.is_managed(tags):
            changes.append(Change("detector", "delete", detector_id))
        else:
            why = f"{detector_id} not created by watershed (no {ownership.MANAGED_TAG_TEXT})"
            changes.append(Change("detector", "retain", why))
    return changes


def remove_detector(guardduty: Any, dry_run: bool = False) -> list[Change]:
    """Read, then delete only a detector watershed created. Returns the changes (made/planned)."""
    detectors = {
        detector_id: guardduty.get_detector(DetectorId=detector_id).get("Tags") or {}
        for detector_id in guardduty.list_detectors().get("DetectorIds", [])
    }
    changes = plan_remove_detector(detectors)
    if dry_run:
        return changes
    for change in changes:
        if change.action == "delete":
            try:
                guardduty.delete_detector(DetectorId=change.detail)
            except ClientError as err:
                if error_code(err) != "ResourceNotFoundException":  # gone meanwhile: done
                    raise
    return changes
