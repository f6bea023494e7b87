"""Fixtures for the onboarding tests: a moto organization, readers into each account, a call
recorder that counts write calls, and a fault injector for what moto cannot produce."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import botocore.loaders
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "templates"))
from cfnmodel import declare_management_forwarder

from onboarding.service import Onboarder
from onboarding.sessions import SessionFactory
from onboarding.settings import Settings

EVENTS = Path(__file__).parent.parent / "events"
FIXTURE_MANAGEMENT, FIXTURE_SECURITY, FIXTURE_MEMBER = (
    "601234567890",
    "702345678901",
    "803456789012",
)

HUB_REGIONS = ("us-east-1", "eu-west-1", "eu-central-1")
READ_PREFIXES = ("Get", "List", "Describe")
NOT_WRITES = {"AssumeRole"}


@dataclass
class Org:
    management: str
    security: str
    member: str
    other_member: str


def merge_updated_features(monkeypatch) -> None:
    """moto's UpdateDetector replaces the detector's whole feature list with the one sent; AWS
    updates only the features named in the call ("the features that will be updated for the
    detector", API reference, UpdateDetector) and leaves the others as they are. This stands in
    for AWS, so a test can tell a plan watershed switched off from one moto dropped."""
    from moto.guardduty.models import Detector

    replace_all = Detector.update

    def update(self, enable, finding_publishing_frequency, data_sources, features):
        if features is not None:
            merged = {f["name"]: f for f in self.features}
            merged.update({f["name"]: f for f in features})
            features = list(merged.values())
        replace_all(self, enable, finding_publishing_frequency, data_sources, features)

    monkeypatch.setattr(Detector, "update", update)


@pytest.fixture
def aws(monkeypatch):
    # Onboarding calls only ec2:DescribeRegions; skip moto's per-account AMI catalogue (~0.4 s).
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    merge_updated_features(monkeypatch)
    with mock_aws():
        yield


@pytest.fixture
def org(aws) -> Org:
    client = boto3.client("organizations", region_name="us-east-1")
    client.create_organization(FeatureSet="ALL")
    management = client.describe_organization()["Organization"]["MasterAccountId"]

    def create(name: str) -> str:
        status = client.create_account(Email=f"{name}@example.com", AccountName=name)
        return status["CreateAccountStatus"]["AccountId"]

    found = Org(management, create("security"), create("member"), create("other"))
    # management.yaml declares the management account's forwarder role (onboarding only reads
    # it there): as deployed before any onboarding.
    iam = boto3.client("iam", region_name="us-east-1")  # moto's default account: management
    declare_management_forwarder(iam, management, found.security)
    return found


@pytest.fixture
def settings(org) -> Settings:
    return Settings(
        security_account_id=org.security,
        management_account_id=org.management,
        hub_regions=HUB_REGIONS,
        home_region="us-east-1",
    )


def env_for(org: Org, **extra: str) -> dict[str, str]:
    return {
        "SECURITY_ACCOUNT_ID": org.security,
        "MANAGEMENT_ACCOUNT_ID": org.management,
        "HUB_REGIONS": ",".join(HUB_REGIONS),
        **extra,
    }


@dataclass
class CallRecorder:
    """A botocore `before-parameter-build` hook: records (operation, region, API params)."""

    calls: list[tuple[str, str, dict]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, model, params, context, **_):
        with self.lock:
            self.calls.append((model.name, context.get("client_region"), dict(params)))

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [
            (op, region)
            for op, region, _ in self.calls
            if not op.startswith(READ_PREFIXES) and op not in NOT_WRITES
        ]

    def clear(self):
        with self.lock:
            self.calls.clear()


@dataclass
class Fault:
    operation: str
    code: str | None  # None: answer with `response` (HTTP 200) instead of an error
    message: str = "injected"
    response: dict | None = None
    region: str | None = None
    times: int | None = None  # None: every call
    before: object = None  # callable run just before the error is returned (e.g. win a race)


class FaultInjector:
    """A `before-call` hook returning an AWS error response for matching operations.

    Returning a response from `before-call` short-circuits botocore before moto sees the
    request, so the client raises exactly the ClientError AWS would have sent."""

    def __init__(self):
        self.faults: list[Fault] = []
        self.lock = threading.Lock()

    def add(self, operation: str, code: str | None, message: str = "injected", **kw) -> Fault:
        fault = Fault(operation, code, message, **kw)
        self.faults.append(fault)
        return fault

    def __call__(self, model, context, **_):
        region = context.get("client_region")
        with self.lock:
            for fault in self.faults:
                if fault.operation != model.name or fault.region not in (None, region):
                    continue
                if fault.times is not None:
                    if fault.times <= 0:
                        continue
                    fault.times -= 1
                break
            else:
                return None
        if fault.before:
            fault.before()
        if fault.code is None:
            ok = {**(fault.response or {}), "ResponseMetadata": {"HTTPStatusCode": 200}}
            return AWSResponse("https://injected.invalid", 200, {}, None), ok
        body = {
            "Error": {"Code": fault.code, "Message": fault.message},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://injected.invalid", 400, {}, None), body


@pytest.fixture
def recorder() -> CallRecorder:
    return CallRecorder()


@pytest.fixture
def faults() -> FaultInjector:
    return FaultInjector()


@pytest.fixture
def make_onboarder(settings, recorder, faults):
    def make(settings: Settings = settings) -> Onboarder:
        hooks = [("before-parameter-build", recorder), ("before-call", faults)]
        return Onboarder(settings, SessionFactory(settings, hooks=hooks))

    return make


@pytest.fixture
def onboarder(make_onboarder) -> Onboarder:
    return make_onboarder()


_LOADER = botocore.loaders.create_loader()  # parse each service model once for the whole run


def _session(**credentials) -> boto3.Session:
    core = botocore.session.get_session()
    core.register_component("data_loader", _LOADER)
    return boto3.Session(botocore_session=core, **credentials)


class Reader:
    """Reads an account's state back, as the account itself (assume-role from management)."""

    def __init__(self, org: Org):
        self.org = org
        self._sessions: dict[str, boto3.Session] = {}
        self._clients: dict[tuple, object] = {}

    def session(self, account_id: str) -> boto3.Session:
        if account_id == self.org.management:
            self._sessions.setdefault(account_id, _session())
        if account_id not in self._sessions:
            creds = boto3.client("sts", region_name="us-east-1").assume_role(
                RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
                RoleSessionName="test-reader",
            )["Credentials"]
            self._sessions[account_id] = _session(
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            )
        return self._sessions[account_id]

    def client(self, account_id: str, service: str, region: str = "us-east-1"):
        key = (account_id, service, region)
        if key not in self._clients:
            self._clients[key] = self.session(account_id).client(service, region_name=region)
        return self._clients[key]

    def detector(self, account_id: str, region: str) -> dict | None:
        gd = self.client(account_id, "guardduty", region)
        ids = gd.list_detectors()["DetectorIds"]
        if not ids:
            return None
        assert len(ids) == 1, f"{len(ids)} detectors in {account_id}/{region}"
        return {"DetectorId": ids[0], **gd.get_detector(DetectorId=ids[0])}

    def rule(self, account_id: str, region: str, name: str = "watershed-forward") -> dict | None:
        events = self.client(account_id, "events", region)
        rules = events.list_rules(NamePrefix=name)["Rules"]
        return next((r for r in rules if r["Name"] == name), None)

    def targets(self, account_id: str, region: str, name: str = "watershed-forward") -> list:
        events = self.client(account_id, "events", region)
        return events.list_targets_by_rule(Rule=name)["Targets"]

    def role(self, account_id: str, name: str = "watershed-forwarder") -> dict | None:
        iam = self.client(account_id, "iam")
        try:
            role = iam.get_role(RoleName=name)["Role"]
        except iam.exceptions.NoSuchEntityException:
            return None
        policies = {
            p: iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]
            for p in iam.list_role_policies(RoleName=name)["PolicyNames"]
        }
        return {"trust": role["AssumeRolePolicyDocument"], "policies": policies}

    def enabled_regions(self, account_id: str) -> list[str]:
        ec2 = self.client(account_id, "ec2")
        return [
            r["RegionName"]
            for r in ec2.describe_regions(AllRegions=True)["Regions"]
            if r["OptInStatus"] in ("opt-in-not-required", "opted-in")
            and not r["RegionName"].startswith(("cn-", "us-gov-"))
        ]


