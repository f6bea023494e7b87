"""`watershed audit` on the command line against moto: reports, JSON schema, exit codes, --fix
inline (then a second audit is all ok) and through a work queue."""

import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import boto3
import jsonschema
import pytest
from auditzoo import (
    CallRecorder,
    build_org,
    deploy_security_side,
    detector_id,
    drift,
    onboard,
    one_configured_member,
)

from onboarding.audit.audit import AccountAudit, Auditor, AuditReport, Cell
from onboarding.audit.hub import HubRegion
from onboarding.cli import audit_cli, cli
from onboarding.events import OnboardingRequest, parse_input
from onboarding.queue.workqueue import WorkQueue
from onboarding.sessions import SessionFactory

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "audit-report.schema.json").read_text())
REGIONS = "us-east-1,eu-west-1"
DRIFTED = ["suspended", "no-role", "elsewhere", "pattern"]


@pytest.fixture
def env(aws, monkeypatch):
    """Configuration only: for what is refused before the organization is read."""
    monkeypatch.setenv("SECURITY_ACCOUNT_ID", "222222222222")
    monkeypatch.setenv("MANAGEMENT_ACCOUNT_ID", "123456789012")
    monkeypatch.setenv("HUB_REGIONS", REGIONS)


@pytest.fixture
def small_org(aws, monkeypatch):
    """One configured member, the Security side deployed; nothing else onboarded."""
    return one_configured_member(monkeypatch, "us-east-1,eu-west-1,ap-east-1")


@pytest.fixture
def org(aws, monkeypatch):
    org = build_org(["configured", *DRIFTED, "missing"])
    deploy_security_side(org)
    onboard(org, org.management, org.security, org.accounts["configured"])
    onboard(org, *(org.accounts[label] for label in DRIFTED))
    for label in DRIFTED:
        drift(org, label)
    monkeypatch.setenv("SECURITY_ACCOUNT_ID", org.security)
    monkeypatch.setenv("MANAGEMENT_ACCOUNT_ID", org.management)
    monkeypatch.setenv("HUB_REGIONS", "us-east-1,eu-west-1,ap-east-1")
    monkeypatch.delenv("WORK_QUEUE_URL", raising=False)
    return org


def test_audit_writes_a_json_report_that_follows_the_schema(org, tmp_path, capsys):
    out = tmp_path / "audit.json"

    code = cli.main(["audit", "--json", str(out), "--html", str(tmp_path / "audit.html")])

    assert code == 1
    document = json.loads(out.read_text())
    jsonschema.validate(document, SCHEMA)
    assert document["schema_version"] == 1
    assert document["organization_id"] == org.id
    states = {a["account_id"]: a["state"] for a in document["accounts"]}
    assert states[org.accounts["configured"]] == "skipped"  # ap-east-1 is not enabled
    assert states[org.accounts["missing"]] == "missing"
    assert states[org.accounts["suspended"]] == "drift"
    suspended = next(
        a for a in document["accounts"] if a["account_id"] == org.accounts["suspended"]
    )
    cell = suspended["regions"]["eu-west-1"]
    assert cell["findings"][0]["kind"] == "detector-suspended"
    assert suspended["regions"]["us-east-1"] == {
        "state": "ok",
        "guardduty": {
            "mode": "manage",
            "status": "ENABLED",
            "plans_on": [],
            "findings_path": "forwarded by the member's rule",
        },
    }
    assert document["guardduty_administrators"] == {
        "us-east-1": None,
        "eu-west-1": None,
        "ap-east-1": None,
    }
    assert '<table id="matrix">' in (tmp_path / "audit.html").read_text()

    printed = capsys.readouterr().out
    assert f"{org.accounts['missing']}  us-east-1       missing  not onboarded" in printed
    assert "GuardDuty detector suspended" in printed
    assert "GuardDuty findings: us-east-1 forwarded; eu-west-1 forwarded" in printed
    assert "cells: " in printed


