"""A model of AWS at botocore's HTTP layer, so a bench measures watershed's cost, not moto's.

botocore builds, signs and sends every request as usual; a `before-send` hook answers it with
an HTTP response (status, headers, body in the service's own protocol: JSON 1.1, REST-JSON,
query XML, EC2 XML) built from an in-memory organization. botocore then parses the response,
raises the error and runs its retries exactly as it would against AWS. Nothing else is mocked:
the CPU time of a run is watershed's and the SDK's, plus the model's own, which `Model.cpu`
measures so it can be subtracted.

Modelled (only what onboarding, backfill and the audit call; anything else raises
`NotModelled`, so a bench cannot silently measure a path the model does not know):

- Organizations: DescribeAccount, ListAccounts (20 a page), DescribeOrganization;
- STS: AssumeRole (credentials name the target account; the model knows who calls by the
  access key in the request's SigV4 `Authorization` header);
- IAM: GetRole, GetRolePolicy, CreateRole, PutRolePolicy, UpdateAssumeRolePolicy;
- EC2: DescribeRegions (the 17 default regions enabled, the opt-in ones not);
- GuardDuty: ListDetectors, GetDetector, GetAdministratorAccount, CreateDetector,
  UpdateDetector, ListOrganizationAdminAccounts (no delegated administrator);
- EventBridge: DescribeRule, ListTargetsByRule, PutRule, PutTargets, DescribeEventBus;
- S3 (one bucket): PutObject (with `If-None-Match: *`), GetObject, ListObjectsV2; SQS (one
  queue): SendMessageBatch — the fanned-out audit's bucket and queue.

Per-call latency: every HTTP attempt sleeps `latency` seconds (a round trip). Rate limits
(design.md "AWS facts"): token buckets (burst = one second's worth) for the organization-wide
calls — DescribeAccount 20/s, ListAccounts 8/s, ListRegions 5/s — and STS 600/s per calling
account and region. Over the limit the answer is AWS's own throttling error
(`TooManyRequestsException` for Organizations, `Throttling` for STS, HTTP 400), which the SDK's
standard retry mode backs off and retries.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import boto3
from botocore.awsrequest import AWSResponse

DEFAULT_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
    "eu-central-1", "eu-west-1", "eu-west-2", "eu-west-3", "eu-north-1", "ap-south-1",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2",
)  # fmt: skip
OPT_IN_REGIONS = ("af-south-1", "ap-east-1", "eu-south-1", "me-south-1", "il-central-1")
ORGANIZATION_ID = "o-bench00001"
MANAGEMENT = "100000000000"
SECURITY = "100000000001"
PAGE_SIZE = 20  # ListAccounts: at most 20 accounts a page

# Requests per second, organization-wide (design.md "AWS facts"); STS is per caller and region.
ORG_RATES = {"DescribeAccount": 20.0, "ListAccounts": 8.0, "ListRegions": 5.0}
STS_RATE = 600.0

_CREDENTIAL = re.compile(r"Credential=([^/]+)/\d+/([^/]+)/")


class NotModelled(Exception):
    """The bench made a call the model does not answer."""


class _Raw(io.BytesIO):
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.getvalue()


class _Bucket:
    """A token bucket: `rate` tokens a second, at most `rate` saved up."""

    def __init__(self, rate: float) -> None:
        self.rate, self.tokens, self.at = rate, rate, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class _Error(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class Member:
    """What watershed owns in one account (the model's whole state of it)."""

    account_id: str
    name: str
    role: dict[str, Any] | None = None  # {"trust": text, "policy": text | None}
    detectors: dict[str, dict[str, Any]] = field(default_factory=dict)  # region → detector
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)  # region → rule + targets


