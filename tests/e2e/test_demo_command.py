"""`watershed demo` / `python -m sandbox` / `make demo`: the verdict line and the exit code."""

import sys

from sandbox.cli import main


def test_the_command_says_n_of_n_and_exits_0(capsys):
    code = main(["--regions", "2", "--accounts", "2", "--quiet"])

    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0, out
    assert out == ["demo: 5 of 5 events reached watershed in eu-west-1"]


def test_a_lost_event_exits_1_and_says_which(monkeypatch, capsys):
    # Fault injected: EventBridge fails to put us-east-1's events on the regional stream.
    from sandbox.shims import EventBridgeToKinesisShim

    deliver = EventBridgeToKinesisShim.deliver

    def flaky(self, rule, target, event):
        if event["region"] != "us-east-1":
            deliver(self, rule, target, event)

    monkeypatch.setattr(EventBridgeToKinesisShim, "deliver", flaky)

    code = main(["--regions", "2", "--accounts", "1", "--quiet"])

    (line,) = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert line.startswith("demo: 1 of 4 events reached watershed in eu-west-1; ")
    assert "lost CloudTrail API call (us-east-1" in line
    assert "lost Trusted Advisor check (us-east-1" in line


def test_a_forwarded_event_that_should_not_be_exits_1_and_says_which(monkeypatch, capsys):
    # Fault injected: the "EC2 state change" the story raises is in fact a GuardDuty finding,
    # which the members' forwarding rule does forward.
    import sandbox.events

    original = sandbox.events.instance_state_change

    def disguised(member, region, why):
        event = original(member, region, why)
        event.entry["Source"] = "aws.guardduty"
        return event

    monkeypatch.setattr(sandbox.events, "instance_state_change", disguised)

    code = main(["--regions", "2", "--accounts", "1", "--quiet"])

    (line,) = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert line.startswith("demo: 4 of 4 events reached watershed in eu-west-1; ")
    assert "forwarded EC2 state change (us-east-1) that should not be" in line


def test_a_dead_lettered_trigger_exits_1_and_names_it(monkeypatch, capsys):
    # Fault injected: the onboarding function's parser refuses every Control Tower event
    # (InvalidRequest), standing in for a parser regression or an event shape AWS changed. The
    # QueueWorker then dead-letters CreateManagedAccount as `invalid`; the account is configured
    # anyway by its CreateAccountResult, so only the queues and the per-request outcomes tell.
    # The function runs on its own copy of the package (sandbox.lambda_runtime), so the patch
    # is applied to that copy, inside the function's container, when its handler is loaded.
    def refusing_parser(parse_event):
        errors = sys.modules["onboarding.errors"]  # the function's own copy, as loaded

        def refusing(event, settings):
            if event.get("source") == "aws.controltower":
                raise errors.InvalidRequest("injected: Control Tower event refused")
            return parse_event(event, settings)

        return refusing

    _inject_in_the_function(monkeypatch, "onboarding.events", "parse_event", refusing_parser)

    code = main(["--regions", "2", "--accounts", "2", "--quiet"])

    (line,) = capsys.readouterr().out.strip().splitlines()
    assert code == 1, line
    assert line.startswith("demo: 5 of 5 events reached watershed in eu-west-1; ")  # no event lost
    assert "WorkDeadLetterQueue" in line
    assert "CreateManagedAccount for workload-2 dead-lettered as invalid" in line
    assert "injected: Control Tower event refused" in line


def test_watershed_demo_dispatches_to_the_sandbox_with_one_region(capsys):
    from onboarding.cli.cli import main as watershed

    code = watershed(["demo", "--regions", "1", "--accounts", "1", "--quiet"])

    # one hub region: us-east-1's IAM call and Trusted Advisor check are not collected
    assert capsys.readouterr().out.strip().splitlines() == [
        "demo: 2 of 2 events reached watershed in eu-west-1"
    ]
    assert code == 0


def test_serve_keeps_the_sandbox_up_for_other_tools(monkeypatch, capsys):
    # The story runs behind moto's HTTP server on 127.0.0.1; while it waits for Ctrl-C, other
    # clients reach it through AWS_ENDPOINT_URL — here the aws SDK and `watershed plan`.
    import os

    import boto3

    import sandbox.cli
    from onboarding.cli.cli import main as watershed

    seen = {}

    def look_around():
        seen["endpoint"] = os.environ["AWS_ENDPOINT_URL"]
        organizations = boto3.client("organizations", region_name="us-east-1")
        seen["accounts"] = len(organizations.list_accounts()["Accounts"])
        out = capsys.readouterr().out
        plan = next(line for line in out.splitlines() if "watershed plan" in line)
        seen["plan"] = watershed(plan.split("watershed ", 1)[1].split())

    monkeypatch.setattr(sandbox.cli, "wait_for_interrupt", look_around)

    code = main(["--regions", "2", "--accounts", "1", "--quiet", "--serve"])

    assert code == 0
    assert seen["endpoint"].startswith("http://127.0.0.1:")
    assert seen["accounts"] == 3  # management, security, one member
    assert seen["plan"] == 0  # the member is configured: nothing to change, nothing failed
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_uninstall_empties_every_member_and_keeps_the_last_line(capsys):
    code = main(["--regions", "2", "--accounts", "2", "--uninstall"])

    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0, out[-1]
    assert out[-1] == "demo: 5 of 5 events reached watershed in eu-west-1"
    # the canary act is 7, so the uninstall act is 8
    section = out[out.index(next(line for line in out if line.startswith("8. uninstall"))) :]
    rows = [line for line in section if line.strip().startswith("workload-")]
    assert len(rows) == 2 and all(row.count("✓ empty") == 2 for row in rows), rows


def test_a_removal_that_leaves_a_rule_exits_1_and_says_where(monkeypatch, capsys):
    # Fault injected inside the function's own copy of the package (see above): removal plans
    # nothing in eu-west-1, standing in for a regression that forgets a region.
    def forgetful_removal(remove):
        def forgetful(events, settings, account_id, region, dry_run=False):
            if region == "eu-west-1":
                return []
            return remove(events, settings, account_id, region, dry_run)

        return forgetful

    _inject_in_the_function(
        monkeypatch, "onboarding.resources.forwarding", "remove_forwarding", forgetful_removal
    )

    code = main(["--regions", "2", "--accounts", "1", "--quiet", "--uninstall"])

    (line,) = capsys.readouterr().out.strip().splitlines()
    assert code == 1, line
    assert line.startswith("demo: 4 of 4 events reached watershed in eu-west-1; ")
    assert "still has rule watershed-forward, target security-bus" in line
    assert "in eu-west-1 after uninstall" in line


def _inject_in_the_function(monkeypatch, module: str, name: str, wrap) -> None:
    """Replace `module.name` by `wrap(original)` inside the function's own copy of the package
    (sandbox.lambda_runtime loads one per function), once, when its handler is loaded."""
    from sandbox.lambda_runtime import LambdaRuntime

    load = LambdaRuntime._handler

    def loading(path):
        handler = load(path)
        target = sys.modules.get(module)
        if target is not None and not getattr(getattr(target, name), "injected", False):
            replacement = wrap(getattr(target, name))
            replacement.injected = True
            monkeypatch.setattr(target, name, replacement)
        return handler

    monkeypatch.setattr(LambdaRuntime, "_handler", staticmethod(loading))
