"""Least privilege, checked on every IAM document both templates create, in every variant.

The documents are resolved for a concrete deployment (cfnmodel.Deployment), so what is checked
is the JSON IAM would receive. Which actions have resource-level permissions comes from
parliament's copy of the AWS Service Authorization Reference, not from a list kept here.
"""

import json
import os

import parliament
from parliament import analyze_policy_string

# Statements allowed a "*" resource, each with the reason. The check below also requires that
# AWS offers no resource-level permission for every one of these actions.
WILDCARD_ALLOWED = {
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions (Tracing: Active)",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions (Tracing: Active)",
    "ec2:DescribeRegions": "no resource-level permissions; the onboarded account's own regions",
    "guardduty:ListDetectors": "no resource-level permissions; the account's own detector",
    "guardduty:CreateDetector": "no resource-level permissions; the account's own detector",
    "guardduty:GetAdministratorAccount": "no resource-level permissions; its own detector",
    "guardduty:ListOrganizationAdminAccounts": (
        "no resource-level permissions; the GuardDuty delegated administrator of each region"
    ),
    "organizations:ListAccounts": "no resource-level permissions; the backfill reads pages",
    "guardduty:CreateSampleFindings": "no resource-level permissions; the canary, own detector",
}

# parliament findings that are the point of a statement, not a flaw in it.
EXPECTED_FINDINGS = {
    # The onboarding chain is assume-role by design; each statement names its roles.
    ("CREDENTIALS_EXPOSURE", ("sts:assumerole",)),
    # CreateDetector creates GuardDuty's service-linked roles; scoped by iam:AWSServiceName.
    ("PERMISSIONS_MANAGEMENT_ACTIONS", ("iam:createservicelinkedrole",)),
    # The launcher passes the management account's own forwarder role (declared by
    # management.yaml, read-only to the launcher) to EventBridge only; CreateDetector creates
    # GuardDuty's service-linked roles. It writes no IAM policy or trust anywhere (see
    # test_no_launcher_statement_grants_an_iam_write_action in tests/onboarding).
    (
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        ("iam:createservicelinkedrole", "iam:passrole"),
    ),
}


def _statements(document):
    found = document["Statement"]
    return found if isinstance(found, list) else [found]


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _resource_types_by_action():
    path = os.path.join(os.path.dirname(parliament.__file__), "iam_definition.json")
    with open(path) as handle:
        definition = json.load(handle)
    return {
        f"{service['prefix']}:{privilege['privilege']}".lower(): [
            r["resource_type"] for r in privilege["resource_types"] if r["resource_type"]
        ]
        for service in definition
        for privilege in service["privileges"]
    }


RESOURCE_TYPES = _resource_types_by_action()


def broad_statement_problems(document):
    """What is too broad in an identity policy: a list of readable problems, empty when fine."""
    problems = []
    for statement in _statements(document):
        sid = statement.get("Sid", "?")
        if statement["Effect"] != "Allow":
            continue
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{sid}: Allow with NotAction/NotResource")
            continue
        actions = _as_list(statement["Action"])
        for action in actions:
            if "*" in action:
                problems.append(f"{sid}: wildcard action {action}")
            elif action.lower() not in RESOURCE_TYPES:
                problems.append(f"{sid}: unknown action {action}")
        if "*" in _as_list(statement["Resource"]):
            for action in actions:
                if action not in WILDCARD_ALLOWED:
                    problems.append(f'{sid}: "*" resource for {action} (not in the allow-list)')
                elif RESOURCE_TYPES.get(action.lower()):
                    problems.append(
                        f'{sid}: "*" resource for {action}, which supports resource-level '
                        f"permissions {RESOURCE_TYPES[action.lower()]}"
                    )
    return problems


def test_the_broad_statement_check_catches_what_it_should():
    # Given statements a careless template would contain
    careless = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": "kinesis:PutRecords", "Resource": "*"},
            {"Sid": "B", "Effect": "Allow", "Action": "sqs:*", "Resource": "arn:aws:sqs:::q"},
            {"Sid": "C", "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
            {"Sid": "D", "Effect": "Allow", "Action": "ec2:DescribeRegions", "Resource": "*"},
        ],
    }
    # When checked, Then every careless statement is named and the justified one is not
    problems = broad_statement_problems(careless)
    assert [p.split(":")[0] for p in problems] == ["A", "B", "C"]


