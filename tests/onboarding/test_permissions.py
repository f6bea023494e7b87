"""Every call onboarding makes is allowed by the policy of the role that makes it.

moto does not enforce IAM: a template that forgets a permission passes every other onboarding
test. Here the management account is onboarded against moto - a first run (creates) and a
re-run after drift (updates) - with each session's calls recorded by the role behind it. Each
call is mapped to the IAM actions AWS authorises it with (resource ARN, condition context), and
checked against the policies the templates give that role, resolved for this deployment with
tests/templates/cfnmodel.py:

- with a launcher: the onboarding role (template.yaml) assumes the launcher (management.yaml),
  and the launcher onboards the management account itself;
- without a launcher: template.yaml deployed in the management account, which is then also the
  Security account, onboards itself with the onboarding role's own credentials.
- the queue paths, with a launcher: a backfill of "ALL" with EXCLUDED_OUS and EXCLUDE_TAG
  dispatched through the handler onto the WorkQueue, then one queued message (and a poison
  message, dead-lettered) processed through the handler as an SQS batch.
- the canary (`watershed canary --all`, the scheduled canary), with a launcher and the scheduled
  canary switched on: the organization listed, a sample finding raised in the management
  account (through the launcher) and a member, the destination stream read by the onboarding
  role.

The matcher is deliberately small: Action/Resource strings with `*`/`?` wildcards and the
condition operators the templates use. An operation it does not know fails the test, so a new
AWS call in the onboarding code must be mapped (and granted) here.
"""

from __future__ import annotations

import fnmatch
import json
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import boto3
import pytest

from onboarding import handler
from onboarding.events import OnboardingRequest
from onboarding.service import Onboarder
from onboarding.sessions import SessionFactory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "templates"))
from cfnmodel import (
    MANAGEMENT_TEMPLATE,
    SAM_TEMPLATE,
    Deployment,
    load_template,
    policy_documents,
)

OWN = "own credentials"
FEATURES_WITH_MALWARE_SLR = {"EBS_MALWARE_PROTECTION"}


# -- recording: which role made which call ---------------------------------------------------


@dataclass
class Call:
    service: str  # botocore service model name, e.g. "guardduty"
    operation: str
    region: str
    params: dict


@dataclass
class CallsByRole:
    calls: dict[str, list[Call]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, role: str):
        def record(model, params, context, **_):
            call = Call(
                model.service_model.service_name,
                model.name,
                context.get("client_region"),
                dict(params),
            )
            with self.lock:
                self.calls.setdefault(role, []).append(call)

        return record


class AttributingFactory(SessionFactory):
    """Registers a recorder named after the role on every session it builds."""

    def __init__(self, settings, recorded: CallsByRole, hooks=()):
        base = boto3.Session(region_name=settings.home_region)
        base.events.register("before-parameter-build", recorded.hook(OWN))
        super().__init__(settings, base_session=base, hooks=hooks)
        self.recorded = recorded

    def _assume(self, parent, role_arn, session_name):
        session, expires = super()._assume(parent, role_arn, session_name)
        session.events.register("before-parameter-build", self.recorded.hook(role_arn))
        return session, expires


# -- mapping: API call -> IAM authorisation requests -------------------------------------------


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        extra = f" {dict(self.context)}" if self.context else ""
        return f"{self.action} on {self.resource}{extra}"


