"""Relay fixtures: moto streams, real-shaped event source mapping batches, a fake Lambda context
on a fake clock, and a Kinesis client wrapper that fails entries the way real Kinesis does.

moto never fails a PutRecords call partly, so ``FlakyKinesis`` stands in for that: it keeps the
entries it is told to fail out of the real (moto) call and answers for them with the per-entry
``ErrorCode`` shape of a real partial failure, so the stream only holds what was really accepted.
"""

from __future__ import annotations

import base64
import copy
import importlib
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from relay.clients import Clients
from relay.settings import Settings

ACCOUNT = "123456789012"  # moto's default account
SOURCE_REGION = "eu-west-1"
DESTINATION_REGION = "us-east-1"
SOURCE_ARN = f"arn:aws:kinesis:{SOURCE_REGION}:{ACCOUNT}:stream/watershed-regional"
DESTINATION_NAME = "watershed-final"
DESTINATION_ARN = f"arn:aws:kinesis:{DESTINATION_REGION}:{ACCOUNT}:stream/{DESTINATION_NAME}"
SHARD = "shardId-000000000003"
FIRST_SEQUENCE = 49659876543210987654321098765432109876543210987654321098
MiB = 1024 * 1024
# The relay's variables for tests: the moto destination, backoff in milliseconds, a 1 s margin.
QUICK_RELAY_ENV = {
    "DESTINATION_STREAM_ARN": DESTINATION_ARN,
    "RELAY_BACKOFF_BASE_MS": "1",
    "RELAY_BACKOFF_MAX_MS": "4",
    "RELAY_TIME_MARGIN_MS": "1000",
}

_ESM_TEMPLATE = json.loads(
    (Path(__file__).parent.parent / "events" / "kinesis_esm_batch.json").read_text()
)


def esm_event(
    pairs: Iterable[tuple[str, bytes]],
    *,
    source_arn: str = SOURCE_ARN,
    arrival: float = 1772852400.123,
) -> dict[str, Any]:
    """An event source mapping batch, shaped like tests/events/kinesis_esm_batch.json, carrying
    the given (partition key, data) pairs in order with increasing sequence numbers."""
    template = _ESM_TEMPLATE["Records"][0]
    records = []
    for index, (key, data) in enumerate(pairs):
        sequence = str(FIRST_SEQUENCE + index * 7)
        record = copy.deepcopy(template)
        record["kinesis"].update(
            partitionKey=key,
            sequenceNumber=sequence,
            data=base64.b64encode(data).decode("ascii"),
            approximateArrivalTimestamp=arrival + index / 1000,
        )
        record["eventID"] = f"{SHARD}:{sequence}"
        record["eventSourceARN"] = source_arn
        record["awsRegion"] = source_arn.split(":")[3]
        records.append(record)
    return {"Records": records}


def sequence_numbers(event: dict[str, Any]) -> list[str]:
    return [r["kinesis"]["sequenceNumber"] for r in event["Records"]]


def eventbridge_records(count: int, seed: int = 7) -> list[tuple[str, bytes]]:
    """(event id, raw EventBridge envelope) pairs of varied size, like the collect rule writes."""
    rng = random.Random(seed)
    pairs = []
    for index in range(count):
        event_id = f"{rng.getrandbits(32):08x}-{index:04d}-4b92-8d3e-{rng.getrandbits(48):012x}"
        envelope = {
            "version": "0",
            "id": event_id,
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.ec2",
            "account": "333333333333",
            "region": SOURCE_REGION,
            "detail": {
                "eventName": "AuthorizeSecurityGroupIngress",
                "pad": "x" * rng.randint(200, 3000),
            },
        }
        pairs.append((event_id, json.dumps(envelope, separators=(",", ":")).encode()))
    return pairs


def read_stream(client: Any, stream_arn: str) -> list[tuple[str, bytes]]:
    """Every (partition key, data) in the stream, over all shards, from the trim horizon."""
    found = []
    for shard in client.list_shards(StreamARN=stream_arn)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamARN=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = client.get_records(StreamARN=stream_arn, ShardIterator=iterator, Limit=10000)
            if not page["Records"]:
                break
            found.extend((r["PartitionKey"], r["Data"]) for r in page["Records"])
            iterator = page.get("NextShardIterator")
    return found


@dataclass
class FakeClock:
    """Time that only moves when the relay sleeps; the context's remaining time follows it."""

    now: float = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeContext:
    """The parts of the Lambda context the handler and Powertools use."""

    clock: FakeClock = field(default_factory=FakeClock)
    deadline_ms: int = 60_000
    function_name: str = "watershed-relay"
    function_version: str = "$LATEST"
    invoked_function_arn: str = f"arn:aws:lambda:{SOURCE_REGION}:{ACCOUNT}:function:watershed-relay"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "5d6c7b8a-0000-4000-8000-00000000beef"
    log_group_name: str = "/aws/lambda/watershed-relay"
    log_stream_name: str = "2026/03/07/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return int(self.deadline_ms - self.clock.now * 1000)


