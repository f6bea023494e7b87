"""Given records of various sizes and keys, when they are packed into PutRecords requests, then
every request respects the limits, every record is in exactly one, and no more requests are used
than needed."""

import math
import random

import pytest

from relay.events import SourceRecord
from relay.sender import MAX_BYTES_PER_REQUEST, MAX_RECORDS_PER_REQUEST, pack, packing_floor

MiB = 1024 * 1024


def _record(index: int, size: int, key: str | None = None) -> SourceRecord:
    key = key or f"key-{index}"
    data = b"x" * (size - len(key.encode()))
    return SourceRecord(str(1000 + index), "shardId-0", key, data, 0.0, size)


def _check(records, requests):
    assert sorted(r.sequence_number for req in requests for r in req) == sorted(
        r.sequence_number for r in records
    )
    for request in requests:
        assert len(request) <= MAX_RECORDS_PER_REQUEST
        assert sum(r.size for r in request) <= MAX_BYTES_PER_REQUEST


@pytest.mark.parametrize("seed", range(5))
def test_random_batches_respect_the_limits_and_keep_key_order(seed):
    rng = random.Random(seed)
    records = [
        _record(
            i,
            rng.choice([rng.randint(100, 5_000), rng.randint(200_000, MiB)]),
            f"k{rng.randint(0, 30)}",
        )
        for i in range(1_500)
    ]

    requests = pack(records)

    _check(records, requests)
    assert len(requests) >= packing_floor(records)
    # records that share a partition key are sent in batch order (request by request)
    seen: dict[str, int] = {}
    for request in requests:
        for record in request:
            assert int(record.sequence_number) > seen.get(record.partition_key, -1)
        for record in request:
            seen[record.partition_key] = int(record.sequence_number)


def test_small_records_fill_requests_by_count():
    records = [_record(i, 1_024) for i in range(1_234)]
    assert [len(r) for r in pack(records)] == [500, 500, 234]
    assert packing_floor(records) == 3


def test_a_later_small_record_fills_an_earlier_gap():
    # Given big, big, big, small... in an order where filling strictly in sequence wastes a call:
    # 3 MiB, 3 MiB, then 2 MiB pieces that fit beside each 3 MiB record
    records = [_record(0, 3 * MiB), _record(1, 3 * MiB), _record(2, 2 * MiB), _record(3, 2 * MiB)]

    requests = pack(records, max_bytes=5 * MiB)

    _check(records, requests)
    assert len(requests) == 2 == packing_floor(records)


def test_one_key_is_never_moved_ahead_of_itself():
    # The later 2 MiB record of key "a" would fit in the first request, but "a" already has a
    # record in the second, so it stays after it
    records = [_record(0, 4 * MiB, "b"), _record(1, 3 * MiB, "a"), _record(2, MiB, "a")]
    requests = pack(records)
    assert [[r.sequence_number for r in req] for req in requests] == [["1000"], ["1001", "1002"]]


def test_the_floor():
    assert packing_floor([]) == 0
    records = [_record(i, MiB) for i in range(11)]
    assert packing_floor(records) == math.ceil(11 / 5)