def authorisations(call: Call, account: str, org_id: str, management: str) -> list[Request]:
    """What IAM evaluates for one call made in `account` (Service Authorization Reference)."""
    p, r, op, params = "aws", call.region, call.operation, call.params
    key = (call.service, op)
    if key == ("sts", "AssumeRole"):
        # The member roles are matched by aws:ResourceOrgID (the role's account's organization).
        return [Request("sts:AssumeRole", params["RoleArn"], (("aws:ResourceOrgID", org_id),))]
    if key == ("organizations", "DescribeAccount"):
        arn = f"arn:{p}:organizations::{management}:account/{org_id}/{params['AccountId']}"
        return [Request("organizations:DescribeAccount", arn)]
    if key == ("organizations", "ListAccounts"):
        return [Request("organizations:ListAccounts", "*")]  # no resource-level permissions
    if key == ("organizations", "ListParents"):
        return [
            Request("organizations:ListParents", _org_arn(params["ChildId"], org_id, management))
        ]
    if key == ("organizations", "ListTagsForResource"):
        arn = _org_arn(params["ResourceId"], org_id, management)
        return [Request("organizations:ListTagsForResource", arn)]
    if key in (
        ("organizations", "ListAccountsForParent"),
        ("organizations", "ListOrganizationalUnitsForParent"),
    ):
        arn = _org_arn(params["ParentId"], org_id, management)
        return [Request(f"organizations:{op}", arn)]
    if key in (("sqs", "SendMessage"), ("sqs", "SendMessageBatch")):
        # SendMessageBatch is authorised as sqs:SendMessage. The queue is the calling role's own
        # (in `account`); moto has one identity for every "own credentials" call, so the URL's
        # account is moto's, and only the queue's name is taken from it.
        name = params["QueueUrl"].rstrip("/").rsplit("/", 1)[-1]
        return [Request("sqs:SendMessage", f"arn:{p}:sqs:{r}:{account}:{name}")]
    if key == ("ec2", "DescribeRegions"):
        return [Request("ec2:DescribeRegions", "*")]
    if call.service == "iam" and op in (
        "GetRole",
        "CreateRole",
        "UpdateAssumeRolePolicy",
        "GetRolePolicy",
        "PutRolePolicy",
        "ListRolePolicies",
        "ListAttachedRolePolicies",
        "DeleteRolePolicy",
        "DetachRolePolicy",
    ):
        arn = f"arn:{p}:iam::{account}:role/{params['RoleName']}"
        requests = [Request(f"iam:{op}", arn)]
        if op == "CreateRole" and params.get("Tags"):
            requests.append(Request("iam:TagRole", arn))  # tag-on-create needs TagRole too
        return requests
    if call.service == "events" and op in ("ListTagsForResource", "TagResource"):
        return [Request(f"events:{op}", params["ResourceARN"])]
    if call.service == "events" and op in (
        "DescribeRule",
        "ListTargetsByRule",
        "PutRule",
        "PutTargets",
        "RemoveTargets",
        "DeleteRule",
    ):
        rule = params.get("Name") or params["Rule"]
        requests = [Request(f"events:{op}", f"arn:{p}:events:{r}:{account}:rule/{rule}")]
        if op == "PutRule" and params.get("Tags"):  # tag-on-create needs TagResource too
            requests.append(Request("events:TagResource", requests[0].resource))
        for target in params.get("Targets", []):
            if target.get("RoleArn"):
                context = (("iam:PassedToService", "events.amazonaws.com"),)
                requests.append(Request("iam:PassRole", target["RoleArn"], context))
        return requests
    if key in (
        ("guardduty", "ListDetectors"),
        ("guardduty", "GetAdministratorAccount"),
        ("guardduty", "ListOrganizationAdminAccounts"),
    ):
        return [Request(f"guardduty:{op}", "*")]  # no resource-level permissions
    if key == ("guardduty", "CreateDetector"):
        # GuardDuty creates its service-linked role(s) with the caller's permissions on first use.
        slrs = [("guardduty.amazonaws.com", "AWSServiceRoleForAmazonGuardDuty")]
        enabled = {f["Name"] for f in params.get("Features", []) if f["Status"] == "ENABLED"}
        if enabled & FEATURES_WITH_MALWARE_SLR:
            slrs.append(
                (
                    "malware-protection.guardduty.amazonaws.com",
                    "AWSServiceRoleForAmazonGuardDutyMalwareProtection",
                )
            )
        tagged = (
            [Request("guardduty:TagResource", f"arn:{p}:guardduty:{r}:{account}:detector/*")]
            if params.get("Tags")
            else []
        )
        return [Request("guardduty:CreateDetector", "*"), *tagged] + [
            Request(
                "iam:CreateServiceLinkedRole",
                f"arn:{p}:iam::{account}:role/aws-service-role/{service}/{name}",
                (("iam:AWSServiceName", service),),
            )
            for service, name in slrs
        ]
    if key == ("guardduty", "CreateSampleFindings"):
        return [Request("guardduty:CreateSampleFindings", "*")]  # no resource-level permissions
    if call.service == "kinesis" and op in ("ListShards", "GetShardIterator", "GetRecords"):
        # The stream is the calling role's own (in `account`); as for SQS above, only the
        # stream's name is taken from moto's ARN.
        name = params["StreamARN"].rsplit("/", 1)[-1]
        return [Request(f"kinesis:{op}", f"arn:{p}:kinesis:{r}:{account}:stream/{name}")]
    if key == ("guardduty", "DeleteDetector"):
        # Removal deletes only a detector it read as tagged managed-by=watershed (asserted by
        # tests/onboarding/test_remove.py), so that is the tag IAM sees on the resource.
        arn = f"arn:{p}:guardduty:{r}:{account}:detector/{params['DetectorId']}"
        return [
            Request("guardduty:DeleteDetector", arn, (("aws:ResourceTag/managed-by", "watershed"),))
        ]
    if key in (("guardduty", "GetDetector"), ("guardduty", "UpdateDetector")):
        arn = f"arn:{p}:guardduty:{r}:{account}:detector/{params['DetectorId']}"
        return [Request(f"guardduty:{op}", arn)]
    raise AssertionError(f"unmapped call {call.service}:{op}: map it here and grant it")


