"""AWS clients for the relay, built on first use and never at import time."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config

# The relay's own retry loop (sender.py) owns the backoff for failed entries; botocore only
# smooths over one throttled or dropped call. Short timeouts keep a hung call from eating the
# invocation; one that still outlasts RELAY_TIME_MARGIN_MS ends in a Lambda timeout, after which
# the whole batch is retried: duplicates, never loss.
CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "total_max_attempts": 2},
    tcp_keepalive=True,
    user_agent_extra="watershed-relay",
)


class Clients:
    """Lazily built clients from one session; the Kinesis client names the destination's region."""

    def __init__(self, destination_region: str, session: boto3.Session | None = None) -> None:
        self._destination_region = destination_region
        self._session = session
        self._s3: dict[str, Any] = {}

    @cached_property
    def session(self) -> boto3.Session:
        """The injected session, or one built from the function's own credentials."""
        return self._session or boto3.Session()

    @cached_property
    def kinesis(self) -> Any:
        """Kinesis in the destination stream's region (taken from its ARN)."""
        return self.session.client(
            "kinesis", region_name=self._destination_region, config=CLIENT_CONFIG
        )

    def s3(self, region: str) -> Any:
        """S3 in ``region``: the oversize bucket lives beside the source stream, like the relay."""
        if region not in self._s3:
            self._s3[region] = self.session.client("s3", region_name=region, config=CLIENT_CONFIG)
        return self._s3[region]
