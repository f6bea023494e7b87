"""template.yaml read as data: what exists where, the wiring, and the settings that matter.

Each test resolves the template for a concrete deployment (cfnmodel.Deployment: an account,
a region, parameters) and asserts on what CloudFormation would create.
"""

import ast
import json

import pytest
from cfnmodel import (
    HOME_REGION,
    ROOT,
    SAM_PARAMETERS,
    SECURITY_ACCOUNT,
    Deployment,
    eventbridge_event,
)
from moto.events.models import EventPattern

from onboarding import settings as onboarding_settings
from relay import replay_cli
from relay import settings as relay_settings

HOME_ONLY = {
    "WorkQueue",
    "WorkDeadLetterQueue",
    "OnboardingInvokeFailureQueue",
    "TriggerRule",
    "OnboardingRole",
    "OnboardingFunction",
    "OnboardingLogGroup",
}
RELAY_ONLY = {
    "RegionalStream",
    "RelayFunction",
    "RelayRole",
    "RelayFailureQueue",
    "OversizeBucket",
    "RelayLogGroup",
}
EVERYWHERE = {
    "OrganizationBusPolicy",
    "CollectRule",
    "CollectRole",
    "EventsDeadLetterQueue",
    "MemberDeadLetterQueue",
}

# The contract's names (CONTRACT.md): every variable a function receives must be one of these.
ONBOARDING_VARIABLES = {
    "SECURITY_ACCOUNT_ID",
    "MANAGEMENT_ACCOUNT_ID",
    "HUB_REGIONS",
    "LAUNCHER_ROLE_ARN",
    "MEMBER_ROLE_NAMES",
    "FORWARDER_ROLE_NAME",
    "FORWARD_RULE_NAME",
    "FORWARD_EVENT_PATTERN",
    "FINDING_PUBLISHING_FREQUENCY",
    "GUARDDUTY_FEATURES",
    "GUARDDUTY",
    "REGION_WORKERS",
    "AUDIT_QUEUE_URL",
    "WORK_QUEUE_URL",
    "DEAD_LETTER_QUEUE_URL",
    "RETRY_CAP_SECONDS",
    "EXCLUDED_ACCOUNTS",
    "EXCLUDED_OUS",
    "EXCLUDE_TAG",
    "DELIVERY_MODE",
    "HOME_REGION",
    "RETAIN_ON_EXCLUSION",
    "AUDIT_BUCKET",
}
RELAY_VARIABLES = {
    "DESTINATION_STREAM_ARN",
    "RELAY_MAX_ATTEMPTS",
    "RELAY_BACKOFF_BASE_MS",
    "RELAY_BACKOFF_MAX_MS",
    "RELAY_TIME_MARGIN_MS",
    "OVERSIZE_BUCKET",
    "RELAY_MAX_RECORD_BYTES",
    "RELAY_MAX_REQUEST_BYTES",
}
COMMON_VARIABLES = {
    "AWS_STS_REGIONAL_ENDPOINTS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
}


def _events(deployment, function):
    return deployment.resolve(deployment.template["Resources"][function]["Properties"]["Events"])


def _environment(deployment, function):
    globals_ = deployment.template["Globals"]["Function"]["Environment"]["Variables"]
    own = deployment.template["Resources"][function]["Properties"]["Environment"]["Variables"]
    return deployment.resolve({**globals_, **own})


def test_home_region_holds_the_destination_and_onboarding(home):
    created = set(home.resources())
    assert HOME_ONLY | EVERYWHERE | {"DestinationStream"} <= created
    assert not created & RELAY_ONLY


def test_other_regions_hold_the_regional_stream_and_relay(relay_region):
    created = set(relay_region.resources())
    assert created >= RELAY_ONLY | EVERYWHERE
    assert not created & (HOME_ONLY | {"DestinationStream"})


