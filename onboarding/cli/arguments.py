"""What the operator commands share: parsing account and region arguments, and their exit codes.

Every command refuses a bad argument before any AWS call, with the same words and exit code 2.
"""

from __future__ import annotations

import sys

from onboarding.errors import ConfigError, InvalidRequest
from onboarding.events import validate_regions
from onboarding.settings import ACCOUNT_ID, Settings

EXIT_OK, EXIT_NOT_OK, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


def account_ids(values: list[str]) -> list[str]:
    """`111122223333 444455556666` or `111122223333,444455556666`: 12 ASCII digits each."""
    accounts = [a.strip() for value in values for a in value.split(",") if a.strip()]
    for account in accounts:
        if not ACCOUNT_ID.fullmatch(account):
            raise InvalidRequest(f"account id {account!r} is not 12 digits")
    return accounts


def region_subset(value: str, settings: Settings) -> tuple[str, ...]:
    """`eu-west-1,us-east-1`: hub regions only (events.validate_regions)."""
    return validate_regions([r.strip() for r in value.split(",") if r.strip()], settings)


def usage_error(err: ConfigError | InvalidRequest) -> int:
    """Say what is wrong with the configuration or the arguments; the exit code for it."""
    if isinstance(err, ConfigError):
        print(f"watershed: configuration error: {err}", file=sys.stderr)
    else:
        print(f"watershed: {err}", file=sys.stderr)
    return EXIT_USAGE
