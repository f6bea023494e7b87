"""The path for records that can never fit the destination: an S3 object each.

Key: ``oversize/<source-stream-name>/<shardId>/<sequenceNumber>``; body: the record's data,
byte for byte; the partition key travels in the object metadata. S3 metadata must be ASCII, so a
partition key that is not is stored percent-encoded and marked so.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from relay.events import SourceRecord


def oversize_key(source_stream_name: str, record: SourceRecord) -> str:
    """Where an oversize record is written in the bucket."""
    return f"oversize/{source_stream_name}/{record.shard_id}/{record.sequence_number}"


def store_oversize(
    s3: Any, bucket: str, source_stream_name: str, destination_stream_arn: str, record: SourceRecord
) -> str:
    """Write one oversize record to the bucket and return its key; errors propagate."""
    key = oversize_key(source_stream_name, record)
    if record.partition_key.isascii() and record.partition_key.isprintable():
        metadata = {"partition-key": record.partition_key}
    else:
        metadata = {"partition-key": quote(record.partition_key), "partition-key-encoding": "url"}
    metadata["approximate-arrival-timestamp"] = repr(record.approximate_arrival)
    metadata["destination-stream-arn"] = destination_stream_arn
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=record.data,
        Metadata=metadata,
        ContentType="application/octet-stream",
    )
    return key
