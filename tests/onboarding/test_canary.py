"""The end-to-end canary (onboarding/canary/canary.py, `watershed canary`) against moto.

moto has no GuardDuty CreateSampleFindings and does not deliver EventBridge events to Kinesis.
Here a `before-call` hook, `Pipeline`, stands in for both: when the canary calls
CreateSampleFindings in an account and region, it writes the EventBridge envelope of a GuardDuty
sample finding (the shape of shared/aws-events.md, with GuardDuty's sample marker) onto the
destination stream, spread over its shards - unless that region is "broken", in which case
nothing arrives, as when a bus policy or a permission on the way is lost. The real path (member
bus, forwarding rule, Security bus policy, collect rule, relay) is covered by the sandbox's
canary act (tests/e2e/test_demo.py). Everything else - the member's regions, its detector, the
session chain, the stream reads - is moto's.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from onboarding.canary.canary import (
    DEFAULT_FINDING_TYPE,
    Canary,
    CanarySettings,
    canary_key,
    rotation,
    run_index,
)
from onboarding.canary.canary_stream import StreamWatch
from onboarding.cli import canary_cli, cli
from onboarding.sessions import SessionFactory
from onboarding.settings import Settings

SHARDS = 4
STREAM = "watershed"


class Clock:
    """Wall-clock time plus what the canary 'slept' (so a timeout passes in no real time)."""

    def __init__(self) -> None:
        self.offset = timedelta()
        self.sleeps = 0

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.offset += timedelta(seconds=seconds)


class Pipeline:
    """Stands in for GuardDuty's CreateSampleFindings plus the delivery path (module docstring)."""

    def __init__(self, kinesis, stream_arn: str, broken: set[str] = frozenset()) -> None:
        self.kinesis = kinesis
        self.stream_arn = stream_arn
        self.broken = set(broken)
        self.calls: list[tuple[str, str, list[str]]] = []
        self.before_put = None  # e.g. reshard the stream mid-run
        self._next_shard = 0
        self._lock = threading.Lock()  # the canary calls regions from several threads

    def owner(self, detector_id: str, region: str) -> str:
        from moto.guardduty.models import guardduty_backends

        for account, regions in guardduty_backends.items():
            if region in regions and detector_id in regions[region].detectors:
                return account
        raise AssertionError(f"no account owns detector {detector_id} in {region}")

    def __call__(self, params, context, **_):
        region = context["client_region"]
        detector_id = params["url_path"].split("/")[2]
        types = json.loads(params["body"])["findingTypes"]
        account = self.owner(detector_id, region)
        with self._lock:
            self.calls.append((account, region, types))
            if self.before_put:
                self.before_put()
            if region not in self.broken:
                for finding_type in types:
                    self.put(envelope(account, region, detector_id, finding_type))
        return AWSResponse("https://stand-in.invalid", 200, {}, None), {
            "ResponseMetadata": {"HTTPStatusCode": 200}
        }

    def put(self, document: dict) -> None:
        """One record, on the shards in turn (explicit hash keys), as spread keys would land."""
        shards = [
            s
            for s in self.kinesis.list_shards(StreamARN=self.stream_arn)["Shards"]
            if "EndingSequenceNumber" not in s["SequenceNumberRange"]
        ]
        shard = shards[self._next_shard % len(shards)]
        self._next_shard += 1
        self.kinesis.put_record(
            StreamARN=self.stream_arn,
            Data=json.dumps(document).encode(),
            PartitionKey=document["id"],
            ExplicitHashKey=shard["HashKeyRange"]["StartingHashKey"],
        )


def envelope(account: str, region: str, detector_id: str, finding_type: str, sample=True) -> dict:
    """The EventBridge envelope of a GuardDuty sample finding (shared/aws-events.md shape)."""
    finding_id = uuid.uuid4().hex
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    service = {
        "serviceName": "guardduty",
        "detectorId": detector_id,
        "archived": False,
        "count": 1,
        "eventFirstSeen": now,
        "eventLastSeen": now,
        "resourceRole": "TARGET",
    }
    if sample is not None:
        service["additionalInfo"] = {"sample": sample}
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": account,
        "time": now[:19] + "Z",
        "region": region,
        "resources": [],
        "detail": {
            "schemaVersion": "2.0",
            "accountId": account,
            "region": region,
            "partition": "aws",
            "id": finding_id,
            "arn": f"arn:aws:guardduty:{region}:{account}:detector/{detector_id}"
            f"/finding/{finding_id}",
            "type": finding_type,
            "resource": {"resourceType": "Instance"},
            "service": service,
            "severity": 2,
            "createdAt": now,
            "updatedAt": now,
            "title": f"[SAMPLE] {finding_type}",
            "description": "sample",
        },
    }