class FlakyKinesis:
    """A Kinesis client whose PutRecords fails chosen entries (stands in for partial failures) or
    whole calls (stands in for call throttling and AccessDenied), passing the rest to moto."""

    def __init__(
        self,
        real: Any,
        *,
        fail_entry: Callable[[str, int], str | None] = lambda key, seen: None,
        fail_call: Callable[[int], str | None] = lambda call: None,
    ) -> None:
        self._real = real
        self._fail_entry = fail_entry  # (partition key, times seen before) -> ErrorCode or None
        self._fail_call = fail_call  # (call number from 1) -> error code or None
        self._seen: dict[str, int] = {}
        self.calls = 0
        self.entries_failed = 0

    def put_records(self, *, StreamARN: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        code = self._fail_call(self.calls)
        if code:
            raise ClientError(
                {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {}},
                "PutRecords",
            )
        verdicts = []
        for entry in Records:
            key = entry["PartitionKey"]
            verdicts.append(self._fail_entry(key, self._seen.get(key, 0)))
            self._seen[key] = self._seen.get(key, 0) + 1
        passed = [e for e, v in zip(Records, verdicts, strict=True) if v is None]
        accepted = iter(
            self._real.put_records(StreamARN=StreamARN, Records=passed)["Records"] if passed else []
        )
        results = []
        for verdict in verdicts:
            if verdict is None:
                results.append(next(accepted))
            else:
                self.entries_failed += 1
                results.append({"ErrorCode": verdict, "ErrorMessage": f"injected {verdict}"})
        return {"FailedRecordCount": sum(v is not None for v in verdicts), "Records": results}


class InjectedClients(Clients):
    """Clients whose Kinesis client is given (a FlakyKinesis) instead of built."""

    def __init__(self, kinesis: Any) -> None:
        super().__init__(DESTINATION_REGION)
        self.__dict__["kinesis"] = kinesis


@pytest.fixture
def aws():
    with mock_aws():
        yield


@pytest.fixture
def kinesis(aws):
    return boto3.client("kinesis", region_name=DESTINATION_REGION)


@pytest.fixture
def destination(kinesis) -> str:
    kinesis.create_stream(StreamName=DESTINATION_NAME, ShardCount=4)
    return DESTINATION_ARN


@pytest.fixture
def put_records_calls(aws, monkeypatch) -> list[int]:
    """Counts the PutRecords requests that reach moto (one entry per call: its record count),
    through a botocore event hook on every session the relay builds its clients from."""
    calls: list[int] = []
    real_session = boto3.Session

    def counted_session(*args: Any, **kwargs: Any) -> boto3.Session:
        session = real_session(*args, **kwargs)
        session.events.register(
            "before-parameter-build.kinesis.PutRecords",
            lambda params, **_: calls.append(len(params["Records"])),
        )
        return session

    monkeypatch.setattr("relay.clients.boto3.Session", counted_session)
    return calls


@pytest.fixture
def relay_env(monkeypatch) -> Callable[..., None]:
    """Sets the relay's variables for this test and forgets any Relay built from earlier ones."""

    def configure(**overrides: str) -> None:
        for name, value in {**QUICK_RELAY_ENV, **overrides}.items():
            monkeypatch.setenv(name, value)

    configure()
    return configure


@pytest.fixture
def handler(relay_env):
    """relay.handler, with the per-environment Relay and Metrics caches cleared before and after
    the test (each is built from the environment on first use)."""
    module = importlib.import_module("relay.handler")
    caches = (module.relay, module.metrics)  # before a test replaces them with monkeypatch
    for cached in caches:
        cached.cache_clear()
    yield module
    for cached in caches:
        cached.cache_clear()


# Helpers reach the tests as fixtures: under --import-mode=importlib a conftest is not importable.


@pytest.fixture
def make_event() -> Callable[..., dict[str, Any]]:
    return esm_event


@pytest.fixture
def make_records() -> Callable[..., list[tuple[str, bytes]]]:
    return eventbridge_records


@pytest.fixture
def read_back(kinesis) -> Callable[[str], list[tuple[str, bytes]]]:
    return lambda stream_arn=DESTINATION_ARN: read_stream(kinesis, stream_arn)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def context(clock) -> FakeContext:
    return FakeContext(clock=clock)


@pytest.fixture
def flaky(kinesis) -> Callable[..., FlakyKinesis]:
    """Builds a FlakyKinesis in front of the moto client."""
    return lambda **kwargs: FlakyKinesis(kinesis, **kwargs)


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    """Settings for the moto destination with quick backoff, overridable per variable."""

    return lambda **overrides: Settings.from_env({**QUICK_RELAY_ENV, **overrides})


@pytest.fixture
def injected_clients() -> Callable[[Any], Clients]:
    return InjectedClients
