"""Relay throughput against its floor, and the handler's cold-start import time.

10,000 records of 1 KiB go through ``relay.handler.lambda_handler`` (in event source mapping
batches of --batch-size records, base64 as Lambda delivers them) and, in the same run, the same
bytes and keys through plain ``put_records`` calls of 500 records (the floor: what any relay must
at least spend). Both write to moto, each to a fresh 4-shard stream; the rounds alternate which
goes first and the best round of each is reported. moto's server side dominates both figures, so
the ratio is the relay's own overhead (decode, packing, bookkeeping, logging, metrics), not the
network's. The relay runs warm (an earlier invocation built its client), like the floor's client.

    .venv/bin/python bench/relay_throughput.py [--records 10000] [--batch-size 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
ACCOUNT = "123456789012"
SOURCE_ARN = f"arn:aws:kinesis:eu-west-1:{ACCOUNT}:stream/watershed-regional"


class Context:
    function_name = "watershed-relay"
    function_version = "$LATEST"
    invoked_function_arn = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:watershed-relay"
    memory_limit_in_mb = 256
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/watershed-relay"
    log_stream_name = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 300_000


WARM_UP = ("warm-up", b"{}")


def make_records(count: int) -> list[tuple[str, bytes]]:
    rng = random.Random(1)
    return [(f"{rng.getrandbits(128):032x}", rng.randbytes(1024)) for _ in range(count)]


def make_events(pairs: list[tuple[str, bytes]], batch_size: int) -> list[dict]:
    events = []
    for start in range(0, len(pairs), batch_size):
        records = []
        for offset, (key, data) in enumerate(pairs[start : start + batch_size]):
            sequence = str(
                49659876543210987654321098765432109876543210987654321098 + start + offset
            )
            records.append(
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": key,
                        "sequenceNumber": sequence,
                        "data": base64.b64encode(data).decode("ascii"),
                        "approximateArrivalTimestamp": time.time(),
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"shardId-000000000000:{sequence}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/watershed-relay-role",
                    "awsRegion": "eu-west-1",
                    "eventSourceARN": SOURCE_ARN,
                }
            )
        events.append({"Records": records})
    return events


def fresh_stream(client, name: str) -> str:
    client.create_stream(StreamName=name, ShardCount=4)
    return f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}"


def count_records(client, arn: str) -> int:
    total = 0
    for shard in client.list_shards(StreamARN=arn)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamARN=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        page = client.get_records(StreamARN=arn, ShardIterator=iterator, Limit=10000)
        total += len(page["Records"])
    return total


def run_relay(handler_module, client, events, round_no: int) -> tuple[float, str]:
    arn = fresh_stream(client, f"relay-dest-{round_no}")
    os.environ["DESTINATION_STREAM_ARN"] = arn
    handler_module.relay.cache_clear()
    # A warm execution environment: settings read and client built by an earlier invocation
    # (cold start is measured on its own below). The warm-up record is one more in the stream.
    handler_module.lambda_handler(make_events([WARM_UP], 1)[0], Context())
    start = time.perf_counter()
    for event in events:
        response = handler_module.lambda_handler(event, Context())
        assert response == {"batchItemFailures": []}, "records handed back during the bench"
    return time.perf_counter() - start, arn


def run_floor(client, pairs, round_no: int) -> tuple[float, str]:
    arn = fresh_stream(client, f"floor-dest-{round_no}")
    start = time.perf_counter()
    for offset in range(0, len(pairs), 500):
        chunk = pairs[offset : offset + 500]
        response = client.put_records(
            StreamARN=arn, Records=[{"Data": d, "PartitionKey": k} for k, d in chunk]
        )
        assert response["FailedRecordCount"] == 0
    return time.perf_counter() - start, arn


def import_time(samples: int = 5) -> tuple[float, float]:
    """Median wall time of `import relay.handler` in a fresh interpreter, and of boto3 alone."""
    probe = "import time; t=time.perf_counter(); import {m}; print(time.perf_counter()-t)"

    def measure(module: str) -> float:
        runs = []
        for _ in range(samples):
            out = subprocess.run(
                [sys.executable, "-c", probe.format(m=module)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            runs.append(float(out.strip()))
        return statistics.median(runs)

    return measure("relay.handler"), measure("boto3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "MOTO_ACCOUNT_ID"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        POWERTOOLS_SERVICE_NAME="relay",
        POWERTOOLS_METRICS_NAMESPACE="watershed-bench",
        POWERTOOLS_LOG_LEVEL="WARNING",
        POWERTOOLS_METRICS_DISABLED="true",  # EMF lines to stdout would only add print cost
    )

    import boto3
    from moto import mock_aws

    pairs = make_records(args.records)
    events = make_events(pairs, args.batch_size)

    with mock_aws():
        import relay.handler as handler_module

        client = boto3.client("kinesis", region_name=REGION)
        relay_times, floor_times = [], []
        for round_no in range(args.rounds):
            order = ("relay", "floor") if round_no % 2 == 0 else ("floor", "relay")
            for which in order:
                if which == "relay":
                    seconds, arn = run_relay(handler_module, client, events, round_no)
                    relay_times.append(seconds)
                else:
                    seconds, arn = run_floor(client, pairs, round_no)
                    floor_times.append(seconds)
                expected = len(pairs) + (which == "relay")  # the relay's warm-up record
                assert count_records(client, arn) == expected, f"{which}: records missing"

    relay_rate = len(pairs) / min(relay_times)
    floor_rate = len(pairs) / min(floor_times)
    handler_import, boto3_import = import_time()
    print(f"records: {len(pairs)} x 1 KiB, ESM batches of {args.batch_size}, best of {args.rounds}")
    print(f"relay handler     : {relay_rate:10,.0f} records/s")
    print(f"plain put_records : {floor_rate:10,.0f} records/s (floor)")
    print(f"ratio floor/relay : {floor_rate / relay_rate:10.2f}x (aim: <= 1.2x)")
    print(
        f"cold-start import of relay.handler: {handler_import * 1000:.0f} ms "
        f"(of which boto3 alone: {boto3_import * 1000:.0f} ms), median of 5 fresh interpreters"
    )


if __name__ == "__main__":
    main()