def test_every_wildcard_allowance_is_for_an_action_without_resource_level_permissions():
    for action in WILDCARD_ALLOWED:
        assert action.lower() in RESOURCE_TYPES, action
        assert RESOURCE_TYPES[action.lower()] == [], action


def test_no_identity_policy_is_broader_than_aws_allows(identity_policy):
    logical_id, _, document = identity_policy
    assert broad_statement_problems(document) == [], logical_id


def test_every_wildcard_statement_says_why_next_to_it(sam_template, management_template):
    # The reason lives in the template as a comment; the Sid names it too, so the rendered
    # policy in the console carries it.
    for template in (sam_template, management_template):
        for resource in template["Resources"].values():
            props = resource.get("Properties", {})
            documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
            if resource["Type"] == "AWS::IAM::Policy":
                documents.append(props["PolicyDocument"])
            for document in documents:
                for statement in _statements(document):
                    if statement.get("Resource") == "*":
                        assert "NoResourceLevelPermissions" in statement["Sid"], statement


def test_resource_policies_allow_only_pinned_principals(resource_policy):
    logical_id, _, document = resource_policy
    for statement in _statements(document):
        if statement["Effect"] == "Deny":
            assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            continue
        principal = statement["Principal"]
        conditions = {
            key for operator in statement.get("Condition", {}).values() for key in operator
        }
        if principal == "*":
            assert "aws:PrincipalOrgID" in conditions, logical_id
        else:
            # A service principal writes into our queue/topic only for our own rules/alarms.
            assert conditions & {"aws:SourceArn", "aws:SourceAccount"}, logical_id


def test_trust_policies_are_pinned(trust_policy):
    logical_id, _, document = trust_policy
    for statement in _statements(document):
        assert statement["Action"] == "sts:AssumeRole"
        principal = statement["Principal"]
        conditions = {
            key: value
            for operator in statement.get("Condition", {}).values()
            for key, value in operator.items()
        }
        if "Service" in principal:
            assert "aws:SourceAccount" in conditions, logical_id
            if principal["Service"] == "events.amazonaws.com":
                # EventBridge roles: only our own rules may use them.
                assert ":rule/watershed-" in conditions["aws:SourceArn"], logical_id
        else:
            # An AWS principal (the launcher's trust): one role, by aws:PrincipalArn.
            assert set(conditions) == {"aws:PrincipalArn"}, logical_id
            assert conditions["aws:PrincipalArn"].endswith(":role/watershed-onboarding")


def test_passrole_is_never_granted_without_passed_to_service(policy_document):
    logical_id, _, document = policy_document
    for statement in _statements(document):
        actions = [a.lower() for a in _as_list(statement.get("Action", []))]
        if "iam:passrole" in actions:
            # Only the launcher passes a role: the management account's own forwarder role, to
            # EventBridge (PutTargets with RoleArn), when it onboards the management account.
            # In the members the member's own admin role passes it (see docs/deploy.md).
            assert logical_id == "LauncherRole"
            assert statement["Condition"] == {
                "StringEquals": {"iam:PassedToService": "events.amazonaws.com"}
            }
            assert statement["Resource"].endswith(":role/watershed-forwarder")


def test_parliament_finds_nothing_unexpected(policy_document):
    logical_id, kind, document = policy_document
    policy = analyze_policy_string(json.dumps(document), include_community_auditors=True)
    unexpected = []
    for finding in policy.findings:
        if (
            kind == "trust"
            and finding.issue == "MALFORMED"
            and finding.detail == "Statement contains neither Resource nor NotResource"
        ):
            # parliament knows identity and resource policies; a trust policy has no Resource.
            continue
        if finding.issue == "UNKNOWN_CONDITION_FOR_ACTION" and "aws:SourceOrgID" in finding.detail:
            # A global condition key (service principals acting for a resource of an
            # organization) newer than parliament's database; the member DLQ pins it.
            continue
        actions = tuple(sorted(finding.location.get("actions", [])))
        if (finding.issue, actions) in EXPECTED_FINDINGS:
            continue
        unexpected.append((finding.issue, finding.detail, finding.location))
    assert unexpected == [], logical_id
