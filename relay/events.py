"""The Kinesis event source mapping batch, parsed into what the relay needs — and nothing more.

The record data is base64-decoded and kept as bytes; it is never parsed as JSON, because the
relay forwards the raw EventBridge envelope unchanged.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay.errors import NotAKinesisEventError


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record of the batch, as it will be written to the destination."""

    sequence_number: str  # as Lambda knows it: the batchItemFailures itemIdentifier
    shard_id: str
    partition_key: str
    data: bytes
    approximate_arrival: float  # epoch seconds
    size: int  # data plus partition key in UTF-8 bytes: what Kinesis counts against its limits

    @property
    def position(self) -> int:
        """The sequence number as an integer; within one shard, later records are larger."""
        return int(self.sequence_number)


@dataclass(frozen=True)
class Batch:
    """The records of one invocation; an event source mapping batch comes from a single shard."""

    source_stream_arn: str
    region: str
    records: tuple[SourceRecord, ...]

    @property
    def source_stream_name(self) -> str:
        """The stream name from the source ARN (`.../stream/<name>[/consumer/...]`)."""
        return stream_identity(self.source_stream_arn).split("/", 1)[1]


def parse_batch(event: Mapping[str, Any]) -> Batch:
    """Turn the event source mapping's event into a Batch; refuse anything that is not one."""
    raw_records = event.get("Records")
    if not isinstance(raw_records, list):
        raise NotAKinesisEventError("the event has no 'Records' list")
    if not raw_records:
        return Batch(source_stream_arn="", region="", records=())
    first = raw_records[0]
    if first.get("eventSource") != "aws:kinesis":
        raise NotAKinesisEventError(
            f"expected eventSource 'aws:kinesis', got {first.get('eventSource')!r}"
        )
    return Batch(
        source_stream_arn=first["eventSourceARN"],
        region=first["awsRegion"],
        records=tuple(_record(raw) for raw in raw_records),
    )


def stream_identity(arn: str) -> str:
    """`arn:...:stream/<name>` without an enhanced fan-out `/consumer/...` suffix, if any."""
    prefix, _, resource = arn.partition(":stream/")
    name = resource.split("/", 1)[0]
    return f"{prefix}:stream/{name}"


def source_record(
    *,
    sequence_number: str,
    shard_id: str,
    partition_key: str,
    data: bytes,
    approximate_arrival: float,
) -> SourceRecord:
    """A record as the relay forwards it, sized as Kinesis counts it (data plus UTF-8 key)."""
    return SourceRecord(
        sequence_number=sequence_number,
        shard_id=shard_id,
        partition_key=partition_key,
        data=data,
        approximate_arrival=approximate_arrival,
        size=len(data) + len(partition_key.encode("utf-8")),
    )


def _record(raw: Mapping[str, Any]) -> SourceRecord:
    kinesis = raw["kinesis"]
    return source_record(
        sequence_number=kinesis["sequenceNumber"],
        shard_id=raw["eventID"].split(":", 1)[0],
        partition_key=kinesis["partitionKey"],
        data=binascii.a2b_base64(kinesis["data"]),  # base64.b64decode without its wrapper
        approximate_arrival=float(kinesis["approximateArrivalTimestamp"]),
    )
