"""template.yaml deployed: aws-sam-translator turns it into plain CloudFormation (as `sam deploy`
does), moto's CloudFormation deploys it in one Security account, once as the home region
(eu-west-1) and once as another hub region (us-east-1), and the tests read back what exists in
each region through the services' own APIs.

What moto cannot show, and what therefore is checked on the parsed template instead
(test_template.py, test_policies.py):
- resource types its CloudFormation skips (listed in MOTO_SKIPS below), among them
  AWS::Events::EventBusPolicy: the default bus has no policy after the deploy, so a local
  sandbox (issue 6) must call events:PutPermission itself;
- properties it ignores: Kinesis on-demand mode and encryption (its streams are provisioned,
  unencrypted), Lambda architecture and tracing, S3 public access block, ownership and lifecycle.
"""

import functools
import io
import json
import zipfile

import boto3
import pytest
from cfnmodel import (
    HOME_REGION,
    MANAGEMENT_PARAMETERS,
    MANAGEMENT_TEMPLATE,
    RELAY_REGION,
    SAM_PARAMETERS,
    SAM_TEMPLATE,
    SECURITY_ACCOUNT,
    load_template,
)
from moto import mock_aws
from moto.cloudformation.parsing import get_model_map
from samtranslator.translator.transform import transform

ARTIFACTS = "watershed-artifacts"

# Resource types in the translated template that moto's CloudFormation does not implement, and
# what stands in for each of them here.
MOTO_SKIPS = {
    "AWS::Events::EventBusPolicy": "the bus policy (checked on the template)",
    "AWS::SQS::QueuePolicy": "queue policies (checked on the template)",
    "AWS::S3::BucketPolicy": "the TLS-only bucket policy (checked on the template)",
    "AWS::CloudWatch::Alarm": "alarms (checked on the template)",
    "AWS::Lambda::EventInvokeConfig": "the async on-failure destination (checked on the template)",
    "AWS::SNS::TopicPolicy": "the alarm topic policy (checked on the template)",
    "AWS::SNS::Subscription": "the alarm e-mail subscription (checked on the template)",
}


class _NoManagedPolicies:
    """aws-sam-translator asks IAM for managed policy ARNs; the template uses none."""

    def load(self):
        return {}


@functools.cache
def translated():
    """template.yaml as `sam deploy` would hand it to CloudFormation (translated once; the
    translator reads the region from the environment the suite's conftest sets)."""
    template = load_template(SAM_TEMPLATE)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            # What `sam package` does: the built directory becomes an S3 object.
            resource["Properties"]["CodeUri"] = (
                f"s3://{ARTIFACTS}/{resource['Properties']['Handler']}.zip"
            )
    return transform(template, {}, _NoManagedPolicies())


