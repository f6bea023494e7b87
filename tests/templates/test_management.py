"""management.yaml read as data: one template, deployed in us-east-1 and the Control Tower home
region, creates the right forwarding rules in each; the launcher is pinned both ways."""

import json

from cfnmodel import (
    HOME_REGION,
    MANAGEMENT_PARAMETERS,
    ORGANIZATION_ID,
    SECURITY_ACCOUNT,
    Deployment,
    eventbridge_event,
    management_deployments,
)
from moto.events.models import EventPattern

from onboarding.resources import iam
from onboarding.settings import Settings

SECURITY_BUS = f"arn:aws:events:{HOME_REGION}:{SECURITY_ACCOUNT}:event-bus/default"
MANAGEMENT = "111111111111"


def _event(source, detail_type, detail, account=MANAGEMENT):
    return eventbridge_event(source, detail_type, account, detail)


ORGANIZATIONS = "organizations.amazonaws.com"
CREATE_ACCOUNT_RESULT = _event(
    "aws.organizations",
    "AWS Service Event via CloudTrail",
    {"eventSource": ORGANIZATIONS, "eventName": "CreateAccountResult"},
)
ACCOUNT_JOINED = _event(
    "aws.organizations",
    "AWS Service Event via CloudTrail",
    {"eventSource": ORGANIZATIONS, "eventName": "AccountJoinedOrganization"},
)
# The same event as an API call (one public write-up shows it so; no document confirms either)
ACCOUNT_JOINED_AS_API_CALL = _event(
    "aws.organizations",
    "AWS API Call via CloudTrail",
    {"eventSource": ORGANIZATIONS, "eventName": "AccountJoinedOrganization"},
)
REGION_OPT_IN = _event("aws.account", "Region Opt-In Status Change", {"status": "ENABLED"})
CREATE_MANAGED_ACCOUNT = _event(
    "aws.controltower", "AWS Service Event via CloudTrail", {"eventName": "CreateManagedAccount"}
)
UPDATE_MANAGED_ACCOUNT = _event(
    "aws.controltower", "AWS Service Event via CloudTrail", {"eventName": "UpdateManagedAccount"}
)
CREATE_ACCOUNT_CALL = _event(
    "aws.organizations",
    "AWS API Call via CloudTrail",
    {"eventSource": ORGANIZATIONS, "eventName": "CreateAccount"},
)


def _rules(deployment):
    return {
        logical_id: deployment.resolve(resource["Properties"])
        for logical_id, resource in deployment.resources().items()
        if resource["Type"] == "AWS::Events::Rule"
    }


def _matches(rule, event):
    # moto's EventBridge pattern matcher stands in for EventBridge's (it implements $or).
    return EventPattern.load(json.dumps(rule["EventPattern"])).matches_event(event)


def test_us_east_1_forwards_organizations_events_and_holds_the_launcher(management_template):
    deployment = management_deployments(management_template)["us-east-1"]
    rules = _rules(deployment)
    assert set(rules) == {"OrganizationsTriggerRule", "OffboardingTriggerRule"}
    assert "LauncherRole" in deployment.resources()
    rule = rules["OrganizationsTriggerRule"]
    for event in (CREATE_ACCOUNT_RESULT, ACCOUNT_JOINED, ACCOUNT_JOINED_AS_API_CALL, REGION_OPT_IN):
        assert _matches(rule, event), event["detail"]
    assert not _matches(rule, CREATE_ACCOUNT_CALL)  # IN_PROGRESS, no account id yet
    assert not _matches(rule, CREATE_MANAGED_ACCOUNT)


def test_control_tower_home_forwards_control_tower_events_only(management_template):
    deployment = management_deployments(management_template)["ct-home"]
    rules = _rules(deployment)
    assert set(rules) == {"ControlTowerTriggerRule"}
    assert "LauncherRole" not in deployment.resources()  # IAM is global: created once
    rule = rules["ControlTowerTriggerRule"]
    assert _matches(rule, CREATE_MANAGED_ACCOUNT)
    assert _matches(rule, UPDATE_MANAGED_ACCOUNT)
    assert not _matches(rule, CREATE_ACCOUNT_RESULT)