@pytest.fixture
def security(org, reader) -> boto3.Session:
    return reader.session(org.security)


@pytest.fixture
def stream_arn(security) -> str:
    kinesis = security.client("kinesis", region_name="us-east-1")
    kinesis.create_stream(StreamName=STREAM, ShardCount=SHARDS)
    return kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"][
        "StreamARN"
    ]


@pytest.fixture
def kinesis(security):
    return security.client("kinesis", region_name="us-east-1")


def enable_guardduty(reader, account: str, regions) -> None:
    for region in regions:
        reader.client(account, "guardduty", region).create_detector(Enable=True)


@pytest.fixture
def members(org, reader, settings) -> list[str]:
    for account in (org.member, org.other_member):
        enable_guardduty(reader, account, settings.hub_regions)
    return [org.member, org.other_member]


def make_canary(settings, security, pipeline, clock, *extra_hooks, tolerance=None) -> Canary:
    hooks = [("before-call.guardduty.CreateSampleFindings", pipeline), *extra_hooks]
    factory = SessionFactory(settings, base_session=security, hooks=hooks)
    kwargs = {} if tolerance is None else {"match_tolerance": tolerance}
    return Canary(
        settings,
        CanarySettings(stream_arn=pipeline.stream_arn, timeout_seconds=60),
        factory,
        clock=clock.now,
        sleep=clock.sleep,
        poll_seconds=5,
        **kwargs,
    )


def administrator_answer(status_by_region: dict[str, str]):
    """A before-call hook answering GetAdministratorAccount with administrator 999999999999 in
    the regions named (with that RelationshipStatus): moto cannot relate a member to one."""

    def answer(model, context, **_):
        status = status_by_region.get(context["client_region"])
        if model.name == "GetAdministratorAccount" and status:
            admin = {"AccountId": "999999999999", "RelationshipStatus": status}
            body = {"Administrator": admin, "ResponseMetadata": {"HTTPStatusCode": 200}}
            return AWSResponse("https://injected.invalid", 200, {}, None), body
        return None

    return answer


def by_cell(report) -> dict:
    return {(r.account_id, r.region): r for r in report.results}


# --- arrival, not arrived, skipped ---------------------------------------------------------


def test_every_configured_region_arrives_with_a_latency_across_several_shards(
    settings, security, stream_arn, kinesis, members
):
    # Given two members with GuardDuty in every hub region and a 4-shard destination stream
    pipeline = Pipeline(kinesis, stream_arn)
    clock = Clock()
    # When the canary runs over both
    report = make_canary(settings, security, pipeline, clock).run(members)
    # Then every account x region arrived, with a non-negative latency, read from several shards
    cells = by_cell(report)
    assert set(cells) == {(a, r) for a in members for r in settings.hub_regions}
    assert {r.status for r in report.results} == {"arrived"}
    assert all(0 <= r.latency_seconds < 5 for r in report.results)
    assert len({r.shard_id for r in report.results}) == SHARDS
    assert report.ok
    # the finding raised was exactly one of the canary's type per account x region
    assert sorted((a, r) for a, r, _ in pipeline.calls) == sorted(cells)
    assert {tuple(t) for _, _, t in pipeline.calls} == {(DEFAULT_FINDING_TYPE,)}
    assert clock.sleeps == 0  # everything was there at the first poll: no waiting