def test_an_existing_destination_stream_replaces_the_created_one(sam_template):
    existing = "arn:aws:kinesis:eu-west-1:222222222222:stream/streamalert"
    home = Deployment(
        sam_template,
        HOME_REGION,
        SECURITY_ACCOUNT,
        {**SAM_PARAMETERS, "ExistingDestinationStreamArn": existing},
    )
    relay = Deployment(
        sam_template,
        "ap-southeast-2",
        SECURITY_ACCOUNT,
        {**SAM_PARAMETERS, "ExistingDestinationStreamArn": existing},
    )
    assert "DestinationStream" not in home.resources()
    collect = home.resolve(sam_template["Resources"]["CollectRule"]["Properties"])
    assert collect["Targets"][0]["Arn"] == existing
    assert _environment(relay, "RelayFunction")["DESTINATION_STREAM_ARN"] == existing


def test_relays_write_to_the_stream_the_home_region_creates(home, relay_region):
    # The relay's region differs from the home region; the destination ARN is derived from the
    # parameters, so it must be exactly the stream the home region's stack creates.
    created_in_home = home.get_att("DestinationStream", "Arn")
    assert _environment(relay_region, "RelayFunction")["DESTINATION_STREAM_ARN"] == created_in_home
    assert created_in_home.startswith(f"arn:aws:kinesis:{HOME_REGION}:")


def test_collect_rule_targets_the_local_stream_with_a_pinned_role(home, relay_region):
    for deployment, stream in ((home, "DestinationStream"), (relay_region, "RegionalStream")):
        rule = deployment.resolve(deployment.template["Resources"]["CollectRule"]["Properties"])
        (target,) = rule["Targets"]
        assert target["Arn"] == deployment.get_att(stream, "Arn")
        assert target["RoleArn"] == deployment.get_att("CollectRole", "Arn")
        assert rule["EventBusName"] == "default"


def test_streams_are_on_demand_and_encrypted(home, relay_region):
    for deployment, stream in ((home, "DestinationStream"), (relay_region, "RegionalStream")):
        props = deployment.resolve(deployment.template["Resources"][stream]["Properties"])
        assert props["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
        assert props["StreamEncryption"]["EncryptionType"] == "KMS"


def test_the_bus_policy_lets_only_the_organization_put_events(sam_deployment):
    # Every region members deliver to has it: each hub region in relay mode, the home region
    # in direct mode (tests for direct mode's other regions below).
    direct_other = (
        sam_deployment.values["DeliveryMode"] == "direct" and sam_deployment.region != HOME_REGION
    )
    assert sam_deployment.exists("OrganizationBusPolicy") is not direct_other
    props = sam_deployment.resolve(
        sam_deployment.template["Resources"]["OrganizationBusPolicy"]["Properties"]
    )
    statement = props["Statement"]
    assert props["EventBusName"] == "default"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == (
        f"arn:aws:events:{sam_deployment.region}:{SECURITY_ACCOUNT}:event-bus/default"
    )
    assert statement["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": SAM_PARAMETERS["OrganizationId"]}
    }


