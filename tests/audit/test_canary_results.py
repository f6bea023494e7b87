"""`watershed audit --canary-results FILE`: the last canary result next to the configuration.

The file is what `watershed canary --json` prints (CanaryReport.as_dict,
onboarding/canary/canary.py), built here from real CanaryResult values rather than written by
hand."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from auditzoo import one_configured_member

from onboarding.canary.canary import CanaryReport, CanaryResult
from onboarding.cli import cli

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "audit-report.schema.json").read_text())
REGIONS = "us-east-1,eu-west-1"


@pytest.fixture
def small_org(aws, monkeypatch):
    return one_configured_member(monkeypatch, REGIONS)


def canary_file(tmp_path, account: str) -> Path:
    called = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    report = CanaryReport(
        called,
        "arn:aws:kinesis:us-east-1:222222222222:stream/watershed",
        "Recon:EC2/PortProbeUnprotectedPort",
        600,
        (
            CanaryResult(
                account,
                "us-east-1",
                "arrived",
                called_at=called,
                arrived_at=called + timedelta(seconds=212.4),
                shard_id="shardId-000000000001",
                sequence_number="4965",
            ),
            CanaryResult(
                account,
                "eu-west-1",
                "missing",
                reason="no sample finding reached the stream within 600 s",
                called_at=called,
            ),
        ),
    )
    path = tmp_path / "canary.json"
    path.write_text(json.dumps(report.as_dict()))
    return path


def audit(account: str, out: Path, html: Path, *extra: str) -> int:
    argv = ["audit", "--accounts", account, "--regions", REGIONS, "--json", str(out)]
    return cli.main([*argv, "--html", str(html), *extra])


def test_the_canary_results_appear_in_the_json_and_next_to_the_matrix(small_org, tmp_path):
    account = small_org.accounts["configured"]
    source = canary_file(tmp_path, account)
    out, html = tmp_path / "audit.json", tmp_path / "audit.html"

    audit(account, out, html, "--canary-results", str(source))

    document = json.loads(out.read_text())
    jsonschema.validate(document, SCHEMA)
    results = {r["region"]: r for r in document["canary"]["results"]}
    assert results["us-east-1"]["latency_seconds"] == 212.4
    assert results["eu-west-1"]["status"] == "missing"
    assert document["canary"]["source"] == str(source)
    page = html.read_text()
    table = page[
        page.index('<table id="canary">') : page.index(
            "</table>", page.index('<table id="canary">')
        )
    ]
    assert account in table
    assert '<td class="c k-arrived" title="212.4 s">212.4 s</td>' in table
    assert 'title="no sample finding reached the stream within 600 s">missing</td>' in table


def test_without_canary_results_there_is_no_canary_section(small_org, tmp_path):
    account = small_org.accounts["configured"]
    out, html = tmp_path / "audit.json", tmp_path / "audit.html"
    audit(account, out, html)
    assert "canary" not in json.loads(out.read_text())
    assert 'id="canary"' not in html.read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"kind": "something-else", "results": []}', "not a `watershed canary --json` report"),
        (
            '{"kind": "watershed-canary", "results": [{"account_id": "1", "region": "us-east-1", '
            '"status": "arrived"}]}',
            "account_id '1' is not 12 digits",
        ),
        (
            '{"kind": "watershed-canary", "results": [{"account_id": "123456789012", '
            '"region": "us-east-1", "status": "late"}]}',
            "status 'late' unknown",
        ),
    ],
)
def test_a_bad_canary_file_is_refused_before_the_audit_runs(
    env_only, tmp_path, capsys, content, message
):
    path = tmp_path / "canary.json"
    path.write_text(content)
    assert cli.main(["audit", "--canary-results", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_canary_file_is_named(env_only, tmp_path, capsys):
    assert cli.main(["audit", "--canary-results", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err


@pytest.fixture
def env_only(aws, monkeypatch):
    monkeypatch.setenv("SECURITY_ACCOUNT_ID", "222222222222")
    monkeypatch.setenv("MANAGEMENT_ACCOUNT_ID", "123456789012")
    monkeypatch.setenv("HUB_REGIONS", REGIONS)