def _upload_code():
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=ARTIFACTS)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("placeholder.py", "")  # moto stores the code; it never runs it
    for resource in translated()["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            code = resource["Properties"]["Code"]
            s3.put_object(Bucket=code["S3Bucket"], Key=code["S3Key"], Body=archive.getvalue())


def _deploy(region, **overrides):
    cloudformation = boto3.client("cloudformation", region_name=region)
    parameters = {**SAM_PARAMETERS, **overrides}
    cloudformation.create_stack(
        StackName="watershed",
        TemplateBody=json.dumps(translated()),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    (stack,) = cloudformation.describe_stacks(StackName="watershed")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


@pytest.fixture
def hub():
    """The Security account with the home region and one other hub region deployed."""
    with mock_aws(), pytest.warns(UserWarning, match="not supported by moto"):
        _upload_code()
        outputs = {HOME_REGION: _deploy(HOME_REGION), RELAY_REGION: _deploy(RELAY_REGION)}
        yield outputs


def _queue_attributes(region, url):
    sqs = boto3.client("sqs", region_name=region)
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def _missing(call, **kwargs):
    with pytest.raises(Exception) as raised:
        call(**kwargs)
    return "NotFound" in type(raised.value).__name__ or "NonExistent" in str(raised.value)


def test_translation_uses_no_managed_policies_and_only_expected_moto_gaps():
    types = {resource["Type"] for resource in translated()["Resources"].values()}
    assert not any(
        "ManagedPolicyArns" in r.get("Properties", {}) for r in translated()["Resources"].values()
    )
    skipped = {t for t in types if t not in get_model_map()}
    assert skipped == set(MOTO_SKIPS)


def test_home_region_has_destination_stream_rules_queue_and_onboarding(hub):
    outputs = hub[HOME_REGION]
    kinesis = boto3.client("kinesis", region_name=HOME_REGION)
    events = boto3.client("events", region_name=HOME_REGION)
    lambda_ = boto3.client("lambda", region_name=HOME_REGION)

    destination = kinesis.describe_stream_summary(StreamName="watershed")
    assert destination["StreamDescriptionSummary"]["StreamARN"] == outputs["DestinationStreamArn"]
    assert _missing(kinesis.describe_stream_summary, StreamName="watershed-regional")

    rules = {rule["Name"] for rule in events.list_rules()["Rules"]}
    assert rules == {
        "watershed-collect",
        "watershed-trigger",
        "watershed-reconcile",
        "watershed-audit",
    }
    (collect,) = events.list_targets_by_rule(Rule="watershed-collect")["Targets"]
    assert collect["Arn"] == outputs["DestinationStreamArn"]
    assert collect["RoleArn"] == outputs["CollectRoleArn"]
    (trigger,) = events.list_targets_by_rule(Rule="watershed-trigger")["Targets"]
    work_queue = _queue_attributes(HOME_REGION, outputs["WorkQueueUrl"])
    assert trigger["Arn"] == work_queue["QueueArn"]
    (reconcile,) = events.list_targets_by_rule(Rule="watershed-reconcile")["Targets"]
    assert reconcile["Arn"] == outputs["OnboardingFunctionArn"]
    assert json.loads(reconcile["Input"]) == {
        "accounts": "ALL",
        "reason": "schedule",
        "action": "scope",
    }
    (audit,) = events.list_targets_by_rule(Rule="watershed-audit")["Targets"]
    assert audit["Arn"] == outputs["OnboardingFunctionArn"]
    assert json.loads(audit["Input"]) == {"audit": "start"}
    buckets = {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]}
    assert outputs["AuditBucketName"] in buckets
    for target in (collect, trigger, reconcile, audit):
        assert target["DeadLetterConfig"]["Arn"].endswith(
            outputs["EventsDeadLetterQueueUrl"].rsplit("/", 1)[1]
        )

    dead_letter = _queue_attributes(HOME_REGION, outputs["WorkDeadLetterQueueUrl"])
    assert json.loads(work_queue["RedrivePolicy"])["deadLetterTargetArn"] == dead_letter["QueueArn"]
    assert int(work_queue["VisibilityTimeout"]) >= 6 * 300

    function = lambda_.get_function(FunctionName="watershed-onboarding")["Configuration"]
    assert function["Handler"] == "onboarding.handler.lambda_handler"
    assert function["Runtime"] == "python3.13"
    assert function["Role"] == outputs["OnboardingFunctionRoleArn"]
    environment = function["Environment"]["Variables"]
    assert environment["WORK_QUEUE_URL"] == outputs["WorkQueueUrl"]
    assert environment["DEAD_LETTER_QUEUE_URL"] == outputs["WorkDeadLetterQueueUrl"]
    assert environment["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"

    # Two mappings: the work queue, and the audit's own queue at its own concurrency
    audit_queue = _queue_attributes(HOME_REGION, outputs["AuditQueueUrl"])
    assert environment["AUDIT_QUEUE_URL"] == outputs["AuditQueueUrl"]
    assert (
        json.loads(audit_queue["RedrivePolicy"])["deadLetterTargetArn"] == dead_letter["QueueArn"]
    )
    mappings = {
        m["EventSourceArn"]: m
        for m in lambda_.list_event_source_mappings(FunctionName="watershed-onboarding")[
            "EventSourceMappings"
        ]
    }
    assert set(mappings) == {work_queue["QueueArn"], audit_queue["QueueArn"]}
    for arn, concurrency in ((work_queue["QueueArn"], 10), (audit_queue["QueueArn"], 100)):
        assert mappings[arn]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mappings[arn]["ScalingConfig"] == {"MaximumConcurrency": concurrency}

    assert _missing(lambda_.get_function, FunctionName="watershed-relay")


def test_other_region_has_regional_stream_and_relay_to_the_home_destination(hub):
    home, outputs = hub[HOME_REGION], hub[RELAY_REGION]
    kinesis = boto3.client("kinesis", region_name=RELAY_REGION)
    events = boto3.client("events", region_name=RELAY_REGION)
    lambda_ = boto3.client("lambda", region_name=RELAY_REGION)

    regional = kinesis.describe_stream_summary(StreamName="watershed-regional")
    assert regional["StreamDescriptionSummary"]["StreamARN"] == outputs["RegionalStreamArn"]
    assert _missing(kinesis.describe_stream_summary, StreamName="watershed")

    # us-east-1 (where Account Management sends opt-in events) also routes them to the home
    # region's work queue, through its lifecycle topic
    rules = {rule["Name"] for rule in events.list_rules()["Rules"]}
    assert rules == {"watershed-collect", "watershed-lifecycle"}
    (collect,) = events.list_targets_by_rule(Rule="watershed-collect")["Targets"]
    assert collect["Arn"] == outputs["RegionalStreamArn"]
    (lifecycle,) = events.list_targets_by_rule(Rule="watershed-lifecycle")["Targets"]
    assert lifecycle["Arn"].rsplit(":", 1)[1] == "watershed-lifecycle"
    assert lifecycle["Arn"].split(":")[2:4] == ["sns", RELAY_REGION]

    function = lambda_.get_function(FunctionName="watershed-relay")["Configuration"]
    assert function["Handler"] == "relay.handler.lambda_handler"
    environment = function["Environment"]["Variables"]
    # The stream the home region's stack really created, read back from the home region.
    assert environment["DESTINATION_STREAM_ARN"] == home["DestinationStreamArn"]
    assert environment["OVERSIZE_BUCKET"] == outputs["OversizeBucketName"]
    boto3.client("s3", region_name=RELAY_REGION).head_bucket(Bucket=outputs["OversizeBucketName"])

    (mapping,) = lambda_.list_event_source_mappings(FunctionName="watershed-relay")[
        "EventSourceMappings"
    ]
    failures = _queue_attributes(RELAY_REGION, outputs["RelayFailureQueueUrl"])
    assert mapping["EventSourceArn"] == outputs["RegionalStreamArn"]
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == failures["QueueArn"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == -1
    assert mapping["MaximumRecordAgeInSeconds"] == 75600
    assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"]) == (500, 1)

    assert _missing(lambda_.get_function, FunctionName="watershed-onboarding")
    assert "WorkQueueUrl" not in outputs


def test_roles_exist_with_their_inline_policies(hub):
    iam = boto3.client("iam")
    assert iam.list_role_policies(RoleName="watershed-onboarding")["PolicyNames"] == [
        "onboarding",
        "assume-launcher",
    ]
    assert iam.list_role_policies(RoleName=f"watershed-relay-{RELAY_REGION}")["PolicyNames"] == [
        "relay"
    ]
    for region in (HOME_REGION, RELAY_REGION):
        role = iam.get_role(RoleName=f"watershed-collect-{region}")["Role"]
        assert role["Arn"] == hub[region]["CollectRoleArn"]
        for name in ("watershed-onboarding", f"watershed-relay-{RELAY_REGION}"):
            assert not iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]


def test_moto_skips_the_bus_policy(hub):
    # moto's CloudFormation does not implement AWS::Events::EventBusPolicy: after the deploy the
    # default bus has no policy. In AWS the stack grants the organization here (see the
    # template tests); a local sandbox must add it with events:PutPermission.
    for region in (HOME_REGION, RELAY_REGION):
        bus = boto3.client("events", region_name=region).describe_event_bus(Name="default")
        assert "Policy" not in bus


def test_an_existing_destination_stream_is_used_not_created():
    existing = "arn:aws:kinesis:eu-west-1:123456789012:stream/streamalert"
    with mock_aws(), pytest.warns(UserWarning, match="not supported by moto"):
        _upload_code()
        kinesis = boto3.client("kinesis", region_name=HOME_REGION)
        kinesis.create_stream(StreamName="streamalert", ShardCount=1)
        home = _deploy(HOME_REGION, ExistingDestinationStreamArn=existing)
        relay = _deploy(RELAY_REGION, ExistingDestinationStreamArn=existing)
        relay_function = boto3.client("lambda", region_name=RELAY_REGION).get_function(
            FunctionName="watershed-relay"
        )["Configuration"]
        streams = kinesis.list_streams()["StreamNames"]
        (collect,) = boto3.client("events", region_name=HOME_REGION).list_targets_by_rule(
            Rule="watershed-collect"
        )["Targets"]

    assert streams == ["streamalert"]
    assert home["DestinationStreamArn"] == relay["DestinationStreamArn"] == existing
    assert collect["Arn"] == existing
    assert relay_function["Environment"]["Variables"]["DESTINATION_STREAM_ARN"] == existing


def test_management_template_deploys_rules_per_region_and_the_launcher_once():
    # management.yaml is plain CloudFormation: moto deploys it as it is (its queue policy is
    # skipped, see MOTO_SKIPS). moto's account plays the management account here.
    management = load_template(MANAGEMENT_TEMPLATE)
    parameters = {**MANAGEMENT_PARAMETERS, "ControlTowerHomeRegion": HOME_REGION}
    with mock_aws(), pytest.warns(UserWarning, match="not supported by moto"):
        for region in ("us-east-1", HOME_REGION):
            boto3.client("cloudformation", region_name=region).create_stack(
                StackName="watershed-management",
                TemplateBody=json.dumps(management),
                Parameters=[
                    {"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()
                ],
                Capabilities=["CAPABILITY_NAMED_IAM"],
            )
        rules = {
            region: {
                rule["Name"]: boto3.client("events", region_name=region).list_targets_by_rule(
                    Rule=rule["Name"]
                )["Targets"]
                for rule in boto3.client("events", region_name=region).list_rules()["Rules"]
            }
            for region in ("us-east-1", HOME_REGION)
        }
        iam = boto3.client("iam")
        launcher = iam.get_role(RoleName="watershed-launcher")["Role"]
        forwarders = {
            role["RoleName"]
            for role in iam.list_roles()["Roles"]
            if role["RoleName"].startswith("watershed-trigger-forwarder-")
        }

    assert set(rules["us-east-1"]) == {
        "watershed-trigger-organizations",
        "watershed-trigger-offboarding",
    }
    assert set(rules[HOME_REGION]) == {"watershed-trigger-controltower"}
    security_bus = f"arn:aws:events:{HOME_REGION}:{SECURITY_ACCOUNT}:event-bus/default"
    for region_rules in rules.values():
        for (target,) in region_rules.values():
            assert target["Arn"] == security_bus
            assert target["RoleArn"].split("/")[-1].startswith("watershed-trigger-forwarder-")
            assert "DeadLetterConfig" in target
    trust = launcher["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Condition"]["ArnEquals"]["aws:PrincipalArn"] == parameters["OnboardingRoleArn"]
    assert forwarders == {
        "watershed-trigger-forwarder-us-east-1",
        f"watershed-trigger-forwarder-{HOME_REGION}",
    }


def test_direct_mode_other_region_creates_no_stream_relay_or_relay_queue():
    """DeliveryMode direct (issue 13), translated and deployed: the non-home region holds only
    the collect rule sending the Security account's own events to the home region's bus."""
    with mock_aws(), pytest.warns(UserWarning, match="not supported by moto"):
        _upload_code()
        home = _deploy(HOME_REGION, DeliveryMode="direct")
        other = _deploy(RELAY_REGION, DeliveryMode="direct")
        kinesis = boto3.client("kinesis", region_name=RELAY_REGION)
        lambda_ = boto3.client("lambda", region_name=RELAY_REGION)
        sqs = boto3.client("sqs", region_name=RELAY_REGION)
        events = boto3.client("events", region_name=RELAY_REGION)
        streams = kinesis.list_streams()["StreamNames"]
        functions = lambda_.list_functions()["Functions"]
        mappings = lambda_.list_event_source_mappings()["EventSourceMappings"]
        queues = sqs.list_queues().get("QueueUrls", [])
        buckets = [
            b["Name"]
            for b in boto3.client("s3", region_name=RELAY_REGION).list_buckets()["Buckets"]
            if b["Name"] != ARTIFACTS
            and "auditbucket" not in b["Name"]  # the home stack's (ListBuckets is global)
        ]
        rules = {rule["Name"] for rule in events.list_rules()["Rules"]}
        (collect,) = events.list_targets_by_rule(Rule="watershed-collect")["Targets"]
        home_function = boto3.client("lambda", region_name=HOME_REGION).get_function(
            FunctionName="watershed-onboarding"
        )["Configuration"]
        home_streams = boto3.client("kinesis", region_name=HOME_REGION).list_streams()
        resources = {
            r["LogicalResourceId"]
            for r in boto3.client("cloudformation", region_name=RELAY_REGION).list_stack_resources(
                StackName="watershed"
            )["StackResourceSummaries"]
        }

    assert streams == [] and functions == [] and mappings == [] and buckets == []
    # the collect rule's DLQ, and that of the members' targets whose rule is in this region
    assert sorted(queues) == sorted(
        [other["EventsDeadLetterQueueUrl"], other["MemberDeadLetterQueueUrl"]]
    )
    assert "RegionalStreamArn" not in other and "RelayFailureQueueUrl" not in other
    assert not {k for k in resources if "Relay" in k or "Stream" in k}
    assert rules == {"watershed-collect"}
    account = other["CollectRoleArn"].split(":")[4]  # moto's account plays the Security account
    assert collect["Arn"] == f"arn:aws:events:{HOME_REGION}:{account}:event-bus/default"
    assert collect["RoleArn"] == other["CollectRoleArn"]
    assert home_function["Environment"]["Variables"]["DELIVERY_MODE"] == "direct"
    assert home_streams["StreamNames"] == ["watershed"]
    assert home["DestinationStreamArn"].endswith(":stream/watershed")
