"""The queue settings: defaults, CloudFormation's empty strings, and errors naming the variable."""

import pytest

from onboarding.errors import ConfigError
from onboarding.settings import Settings

REQUIRED = {
    "SECURITY_ACCOUNT_ID": "222233334444",
    "MANAGEMENT_ACCOUNT_ID": "111122223333",
    "HUB_REGIONS": "us-east-1",
}
QUEUE = "https://sqs.us-east-1.amazonaws.com/222233334444/watershed-work"


def test_queue_settings_are_read_and_typed():
    settings = Settings.from_env(
        {
            **REQUIRED,
            "WORK_QUEUE_URL": QUEUE,
            "DEAD_LETTER_QUEUE_URL": QUEUE + "-dlq",
            "RETRY_CAP_SECONDS": "1800",
            "EXCLUDED_ACCOUNTS": "333344445555, 444455556666",
            "EXCLUDED_OUS": "ou-ab12-cdefgh34",
            "EXCLUDE_TAG": "watershed=skip",
        }
    )

    assert settings.work_queue_url == QUEUE
    assert settings.dead_letter_queue_url.endswith("-dlq")
    assert settings.retry_cap_seconds == 1800
    assert settings.excluded_accounts == {"333344445555", "444455556666"}
    assert settings.excluded_ous == {"ou-ab12-cdefgh34"}
    assert settings.exclude_tag == ("watershed", "skip")


def test_a_bare_tag_key_matches_any_value():
    assert Settings.from_env({**REQUIRED, "EXCLUDE_TAG": "no-watershed"}).exclude_tag == (
        "no-watershed",
        None,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WORK_QUEUE_URL", "watershed-work"),
        ("RETRY_CAP_SECONDS", "an hour"),
        ("RETRY_CAP_SECONDS", "-1"),
        ("RETRY_CAP_SECONDS", "86400"),
        ("EXCLUDED_ACCOUNTS", "12345"),
        ("EXCLUDED_OUS", "r-ab12"),
        ("EXCLUDE_TAG", "=value"),
    ],
)
def test_malformed_values_name_the_variable(variable, value):
    env = {**REQUIRED, "WORK_QUEUE_URL": QUEUE, variable: value}
    with pytest.raises(ConfigError, match=f"^{variable}:"):
        Settings.from_env(env)


def test_a_dead_letter_queue_needs_a_work_queue():
    with pytest.raises(ConfigError, match=r"^DEAD_LETTER_QUEUE_URL:"):
        Settings.from_env({**REQUIRED, "DEAD_LETTER_QUEUE_URL": QUEUE + "-dlq"})
