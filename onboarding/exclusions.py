"""Accounts watershed never onboards: EXCLUDED_ACCOUNTS, EXCLUDED_OUS (and every OU below them),
EXCLUDE_TAG (`key` or `key=value` on the account). Management-side Organizations reads only.

Two ways to ask, for two scales:

- `excluded_reason(orgs, account_id)` — one account (a trigger, a queue message): walks the
  account's parents up to the root with ListParents (one call per level, only when OUs are
  excluded) and reads its tags (one ListTagsForResource, only when a tag is configured).
- `excluded_by_ou(orgs)` — a backfill: every account below the excluded OUs, in a few calls per
  excluded OU (ListOrganizationalUnitsForParent + ListAccountsForParent, paginated), instead of
  one ListParents walk per account of the organization.

An excluded OU that does not exist (deleted, mistyped, another organization's) is skipped with a
warning and reported (`OuExclusion.missing`): a stale EXCLUDED_OUS must not stop every backfill.

Tags have no bulk read in Organizations, so a backfill leaves the tag check to whoever onboards
the account (the queue consumer, or the inline backfill's workers): one call per account, spread
over the run instead of thousands of calls inside the one invocation that lists the accounts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from onboarding.errors import error_code
from onboarding.settings import Settings

logger = logging.getLogger(__name__)

MAX_OU_DEPTH = 5  # Organizations allows OUs five levels deep below the root
ACCOUNTS_REASON = "excluded by EXCLUDED_ACCOUNTS"
# What Organizations answers for a well-formed OU id that is not (or no longer) in the
# organization; a malformed id never gets here (Settings checks the ou-xxxx-xxxxxxxx form).
OU_NOT_FOUND_CODES = frozenset({"ParentNotFoundException", "OrganizationalUnitNotFoundException"})


@dataclass(frozen=True)
class OuExclusion:
    """The accounts below the excluded OUs, and the excluded OUs that were not found."""

    accounts: dict[str, str] = field(default_factory=dict)  # account → the excluded OU above it
    missing: tuple[str, ...] = ()


def ou_reason(ou: str) -> str:
    return f"excluded by EXCLUDED_OUS ({ou})"


@dataclass(frozen=True)
class Listing:
    """The exclusions of one walk through the whole organization: call it with an account id for
    its EXCLUDED_ACCOUNTS / EXCLUDED_OUS reason (or None); `missing_ous` are the excluded OUs
    that were not found (skipped with a warning)."""

    accounts: frozenset[str]
    by_ou: OuExclusion

    @property
    def missing_ous(self) -> tuple[str, ...]:
        return self.by_ou.missing

    def __call__(self, account_id: str) -> str | None:
        if account_id in self.accounts:
            return ACCOUNTS_REASON
        if account_id in self.by_ou.accounts:
            return ou_reason(self.by_ou.accounts[account_id])
        return None


@dataclass(frozen=True)
class Exclusions:
    accounts: frozenset[str] = frozenset()
    ous: frozenset[str] = frozenset()
    tag: tuple[str, str | None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Exclusions:
        return cls(settings.excluded_accounts, settings.excluded_ous, settings.exclude_tag)

    def __bool__(self) -> bool:
        return bool(self.accounts or self.ous or self.tag)

    # One account ----------------------------------------------------------------------------

    def excluded_reason(self, orgs: Any, account_id: str) -> str | None:
        """Why `account_id` must not be onboarded, or None. Reads only what is configured."""
        return self.placement_reason(orgs, account_id) or self.tag_reason(orgs, account_id)

    def placement_reason(self, orgs: Any, account_id: str) -> str | None:
        """EXCLUDED_ACCOUNTS, then EXCLUDED_OUS (a ListParents walk), without the tag."""
        if account_id in self.accounts:
            return ACCOUNTS_REASON
        if self.ous:
            ou = self._excluded_ancestor(orgs, account_id)
            if ou:
                return ou_reason(ou)
        return None

    def tag_reason(self, orgs: Any, account_id: str) -> str | None:
        """The EXCLUDE_TAG check alone (one ListTagsForResource), or None if no tag is set."""
        if not self.tag:
            return None
        key, value = self.tag
        tags: dict[str, str] = {}
        for page in orgs.get_paginator("list_tags_for_resource").paginate(ResourceId=account_id):
            tags.update({t["Key"]: t.get("Value", "") for t in page.get("Tags", [])})
        if key in tags and (value is None or tags[key] == value):
            shown = key if value is None else f"{key}={value}"
            return f"excluded by EXCLUDE_TAG ({shown})"
        return None

    def _excluded_ancestor(self, orgs: Any, child_id: str) -> str | None:
        for _ in range(MAX_OU_DEPTH + 1):
            parents = orgs.list_parents(ChildId=child_id).get("Parents", [])
            if not parents or parents[0].get("Type") == "ROOT":
                return None
            child_id = parents[0]["Id"]
            if child_id in self.ous:
                return child_id
        return None

    # A backfill -----------------------------------------------------------------------------

    def listing(self, orgs: Any) -> Listing:
        """For a walk through the whole organization: the EXCLUDED_ACCOUNTS and EXCLUDED_OUS
        reasons by account id. The OUs are resolved once, in bulk (`excluded_by_ou`); the tag is
        left to whoever onboards the account."""
        by_ou = self.excluded_by_ou(orgs) if self.ous else OuExclusion()
        return Listing(frozenset(self.accounts), by_ou)

    def excluded_by_ou(self, orgs: Any) -> OuExclusion:
        """Every account below an excluded OU (at any depth) → the excluded OU it is under.

        An OU that is not found — the excluded one itself, or a child OU deleted while it is
        being listed — is skipped with a warning; the excluded OUs themselves are reported in
        `missing`. Any other error (access denied, throttling) still fails the selection."""
        found: dict[str, str] = {}
        missing: list[str] = []
        for top in sorted(self.ous):
            pending = [top]
            while pending:
                ou = pending.pop()
                try:
                    accounts, children = _below(orgs, ou)
                except ClientError as err:
                    if error_code(err) not in OU_NOT_FOUND_CODES:
                        raise
                    logger.warning(
                        "excluded OU not found: skipped",
                        extra={"ou": ou, "excluded_ou": top, "error": error_code(err)},
                    )
                    if ou == top:
                        missing.append(top)
                    continue
                for account in accounts:
                    found.setdefault(account, top)
                pending.extend(children)
        return OuExclusion(found, tuple(missing))


def _below(orgs: Any, ou: str) -> tuple[list[str], list[str]]:
    """The accounts directly in `ou` and its child OUs (both paginated)."""
    accounts = [
        account["Id"]
        for page in orgs.get_paginator("list_accounts_for_parent").paginate(ParentId=ou)
        for account in page.get("Accounts", [])
    ]
    children = [
        child["Id"]
        for page in orgs.get_paginator("list_organizational_units_for_parent").paginate(ParentId=ou)
        for child in page.get("OrganizationalUnits", [])
    ]
    return accounts, children
