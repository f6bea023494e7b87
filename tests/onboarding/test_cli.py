"""The `watershed` command line against moto: table, --json, plan, exit codes."""

import json
import subprocess
import sys

import pytest

from onboarding.cli import cli
from onboarding.service import Onboarder
from onboarding.sessions import SessionFactory


def test_onboard_prints_a_per_region_table(org, org_env, capsys, reader):
    org_env(HUB_REGIONS="us-east-1,eu-west-1,ap-east-1")

    code = cli.main(["onboard", org.member])

    out = capsys.readouterr().out
    assert code == 0
    assert f"account {org.member}: ok" in out
    assert "create forwarder-role: watershed-forwarder" in out
    assert "region not enabled (not-opted-in)" in out
    assert reader.detector(org.member, "eu-west-1")["Status"] == "ENABLED"

    assert cli.main(["onboard", org.member]) == 0
    assert "up to date" in capsys.readouterr().out


def test_plan_json_shows_changes_and_writes_nothing(org, org_env, capsys, reader):
    org_env()

    code = cli.main(["plan", org.member, "--regions", "eu-west-1", "--json"])

    report = json.loads(capsys.readouterr().out)
    assert code == 0
    [account] = report["accounts"]
    assert list(account["regions"]) == ["eu-west-1"]
    assert "create detector" in account["regions"]["eu-west-1"]["changes"][0]
    assert reader.role(org.member) is None
    assert reader.detector(org.member, "eu-west-1") is None


def test_flags_override_the_environment(org, org_env, capsys, reader):
    org_env(HUB_REGIONS="us-east-1")

    code = cli.main(["onboard", org.member, "--hub-regions", "eu-central-1", "--dry-run", "--json"])

    assert code == 0
    assert list(json.loads(capsys.readouterr().out)["accounts"][0]["regions"]) == ["eu-central-1"]
    assert reader.role(org.member) is None


def test_exit_code_is_non_zero_when_a_region_failed(org, org_env, capsys, faults, monkeypatch):
    org_env()
    faults.add("ListDetectors", "SubscriptionRequiredException", "not yet", region="eu-west-1")
    monkeypatch.setattr(
        cli,
        "Onboarder",
        lambda settings: Onboarder(
            settings, SessionFactory(settings, hooks=[("before-call", faults)])
        ),
    )

    code = cli.main(["onboard", org.member])

    out = capsys.readouterr().out
    assert code == 1
    assert "SubscriptionRequiredException (retryable)" in out
    assert f"account {org.member}: partial" in out


def test_a_refused_account_exits_non_zero(org, org_env, capsys):
    org_env()

    assert cli.main(["onboard", "999988887777"]) == 1
    assert "refused — not a member of this organization" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["onboard", "1234"], "'1234' is not 12 digits"),
        (["onboard", "111122223333", "--regions", "eu-west-9"], "'eu-west-9'"),
        (["plan", "111122223333", "--workers", "0"], "REGION_WORKERS"),
    ],
)
def test_bad_arguments_exit_2_naming_the_value(org_env, org, capsys, argv, message):
    org_env()

    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_configuration_names_the_variable(monkeypatch, capsys):
    for name in ("SECURITY_ACCOUNT_ID", "MANAGEMENT_ACCOUNT_ID", "HUB_REGIONS"):
        monkeypatch.delenv(name, raising=False)

    assert cli.main(["plan", "111122223333"]) == 2
    assert "SECURITY_ACCOUNT_ID" in capsys.readouterr().err


def test_python_dash_m_onboarding_is_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "onboarding", "--help"], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0
    assert "onboard" in result.stdout
    assert "plan" in result.stdout


@pytest.fixture
def moto_server(monkeypatch):
    """A moto server on a free local port, reached only through AWS_ENDPOINT_URL."""
    from moto.server import ThreadedMotoServer

    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    yield
    server.stop()


def test_the_cli_honours_aws_endpoint_url(moto_server, monkeypatch, capsys):
    import boto3

    orgs = boto3.client("organizations", region_name="us-east-1")
    orgs.create_organization(FeatureSet="ALL")
    management = orgs.describe_organization()["Organization"]["MasterAccountId"]
    security, member = (
        orgs.create_account(Email=f"{n}@example.com", AccountName=n)["CreateAccountStatus"][
            "AccountId"
        ]
        for n in ("security", "member")
    )
    monkeypatch.setenv("SECURITY_ACCOUNT_ID", security)
    monkeypatch.setenv("MANAGEMENT_ACCOUNT_ID", management)
    monkeypatch.setenv("HUB_REGIONS", "us-east-1,eu-west-1")

    assert cli.main(["onboard", member, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["accounts"][0]
    assert first["status"] == "ok"
    assert first["regions"]["eu-west-1"]["changes"]

    assert cli.main(["plan", member, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["accounts"][0]
    assert all(r["changes"] == [] for r in again["regions"].values())
