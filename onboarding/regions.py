"""Which regions of a member to configure: its own enabled regions ∩ the hub regions.

The member's own `ec2:DescribeRegions` is the source of truth — never botocore's static list,
never the management account's `account:ListRegions` (5 req/s for the whole organization).
Regions that are not enabled are *skipped* with the reason, not failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ENABLED_STATUSES = frozenset({"opt-in-not-required", "opted-in"})


@dataclass(frozen=True)
class RegionSelection:
    configure: tuple[str, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)  # region → reason
    pending: Mapping[str, str] = field(default_factory=dict)  # expected enabled, not yet


def region_statuses(ec2: Any) -> dict[str, str]:
    """Every region the account knows, with its opt-in status, from the account's own view."""
    regions = ec2.describe_regions(AllRegions=True).get("Regions", [])
    return {r["RegionName"]: r.get("OptInStatus", "opt-in-not-required") for r in regions}


def select_regions(
    requested: Sequence[str], statuses: Mapping[str, str], expect_enabled: bool = False
) -> RegionSelection:
    """Split the requested regions. With `expect_enabled` (the request comes from a Region
    Opt-In ENABLED event), a region the member does not show as enabled yet is *pending* —
    retried later — instead of skipped."""
    configure: list[str] = []
    skipped: dict[str, str] = {}
    pending: dict[str, str] = {}
    for region in requested:
        status = statuses.get(region)
        if status is None:
            skipped[region] = "region not available to this account"
        elif status not in ENABLED_STATUSES:
            if expect_enabled:
                pending[region] = f"opted in, but the account still reports it as {status}"
            else:
                skipped[region] = f"region not enabled ({status})"
        else:
            configure.append(region)
    return RegionSelection(tuple(configure), skipped, pending)
