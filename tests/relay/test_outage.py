"""Given the destination throttled for hours (as an outage looks from the relay), when the event
source mapping keeps invoking the relay on the same batch, then nothing is reported to the
failure destination before the mapping's record-age bound, and everything arrives once the
destination is back.

Lambda's Kinesis event source mapping cannot run here (moto does not run it), so
``MappingModel`` stands in for it: it invokes the real handler on the batch from the lowest
sequence number handed back, counts retries, and discards the batch to the on-failure
destination when ``MaximumRetryAttempts`` (unless -1) or ``MaximumRecordAgeInSeconds`` is
exceeded, with the values and the function timeout read from template.yaml. The clock is fake:
it moves when the relay sleeps (its backoff) and by a second between invocations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from relay.service import Relay
from relay.settings import DEFAULT_BACKOFF_MAX_MS, DEFAULT_TIME_MARGIN_MS, Settings

ROOT = Path(__file__).resolve().parents[2]
THROTTLED = "ProvisionedThroughputExceededException"
START = 1772852400.0  # the records arrive on the regional stream at this (fake) moment


def _template_values() -> tuple[dict[str, Any], int]:
    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    function = template["Resources"]["RelayFunction"]
    mapping = function["Properties"]["Events"]["RegionalStream"]["Properties"]
    return mapping, function["Properties"]["Timeout"]


MAPPING, TIMEOUT_SECONDS = _template_values()


class MappingModel:
    """Stands in for the event source mapping's retry loop on one shard (see the module doc)."""

    def __init__(self, handler: Any, clock: Any, context_factory: Any) -> None:
        self.handler = handler
        self.clock = clock
        self.context_factory = context_factory
        self.failures: list[dict[str, Any]] = []  # what reached the on-failure destination
        self.invocations = 0
        self.busy_seconds: list[float] = []  # time spent by each invocation

    def run(self, event: dict[str, Any], until: float) -> list[str]:
        """Invoke until the batch is relayed, discarded, or the clock passes ``until``; return
        the sequence numbers still pending."""
        records = list(event["Records"])
        retries = 0
        while records and self.clock.now < until:
            age = self.clock.now - records[0]["kinesis"]["approximateArrivalTimestamp"]
            limit = MAPPING["MaximumRetryAttempts"]
            if age > MAPPING["MaximumRecordAgeInSeconds"] or (limit != -1 and retries > limit):
                self.failures.append(_batch_info(records))
                return []
            started = self.clock.now
            context = self.context_factory(int((started + TIMEOUT_SECONDS) * 1000))
            response = self.handler.lambda_handler({"Records": records}, context)
            self.invocations += 1
            self.busy_seconds.append(self.clock.now - started)
            failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
            if not failed:
                return []
            lowest = min(failed, key=int)
            records = [r for r in records if int(r["kinesis"]["sequenceNumber"]) >= int(lowest)]
            retries += 1
            self.clock.sleep(1.0)  # the mapping's own turnaround before the retry
        return [r["kinesis"]["sequenceNumber"] for r in records]


def _batch_info(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "startSequenceNumber": records[0]["kinesis"]["sequenceNumber"],
        "endSequenceNumber": records[-1]["kinesis"]["sequenceNumber"],
        "batchSize": len(records),
    }


@pytest.fixture
def outage(destination, handler, monkeypatch, flaky, injected_clients, clock, context):
    """Builds (MappingModel, FlakyKinesis): the real handler, its Relay on the fake clock with the
    relay's default retry settings, writing through a FlakyKinesis that throttles every call
    until ``outage_end`` (stands in for the destination's outage; moto never throttles)."""

    def build(outage_end: float, **variables: str) -> tuple[MappingModel, Any]:
        clock.now = START
        kinesis = flaky(fail_call=lambda call: THROTTLED if clock.now < outage_end else None)
        settings = Settings.from_env({"DESTINATION_STREAM_ARN": destination, **variables})
        relay = Relay(
            settings,
            injected_clients(kinesis),
            sleep=clock.sleep,
            clock=lambda: clock.now,
            rng=lambda: 1.0,  # backoff jitter pinned to its ceiling
        )
        monkeypatch.setattr(handler, "relay", lambda: relay)
        model = MappingModel(
            handler, clock, lambda deadline_ms: type(context)(clock=clock, deadline_ms=deadline_ms)
        )
        return model, kinesis

    return build


def test_a_six_hour_outage_loses_nothing_and_reports_nothing(
    outage, make_event, make_records, read_back
):
    # Given a destination that throttles every call for six hours
    pairs = make_records(300)
    event = make_event(pairs, arrival=START)
    model, kinesis = outage(outage_end=START + 6 * 3600)

    # When the mapping keeps retrying the batch for seven hours
    pending = model.run(event, until=START + 7 * 3600)

    # Then nothing went to the failure destination, and once the destination was back every
    # record arrived exactly once
    assert model.failures == []
    assert pending == []
    assert sorted(read_back()) == sorted(pairs)
    # ... after far more invocations than the old fixed count of ten retries would have allowed
    assert model.invocations > 100
    # ... each of which spent its time budget retrying, not a couple of seconds: all but the last
    # one ran until less than the margin plus one backoff step was left of the timeout
    floor = TIMEOUT_SECONDS - (DEFAULT_TIME_MARGIN_MS + DEFAULT_BACKOFF_MAX_MS) / 1000
    assert min(model.busy_seconds[:-1]) >= floor
    assert kinesis.calls > 30 * model.invocations


def test_records_are_reported_only_once_they_reach_the_age_bound(
    outage, make_event, make_records, read_back
):
    # Given a destination that stays throttled for longer than the mapping's age bound (long
    # backoff steps keep the number of simulated calls small; the bound is the template's)
    pairs = make_records(20)
    event = make_event(pairs, arrival=START)
    bound = MAPPING["MaximumRecordAgeInSeconds"]
    model, _ = outage(outage_end=START + bound + 3600, RELAY_BACKOFF_MAX_MS="60000")

    # When the mapping retries until it gives up
    model.run(event, until=START + bound + 3600)

    # Then the batch was reported once, by its range, and only after the age bound had passed
    assert model.failures == [
        {
            "startSequenceNumber": event["Records"][0]["kinesis"]["sequenceNumber"],
            "endSequenceNumber": event["Records"][-1]["kinesis"]["sequenceNumber"],
            "batchSize": len(pairs),
        }
    ]
    assert model.clock.now - START > bound
    assert read_back() == []