def test_json_to_stdout_with_a_dash(small_org, capsys):
    org = small_org
    code = cli.main(["audit", "--accounts", org.accounts["configured"], "--regions", REGIONS])

    assert code == 0
    assert "all ok" in capsys.readouterr().out

    code = cli.main(["audit", "--accounts", org.accounts["configured"], "--json", "-"])
    document = json.loads(capsys.readouterr().out)
    jsonschema.validate(document, SCHEMA)
    assert code == 1
    assert document["totals"] == {"ok": 2, "drift": 0, "missing": 0, "skipped": 1, "error": 0}


def test_fix_onboards_inline_and_a_second_audit_is_all_ok(org, capsys):
    code = cli.main(["audit", "--regions", REGIONS, "--fix"])

    printed = capsys.readouterr().out
    assert code == 1  # what the audit found, before the fix
    handed = 1 + len(DRIFTED)  # "missing" and the drifted ones
    assert f"fix: {handed} account(s) onboarded inline" in printed

    assert cli.main(["audit", "--regions", REGIONS]) == 0
    assert "all ok" in capsys.readouterr().out
    # Read back: the drift is gone.
    gd = org.client("suspended", "guardduty", "eu-west-1")
    assert gd.get_detector(DetectorId=detector_id(org, "suspended", "eu-west-1"))["Status"] == (
        "ENABLED"
    )
    assert org.client("no-role", "iam").get_role(RoleName="watershed-forwarder")
    assert org.client("missing", "events", "eu-west-1").describe_rule(Name="watershed-forward")


def test_fix_with_a_work_queue_sends_one_manual_request_per_account(org, capsys, monkeypatch):
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="watershed-work")["QueueUrl"]
    monkeypatch.setenv("WORK_QUEUE_URL", queue_url)

    code = cli.main(["audit", "--regions", REGIONS, "--fix", "--json", "-"])

    document = json.loads(capsys.readouterr().out)
    assert code == 1
    assert document["fix"]["mode"] == "queue"
    bodies = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    by_account = {b["accounts"][0]: b for b in bodies}
    assert by_account[org.accounts["suspended"]] == {
        "accounts": [org.accounts["suspended"]],
        "regions": ["eu-west-1"],
        "reason": "audit-fix",
        "attempt": 1,
    }
    assert by_account[org.accounts["missing"]]["regions"] == ["us-east-1", "eu-west-1"]
    assert org.accounts["configured"] not in by_account
    assert len(bodies) == len(document["fix"]["requests"]) == 1 + len(DRIFTED)
    # The onboarding function accepts them as they are ...
    settings = org.settings
    assert parse_input(bodies[0], settings) == [
        OnboardingRequest(bodies[0]["accounts"][0], tuple(bodies[0]["regions"]), "audit-fix")
    ]
    # ... and nothing was changed by the audit itself.
    gd = org.client("suspended", "guardduty", "eu-west-1")
    assert gd.get_detector(DetectorId=detector_id(org, "suspended", "eu-west-1"))["Status"] == (
        "DISABLED"
    )


def test_fix_reports_the_accounts_the_work_queue_refused(org, capsys, monkeypatch):
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="watershed-work")["QueueUrl"]
    monkeypatch.setenv("WORK_QUEUE_URL", queue_url)
    refused = org.accounts["missing"]

    class Refusing:
        """Stands in for SQS refusing one entry of each SendMessageBatch (moto never does)."""

        def send_message_batch(self, QueueUrl, Entries):
            mine = [e for e in Entries if refused in e["MessageBody"]]
            rest = [e for e in Entries if e not in mine]
            response = sqs.send_message_batch(QueueUrl=QueueUrl, Entries=rest) if rest else {}
            failed = [{"Id": e["Id"], "Code": "Throttled", "SenderFault": False} for e in mine]
            return {**response, "Failed": failed}

    monkeypatch.setattr(
        audit_cli, "work_queue_for", lambda onboarder, url: WorkQueue(Refusing(), url)
    )

    code = cli.main(["audit", "--regions", REGIONS, "--fix", "--json", "-"])

    document = json.loads(capsys.readouterr().out)
    assert code == 1
    assert document["fix"]["failed"] == [
        {"account_id": refused, "detail": "1 message(s) not sent: Throttled"}
    ]
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    queued = {json.loads(m["Body"])["accounts"][0] for m in messages}
    assert queued == {org.accounts[label] for label in DRIFTED}


