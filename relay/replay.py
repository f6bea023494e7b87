"""Replay what the relay gave up on: the failure queue's on-failure records, re-read from the
regional stream while it still holds them, forwarded exactly as the relay forwards them.

The event source mapping's on-failure record names a shard and a sequence-number range
(``KinesisBatchInfo``), never the records themselves. For each message this module reads the
range back with GetShardIterator ``AT_SEQUENCE_NUMBER`` and GetRecords, hands the records to the
relay's own :class:`~relay.service.Relay` (same packing, retries, oversize path, limits), and
deletes the message only when every record still on the stream was delivered. Records the stream
no longer holds (past its retention) are counted as expired; a message that is not an on-failure
record, or names a stream that cannot be read, is counted as unreadable and left in the queue.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from relay.events import Batch, SourceRecord, source_record, stream_identity
from relay.sender import TimeBudget, error_code
from relay.service import Relay
from relay.telemetry import logger

# ASCII only and whole-string (fullmatch, no "$" newline loophole): what reaches GetShardIterator
STREAM_ARN = re.compile(
    r"\Aarn:aws[a-z-]*:kinesis:(?P<region>[a-z]{2}(-[a-z]+)+-[0-9]):[0-9]{12}:"
    r"stream/[A-Za-z0-9_.-]{1,128}\Z",
    re.ASCII,
)
_SEQUENCE = re.compile(r"\A[0-9]{1,128}\Z", re.ASCII)
_SHARD = re.compile(r"\AshardId-[0-9]{12}\Z", re.ASCII)
GET_RECORDS_LIMIT = 10_000
MAX_EMPTY_PAGES = 20  # GetRecords may answer empty pages before it reaches the records


class UnreadableMessage(ValueError):
    """A failure-queue message that is not a Kinesis on-failure record; says which field."""


@dataclass(frozen=True)
class FailedRange:
    """The ``KinesisBatchInfo`` of one on-failure record."""

    stream_arn: str
    shard_id: str
    start: str
    end: str
    batch_size: int | None

    @property
    def region(self) -> str:
        return self.stream_arn.split(":")[3]

    def holds(self, sequence_number: str) -> bool:
        return int(self.start) <= int(sequence_number) <= int(self.end)


def parse_failure_message(body: str) -> FailedRange:
    """The range an on-failure record names; UnreadableMessage says what is missing or wrong."""
    try:
        document = json.loads(body)
    except json.JSONDecodeError as err:
        raise UnreadableMessage(f"the body is not JSON ({err.msg})") from None
    info = document.get("KinesisBatchInfo") if isinstance(document, dict) else None
    if not isinstance(info, dict):
        raise UnreadableMessage("no KinesisBatchInfo object: not a Kinesis on-failure record")
    checks = (
        ("streamArn", STREAM_ARN),
        ("shardId", _SHARD),
        ("startSequenceNumber", _SEQUENCE),
        ("endSequenceNumber", _SEQUENCE),
    )
    for name, pattern in checks:
        value = info.get(name)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise UnreadableMessage(f"KinesisBatchInfo.{name} is missing or malformed: {value!r}")
    if int(info["endSequenceNumber"]) < int(info["startSequenceNumber"]):
        raise UnreadableMessage("KinesisBatchInfo.endSequenceNumber is below startSequenceNumber")
    size = info.get("batchSize")
    return FailedRange(
        stream_arn=stream_identity(info["streamArn"]),
        shard_id=info["shardId"],
        start=info["startSequenceNumber"],
        end=info["endSequenceNumber"],
        batch_size=size if isinstance(size, int) and size > 0 else None,
    )


@dataclass
class ReplaySummary:
    """What one replay run did, message by message and in total."""

    messages: int = 0
    replayed: int = 0  # messages whose records were all delivered (or expired), then deleted
    kept: int = 0  # messages left in the queue: the destination still refused some records
    unreadable: int = 0  # messages left in the queue: not an on-failure record, or unreadable
    records_delivered: int = 0
    records_oversize_stored: int = 0
    records_expired: int = 0  # no longer on the regional stream
    expired_ranges: int = 0  # messages with at least one expired record
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.kept or self.unreadable or self.records_expired)

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "replayed": self.replayed,
            "kept": self.kept,
            "unreadable": self.unreadable,
            "records_delivered": self.records_delivered,
            "records_oversize_stored": self.records_oversize_stored,
            "records_expired": self.records_expired,
            "expired_ranges": self.expired_ranges,
            "details": self.details,
        }


class Replayer:
    """Drains a relay failure queue; clients are injected so tests can substitute them."""

    def __init__(
        self,
        relay: Relay,
        sqs: Any,
        kinesis_for: Callable[[str], Any],
        *,
        seconds_per_message: float = 60.0,
        visibility_timeout: int = 300,
        clock: Callable[[], float] = time.monotonic,
        source_stream_arn: str | None = None,
    ) -> None:
        self._relay = relay
        # When given, a message naming any other stream is refused: whoever could write to the
        # failure queue must not make the replay copy a stream of their choice into the SIEM.
        self._source = stream_identity(source_stream_arn) if source_stream_arn else None
        self._sqs = sqs
        self._kinesis_for = kinesis_for  # region -> Kinesis client of the regional stream
        self._seconds = seconds_per_message
        self._visibility = visibility_timeout
        self._clock = clock

    def run(self, queue_url: str, max_messages: int | None = None) -> ReplaySummary:
        """Replay every message in the queue once (or the first ``max_messages``)."""
        summary = ReplaySummary()
        for message in self._messages(queue_url, max_messages):
            summary.messages += 1
            self._replay_one(queue_url, message, summary)
        return summary

    def _messages(self, queue_url: str, max_messages: int | None) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        while max_messages is None or len(seen) < max_messages:
            wanted = 10 if max_messages is None else min(10, max_messages - len(seen))
            page = self._sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=wanted,
                VisibilityTimeout=self._visibility,
                WaitTimeSeconds=1,
            ).get("Messages", [])
            fresh = [m for m in page if m["MessageId"] not in seen]
            if not fresh:
                return
            for message in fresh:
                seen.add(message["MessageId"])
                yield message

    def _replay_one(self, queue_url: str, message: dict[str, Any], summary: ReplaySummary) -> None:
        detail: dict[str, Any] = {"message_id": message["MessageId"]}
        summary.details.append(detail)
        try:
            failed = parse_failure_message(message.get("Body", ""))
            detail.update(shard=failed.shard_id, start=failed.start, end=failed.end)
            if self._source is not None and failed.stream_arn != self._source:
                raise UnreadableMessage(
                    f"KinesisBatchInfo.streamArn {failed.stream_arn} is not the regional stream "
                    f"{self._source} this failure queue belongs to"
                )
            records = self._read(failed)
        except UnreadableMessage as err:
            summary.unreadable += 1
            detail.update(outcome="unreadable", reason=str(err))
            return
        except (ClientError, BotoCoreError) as err:
            code = error_code(err)
            if code != "ResourceNotFoundException":
                summary.unreadable += 1
                detail.update(outcome="unreadable", reason=f"reading the stream: {code}")
                return
            records = []  # the shard or the stream is gone: every record of the range expired
        expired = max(0, (failed.batch_size or 0) - len(records))
        if not records and failed.batch_size is None:
            expired = 1  # nothing readable and no count given: at least the start record
        if expired:
            summary.records_expired += expired
            summary.expired_ranges += 1
            logger.warning(
                "records of a failed range are no longer on the regional stream",
                extra={
                    "stream": failed.stream_arn,
                    "shard": failed.shard_id,
                    "start": failed.start,
                    "end": failed.end,
                    "expired": expired,
                },
            )
        detail["expired"] = expired
        outcome = self._deliver(failed, records)
        detail.update(delivered=outcome.relayed, oversize_stored=outcome.oversize_stored)
        summary.records_delivered += outcome.relayed
        summary.records_oversize_stored += outcome.oversize_stored
        if outcome.handed_back:
            summary.kept += 1
            detail.update(outcome="kept", undelivered=len(outcome.handed_back))
            return
        self._sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        summary.replayed += 1
        detail["outcome"] = "replayed" if not expired else "replayed-with-expired"

    def _deliver(self, failed: FailedRange, records: list[SourceRecord]) -> Any:
        batch = Batch(
            source_stream_arn=failed.stream_arn, region=failed.region, records=tuple(records)
        )
        deadline = self._clock() + self._seconds
        budget = TimeBudget(lambda: int((deadline - self._clock()) * 1000), 0)
        return self._relay.handle(batch, budget)

    def _read(self, failed: FailedRange) -> list[SourceRecord]:
        """The records of the range still on the stream, in sequence order."""
        kinesis = self._kinesis_for(failed.region)
        iterator = kinesis.get_shard_iterator(
            StreamARN=failed.stream_arn,
            ShardId=failed.shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=failed.start,
        )["ShardIterator"]
        found: list[SourceRecord] = []
        empty = 0
        while iterator and empty < MAX_EMPTY_PAGES:
            page = kinesis.get_records(
                StreamARN=failed.stream_arn, ShardIterator=iterator, Limit=GET_RECORDS_LIMIT
            )
            for raw in page["Records"]:
                if int(raw["SequenceNumber"]) > int(failed.end):
                    return found
                if failed.holds(raw["SequenceNumber"]):
                    found.append(
                        source_record(
                            sequence_number=raw["SequenceNumber"],
                            shard_id=failed.shard_id,
                            partition_key=raw["PartitionKey"],
                            data=raw["Data"],
                            approximate_arrival=raw["ApproximateArrivalTimestamp"].timestamp(),
                        )
                    )
            if page["Records"]:
                empty = 0
            elif page.get("MillisBehindLatest", 0) == 0:
                break  # at the tip of the shard: nothing more will come
            else:
                empty += 1
            iterator = page.get("NextShardIterator")
        return found
