"""Reading the destination stream for the canary: every shard, from a recorded moment on.

Kinesis reads do not remove records: the SIEM's consumers see the stream exactly as they would
without the canary. What the canary adds are GetRecords calls, which count against the 5 reads
per second per shard that every classic (non enhanced fan-out) consumer shares: a poll makes at
most MAX_READS_PER_SHARD_POLL rounds per shard, stops at a shard that is caught up, and leaves
a throttled shard for the next poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from onboarding.errors import error_code

MAX_READS_PER_SHARD_POLL = 10  # GetRecords rounds per shard per poll (limit: 5/s per shard)


@dataclass
class _Shard:
    iterator: str | None
    done: bool = False
    last: str | None = None  # the last sequence number read, to renew an expired iterator


class StreamWatch:
    """Reads every shard of a stream from a recorded moment on, one poll at a time.

    `poll()` returns the records that arrived since the previous poll (GetRecords shape plus
    `ShardId`), shard by shard. Shards that appear later (a reshard) are picked up from the same
    moment; a closed shard read to its end is not read again."""

    def __init__(self, kinesis: Any, stream_arn: str, start: datetime) -> None:
        self.kinesis = kinesis
        self.stream_arn = stream_arn
        self.start = start
        self._shards: dict[str, _Shard] = {}

    def _list_shards(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        response = self.kinesis.list_shards(StreamARN=self.stream_arn)
        shards.extend(response.get("Shards", []))
        while response.get("NextToken"):
            response = self.kinesis.list_shards(NextToken=response["NextToken"])
            shards.extend(response.get("Shards", []))
        return shards

    def open(self) -> None:
        """Take the starting point (iterators at `start`) for every shard there is now."""
        self._discover()

    def _discover(self) -> None:
        for shard in self._list_shards():
            shard_id = shard["ShardId"]
            if shard_id not in self._shards:
                self._shards[shard_id] = _Shard(self._iterator(shard_id, None))

    def _iterator(self, shard_id: str, after: str | None) -> str:
        """From the recorded start, or right after the last record read (an expired iterator)."""
        position: dict[str, Any] = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
            if after
            else {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": self.start}
        )
        return self.kinesis.get_shard_iterator(
            StreamARN=self.stream_arn, ShardId=shard_id, **position
        )["ShardIterator"]

    @property
    def shard_ids(self) -> list[str]:
        return sorted(self._shards)

    def poll(self) -> list[dict[str, Any]]:
        self._discover()
        records: list[dict[str, Any]] = []
        for shard_id, shard in sorted(self._shards.items()):
            for _ in range(MAX_READS_PER_SHARD_POLL):
                if shard.done or shard.iterator is None:
                    shard.done = True
                    break
                try:
                    response = self.kinesis.get_records(
                        ShardIterator=shard.iterator, StreamARN=self.stream_arn, Limit=10000
                    )
                except ClientError as err:
                    if error_code(err) == "ExpiredIteratorException":
                        shard.iterator = self._iterator(shard_id, shard.last)
                        continue
                    if error_code(err) == "ProvisionedThroughputExceededException":
                        break  # the shard's 5 reads/s are shared with the SIEM: next poll
                    raise
                batch = response.get("Records", [])
                records.extend({**r, "ShardId": shard_id} for r in batch)
                if batch:
                    shard.last = batch[-1]["SequenceNumber"]
                shard.iterator = response.get("NextShardIterator")
                if shard.iterator is None:  # a closed shard read to its end
                    shard.done = True
                    break
                if not batch and not response.get("MillisBehindLatest"):
                    break  # caught up with this shard
        return records