def test_progress_line_on_a_terminal_only(small_org, capsys, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)

    cli.main(["audit", "--regions", REGIONS])

    assert "\raudit: " in terminal.getvalue()
    assert " accounts, " in terminal.getvalue()
    assert terminal.getvalue().endswith("\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "--accounts", "1234"], "'1234' is not 12 digits"),
        (["audit", "--regions", "eu-west-9"], "'eu-west-9'"),
        (["audit", "--account-workers", "0"], "--account-workers 0"),
    ],
)
def test_bad_arguments_exit_2_naming_the_value(env, capsys, argv, message):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_all_and_accounts_are_exclusive(env, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["audit", "--all", "--accounts", "111122223333"])
    assert exit_.value.code == 2


def test_an_unreachable_management_account_exits_3(env, capsys, monkeypatch):
    # Stands in for a launcher role that cannot be assumed (moto never refuses AssumeRole).
    monkeypatch.setenv("LAUNCHER_ROLE_ARN", "arn:aws:iam::123456789012:role/launcher")

    def refuse(model, **_):
        if model.name == "AssumeRole":
            from botocore.awsrequest import AWSResponse

            body = {"Error": {"Code": "AccessDenied", "Message": "no"}}
            return AWSResponse("https://injected.invalid", 403, {}, None), body
        return None

    monkeypatch.setattr(
        audit_cli,
        "Auditor",
        lambda settings, account_workers: Auditor(
            settings, SessionFactory(settings, hooks=[("before-call", refuse)]), account_workers
        ),
    )

    assert cli.main(["audit"]) == 3
    assert "assume-launcher: AccessDenied" in capsys.readouterr().err


def test_the_audit_reads_through_the_launcher_and_writes_nothing(small_org):
    org = small_org
    # The usual deployment: credentials of the Security account, chained through a launcher.
    iam = org.client(org.management, "iam")
    iam.create_role(RoleName="launcher", AssumeRolePolicyDocument="{}")
    settings = replace(
        org.settings, launcher_role_arn=f"arn:aws:iam::{org.management}:role/launcher"
    )
    recorder = CallRecorder()
    factory = SessionFactory(settings, hooks=[("before-parameter-build", recorder)])

    report = Auditor(settings, factory).run(regions=["eu-west-1"])

    assert recorder.writes == []
    assert {a.account_id: a.state for a in report.accounts}[org.accounts["configured"]] == "ok"


def test_a_skipped_region_fails_the_exit_code_unless_allow_skipped(small_org, capsys):
    # Given a configured account whose only other cell is skipped (ap-east-1 is not enabled)
    account = small_org.accounts["configured"]

    default = cli.main(["audit", "--accounts", account])
    allowed = cli.main(["audit", "--accounts", account, "--allow-skipped"])

    printed = capsys.readouterr().out
    assert default == 1  # the default: skipped is not coverage
    assert allowed == 0
    assert "ap-east-1       skipped  region not enabled" in printed  # still reported


def test_allow_skipped_still_fails_on_drift_and_missing(org, tmp_path, capsys):
    out = tmp_path / "audit.json"

    code = cli.main(["audit", "--allow-skipped", "--json", str(out)])

    totals = json.loads(out.read_text())["totals"]
    assert totals["skipped"] and totals["drift"] and totals["missing"]
    assert code == 1


@pytest.mark.parametrize("state", ["drift", "missing", "error"])
def test_allow_skipped_lets_only_skipped_cells_pass(state):
    def report(*states):
        cells = {f"r{i}": Cell(s, detail="why") for i, s in enumerate(states)}
        return AuditReport(
            generated_at=datetime.now(UTC),
            regions=tuple(cells),
            accounts=(AccountAudit("333333333333", "", cells),),
            security=(HubRegion("r0", "ok"),),
            management_account_id="111111111111",
            security_account_id="222222222222",
        )

    assert report("ok", "skipped").passes(allow_skipped=True)
    assert not report("ok", "skipped").passes()
    assert not report("skipped", state).passes(allow_skipped=True)
