"""One way into an account.

`SessionFactory.for_account(account_id)` returns an `AccountSession` whose clients all come
from that account's credentials and name their region. The chain is:

    own credentials → LAUNCHER_ROLE_ARN (if set) → the member's admin role
    (MEMBER_ROLE_NAMES, tried in order)

The management account is reached through the launcher itself, or — with no launcher — with the
function's own credentials (they are the management account's); it never assumes into itself.
STS calls go to the regional endpoint of the home region (regional tokens also work in opt-in
regions). Session names carry the account id, so CloudTrail in the member says who and why.
`AWS_ENDPOINT_URL` (e.g. a moto server) is honoured because every client is built by boto3.

A deadline (`deadline_scope`, set by the queue consumer from the Lambda context) bounds one
request: once it has passed, every call made through a factory's sessions in that scope — and in
the region threads started from it — fails at once with `DeadlineExceeded` (before the call, and
before each SDK retry attempt), a retryable error. A call already on the wire is bounded by
CLIENT_CONFIG (connect 5 s + read 20 s per attempt).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from onboarding.errors import ACCESS_DENIED_CODES, error_code, step_failed
from onboarding.settings import Settings

# One retry policy for every client: the SDK's standard mode retries throttling and transient
# errors with backoff; what still fails is classified (retryable or not) by the caller.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=5,
    read_timeout=20,
    user_agent_extra="watershed-onboarding",
)
SESSION_DURATION_SECONDS = 3600
_REFRESH_MARGIN = timedelta(minutes=10)

# (event name, handler) pairs registered on every session the factory builds, e.g.
# ("before-call", count_calls). Tests count write calls with it; the bench injects latency.
Hook = tuple[str, Callable[..., Any]]


class DeadlineExceeded(BotoCoreError):
    """The time this invocation keeps for a request is used up: the call was not made.

    A BotoCoreError, so the steps classify it like a network timeout: retryable."""

    fmt = "deadline passed: {remaining_ms} ms of the invocation left, {margin_ms} ms kept"


@dataclass(frozen=True)
class Deadline:
    """A request's share of the invocation, read from Lambda's remaining time.

    No AWS call starts once fewer than `margin_ms` are left; whoever waits for work in flight
    (the region threads) stops waiting once fewer than `stop_waiting_ms` are left."""

    remaining_ms: Callable[[], int]  # e.g. LambdaContext.get_remaining_time_in_millis
    margin_ms: int
    stop_waiting_ms: int

    def passed(self) -> bool:
        return self.remaining_ms() < self.margin_ms

    def stop_waiting(self) -> bool:
        return self.remaining_ms() < self.stop_waiting_ms


_DEADLINE: ContextVar[Deadline | None] = ContextVar("watershed_deadline", default=None)


@contextmanager
def deadline_scope(deadline: Deadline | None) -> Iterator[None]:
    """Bound the calls made in this context (and contexts copied from it) by `deadline`."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> Deadline | None:
    return _DEADLINE.get()


def _check_deadline(**_: Any) -> None:
    """A botocore hook (before-call, before-send): refuse to start a call past the deadline."""
    deadline = _DEADLINE.get()
    if deadline is not None:
        remaining = deadline.remaining_ms()
        if remaining < deadline.margin_ms:
            raise DeadlineExceeded(remaining_ms=remaining, margin_ms=deadline.margin_ms)


# Registered first on every session: before-call stops a call before it starts, before-send
# stops each further SDK retry attempt of a call that started before the deadline.
_DEADLINE_HOOKS: tuple[Hook, ...] = (
    ("before-call", _check_deadline),
    ("before-send", _check_deadline),
)


@cache
def _shared_loader() -> botocore.loaders.Loader:
    """Every new session would otherwise parse the service models again (EC2's is megabytes of
    JSON, ~0.25 s): one loader per process. It holds only botocore's static model data."""
    return botocore.loaders.create_loader()


class AccountSession:
    """Clients for one account. Client creation is locked: boto3 sessions are not thread-safe."""

    def __init__(
        self, account_id: str, session: boto3.Session, via: str, config: Config = CLIENT_CONFIG
    ) -> None:
        self.account_id = account_id
        self.session = session
        self.via = via  # how we got in, for the log: "own credentials", "launcher", role name
        self._config = config
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], BaseClient] = {}

    def client(self, service: str, region: str) -> Any:
        """A client for `service` in `region` (cached; clients themselves are thread-safe)."""
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self.session.client(
                    service, region_name=region, config=self._config
                )
            return self._clients[key]

    def __repr__(self) -> str:
        return f"AccountSession({self.account_id} via {self.via})"


