"""Settings.from_env(): defaults, validation, and errors that name the variable."""

import pytest

from onboarding.errors import ConfigError
from onboarding.settings import Settings

REQUIRED = {
    "SECURITY_ACCOUNT_ID": "222233334444",
    "MANAGEMENT_ACCOUNT_ID": "111122223333",
    "HUB_REGIONS": "us-east-1, eu-west-1",
}


def test_defaults_from_the_required_variables_only():
    settings = Settings.from_env(REQUIRED)

    assert settings.hub_regions == ("us-east-1", "eu-west-1")
    assert settings.launcher_role_arn is None
    assert settings.member_role_names == (
        "OrganizationAccountAccessRole",
        "AWSControlTowerExecution",
    )
    assert settings.forwarder_role_name == "watershed-forwarder"
    assert settings.forward_rule_name == "watershed-forward"
    # not enforced on existing detectors; a detector watershed creates gets FIFTEEN_MINUTES
    assert settings.finding_publishing_frequency is None
    assert settings.creation_frequency == "FIFTEEN_MINUTES"
    assert settings.guardduty_mode == "manage"
    assert settings.region_workers == 20
    assert settings.home_region == "us-east-1"
    # Tri-state: nothing named, so no plan is enforced on an existing detector.
    assert settings.guardduty_features == ()
    assert settings.features_list == []
    assert settings.forward_event_pattern["$or"][0] == {"source": ["aws.guardduty"]}
    assert settings.security_bus_arn("eu-west-1") == (
        "arn:aws:events:eu-west-1:222233334444:event-bus/default"
    )


def test_every_setting_can_be_overridden():
    settings = Settings.from_env(
        {
            **REQUIRED,
            "LAUNCHER_ROLE_ARN": "arn:aws:iam::111122223333:role/watershed-launcher",
            "MEMBER_ROLE_NAMES": "AWSControlTowerExecution,OrganizationAccountAccessRole",
            "FORWARDER_ROLE_NAME": "sec-forwarder",
            "FORWARD_RULE_NAME": "sec-forward",
            "FORWARD_EVENT_PATTERN": '{"source": ["aws.guardduty"]}',
            "FINDING_PUBLISHING_FREQUENCY": "one_hour",
            "GUARDDUTY_FEATURES": "S3_DATA_EVENTS, RDS_LOGIN_EVENTS=ENABLED,ai_protection=disabled",
            "GUARDDUTY": "Observe",
            "REGION_WORKERS": "4",
            "AWS_REGION": "eu-west-1",
        }
    )

    assert settings.launcher_role_arn.endswith(":role/watershed-launcher")
    assert settings.member_role_names[0] == "AWSControlTowerExecution"
    assert settings.forwarder_role_name == "sec-forwarder"
    assert settings.forward_rule_name == "sec-forward"
    assert settings.forward_event_pattern == {"source": ["aws.guardduty"]}
    assert settings.finding_publishing_frequency == "ONE_HOUR"
    assert dict(settings.guardduty_features) == {
        "S3_DATA_EVENTS": "ENABLED",
        "RDS_LOGIN_EVENTS": "ENABLED",
        "AI_PROTECTION": "DISABLED",
    }  # only what is named: EBS_MALWARE_PROTECTION & co. are left to the owner
    assert settings.guardduty_mode == "observe"
    assert settings.region_workers == 4
    assert settings.home_region == "eu-west-1"
    assert settings.forwarder_role_arn("444455556666") == (
        "arn:aws:iam::444455556666:role/sec-forwarder"
    )


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_a_missing_required_variable_is_named(missing):
    env = {k: v for k, v in REQUIRED.items() if k != missing}

    with pytest.raises(ConfigError, match=missing) as raised:
        Settings.from_env(env)
    assert raised.value.variable == missing


@pytest.mark.parametrize(
    ("variable", "value", "names"),
    [
        ("SECURITY_ACCOUNT_ID", "22223333444", "22223333444"),
        ("MANAGEMENT_ACCOUNT_ID", "abc", "abc"),
        ("HUB_REGIONS", "us-east-1,Europe", "Europe"),
        ("HUB_REGIONS", "us-east-1,us-east-1", "twice"),
        ("HUB_REGIONS", " , ", "at least one region"),
        ("LAUNCHER_ROLE_ARN", "watershed-launcher", "watershed-launcher"),
        ("LAUNCHER_ROLE_ARN", "arn:aws:iam::999999999999:role/launcher", "management"),
        ("MEMBER_ROLE_NAMES", "Org Access", "Org Access"),
        ("FORWARDER_ROLE_NAME", "bad/name", "bad/name"),
        ("FORWARD_RULE_NAME", "bad rule", "bad rule"),
        ("FORWARD_EVENT_PATTERN", "{not json", "not valid JSON"),
        ("FORWARD_EVENT_PATTERN", "[1, 2]", "JSON object"),
        ("FORWARD_EVENT_PATTERN", '{"source": ["aws.' + "x" * 2100 + '"]}', "2048"),
        ("FINDING_PUBLISHING_FREQUENCY", "HOURLY", "HOURLY"),
        ("GUARDDUTY_FEATURES", "S3_DATA_EVENTS=ON", "ENABLED or DISABLED"),
        ("GUARDDUTY_FEATURES", "s3 data", "S3 DATA"),
        ("GUARDDUTY_FEATURES", "EKS_RUNTIME_MONITORING", "RUNTIME_MONITORING"),
        ("GUARDDUTY_FEATURES", "S3_DATA_EVENT", "not a GuardDuty plan this SDK knows"),
        ("GUARDDUTY_FEATURES", "S3_DATA_EVENTS,S3_DATA_EVENTS=DISABLED", "twice"),
        ("GUARDDUTY", "disabled", "manage, observe, off"),
        ("REGION_WORKERS", "many", "many"),
        ("REGION_WORKERS", "0", "between 1 and 64"),
        ("AWS_REGION", "Ireland", "Ireland"),
    ],
)
def test_a_malformed_value_is_refused_naming_variable_and_value(variable, value, names):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**REQUIRED, variable: value})

    assert raised.value.variable == variable
    assert str(raised.value).startswith(variable)
    assert names in str(raised.value)


def test_settings_are_frozen():
    settings = Settings.from_env(REQUIRED)
    with pytest.raises(AttributeError):
        settings.hub_regions = ("us-west-2",)
