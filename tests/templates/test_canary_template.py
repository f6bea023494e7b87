"""template.yaml and management.yaml: the scheduled canary and the canary's permissions.

Off by default; switched on by CanaryIntervalMinutes. The least-privilege checks of every
policy document (test_policies.py) run over the canary variants too (cfnmodel.sam_deployments).
"""

import pytest
from cfnmodel import (
    HOME_REGION,
    RELAY_REGION,
    ROOT,
    SAM_PARAMETERS,
    SECURITY_ACCOUNT,
    Deployment,
    management_deployments,
    statements,
)

from onboarding.canary.canary import CanarySettings
from onboarding.settings import Settings

CANARY = {"CanaryIntervalMinutes": "60"}
EXISTING = "arn:aws:kinesis:eu-west-1:222222222222:stream/streamalert"
KEY = "arn:aws:kms:eu-west-1:222222222222:key/0a1b2c3d-0000-4000-8000-000000000000"
CANARY_RESOURCES = {
    "CanaryLogGroup",
    "CanaryPolicy",
    "CanaryFunction",
    "CanaryMissingAlarm",
    "CanaryErrorsAlarm",
}


def deployment(sam_template, region=HOME_REGION, **extra) -> Deployment:
    return Deployment(sam_template, region, SECURITY_ACCOUNT, {**SAM_PARAMETERS, **extra})


def test_the_scheduled_canary_is_off_by_default_and_only_in_the_home_region(sam_template):
    assert not CANARY_RESOURCES & set(deployment(sam_template).resources())
    assert set(deployment(sam_template, **CANARY).resources()) >= CANARY_RESOURCES
    assert not CANARY_RESOURCES & set(deployment(sam_template, RELAY_REGION, **CANARY).resources())


