"""The organization id the Security side's bus policy is judged against.

The launcher (management.yaml) may call DescribeAccount and ListAccounts, not
DescribeOrganization: the audit reads the id from the management account's ARN
(arn:aws:organizations::<management>:account/o-xxxx/<id>) and only falls back to
DescribeOrganization. An id it cannot learn makes the bus policy "cannot verify", never ok."""

import json

import pytest
from auditzoo import HUB_REGIONS, build_org, deploy_security_side
from botocore.awsrequest import AWSResponse

from onboarding.audit.audit import Auditor
from onboarding.audit.hub import check_bus_policy
from onboarding.sessions import SessionFactory


def deny(*operations):
    """A `before-call` hook answering AccessDenied for `operations`, in every account. It stands
    in for the launcher role's policy, which moto does not enforce (management.yaml grants
    DescribeAccount and ListAccounts, not DescribeOrganization)."""

    def hook(model, **_):
        if model.name in operations:
            body = {
                "Error": {"Code": "AccessDeniedException", "Message": "not authorized (injected)"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            return AWSResponse("https://injected.invalid", 400, {}, None), body
        return None

    return ("before-call", hook)


@pytest.fixture
def org(aws):
    """A small organization whose Security side grants a *different* organization."""
    org = build_org([])
    deploy_security_side(org)
    for region in HUB_REGIONS:
        org.client(org.security, "events", region).put_permission(
            EventBusName="default",
            Action="events:PutEvents",
            Principal="*",
            StatementId="WatershedOrganizationPutEvents",
            Condition={
                "Type": "StringEquals",
                "Key": "aws:PrincipalOrgID",
                "Value": "o-someoneelse",
            },
        )
    return org


def audit(org, *denied):
    factory = SessionFactory(org.settings, hooks=[deny(*denied)])
    return Auditor(org.settings, factory).run(accounts=[org.security], regions=["eu-west-1"])


def test_without_describe_organization_the_id_comes_from_the_account_arn(org):
    # Given the launcher may not call DescribeOrganization, and the bus grants another org
    report = audit(org, "DescribeOrganization")

    # Then the id is still this organization's, and the foreign grant is not ok
    assert report.organization_id == org.id
    (hub,) = report.security
    assert hub.state == "drift"
    assert not hub.checks["bus_policy"].ok
    assert "o-someoneelse" in hub.checks["bus_policy"].detail
    assert not report.ok


def test_an_id_that_cannot_be_learnt_makes_the_bus_policy_unverified_not_ok(org):
    # Given neither DescribeAccount nor DescribeOrganization is allowed
    report = audit(org, "DescribeOrganization", "DescribeAccount")

    (hub,) = report.security
    assert report.organization_id is None
    assert not hub.checks["bus_policy"].ok
    assert "cannot verify" in hub.checks["bus_policy"].detail
    assert not report.ok


def test_a_policy_for_some_organization_is_not_ok_when_ours_is_unknown():
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "events:PutEvents",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-someoneelse"}},
            }
        ]
    }

    check = check_bus_policy(json.dumps(policy), None)

    assert not check.ok
    assert check.detail.startswith("cannot verify: organization id unknown")