class Model:
    """An organization of `accounts` members (plus management and Security) behind botocore.

    `hooks()` are the (event, handler) pairs to give `SessionFactory(hooks=...)`;
    `session()` is the management account's own credentials (the factory's base session)."""

    def __init__(self, accounts: int, latency: float = 0.05, rate_limits: bool = True) -> None:
        self.latency = latency
        self.rate_limits = rate_limits
        ids = [MANAGEMENT, SECURITY] + [f"{200000000000 + n:012d}" for n in range(accounts)]
        self.members = {a: Member(a, f"bench-{i:05d}") for i, a in enumerate(ids)}
        self.order = ids
        self.lock = threading.Lock()
        self.keys: dict[str, str] = {"AKIAMANAGEMENT000001": MANAGEMENT}
        self._key_numbers = itertools.count()
        self.buckets: dict[tuple[str, ...], _Bucket] = {}
        self.calls: Counter[tuple[str, str]] = Counter()  # (service, operation) → API calls
        self.attempts = 0  # HTTP attempts, retries included
        self.throttled: Counter[str] = Counter()  # operation → throttling errors returned
        self.cpu = 0.0  # seconds of CPU the model itself spent answering
        self._local = threading.local()
        self.objects: dict[str, bytes] = {}  # the audit bucket: key → body
        self.messages: list[str] = []  # the audit queue: message bodies

    # botocore hooks -----------------------------------------------------------------------

    def hooks(self) -> list[tuple[str, Any]]:
        return [("before-parameter-build", self._before_call), ("before-send", self._before_send)]

    def session(self) -> boto3.Session:
        return boto3.Session(
            aws_access_key_id="AKIAMANAGEMENT000001",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        )

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        """Once per API call, with its parameters as the caller gave them."""
        service = model.service_model.endpoint_prefix
        self._local.call = (service, model.name, params)
        with self.lock:
            self.calls[(service, model.name)] += 1

    def _before_send(self, request: Any, **_: Any) -> AWSResponse:
        started = time.thread_time()
        service, operation, params = self._local.call
        match = _CREDENTIAL.search(request.headers.get("Authorization", b"").decode())
        if not match:
            raise NotModelled(f"unsigned request {operation}")
        key, region = match.groups()
        caller = self.keys.get(key)
        if caller is None:
            raise NotModelled(f"unknown access key {key}")
        try:
            self._limit(service, operation, caller, region)
            handler = getattr(self, f"_{service}_{_snake(operation)}", None)
            if handler is None:
                raise NotModelled(f"{service}:{operation} is not modelled")
            status, body = 200, handler(caller, region, params)
            headers, raw = _success(service, operation, body)
        except _Error as err:
            status, (headers, raw) = err.status, _failure(service, err)
        with self.lock:
            self.attempts += 1
            self.cpu += time.thread_time() - started
        if self.latency:
            time.sleep(self.latency)
        headers["x-amzn-RequestId"] = str(uuid.uuid4())
        return AWSResponse(request.url, status, headers, _Raw(raw))

    def _limit(self, service: str, operation: str, caller: str, region: str) -> None:
        if not self.rate_limits:
            return
        if service == "organizations" and operation in ORG_RATES:
            key: tuple[str, ...] = (operation,)
            rate, code = ORG_RATES[operation], "TooManyRequestsException"
        elif service == "sts":
            key, rate, code = ("sts", caller, region), STS_RATE, "Throttling"
        else:
            return
        with self.lock:
            bucket = self.buckets.setdefault(key, _Bucket(rate))
            allowed = bucket.take()
            if not allowed:
                self.throttled[operation] += 1
        if not allowed:
            raise _Error(code, "Rate exceeded")

    # State helpers -------------------------------------------------------------------------

    def configure_all(self, regions: tuple[str, ...] = DEFAULT_REGIONS) -> None:
        """Every account as watershed leaves it after onboarding (for re-run and audit benches):
        one member and the Security account are onboarded through this model (so the state is
        exactly what onboarding writes), then the member's state is copied to every other
        member with its account id swapped. The management account is left as it is (its
        forwarder role is management.yaml's, which this model does not deploy)."""
        from onboarding.events import OnboardingRequest
        from onboarding.service import Onboarder
        from onboarding.sessions import SessionFactory

        limits, latency = self.rate_limits, self.latency
        self.rate_limits, self.latency = False, 0.0
        settings = self.settings(regions)  # as the bench's watershed is configured
        factory = SessionFactory(settings, base_session=self.session(), hooks=self.hooks())
        template = self.member_ids()[0]
        for account in (template, SECURITY):
            report = Onboarder(settings, factory).onboard(OnboardingRequest(account))
            assert report.status == "ok", report.as_dict()
        self.rate_limits, self.latency = limits, latency
        state = json.dumps(
            {
                "role": self.members[template].role,
                "detectors": self.members[template].detectors,
                "rules": self.members[template].rules,
            }
        )
        for account in self.member_ids()[1:]:
            copy = json.loads(state.replace(template, account))
            member = self.members[account]
            member.role, member.detectors, member.rules = (
                copy["role"],
                copy["detectors"],
                copy["rules"],
            )
        self.reset_counts()

    def settings(self, regions: tuple[str, ...], **overrides: Any) -> Any:
        from onboarding.settings import Settings

        return Settings(
            security_account_id=SECURITY,
            management_account_id=MANAGEMENT,
            hub_regions=regions,
            home_region="us-east-1",
            **overrides,
        )

    def member_ids(self) -> list[str]:
        return self.order[2:]

    def writes(self) -> int:
        reads = ("Get", "List", "Describe")
        return sum(
            n
            for (_, op), n in self.calls.items()
            if not op.startswith(reads) and op != "AssumeRole"
        )

    def reset_counts(self) -> None:
        with self.lock:
            self.calls.clear()
            self.throttled.clear()
            self.attempts = 0
            self.cpu = 0.0

    def _member(self, account_id: str) -> Member:
        member = self.members.get(account_id)
        if member is None:
            raise _Error("AccessDenied", f"no such account {account_id}", 403)
        return member

    # Organizations -------------------------------------------------------------------------

    def _account(self, account_id: str) -> dict[str, Any]:
        member = self._member(account_id)
        arn = f"arn:aws:organizations::{MANAGEMENT}:account/{ORGANIZATION_ID}/{account_id}"
        return {
            "Id": account_id,
            "Arn": arn,
            "Email": f"{member.name}@example.com",
            "Name": member.name,
            "Status": "ACTIVE",
            "State": "ACTIVE",
            "JoinedMethod": "CREATED",
            "JoinedTimestamp": 1767225600.0,
        }

    def _organizations_describe_account(self, caller: str, region: str, p: dict) -> dict:
        if p["AccountId"] not in self.members:
            raise _Error("AccountNotFoundException", "not found")
        return {"Account": self._account(p["AccountId"])}

    def _organizations_list_accounts(self, caller: str, region: str, p: dict) -> dict:
        start = int(p.get("NextToken") or 0)
        ids = self.order[start : start + PAGE_SIZE]
        out: dict[str, Any] = {"Accounts": [self._account(a) for a in ids]}
        if start + PAGE_SIZE < len(self.order):
            out["NextToken"] = str(start + PAGE_SIZE)
        return out

    def _organizations_describe_organization(self, caller: str, region: str, p: dict) -> dict:
        return {
            "Organization": {
                "Id": ORGANIZATION_ID,
                "Arn": f"arn:aws:organizations::{MANAGEMENT}:organization/{ORGANIZATION_ID}",
                "FeatureSet": "ALL",
                "MasterAccountId": MANAGEMENT,
            }
        }

    # STS -----------------------------------------------------------------------------------

    def _sts_assume_role(self, caller: str, region: str, p: dict) -> str:
        target = p["RoleArn"].split(":")[4]
        self._member(target)
        key = f"ASIA{target}{next(self._key_numbers):08d}"
        with self.lock:
            self.keys[key] = target
        return (
            "<Credentials>"
            f"<AccessKeyId>{key}</AccessKeyId><SecretAccessKey>bench</SecretAccessKey>"
            f"<SessionToken>token-{key}</SessionToken>"
            "<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>"
            f"<AssumedRoleUser><AssumedRoleId>AROA{target}:{escape(p['RoleSessionName'])}"
            f"</AssumedRoleId><Arn>{escape(p['RoleArn'])}</Arn></AssumedRoleUser>"
        )

    # IAM -----------------------------------------------------------------------------------

    def _role_xml(self, account_id: str, name: str, role: dict[str, Any]) -> str:
        tags = "".join(
            f"<member><Key>{escape(t['Key'])}</Key><Value>{escape(t['Value'])}</Value></member>"
            for t in role.get("tags", [])
        )
        return (
            f"<Role><Path>/</Path><RoleName>{escape(name)}</RoleName>"
            f"<RoleId>AROA{account_id}</RoleId>"
            f"<Arn>arn:aws:iam::{account_id}:role/{escape(name)}</Arn>"
            "<CreateDate>2026-01-01T00:00:00Z</CreateDate>"
            f"<AssumeRolePolicyDocument>{escape(quote(role['trust']))}</AssumeRolePolicyDocument>"
            f"<Tags>{tags}</Tags></Role>"
        )

    def _role(self, caller: str) -> dict[str, Any]:
        role = self._member(caller).role
        if role is None:
            raise _Error(
                "NoSuchEntity", "The role with name watershed-forwarder cannot be found.", 404
            )
        return role

    def _iam_get_role(self, caller: str, region: str, p: dict) -> str:
        role = self._member(caller).role
        if role is None:
            raise _Error("NoSuchEntity", f"role {p['RoleName']} not found", 404)
        return self._role_xml(caller, p["RoleName"], role)

    def _iam_get_role_policy(self, caller: str, region: str, p: dict) -> str:
        role = self._member(caller).role
        if role is None or role["policy"] is None:
            raise _Error("NoSuchEntity", "policy not found", 404)
        return (
            f"<RoleName>{escape(p['RoleName'])}</RoleName>"
            f"<PolicyName>{escape(p['PolicyName'])}</PolicyName>"
            f"<PolicyDocument>{escape(quote(role['policy']))}</PolicyDocument>"
        )

    def _iam_create_role(self, caller: str, region: str, p: dict) -> str:
        member = self._member(caller)
        with self.lock:
            if member.role is not None:
                raise _Error("EntityAlreadyExists", "role exists", 409)
            member.role = {
                "trust": p["AssumeRolePolicyDocument"],
                "policy": None,
                "tags": list(p.get("Tags", [])),
            }
        return self._role_xml(caller, p["RoleName"], member.role)

    def _iam_put_role_policy(self, caller: str, region: str, p: dict) -> str:
        role = self._role(caller)
        role["policy"] = p["PolicyDocument"]
        return ""

    def _iam_list_role_policies(self, caller: str, region: str, p: dict) -> str:
        role = self._role(caller)
        names = "<member>watershed-put-events</member>" if role["policy"] else ""
        return f"<PolicyNames>{names}</PolicyNames><IsTruncated>false</IsTruncated>"

    def _iam_list_attached_role_policies(self, caller: str, region: str, p: dict) -> str:
        self._role(caller)
        return "<AttachedPolicies></AttachedPolicies><IsTruncated>false</IsTruncated>"

    def _iam_tag_role(self, caller: str, region: str, p: dict) -> str:
        role = self._role(caller)
        keys = {t["Key"] for t in p["Tags"]}
        role["tags"] = [t for t in role.get("tags", []) if t["Key"] not in keys] + p["Tags"]
        return ""

    def _iam_update_assume_role_policy(self, caller: str, region: str, p: dict) -> str:
        role = self._role(caller)
        role["trust"] = p["PolicyDocument"]
        return ""

    # EC2 -----------------------------------------------------------------------------------

    def _ec2_describe_regions(self, caller: str, region: str, p: dict) -> str:
        items = [(r, "opt-in-not-required") for r in DEFAULT_REGIONS]
        items += [(r, "not-opted-in") for r in OPT_IN_REGIONS]
        return "<regionInfo>" + "".join(
            f"<item><regionName>{r}</regionName><regionEndpoint>ec2.{r}.amazonaws.com"
            f"</regionEndpoint><optInStatus>{s}</optInStatus></item>"
            for r, s in items
        ) + "</regionInfo>"  # fmt: skip

    # GuardDuty -----------------------------------------------------------------------------

    def _guardduty_list_detectors(self, caller: str, region: str, p: dict) -> dict:
        detector = self._member(caller).detectors.get(region)
        return {"detectorIds": [detector["id"]] if detector else []}

    def _detector_of(self, caller: str, region: str, detector_id: str) -> dict[str, Any]:
        detector = self._member(caller).detectors.get(region)
        if detector is None or detector["id"] != detector_id:
            raise _Error("BadRequestException", "The request is rejected: no such detector")
        return detector

    def _guardduty_get_detector(self, caller: str, region: str, p: dict) -> dict:
        detector = self._detector_of(caller, region, p["DetectorId"])
        return {
            "createdAt": "2026-01-01T00:00:00.000Z",
            "findingPublishingFrequency": detector["frequency"],
            "serviceRole": f"arn:aws:iam::{caller}:role/aws-service-role/guardduty",
            "status": detector["status"],
            "features": [{"name": n, "status": s} for n, s in detector["features"].items()],
            "tags": detector.get("tags", {}),
        }

    def _guardduty_get_administrator_account(self, caller: str, region: str, p: dict) -> dict:
        self._detector_of(caller, region, p["DetectorId"])
        return {}

    def _guardduty_list_organization_admin_accounts(
        self, caller: str, region: str, p: dict
    ) -> dict:
        return {"adminAccounts": []}  # no GuardDuty delegated administrator

    def _guardduty_create_detector(self, caller: str, region: str, p: dict) -> dict:
        member = self._member(caller)
        features = {f["Name"]: f["Status"] for f in p.get("Features", [])}
        with self.lock:
            if region in member.detectors:
                raise _Error("BadRequestException", "a detector already exists")
            detector = _detector(p.get("FindingPublishingFrequency", "SIX_HOURS"), features)
            detector["tags"] = dict(p.get("Tags", {}))
            member.detectors[region] = detector
        return {"detectorId": detector["id"]}

    def _guardduty_update_detector(self, caller: str, region: str, p: dict) -> dict:
        detector = self._detector_of(caller, region, p["DetectorId"])
        detector["status"] = "ENABLED" if p.get("Enable", True) else "DISABLED"
        if "FindingPublishingFrequency" in p:
            detector["frequency"] = p["FindingPublishingFrequency"]
        detector["features"].update({f["Name"]: f["Status"] for f in p.get("Features", [])})
        return {}

    # EventBridge ---------------------------------------------------------------------------

    def _rule(self, caller: str, region: str, name: str) -> dict[str, Any]:
        rule = self._member(caller).rules.get(region)
        if rule is None or rule["Name"] != name:
            raise _Error("ResourceNotFoundException", f"Rule {name} does not exist.")
        return rule

    def _events_describe_rule(self, caller: str, region: str, p: dict) -> dict:
        rule = self._rule(caller, region, p["Name"])
        return {
            **{k: v for k, v in rule.items() if k not in ("Targets", "Tags")},
            "Arn": f"arn:aws:events:{region}:{caller}:rule/{rule['Name']}",
            "EventBusName": "default",
        }

    def _events_list_targets_by_rule(self, caller: str, region: str, p: dict) -> dict:
        return {"Targets": self._rule(caller, region, p["Rule"])["Targets"]}

    def _events_put_rule(self, caller: str, region: str, p: dict) -> dict:
        member = self._member(caller)
        with self.lock:
            rule = member.rules.setdefault(
                region, {"Name": p["Name"], "Targets": [], "Tags": list(p.get("Tags", []))}
            )
            rule.update({k: p[k] for k in ("EventPattern", "State", "Description") if k in p})
        return {"RuleArn": f"arn:aws:events:{region}:{caller}:rule/{p['Name']}"}

    def _events_put_targets(self, caller: str, region: str, p: dict) -> dict:
        rule = self._rule(caller, region, p["Rule"])
        with self.lock:
            ids = {t["Id"] for t in p["Targets"]}
            rule["Targets"] = [t for t in rule["Targets"] if t["Id"] not in ids] + p["Targets"]
        return {"FailedEntryCount": 0, "FailedEntries": []}

    def _events_list_tags_for_resource(self, caller: str, region: str, p: dict) -> dict:
        name = p["ResourceARN"].rsplit("/", 1)[-1]
        return {"Tags": self._rule(caller, region, name).get("Tags", [])}

    def _events_tag_resource(self, caller: str, region: str, p: dict) -> dict:
        rule = self._rule(caller, region, p["ResourceARN"].rsplit("/", 1)[-1])
        keys = {t["Key"] for t in p["Tags"]}
        rule["Tags"] = [t for t in rule.get("Tags", []) if t["Key"] not in keys] + p["Tags"]
        return {}

    def _events_describe_event_bus(self, caller: str, region: str, p: dict) -> dict:
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "watershed-organization",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "events:PutEvents",
                    "Resource": f"arn:aws:events:{region}:{caller}:event-bus/default",
                    "Condition": {"StringEquals": {"aws:PrincipalOrgID": ORGANIZATION_ID}},
                }
            ],
        }
        return {
            "Name": "default",
            "Arn": f"arn:aws:events:{region}:{caller}:event-bus/default",
            "Policy": json.dumps(policy),
        }

    # The function's own S3 bucket and SQS queue (the fanned-out audit) ---------------------
    # One bucket and any queue, strongly consistent like S3 and SQS; what the Lambda event
    # source mapping does (receive, delete) is not the function's CPU, so `take_messages` hands
    # the queued bodies over directly.

    def _s3_put_object(self, caller: str, region: str, p: dict) -> tuple[dict, bytes]:
        body = p.get("Body", b"")  # botocore has made it a file-like object (BytesIO)
        data = body.getvalue() if hasattr(body, "getvalue") else bytes(body)
        with self.lock:
            if p.get("IfNoneMatch") == "*" and p["Key"] in self.objects:
                raise _Error("PreconditionFailed", "At least one precondition failed", 412)
            self.objects[p["Key"]] = data
        return {"ETag": f'"{hashlib.md5(data).hexdigest()}"'}, b""

    def _s3_get_object(self, caller: str, region: str, p: dict) -> tuple[dict, bytes]:
        data = self.objects.get(p["Key"])
        if data is None:
            raise _Error("NoSuchKey", "The specified key does not exist.", 404)
        return {"Content-Type": "application/json", "Content-Length": str(len(data))}, data

    def _s3_list_objects_v2(self, caller: str, region: str, p: dict) -> tuple[dict, bytes]:
        prefix, delimiter = p.get("Prefix", ""), p.get("Delimiter")
        after = p.get("ContinuationToken") or p.get("StartAfter") or ""
        with self.lock:
            keys = sorted(k for k in self.objects if k.startswith(prefix) and k > after)
        contents, folders, last = [], [], ""
        for key in keys:
            if len(contents) + len(folders) == 1000:
                break
            last = key
            rest = key[len(prefix) :]
            if delimiter and delimiter in rest:
                folder = prefix + rest.split(delimiter, 1)[0] + delimiter
                if folder not in folders:
                    folders.append(folder)
                continue
            size = len(self.objects[key])
            contents.append(f"<Contents><Key>{escape(key)}</Key><Size>{size}</Size></Contents>")
        truncated = bool(keys) and last != keys[-1]
        more = f"<NextContinuationToken>{escape(last)}</NextContinuationToken>" if truncated else ""
        common = "".join(
            f"<CommonPrefixes><Prefix>{escape(f)}</Prefix></CommonPrefixes>" for f in folders
        )
        text = (
            f'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{escape(p['Bucket'])}</Name><Prefix>{escape(prefix)}</Prefix>"
            f"<KeyCount>{len(contents) + len(folders)}</KeyCount><MaxKeys>1000</MaxKeys>"
            f"<IsTruncated>{str(truncated).lower()}</IsTruncated>{more}"
            f"{''.join(contents)}{common}</ListBucketResult>"
        )
        return {"Content-Type": "application/xml"}, text.encode()

    def _sqs_send_message_batch(self, caller: str, region: str, p: dict) -> dict:
        successful = []
        with self.lock:
            for entry in p["Entries"]:
                self.messages.append(entry["MessageBody"])
                successful.append(
                    {
                        "Id": entry["Id"],
                        "MessageId": str(uuid.uuid4()),
                        "MD5OfMessageBody": hashlib.md5(entry["MessageBody"].encode()).hexdigest(),
                    }
                )
        return {"Successful": successful, "Failed": []}

    def take_messages(self, limit: int) -> list[str]:
        """Up to `limit` queued message bodies, oldest first, removed from the queue."""
        with self.lock:
            taken, self.messages[:limit] = self.messages[:limit], []
        return taken


