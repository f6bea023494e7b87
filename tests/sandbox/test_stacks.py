"""Deploying a SAM template into moto's CloudFormation: package, translate, create, stand in."""

import io
import json
import zipfile

import pytest

from sandbox import stacks
from sandbox.embedded import SandboxError

REGION = "eu-west-1"


def test_the_translated_stack_creates_functions_mappings_and_rules(aws, org, hub):
    security = aws.session(org.security.account_id)
    lam = security.client("lambda", region_name=REGION)

    functions = {f["Handler"]: f for f in lam.list_functions()["Functions"]}
    mappings = lam.list_event_source_mappings()["EventSourceMappings"]
    rules = security.client("events", region_name=REGION).list_rules()["Rules"]

    assert set(functions) == {
        "sandbox_fixture.record.lambda_handler",
        "sandbox_fixture.forward.lambda_handler",
    }
    assert functions["sandbox_fixture.forward.lambda_handler"]["Environment"]["Variables"] == {
        "SETTING": "from-template",
        "TARGET_STREAM_ARN": hub.outputs["OutStreamArn"],
        "FAIL_KEYS": "poison",
    }
    assert sorted(m["EventSourceArn"].split(":")[2] for m in mappings) == ["kinesis", "sqs"]
    assert {r.get("ScheduleExpression") for r in rules} == {None, "rate(1 day)"}


def test_the_bus_policy_moto_skips_is_applied_and_reported(aws, org, hub):
    policy = json.loads(
        aws.session(org.security.account_id)
        .client("events", region_name=REGION)
        .describe_event_bus()["Policy"]
    )

    (statement,) = policy["Statement"]
    assert statement["Sid"] == "organization-put-events"
    assert statement["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": org.organization_id}}
    assert statement["Resource"] == (
        f"arn:aws:events:{REGION}:{org.security.account_id}:event-bus/default"
    )
    assert [(s.logical_id, s.resource_type) for s in hub.stand_ins] == [
        ("OrgCanPut", "AWS::Events::EventBusPolicy")
    ]


def test_each_function_package_is_uploaded_once_as_a_zip(aws, org, hub):
    # Both functions have CodeUri fixture_app/ and handlers in its package sandbox_fixture:
    # like `make build-<Function>`, only that package goes into the archive.
    s3 = aws.session(org.security.account_id).client("s3", region_name=REGION)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="artifacts")["Contents"]]
    body = s3.get_object(Bucket="artifacts", Key=keys[0])["Body"].read()

    assert keys == ["code/sandbox_fixture-0.zip"]
    assert sorted(zipfile.ZipFile(io.BytesIO(body)).namelist()) == [
        "sandbox_fixture/__init__.py",
        "sandbox_fixture/coldstart.py",
        "sandbox_fixture/forward.py",
        "sandbox_fixture/logs.py",
        "sandbox_fixture/record.py",
    ]


def test_a_missing_code_directory_is_refused(aws, org, tmp_path):
    template = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {
            "F": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"CodeUri": "nowhere/", "Handler": "a.b", "Runtime": "python3.13"},
            }
        },
    }
    with pytest.raises(SandboxError, match="nowhere"):
        stacks.package(template, tmp_path, aws.session(org.security.account_id), REGION, "bucket")


def test_resources_in_a_false_condition_are_not_reported_as_skipped(aws, org):
    template = {
        "Parameters": {"Home": {"Type": "String"}},
        "Conditions": {"IsHome": {"Fn::Equals": [{"Ref": "Home"}, {"Ref": "AWS::Region"}]}},
        "Resources": {
            "Policy": {
                "Type": "AWS::Events::EventBusPolicy",
                "Condition": "IsHome",
                "Properties": {"StatementId": "s", "Statement": {}},
            },
            "Queue": {"Type": "AWS::SQS::Queue"},
        },
    }
    deployed = stacks.deploy(
        aws.session(org.security.account_id),
        org.security.account_id,
        REGION,
        "elsewhere",
        template,
        {"Home": "us-east-1"},
    )
    assert deployed.stand_ins == ()
    assert set(deployed.of_type("AWS::SQS::Queue")) == {"Queue"}


def test_inline_role_policies_read_back_as_the_json_iam_holds(aws, org):
    # moto's CloudFormation keeps an AWS::IAM::Role's inline policy as Python text; IAM returns
    # JSON. What reads it (onboarding verifies management.yaml's forwarder role) needs AWS's shape.
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "events:PutEvents", "Resource": "*"}],
    }
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
    template = {
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": "inline",
                    "AssumeRolePolicyDocument": trust,
                    "Policies": [{"PolicyName": "p", "PolicyDocument": document}],
                },
            }
        }
    }
    session = aws.session(org.security.account_id)
    stacks.deploy(session, org.security.account_id, REGION, "roles", template, {})

    iam = session.client("iam", region_name=REGION)
    read = iam.get_role_policy(RoleName="inline", PolicyName="p")["PolicyDocument"]
    assert read == document
