"""GuardDuty's organization integration, as far as watershed can see it, where moto lacks it.

moto 5 implements EnableOrganizationAdminAccount and ListOrganizationAdminAccounts (kept in the
calling management account's backend, per region), but a member's GetAdministratorAccount
answers from the member's own backend only, so no member ever has an administrator (and its
answer uses key names botocore does not parse). `administrator_relationships` stands in for a
delegated administrator with auto-enable for all members: in a region where the management
account designated an administrator, every other account of the organization answers
GetAdministratorAccount with that administrator and RelationshipStatus "Enabled"; the
administrator itself answers nothing, as AWS documents.

What this cannot prove: how fast AWS associates a new member, and which member finding event
types reach the administrator (watershed assumes findings only, docs/architecture.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any


@contextlib.contextmanager
def administrator_relationships(management: str, members: Iterable[str]) -> Iterator[None]:
    """While open, `members` (account ids) have the region's delegated administrator."""
    from moto.guardduty.models import GuardDutyBackend, guardduty_backends

    in_organization = set(members)
    original = GuardDutyBackend.get_administrator_account

    def get_administrator_account(self: GuardDutyBackend, detector_id: str) -> dict[str, Any]:
        self.get_detector(detector_id)  # DetectorNotFound as before
        admins = guardduty_backends[management][self.region_name].admin_account_ids
        if not admins or self.account_id == admins[-1] or self.account_id not in in_organization:
            return {}
        # rest-json member names, as GuardDuty sends them (moto serialises this dict as is)
        return {
            "administrator": {
                "accountId": admins[-1],
                "invitationId": f"org-{admins[-1]}",
                "relationshipStatus": "Enabled",
            }
        }

    GuardDutyBackend.get_administrator_account = get_administrator_account  # type: ignore[method-assign]
    try:
        yield
    finally:
        GuardDutyBackend.get_administrator_account = original  # type: ignore[method-assign]