def _detector(frequency: str, features: dict[str, str]) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "status": "ENABLED",
        "frequency": frequency,
        "features": dict(features),
    }


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# Wire formats ------------------------------------------------------------------------------------

_JSON11 = {"organizations", "events"}
_JSON10 = {"sqs": "com.amazonaws.sqs#"}
_REST_JSON = {"guardduty"}
_QUERY_NS = {
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
}
_EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"


def _success(service: str, operation: str, body: Any) -> tuple[dict[str, str], bytes]:
    if service == "s3":  # rest-xml: the handler returns (headers, body) as S3 sends them
        return body
    if service in _JSON10:
        return {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(body).encode()
    if service in _JSON11:
        return {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(body).encode()
    if service in _REST_JSON:
        return {"Content-Type": "application/json"}, json.dumps(body).encode()
    if service in _QUERY_NS:
        result = f"<{operation}Result>{body}</{operation}Result>" if body else ""
        text = (
            f'<{operation}Response xmlns="{_QUERY_NS[service]}">{result}'
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            f"</{operation}Response>"
        )
        return {"Content-Type": "text/xml"}, text.encode()
    if service == "ec2":
        text = (
            f'<{operation}Response xmlns="{_EC2_NS}"><requestId>{uuid.uuid4()}</requestId>'
            f"{body}</{operation}Response>"
        )
        return {"Content-Type": "text/xml;charset=UTF-8"}, text.encode()
    raise NotModelled(f"no wire format for {service}")


def _failure(service: str, err: _Error) -> tuple[dict[str, str], bytes]:
    if service == "s3":
        text = f"<Error><Code>{err.code}</Code><Message>{escape(err.message)}</Message></Error>"
        return {"Content-Type": "application/xml"}, text.encode()
    if service in _JSON10:
        body = {"__type": _JSON10[service] + err.code, "message": err.message}
        return {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(body).encode()
    if service in _JSON11:
        body = {"__type": err.code, "message": err.message}
        return {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(body).encode()
    if service in _REST_JSON:
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": err.code}
        return headers, json.dumps({"message": err.message}).encode()
    if service in _QUERY_NS:
        text = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{err.code}</Code>"
            f"<Message>{escape(err.message)}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )
        return {"Content-Type": "text/xml"}, text.encode()
    text = (
        f"<Response><Errors><Error><Code>{err.code}</Code><Message>{escape(err.message)}"
        f"</Message></Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    )
    return {"Content-Type": "text/xml;charset=UTF-8"}, text.encode()