def _org_arn(target: str, org_id: str, management: str) -> str:
    """The ARN of an account, OU or root id (Service Authorization Reference, Organizations):
    account/o-…/<account id>, ou/o-…/ou-…, root/o-…/r-…, all in the management account."""
    if target.startswith("ou-"):
        kind = "ou"
    elif target.startswith("r-"):
        kind = "root"
    else:
        assert target.isdigit() and len(target) == 12, target
        kind = "account"
    return f"arn:aws:organizations::{management}:{kind}/{org_id}/{target}"


# -- evaluation: a small identity-policy matcher -----------------------------------------------


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _like(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


CONDITION_OPERATORS = {
    "StringEquals": lambda want, have: want == have,
    "StringLike": _like,
    "ArnEquals": lambda want, have: want == have,
    "ArnLike": _like,
}


def _conditions_hold(condition: dict, context: dict[str, str]) -> bool:
    for operator, keys in condition.items():
        compare = CONDITION_OPERATORS[operator]  # KeyError: teach the matcher the operator
        for key, wanted in keys.items():
            if key not in context:
                return False
            if not any(compare(str(w), context[key]) for w in _as_list(wanted)):
                return False
    return True


def _matches(statement: dict, request: Request) -> bool:
    actions = _as_list(statement.get("Action", []))
    if not any(_like(a, request.action, case_sensitive=False) for a in actions):
        return False
    if not any(_like(r, request.resource) for r in _as_list(statement.get("Resource", []))):
        return False
    return _conditions_hold(statement.get("Condition", {}), dict(request.context))


def allowed(documents: list[dict], request: Request) -> bool:
    statements = [s for d in documents for s in _as_list(d["Statement"])]
    if any(s["Effect"] == "Deny" and _matches(s, request) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _matches(s, request) for s in statements)


def identity_policies(deployment: Deployment, role_logical_id: str) -> list[dict]:
    """The identity policies attached to one role: its inline ones and AWS::IAM::Policy."""
    resources = deployment.resources()
    attached = []
    for logical_id, kind, document in policy_documents(deployment):
        if kind != "identity":
            continue
        if logical_id == role_logical_id:
            attached.append(document)
            continue
        roles = resources[logical_id].get("Properties", {}).get("Roles", [])
        if {"Ref": role_logical_id} in roles:
            attached.append(document)
    assert attached, f"{role_logical_id} has no policy in this deployment"
    return attached


def test_the_matcher_allows_and_refuses_what_iam_would():
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "events:Put*",
                "Resource": "arn:aws:events:*:111111111111:rule/watershed-forward",
            },
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": "arn:aws:iam::111111111111:role/watershed-forwarder",
                "Condition": {"StringEquals": {"iam:PassedToService": "events.amazonaws.com"}},
            },
        ]
    }
    rule = "arn:aws:events:eu-west-1:111111111111:rule/watershed-forward"
    role = "arn:aws:iam::111111111111:role/watershed-forwarder"
    assert allowed([policy], Request("events:PutTargets", rule))
    assert not allowed([policy], Request("events:DescribeRule", rule))
    assert not allowed([policy], Request("events:PutRule", rule.replace("forward", "other")))
    passed = (("iam:PassedToService", "events.amazonaws.com"),)
    assert allowed([policy], Request("iam:PassRole", role, passed))
    assert not allowed([policy], Request("iam:PassRole", role))
    to_lambda = (("iam:PassedToService", "lambda.amazonaws.com"),)
    assert not allowed([policy], Request("iam:PassRole", role, to_lambda))


