"""Given a batch on the regional stream, when the relay handles it, then the destination stream
(moto, read back over all shards) holds exactly those bytes and partition keys."""

import base64
import json
import math
import random
from collections import Counter
from pathlib import Path

MiB = 1024 * 1024


def _big_batch(make_records) -> list[tuple[str, bytes]]:
    """1,200 records: EventBridge envelopes, and a dozen binary records near 1 MiB (one exactly
    at the limit with a multi-byte key) spread through the batch."""
    pairs = make_records(1_188)
    rng = random.Random(11)
    for slot in range(12):
        key = f"big-{slot:02d}"
        if slot == 0:
            key = "größe-ключ-0"  # 12 characters, 17 UTF-8 bytes: Kinesis counts the bytes
        size = MiB - len(key.encode()) - (0 if slot == 0 else rng.randint(1, 4_096))
        pairs.insert(slot * 99, (key, rng.randbytes(size)))
    return pairs


def test_a_large_batch_arrives_byte_identical_in_the_fewest_calls(
    destination, read_back, put_records_calls, handler, make_event, make_records, context
):
    # Given 1,200 records, a dozen of them near 1 MiB, over 5 MiB in total
    pairs = _big_batch(make_records)
    sizes = [len(data) + len(key.encode()) for key, data in pairs]
    assert len(pairs) > 1_000 and sum(sizes) > 5 * MiB and max(sizes) == MiB

    # When the handler relays them
    response = handler.lambda_handler(make_event(pairs), context)

    # Then nothing is handed back and the stream holds every record once, bytes and keys unchanged
    assert response == {"batchItemFailures": []}
    assert Counter(read_back()) == Counter(pairs)
    # ... sent in as many PutRecords calls as the limits force, no more
    floor = max(math.ceil(len(pairs) / 500), math.ceil(sum(sizes) / (5 * MiB)))
    assert floor == 3
    assert len(put_records_calls) == floor


def test_small_records_go_500_to_a_call(
    destination, read_back, put_records_calls, handler, make_event, make_records, context
):
    pairs = make_records(1_234, seed=3)

    response = handler.lambda_handler(make_event(pairs), context)

    assert response == {"batchItemFailures": []}
    assert sorted(read_back()) == sorted(pairs)
    assert put_records_calls == [500, 500, 234]


def test_the_fixture_batch_is_relayed_unchanged(destination, read_back, handler, context):
    # Given the real-shaped batch of tests/events: two EventBridge envelopes, base64-encoded
    path = Path(__file__).parent.parent / "events" / "kinesis_esm_batch.json"
    event = json.loads(path.read_text())
    expected = [
        (r["kinesis"]["partitionKey"], base64.b64decode(r["kinesis"]["data"]))
        for r in event["Records"]
    ]

    response = handler.lambda_handler(event, context)

    assert response == {"batchItemFailures": []}
    assert sorted(read_back()) == sorted(expected)


def test_an_empty_batch_is_a_success(destination, read_back, handler, context):
    assert handler.lambda_handler({"Records": []}, context) == {"batchItemFailures": []}
    assert read_back() == []
