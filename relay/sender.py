"""Deliver records to the destination stream with as few PutRecords calls as the limits allow.

Only the entries that failed are sent again, after a jittered exponential backoff, while the
invocation's time budget lasts. Whatever is still undelivered is returned to the caller, who
hands it back to Lambda: this module never drops a record.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from relay.events import SourceRecord
from relay.settings import DEFAULT_MAX_REQUEST_BYTES
from relay.telemetry import logger

MAX_RECORDS_PER_REQUEST = 500
# Data and partition keys of every record in the call: a standard destination's limit by
# default; RELAY_MAX_REQUEST_BYTES raises it for a stream configured for large records.
MAX_BYTES_PER_REQUEST = DEFAULT_MAX_REQUEST_BYTES

# Whole-call errors worth another try in this invocation: throttling of the call itself and
# service-side trouble. Anything else (ResourceNotFoundException, AccessDeniedException, KMS
# access problems, InvalidArgumentException, ...) will not heal within seconds.
_TRANSIENT_CALL_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "KMSThrottlingException",
        "InternalFailure",
        "InternalFailureException",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)


def pack(
    records: Sequence[SourceRecord],
    max_records: int = MAX_RECORDS_PER_REQUEST,
    max_bytes: int = MAX_BYTES_PER_REQUEST,
) -> list[list[SourceRecord]]:
    """Group records into as few PutRecords requests as the count and size limits allow.

    First fit in batch order: each record goes into the first request that still has room for it,
    but never into a request before the one that holds the previous record with the same
    partition key, so that records of one key keep their order when nothing fails. Every record
    must be at most ``max_bytes``; oversize records are the caller's to set aside.
    """
    requests: list[list[SourceRecord]] = []
    room: list[int] = []  # bytes still free in each request
    first_open = 0  # requests before this one are full by count
    last_request_of_key: dict[str, int] = {}
    for record in records:
        start = max(first_open, last_request_of_key.get(record.partition_key, 0))
        target = next(
            (
                i
                for i in range(start, len(requests))
                if len(requests[i]) < max_records and room[i] >= record.size
            ),
            None,
        )
        if target is None:
            target = len(requests)
            requests.append([])
            room.append(max_bytes)
        requests[target].append(record)
        room[target] -= record.size
        last_request_of_key[record.partition_key] = target
        while first_open < len(requests) and len(requests[first_open]) >= max_records:
            first_open += 1
    return requests


def packing_floor(
    records: Sequence[SourceRecord],
    max_records: int = MAX_RECORDS_PER_REQUEST,
    max_bytes: int = MAX_BYTES_PER_REQUEST,
) -> int:
    """The fewest PutRecords calls any packing could need: a lower bound from count and bytes."""
    if not records:
        return 0
    total = sum(record.size for record in records)
    return max(-(-len(records) // max_records), -(-total // max_bytes))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently failed entries are sent again."""

    max_attempts: int  # sends per record; 0: as many as the time budget allows
    base_ms: int
    max_ms: int

    def delay_ms(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Full jitter: a random wait up to base * 2^(attempt-1), capped at max_ms."""
        ceiling = min(self.max_ms, self.base_ms * 2 ** (attempt - 1))
        return rng() * ceiling


class TimeBudget:
    """The invocation's remaining time, less a safety margin kept free for finishing up."""

    def __init__(self, remaining_ms: Callable[[], int], margin_ms: int) -> None:
        self._remaining_ms = remaining_ms
        self.margin_ms = margin_ms

    def allows(self, extra_ms: float = 0) -> bool:
        """True if ``extra_ms`` more can be spent and the margin is still left afterwards."""
        return self._remaining_ms() - self.margin_ms - extra_ms > 0


@dataclass
class SendReport:
    """What one :meth:`Sender.send` achieved."""

    delivered: int = 0
    delivered_bytes: int = 0
    retried: int = 0  # entries sent again after a failure
    calls: int = 0
    undelivered: list[SourceRecord] = field(default_factory=list)
    error_codes: Counter[str] = field(default_factory=Counter)
    stopped_by: str | None = None  # why records are left: "time", "attempts" or an error code


class Sender:
    """Sends records to one stream; the client is injected so tests can substitute it."""

    def __init__(
        self,
        client: Any,
        stream_arn: str,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        max_request_bytes: int = MAX_BYTES_PER_REQUEST,
    ) -> None:
        self._client = client
        self._stream_arn = stream_arn
        self._policy = policy
        self._max_request_bytes = max_request_bytes
        self._sleep = sleep
        self._rng = rng

    def send(self, records: Sequence[SourceRecord], budget: TimeBudget) -> SendReport:
        """Deliver what can be delivered; report the rest in ``undelivered``, never drop it."""
        report = SendReport()
        pending = list(records)
        attempt = 0
        while pending:
            attempt += 1
            pending = self._round(pending, attempt, budget, report)
            if not pending or report.stopped_by is not None:
                break
            if self._policy.max_attempts and attempt >= self._policy.max_attempts:
                report.stopped_by = "attempts"
                break
            delay = self._policy.delay_ms(attempt, self._rng)
            if not budget.allows(delay):
                report.stopped_by = "time"
                break
            self._sleep(delay / 1000)
        report.undelivered.extend(pending)
        return report

    def _round(
        self,
        pending: list[SourceRecord],
        attempt: int,
        budget: TimeBudget,
        report: SendReport,
    ) -> list[SourceRecord]:
        """Send every pending record once; return those that failed or were not sent."""
        failed: list[SourceRecord] = []
        requests = pack(pending, max_bytes=self._max_request_bytes)
        for index, request in enumerate(requests):
            if not budget.allows():
                report.stopped_by = "time"
                failed.extend(_flatten(requests[index:]))
                break
            if attempt > 1:
                report.retried += len(request)
            report.calls += 1
            try:
                response = self._client.put_records(
                    StreamARN=self._stream_arn,
                    Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in request],
                )
            except (ClientError, BotoCoreError) as err:
                code, transient = _classify(err)
                report.error_codes[code] += len(request)
                logger.error(
                    "PutRecords to the destination stream failed as a whole",
                    extra={
                        "destination_stream": self._stream_arn,
                        "error_code": code,
                        "records": len(request),
                        "attempt": attempt,
                        "retryable": transient,
                    },
                )
                failed.extend(request)
                if not transient:
                    report.stopped_by = code
                    failed.extend(_flatten(requests[index + 1 :]))
                    break
                continue
            failed.extend(self._failed_entries(request, response, report))
        return failed

    @staticmethod
    def _failed_entries(
        request: list[SourceRecord], response: dict[str, Any], report: SendReport
    ) -> list[SourceRecord]:
        if not response.get("FailedRecordCount"):
            report.delivered += len(request)
            report.delivered_bytes += sum(r.size for r in request)
            return []
        # Entries come back in request order; only failed ones carry an ErrorCode. Every failed
        # entry is sent again: the documented codes (ProvisionedThroughputExceededException,
        # InternalFailure) are both transient, and an unknown one costs at most the bounded
        # attempts before it is handed back to Lambda anyway.
        failed = []
        for record, entry in zip(request, response["Records"], strict=True):
            code = entry.get("ErrorCode")
            if code:
                report.error_codes[code] += 1
                failed.append(record)
            else:
                report.delivered += 1
                report.delivered_bytes += record.size
        return failed


def error_code(err: ClientError | BotoCoreError) -> str:
    """The AWS error code of a ClientError, or the exception's name for a botocore error."""
    if isinstance(err, ClientError):
        return err.response.get("Error", {}).get("Code", "Unknown")
    return type(err).__name__


def _classify(err: ClientError | BotoCoreError) -> tuple[str, bool]:
    """(error code, whether another try in this invocation may succeed)."""
    code = error_code(err)
    if isinstance(err, ClientError):
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code, code in _TRANSIENT_CALL_ERRORS or status >= 500
    return code, isinstance(err, BotoConnectionError | HTTPClientError)


def _flatten(requests: Iterable[list[SourceRecord]]) -> list[SourceRecord]:
    return [record for request in requests for record in request]
