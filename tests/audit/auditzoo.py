"""Helpers for the audit tests: a moto organization whose accounts are in every state the audit
knows (the "zoo"), a call recorder that counts write calls across every session, a per-account
fault injector for what moto cannot produce, and the Security side as template.yaml deploys it."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import unquote

import boto3
import botocore.loaders
import botocore.session
from botocore.awsrequest import AWSResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "templates"))
from cfnmodel import declare_management_forwarder

from onboarding.events import OnboardingRequest
from onboarding.resources.iam import POLICY_NAME
from onboarding.service import Onboarder
from onboarding.sessions import AccountSession, SessionFactory
from onboarding.settings import Settings

# ap-east-1 is an opt-in region: moto's DescribeRegions says "not-opted-in" for every account.
HUB_REGIONS = ("us-east-1", "eu-west-1", "ap-east-1")
ENABLED = ("us-east-1", "eu-west-1")
READ_PREFIXES = ("Get", "List", "Describe")
NOT_WRITES = {"AssumeRole"}  # STS: obtains credentials, changes nothing
SCP_MESSAGE = (
    "User: arn:aws:sts::{account}:assumed-role/OrganizationAccountAccessRole/watershed is not "
    "authorized to perform: {action} with an explicit deny in a service control policy"
)


# Recording and injecting -------------------------------------------------------------------------


@dataclass
class CallRecorder:
    """A botocore `before-parameter-build` hook: records (operation, region) of every call."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, model, context, **_):
        with self.lock:
            self.calls.append((model.name, context.get("client_region")))

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [
            (op, region)
            for op, region in self.calls
            if not op.startswith(READ_PREFIXES) and op not in NOT_WRITES
        ]

    @property
    def operations(self) -> set[str]:
        return {op for op, _ in self.calls}


@dataclass
class Fault:
    operation: str
    code: str
    message: str
    account: str
    region: str | None = None


class AccountFaults:
    """A `before-call` hook answering with an AWS error for one account (moto cannot deny).

    Registered on every session of the factory (`account=None`: only AssumeRole into the
    account is matched, by the role ARN in the request) and on each account's own session
    (`account=<id>`: that account's calls in a region)."""

    def __init__(self):
        self.faults: list[Fault] = []

    def add(self, operation, code, account, region=None, message="injected") -> None:
        self.faults.append(Fault(operation, code, message, account, region))

    def deny_region(self, account: str, region: str, scp: bool = True) -> None:
        """Every GuardDuty and EventBridge read in the region denied (by an SCP, or plainly)."""
        for service, ops in {
            "guardduty": ("ListDetectors", "GetDetector", "GetAdministratorAccount"),
            "events": ("DescribeRule", "ListTargetsByRule"),
        }.items():
            for op in ops:
                message = SCP_MESSAGE.format(account=account, action=f"{service}:{op}")
                if not scp:  # an identity policy that does not allow it
                    message = f"not authorized to perform: {service}:{op}"
                self.add(op, "AccessDeniedException", account, region, message)

    def __call__(self, model, params, context, account=None, **_):
        for fault in self.faults:
            if fault.operation != model.name or fault.region not in (
                None,
                context["client_region"],
            ):
                continue
            if account is None and not (
                model.name == "AssumeRole"
                and f":{fault.account}:" in unquote(str(params.get("body")))
            ):
                continue
            if account is not None and account != fault.account:
                continue
            body = {
                "Error": {"Code": fault.code, "Message": fault.message},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            return AWSResponse("https://injected.invalid", 400, {}, None), body
        return None


class InjectingFactory(SessionFactory):
    """The core's SessionFactory, with the fault hook also bound to each account's session."""

    def __init__(self, settings, faults: AccountFaults, hooks=()):
        super().__init__(settings, hooks=[*hooks, ("before-call", faults)])
        self._faults = faults

    def for_account(self, account_id: str) -> AccountSession:
        session = super().for_account(account_id)
        session.session.events.register("before-call", partial(self._faults, account=account_id))
        return session


# The organization --------------------------------------------------------------------------------


_LOADER = botocore.loaders.create_loader()  # parse each service model once for the whole run


def _session(**credentials) -> boto3.Session:
    core = botocore.session.get_session()
    core.register_component("data_loader", _LOADER)
    return boto3.Session(botocore_session=core, **credentials)


def account_session(account_id: str, management: str) -> boto3.Session:
    """The account as its admin role (set-up and read-back; never the code under test)."""
    if account_id == management:
        return _session()
    creds = (
        _session()
        .client("sts", region_name="us-east-1")
        .assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
            RoleSessionName="test-setup",
        )["Credentials"]
    )
    return _session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


