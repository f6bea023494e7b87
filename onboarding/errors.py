"""The onboarding exception hierarchy and the one place that classifies AWS errors.

Every error raised on purpose derives from `WatershedError`. Failures inside a step carry
whether they are *retryable* (the account or region is not ready yet, throttling beyond the
SDK's own retries) or *permanent*, because the work queue treats the two differently.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

# Codes that mean "still being set up / try again later", not "this can never work".
RETRYABLE_CODES = frozenset(
    {
        "SubscriptionRequiredException",
        "OptInRequired",
        "RegionDisabledException",
        "InvalidClientTokenId",  # fresh credentials not yet valid in an opt-in region
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "ConcurrentModificationException",
        "ConcurrentModification",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerErrorException",
        "InternalException",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure"}
)


class WatershedError(Exception):
    """Base of every error watershed raises on purpose."""


class ConfigError(WatershedError):
    """A setting is missing or malformed; the message names the environment variable."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class InvalidRequest(WatershedError):
    """A manual request is malformed; refused before any AWS call. Names the offending value."""


class AccountRefused(WatershedError):
    """The account is not an ACTIVE member of this organization; nothing is written."""

    def __init__(self, account_id: str, reason: str) -> None:
        super().__init__(f"{account_id}: {reason}")
        self.account_id = account_id
        self.reason = reason


class StepFailed(WatershedError):
    """One step (assume-role, iam, regions, guardduty, forwarding) failed for an account/region."""

    retryable: bool = False

    def __init__(
        self, account_id: str, region: str | None, step: str, code: str, message: str = ""
    ) -> None:
        where = f"{account_id}/{region}" if region else account_id
        super().__init__(f"{where} {step}: {code}{': ' + message if message else ''}")
        self.account_id = account_id
        self.region = region
        self.step = step
        self.code = code
        self.message = message


class RetryableStepFailed(StepFailed):
    """The account or region is not ready yet (or throttled): retry later, only this part."""

    retryable = True


class PermanentStepFailed(StepFailed):
    """Retrying will not help without a change (permissions, configuration, bad input)."""

    retryable = False


def error_code(err: BaseException) -> str:
    """The AWS error code of a ClientError, else the exception's class name."""
    if isinstance(err, ClientError):
        return str(err.response.get("Error", {}).get("Code") or "ClientError")
    return type(err).__name__


def error_message(err: BaseException) -> str:
    if isinstance(err, ClientError):
        return str(err.response.get("Error", {}).get("Message") or "")
    return str(err)


def is_scp_denial(err: BaseException) -> bool:
    """An explicit deny from a service control policy (e.g. Control Tower's region deny)."""
    if not isinstance(err, ClientError) or error_code(err) not in ACCESS_DENIED_CODES:
        return False
    return "service control policy" in error_message(err).lower()


def is_retryable(err: BaseException, step: str = "") -> bool:
    """Whether an error means "not ready yet": worth retrying later for this region only."""
    if isinstance(err, BotoCoreError):  # connection errors, endpoint timeouts
        return True
    code = error_code(err)
    if code in RETRYABLE_CODES:
        return True
    message = error_message(err).lower()
    if step == "assume-role" and code in ACCESS_DENIED_CODES:
        return True  # a freshly created account's admin role is not assumable for a while
    # IAM propagation: PutTargets names a role that the events service cannot see yet.
    return (
        step == "forwarding"
        and code in {"ValidationException", *ACCESS_DENIED_CODES}
        and ("role" in message)
    )


def step_failed(err: BaseException, account_id: str, region: str | None, step: str) -> StepFailed:
    """Wrap an AWS error in the right StepFailed subclass (chain it with `from err`)."""
    cls = RetryableStepFailed if is_retryable(err, step) else PermanentStepFailed
    return cls(account_id, region, step, error_code(err), error_message(err))