def test_a_broken_region_is_reported_not_arrived_after_the_timeout(
    settings, security, stream_arn, kinesis, members
):
    pipeline = Pipeline(kinesis, stream_arn, broken={"eu-central-1"})
    clock = Clock()
    report = make_canary(settings, security, pipeline, clock).run(members)
    cells = by_cell(report)
    for account in members:
        assert cells[(account, "eu-central-1")].status == "missing"
        assert "within 60 s" in cells[(account, "eu-central-1")].reason
        assert cells[(account, "eu-central-1")].latency_seconds is None
        assert cells[(account, "us-east-1")].status == "arrived"
        assert cells[(account, "eu-west-1")].status == "arrived"
    assert not report.ok
    assert clock.sleeps == 60 // 5  # polled until the timeout, one poll per interval
    assert report.as_dict()["totals"] == {"arrived": 4, "missing": 2, "skipped": 0, "failed": 0}


def test_a_region_the_member_has_not_enabled_is_skipped_and_never_called(
    org, reader, security, stream_arn, kinesis
):
    # ap-east-1 is an opt-in region moto reports as not-opted-in
    settings = Settings(
        security_account_id=org.security,
        management_account_id=org.management,
        hub_regions=("us-east-1", "ap-east-1"),
        home_region="us-east-1",
    )
    enable_guardduty(reader, org.member, ["us-east-1"])
    pipeline = Pipeline(kinesis, stream_arn)
    report = make_canary(settings, security, pipeline, Clock()).run([org.member])
    cells = by_cell(report)
    assert cells[(org.member, "ap-east-1")].status == "skipped"
    assert "not enabled" in cells[(org.member, "ap-east-1")].reason
    assert cells[(org.member, "us-east-1")].status == "arrived"
    assert [(a, r) for a, r, _ in pipeline.calls] == [(org.member, "us-east-1")]
    assert report.ok  # a skip is reported, not a failure


def test_guardduty_off_suspended_or_managed_elsewhere_is_skipped_with_which(
    org, reader, settings, security, stream_arn, kinesis
):
    # Given: no detector in eu-west-1, a suspended one in eu-central-1, and in us-east-1 one that
    # a GuardDuty administrator manages (moto cannot create the relationship: the answer of
    # GetAdministratorAccount is injected)
    enable_guardduty(reader, org.member, ["us-east-1"])
    suspended = reader.client(org.member, "guardduty", "eu-central-1").create_detector(Enable=False)
    assert suspended["DetectorId"]

    administrator = administrator_answer({"us-east-1": "Enabled"})
    pipeline = Pipeline(kinesis, stream_arn)
    canary = make_canary(settings, security, pipeline, Clock(), ("before-call", administrator))
    cells = by_cell(canary.run([org.member]))
    assert cells[(org.member, "eu-west-1")].reason == "GuardDuty off: no detector in this region"
    assert "suspended" in cells[(org.member, "eu-central-1")].reason
    assert "administrator account 999999999999" in cells[(org.member, "us-east-1")].reason
    assert {r.status for r in cells.values()} == {"skipped"}
    assert pipeline.calls == []  # nothing raised anywhere


def test_an_administrator_relationship_in_either_spelling_is_managed_elsewhere(
    org, reader, settings, security, stream_arn, kinesis
):
    # AWS answers RelationshipStatus "Enabled", moto "ENABLED" (injected: moto cannot relate
    # a member to an administrator): both mean another account manages the detector.
    enable_guardduty(reader, org.member, settings.hub_regions)

    spellings = {r: "ENABLED" if r == "us-east-1" else "Enabled" for r in settings.hub_regions}
    administrator = administrator_answer(spellings)
    pipeline = Pipeline(kinesis, stream_arn)
    canary = make_canary(settings, security, pipeline, Clock(), ("before-call", administrator))
    cells = by_cell(canary.run([org.member]))
    assert {r.status for r in cells.values()} == {"skipped"}
    assert all("administrator account 999999999999" in r.reason for r in cells.values())
    assert pipeline.calls == []