@dataclass
class Org:
    id: str
    management: str
    security: str
    accounts: dict[str, str] = field(default_factory=dict)  # label → account id
    settings: Settings | None = None
    _sessions: dict[str, boto3.Session] = field(default_factory=dict)
    _clients: dict[tuple[str, str, str], object] = field(default_factory=dict)

    def client(self, label_or_id: str, service: str, region: str = "us-east-1"):
        account = self.accounts.get(label_or_id, label_or_id)
        key = (account, service, region)
        if key not in self._clients:
            if account not in self._sessions:
                self._sessions[account] = account_session(account, self.management)
            self._clients[key] = self._sessions[account].client(service, region_name=region)
        return self._clients[key]


def build_org(labels: list[str], regions=HUB_REGIONS) -> Org:
    orgs = _session().client("organizations", region_name="us-east-1")
    orgs.create_organization(FeatureSet="ALL")
    described = orgs.describe_organization()["Organization"]

    def create(name: str) -> str:
        status = orgs.create_account(Email=f"{abs(hash(name))}@example.com", AccountName=name)
        return status["CreateAccountStatus"]["AccountId"]

    org = Org(described["Id"], described["MasterAccountId"], create("security"))
    # management.yaml declares the management account's forwarder role; onboarding only reads it
    iam = _session().client("iam", region_name="us-east-1")
    declare_management_forwarder(iam, org.management, org.security)
    org.accounts = {label: create(label) for label in labels}
    org.settings = Settings(
        security_account_id=org.security,
        management_account_id=org.management,
        hub_regions=regions,
        home_region="us-east-1",
        # what is configured is what drifts: a frequency and one named plan (tri-state plans:
        # one that is not named is the owner's and never drifts)
        finding_publishing_frequency="FIFTEEN_MINUTES",
        guardduty_features=(("EBS_MALWARE_PROTECTION", "DISABLED"),),
    )
    return org


def deploy_security_side(org: Org, regions=HUB_REGIONS) -> None:
    """What template.yaml puts in each hub region of the Security account (moto cannot run the
    SAM transform): the organization bus policy, a stream and the collect rule targeting it."""
    for region in regions:
        events = org.client(org.security, "events", region)
        events.put_permission(
            EventBusName="default",
            Action="events:PutEvents",
            Principal="*",
            StatementId="WatershedOrganizationPutEvents",
            Condition={"Type": "StringEquals", "Key": "aws:PrincipalOrgID", "Value": org.id},
        )
        kinesis = org.client(org.security, "kinesis", region)
        name = "watershed" if region == "us-east-1" else "watershed-regional"
        kinesis.create_stream(StreamName=name, ShardCount=1)
        arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
            "StreamARN"
        ]
        events.put_rule(
            Name="watershed-collect", EventPattern='{"source": ["aws.guardduty"]}', State="ENABLED"
        )
        events.put_targets(Rule="watershed-collect", Targets=[{"Id": "stream", "Arn": arn}])


def onboard(org: Org, *accounts: str) -> None:
    onboarder = Onboarder(org.settings)
    for account in accounts:
        report = onboarder.onboard(OnboardingRequest(account))
        assert report.status == "ok", report.as_dict()


def detector_id(org: Org, label: str, region: str) -> str:
    return org.client(label, "guardduty", region).list_detectors()["DetectorIds"][0]


# One setup per drift kind: label → (what to do to the onboarded account, kind expected).
DRIFTS = {
    "suspended": "detector-suspended",
    "frequency": "detector-frequency",
    "features": "detector-features",
    "pattern": "rule-pattern",
    "rule-off": "rule-disabled",
    "no-target": "target-missing",
    "elsewhere": "target-elsewhere",
    "no-dlq": "target-delivery",
    "trust": "role-trust",
    "role-policy": "role-policy-changed",
    "no-role": "role-missing",
}
GLOBAL_DRIFTS = {"trust", "role-policy", "no-role"}  # IAM: every enabled region drifts


