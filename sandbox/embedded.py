"""The embedded AWS: moto in this process, with the sandbox's changes (sandbox.shims) applied.

Everything the sandbox and the handlers it runs call goes to moto: the environment is
scrubbed of profiles and endpoints and carries fake credentials for as long as the sandbox is
open, and restored afterwards. By default botocore's requests are intercepted in-process
(`mock_aws`); with `server=True` the same moto backends are served on a local HTTP endpoint
(moto's ThreadedMotoServer on 127.0.0.1, a free port) and AWS_ENDPOINT_URL points every client
at it — so other tools (the aws CLI, `watershed plan`) can look at the sandbox while it is open.

Accounts are reached the way AWS reaches them, with AssumeRole from the management account
(moto's default account, the one that creates the organization); `MOTO_ACCOUNT_ID` is never
set, since it would override assumed credentials.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

import boto3

from sandbox import shims
from sandbox.journal import Journal

# Variables that could send a call somewhere other than the embedded AWS, or change its accounts.
SCRUBBED_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "MOTO_ACCOUNT_ID",
)
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@contextlib.contextmanager
def _shared_botocore_models() -> Iterator[None]:
    """Parse each botocore data file once per sandbox instead of once per boto3 session.

    Every assumed role is a new session, and every new session parses the service models and
    endpoint files again (~0.1 s each); onboarding a handful of accounts in several regions
    makes hundreds of sessions. botocore already shares these objects between the clients of
    one session without copying them, so sharing them between sessions is the same contract.
    A speed-up of the sandbox only: nothing of it is deployed.
    """
    from botocore.loaders import JSONFileLoader

    original = JSONFileLoader.load_file
    cache: dict[str, Any] = {}
    lock = threading.Lock()

    def load_file(self: JSONFileLoader, file_path: str) -> Any:
        with lock:
            if file_path not in cache:
                cache[file_path] = original(self, file_path)
            return cache[file_path]

    JSONFileLoader.load_file = load_file  # type: ignore[method-assign]
    try:
        yield
    finally:
        JSONFileLoader.load_file = original  # type: ignore[method-assign]


class SandboxError(Exception):
    """The sandbox could not be set up or a step of its story failed."""


class EmbeddedAws:
    """moto in-process for the duration of a `with` block, patched as sandbox.shims says."""

    def __init__(
        self,
        journal: Journal | None = None,
        strict_assume_role: bool = True,
        enforce_bus_policies: bool = True,
        server: bool = False,
    ) -> None:
        self.journal = journal or Journal()
        self._server_mode = server
        self._server: Any = None
        self.endpoint_url: str | None = None
        self._strict_assume_role = strict_assume_role
        self._enforce_bus_policies = enforce_bus_policies
        self._saved_environ: dict[str, str] | None = None
        self._mock: object | None = None
        self._patches: object | None = None
        self._sessions: dict[tuple[str, str], boto3.Session] = {}

    def __enter__(self) -> Self:
        try:
            from moto import mock_aws
            from moto.core.base_backend import BackendDict
        except ImportError as err:
            raise SandboxError(
                "the sandbox needs moto and aws-sam-translator: pip install -e '.[dev]' "
                "(make demo does it)"
            ) from err
        if self._server_mode:
            try:
                from moto.server import ThreadedMotoServer
            except ImportError as err:
                raise SandboxError("server mode needs moto[server] (flask)") from err

        self._saved_environ = dict(os.environ)
        for name in list(os.environ):
            if name in SCRUBBED_VARIABLES or name.startswith("AWS_ENDPOINT_URL_"):
                del os.environ[name]
        os.environ.update(FAKE_CREDENTIALS)
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        self._model_cache = _shared_botocore_models()
        self._model_cache.__enter__()
        if self._server_mode:
            BackendDict.reset()
            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._server.start()
            host, port = self._server.get_host_and_port()
            self.endpoint_url = f"http://{host}:{port}"
            os.environ["AWS_ENDPOINT_URL"] = self.endpoint_url
            self._mock = contextlib.nullcontext()
        else:
            self._mock = mock_aws()
        self._mock.__enter__()  # type: ignore[attr-defined]
        self._patches = shims.installed(
            self.journal,
            strict_assume_role=self._strict_assume_role,
            enforce_bus_policies=self._enforce_bus_policies,
        )
        try:
            self._patches.__enter__()  # type: ignore[attr-defined]
        except BaseException:
            self._mock.__exit__(None, None, None)  # type: ignore[attr-defined]
            self._model_cache.__exit__(None, None, None)
            self._restore_environ()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._patches.__exit__(exc_type, exc, tb)  # type: ignore[attr-defined]
        finally:
            self._mock.__exit__(exc_type, exc, tb)  # type: ignore[attr-defined]
            if self._server is not None:
                from moto.core.base_backend import BackendDict

                self._server.stop()
                self._server = None
                BackendDict.reset()
            self._model_cache.__exit__(None, None, None)
            self._restore_environ()
            self._sessions.clear()

    def _restore_environ(self) -> None:
        if self._saved_environ is not None:
            os.environ.clear()
            os.environ.update(self._saved_environ)
            self._saved_environ = None

    @property
    def management_account_id(self) -> str:
        """moto's default account: the one whose credentials the sandbox starts with."""
        from moto.core import DEFAULT_ACCOUNT_ID

        return DEFAULT_ACCOUNT_ID

    def management_session(self) -> boto3.Session:
        """The management account's own credentials (no role assumed)."""
        return boto3.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def session(
        self, account_id: str, role_name: str = "OrganizationAccountAccessRole"
    ) -> boto3.Session:
        """A session in `account_id`: the management account's own, or a role assumed from it."""
        if account_id == self.management_account_id:
            return self.management_session()
        key = (account_id, role_name)
        if key not in self._sessions:
            self._sessions[key] = self.assume(
                f"arn:aws:iam::{account_id}:role/{role_name}", f"sandbox-{account_id}"
            )
        return self._sessions[key]

    def assume(self, role_arn: str, session_name: str) -> boto3.Session:
        """Credentials for `role_arn`, assumed from the management account."""
        sts = self.management_session().client("sts", region_name="us-east-1")
        credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name[:64])[
            "Credentials"
        ]
        return boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