def test_guardduty_off_makes_the_canary_skip_without_any_guardduty_call(
    org, reader, settings, security, stream_arn, kinesis
):
    # GUARDDUTY=off: the organization's GuardDuty belongs to another team; the canary must not
    # raise (or even look for) findings in their detectors.
    enable_guardduty(reader, org.member, settings.hub_regions)
    guardduty_calls: list[str] = []

    def record(model, **_):
        guardduty_calls.append(model.name)

    pipeline = Pipeline(kinesis, stream_arn)
    off = replace(settings, guardduty_mode="off")
    canary = make_canary(off, security, pipeline, Clock(), ("before-call.guardduty", record))
    report = canary.run([org.member])
    assert {r.status for r in report.results} == {"skipped"}
    assert {r.region for r in report.results} == set(settings.hub_regions)
    assert all("GUARDDUTY=off" in r.reason for r in report.results)
    assert guardduty_calls == [] and pipeline.calls == []


def test_an_account_that_cannot_be_reached_fails_every_region(
    org, settings, security, stream_arn, kinesis
):
    pipeline = Pipeline(kinesis, stream_arn)

    def deny(model, **_):
        if model.name == "AssumeRole":
            body = {
                "Error": {"Code": "AccessDenied", "Message": "not authorized"},
                "ResponseMetadata": {"HTTPStatusCode": 403},
            }
            return AWSResponse("https://injected.invalid", 403, {}, None), body
        return None

    canary = make_canary(settings, security, pipeline, Clock(), ("before-call", deny))
    report = canary.run([org.member])
    assert {(r.status, r.error) for r in report.results} == {("failed", "AccessDenied")}
    assert len(report.results) == len(settings.hub_regions)
    assert not report.ok


# --- what counts as the canary's finding, and where the stream is read from -----------------


def test_records_before_the_call_and_lookalikes_do_not_count(
    org, reader, settings, security, stream_arn, kinesis
):
    enable_guardduty(reader, org.member, ["us-east-1"])
    detector = reader.client(org.member, "guardduty", "us-east-1").list_detectors()["DetectorIds"][
        0
    ]
    pipeline = Pipeline(kinesis, stream_arn, broken={"us-east-1"})
    # an earlier sample finding of the same type from the same account and region
    pipeline.put(envelope(org.member, "us-east-1", detector, DEFAULT_FINDING_TYPE))
    time.sleep(0.05)
    later = []

    def lookalikes():  # arrive after the call, but are not the canary's finding
        for document in (
            envelope(org.member, "us-east-1", detector, DEFAULT_FINDING_TYPE, sample=None),
            envelope(org.member, "us-east-1", detector, "Recon:EC2/Portscan"),
            envelope(org.other_member, "us-east-1", detector, DEFAULT_FINDING_TYPE),
            envelope(org.member, "eu-west-1", detector, DEFAULT_FINDING_TYPE),
        ):
            pipeline.put(document)
        later.append(True)

    pipeline.before_put = lookalikes
    settings_one = Settings(
        security_account_id=org.security,
        management_account_id=org.management,
        hub_regions=("us-east-1",),
    )
    report = make_canary(settings_one, security, pipeline, Clock(), tolerance=timedelta(0)).run(
        [org.member]
    )
    assert later
    (result,) = report.results
    assert result.status == "missing"


def test_the_stream_is_read_from_the_recorded_start_on_every_shard(stream_arn, kinesis):
    pipeline = Pipeline(kinesis, stream_arn)
    for _ in range(SHARDS):
        pipeline.put({"id": "before", "n": 0})
    time.sleep(1.1)  # AT_TIMESTAMP: whole milliseconds on Kinesis' clock
    start = datetime.now(UTC)
    watch = StreamWatch(kinesis, stream_arn, start)
    watch.open()
    for n in range(SHARDS * 2):
        pipeline.put({"id": f"after-{n}", "n": n})
    records = watch.poll()
    assert sorted(json.loads(r["Data"])["id"] for r in records) == sorted(
        f"after-{n}" for n in range(SHARDS * 2)
    )
    assert len({r["ShardId"] for r in records}) == SHARDS
    assert watch.poll() == []  # nothing new: nothing read twice
    pipeline.put({"id": "later", "n": 99})
    assert [json.loads(r["Data"])["id"] for r in watch.poll()] == ["later"]


