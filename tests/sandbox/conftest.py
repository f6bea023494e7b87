"""Fixtures for the sandbox's own tests: an embedded AWS, an organization, a small hub stack."""

import json
from pathlib import Path

import pytest

from sandbox import stacks
from sandbox.embedded import EmbeddedAws
from sandbox.lambda_runtime import LambdaRuntime
from sandbox.organization import create_organization
from sandbox.poller import EventSourceMappingPoller, read_mappings

HERE = Path(__file__).parent
REGION = "eu-west-1"


@pytest.fixture
def aws():
    with EmbeddedAws() as embedded:
        yield embedded


@pytest.fixture
def org(aws):
    return create_organization(aws, members=3, control_tower_members=1)


@pytest.fixture
def forward_rule():
    """Write a member-side forwarding rule like the one onboarding writes (by hand, for tests)."""
    return _forward_rule


def _forward_rule(session, region, security_account_id, sources):
    events = session.client("events", region_name=region)
    events.put_rule(Name="watershed-forward", EventPattern=json.dumps({"source": sources}))
    events.put_targets(
        Rule="watershed-forward",
        Targets=[
            {
                "Id": "security-bus",
                "Arn": f"arn:aws:events:{region}:{security_account_id}:event-bus/default",
                "RoleArn": "arn:aws:iam::000000000000:role/watershed-forwarder",
            }
        ],
    )
    return events


@pytest.fixture
def open_bus(org):
    """Give a default bus the organization policy template.yaml declares (by hand, for tests)."""

    def open_(session, region):
        session.client("events", region_name=region).put_permission(
            EventBusName="default",
            Policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "organization",
                            "Effect": "Allow",
                            "Principal": "*",
                            "Action": "events:PutEvents",
                            "Resource": "*",
                            "Condition": {
                                "StringEquals": {"aws:PrincipalOrgID": org.organization_id}
                            },
                        }
                    ],
                }
            ),
        )

    return open_


@pytest.fixture
def fixture_app(monkeypatch):
    """Make the tiny test handlers importable, as if they were the deployed code."""
    monkeypatch.syspath_prepend(str(HERE / "fixture_app"))


@pytest.fixture
def hub(aws, org, fixture_app):
    """tests/sandbox/fixture_template.yaml packaged, translated and deployed in Security."""
    session = aws.session(org.security.account_id)
    parameters = {
        "OrganizationId": org.organization_id,
        "PinnedAccount": org.members[0].account_id,
        "FailKeys": "poison",
    }
    template = stacks.package(
        stacks.load_template(HERE / "fixture_template.yaml"), HERE, session, REGION, "artifacts"
    )
    translated = stacks.translate(template, REGION, org.security.account_id, parameters)
    return stacks.deploy(
        session, org.security.account_id, REGION, "fixture", translated, parameters
    )


@pytest.fixture
def runtime(aws):
    return LambdaRuntime(aws)


@pytest.fixture
def poller(aws, org, hub, runtime):
    return EventSourceMappingPoller(
        aws, runtime, read_mappings(aws, org.security.account_id, [REGION])
    )