def test_us_east_1_as_control_tower_home_gets_both_rules(management_template):
    deployment = management_deployments(management_template)["us-east-1-is-ct-home"]
    assert set(_rules(deployment)) == {
        "OrganizationsTriggerRule",
        "OffboardingTriggerRule",
        "ControlTowerTriggerRule",
    }


def test_elsewhere_nothing_is_created(management_template):
    deployment = Deployment(management_template, "ap-south-1", MANAGEMENT, MANAGEMENT_PARAMETERS)
    assert deployment.resources() == {}


def test_rules_target_the_security_home_bus_with_a_role_and_a_dead_letter_queue(
    management_deployment,
):
    rules = _rules(management_deployment)
    assert rules
    for logical_id, rule in rules.items():
        (target,) = rule["Targets"]
        assert target["Arn"] == SECURITY_BUS, logical_id
        assert target["Id"] == "security-bus"
        assert target["RoleArn"] == management_deployment.get_att("TriggerForwarderRole", "Arn")
        assert target["DeadLetterConfig"]["Arn"] == management_deployment.get_att(
            "TriggerDeadLetterQueue", "Arn"
        )
        assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
        # The management account's own events only.
        assert rule["EventPattern"]["account"] == [MANAGEMENT]
        assert rule["Name"].startswith("watershed-trigger-")


def test_forwarder_role_may_put_events_on_the_security_home_bus_only(management_deployment):
    role = management_deployment.resolve(
        management_deployment.template["Resources"]["TriggerForwarderRole"]["Properties"]
    )
    (policy,) = role["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == SECURITY_BUS
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": MANAGEMENT}


def test_launcher_is_assumable_by_the_onboarding_role_only(management_template):
    deployment = management_deployments(management_template)["us-east-1"]
    role = deployment.resolve(management_template["Resources"]["LauncherRole"]["Properties"])
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": f"arn:aws:iam::{SECURITY_ACCOUNT}:root"}
    assert trust["Condition"] == {
        "ArnEquals": {"aws:PrincipalArn": MANAGEMENT_PARAMETERS["OnboardingRoleArn"]}
    }


def test_launcher_assumes_only_the_member_role_names_inside_the_organization(
    management_template,
):
    deployment = Deployment(
        management_template,
        "us-east-1",
        MANAGEMENT,
        {**MANAGEMENT_PARAMETERS, "MemberRoleNames": "OrganizationAccountAccessRole,Admin"},
    )
    role = deployment.resolve(management_template["Resources"]["LauncherRole"]["Properties"])
    statements = {s["Sid"]: s for s in role["Policies"][0]["PolicyDocument"]["Statement"]}
    assume = statements["MemberAdminRolesInThisOrganization"]
    assert assume["Action"] == "sts:AssumeRole"
    assert assume["Resource"] == [
        "arn:aws:iam::*:role/OrganizationAccountAccessRole",
        "arn:aws:iam::*:role/Admin",
    ]
    assert assume["Condition"] == {"StringEquals": {"aws:ResourceOrgID": ORGANIZATION_ID}}
    organization = {
        a
        for s in statements.values()
        for a in _as_list(s["Action"])
        if s is not assume and not s["Sid"].startswith(("Own", "PassOwn", "GuardDuty"))
    }
    assert organization == {
        "organizations:DescribeAccount",
        "organizations:ListAccounts",
        "organizations:ListParents",
        "organizations:ListAccountsForParent",
        "organizations:ListOrganizationalUnitsForParent",
        "organizations:ListTagsForResource",
        "guardduty:ListOrganizationAdminAccounts",  # the GuardDuty administrator of each region
    }


def test_launcher_onboards_the_management_account_on_its_own_resources_only(
    management_template,
):
    # The management account is onboarded like a member, through the launcher itself (every
    # call it makes there is checked in tests/onboarding/test_permissions.py): here, that those
    # grants name only this account's forwarder role, forward rule and detectors.
    deployment = Deployment(
        management_template,
        "us-east-1",
        MANAGEMENT,
        {**MANAGEMENT_PARAMETERS, "ForwarderRoleName": "fwd", "ForwardRuleName": "fwd-rule"},
    )
    role = deployment.resolve(management_template["Resources"]["LauncherRole"]["Properties"])
    statements = {s["Sid"]: s for s in role["Policies"][0]["PolicyDocument"]["Statement"]}
    reading = statements["OwnForwarderRoleReadOnly"]
    assert reading["Resource"] == f"arn:aws:iam::{MANAGEMENT}:role/fwd"
    assert set(reading["Action"]) == {
        "iam:GetRole",
        "iam:GetRolePolicy",
        "iam:ListRolePolicies",
        "iam:ListAttachedRolePolicies",
    }
    passing = statements["PassOwnForwarderRoleToEventBridgeOnly"]
    assert passing["Action"] == "iam:PassRole"
    assert passing["Resource"] == f"arn:aws:iam::{MANAGEMENT}:role/fwd"
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "events.amazonaws.com"}}
    assert (
        statements["OwnForwardRule"]["Resource"] == f"arn:aws:events:*:{MANAGEMENT}:rule/fwd-rule"
    )
    assert statements["OwnDetector"]["Resource"] == f"arn:aws:guardduty:*:{MANAGEMENT}:detector/*"
    linked = statements["GuardDutyServiceLinkedRoles"]
    assert all(f"::{MANAGEMENT}:role/aws-service-role/" in arn for arn in linked["Resource"])
    assert set(linked["Condition"]["StringEquals"]["iam:AWSServiceName"]) == {
        "guardduty.amazonaws.com",
        "malware-protection.guardduty.amazonaws.com",
    }