class SessionFactory:
    """Builds `AccountSession`s. Pass one in everywhere so tests and benches can substitute it."""

    def __init__(
        self,
        settings: Settings,
        base_session: boto3.Session | None = None,
        hooks: Sequence[Hook] = (),
        config: Config = CLIENT_CONFIG,
    ) -> None:
        self.settings = settings
        self._hooks = (*_DEADLINE_HOOKS, *hooks)
        self._config = config
        self._loader = _shared_loader()
        if base_session is None:
            self._base = self._new_session()
        else:
            self._base = base_session
            for event, handler in self._hooks:
                base_session.events.register(event, handler)
        self._own = AccountSession(
            settings.management_account_id, self._base, "own credentials", config
        )
        self._lock = threading.Lock()
        self._launcher: AccountSession | None = None
        self._launcher_expires: datetime | None = None

    # Public -------------------------------------------------------------------------------

    def own(self) -> AccountSession:
        """The function's own credentials (the account it runs in): for its own work queue."""
        return self._own

    def management(self) -> AccountSession:
        """The management account: the launcher role, or the function's own credentials."""
        if not self.settings.launcher_role_arn:
            return self._own
        with self._lock:
            now = datetime.now(UTC)
            if self._launcher is None or (
                self._launcher_expires and self._launcher_expires - now < _REFRESH_MARGIN
            ):
                session, expires = self._assume(
                    self._own,
                    self.settings.launcher_role_arn,
                    f"watershed-launcher-{self.settings.management_account_id}",
                )
                self._launcher = AccountSession(
                    self.settings.management_account_id, session, "launcher", self._config
                )
                self._launcher_expires = expires
            return self._launcher

    def for_account(self, account_id: str) -> AccountSession:
        """A session inside `account_id`. Raises StepFailed(step="assume-role") if no role works."""
        management = self.management_or_fail(account_id)
        if account_id == self.settings.management_account_id:
            return management
        partition = self.settings.partition()
        last_error: BaseException | None = None
        for role_name in self.settings.member_role_names:
            role_arn = f"arn:{partition}:iam::{account_id}:role/{role_name}"
            try:
                session, _ = self._assume(management, role_arn, f"watershed-{account_id}")
            except ClientError as err:
                if error_code(err) in ACCESS_DENIED_CODES:
                    last_error = err  # this role does not exist or does not trust us: next one
                    continue
                raise step_failed(err, account_id, None, "assume-role") from err
            except BotoCoreError as err:
                raise step_failed(err, account_id, None, "assume-role") from err
            return AccountSession(account_id, session, role_name, self._config)
        assert last_error is not None  # member_role_names is never empty
        raise step_failed(last_error, account_id, None, "assume-role") from last_error

    def management_or_fail(self, account_id: str) -> AccountSession:
        try:
            return self.management()
        except (ClientError, BotoCoreError) as err:
            raise step_failed(err, account_id, None, "assume-launcher") from err

    # Internals ----------------------------------------------------------------------------

    def _new_session(self, **credentials: str) -> boto3.Session:
        core = botocore.session.get_session()
        core.register_component("data_loader", self._loader)
        session = boto3.Session(
            botocore_session=core, region_name=self.settings.home_region, **credentials
        )
        for event, handler in self._hooks:
            session.events.register(event, handler)
        return session

    def _assume(
        self, parent: AccountSession, role_arn: str, session_name: str
    ) -> tuple[boto3.Session, datetime | None]:
        # The parent's own STS client, kept with its other clients: one per launcher session
        # (or the function's own credentials), not a new one for every account.
        sts = parent.client("sts", self.settings.home_region)
        credentials = sts.assume_role(
            RoleArn=role_arn,
            RoleSessionName=session_name[:64],
            DurationSeconds=SESSION_DURATION_SECONDS,
        )["Credentials"]
        session = self._new_session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
        expires = credentials.get("Expiration")
        return session, expires if isinstance(expires, datetime) else None