def test_the_launcher_may_not_delete_any_detector(org, settings, org_id, launcher_arn):
    # The launcher may tag a detector (CreateDetector's managed-by tag needs TagResource), so a
    # tag condition on DeleteDetector would not protect the owner's detector: tag it, then
    # delete it. The launcher holds no DeleteDetector at all.
    management, _ = _launcher_deployments(org, settings, org_id, launcher_arn)
    launcher = identity_policies(management, "LauncherRole")
    arn = f"arn:aws:guardduty:eu-west-1:{org.management}:detector/12abc34d567e8fa901bc2d34e56789f0"
    tagged = (("aws:ResourceTag/managed-by", "watershed"),)
    assert allowed(launcher, Request("guardduty:TagResource", arn))
    assert not allowed(launcher, Request("guardduty:DeleteDetector", arn, tagged))
    assert not allowed(launcher, Request("guardduty:DeleteDetector", arn))  # the owner's
    # and it may delete only the forwarding rule of our name
    rule = f"arn:aws:events:eu-west-1:{org.management}:rule/team-rule"
    assert not allowed(launcher, Request("events:DeleteRule", rule))
    assert not allowed(launcher, Request("events:RemoveTargets", rule))


# -- the scenario ------------------------------------------------------------------------------


def _drift(reader, account: str, settings) -> None:
    """Undo a little of everything onboarding configured, so the re-run takes the Update paths,
    and put a foreign target on our rule, so it takes the removal path too. The management
    account's forwarder role is management.yaml's: its drift is only reported (tested below)."""
    for region in settings.hub_regions:
        detector = reader.detector(account, region)
        reader.client(account, "guardduty", region).update_detector(
            DetectorId=detector["DetectorId"], Enable=False, FindingPublishingFrequency="SIX_HOURS"
        )
        if reader.rule(account, region, settings.forward_rule_name) is not None:
            events = reader.client(account, "events", region)
            events.disable_rule(Name=settings.forward_rule_name)
            events.remove_targets(Rule=settings.forward_rule_name, Ids=["security-bus"])
            outside = f"arn:aws:events:{region}:999999999999:event-bus/default"
            events.put_targets(
                Rule=settings.forward_rule_name, Targets=[{"Id": "exfil", "Arn": outside}]
            )


def _onboard_twice(org, settings, reader) -> CallsByRole:
    recorded = CallsByRole()
    onboarder = Onboarder(settings, AttributingFactory(settings, recorded))

    first = onboarder.onboard(OnboardingRequest(org.management))
    assert first.status == "ok", first.as_dict()
    _drift(reader, org.management, settings)
    again = onboarder.onboard(OnboardingRequest(org.management))
    assert again.status == "ok", again.as_dict()
    assert again.all_changes, "the drift must have been repaired (Update paths taken)"
    return recorded


def _denied(calls: list[Call], documents: list[dict], account: str, org_id: str, management):
    requests = {r for c in calls for r in authorisations(c, account, org_id, management)}
    return sorted(str(r) for r in requests if not allowed(documents, r))


@pytest.fixture
def org_id(org, reader) -> str:
    organization = reader.client(org.management, "organizations").describe_organization()
    return organization["Organization"]["Id"]


@pytest.fixture
def launcher_arn(org, reader) -> str:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{org.security}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam = reader.client(org.management, "iam")
    role = iam.create_role(
        RoleName="watershed-launcher", AssumeRolePolicyDocument=json.dumps(trust)
    )
    return role["Role"]["Arn"]


def _launcher_deployments(org, settings, org_id: str, launcher_arn: str, **sam_extra: str):
    """management.yaml (us-east-1) and template.yaml (home region) as deployed with a launcher."""
    management = Deployment(
        load_template(MANAGEMENT_TEMPLATE),
        "us-east-1",
        org.management,
        {
            "SecurityAccountId": org.security,
            "SecurityHomeRegion": settings.home_region,
            "OnboardingRoleArn": f"arn:aws:iam::{org.security}:role/watershed-onboarding",
            "OrganizationId": org_id,
        },
    )
    security = Deployment(
        load_template(SAM_TEMPLATE),
        settings.home_region,
        org.security,
        {
            "OrganizationId": org_id,
            "ManagementAccountId": org.management,
            "HomeRegion": settings.home_region,
            "HubRegions": ",".join(settings.hub_regions),
            "LauncherRoleArn": launcher_arn,
            **sam_extra,
        },
    )
    return management, security


