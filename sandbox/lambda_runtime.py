"""Runs a deployed function's handler in this process, the way the Lambda runtime would.

What a function sees, as in Lambda: its environment variables from the deployed configuration
plus the ones Lambda sets (region, function name, memory, the execution role's temporary
credentials), set only for the duration of the call; a context object with
`get_remaining_time_in_millis`; stdout/stderr captured as the function's log. Each function is
its own "container": its modules are imported once (a cold start) and kept apart from other
functions' and from the sandbox's own imports, so settings read at cold start belong to it.

What it cannot do: enforce the timeout (a call that runs over is reported as timed out after it
returns), limit memory, or apply the execution role's IAM policy — the credentials put calls in
the right account, and moto does not evaluate what they allow.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3

from sandbox.embedded import EmbeddedAws


@dataclass(frozen=True)
class FunctionSpec:
    """What Lambda knows about a deployed function (read back from moto Lambda)."""

    account_id: str
    region: str
    name: str
    arn: str
    handler: str
    role_arn: str
    environment: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: int = 3
    memory_mb: int = 128


class LambdaContext:
    """The context object a Python handler receives."""

    def __init__(self, function: FunctionSpec, deadline: float, clock: Callable[[], float]) -> None:
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = function.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function.name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self.identity = None
        self.client_context = None
        self._deadline = deadline
        self._clock = clock

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._clock()) * 1000))


@dataclass
class Invocation:
    """One call of a handler: what it returned or raised, and how long it took."""

    function: FunctionSpec
    request_id: str
    result: Any = None
    error: str | None = None
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class _LogStream(io.TextIOBase):
    """A function's stdout/stderr: lines kept in order, as CloudWatch Logs would keep them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            *complete, self._partial = (self._partial + text).split("\n")
            self.lines.extend(complete)
        return len(text)


class _CurrentLog(io.TextIOBase):
    """The one stdout/stderr every function runs with: it writes to the log of the function
    being invoked. `logging` handlers are process-wide and bind the sys.stdout of the moment
    they are created (Powertools' Logger at a cold start): bound to this object, a later
    container's (or a later runtime's) lines still reach that container's log."""

    def __init__(self) -> None:
        self.target: io.TextIOBase | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        target = self.target if self.target is not None else sys.__stdout__
        return target.write(text) if target is not None else len(text)

    @contextlib.contextmanager
    def to(self, log: io.TextIOBase) -> Iterator[None]:
        saved, self.target = self.target, log
        try:
            with contextlib.redirect_stdout(self), contextlib.redirect_stderr(self):
                yield
        finally:
            self.target = saved


_CURRENT_LOG = _CurrentLog()


class _Container:
    """One function's modules and log, kept between invocations like a warm Lambda container."""

    def __init__(self) -> None:
        self.modules: dict[str, Any] = {}
        self.log = _LogStream()
        self.invocations = 0


class LambdaRuntime:
    """Invokes handlers in-process with their function's environment, credentials and context."""

    def __init__(self, aws: EmbeddedAws, clock: Callable[[], float] = time.monotonic) -> None:
        self._aws = aws
        self._clock = clock
        self._containers: dict[str, _Container] = {}
        self._credentials: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def log(self, function: FunctionSpec) -> list[str]:
        """Everything the function wrote so far."""
        container = self._containers.get(function.arn)
        return list(container.log.lines) if container else []

    def module(self, function: FunctionSpec, name: str) -> Any:
        """The function's own copy of module `name` (its container's), e.g. to inspect its state."""
        container = self._containers.get(function.arn)
        if container is None or name not in container.modules:
            raise KeyError(f"{name} was not imported by {function.name}")
        return container.modules[name]

    def invocations(self, function: FunctionSpec) -> int:
        container = self._containers.get(function.arn)
        return container.invocations if container else 0

    def invoke(self, function: FunctionSpec, event: Any) -> Invocation:
        """Call the function's handler with `event`, as one synchronous Lambda invocation."""
        with self._lock:  # one process environment: one invocation at a time
            container = self._containers.setdefault(function.arn, _Container())
            container.invocations += 1
            started = self._clock()
            context = LambdaContext(function, started + function.timeout_seconds, self._clock)
            invocation = Invocation(function, context.aws_request_id)
            with (
                self._environment(function),
                self._modules(function, container),
                _CURRENT_LOG.to(container.log),
            ):
                try:
                    handler = self._handler(function.handler)
                    invocation.result = handler(event, context)
                except Exception as err:  # what Lambda reports as a function error
                    invocation.error = f"{type(err).__name__}: {err}"
                    container.log.write(traceback.format_exc())
            invocation.duration_seconds = self._clock() - started
            if invocation.ok and invocation.duration_seconds > function.timeout_seconds:
                invocation.error = (
                    f"Task timed out after {function.timeout_seconds:.2f} seconds "
                    f"(ran {invocation.duration_seconds:.2f} s; the sandbox cannot stop it)"
                )
            return invocation

    @staticmethod
    def _handler(path: str) -> Callable[[Any, Any], Any]:
        module_name, _, attribute = path.rpartition(".")
        if not module_name:
            raise ImportError(f"handler {path!r} is not module.function")
        return getattr(importlib.import_module(module_name), attribute)

    def _role_credentials(self, function: FunctionSpec) -> dict[str, str]:
        if function.role_arn not in self._credentials:
            # Lambda names the role session after the function (STS wants 2..64 characters)
            session = self._aws.assume(function.role_arn, function.name[:64].ljust(2, "_"))
            frozen = session.get_credentials().get_frozen_credentials()
            self._credentials[function.role_arn] = {
                "AWS_ACCESS_KEY_ID": frozen.access_key,
                "AWS_SECRET_ACCESS_KEY": frozen.secret_key,
                "AWS_SESSION_TOKEN": frozen.token or "",
            }
        return self._credentials[function.role_arn]

    @contextlib.contextmanager
    def _environment(self, function: FunctionSpec) -> Iterator[None]:
        credentials = self._role_credentials(function)
        saved = dict(os.environ)
        saved_session = boto3.DEFAULT_SESSION
        os.environ.update(
            {
                **{key: str(value) for key, value in function.environment.items()},
                **credentials,
                "AWS_REGION": function.region,
                "AWS_DEFAULT_REGION": function.region,
                "AWS_LAMBDA_FUNCTION_NAME": function.name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
                "_HANDLER": function.handler,
            }
        )
        boto3.DEFAULT_SESSION = None  # a default session built now uses the role's credentials
        try:
            yield
        finally:
            boto3.DEFAULT_SESSION = saved_session
            os.environ.clear()
            os.environ.update(saved)

    @contextlib.contextmanager
    def _modules(self, function: FunctionSpec, container: _Container) -> Iterator[None]:
        package = function.handler.split(".", 1)[0]

        def belongs(name: str) -> bool:
            return name == package or name.startswith(package + ".")

        outside = {name: sys.modules.pop(name) for name in list(sys.modules) if belongs(name)}
        sys.modules.update(container.modules)
        try:
            yield
        finally:
            container.modules = {
                name: sys.modules.pop(name) for name in list(sys.modules) if belongs(name)
            }
            sys.modules.update(outside)
