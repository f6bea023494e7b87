"""`watershed audit --via-queue` against moto: the CLI fans the audit out, the deployed function
(here: the Lambda handler run on the SQS batch, as the event source mapping would) audits each
account and assembles the report in the bucket, and the CLI downloads it. The CLI's wait is
patched to process the queue instead of sleeping: that stands in for the function running while
the operator waits."""

import json

import boto3
import pytest
from auditzoo import build_org, deploy_security_side, onboard
from test_fanout import as_records, receive_all

from onboarding import handler
from onboarding.cli import audit_cli, cli

BUCKET = "watershed-audit-cli"


@pytest.fixture
def deployed(aws, monkeypatch):
    org = build_org(["configured", "missing"])
    deploy_security_side(org)
    onboard(org, org.management, org.security, org.accounts["configured"])
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    sqs = boto3.client("sqs", region_name="us-east-1")
    work = sqs.create_queue(QueueName="watershed-work")["QueueUrl"]
    audit = sqs.create_queue(QueueName="watershed-audit")["QueueUrl"]  # the template's AuditQueue
    for name, value in {
        "SECURITY_ACCOUNT_ID": org.security,
        "MANAGEMENT_ACCOUNT_ID": org.management,
        "HUB_REGIONS": "us-east-1,eu-west-1,ap-east-1",  # as onboarded; ap-east-1 not enabled
        "AWS_REGION": "us-east-1",
        "WORK_QUEUE_URL": work,
        "AUDIT_QUEUE_URL": audit,
        "AUDIT_BUCKET": BUCKET,
    }.items():
        monkeypatch.setenv(name, value)
    handler.onboarder.cache_clear()
    handler.fanout.cache_clear()
    yield org, s3, sqs, work, audit
    handler.onboarder.cache_clear()
    handler.fanout.cache_clear()


class Context:
    function_name = "watershed-onboarding"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:watershed-onboarding"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"

    def get_remaining_time_in_millis(self):
        return 280_000


def test_via_queue_audits_every_account_through_the_function_and_downloads_the_report(
    deployed, monkeypatch, tmp_path, capsys
):
    org, s3, sqs, work, audit = deployed
    batches = []

    def function_runs(_seconds):  # the AuditWork mapping hands batches of 5 to the function
        messages = receive_all(sqs, audit)
        for start in range(0, len(messages), 5):
            event = {"Records": as_records(messages[start : start + 5], audit)}
            batches.append(handler.lambda_handler(event, Context()))

    monkeypatch.setattr(audit_cli.time, "sleep", function_runs)
    out = tmp_path / "audit.json"

    code = cli.main(
        ["audit", "--via-queue", "--json", str(out), "--html", str(tmp_path / "a.html")]
    )

    assert code == 1  # "missing" is not onboarded
    document = json.loads(out.read_text())
    states = {a["account_id"]: a["state"] for a in document["accounts"]}
    assert states == {  # "skipped": ap-east-1 is not enabled in any account
        org.management: "skipped",
        org.security: "skipped",
        org.accounts["configured"]: "skipped",
        org.accounts["missing"]: "missing",
    }
    assert all(b["batchItemFailures"] == [] for b in batches)
    assert receive_all(sqs, work) == []  # nothing of the audit waited on the work queue
    # The report the CLI printed is the one the function assembled in the bucket
    [report_key] = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="audits/")["Contents"]
        if o["Key"].endswith("report.json")
    ]
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=report_key)["Body"].read())
    assert stored["accounts"] == document["accounts"]
    assert org.accounts["missing"] in (tmp_path / "a.html").read_text()


def test_via_queue_refuses_what_it_cannot_do_before_any_message(deployed, capsys):
    org, s3, sqs, work, audit = deployed
    assert cli.main(["audit", "--via-queue", "--fix"]) == 2
    assert "cannot --fix" in capsys.readouterr().err
    assert cli.main(["audit", "--via-queue", "--accounts", org.accounts["configured"]]) == 2
    assert receive_all(sqs, work) == receive_all(sqs, audit) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_the_schedule_input_starts_a_run_through_the_handler(deployed):
    org, s3, sqs, work, audit = deployed

    started = handler.lambda_handler({"audit": "start"}, Context())

    assert started["expected"] == 4
    assert receive_all(sqs, work) == []  # the audit's messages go on the audit queue
    bodies = [json.loads(m["Body"]) for m in receive_all(sqs, audit)]
    assert sorted(b["audit"]["account"] for b in bodies) == sorted(
        [org.management, org.security, *org.accounts.values()]
    )
    manifest = f"audits/{started['audit_run']}/manifest.json"
    assert s3.get_object(Bucket=BUCKET, Key=manifest)


def test_the_function_audits_with_its_own_onboarder(deployed):
    """One Onboarder per Lambda process: the fanned-out audit shares its GuardDuty
    administrators cache and its warm heap (onboarding/heap.py) instead of building another."""
    assert handler.fanout().auditor.onboarder is handler.onboarder()