def test_the_launcher_may_do_everything_onboarding_the_management_account_does(
    org, settings, reader, org_id, launcher_arn
):
    # Given management.yaml and template.yaml deployed for this organization, with a launcher
    settings = replace(settings, launcher_role_arn=launcher_arn)
    management, security = _launcher_deployments(org, settings, org_id, launcher_arn)

    # When the management account is onboarded, then repaired after drift
    recorded = _onboard_twice(org, settings, reader)

    # Then the onboarding role only assumed the launcher, and was allowed to
    own = recorded.calls[OWN]
    assert {(c.service, c.operation) for c in own} == {("sts", "AssumeRole")}
    onboarding_role = identity_policies(security, "OnboardingRole")
    assert _denied(own, onboarding_role, org.security, org_id, org.management) == []
    # And the launcher was allowed every call it made in the management account
    made = recorded.calls[launcher_arn]
    operations = {c.operation for c in made}
    assert {"PutTargets", "RemoveTargets", "CreateDetector", "UpdateDetector"} <= operations
    assert {"GetRole", "ListRolePolicies", "GetAdministratorAccount"} <= operations
    launcher = identity_policies(management, "LauncherRole")
    assert _denied(made, launcher, org.management, org_id, org.management) == []
    assert set(recorded.calls) == {OWN, launcher_arn}  # no role assumed into itself
    # And it wrote nothing in IAM there: the forwarder role is management.yaml's
    assert {c.operation for c in made if c.service == "iam"} <= IAM_READS
    # And the foreign target it removed was on our rule only
    removed = [c.params for c in made if c.operation == "RemoveTargets"]
    assert {tuple(p["Ids"]) for p in removed} == {("exfil",)}


IAM_READS = {"GetRole", "GetRolePolicy", "ListRolePolicies", "ListAttachedRolePolicies"}


def test_a_drifted_management_forwarder_role_is_reported_never_written(
    org, settings, reader, org_id, launcher_arn
):
    # Given the management account onboarded through the launcher, then its forwarder role
    # (management.yaml's) tampered with: an admin policy attached, an inline one added, the
    # trust opened to an outside account
    settings = replace(settings, launcher_role_arn=launcher_arn)
    management, _ = _launcher_deployments(org, settings, org_id, launcher_arn)
    recorded = CallsByRole()
    onboarder = Onboarder(settings, AttributingFactory(settings, recorded))
    assert onboarder.onboard(OnboardingRequest(org.management)).status == "ok"
    iam = reader.client(org.management, "iam")
    name = settings.forwarder_role_name
    everything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    admin = iam.create_policy(
        PolicyName="admin",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [everything]}),
    )["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=name, PolicyArn=admin)
    iam.put_role_policy(
        RoleName=name,
        PolicyName="backdoor",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [everything]}),
    )
    outsider = {
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
        "Action": "sts:AssumeRole",
    }
    iam.update_assume_role_policy(
        RoleName=name, PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [outsider]})
    )
    tampered = reader.role(org.management)
    recorded.calls.clear()

    # When it is planned, then onboarded again
    plan = onboarder.plan(OnboardingRequest(org.management))
    again = onboarder.onboard(OnboardingRequest(org.management))

    # Then the plan names each foreign thing, and onboarding refuses, naming the drift ...
    planned = [str(c) for c in plan.changes]
    assert any(f"foreign attached policy {admin}" in c for c in planned), planned
    assert any("foreign inline policy backdoor" in c for c in planned), planned
    assert any("999999999999" in c and "trust" in c for c in planned), planned
    assert again.status == "failed"
    assert again.error == "ForwarderRoleNotAsDeclared"
    assert "management.yaml" in again.reason and "backdoor" in again.reason
    # ... and writes nothing in IAM (the launcher may not), every call allowed, the role as found
    made = recorded.calls[launcher_arn]
    assert {c.operation for c in made if c.service == "iam"} <= IAM_READS
    launcher = identity_policies(management, "LauncherRole")
    assert _denied(made, launcher, org.management, org_id, org.management) == []
    assert reader.role(org.management) == tampered


