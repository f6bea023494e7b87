"""Membership: is the account an ACTIVE member of this organization? (management-side reads)

DescribeAccount is shared by the whole organization (20 req/s); bulk callers should take
membership from `list_active_accounts` pages instead (ListAccounts, 20 accounts a page).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from onboarding.errors import AccountRefused, error_code


def account_state(account: dict[str, Any]) -> str | None:
    # `State` is the newer field (ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED); `Status` the older.
    return account.get("State") or account.get("Status")


def _is_active(account: dict[str, Any]) -> bool:
    return account_state(account) == "ACTIVE"


def check_active_member(organizations: Any, account_id: str) -> dict[str, Any]:
    """Return the account's description, or raise AccountRefused with the reason."""
    try:
        account = organizations.describe_account(AccountId=account_id)["Account"]
    except ClientError as err:
        if error_code(err) == "AccountNotFoundException":
            raise AccountRefused(account_id, "not a member of this organization") from err
        raise
    if not _is_active(account):
        state = account_state(account)
        raise AccountRefused(account_id, f"account is {state}, not ACTIVE")
    return account


def list_active_accounts(organizations: Any) -> Iterator[str]:
    """Every ACTIVE account id of the organization, page by page."""
    for page in organizations.get_paginator("list_accounts").paginate():
        for account in page.get("Accounts", []):
            if _is_active(account):
                yield account["Id"]


def list_active_members(organizations: Any) -> Iterator[dict[str, Any]]:
    """Every ACTIVE account of the organization as ListAccounts describes it (Id, Name, ...)."""
    for page in organizations.get_paginator("list_accounts").paginate():
        yield from (account for account in page.get("Accounts", []) if _is_active(account))


def organization_id_from_arn(account_arn: str) -> str | None:
    """`o-xxxx` of an account ARN (arn:<partition>:organizations::<mgmt>:account/o-xxxx/<id>)."""
    resource = account_arn.split(":", 5)[-1]
    parts = resource.split("/")
    if len(parts) == 3 and parts[0] == "account" and parts[1].startswith("o-"):
        return parts[1]
    return None
