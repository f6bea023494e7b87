"""The GuardDuty detector of one account in one region.

One detector per region. Created enabled, with the configured publishing frequency and an
*explicit* feature list (CreateDetector without `Features` turns on every paid protection
plan). A detector managed by a GuardDuty administrator (organization auto-enable) is left as
it is and only re-enabled. A concurrent CreateDetector ("a detector already exists") is
resolved by reading again and updating the detector that won.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from onboarding import ownership
from onboarding.errors import error_code, error_message
from onboarding.report import Change
from onboarding.settings import Settings


@dataclass(frozen=True)
class DetectorState:
    detector_id: str
    status: str  # ENABLED | DISABLED
    finding_publishing_frequency: str
    features: Mapping[str, str] = field(default_factory=dict)
    administrator: str | None = None  # set when a GuardDuty administrator manages the detector


def read_detector(guardduty: Any) -> DetectorState | None:
    ids = guardduty.list_detectors().get("DetectorIds", [])
    if not ids:
        return None
    detector_id = sorted(ids)[0]
    detector = guardduty.get_detector(DetectorId=detector_id)
    admin = guardduty.get_administrator_account(DetectorId=detector_id).get("Administrator") or {}
    return DetectorState(
        detector_id=detector_id,
        status=detector.get("Status", "DISABLED"),
        finding_publishing_frequency=detector.get("FindingPublishingFrequency", ""),
        features={f["Name"]: f.get("Status", "") for f in detector.get("Features", [])},
        administrator=admin.get("AccountId")
        if admin.get("RelationshipStatus") == "Enabled"
        else None,
    )


def plan_detector(state: DetectorState | None, settings: Settings) -> list[Change]:
    desired = dict(settings.guardduty_features)
    if state is None:
        enabled = [name for name, status in desired.items() if status == "ENABLED"]
        return [
            Change(
                "detector",
                "create",
                f"enabled, {settings.finding_publishing_frequency}, "
                f"paid features: {', '.join(enabled) or 'none'}",
            )
        ]
    changes = []
    if state.status != "ENABLED":
        changes.append(Change("detector", "update", f"enable (was {state.status})"))
    if state.administrator:
        return changes  # the GuardDuty administrator owns frequency and features
    if state.finding_publishing_frequency != settings.finding_publishing_frequency:
        changes.append(
            Change(
                "detector",
                "update",
                f"publishing frequency {state.finding_publishing_frequency} → "
                f"{settings.finding_publishing_frequency}",
            )
        )
    for name, status in desired.items():
        current = state.features.get(name, "DISABLED")
        if current != status:
            changes.append(Change("detector", "update", f"feature {name} {current} → {status}"))
    return changes


def _update(guardduty: Any, state: DetectorState, settings: Settings) -> None:
    if state.administrator:
        guardduty.update_detector(DetectorId=state.detector_id, Enable=True)
        return
    guardduty.update_detector(
        DetectorId=state.detector_id,
        Enable=True,
        FindingPublishingFrequency=settings.finding_publishing_frequency,
        Features=settings.features_list,
    )


def _already_exists(err: ClientError) -> bool:
    return (
        error_code(err) == "BadRequestException" and "already exists" in error_message(err).lower()
    )


def apply_detector(guardduty: Any, state: DetectorState | None, settings: Settings) -> None:
    if state is not None:
        _update(guardduty, state, settings)
        return
    try:
        guardduty.create_detector(
            Enable=True,
            FindingPublishingFrequency=settings.finding_publishing_frequency,
            Features=settings.features_list,
            Tags=ownership.tag_map(),  # created by watershed: the only detector removal deletes
        )
    except ClientError as err:
        if not _already_exists(err):
            raise
        # Someone (another invocation, GuardDuty org auto-enable) created it meanwhile.
        winner = read_detector(guardduty)
        if winner is not None and plan_detector(winner, settings):
            _update(guardduty, winner, settings)


def ensure_detector(guardduty: Any, settings: Settings, dry_run: bool = False) -> list[Change]:
    """Read, compare, write only the difference. Returns the changes made (or planned)."""
    state = read_detector(guardduty)
    changes = plan_detector(state, settings)
    if changes and not dry_run:
        apply_detector(guardduty, state, settings)
    return changes


# Removal (only with `watershed remove --guardduty`) ----------------------------------------------


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