def test_no_launcher_statement_grants_an_iam_write_action(org, settings, org_id, launcher_arn):
    # Given management.yaml resolved for this organization (every variant of the launcher)
    management, _ = _launcher_deployments(org, settings, org_id, launcher_arn)
    statements = [
        s for d in identity_policies(management, "LauncherRole") for s in _as_list(d["Statement"])
    ]
    # When each allowed action (wildcards expanded against AWS's list of IAM actions) is
    # classified by its access level in the Service Authorization Reference
    writes = set()
    for statement in statements:
        assert "NotAction" not in statement
        if statement["Effect"] != "Allow":
            continue
        for pattern in _as_list(statement["Action"]):
            for action, level in IAM_ACCESS_LEVELS.items():
                if _like(pattern, action, case_sensitive=False) and level != "Read":
                    writes.add((action, statement.get("Sid")))
    # Then the only IAM actions beyond reading are the two that cannot grant anything: passing
    # the management account's own (declared) forwarder role to EventBridge, and GuardDuty's
    # service-linked roles (fixed AWS-managed policy, trusted by GuardDuty only) that
    # CreateDetector creates on first use
    assert writes == {
        ("iam:passrole", "PassOwnForwarderRoleToEventBridgeOnly"),
        ("iam:createservicelinkedrole", "GuardDutyServiceLinkedRoles"),
    }
    # And a statement that did grant one is caught by this very check
    careless = {"Effect": "Allow", "Action": "iam:Put*", "Resource": "*"}
    assert any(
        _like(careless["Action"], a, case_sensitive=False) and level != "Read"
        for a, level in IAM_ACCESS_LEVELS.items()
    )


def _iam_access_levels() -> dict[str, str]:
    """Every IAM action with its access level (Read, List, Write, Permissions management,
    Tagging), from parliament's copy of the Service Authorization Reference. List counts as
    reading here."""
    import parliament

    path = Path(parliament.__file__).parent / "iam_definition.json"
    definition = json.loads(path.read_text())
    levels = {}
    for service in definition:  # the reference lists IAM twice (two service names)
        if service["prefix"] != "iam":
            continue
        for privilege in service["privileges"]:
            level = privilege["access_level"]
            levels[f"iam:{privilege['privilege']}".lower()] = (
                "Read" if level in ("Read", "List") else level
            )
    assert {"iam:putrolepolicy", "iam:passrole", "iam:getrole"} <= set(levels)
    return levels


IAM_ACCESS_LEVELS = _iam_access_levels()


def test_without_a_launcher_the_onboarding_role_may_onboard_its_own_account(
    org, settings, reader, org_id
):
    # Given template.yaml deployed in the management account itself: it is the Security account
    settings = replace(settings, security_account_id=org.management, launcher_role_arn=None)
    home = settings.home_region
    security = Deployment(
        load_template(SAM_TEMPLATE),
        home,
        org.management,
        {
            "OrganizationId": org_id,
            "ManagementAccountId": org.management,
            "HomeRegion": home,
            "HubRegions": ",".join(settings.hub_regions),
            "LauncherRoleArn": "",
        },
    )

    # When it onboards itself, then repairs drift
    recorded = _onboard_twice(org, settings, reader)

    # Then every call was made with its own credentials, and each was allowed
    assert set(recorded.calls) == {OWN}
    made = recorded.calls[OWN]
    operations = {c.operation for c in made}
    assert {"CreateDetector", "UpdateDetector", "GetAdministratorAccount"} <= operations
    onboarding_role = identity_policies(security, "OnboardingRole")
    assert _denied(made, onboarding_role, org.management, org_id, org.management) == []