def drift(org: Org, label: str) -> None:
    """Change one thing behind watershed's back in eu-west-1 (or IAM, which is global)."""
    account, region = org.accounts[label], "eu-west-1"
    gd = org.client(label, "guardduty", region)
    events = org.client(label, "events", region)
    iam = org.client(label, "iam")
    if label == "suspended":
        gd.update_detector(DetectorId=detector_id(org, label, region), Enable=False)
    elif label == "frequency":
        gd.update_detector(
            DetectorId=detector_id(org, label, region), FindingPublishingFrequency="SIX_HOURS"
        )
    elif label == "features":
        gd.update_detector(
            DetectorId=detector_id(org, label, region),
            Features=[{"Name": "EBS_MALWARE_PROTECTION", "Status": "ENABLED"}],
        )
    elif label == "pattern":
        events.put_rule(
            Name="watershed-forward", EventPattern='{"source": ["aws.ec2"]}', State="ENABLED"
        )
    elif label == "rule-off":
        events.disable_rule(Name="watershed-forward")
    elif label == "no-target":
        events.remove_targets(Rule="watershed-forward", Ids=["security-bus"])
    elif label in ("elsewhere", "no-dlq"):
        # elsewhere: another account's bus; no-dlq: the target as watershed wrote it before it
        # had a retry policy and a dead-letter queue
        bus_account = "111122223333" if label == "elsewhere" else org.security
        events.put_targets(
            Rule="watershed-forward",
            Targets=[
                {
                    "Id": "security-bus",
                    "Arn": f"arn:aws:events:{region}:{bus_account}:event-bus/default",
                    "RoleArn": f"arn:aws:iam::{account}:role/watershed-forwarder",
                }
            ],
        )
    elif label == "trust":
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        iam.update_assume_role_policy(
            RoleName="watershed-forwarder", PolicyDocument=json.dumps(trust)
        )
    elif label == "role-policy":
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "events:PutEvents", "Resource": "*"}],
        }
        iam.put_role_policy(
            RoleName="watershed-forwarder",
            PolicyName=POLICY_NAME,
            PolicyDocument=json.dumps(policy),
        )
    elif label == "no-role":
        iam.delete_role_policy(RoleName="watershed-forwarder", PolicyName=POLICY_NAME)
        iam.delete_role(RoleName="watershed-forwarder")
    else:
        raise ValueError(label)


# The zoo: one organization with an account in every state ----------------------------------------


@dataclass
class Zoo:
    org: Org
    faults: AccountFaults
    expected: dict[str, dict[str, str]]  # account id → region → state


ZOO_LABELS = [
    "configured",
    *DRIFTS,
    "missing",
    "scp",
    "denied",
    "locked",
    "<script>window.pwned=1</script>",
]


def build_zoo() -> Zoo:
    """Every state the audit knows, in one organization (regions: us-east-1, eu-west-1 enabled,
    ap-east-1 not). Faults stand in for an SCP region deny ("scp"), a plain AccessDenied in
    one region ("denied") and an admin role that cannot be assumed ("locked")."""
    org = build_org(ZOO_LABELS)
    deploy_security_side(org)
    ids = org.accounts
    onboard(
        org,
        org.management,
        org.security,
        *(ids[label] for label in ZOO_LABELS if label != "missing"),
    )
    for label in DRIFTS:
        drift(org, label)
    faults = AccountFaults()
    faults.deny_region(ids["scp"], "eu-west-1", scp=True)
    faults.deny_region(ids["denied"], "eu-west-1", scp=False)
    faults.add("AssumeRole", "AccessDenied", ids["locked"], message="not authorized")

    expected = {}
    for account in [org.management, org.security, *ids.values()]:
        expected[account] = {"us-east-1": "ok", "eu-west-1": "ok", "ap-east-1": "skipped"}
    for label in DRIFTS:
        expected[ids[label]]["eu-west-1"] = "drift"
    for label in GLOBAL_DRIFTS:
        expected[ids[label]]["us-east-1"] = "drift"
    expected[ids["missing"]].update({"us-east-1": "missing", "eu-west-1": "missing"})
    expected[ids["scp"]]["eu-west-1"] = "skipped"
    expected[ids["denied"]]["eu-west-1"] = "error"
    expected[ids["locked"]] = dict.fromkeys(HUB_REGIONS, "error")
    return Zoo(org, faults, expected)


def one_configured_member(monkeypatch, hub_regions: str) -> Org:
    """One configured member, the Security side deployed, nothing else onboarded; the CLI's
    environment (SECURITY_ACCOUNT_ID, MANAGEMENT_ACCOUNT_ID, HUB_REGIONS) set for it."""
    org = build_org(["configured"])
    deploy_security_side(org)
    onboard(org, org.accounts["configured"])
    monkeypatch.setenv("SECURITY_ACCOUNT_ID", org.security)
    monkeypatch.setenv("MANAGEMENT_ACCOUNT_ID", org.management)
    monkeypatch.setenv("HUB_REGIONS", hub_regions)
    return org