def test_the_schedule_fires_every_interval_with_the_scheduled_event(sam_template):
    home = deployment(sam_template, CanaryIntervalMinutes="15")
    props = home.resolve(home.template["Resources"]["CanaryFunction"]["Properties"])
    (event,) = props["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == "rate(15 minutes)"
    assert "Input" not in event["Properties"]  # the handler reads the event's time
    assert props["Handler"] == "onboarding.canary.canary_handler.lambda_handler"
    assert props["Role"] == home.get_att("OnboardingRole", "Arn")
    assert props["Timeout"] >= 720 + 120  # the longest wait plus listing and raising
    assert "build-CanaryFunction:" in (ROOT / "Makefile").read_text()
    assert (ROOT / "onboarding" / "canary" / "canary_handler.py").is_file()


@pytest.mark.parametrize(
    ("extra", "stream"),
    [
        ({}, f"arn:aws:kinesis:{HOME_REGION}:{SECURITY_ACCOUNT}:stream/watershed"),
        ({"ExistingDestinationStreamArn": EXISTING}, EXISTING),
    ],
)
def test_the_canary_function_is_configured_as_its_settings_read_it(sam_template, extra, stream):
    home = deployment(sam_template, **CANARY, **extra)
    props = home.resolve(home.template["Resources"]["CanaryFunction"]["Properties"])
    env = {
        **home.resolve(home.template["Globals"]["Function"]["Environment"]["Variables"]),
        **props["Environment"]["Variables"],
    }
    env = {k: str(v) for k, v in env.items()}
    if not extra:
        assert home.get_att("DestinationStream", "Arn") == env["DESTINATION_STREAM_ARN"]
    else:
        assert env["DESTINATION_STREAM_ARN"] == stream
    env["AWS_REGION"] = HOME_REGION
    # the function's own parsers accept what the template passes
    settings, canary = Settings.from_env(env), CanarySettings.from_env(env)
    assert settings.security_account_id == SECURITY_ACCOUNT
    assert (canary.interval_minutes, canary.accounts_per_run, canary.timeout_seconds) == (
        60,
        25,
        600,
    )
    assert env["POWERTOOLS_SERVICE_NAME"] == "canary"


def _canary_statements(home):
    policy = home.resolve(home.template["Resources"]["CanaryPolicy"]["Properties"])
    assert policy["Roles"] == [home.ref("OnboardingRole")]
    return {s["Sid"]: s for s in statements(policy["PolicyDocument"])}


def test_the_canary_reads_the_destination_stream_only_and_writes_nothing_to_it(sam_template):
    for extra, stream in (({}, None), ({"ExistingDestinationStreamArn": EXISTING}, EXISTING)):
        home = deployment(sam_template, **CANARY, **extra)
        read = _canary_statements(home)["ReadTheDestinationStreamOnly"]
        assert sorted(read["Action"]) == [
            "kinesis:GetRecords",
            "kinesis:GetShardIterator",
            "kinesis:ListShards",
        ]
        assert read["Resource"] == (stream or home.get_att("DestinationStream", "Arn"))
        assert "*" not in str(read["Resource"])


def test_a_customer_key_is_decrypted_for_the_canary_only_when_given(sam_template):
    assert "CanaryStreamKeyPolicy" not in deployment(sam_template, **CANARY).resources()
    home = deployment(
        sam_template,
        **CANARY,
        ExistingDestinationStreamArn=EXISTING,
        ExistingDestinationStreamKeyArn=KEY,
    )
    policy = home.resolve(home.template["Resources"]["CanaryStreamKeyPolicy"]["Properties"])
    (statement,) = statements(policy["PolicyDocument"])
    assert (statement["Action"], statement["Resource"]) == ("kms:Decrypt", KEY)


def _sample_findings_statements(document):
    return [
        s
        for s in statements(document)
        if "guardduty:CreateSampleFindings"
        in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    ]


def test_create_sample_findings_is_granted_alone_in_its_statement(
    sam_template, management_template
):
    home = deployment(sam_template, LauncherRoleArn="")
    policy = home.resolve(
        home.template["Resources"]["OnboardingWithoutLauncherPolicy"]["Properties"]
    )
    (statement,) = _sample_findings_statements(policy["PolicyDocument"])
    # No resource-level permissions for this action (parliament's copy of the Service
    # Authorization Reference, checked in test_policies.py): "*", alone in its statement.
    assert statement["Resource"] == "*"
    assert (
        statement["Effect"] == "Allow" and statement["Action"] == "guardduty:CreateSampleFindings"
    )
    for management in management_deployments(management_template).values():
        if not management.exists("LauncherRole"):
            continue
        role = management.resolve(management.template["Resources"]["LauncherRole"]["Properties"])
        found = [
            s
            for policy in role["Policies"]
            for s in _sample_findings_statements(policy["PolicyDocument"])
        ]
        assert [(s["Action"], s["Resource"]) for s in found] == [
            ("guardduty:CreateSampleFindings", "*")
        ]


def test_the_missing_alarm_watches_the_total_the_handler_publishes(sam_template):
    home = deployment(sam_template, **CANARY)
    alarm = home.resolve(home.template["Resources"]["CanaryMissingAlarm"]["Properties"])
    assert (alarm["Namespace"], alarm["MetricName"]) == ("watershed", "CanaryMissing")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "canary"}]
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        0,
        "GreaterThanThreshold",
    )
    errors = home.resolve(home.template["Resources"]["CanaryErrorsAlarm"]["Properties"])
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": home.ref("CanaryFunction")}]


def test_the_events_dead_letter_queue_accepts_the_canary_rule(sam_template):
    home = deployment(sam_template, **CANARY)
    policy = home.resolve(home.template["Resources"]["EventsDeadLetterQueuePolicy"]["Properties"])
    (allow,) = [
        s
        for s in statements(policy["PolicyDocument"])
        if s.get("Sid") == "EventBridgeRulesOfThisStackOnly"
    ]
    sources = allow["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert f"arn:aws:events:{HOME_REGION}:{SECURITY_ACCOUNT}:rule/watershed-canary" in sources
