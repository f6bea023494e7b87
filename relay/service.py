"""One invocation's work: guard against loops, set aside oversize records, send the rest, and
account for every record — delivered, stored as oversize, or handed back to Lambda."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from relay.clients import Clients
from relay.errors import DestinationIsSourceError
from relay.events import Batch, SourceRecord, stream_identity
from relay.oversize import store_oversize
from relay.sender import RetryPolicy, Sender, TimeBudget, error_code
from relay.settings import Settings
from relay.telemetry import logger


@dataclass(frozen=True)
class Outcome:
    """The account of one batch; ``handed_back`` are sequence numbers, lowest first."""

    received: int = 0
    relayed: int = 0
    relayed_bytes: int = 0
    retried: int = 0
    oversize_stored: int = 0
    handed_back: tuple[str, ...] = ()
    oldest_record_age_ms: float | None = None
    calls: int = 0

    def as_response(self) -> dict[str, list[dict[str, str]]]:
        """The partial batch response; Lambda restarts the shard at the lowest one listed."""
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in self.handed_back]}


class Relay:
    """Forwards batches to the configured destination stream."""

    def __init__(
        self,
        settings: Settings,
        clients: Clients | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._clients = clients or Clients(settings.destination_region)
        self._sleep = sleep
        self._clock = clock
        self._rng = rng

    @property
    def settings(self) -> Settings:
        """The configuration this relay runs with."""
        return self._settings

    def handle(self, batch: Batch, budget: TimeBudget) -> Outcome:
        """Relay one batch within the budget; never raise for a record that failed to go."""
        if not batch.records:
            return Outcome()
        destination = self._settings.destination_stream_arn
        if stream_identity(batch.source_stream_arn) == stream_identity(destination):
            raise DestinationIsSourceError(destination)

        limit = self._settings.max_record_bytes
        fitting = [r for r in batch.records if r.size <= limit]
        oversize = [r for r in batch.records if r.size > limit]
        stored, oversize_back = self._set_aside(batch, oversize, budget)

        sender = Sender(
            self._clients.kinesis,
            destination,
            RetryPolicy(
                self._settings.max_attempts,
                self._settings.backoff_base_ms,
                self._settings.backoff_max_ms,
            ),
            sleep=self._sleep,
            rng=self._rng,
            max_request_bytes=self._settings.max_request_bytes,
        )
        report = sender.send(fitting, budget)

        handed_back = sorted(report.undelivered + oversize_back, key=lambda r: r.position)
        oldest = min(r.approximate_arrival for r in batch.records)
        outcome = Outcome(
            received=len(batch.records),
            relayed=report.delivered,
            relayed_bytes=report.delivered_bytes,
            retried=report.retried,
            oversize_stored=stored,
            handed_back=tuple(r.sequence_number for r in handed_back),
            oldest_record_age_ms=max(0.0, (self._clock() - oldest) * 1000),
            calls=report.calls,
        )
        log = logger.warning if handed_back else logger.info
        log(
            "batch relayed" if not handed_back else "batch relayed in part; the rest handed back",
            extra={
                "source_stream": batch.source_stream_arn,
                "destination_stream": destination,
                "received": outcome.received,
                "relayed": outcome.relayed,
                "relayed_bytes": outcome.relayed_bytes,
                "retried": outcome.retried,
                "oversize_stored": outcome.oversize_stored,
                "oversize_handed_back": len(oversize_back),
                "handed_back": len(handed_back),
                "lowest_handed_back": outcome.handed_back[0] if handed_back else None,
                "put_records_calls": outcome.calls,
                "error_codes": dict(report.error_codes),
                "stopped_by": report.stopped_by,
            },
        )
        return outcome

    def _set_aside(
        self, batch: Batch, oversize: list[SourceRecord], budget: TimeBudget
    ) -> tuple[int, list[SourceRecord]]:
        """Store oversize records in the bucket; return (stored, handed back)."""
        if not oversize:
            return 0, []
        bucket = self._settings.oversize_bucket
        if bucket is None:
            logger.warning(
                "records too large for the destination and no OVERSIZE_BUCKET: handed back, "
                "the mapping's on-failure destination records them once its retries run out",
                extra={"records": len(oversize), "source_stream": batch.source_stream_arn},
            )
            return 0, list(oversize)
        stored, back = 0, []
        for record in oversize:
            if not budget.allows():
                back.append(record)
                continue
            try:
                store_oversize(
                    self._clients.s3(batch.region),
                    bucket,
                    batch.source_stream_name,
                    self._settings.destination_stream_arn,
                    record,
                )
                stored += 1
            except (ClientError, BotoCoreError) as err:
                logger.error(
                    "could not store an oversize record in the bucket: handed back",
                    extra={"bucket": bucket, "error_code": error_code(err), "size": record.size},
                )
                back.append(record)
        if stored:
            logger.info(
                "oversize records stored in the bucket",
                extra={
                    "bucket": bucket,
                    "records": stored,
                    "source_stream": batch.source_stream_arn,
                },
            )
        return stored, back


def record_metrics(metrics: Metrics, outcome: Outcome) -> None:
    """Add the batch's figures to a Powertools ``Metrics`` object (flushed by its decorator)."""
    metrics.add_metric(name="RecordsRelayed", unit=MetricUnit.Count, value=outcome.relayed)
    metrics.add_metric(name="RecordsRetried", unit=MetricUnit.Count, value=outcome.retried)
    metrics.add_metric(
        name="RecordsHandedBack", unit=MetricUnit.Count, value=len(outcome.handed_back)
    )
    metrics.add_metric(
        name="RecordsOversizeStored", unit=MetricUnit.Count, value=outcome.oversize_stored
    )
    metrics.add_metric(name="BytesRelayed", unit=MetricUnit.Bytes, value=outcome.relayed_bytes)
    metrics.add_metric(name="PutRecordsCalls", unit=MetricUnit.Count, value=outcome.calls)
    if outcome.oldest_record_age_ms is not None:
        metrics.add_metric(
            name="OldestRecordAge",
            unit=MetricUnit.Milliseconds,
            value=outcome.oldest_record_age_ms,
        )