def test_the_queue_paths_are_allowed_backfill_with_exclusions_then_one_message(
    org, settings, reader, org_id, launcher_arn, monkeypatch, lambda_context
):
    # Given both templates deployed with a launcher, the work queue and its dead-letter queue
    # (named as the template's resolved ARNs name them), an excluded OU and an exclusion tag
    orgs = reader.client(org.management, "organizations")
    root = orgs.list_roots()["Roots"][0]["Id"]
    ou = orgs.create_organizational_unit(ParentId=root, Name="sandbox")["OrganizationalUnit"]["Id"]
    child = orgs.create_organizational_unit(ParentId=ou, Name="deep")["OrganizationalUnit"]["Id"]
    orgs.move_account(AccountId=org.other_member, SourceParentId=root, DestinationParentId=child)
    home = settings.home_region
    sqs = boto3.client("sqs", region_name=home)
    work = sqs.create_queue(QueueName="WorkQueue")["QueueUrl"]
    dead_letter = sqs.create_queue(QueueName="WorkDeadLetterQueue")["QueueUrl"]
    settings = replace(
        settings,
        launcher_role_arn=launcher_arn,
        work_queue_url=work,
        dead_letter_queue_url=dead_letter,
        excluded_ous=frozenset({ou}),
        exclude_tag=("watershed", "skip"),
    )
    management, security = _launcher_deployments(org, settings, org_id, launcher_arn)
    recorded = CallsByRole()
    onboarder = Onboarder(settings, AttributingFactory(settings, recorded))
    monkeypatch.setattr(handler, "onboarder", lambda: onboarder)

    # When the reconcile schedule dispatches "ALL" through the function ...
    enqueued = handler.lambda_handler({"accounts": "ALL", "reason": "schedule"}, lambda_context)
    assert org.management in enqueued["accounts"]
    assert org.other_member not in enqueued["accounts"]  # below the excluded OU
    # ... and the function then processes the management account's message, in an SQS batch
    # with a poison message (which is dead-lettered)
    messages = []
    while batch := sqs.receive_message(QueueUrl=work, MaxNumberOfMessages=10).get("Messages"):
        messages += batch
    [message] = [m for m in messages if json.loads(m["Body"])["accounts"] == [org.management]]
    arn = sqs.get_queue_attributes(QueueUrl=work, AttributeNames=["QueueArn"])["Attributes"]
    records = [
        {"messageId": message["MessageId"], "body": message["Body"]},
        {"messageId": "poison", "body": "not JSON"},
    ]
    event = {
        "Records": [
            {
                **record,
                "receiptHandle": f"rh-{i}",
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "0" * 32,
                "eventSource": "aws:sqs",
                "eventSourceARN": arn["QueueArn"],
                "awsRegion": home,
            }
            for i, record in enumerate(records)
        ]
    }
    response = handler.lambda_handler(event, lambda_context)
    assert response["batchItemFailures"] == []
    assert [a["status"] for a in response["accounts"]] == ["ok"]
    [dead] = sqs.receive_message(QueueUrl=dead_letter).get("Messages", [])
    assert json.loads(dead["Body"])["kind"] == "invalid"

    # Then the onboarding role assumed the launcher and sent to its two queues, and was allowed
    own = recorded.calls[OWN]
    assert {(c.service, c.operation) for c in own} == {
        ("sts", "AssumeRole"),
        ("sqs", "SendMessageBatch"),
        ("sqs", "SendMessage"),
    }
    assert {c.params["QueueUrl"] for c in own if c.service == "sqs"} == {work, dead_letter}
    onboarding_role = identity_policies(security, "OnboardingRole")
    assert _denied(own, onboarding_role, org.security, org_id, org.management) == []
    # And the launcher was allowed every read of the selection, the exclusions and the account
    made = recorded.calls[launcher_arn]
    assert {
        "ListAccounts",
        "ListAccountsForParent",
        "ListOrganizationalUnitsForParent",
        "DescribeAccount",
        "ListParents",
        "ListTagsForResource",
        "CreateDetector",
        "PutTargets",
    } <= {c.operation for c in made}
    launcher = identity_policies(management, "LauncherRole")
    assert _denied(made, launcher, org.management, org_id, org.management) == []


def test_the_canary_is_allowed_list_raise_in_management_and_member_read_the_stream(
    org, settings, reader, org_id, launcher_arn
):
    from datetime import UTC, datetime, timedelta

    from botocore.awsrequest import AWSResponse

    from onboarding.canary.canary import Canary, CanarySettings, organization_accounts

    # Given both templates deployed with a launcher and the scheduled canary on, GuardDuty in
    # the management account and a member, and the destination stream (named as the template
    # names it)
    settings = replace(settings, launcher_role_arn=launcher_arn)
    management, security = _launcher_deployments(
        org, settings, org_id, launcher_arn, CanaryIntervalMinutes="60"
    )
    for account in (org.management, org.member):
        reader.client(account, "guardduty", settings.home_region).create_detector(Enable=True)
    kinesis = boto3.client("kinesis", region_name=settings.home_region)
    kinesis.create_stream(StreamName="watershed", ShardCount=2)
    stream = kinesis.describe_stream_summary(StreamName="watershed")["StreamDescriptionSummary"]

    def sample_findings(**_):  # moto has no CreateSampleFindings: answer as GuardDuty does
        return AWSResponse("https://stand-in.invalid", 200, {}, None), {
            "ResponseMetadata": {"HTTPStatusCode": 200}
        }

    offset = []
    recorded = CallsByRole()
    factory = AttributingFactory(
        settings, recorded, hooks=[("before-call.guardduty.CreateSampleFindings", sample_findings)]
    )
    canary = Canary(
        replace(settings, hub_regions=(settings.home_region,)),
        CanarySettings(stream["StreamARN"], timeout_seconds=10),
        factory,
        clock=lambda: datetime.now(UTC) + timedelta(seconds=10 * len(offset)),
        sleep=lambda _: offset.append(1),
    )

    # When the canary lists the organization, then raises in the management account and a member
    accounts = organization_accounts(canary)
    assert {org.management, org.member} <= set(accounts)
    report = canary.run([org.management, org.member])
    assert {r.status for r in report.results} == {"missing"}  # raised; nothing delivers here

    # Then the onboarding role assumed the launcher and read the destination stream, allowed
    own = recorded.calls[OWN]
    assert {(c.service, c.operation) for c in own} == {
        ("sts", "AssumeRole"),
        ("kinesis", "ListShards"),
        ("kinesis", "GetShardIterator"),
        ("kinesis", "GetRecords"),
    }
    onboarding_role = identity_policies(security, "OnboardingRole")
    assert _denied(own, onboarding_role, org.security, org_id, org.management) == []
    # and the launcher listed the organization, reached the member, raised in its own account
    made = recorded.calls[launcher_arn]
    assert {"ListAccounts", "AssumeRole", "DescribeRegions", "CreateSampleFindings"} <= {
        c.operation for c in made
    }
    launcher = identity_policies(management, "LauncherRole")
    assert _denied(made, launcher, org.management, org_id, org.management) == []
    # and without the scheduled canary the onboarding role may not read the stream at all
    _, without = _launcher_deployments(org, settings, org_id, launcher_arn)
    assert (
        _denied(
            own, identity_policies(without, "OnboardingRole"), org.security, org_id, org.management
        )
        != []
    )