def test_globals_pin_runtime_architecture_tracing_and_regional_sts(sam_template):
    function = sam_template["Globals"]["Function"]
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["Tracing"] == "Active"
    assert function["Environment"]["Variables"]["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"
    assert function["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == "watershed"


def test_functions_receive_only_contract_variables(home, relay_region):
    onboarding = _environment(home, "OnboardingFunction")
    relay = _environment(relay_region, "RelayFunction")
    assert set(onboarding) - COMMON_VARIABLES <= ONBOARDING_VARIABLES
    assert set(relay) - COMMON_VARIABLES <= RELAY_VARIABLES
    assert onboarding["POWERTOOLS_SERVICE_NAME"] == "onboarding"
    assert relay["POWERTOOLS_SERVICE_NAME"] == "relay"
    assert onboarding["SECURITY_ACCOUNT_ID"] == SECURITY_ACCOUNT
    assert onboarding["WORK_QUEUE_URL"] == home.ref("WorkQueue")
    assert onboarding["DEAD_LETTER_QUEUE_URL"] == home.ref("WorkDeadLetterQueue")
    assert onboarding["LAUNCHER_ROLE_ARN"] == SAM_PARAMETERS["LauncherRoleArn"]
    assert onboarding["FORWARDER_ROLE_NAME"] == "watershed-forwarder"
    assert onboarding["FORWARD_RULE_NAME"] == "watershed-forward"
    # named outright, so direct mode never takes the home region from an operator's shell
    assert onboarding["HOME_REGION"] == home.region
    assert relay["OVERSIZE_BUCKET"] == relay_region.ref("OversizeBucket")
    # the size limits default to a standard destination stream's, as the relay's own defaults
    assert int(relay["RELAY_MAX_RECORD_BYTES"]) == relay_settings.DEFAULT_MAX_RECORD_BYTES
    assert int(relay["RELAY_MAX_REQUEST_BYTES"]) == relay_settings.DEFAULT_MAX_REQUEST_BYTES


def test_optional_values_are_left_out_rather_than_set_empty(sam_template):
    # No launcher (deployed in the management account) and no explicit GuardDuty features:
    # the variables are absent, so the functions' own defaults apply.
    home = Deployment(
        sam_template, HOME_REGION, SECURITY_ACCOUNT, {**SAM_PARAMETERS, "LauncherRoleArn": ""}
    )
    environment = _environment(home, "OnboardingFunction")
    assert "LAUNCHER_ROLE_ARN" not in environment
    assert "GUARDDUTY_FEATURES" not in environment
    assert "FINDING_PUBLISHING_FREQUENCY" not in environment  # not enforced on existing detectors
    assert environment["GUARDDUTY"] == "manage"


@pytest.mark.parametrize(
    ("function", "package"),
    [("OnboardingFunction", "onboarding"), ("RelayFunction", "relay")],
)
def test_handlers_resolve_to_the_packaged_module(sam_template, function, package):
    props = sam_template["Resources"][function]["Properties"]
    assert props["CodeUri"] == "."
    assert sam_template["Resources"][function]["Metadata"] == {"BuildMethod": "makefile"}
    module_path, _, handler_name = props["Handler"].rpartition(".")
    assert module_path == f"{package}.handler"
    # The Makefile target sam build calls, and the package it copies.
    assert f"build-{function}:" in (ROOT / "Makefile").read_text()
    assert (ROOT / package / "__init__.py").is_file()
    assert (ROOT / package / "requirements.txt").is_file()
    source = ROOT / (module_path.replace(".", "/") + ".py")
    assert source.is_file(), f"{function}: {source.relative_to(ROOT)} does not exist"
    names = {
        node.name
        for node in ast.parse(source.read_text()).body
        if isinstance(node, ast.FunctionDef)
    } | {
        target.id
        for node in ast.parse(source.read_text()).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert handler_name in names


def test_functions_use_the_roles_defined_here(sam_template):
    # An explicit Role stops SAM from generating one with managed policies
    # (AWSLambdaSQSQueueExecutionRole, AWSLambdaKinesisExecutionRole, ... grant "*").
    for resource in sam_template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            assert resource["Properties"]["Role"]["Fn::GetAtt"][1] == "Arn"
            assert "Policies" not in resource["Properties"]
        assert "ManagedPolicyArns" not in resource.get("Properties", {})


def test_relay_mapping_gives_up_a_batch_only_at_its_age_bound(relay_region):
    (event,) = _events(relay_region, "RelayFunction").values()
    props = event["Properties"]
    stream = relay_region.resolve(
        relay_region.template["Resources"]["RegionalStream"]["Properties"]
    )
    assert event["Type"] == "Kinesis"
    assert props["Stream"] == relay_region.get_att("RegionalStream", "Arn")
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True
    # retries are not counted: only the records' age ends them, and it ends them with hours of
    # retention left for `watershed relay-replay` (a bound of -1 would let records expire
    # unrecorded; a count would give a batch up within minutes of an outage)
    assert props["MaximumRetryAttempts"] == -1
    retention = stream["RetentionPeriodHours"] * 3600
    assert 20 * 3600 <= props["MaximumRecordAgeInSeconds"] <= retention - 2 * 3600
    assert props["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": relay_region.get_att("RelayFailureQueue", "Arn"),
    }
    assert 100 <= props["BatchSize"] <= 500  # PutRecords takes at most 500 records
    assert 0 < props["MaximumBatchingWindowInSeconds"] <= 5
    assert props["StartingPosition"] == "TRIM_HORIZON"


def test_work_queue_feeds_onboarding_within_the_organization_limits(home, sam_template):
    events = _events(home, "OnboardingFunction")
    work = events["Work"]["Properties"]
    function = sam_template["Resources"]["OnboardingFunction"]["Properties"]
    queue = home.resolve(sam_template["Resources"]["WorkQueue"]["Properties"])
    concurrency = sam_template["Parameters"]["OnboardingMaxConcurrency"]
    assert work["Queue"] == home.get_att("WorkQueue", "Arn")
    assert work["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert work["ScalingConfig"]["MaximumConcurrency"] == str(concurrency["Default"])
    # DescribeAccount (20 req/s, whole organization) bounds the useful concurrency.
    assert 2 <= concurrency["Default"] <= 20
    assert concurrency["MaxValue"] <= 50
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == home.get_att(
        "WorkDeadLetterQueue", "Arn"
    )


def test_reconcile_schedule_invokes_onboarding_with_all_accounts(home):
    reconcile = _events(home, "OnboardingFunction")["Reconcile"]
    assert reconcile["Type"] == "Schedule"
    assert json.loads(reconcile["Properties"]["Input"]) == {
        "accounts": "ALL",
        "reason": "schedule",
        "action": "scope",
    }
    assert reconcile["Properties"]["Name"] == "watershed-reconcile"


def test_every_asynchronous_path_ends_in_a_dead_letter_queue(home, relay_region, sam_template):
    resources = sam_template["Resources"]
    queues = {k for k, v in resources.items() if v["Type"] == "AWS::SQS::Queue"}
    for deployment in (home, relay_region):
        for logical_id, resource in deployment.resources().items():
            props = deployment.resolve(resource.get("Properties", {}))
            if resource["Type"] == "AWS::Events::Rule":
                for target in props["Targets"]:
                    assert target["DeadLetterConfig"]["Arn"], logical_id
                    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1, logical_id
            if resource["Type"] == "AWS::Serverless::Function":
                for name, event in props["Events"].items():
                    if event["Type"] == "Schedule":  # EventBridge delivery, then async invoke
                        assert event["Properties"]["DeadLetterConfig"]["Arn"], name
                        on_failure = props["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
                        assert on_failure["Type"] == "SQS", name
                    elif event["Type"] == "Kinesis":
                        assert event["Properties"]["DestinationConfig"]["OnFailure"], name
                    elif event["Type"] == "SQS":
                        source = event["Properties"]["Queue"]
                        (queue,) = [q for q in queues if deployment.get_att(q, "Arn") == source]
                        assert "RedrivePolicy" in resources[queue]["Properties"], name
                    else:
                        pytest.fail(f"{logical_id}: unchecked event type {event['Type']}")


def test_every_dead_letter_queue_has_an_alarm(home, relay_region):
    for deployment in (home, relay_region):
        resources = deployment.resources()
        queues = {k for k, v in resources.items() if v["Type"] == "AWS::SQS::Queue"}
        dead_letter = queues - {"WorkQueue", "AuditQueue"}  # the two source queues
        watched = {
            v["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
            for v in resources.values()
            if v["Type"] == "AWS::CloudWatch::Alarm"
            and v["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        }
        assert dead_letter and dead_letter == watched


def test_alarms_cover_the_relay_and_onboarding(home, relay_region):
    def metrics(deployment):
        return {
            (v["Properties"]["Namespace"], v["Properties"]["MetricName"])
            for v in deployment.resources().values()
            if v["Type"] == "AWS::CloudWatch::Alarm"
        }

    assert ("AWS/Lambda", "IteratorAge") in metrics(relay_region)
    assert ("AWS/Lambda", "Errors") in metrics(relay_region)
    assert ("AWS/Lambda", "Errors") in metrics(home)
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage") in metrics(home)  # the work queue
    # iterator age: an early warning, and one that fires half a day before the mapping gives up
    ages = sorted(
        a["Threshold"] / 1000
        for a in _alarm_props(relay_region)
        if a["MetricName"] == "IteratorAge"
    )
    bound = relay_region.resolve(
        relay_region.template["Resources"]["RelayFunction"]["Properties"]["Events"]
    )["RegionalStream"]["Properties"]["MaximumRecordAgeInSeconds"]
    assert ages[0] <= 600
    assert ages[-1] <= bound - 12 * 3600


def _alarm_props(deployment):
    return [
        deployment.resolve(resource["Properties"])
        for resource in deployment.resources().values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    ]


def test_alarms_notify_the_given_topic_or_a_new_one_for_an_email(sam_template):
    def actions(extra):
        deployment = Deployment(
            sam_template, HOME_REGION, SECURITY_ACCOUNT, {**SAM_PARAMETERS, **extra}
        )
        alarm = sam_template["Resources"]["OnboardingErrorsAlarm"]["Properties"]
        return deployment.resolve(alarm).get("AlarmActions"), set(deployment.resources())

    topic = "arn:aws:sns:eu-west-1:222222222222:soc"
    assert actions({}) == (None, actions({})[1])
    assert actions({"AlarmTopicArn": topic})[0] == [topic]
    by_email, created = actions({"AlarmEmail": "soc@example.com"})
    assert {"AlarmTopic", "AlarmEmailSubscription"} <= created
    assert by_email == ["arn:aws:sns:eu-west-1:222222222222:AlarmTopic"]


MANAGEMENT = SAM_PARAMETERS["ManagementAccountId"]
MEMBER = "333333333333"
CREATE_ACCOUNT_RESULT = eventbridge_event(
    "aws.organizations",
    "AWS Service Event via CloudTrail",
    MANAGEMENT,
    {
        "eventSource": "organizations.amazonaws.com",
        "eventName": "CreateAccountResult",
        "serviceEventDetails": {},
    },
)
ACCOUNT_JOINED = {
    detail_type: eventbridge_event(
        "aws.organizations",
        detail_type,
        MANAGEMENT,
        {"eventSource": "organizations.amazonaws.com", "eventName": "AccountJoinedOrganization"},
    )
    for detail_type in ("AWS Service Event via CloudTrail", "AWS API Call via CloudTrail")
}
CREATE_MANAGED_ACCOUNT = eventbridge_event(
    "aws.controltower",
    "AWS Service Event via CloudTrail",
    MANAGEMENT,
    {"eventName": "CreateManagedAccount"},
)
REGION_OPT_IN = eventbridge_event(
    "aws.account",
    "Region Opt-In Status Change",
    MANAGEMENT,
    {"accountId": MEMBER, "regionName": "ap-southeast-7", "status": "ENABLED"},
)
GUARDDUTY_FINDING = eventbridge_event("aws.guardduty", "GuardDuty Finding", MEMBER, {"severity": 8})
MEMBER_API_CALL = eventbridge_event(
    "aws.ec2", "AWS API Call via CloudTrail", MEMBER, {"eventName": "RunInstances"}
)
TRUSTED_ADVISOR = eventbridge_event(
    "aws.trustedadvisor", "Trusted Advisor Check Item Refresh", MEMBER, {}
)


def _matches(deployment, rule, event):
    # moto's EventBridge pattern matcher stands in for EventBridge's (it implements $or).
    pattern = deployment.resolve(deployment.template["Resources"][rule]["Properties"])
    return EventPattern.load(json.dumps(pattern["EventPattern"])).matches_event(event)


def test_trigger_rule_accepts_lifecycle_events_from_the_management_account_only(home):
    for event in (
        CREATE_ACCOUNT_RESULT,
        CREATE_MANAGED_ACCOUNT,
        REGION_OPT_IN,
        *ACCOUNT_JOINED.values(),
    ):
        assert _matches(home, "TriggerRule", event), event["detail-type"]
        forged = {**event, "account": MEMBER}  # a member forwarding the same kind of event
        assert not _matches(home, "TriggerRule", forged)
    for event in (GUARDDUTY_FINDING, MEMBER_API_CALL, TRUSTED_ADVISOR):
        assert not _matches(home, "TriggerRule", event)


def test_trigger_rule_feeds_the_work_queue(home):
    rule = home.resolve(home.template["Resources"]["TriggerRule"]["Properties"])
    (target,) = rule["Targets"]
    assert target["Arn"] == home.get_att("WorkQueue", "Arn")
    assert "InputTransformer" not in target  # the function reads raw EventBridge events


def test_collect_rule_takes_security_events_not_lifecycle_events(relay_region):
    for event in (GUARDDUTY_FINDING, MEMBER_API_CALL, TRUSTED_ADVISOR):
        assert _matches(relay_region, "CollectRule", event), event["source"]
    for event in (CREATE_ACCOUNT_RESULT, REGION_OPT_IN):
        assert not _matches(relay_region, "CollectRule", event)


def test_parameters_are_validated(sam_template, management_template):
    for template in (sam_template, management_template):
        for name, parameter in template["Parameters"].items():
            if parameter["Type"] == "String":
                assert "AllowedPattern" in parameter or "AllowedValues" in parameter, name
            else:
                assert {"MinValue", "MaxValue"} <= set(parameter) or "AllowedValues" in parameter


def test_arns_name_their_partition(sam_template, management_template):
    for template in (sam_template, management_template):
        text = json.dumps(template["Resources"])
        # Literal partitions appear only in the per-partition Fn::Join delimiters.
        assert "arn:aws:" not in text.replace(",arn:aws:iam::*:role/", "")


def test_the_member_dead_letter_queue_takes_only_the_organizations_forward_rules(sam_deployment):
    # One queue per hub region, named as onboarding names it on every member's target, that
    # EventBridge may write only for a rule named watershed-forward, in this region, of an account
    # of this organization.
    resources = sam_deployment.resources()
    queue = sam_deployment.resolve(resources["MemberDeadLetterQueue"]["Properties"])
    policy = sam_deployment.resolve(resources["MemberDeadLetterQueuePolicy"]["Properties"])
    settings = onboarding_settings.Settings.from_env(
        {
            "SECURITY_ACCOUNT_ID": SECURITY_ACCOUNT,
            "MANAGEMENT_ACCOUNT_ID": SAM_PARAMETERS["ManagementAccountId"],
            "HUB_REGIONS": SAM_PARAMETERS["HubRegions"],
        }
    )
    region = sam_deployment.region
    arn = sam_deployment.get_att("MemberDeadLetterQueue", "Arn")
    named = f"arn:aws:sqs:{region}:{SECURITY_ACCOUNT}:{queue['QueueName']}"
    assert settings.member_dead_letter_queue_arn(region) == named
    allow, deny = policy["PolicyDocument"]["Statement"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Resource"] == arn
    assert allow["Condition"] == {
        "ArnLike": {"aws:SourceArn": f"arn:aws:events:{region}:*:rule/watershed-forward"},
        "StringEquals": {"aws:SourceOrgID": SAM_PARAMETERS["OrganizationId"]},
    }
    assert deny["Effect"] == "Deny"


def test_region_opt_ins_raised_in_members_are_routed_to_the_work_queue(sam_template, home):
    # Given the stacks of us-east-1 (where Account Management sends opt-in events), of another
    # relay region, and of us-east-1 as the home region
    east = Deployment(sam_template, "us-east-1", SECURITY_ACCOUNT, SAM_PARAMETERS)
    sydney = Deployment(sam_template, "ap-southeast-2", SECURITY_ACCOUNT, SAM_PARAMETERS)
    east_home = Deployment(
        sam_template, "us-east-1", SECURITY_ACCOUNT, {**SAM_PARAMETERS, "HomeRegion": "us-east-1"}
    )
    member_opt_in = {**REGION_OPT_IN, "account": MEMBER}

    # Then only us-east-1 has the lifecycle rule, and it takes a member's own opt-in (ENABLED)
    assert "LifecycleRule" not in sydney.resources()
    assert "LifecycleRule" not in home.resources()
    assert _matches(east, "LifecycleRule", member_opt_in)
    disabling = {**member_opt_in, "detail": {**member_opt_in["detail"], "status": "DISABLING"}}
    assert not _matches(east, "LifecycleRule", disabling)
    for event in (GUARDDUTY_FINDING, MEMBER_API_CALL, *ACCOUNT_JOINED.values()):
        assert not _matches(east, "LifecycleRule", event)

    # ... and sends it on without a second bus hop: to a topic the home work queue (named, so
    # known in us-east-1) is subscribed to with raw delivery, or to the queue when home is there
    rule = east.resolve(sam_template["Resources"]["LifecycleRule"]["Properties"])
    (target,) = rule["Targets"]
    assert target["Arn"] == east.ref("LifecycleTopic")
    subscription = east.resolve(sam_template["Resources"]["LifecycleSubscription"]["Properties"])
    work_queue = home.resolve(sam_template["Resources"]["WorkQueue"]["Properties"])["QueueName"]
    assert subscription["Endpoint"] == (
        f"arn:aws:sqs:{HOME_REGION}:{SECURITY_ACCOUNT}:{work_queue}"
    )
    assert (subscription["Protocol"], subscription["RawMessageDelivery"]) == ("sqs", True)
    (east_target,) = east_home.resolve(sam_template["Resources"]["LifecycleRule"]["Properties"])[
        "Targets"
    ]
    assert east_target["Arn"] == east_home.get_att("WorkQueue", "Arn")
    assert "LifecycleTopic" not in east_home.resources()

    # ... and in direct mode, where the member's us-east-1 rule delivers to the home bus, the
    # home region routes them to its queue and us-east-1 (no member delivers there) has no rule
    direct = {**SAM_PARAMETERS, "DeliveryMode": "direct"}
    direct_home = Deployment(sam_template, HOME_REGION, SECURITY_ACCOUNT, direct)
    direct_east = Deployment(sam_template, "us-east-1", SECURITY_ACCOUNT, direct)
    assert _matches(direct_home, "LifecycleRule", member_opt_in)
    (direct_target,) = direct_home.resolve(
        sam_template["Resources"]["LifecycleRule"]["Properties"]
    )["Targets"]
    assert direct_target["Arn"] == direct_home.get_att("WorkQueue", "Arn")
    assert not {"LifecycleRule", "LifecycleTopic"} & set(direct_east.resources())

    # ... and the work queue takes messages from that topic and rule only
    policy = home.resolve(sam_template["Resources"]["WorkQueuePolicy"]["Properties"])
    sources = {
        statement["Principal"]["Service"]: statement["Condition"]["ArnEquals"]["aws:SourceArn"]
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
    }
    topic = f"arn:aws:sns:us-east-1:{SECURITY_ACCOUNT}:watershed-lifecycle"
    assert sources["sns.amazonaws.com"] == topic
    assert (
        east.resolve(sam_template["Resources"]["LifecycleTopic"]["Properties"])["TopicName"]
        == topic.rsplit(":", 1)[1]
    )


def test_relay_replay_pins_the_regional_stream_the_template_names(relay_region):
    stream = relay_region.resolve(
        relay_region.template["Resources"]["RegionalStream"]["Properties"]
    )
    assert stream["Name"] == replay_cli.REGIONAL_STREAM_NAME


# --- DeliveryMode direct (issue 13) -----------------------------------------------------------

DIRECT = {**SAM_PARAMETERS, "DeliveryMode": "direct"}
# What a non-home hub region holds in direct mode: the collect rule, which sends the Security
# account's own security events of that region to the home region's bus (members deliver to the
# home bus themselves), its role, and the dead-letter queue and alarms of that one rule.
DIRECT_OTHER_REGION = {
    "CollectRule",
    "CollectRole",
    "EventsDeadLetterQueue",
    "EventsDeadLetterQueuePolicy",
    "CollectFailedInvocationsAlarm",
    "EventsDeadLetterQueueAlarm",
    # the dead-letter queue of the members' targets whose rule is in this region (a target's DLQ
    # must be in its rule's region, whatever bus it delivers to)
    "MemberDeadLetterQueue",
    "MemberDeadLetterQueuePolicy",
    "MemberDeadLetterQueueAlarm",
}


def _direct(sam_template, region):
    return Deployment(sam_template, region, SECURITY_ACCOUNT, DIRECT)


def test_delivery_mode_is_relay_by_default_and_only_relay_or_direct(sam_template):
    parameter = sam_template["Parameters"]["DeliveryMode"]
    assert parameter["Default"] == "relay"
    assert parameter["AllowedValues"] == ["relay", "direct"]


@pytest.mark.parametrize("region", ["us-east-1", "ap-southeast-2"])
def test_direct_mode_other_regions_create_no_stream_relay_queue_or_bus_grant(sam_template, region):
    other = _direct(sam_template, region)
    created = set(other.resources())
    assert created == DIRECT_OTHER_REGION
    assert not created & (RELAY_ONLY | HOME_ONLY | {"DestinationStream", "OrganizationBusPolicy"})
    assert not {k for k in created if "Stream" in k or "Relay" in k or "Bucket" in k}


def test_direct_mode_other_region_sends_only_to_the_home_bus(sam_template):
    other = _direct(sam_template, "ap-southeast-2")
    home_bus = f"arn:aws:events:{HOME_REGION}:{SECURITY_ACCOUNT}:event-bus/default"
    rule = other.resolve(sam_template["Resources"]["CollectRule"]["Properties"])
    (target,) = rule["Targets"]
    assert target["Arn"] == home_bus
    assert target["RoleArn"] == other.get_att("CollectRole", "Arn")  # cross-region needs RoleArn
    assert "KinesisParameters" not in target
    assert target["DeadLetterConfig"]["Arn"] == other.get_att("EventsDeadLetterQueue", "Arn")
    (policy,) = other.resolve(sam_template["Resources"]["CollectRole"]["Properties"]["Policies"])
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Sid": "PutOnTheHomeRegionBus",
            "Effect": "Allow",
            "Action": "events:PutEvents",
            "Resource": home_bus,
        }
    ]


def test_direct_mode_home_region_is_the_relay_home_plus_the_mode(sam_template, home):
    direct_home = _direct(sam_template, HOME_REGION)
    # plus the lifecycle rule: members' own region opt-ins now arrive on the home bus
    assert set(direct_home.resources()) == set(home.resources()) | {"LifecycleRule"}
    assert _environment(direct_home, "OnboardingFunction")["DELIVERY_MODE"] == "direct"
    assert _environment(home, "OnboardingFunction")["DELIVERY_MODE"] == "relay"
    # The home bus policy grants by organization only - no region condition that would refuse
    # the members' cross-region deliveries.
    statement = direct_home.resolve(
        sam_template["Resources"]["OrganizationBusPolicy"]["Properties"]["Statement"]
    )
    assert statement["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": SAM_PARAMETERS["OrganizationId"]}
    }
    rule = direct_home.resolve(sam_template["Resources"]["CollectRule"]["Properties"])
    assert rule["Targets"][0]["Arn"] == direct_home.get_att("DestinationStream", "Arn")


def test_direct_mode_other_region_rule_has_a_watched_dead_letter_queue(sam_template):
    other = _direct(sam_template, "us-east-1")
    resources = other.resources()
    watched = {
        v["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for v in resources.values()
        if v["Type"] == "AWS::CloudWatch::Alarm" and v["Properties"]["Namespace"] == "AWS/SQS"
    }
    assert watched == {"EventsDeadLetterQueue", "MemberDeadLetterQueue"}


def test_trigger_rule_accepts_the_offboarding_calls_from_the_management_account_only(home):
    for name in ("MoveAccount", "TagResource", "UntagResource", "RemoveAccountFromOrganization"):
        call = eventbridge_event(
            "aws.organizations", "AWS API Call via CloudTrail", MANAGEMENT, {"eventName": name}
        )
        assert _matches(home, "TriggerRule", call), name
        assert not _matches(home, "TriggerRule", {**call, "account": MEMBER})
    create = eventbridge_event(
        "aws.organizations",
        "AWS API Call via CloudTrail",
        MANAGEMENT,
        {"eventName": "CreateAccount"},
    )
    assert not _matches(home, "TriggerRule", create)