@pytest.fixture
def reader(org) -> Reader:
    return Reader(org)


def load_event(name: str, org: Org | None = None) -> dict:
    """A fixture event from tests/events, with its account ids replaced by moto's."""
    text = (EVENTS / f"{name}.json").read_text()
    if org is not None:
        text = (
            text.replace(FIXTURE_MANAGEMENT, org.management)
            .replace(FIXTURE_SECURITY, org.security)
            .replace(FIXTURE_MEMBER, org.member)
        )
    return json.loads(text)


@dataclass
class FakeLambdaContext:
    function_name: str = "watershed-onboarding"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:watershed-onboarding"
    )
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture
def event():
    """`event(name)`: a fixture event as written (fixture account ids)."""
    return load_event


@pytest.fixture
def org_event(org):
    """`org_event(name)`: a fixture event with the ids of the moto organization."""
    return lambda name: load_event(name, org)


@pytest.fixture
def fixture_settings() -> Settings:
    """Settings matching the fixture files' account ids (for parsing tests, no AWS)."""
    return Settings(
        security_account_id=FIXTURE_SECURITY,
        management_account_id=FIXTURE_MANAGEMENT,
        hub_regions=HUB_REGIONS,
    )


@pytest.fixture
def org_env(org, monkeypatch):
    """The onboarding environment variables for the moto organization, set in os.environ."""

    def apply(**extra: str) -> dict[str, str]:
        env = env_for(org, **extra)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return env

    return apply


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()