def _onboard_then_remove(org, settings, reader, recorded: CallsByRole) -> None:
    """Onboard the management account, strip the rule's tag (an older deployment, so the
    reconcile's TagResource path runs), reconcile, then remove everything, GuardDuty included."""
    onboarder = Onboarder(settings, AttributingFactory(settings, recorded))
    assert onboarder.onboard(OnboardingRequest(org.management)).status == "ok"
    for region in settings.hub_regions:
        rule = reader.rule(org.management, region, settings.forward_rule_name)
        if rule is not None:
            reader.client(org.management, "events", region).untag_resource(
                ResourceARN=rule["Arn"], TagKeys=["managed-by"]
            )
    assert onboarder.onboard(OnboardingRequest(org.management)).status == "ok"
    removal = OnboardingRequest(org.management, action="remove", guardduty=True)
    report = onboarder.onboard(removal)
    assert report.status == "ok", report.as_dict()
    for region in settings.hub_regions:
        # the management account's detector stays, even the one watershed created
        assert reader.detector(org.management, region) is not None, region
    retained = [c for c in report.all_changes if (c.resource, c.action) == ("detector", "retain")]
    assert len(retained) == len(settings.hub_regions), report.as_dict()


def test_the_launcher_may_remove_what_it_onboarded_in_the_management_account(
    org, settings, reader, org_id, launcher_arn
):
    # Given both templates deployed with a launcher
    settings = replace(settings, launcher_role_arn=launcher_arn)
    management, _ = _launcher_deployments(org, settings, org_id, launcher_arn)
    recorded = CallsByRole()

    # When the management account is onboarded, re-tagged by a reconcile, then removed
    _onboard_then_remove(org, settings, reader, recorded)

    # Then every call the launcher made was allowed, and it made no IAM write for the removal
    made = recorded.calls[launcher_arn]
    operations = {c.operation for c in made}
    assert {"TagResource", "RemoveTargets", "DeleteRule"} <= operations
    assert not {"DeleteRole", "DeleteRolePolicy", "DetachRolePolicy", "DeleteDetector"} & operations
    launcher = identity_policies(management, "LauncherRole")
    assert _denied(made, launcher, org.management, org_id, org.management) == []


def test_without_a_launcher_the_onboarding_role_removes_but_never_deletes_its_detectors(
    org, settings, reader, org_id
):
    settings = replace(settings, security_account_id=org.management, launcher_role_arn=None)
    security = Deployment(
        load_template(SAM_TEMPLATE),
        settings.home_region,
        org.management,
        {
            "OrganizationId": org_id,
            "ManagementAccountId": org.management,
            "HomeRegion": settings.home_region,
            "HubRegions": ",".join(settings.hub_regions),
            "LauncherRoleArn": "",
        },
    )
    recorded = CallsByRole()

    _onboard_then_remove(org, settings, reader, recorded)

    made = recorded.calls[OWN]
    # (this account is also the Security account: it has no rule or role, only detectors,
    # and those stay - _onboard_then_remove read them back)
    assert "DeleteDetector" not in {c.operation for c in made}
    onboarding_role = identity_policies(security, "OnboardingRole")
    assert _denied(made, onboarding_role, org.management, org_id, org.management) == []
