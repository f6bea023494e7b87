"""Given the environment, when the relay reads its configuration, then it gets typed values or an
error that names the variable at fault."""

import pytest

from relay.errors import ConfigurationError
from relay.settings import Settings

ARN = "arn:aws:kinesis:eu-central-1:222222222222:stream/sec-events-final"


def test_defaults_and_what_the_arn_tells():
    settings = Settings.from_env({"DESTINATION_STREAM_ARN": ARN})

    assert settings.destination_region == "eu-central-1"
    assert settings.partition == "aws"
    assert settings.destination_stream_name == "sec-events-final"
    # no count bound on sends: failed entries are retried until the time budget is spent
    assert (settings.max_attempts, settings.backoff_base_ms, settings.backoff_max_ms) == (
        0,
        100,
        3_000,
    )
    assert settings.time_margin_ms == 5_000
    assert settings.oversize_bucket is None
    # PutRecords' documented limits for a standard destination stream: 1 MiB, 5 MiB
    assert (settings.max_record_bytes, settings.max_request_bytes) == (1_048_576, 5_242_880)


@pytest.mark.parametrize(
    ("arn", "partition", "region"),
    [
        ("arn:aws-cn:kinesis:cn-north-1:222222222222:stream/s", "aws-cn", "cn-north-1"),
        (
            "arn:aws-us-gov:kinesis:us-gov-west-1:222222222222:stream/s",
            "aws-us-gov",
            "us-gov-west-1",
        ),
    ],
)
def test_other_partitions(arn, partition, region):
    settings = Settings.from_env({"DESTINATION_STREAM_ARN": arn})
    assert (settings.partition, settings.destination_region) == (partition, region)


def test_tunables_are_read():
    settings = Settings.from_env(
        {
            "DESTINATION_STREAM_ARN": ARN,
            "RELAY_MAX_ATTEMPTS": "3",
            "RELAY_BACKOFF_BASE_MS": "50",
            "RELAY_BACKOFF_MAX_MS": "400",
            "RELAY_TIME_MARGIN_MS": "0",
            "OVERSIZE_BUCKET": "watershed-oversize-eu-west-1",
            "RELAY_MAX_RECORD_BYTES": "10485760",
            "RELAY_MAX_REQUEST_BYTES": "10485760",
        }
    )
    assert (settings.max_attempts, settings.backoff_base_ms, settings.backoff_max_ms) == (
        3,
        50,
        400,
    )
    assert settings.time_margin_ms == 0
    assert settings.oversize_bucket == "watershed-oversize-eu-west-1"
    # a destination configured for large records (MaxRecordSizeInKiB 10240)
    assert (settings.max_record_bytes, settings.max_request_bytes) == (10_485_760, 10_485_760)


def test_settings_are_frozen():
    settings = Settings.from_env({"DESTINATION_STREAM_ARN": ARN})
    with pytest.raises(AttributeError):
        settings.max_attempts = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "DESTINATION_STREAM_ARN"),
        ({"DESTINATION_STREAM_ARN": "sec-events-final"}, "DESTINATION_STREAM_ARN"),
        (
            {"DESTINATION_STREAM_ARN": "arn:aws:sqs:eu-west-1:222222222222:queue"},
            "DESTINATION_STREAM_ARN",
        ),
        ({"DESTINATION_STREAM_ARN": ARN, "RELAY_MAX_ATTEMPTS": "many"}, "RELAY_MAX_ATTEMPTS"),
        ({"DESTINATION_STREAM_ARN": ARN, "RELAY_MAX_ATTEMPTS": "-1"}, "RELAY_MAX_ATTEMPTS"),
        (
            {"DESTINATION_STREAM_ARN": ARN, "RELAY_MAX_RECORD_BYTES": "10485761"},
            "RELAY_MAX_RECORD_BYTES",
        ),
        (
            {"DESTINATION_STREAM_ARN": ARN, "RELAY_MAX_REQUEST_BYTES": "20971520"},
            "RELAY_MAX_REQUEST_BYTES",
        ),
        (
            {
                "DESTINATION_STREAM_ARN": ARN,
                "RELAY_MAX_RECORD_BYTES": "4194304",
                "RELAY_MAX_REQUEST_BYTES": "2097152",
            },
            "RELAY_MAX_REQUEST_BYTES",
        ),
        ({"DESTINATION_STREAM_ARN": ARN, "RELAY_MAX_RECORD_BYTES": "0"}, "RELAY_MAX_RECORD_BYTES"),
        ({"DESTINATION_STREAM_ARN": ARN, "RELAY_TIME_MARGIN_MS": "-1"}, "RELAY_TIME_MARGIN_MS"),
        (
            {
                "DESTINATION_STREAM_ARN": ARN,
                "RELAY_BACKOFF_BASE_MS": "500",
                "RELAY_BACKOFF_MAX_MS": "100",
            },
            "RELAY_BACKOFF_MAX_MS",
        ),
        ({"DESTINATION_STREAM_ARN": ARN, "OVERSIZE_BUCKET": "Not_A_Bucket"}, "OVERSIZE_BUCKET"),
    ],
)
def test_a_bad_value_names_its_variable(env, variable):
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env(env)
    assert error.value.variable == variable
    assert str(error.value).startswith(variable)


def test_the_first_invocation_fails_with_the_variable_name(handler, monkeypatch, context):
    # Given an execution environment without the destination
    monkeypatch.delenv("DESTINATION_STREAM_ARN")

    with pytest.raises(ConfigurationError, match="DESTINATION_STREAM_ARN"):
        handler.lambda_handler({"Records": []}, context)
