"""The one tag that marks what watershed created in a member account.

The forwarder role, the forwarding rule and (only when watershed created it) the GuardDuty
detector carry `managed-by=watershed`. Removal (`watershed remove`, an exclusion) deletes only
what carries it, and the reconcile adds it to a role or rule of an older deployment that lacks it.
A detector that existed before watershed is never tagged, so it is never deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MANAGED_TAG_KEY = "managed-by"
MANAGED_TAG_VALUE = "watershed"
MANAGED_TAG_TEXT = f"{MANAGED_TAG_KEY}={MANAGED_TAG_VALUE}"


def tag_list() -> list[dict[str, str]]:
    """The tag in IAM's and EventBridge's form (`[{"Key": ..., "Value": ...}]`)."""
    return [{"Key": MANAGED_TAG_KEY, "Value": MANAGED_TAG_VALUE}]


def tag_map() -> dict[str, str]:
    """The tag in GuardDuty's form (`{key: value}`)."""
    return {MANAGED_TAG_KEY: MANAGED_TAG_VALUE}


def is_managed(tags: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None) -> bool:
    """True if `tags` (a GuardDuty map or an IAM/EventBridge list) carries the watershed tag."""
    if not tags:
        return False
    if isinstance(tags, Mapping):
        return tags.get(MANAGED_TAG_KEY) == MANAGED_TAG_VALUE
    return any(
        t.get("Key") == MANAGED_TAG_KEY and t.get("Value") == MANAGED_TAG_VALUE for t in tags
    )
