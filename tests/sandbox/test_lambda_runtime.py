"""The in-process Lambda runtime: environment, credentials, context, containers, logs."""

import os

import pytest

from sandbox.lambda_runtime import FunctionSpec

REGION = "ap-southeast-2"


@pytest.fixture
def function(aws, org, fixture_app):
    iam = aws.session(org.security.account_id).client("iam")
    role = iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]

    def make(name, setting, handler="sandbox_fixture.coldstart.lambda_handler"):
        return FunctionSpec(
            account_id=org.security.account_id,
            region=REGION,
            name=name,
            arn=f"arn:aws:lambda:{REGION}:{org.security.account_id}:function:{name}",
            handler=handler,
            role_arn=role,
            environment={"SETTING": setting},
            timeout_seconds=60,
        )

    return make


def test_each_function_has_its_own_container_and_cold_starts_once(runtime, function):
    first, second = function("first", "one"), function("second", "two")

    results = [runtime.invoke(f, {}).result for f in (first, second, first, second)]

    assert [r["cold_starts"] for r in results] == [1, 1, 1, 1]
    assert [r["setting_at_cold_start"] for r in results] == ["one", "two", "one", "two"]
    assert [r["function"] for r in results] == ["first", "second", "first", "second"]


def test_the_environment_is_the_function_s_only_during_the_call(runtime, function):
    before = dict(os.environ)

    result = runtime.invoke(function("f", "from-template"), {}).result

    assert result["setting_now"] == "from-template"
    assert dict(os.environ) == before


def test_the_handler_runs_with_its_execution_role_in_its_account(aws, org, runtime, fixture_app):
    iam = aws.session(org.security.account_id).client("iam")
    role = iam.create_role(RoleName="recorder", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    spec = FunctionSpec(
        account_id=org.security.account_id,
        region=REGION,
        name="recorder",
        arn=f"arn:aws:lambda:{REGION}:{org.security.account_id}:function:recorder",
        handler="sandbox_fixture.record.lambda_handler",
        role_arn=role,
        timeout_seconds=10,
    )
    body = '{"detail": {}}'

    runtime.invoke(spec, {"Records": [{"messageId": "m", "body": body}]})

    (seen,) = runtime.module(spec, "sandbox_fixture.record").SEEN
    assert (seen["account"], seen["region"]) == (org.security.account_id, REGION)
    assert 0 < seen["remaining_ms"] <= 10_000


def test_an_exception_is_a_function_error_with_its_traceback_in_the_log(runtime, function):
    broken = function("broken", "x", handler="sandbox_fixture.missing.lambda_handler")

    invocation = runtime.invoke(broken, {})

    assert not invocation.ok and "ModuleNotFoundError" in invocation.error
    assert any("Traceback" in line for line in runtime.log(broken))


def test_stdout_goes_to_the_function_log(aws, org, hub, runtime, poller):
    kinesis = aws.session(org.security.account_id).client("kinesis", region_name="eu-west-1")
    kinesis.put_record(StreamName=hub.physical_id("Regional"), Data=b"x", PartitionKey="k")

    poller.drain()

    (mapping,) = [m for m in poller.mappings if m.kind == "kinesis"]
    (line,) = runtime.log(mapping.function)
    assert line.startswith("forwarded 1, ") and line.endswith(" ms left")


def test_a_logger_configured_at_an_earlier_cold_start_still_logs_to_this_function(
    aws, runtime, function
):
    # Given a logging handler attached, at a cold start, to the process-wide logger and bound
    # to that moment's sys.stdout — by an earlier runtime (an earlier demo in this process)
    from sandbox.lambda_runtime import LambdaRuntime

    earlier = LambdaRuntime(aws)
    first = function("first", "x", handler="sandbox_fixture.logs.lambda_handler")
    earlier.invoke(first, {"n": 1})

    # When another runtime's function logs through the same logger
    second = function("second", "x", handler="sandbox_fixture.logs.lambda_handler")
    runtime.invoke(second, {"n": 2})

    # Then each line is in the log of the function that wrote it
    assert earlier.log(first) == ["logged 1"]
    assert runtime.log(second) == ["logged 2"]