def test_member_role_arns_follow_the_partition(management_template):
    deployment = Deployment(
        management_template,
        "us-gov-west-1",
        MANAGEMENT,
        {**MANAGEMENT_PARAMETERS, "OrganizationsEventsRegion": "us-gov-west-1"},
        partition="aws-us-gov",
    )
    role = deployment.resolve(management_template["Resources"]["LauncherRole"]["Properties"])
    assume = role["Policies"][0]["PolicyDocument"]["Statement"][0]
    assert assume["Resource"] == [
        "arn:aws-us-gov:iam::*:role/OrganizationAccountAccessRole",
        "arn:aws-us-gov:iam::*:role/AWSControlTowerExecution",
    ]


def _as_list(value):
    return value if isinstance(value, list) else [value]


def test_the_management_forwarder_role_is_declared_as_onboarding_expects_it(management_template):
    # Given management.yaml resolved where IAM is created (the Organizations events region)
    deployment = Deployment(
        management_template,
        "us-east-1",
        MANAGEMENT,
        {**MANAGEMENT_PARAMETERS, "ForwarderRoleName": "fwd", "ForwardRuleName": "fwd-rule"},
    )
    assert "ForwarderRole" in deployment.resources()
    role = deployment.resolve(management_template["Resources"]["ForwarderRole"]["Properties"])
    # Then it is exactly what onboarding verifies there: the members' pinned trust (EventBridge,
    # for this account's forwarding rule only) and its one inline policy, PutEvents on the
    # Security account's default bus
    settings = Settings(
        security_account_id=MANAGEMENT_PARAMETERS["SecurityAccountId"],
        management_account_id=MANAGEMENT,
        hub_regions=("eu-west-1", "us-east-1"),
        forwarder_role_name="fwd",
        forward_rule_name="fwd-rule",
    )
    assert role["RoleName"] == "fwd"
    assert role["AssumeRolePolicyDocument"] == iam.trust_policy(settings, MANAGEMENT)
    [policy] = role["Policies"]
    assert policy["PolicyName"] == iam.POLICY_NAME
    assert iam.same_policy(policy["PolicyDocument"], iam.management_permissions_policy(settings))
    assert {"Key": "managed-by", "Value": "watershed"} in role["Tags"]
    # And elsewhere (IAM is global) it is not declared a second time
    other = Deployment(management_template, "eu-west-1", MANAGEMENT, MANAGEMENT_PARAMETERS)
    assert "ForwarderRole" not in other.resources()


def test_us_east_1_forwards_the_offboarding_calls_only(management_template):
    rule = _rules(management_deployments(management_template)["us-east-1"])[
        "OffboardingTriggerRule"
    ]
    for name in ("MoveAccount", "TagResource", "UntagResource", "RemoveAccountFromOrganization"):
        call = _event("aws.organizations", "AWS API Call via CloudTrail", {"eventName": name})
        assert _matches(rule, call), name
    assert not _matches(rule, CREATE_ACCOUNT_CALL)
    assert not _matches(rule, CREATE_ACCOUNT_RESULT)