@pytest.fixture
def puts_go_to_open_shards(monkeypatch):
    """moto routes a put by hash key to the first shard whose range holds it, closed parents
    included; AWS writes only to open shards. This restores AWS's behaviour after a reshard."""
    from moto.kinesis.models import Stream

    def get_shard_for_key(self, partition_key, explicit_hash_key):
        key = int(explicit_hash_key) if explicit_hash_key else None
        if key is None:
            return original(self, partition_key, explicit_hash_key)
        return next(
            s for s in self.shards.values() if s.is_open and s.starting_hash <= key < s.ending_hash
        )

    original = Stream.get_shard_for_key
    monkeypatch.setattr(Stream, "get_shard_for_key", get_shard_for_key)


def test_throttled_and_expired_reads_are_survived_without_losing_a_record(stream_arn, kinesis):
    # Fault injected (moto neither throttles nor expires iterators): the first GetRecords of
    # the first shard is throttled - the SIEM shares the shard's 5 reads/s - and the next one
    # finds its iterator expired (they live 5 minutes)
    pipeline = Pipeline(kinesis, stream_arn)
    watch = StreamWatch(kinesis, stream_arn, datetime.now(UTC) - timedelta(seconds=1))
    watch.open()
    for n in range(SHARDS * 2):
        pipeline.put({"id": f"r-{n}", "n": n})
    faults = ["ProvisionedThroughputExceededException", "ExpiredIteratorException"]

    def inject(model, **_):
        if model.name == "GetRecords" and faults:
            code = faults.pop(0)
            body = {"Error": {"Code": code, "Message": "injected"}}
            return AWSResponse("https://injected.invalid", 400, {}, None), {
                **body,
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
        return None

    kinesis.meta.events.register("before-call.kinesis.GetRecords", inject)
    try:
        first = watch.poll()  # shard 0 throttled: skipped this poll, the others read
        second = watch.poll()  # shard 0: expired, renewed from the start, read
        third = watch.poll()
    finally:
        kinesis.meta.events.unregister("before-call.kinesis.GetRecords", inject)
    ids = sorted(json.loads(r["Data"])["id"] for r in first + second + third)
    assert ids == sorted(f"r-{n}" for n in range(SHARDS * 2))  # each exactly once
    assert faults == []
    assert {r["ShardId"] for r in first} == {f"shardId-{n:012d}" for n in range(1, SHARDS)}


def test_a_reshard_during_the_run_is_followed_into_the_child_shards(
    settings, security, stream_arn, kinesis, members, puts_go_to_open_shards
):
    # Given the stream is split while the canary runs (after its starting point was taken)
    pipeline = Pipeline(kinesis, stream_arn)
    resharded = []

    def split_once():
        if not resharded:
            kinesis.update_shard_count(
                StreamARN=stream_arn, TargetShardCount=SHARDS * 2, ScalingType="UNIFORM_SCALING"
            )
            resharded.append(True)

    pipeline.before_put = split_once
    report = make_canary(settings, security, pipeline, Clock()).run(members)
    # Then every finding, all written to shards created after the start, was found
    assert resharded and report.ok
    open_shards = {
        s["ShardId"]
        for s in kinesis.list_shards(StreamARN=stream_arn)["Shards"]
        if "EndingSequenceNumber" not in s["SequenceNumberRange"]
    }
    assert open_shards and {r.shard_id for r in report.results} <= open_shards
    original = {f"shardId-{n:012d}" for n in range(SHARDS)}
    assert not {r.shard_id for r in report.results} & original


def test_canary_key_reads_only_guardduty_sample_findings():
    def record(document) -> dict:
        return {"Data": json.dumps(document).encode()}

    good = envelope("123456789012", "eu-west-1", "d" * 32, DEFAULT_FINDING_TYPE)
    assert canary_key(record(good), DEFAULT_FINDING_TYPE) == ("123456789012", "eu-west-1")
    assert canary_key(record(good), "Recon:EC2/Portscan") is None
    for sample in (None, False, "true"):
        lookalike = envelope("123456789012", "eu-west-1", "d" * 32, DEFAULT_FINDING_TYPE, sample)
        assert canary_key(record(lookalike), DEFAULT_FINDING_TYPE) is None
    assert canary_key({"Data": b"not json"}, DEFAULT_FINDING_TYPE) is None
    assert canary_key(record({**good, "source": "custom.guardduty"}), DEFAULT_FINDING_TYPE) is None


# --- the command line ---------------------------------------------------------------------


@pytest.fixture
def cli_with_pipeline(monkeypatch, settings, security, stream_arn, kinesis, org_env):
    """`watershed canary` with its Canary built around the stand-in pipeline and clock."""
    pipeline = Pipeline(kinesis, stream_arn)
    clock = Clock()

    def build(settings_, canary_settings):
        hooks = [("before-call.guardduty.CreateSampleFindings", pipeline)]
        factory = SessionFactory(settings_, base_session=security, hooks=hooks)
        return Canary(settings_, canary_settings, factory, clock=clock.now, sleep=clock.sleep)

    monkeypatch.setattr(canary_cli, "Canary", build)
    org_env(AWS_REGION="us-east-1", DESTINATION_STREAM_ARN=stream_arn)
    return pipeline


def test_cli_exits_non_zero_naming_the_region_that_did_not_arrive(
    cli_with_pipeline, members, capsys
):
    cli_with_pipeline.broken = {"eu-west-1"}
    code = cli.main(["canary", *members, "--timeout", "30"])
    out = capsys.readouterr().out
    assert code == 1
    missing = [line for line in out.splitlines() if " missing " in line]
    assert len(missing) == 2 and all("eu-west-1" in line for line in missing)
    assert "NOT OK" in out


def test_cli_all_canaries_the_organization_but_not_tagged_exclusions(
    org, reader, cli_with_pipeline, members, capsys, monkeypatch
):
    # Given the other member carries the exclusion tag, and a launcher to list the organization
    orgs = reader.client(org.management, "organizations")
    orgs.tag_resource(ResourceId=org.other_member, Tags=[{"Key": "watershed", "Value": "skip"}])
    monkeypatch.setenv("EXCLUDE_TAG", "watershed=skip")
    monkeypatch.setenv("LAUNCHER_ROLE_ARN", f"arn:aws:iam::{org.management}:role/launcher")
    code = cli.main(["canary", "--all", "--regions", "us-east-1", "--json"])
    document = json.loads(capsys.readouterr().out)
    accounts = {r["account_id"] for r in document["results"]}
    assert accounts == {org.management, org.security, org.member}
    assert code == 0  # the management and Security accounts have no detector here: skipped
    assert {r["status"] for r in document["results"] if r["account_id"] != org.member} == {
        "skipped"
    }


def test_cli_json_report_and_exit_zero_when_everything_arrived(cli_with_pipeline, members, capsys):
    code = cli.main(["canary", members[0], "--regions", "us-east-1,eu-west-1", "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert document["ok"] is True
    assert [(r["region"], r["status"]) for r in document["results"]] == [
        ("eu-west-1", "arrived"),
        ("us-east-1", "arrived"),
    ]
    assert all(r["latency_seconds"] >= 0 for r in document["results"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["canary"], "give account ids or --all"),
        (["canary", "--all", "123456789012"], "give account ids or --all"),
        (["canary", "12345"], "'12345' is not 12 digits"),
        (["canary", "123456789012", "--timeout", "0"], "--timeout 0 is not"),
        (["canary", "123456789012", "--regions", "ap-south-1"], "not in HUB_REGIONS"),
        (["canary", "123456789012", "--finding-type", "x"], "not a GuardDuty finding type"),
        (["canary", "123456789012", "--stream-arn", "arn:aws:sqs:x"], "not a Kinesis stream"),
    ],
)
def test_cli_refuses_bad_arguments_before_any_call(cli_with_pipeline, capsys, argv, message):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert cli_with_pipeline.calls == []


def test_cli_without_a_stream_names_the_variable(org_env, capsys, monkeypatch):
    org_env()
    monkeypatch.delenv("DESTINATION_STREAM_ARN", raising=False)
    assert cli.main(["canary", "123456789012"]) == 2
    assert "DESTINATION_STREAM_ARN" in capsys.readouterr().err


# --- the scheduled canary's rotation --------------------------------------------------------


def test_rotation_walks_the_sorted_organization_in_slices_and_wraps():
    accounts = [f"{n:012d}" for n in (5, 1, 4, 2, 3)]
    runs = [rotation(accounts, 2, index) for index in range(5)]
    assert runs[0] == ["000000000001", "000000000002"]
    assert runs[1] == ["000000000003", "000000000004"]
    assert runs[2] == ["000000000005", "000000000001"]  # wraps
    covered = {a for run in runs[:3] for a in run}
    assert covered == set(accounts)  # ceil(5 / 2) = 3 runs cover everyone
    assert rotation(accounts, 10, 7) == sorted(accounts)
    assert rotation([], 3, 1) == []


def test_run_index_counts_periods_of_the_schedule():
    moment = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert run_index(moment + timedelta(minutes=59), 60) == run_index(moment, 60)
    assert run_index(moment + timedelta(minutes=60), 60) == run_index(moment, 60) + 1


# --- the scheduled canary -------------------------------------------------------------------


def emf_lines(text: str) -> list[dict]:
    """Powertools' EMF documents printed on stdout, metric values as lists."""
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    documents = [line for line in lines if "_aws" in line]
    for document in documents:
        for name in ("CanaryMissing", "EndToEndLatency"):
            if name in document and not isinstance(document[name], list):
                document[name] = [document[name]]
    return documents


def test_scheduled_runs_rotate_through_the_organization_and_publish_per_region_metrics(
    org, settings, security, stream_arn, kinesis, members, monkeypatch, capsys, lambda_context
):
    from onboarding.canary import canary_handler

    # Given: a launcher in the management account (to list the organization), 2 accounts per
    # run, hourly, eu-central-1 broken
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "watershed")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "canary")
    scheduled = Settings(
        security_account_id=org.security,
        management_account_id=org.management,
        hub_regions=settings.hub_regions,
        home_region="us-east-1",
        launcher_role_arn=f"arn:aws:iam::{org.management}:role/watershed-launcher",
    )
    pipeline = Pipeline(kinesis, stream_arn, broken={"eu-central-1"})
    clock = Clock()
    factory = SessionFactory(
        scheduled,
        base_session=security,
        hooks=[("before-call.guardduty.CreateSampleFindings", pipeline)],
    )
    service = Canary(
        scheduled,
        CanarySettings(stream_arn, timeout_seconds=30, accounts_per_run=2, interval_minutes=60),
        factory,
        clock=clock.now,
        sleep=clock.sleep,
    )
    monkeypatch.setattr(canary_handler, "canary", lambda: service)
    everyone = sorted([org.management, org.security, *members])

    # When the schedule fires at two consecutive hours
    chosen, outputs = [], []
    for hour in (6, 7):
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": org.security,
            "time": f"2026-11-30T0{hour}:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/watershed-canary"],
            "detail": {},
        }
        clock.offset = timedelta()  # the virtual wait of the previous run is not real time
        answer = canary_handler.lambda_handler(event, lambda_context)
        chosen.append(answer["accounts"])
        outputs.append(emf_lines(capsys.readouterr().out))

    # Then the two runs took consecutive slices of the sorted organization, covering everyone
    assert len(chosen[0]) == len(chosen[1]) == 2
    assert sorted(chosen[0] + chosen[1]) == everyone
    # and every run published, per region it raised in, the latency and the missing count
    for run, lines in zip(chosen, outputs, strict=True):
        raised = [a for a in run if a in members]  # the others have no GuardDuty: skipped
        by_region = {line["Region"]: line for line in lines if "Region" in line}
        if not raised:
            assert lines == []
            continue
        (total,) = [line for line in lines if "Region" not in line]
        assert total["CanaryMissing"] == [len(raised)]  # eu-central-1's, nothing else
        assert set(by_region) == set(settings.hub_regions)
        for region, line in by_region.items():
            (directive,) = line["_aws"]["CloudWatchMetrics"]
            assert directive["Namespace"] == "watershed"
            assert ["Region", "service"] in [sorted(d) for d in directive["Dimensions"]]
            if region == "eu-central-1":
                assert line["CanaryMissing"] == [len(raised)]
                assert "EndToEndLatency" not in line
            else:
                assert line["CanaryMissing"] == [0]
                latencies = line["EndToEndLatency"]
                assert len(latencies) == len(raised) and all(v >= 0 for v in latencies)
