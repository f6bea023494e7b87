"""The end-to-end canary: raise a GuardDuty sample finding in an account and region, and watch
the destination stream until it arrives (or does not).

Per account x hub region:

1. the member's own view of its regions (ec2:DescribeRegions, as onboarding reads it): a region
   it has not enabled is *skipped*;
2. its GuardDuty detector: none (GuardDuty off), suspended, or managed by a GuardDuty
   administrator account (the administrator owns it; the canary leaves it alone) is *skipped*,
   with that reason;
3. `CreateSampleFindings(DetectorId, FindingTypes=[<the canary's type>])`.

What tells our finding apart. The API takes a detector id and a list of finding types, nothing
else: no tag, label or free text of ours travels with a sample finding. So a record is this
canary's when it is a GuardDuty finding event with GuardDuty's own sample marker
(`detail.service.additionalInfo.sample` is true), of the canary's finding type, from the
account and region the call was made in, and arrived on the stream at or after the call. Two
canaries running at once in the same account and region with the same finding type cannot be
told apart: either one's finding satisfies both (docs/operations.md).

Reading the stream. The starting point is taken before the first call: every shard is read
with an `AT_TIMESTAMP` iterator at that moment (less a clock-skew allowance), so nothing that
arrives afterwards is missed and nothing older is scanned. ListShards is read again on every
poll, so shards created by a reshard (children of a split or merge) are read too, from the same
timestamp, and a closed parent is read to its end. Kinesis reads do not remove records: the
SIEM's consumers see exactly what they would have seen; the canary only adds GetRecords calls
(5 per second per shard are shared by every classic consumer; the canary makes at most one
round per shard per poll, a poll every few seconds).

Latency = the record's ApproximateArrivalTimestamp (Kinesis' clock) - the moment just before
the CreateSampleFindings call (this machine's clock; skew between the two shows up here).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from onboarding.canary.canary_stream import StreamWatch
from onboarding.errors import ConfigError, InvalidRequest, StepFailed, error_code
from onboarding.exclusions import Exclusions
from onboarding.queue.backfill import select_accounts
from onboarding.regions import region_statuses, select_regions
from onboarding.resources.guardduty import administrator_of
from onboarding.sessions import SessionFactory
from onboarding.settings import ACCOUNT_ID, REGION_NAME, Settings

CanaryStatus = Literal["arrived", "missing", "skipped", "failed"]
STATUSES: tuple[CanaryStatus, ...] = ("arrived", "missing", "skipped", "failed")

# A reconnaissance type that GuardDuty rates Low; configurable (CANARY_FINDING_TYPE).
DEFAULT_FINDING_TYPE = "Recon:EC2/PortProbeUnprotectedPort"
DEFAULT_TIMEOUT_SECONDS = 600  # GuardDuty publishes a new finding to EventBridge within ~5 min
MAX_TIMEOUT_SECONDS = 3600
DEFAULT_POLL_SECONDS = 5.0
# The stream is read from this long before the recorded start: Kinesis' clock and this
# machine's may differ; matching (account, region, type, sample, time) keeps older records out.
CLOCK_SKEW = timedelta(seconds=30)
# A record counts when it arrived no earlier than this before the call (clock differences).
MATCH_TOLERANCE = timedelta(seconds=2)
DEFAULT_ACCOUNTS_PER_RUN = 25
# Accounts raised in at once (each then works its regions in parallel, REGION_WORKERS): the
# assume-role chain and the member's own reads, a few seconds per account.
ACCOUNT_WORKERS = 8
STREAM_ARN = re.compile(r"^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream/[\w.-]{1,128}$")
FINDING_TYPE = re.compile(r"^[A-Za-z0-9]+:[A-Za-z0-9]+/[\w.!-]{1,40}$")


@dataclass(frozen=True)
class CanarySettings:
    """What the canary needs beyond `Settings`: where to look, for how long, what to raise."""

    stream_arn: str
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    finding_type: str = DEFAULT_FINDING_TYPE
    accounts_per_run: int = DEFAULT_ACCOUNTS_PER_RUN  # the scheduled canary
    interval_minutes: int = 60  # the scheduled canary's period: its rotation step

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CanarySettings:
        env = os.environ if environ is None else environ
        return cls(
            stream_arn=parse_stream_arn(
                "DESTINATION_STREAM_ARN", env.get("DESTINATION_STREAM_ARN")
            ),
            timeout_seconds=_int(env, "CANARY_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS, 1, 3600),
            finding_type=parse_finding_type(
                "CANARY_FINDING_TYPE", env.get("CANARY_FINDING_TYPE") or DEFAULT_FINDING_TYPE
            ),
            accounts_per_run=_int(
                env, "CANARY_ACCOUNTS_PER_RUN", DEFAULT_ACCOUNTS_PER_RUN, 1, 1000
            ),
            interval_minutes=_int(env, "CANARY_INTERVAL_MINUTES", 60, 1, 1440),
        )


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = (env.get(name) or "").strip() or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"{raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(name, f"{value} is not between {low} and {high}")
    return value


def parse_stream_arn(name: str, value: str | None) -> str:
    value = (value or "").strip()
    if not value:
        raise ConfigError(name, "is required: the destination stream the canary watches")
    if not STREAM_ARN.match(value):
        raise ConfigError(name, f"{value!r} is not a Kinesis stream ARN")
    return value


def parse_finding_type(name: str, value: str) -> str:
    if not FINDING_TYPE.match(value):
        raise ConfigError(
            name, f"{value!r} is not a GuardDuty finding type (e.g. {DEFAULT_FINDING_TYPE})"
        )
    return value


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryResult:
    """One account x region: arrived (with its latency), missing, skipped or failed."""

    account_id: str
    region: str
    status: CanaryStatus
    reason: str = ""
    error: str | None = None
    called_at: datetime | None = None
    arrived_at: datetime | None = None
    shard_id: str | None = None
    sequence_number: str | None = None

    @property
    def latency_seconds(self) -> float | None:
        if self.called_at is None or self.arrived_at is None:
            return None
        return round((self.arrived_at - self.called_at).total_seconds(), 3)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "account_id": self.account_id,
            "region": self.region,
            "status": self.status,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.error:
            out["error"] = self.error
        if self.called_at:
            out["called_at"] = _iso(self.called_at)
        if self.arrived_at:
            out["arrived_at"] = _iso(self.arrived_at)
            out["latency_seconds"] = self.latency_seconds
            out["shard_id"] = self.shard_id
            out["sequence_number"] = self.sequence_number
        return out


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class CanaryReport:
    """Every result of one canary run, in account then region order."""

    started_at: datetime
    stream_arn: str
    finding_type: str
    timeout_seconds: int
    results: tuple[CanaryResult, ...]

    @property
    def ok(self) -> bool:
        """Nothing missing, nothing failed (skipped regions are reported, not failures)."""
        return all(r.status in ("arrived", "skipped") for r in self.results)

    @property
    def totals(self) -> dict[str, int]:
        return {s: sum(1 for r in self.results if r.status == s) for s in STATUSES}

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "watershed-canary",
            "started_at": _iso(self.started_at),
            "stream_arn": self.stream_arn,
            "finding_type": self.finding_type,
            "timeout_seconds": self.timeout_seconds,
            "ok": self.ok,
            "totals": self.totals,
            "results": [r.as_dict() for r in self.results],
        }


def render_table(report: CanaryReport) -> str:
    lines = [
        f"canary: {report.finding_type} sample findings, watched on {report.stream_arn} "
        f"for up to {report.timeout_seconds} s"
    ]
    lines.append(f"{'ACCOUNT':<12}  {'REGION':<15} {'STATUS':<8} DETAIL")
    for r in report.results:
        if r.status == "arrived":
            detail = f"{r.latency_seconds:.1f} s ({r.shard_id})"
        else:
            detail = (f"[{r.error}] " if r.error else "") + r.reason
        lines.append(f"{r.account_id:<12}  {r.region:<15} {r.status:<8} {detail}")
    lines.append(
        "canary: "
        + ", ".join(f"{n} {s}" for s, n in report.totals.items())
        + ("" if report.ok else " - NOT OK")
    )
    return "\n".join(lines)


@dataclass(frozen=True)
class CanaryResults:
    """A saved `watershed canary --json` report, read back for the audit (`--canary-results`)."""

    source: str
    started_at: str
    finding_type: str
    results: tuple[dict[str, Any], ...]

    def cell(self, account_id: str, region: str) -> dict[str, Any] | None:
        for result in self.results:
            if (result["account_id"], result["region"]) == (account_id, region):
                return result
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "started_at": self.started_at,
            "finding_type": self.finding_type,
            "results": list(self.results),
        }


def load_results(text: str, source: str) -> CanaryResults:
    """Parse a canary JSON report; raises InvalidRequest naming the file and what is wrong."""
    try:
        document = json.loads(text)
    except ValueError as err:
        raise InvalidRequest(f"{source}: not JSON ({err})") from None
    if not isinstance(document, dict) or document.get("kind") != "watershed-canary":
        raise InvalidRequest(f"{source}: not a `watershed canary --json` report")
    results = document.get("results")
    if not isinstance(results, list):
        raise InvalidRequest(f"{source}: no results list")
    for n, result in enumerate(results):
        if not isinstance(result, dict):
            raise InvalidRequest(f"{source}: result {n} is not an object")
        account, region = result.get("account_id"), result.get("region")
        if not isinstance(account, str) or not ACCOUNT_ID.match(account):
            raise InvalidRequest(f"{source}: result {n}: account_id {account!r} is not 12 digits")
        if not isinstance(region, str) or not REGION_NAME.match(region):
            raise InvalidRequest(f"{source}: result {n}: region {region!r} is not a region name")
        if result.get("status") not in STATUSES:
            raise InvalidRequest(f"{source}: result {n}: status {result.get('status')!r} unknown")
    return CanaryResults(
        source,
        str(document.get("started_at", "")),
        str(document.get("finding_type", "")),
        tuple(results),
    )


# --- matching -----------------------------------------------------------------------------


def canary_key(record: Mapping[str, Any], finding_type: str) -> tuple[str, str] | None:
    """(account, region) when the record is a GuardDuty sample finding of `finding_type`."""
    try:
        document = json.loads(record["Data"])
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(document, dict) or document.get("source") != "aws.guardduty":
        return None
    detail = document.get("detail")
    if not isinstance(detail, dict) or detail.get("type") != finding_type:
        return None
    service = detail.get("service")
    info = service.get("additionalInfo") if isinstance(service, dict) else None
    if not isinstance(info, dict) or info.get("sample") is not True:
        return None
    account, region = document.get("account"), document.get("region")
    if not isinstance(account, str) or not isinstance(region, str):
        return None
    return account, region


def _arrival(record: Mapping[str, Any]) -> datetime:
    value = record["ApproximateArrivalTimestamp"]
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), tz=UTC)


# --- raising ------------------------------------------------------------------------------


@dataclass
class _Pending:
    account_id: str
    region: str
    called_at: datetime


@dataclass
class _AccountOutcome:
    raised: list[_Pending] = field(default_factory=list)
    done: list[CanaryResult] = field(default_factory=list)


GUARDDUTY_OFF_REASON = (
    "GUARDDUTY=off: GuardDuty belongs to another team here, watershed makes no GuardDuty call"
)


def _skip_reason(guardduty: Any) -> tuple[str | None, str | None]:
    """(detector id, None) when a sample finding may be raised here, else (None, reason)."""
    ids = guardduty.list_detectors().get("DetectorIds", [])
    if not ids:
        return None, "GuardDuty off: no detector in this region"
    detector_id = sorted(ids)[0]
    status = guardduty.get_detector(DetectorId=detector_id).get("Status", "DISABLED")
    if status != "ENABLED":
        return None, f"GuardDuty detector {detector_id} is {status} (suspended)"
    administrator = administrator_of(guardduty, detector_id)  # "Enabled" (AWS) or "ENABLED" (moto)
    if administrator:
        return None, (
            f"GuardDuty managed by administrator account {administrator}: "
            "the canary does not raise findings in a detector another account manages"
        )
    return detector_id, None


Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


class Canary:
    """Raises sample findings through the onboarding session chain and watches the stream.

    `clock` and `sleep` are injected: tests advance time, and the sandbox lets its pollers run
    (the relay delivers) while the canary "sleeps"."""

    def __init__(
        self,
        settings: Settings,
        canary: CanarySettings,
        factory: SessionFactory | None = None,
        clock: Clock = _now,
        sleep: Callable[[float], None] = time.sleep,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        match_tolerance: timedelta = MATCH_TOLERANCE,
    ) -> None:
        self.settings = settings
        self.canary = canary
        self.factory = factory or SessionFactory(settings)
        self.clock = clock
        self.sleep = sleep
        self.poll_seconds = poll_seconds
        self.match_tolerance = match_tolerance

    def stream_region(self) -> str:
        return self.canary.stream_arn.split(":")[3]

    def open_watch(self, start: datetime) -> StreamWatch:
        kinesis = self.factory.own().client("kinesis", self.stream_region())
        watch = StreamWatch(kinesis, self.canary.stream_arn, start - CLOCK_SKEW)
        watch.open()
        return watch

    def run(
        self,
        accounts: Sequence[str],
        regions: Sequence[str] | None = None,
        timeout_seconds: int | None = None,
    ) -> CanaryReport:
        """Raise one sample finding per account x region, then wait for each to arrive."""
        timeout = timeout_seconds or self.canary.timeout_seconds
        regions = tuple(regions or self.settings.hub_regions)
        started = self.clock()
        watch = self.open_watch(started)  # the starting point, before the first call
        unique = list(dict.fromkeys(accounts))
        with ThreadPoolExecutor(max_workers=max(1, min(ACCOUNT_WORKERS, len(unique)))) as pool:
            outcomes = list(pool.map(lambda account: self._raise(account, regions), unique))
        pending = {(p.account_id, p.region): p for o in outcomes for p in o.raised}
        arrived: dict[tuple[str, str], CanaryResult] = {}
        deadline = max((p.called_at for p in pending.values()), default=started) + timedelta(
            seconds=timeout
        )
        while pending:
            for record in watch.poll():
                key = canary_key(record, self.canary.finding_type)
                hit = pending.get(key) if key else None
                if hit is None or _arrival(record) < hit.called_at - self.match_tolerance:
                    continue
                arrived[key] = CanaryResult(
                    hit.account_id,
                    hit.region,
                    "arrived",
                    called_at=hit.called_at,
                    arrived_at=_arrival(record),
                    shard_id=record["ShardId"],
                    sequence_number=record["SequenceNumber"],
                )
                del pending[key]
            if not pending or self.clock() >= deadline:
                break
            self.sleep(self.poll_seconds)
        results = [r for o in outcomes for r in o.done] + list(arrived.values())
        results += [
            CanaryResult(
                p.account_id,
                p.region,
                "missing",
                reason=f"no sample finding reached the stream within {timeout} s",
                called_at=p.called_at,
            )
            for p in pending.values()
        ]
        results.sort(key=lambda r: (r.account_id, r.region))
        return CanaryReport(
            started, self.canary.stream_arn, self.canary.finding_type, timeout, tuple(results)
        )

    def _raise(self, account_id: str, regions: Sequence[str]) -> _AccountOutcome:
        outcome = _AccountOutcome()
        if self.settings.guardduty_mode == "off":  # GuardDuty is another team's: not one call
            outcome.done += [
                CanaryResult(account_id, r, "skipped", GUARDDUTY_OFF_REASON) for r in regions
            ]
            return outcome
        try:
            session = self.factory.for_account(account_id)
            ec2 = session.client("ec2", self.settings.home_region)
            selection = select_regions(regions, region_statuses(ec2))
        except StepFailed as err:
            outcome.done += [
                CanaryResult(account_id, r, "failed", f"{err.step}: {err}", err.code)
                for r in regions
            ]
            return outcome
        except (ClientError, BotoCoreError) as err:
            outcome.done += [
                CanaryResult(account_id, r, "failed", f"regions: {err}", error_code(err))
                for r in regions
            ]
            return outcome
        outcome.done += [
            CanaryResult(account_id, r, "skipped", why) for r, why in selection.skipped.items()
        ]

        def one(region: str) -> _Pending | CanaryResult:
            guardduty = session.client("guardduty", region)
            try:
                detector_id, why = _skip_reason(guardduty)
                if detector_id is None:
                    return CanaryResult(account_id, region, "skipped", why or "")
                called_at = self.clock()  # before the call: the finding cannot exist earlier
                guardduty.create_sample_findings(
                    DetectorId=detector_id, FindingTypes=[self.canary.finding_type]
                )
            except (ClientError, BotoCoreError) as err:
                return CanaryResult(
                    account_id, region, "failed", f"guardduty: {err}", error_code(err)
                )
            return _Pending(account_id, region, called_at)

        workers = max(1, min(self.settings.region_workers, len(selection.configure)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for item in pool.map(one, selection.configure):
                if isinstance(item, _Pending):
                    outcome.raised.append(item)
                else:
                    outcome.done.append(item)
        return outcome


# --- the scheduled canary's rotation -------------------------------------------------------


def organization_accounts(canary: Canary) -> list[str]:
    """Every ACTIVE account that is not excluded (EXCLUDED_ACCOUNTS, EXCLUDED_OUS), sorted:
    the same bulk ListAccounts reads as a backfill (onboarding/queue/backfill.py)."""
    organizations = canary.factory.management().client("organizations", canary.settings.home_region)
    selection = select_accounts(organizations, Exclusions.from_settings(canary.settings))
    return sorted(selection.accounts)


def without_tagged(canary: Canary, accounts: Sequence[str]) -> list[str]:
    """`accounts` minus those carrying EXCLUDE_TAG (one ListTagsForResource each, as onboarding
    checks it): an account watershed does not onboard is not canaried either."""
    exclusions = Exclusions.from_settings(canary.settings)
    if not exclusions.tag:
        return list(accounts)
    organizations = canary.factory.management().client("organizations", canary.settings.home_region)
    return [a for a in accounts if not exclusions.tag_reason(organizations, a)]


def run_index(moment: datetime, interval_minutes: int) -> int:
    """The scheduled run `moment` belongs to: runs are numbered by the schedule's period."""
    return int(moment.timestamp() // (interval_minutes * 60))


def rotation(accounts: Iterable[str], per_run: int, index: int) -> list[str]:
    """The `per_run` accounts of run `index`: consecutive slices of the sorted list, wrapping.

    Stateless: run k checks sorted[k*n mod N : ... + n]. Every account is checked once every
    ceil(N / n) runs while the organization does not change; an account that joins or leaves
    shifts the slices by one, so a neighbour may be checked twice or wait one extra cycle."""
    ordered = sorted(set(accounts))
    if not ordered:
        return []
    if per_run >= len(ordered):
        return ordered
    start = (index * per_run) % len(ordered)
    return [ordered[(start + i) % len(ordered)] for i in range(per_run)]
