"""The audit of an organization with an account in every state (see conftest.build_zoo):
each account x region gets exactly the expected state, drift names what differs, the audit
makes no write call in any account, and the Security side is checked per region."""

import pytest
from auditzoo import DRIFTS, ENABLED, GLOBAL_DRIFTS, HUB_REGIONS, CallRecorder, InjectingFactory

from onboarding.audit.audit import Auditor


@pytest.fixture(scope="module")
def audited(zoo):
    recorder = CallRecorder()
    factory = InjectingFactory(
        zoo.org.settings, zoo.faults, hooks=[("before-parameter-build", recorder)]
    )
    report = Auditor(zoo.org.settings, factory).run()
    return report, recorder


def cell(report, account, region):
    [audit] = [a for a in report.accounts if a.account_id == account]
    return audit.regions[region]


def test_every_account_and_region_has_exactly_the_expected_state(zoo, audited):
    report, _ = audited

    got = {a.account_id: {r: c.state for r, c in a.regions.items()} for a in report.accounts}

    assert got == zoo.expected
    assert [a.account_id for a in report.accounts] == sorted(zoo.expected)  # every ACTIVE one
    assert not report.ok


@pytest.mark.parametrize("label", DRIFTS)
def test_drift_names_what_differs(zoo, audited, label):
    report, _ = audited
    account = zoo.org.accounts[label]

    drifted = cell(report, account, "eu-west-1")

    assert drifted.state == "drift"
    kinds = [f.kind for f in drifted.findings]
    assert kinds[0] == DRIFTS[label]  # global (role) findings come first, then the region's
    assert all(f.is_global == (label in GLOBAL_DRIFTS) for f in drifted.findings)
    assert drifted.detail


@pytest.mark.parametrize("label", sorted(GLOBAL_DRIFTS))
def test_forwarder_role_problems_make_every_enabled_region_drift_and_say_so(zoo, audited, label):
    report, _ = audited
    account = zoo.org.accounts[label]

    for region in ENABLED:
        drifted = cell(report, account, region)
        assert drifted.state == "drift"
        assert DRIFTS[label] in {f.kind for f in drifted.findings if f.is_global}
        assert "global" in drifted.detail
    [audit] = [a for a in report.accounts if a.account_id == account]
    assert DRIFTS[label] in {f.kind for f in audit.findings}


def test_a_never_onboarded_account_is_missing_not_drifted(zoo, audited):
    report, _ = audited

    missing = cell(report, zoo.org.accounts["missing"], "us-east-1")

    assert missing.state == "missing"
    assert {f.kind for f in missing.findings} >= {"rule-missing", "target-missing", "role-missing"}
    assert missing.detail.startswith("not onboarded:")


def test_skipped_cells_say_why(zoo, audited):
    report, _ = audited

    not_enabled = cell(report, zoo.org.accounts["configured"], "ap-east-1")
    denied = cell(report, zoo.org.accounts["scp"], "eu-west-1")

    assert (not_enabled.state, not_enabled.detail) == (
        "skipped",
        "region not enabled (not-opted-in)",
    )
    assert denied.state == "skipped"
    assert "service control policy" in denied.detail
    assert cell(report, zoo.org.accounts["scp"], "us-east-1").state == "ok"


def test_error_cells_carry_the_code(zoo, audited):
    report, _ = audited

    denied = cell(report, zoo.org.accounts["denied"], "eu-west-1")
    locked = [cell(report, zoo.org.accounts["locked"], r) for r in HUB_REGIONS]

    assert (denied.state, denied.error) == ("error", "AccessDeniedException")
    assert {(c.state, c.error) for c in locked} == {("error", "AccessDenied")}
    assert locked[0].detail.startswith("assume-role")


def test_the_audit_makes_no_write_call_in_any_account(zoo, audited):
    _, recorder = audited

    assert recorder.writes == []
    # It did look: membership, IAM, regions, GuardDuty, EventBridge, Kinesis (Security side).
    assert {
        "ListAccounts",
        "DescribeAccount",  # the organization id, from the management account ARN
        "AssumeRole",
        "GetRole",
        "GetRolePolicy",
        "DescribeRegions",
        "ListDetectors",
        "GetDetector",
        "DescribeRule",
        "ListTargetsByRule",
        "DescribeEventBus",
        "DescribeStreamSummary",
    } <= recorder.operations
    # ... and the drift it found is still there.
    gd = zoo.org.client("suspended", "guardduty", "eu-west-1")
    detector = gd.get_detector(DetectorId=gd.list_detectors()["DetectorIds"][0])
    assert detector["Status"] == "DISABLED"


def test_the_security_side_is_checked_in_every_region(zoo, audited):
    report, _ = audited

    assert [h.region for h in report.security] == list(HUB_REGIONS)
    assert {h.state for h in report.security} == {"ok"}
    checks = report.security[0].checks
    assert set(checks) == {"bus_policy", "collect_rule", "collect_stream", "bus_policy_foreign"}
    assert zoo.org.id in checks["bus_policy"].detail


def test_totals_count_every_cell(zoo, audited):
    report, _ = audited

    expected = {}
    for regions in zoo.expected.values():
        for state in regions.values():
            expected[state] = expected.get(state, 0) + 1

    assert {s: n for s, n in report.totals.items() if n} == expected
    assert sum(report.totals.values()) == len(zoo.expected) * len(HUB_REGIONS)


def test_named_accounts_are_audited_alone_with_their_names(zoo, audited):
    factory = InjectingFactory(zoo.org.settings, zoo.faults)
    configured = zoo.org.accounts["configured"]

    report = Auditor(zoo.org.settings, factory).run([configured, "999988887777"], ["eu-west-1"])

    assert [(a.account_id, a.name, a.state) for a in report.accounts] == [
        (configured, "configured", "ok"),
        ("999988887777", "", "skipped"),
    ]
    assert report.accounts[1].regions["eu-west-1"].detail == "not a member of this organization"
