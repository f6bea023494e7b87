"""Reading a Kinesis stream back, as a SIEM would: every record of every shard, oldest first."""

from __future__ import annotations

from typing import Any

import boto3


def read_stream(session: boto3.Session, stream_arn: str) -> list[dict[str, Any]]:
    """Every record of the stream (GetRecords shape: Data bytes, PartitionKey, SequenceNumber)."""
    region = stream_arn.split(":")[3]
    kinesis = session.client("kinesis", region_name=region)
    records: list[dict[str, Any]] = []
    shards = kinesis.list_shards(StreamARN=stream_arn)["Shards"]
    for shard in shards:
        iterator = kinesis.get_shard_iterator(
            StreamARN=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, StreamARN=stream_arn)
            if not response["Records"]:
                break
            records.extend({**r, "ShardId": shard["ShardId"]} for r in response["Records"])
            iterator = response.get("NextShardIterator")
    return records
