"""Accounts watershed never onboards: EXCLUDED_ACCOUNTS, EXCLUDED_OUS (and every OU below them),
EXCLUDE_TAG (`key` or `key=value` on the account). Management-side Organizations reads only.

Two ways to ask, for two scales:

- `excluded_reason(orgs, account_id)` — one account (a trigger, a queue message): walks the
  account's parents up to the root with ListParents (one call per level, only when OUs are
  excluded) and reads its tags (one ListTagsForResource, only when a tag is configured).
- `excluded_by_ou(orgs)` — a backfill: every account below the excluded OUs, in a few calls per
  excluded OU (ListOrganizationalUnitsForParent + ListAccountsForParent, paginated), instead of
  one ListParents walk per account of the organization.

Tags have no bulk read in Organizations, so a backfill leaves the tag check to whoever onboards
the account (the queue consumer, or the inline backfill's workers): one call per account, spread
over the run instead of thousands of calls inside the one invocation that lists the accounts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from onboarding.settings import Settings

MAX_OU_DEPTH = 5  # Organizations allows OUs five levels deep below the root
ACCOUNTS_REASON = "excluded by EXCLUDED_ACCOUNTS"


def ou_reason(ou: str) -> str:
    return f"excluded by EXCLUDED_OUS ({ou})"


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

    def listing(self, orgs: Any) -> Callable[[str], str | None]:
        """For a walk through the whole organization: account id → the EXCLUDED_ACCOUNTS or
        EXCLUDED_OUS reason, or None. The OUs are resolved once, in bulk (`excluded_by_ou`);
        the tag is left to whoever onboards the account."""
        under_ou = self.excluded_by_ou(orgs) if self.ous else {}

        def reason(account_id: str) -> str | None:
            if account_id in self.accounts:
                return ACCOUNTS_REASON
            if account_id in under_ou:
                return ou_reason(under_ou[account_id])
            return None

        return reason

    def excluded_by_ou(self, orgs: Any) -> dict[str, str]:
        """Every account below an excluded OU (at any depth) → the excluded OU it is under."""
        found: dict[str, str] = {}
        for top in sorted(self.ous):
            pending = [top]
            while pending:
                ou = pending.pop()
                for page in orgs.get_paginator("list_accounts_for_parent").paginate(ParentId=ou):
                    for account in page.get("Accounts", []):
                        found.setdefault(account["Id"], top)
                for page in orgs.get_paginator("list_organizational_units_for_parent").paginate(
                    ParentId=ou
                ):
                    pending.extend(child["Id"] for child in page.get("OrganizationalUnits", []))
        return found
