"""Relay configuration: read once from the environment into a typed, frozen object.

Nothing else in the package reads ``os.environ``. Every problem is reported with the name of the
variable at fault, on the first invocation of a fresh execution environment (cold start).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from relay.errors import ConfigurationError

# arn:<partition>:kinesis:<region>:<account>:stream/<name>
_STREAM_ARN = re.compile(
    r"\Aarn:(?P<partition>aws[a-z-]*):kinesis:(?P<region>[a-z]{2}(-[a-z]+)+-[0-9]):"
    r"(?P<account>[0-9]{12}):stream/(?P<name>[A-Za-z0-9_.-]{1,128})\Z",
    re.ASCII,
)
# S3 bucket naming rules (general purpose buckets): 3-63 chars, lowercase, digits, dots, hyphens.
_BUCKET = re.compile(r"\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z", re.ASCII)

# 0: no count bound, failed entries are sent again until the invocation's time budget is spent
# (an outage is ridden out by the mapping's retries, see docs/relay.md); a positive value caps
# the sends per record.
DEFAULT_MAX_ATTEMPTS = 0
DEFAULT_BACKOFF_BASE_MS = 100
DEFAULT_BACKOFF_MAX_MS = 3_000
DEFAULT_TIME_MARGIN_MS = 5_000

# PutRecords limits as AWS documents them: 1 MiB per record (data and partition key) and 5 MiB per
# request by default; a destination stream configured for large records (MaxRecordSizeInKiB, up to
# 10 MiB) accepts records and requests up to 10 MiB.
MiB = 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 1 * MiB
DEFAULT_MAX_REQUEST_BYTES = 5 * MiB
LARGEST_RECORD_OR_REQUEST_BYTES = 10 * MiB


@dataclass(frozen=True)
class Settings:
    """Everything the relay is configured with; built by :meth:`from_env`."""

    destination_stream_arn: str
    destination_stream_name: str
    destination_region: str
    partition: str
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_base_ms: int = DEFAULT_BACKOFF_BASE_MS
    backoff_max_ms: int = DEFAULT_BACKOFF_MAX_MS
    time_margin_ms: int = DEFAULT_TIME_MARGIN_MS
    oversize_bucket: str | None = None
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the relay's variables; raise ConfigurationError naming the culprit."""
        env = os.environ if environ is None else environ
        arn = env.get("DESTINATION_STREAM_ARN", "").strip()
        if not arn:
            raise ConfigurationError("DESTINATION_STREAM_ARN", "is required and not set")
        match = _STREAM_ARN.match(arn)
        if match is None:
            raise ConfigurationError(
                "DESTINATION_STREAM_ARN",
                f"{arn!r} is not a Kinesis stream ARN "
                "(arn:<partition>:kinesis:<region>:<account>:stream/<name>)",
            )
        base = _int(env, "RELAY_BACKOFF_BASE_MS", DEFAULT_BACKOFF_BASE_MS, minimum=1)
        ceiling = _int(env, "RELAY_BACKOFF_MAX_MS", DEFAULT_BACKOFF_MAX_MS, minimum=1)
        if ceiling < base:
            raise ConfigurationError(
                "RELAY_BACKOFF_MAX_MS", f"{ceiling} is below RELAY_BACKOFF_BASE_MS ({base})"
            )
        record_bytes, request_bytes = _size_limits(env)
        return cls(
            destination_stream_arn=arn,
            destination_stream_name=match["name"],
            destination_region=match["region"],
            partition=match["partition"],
            max_attempts=_int(env, "RELAY_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, minimum=0),
            backoff_base_ms=base,
            backoff_max_ms=ceiling,
            time_margin_ms=_int(env, "RELAY_TIME_MARGIN_MS", DEFAULT_TIME_MARGIN_MS, minimum=0),
            oversize_bucket=_bucket(env),
            max_record_bytes=record_bytes,
            max_request_bytes=request_bytes,
        )


def _size_limits(env: Mapping[str, str]) -> tuple[int, int]:
    """RELAY_MAX_RECORD_BYTES and RELAY_MAX_REQUEST_BYTES: what the destination accepts."""
    record = _int(env, "RELAY_MAX_RECORD_BYTES", DEFAULT_MAX_RECORD_BYTES, minimum=1)
    request = _int(env, "RELAY_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES, minimum=1)
    for name, value in (("RELAY_MAX_RECORD_BYTES", record), ("RELAY_MAX_REQUEST_BYTES", request)):
        if value > LARGEST_RECORD_OR_REQUEST_BYTES:
            raise ConfigurationError(
                name,
                f"{value} is above the {LARGEST_RECORD_OR_REQUEST_BYTES} bytes (10 MiB) Kinesis "
                "accepts at most",
            )
    if request < record:
        raise ConfigurationError(
            "RELAY_MAX_REQUEST_BYTES", f"{request} is below RELAY_MAX_RECORD_BYTES ({record})"
        )
    return record, request


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(name, f"{raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigurationError(name, f"{value} is below the minimum of {minimum}")
    return value


def _bucket(env: Mapping[str, str]) -> str | None:
    raw = env.get("OVERSIZE_BUCKET", "").strip()
    if not raw:
        return None
    if _BUCKET.match(raw) is None or ".." in raw:
        raise ConfigurationError("OVERSIZE_BUCKET", f"{raw!r} is not a valid S3 bucket name")
    return raw
