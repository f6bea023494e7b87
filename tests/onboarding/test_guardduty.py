"""GuardDuty as organizations run it: owners' plans survive, the delegated administrator is
respected, GUARDDUTY=observe|off write (or call) nothing, and no finding is delivered twice.

moto keeps GuardDuty's delegated administrator per region (EnableOrganizationAdminAccount /
ListOrganizationAdminAccounts, management side), but never relates a member to it:
sandbox.guardduty_org.administrator_relationships stands in for auto-enable (members answer
GetAdministratorAccount with the administrator). moto's UpdateDetector replaces the whole feature
list; tests/onboarding/conftest.py makes it update only the named features, as AWS does.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import boto3
import botocore.session
import pytest
from moto.events.models import EventPattern

from onboarding.audit import audit_fix
from onboarding.audit.audit import Auditor
from onboarding.events import AllAccountsRequest, OnboardingRequest
from onboarding.report import Report, render_table
from onboarding.resources.forwarding import pattern_without_guardduty_findings
from onboarding.service import PATH_FORWARDED, PATH_NATIVE, Onboarder
from onboarding.sessions import SessionFactory
from onboarding.settings import DEFAULT_FORWARD_EVENT_PATTERN
from sandbox.guardduty_org import administrator_relationships

MODEL_PLANS = (
    botocore.session.get_session().get_service_model("guardduty").shape_for("DetectorFeature").enum
)
OWNER_PLANS = [
    {"Name": "S3_DATA_EVENTS", "Status": "ENABLED"},
    {"Name": "EBS_MALWARE_PROTECTION", "Status": "ENABLED"},
    {"Name": "RUNTIME_MONITORING", "Status": "ENABLED"},
]


def _plans(detector: dict) -> dict[str, str]:
    return {f["Name"]: f["Status"] for f in detector.get("Features", [])}


def _owner_detector(reader, account: str, region: str, frequency: str = "SIX_HOURS") -> None:
    reader.client(account, "guardduty", region).create_detector(
        Enable=True, FindingPublishingFrequency=frequency, Features=OWNER_PLANS
    )


class ServiceCalls:
    """A before-parameter-build hook: (service, operation, region, params) of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, model, params, context, **_):
        with self.lock:
            self.calls.append(
                (model.service_model.service_name, model.name, context["client_region"], params)
            )

    def of(self, service: str) -> list[str]:
        return [op for svc, op, _, _ in self.calls if svc == service]


@pytest.fixture
def calls() -> ServiceCalls:
    return ServiceCalls()


@pytest.fixture
def with_calls(calls, faults):
    def make(settings) -> Onboarder:
        hooks = [("before-parameter-build", calls), ("before-call", faults)]
        return Onboarder(settings, SessionFactory(settings, hooks=hooks))

    return make


def _security_buses_accept_the_organization(reader, org, regions) -> None:
    """The bus policy template.yaml gives every Security region (the audit checks that a
    member's target is accepted)."""
    organization_id = boto3.client("organizations").describe_organization()["Organization"]["Id"]
    condition = {"Type": "StringEquals", "Key": "aws:PrincipalOrgID", "Value": organization_id}
    for region in regions:
        reader.client(org.security, "events", region).put_permission(
            Action="events:PutEvents", Principal="*", StatementId="org", Condition=condition
        )


def _designate(org, region: str, admin: str) -> None:
    """The management account designates the GuardDuty delegated administrator of a region."""
    boto3.client("guardduty", region_name=region).enable_organization_admin_account(
        AdminAccountId=admin
    )


# -- never lower protection ---------------------------------------------------------------------


def test_an_owners_plans_survive_onboarding_reconcile_and_audit_fix(
    org, settings, onboarder, reader
):
    # Given a member whose owner enabled S3, EBS malware and Runtime protection everywhere
    # (and the Security buses accept the organization, so the audit judges the member alone)
    _security_buses_accept_the_organization(reader, org, settings.hub_regions)
    for region in settings.hub_regions:
        _owner_detector(reader, org.member, region)

    # When it is onboarded, reconciled, and audited with --fix, all with the default settings
    onboarder.onboard(OnboardingRequest(org.member))
    onboarder.handle([AllAccountsRequest(reason="reconcile")])
    auditor = Auditor(settings, onboarder.sessions)
    report = auditor.run(accounts=[org.member])
    fixed = audit_fix.onboard_inline(onboarder, audit_fix.fix_requests(report))

    # Then every plan is still on, the frequency is the owner's, and the audit saw no drift
    assert {c.state for c in report.accounts[0].regions.values()} == {"ok"}, [
        c.detail for c in report.accounts[0].regions.values()
    ]
    assert fixed.requests == ()
    for region in settings.hub_regions:
        detector = reader.detector(org.member, region)
        assert detector["Status"] == "ENABLED"
        assert detector["FindingPublishingFrequency"] == "SIX_HOURS"
        assert _plans(detector) == {p["Name"]: "ENABLED" for p in OWNER_PLANS}
        cell = report.accounts[0].regions[region]
        assert cell.guardduty["plans_on"] == sorted(p["Name"] for p in OWNER_PLANS)


def test_a_plan_named_disabled_is_switched_off_and_nothing_else(
    org, settings, make_onboarder, reader, recorder
):
    _owner_detector(reader, org.member, "eu-west-1")
    configured = replace(settings, guardduty_features=(("EBS_MALWARE_PROTECTION", "DISABLED"),))

    report = make_onboarder(configured).onboard(OnboardingRequest(org.member, ("eu-west-1",)))

    plans = _plans(reader.detector(org.member, "eu-west-1"))
    assert plans["EBS_MALWARE_PROTECTION"] == "DISABLED"
    assert plans["S3_DATA_EVENTS"] == plans["RUNTIME_MONITORING"] == "ENABLED"
    assert [str(c) for c in report.regions["eu-west-1"].changes if c.resource == "detector"] == [
        "update detector: feature EBS_MALWARE_PROTECTION ENABLED → DISABLED"
    ]
    [params] = [p for op, _, p in recorder.calls if op == "UpdateDetector"]
    assert params["Features"] == [{"Name": "EBS_MALWARE_PROTECTION", "Status": "DISABLED"}]
    assert "FindingPublishingFrequency" not in params  # not configured: not enforced


def test_create_detector_names_every_plan_of_the_installed_sdk(
    org, settings, make_onboarder, recorder, reader
):
    configured = replace(settings, guardduty_features=(("S3_DATA_EVENTS", "ENABLED"),))

    make_onboarder(configured).onboard(OnboardingRequest(org.member, ("eu-west-1",)))

    [params] = [p for op, _, p in recorder.calls if op == "CreateDetector"]
    sent = {f["Name"]: f["Status"] for f in params["Features"]}
    # every DetectorFeature of botocore's model but the documented exception (superseded by
    # RUNTIME_MONITORING, sending both is an error), unnamed ones DISABLED
    assert set(sent) == set(MODEL_PLANS) - {"EKS_RUNTIME_MONITORING"}
    assert {"AI_PROTECTION", "AI_ANALYST", "RUNTIME_MONITORING"} <= set(sent)
    assert sent.pop("S3_DATA_EVENTS") == "ENABLED"
    assert set(sent.values()) == {"DISABLED"}
    assert params["FindingPublishingFrequency"] == "FIFTEEN_MINUTES"  # the creation default
    assert _plans(reader.detector(org.member, "eu-west-1"))["AI_PROTECTION"] == "DISABLED"


# -- the delegated administrator ----------------------------------------------------------------


def test_the_security_account_as_delegated_administrator_keeps_its_settings(
    org, settings, with_calls, calls, reader
):
    # Given the Security account is the GuardDuty delegated administrator in eu-west-1, with
    # its own plans and frequency, and watershed configured to enforce others
    _designate(org, "eu-west-1", org.security)
    _owner_detector(reader, org.security, "eu-west-1", frequency="ONE_HOUR")
    configured = replace(
        settings,
        finding_publishing_frequency="FIFTEEN_MINUTES",
        guardduty_features=(("S3_DATA_EVENTS", "DISABLED"),),
    )

    # When the Security account is onboarded (its own GetAdministratorAccount answers nothing)
    report = with_calls(configured).onboard(OnboardingRequest(org.security, ("eu-west-1",)))

    # Then its detector is untouched and it is reported as the administrator
    detector = reader.detector(org.security, "eu-west-1")
    assert detector["FindingPublishingFrequency"] == "ONE_HOUR"
    assert _plans(detector)["S3_DATA_EVENTS"] == "ENABLED"
    assert "UpdateDetector" not in calls.of("guardduty")
    view = report.regions["eu-west-1"].guardduty
    assert view["administrator"] == org.security
    assert view["notes"] == [
        "GuardDuty delegated administrator: its plans and frequency are left to it"
    ]
    # read from the management side (the launcher, or own credentials without one)
    assert calls.of("guardduty").count("ListOrganizationAdminAccounts") == 1


def test_a_member_of_an_administrator_keeps_its_settings_and_is_reported_as_managed(
    org, settings, with_calls, calls, reader
):
    _designate(org, "eu-west-1", org.other_member)  # another account administers GuardDuty
    _owner_detector(reader, org.member, "eu-west-1")
    configured = replace(
        settings,
        finding_publishing_frequency="FIFTEEN_MINUTES",
        guardduty_features=(("EBS_MALWARE_PROTECTION", "DISABLED"),),
    )

    with administrator_relationships(org.management, [org.member]):
        report = with_calls(configured).onboard(OnboardingRequest(org.member, ("eu-west-1",)))

    detector = reader.detector(org.member, "eu-west-1")
    assert detector["FindingPublishingFrequency"] == "SIX_HOURS"
    assert _plans(detector)["EBS_MALWARE_PROTECTION"] == "ENABLED"
    assert "UpdateDetector" not in calls.of("guardduty")
    result = report.regions["eu-west-1"]
    assert result.status == "ok"
    assert result.guardduty["administrator"] == org.other_member
    assert result.guardduty["notes"] == [
        f"managed by administrator {org.other_member}: plans and frequency left to it"
    ]
    # another account administers it: its findings do not reach the Security bus natively
    assert result.guardduty["findings_path"] == PATH_FORWARDED


def test_the_administrator_is_read_once_per_region_for_many_accounts(
    org, settings, with_calls, calls
):
    onboarder = with_calls(settings)
    for account in (org.member, org.other_member, org.member):
        onboarder.onboard(OnboardingRequest(account))

    reads = [r for svc, op, r, _ in calls.calls if op == "ListOrganizationAdminAccounts"]
    assert sorted(reads) == sorted(settings.hub_regions)


# -- observe and off ----------------------------------------------------------------------------


def test_observe_reads_and_reports_but_never_writes_guardduty(
    org, settings, with_calls, calls, reader
):
    _owner_detector(reader, org.member, "eu-west-1")
    reader.client(org.member, "guardduty", "eu-west-1").update_detector(
        DetectorId=reader.detector(org.member, "eu-west-1")["DetectorId"], Enable=False
    )
    observe = replace(
        settings,
        guardduty_mode="observe",
        guardduty_features=(("S3_DATA_EVENTS", "DISABLED"),),
    )

    report = with_calls(observe).onboard(OnboardingRequest(org.member))

    guardduty_ops = calls.of("guardduty")
    assert guardduty_ops and all(op.startswith(("Get", "List")) for op in guardduty_ops)
    assert reader.detector(org.member, "eu-west-1")["Status"] == "DISABLED"
    for region in ("us-east-1", "eu-central-1"):
        assert reader.detector(org.member, region) is None  # not created
        assert report.regions[region].guardduty["status"] == "missing"
    notes = report.regions["eu-west-1"].guardduty["notes"]
    assert "not written (GUARDDUTY=observe): update detector: enable (was DISABLED)" in notes
    assert any("feature S3_DATA_EVENTS ENABLED → DISABLED" in n for n in notes)
    assert all(c.resource != "detector" for c in report.all_changes)
    assert reader.rule(org.member, "eu-west-1") is not None  # forwarding is still onboarded


def test_off_makes_no_guardduty_call_at_all(org, settings, with_calls, calls, reader):
    off = replace(settings, guardduty_mode="off")

    report = with_calls(off).onboard(OnboardingRequest(org.member))
    plan = with_calls(off).plan(OnboardingRequest(org.member))
    Auditor(off, with_calls(off).sessions).run(accounts=[org.member])

    assert calls.of("guardduty") == []
    assert report.status == "ok" and plan.status == "ok"
    for region in settings.hub_regions:
        assert reader.detector(org.member, region) is None
        assert report.regions[region].guardduty is None
        assert reader.rule(org.member, region) is not None


# -- no duplicates ------------------------------------------------------------------------------


def test_members_of_the_security_account_leave_guardduty_findings_out_there_only(
    org, settings, onboarder, reader, load_finding
):
    # Given the Security account administers GuardDuty in eu-west-1 (auto-enable: every account
    # of the organization is its member there), and no administrator elsewhere
    _designate(org, "eu-west-1", org.security)
    _security_buses_accept_the_organization(reader, org, settings.hub_regions)
    with administrator_relationships(org.management, [org.member, org.management]):
        # the first run creates the detectors (the forwarding step may see them related or not
        # yet: it runs in parallel), the reconcile converges, and a third run writes nothing
        onboarder.onboard(OnboardingRequest(org.member))
        report = onboarder.onboard(OnboardingRequest(org.member))
        again = onboarder.onboard(OnboardingRequest(org.member))
        audit = Auditor(settings, onboarder.sessions).run(accounts=[org.member])

    finding = load_finding(org.member, "eu-west-1")
    api_call = {**finding, "detail-type": "AWS API Call via CloudTrail", "detail": {}}
    # Then in eu-west-1 the member's rule no longer matches a GuardDuty finding, but still
    # takes GuardDuty's other events and everything else
    west = EventPattern.load(reader.rule(org.member, "eu-west-1")["EventPattern"])
    assert not west.matches_event(finding)
    assert west.matches_event({**finding, "detail-type": "GuardDuty Malware Scan Result"})
    assert west.matches_event(api_call)
    assert report.regions["eu-west-1"].guardduty["findings_path"] == PATH_NATIVE
    assert again.all_changes == []
    # and elsewhere every GuardDuty finding is still forwarded
    for region in ("us-east-1", "eu-central-1"):
        rule = EventPattern.load(reader.rule(org.member, region)["EventPattern"])
        assert rule.matches_event({**finding, "region": region})
        assert report.regions[region].guardduty["findings_path"] == PATH_FORWARDED
    # and the audit says which path each region takes, and is content with it
    cells = audit.accounts[0].regions
    assert {r: c.state for r, c in cells.items()} == dict.fromkeys(settings.hub_regions, "ok")
    assert cells["eu-west-1"].guardduty["findings_path"] == PATH_NATIVE
    assert audit.guardduty_administrators == {
        "us-east-1": None,
        "eu-west-1": org.security,
        "eu-central-1": None,
    }


def test_a_member_not_yet_related_to_the_security_administrator_keeps_forwarding(
    org, settings, onboarder, reader, load_finding
):
    # The Security account administers eu-west-1, but this member is not (yet) its member:
    # its findings do not reach the Security bus natively, so they are forwarded (never lost).
    _designate(org, "eu-west-1", org.security)
    with administrator_relationships(org.management, []):
        report = onboarder.onboard(OnboardingRequest(org.member))

    rule = EventPattern.load(reader.rule(org.member, "eu-west-1")["EventPattern"])
    assert rule.matches_event(load_finding(org.member, "eu-west-1"))
    assert report.regions["eu-west-1"].guardduty["findings_path"] == PATH_FORWARDED


@pytest.fixture
def load_finding(event):
    def load(account: str, region: str) -> dict:
        finding = event("guardduty-finding")
        return {**finding, "account": account, "region": region}

    return load


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (DEFAULT_FORWARD_EVENT_PATTERN, None),  # checked below
        # the CloudTrail branch fenced by source prefix aws. (issue 10) is left alone
        (
            {
                "$or": [
                    {"source": ["aws.guardduty", "aws.securityhub"]},
                    {
                        "source": [{"prefix": "aws."}],
                        "detail-type": ["AWS API Call via CloudTrail"],
                    },
                ]
            },
            {
                "$or": [
                    {"source": ["aws.securityhub"]},
                    {
                        "source": ["aws.guardduty"],
                        "detail-type": [{"anything-but": "GuardDuty Finding"}],
                    },
                    {
                        "source": [{"prefix": "aws."}],
                        "detail-type": ["AWS API Call via CloudTrail"],
                    },
                ]
            },
        ),
        (
            {"source": ["aws.guardduty"], "detail-type": ["GuardDuty Finding", "Other"]},
            {"source": ["aws.guardduty"], "detail-type": ["Other"]},
        ),
    ],
)
def test_the_guardduty_branch_is_dropped_from_any_configured_pattern(pattern, expected):
    dropped = pattern_without_guardduty_findings(pattern)
    if expected is not None:
        assert dropped == expected
    assert pattern_without_guardduty_findings(dropped) == dropped  # idempotent
    matcher = EventPattern.load(json.dumps(dropped))
    finding = {"source": "aws.guardduty", "detail-type": "GuardDuty Finding", "detail": {}}
    assert not matcher.matches_event(finding)


# -- as an attacker would try it ----------------------------------------------------------------


def test_a_member_cannot_hide_behind_an_administrator_of_its_own_choosing(
    org, settings, with_calls, calls, faults, reader
):
    # Given the organization's GuardDuty administrator in eu-west-1 is the Security account, and
    # a member owner who accepted a GuardDuty invitation from an account of their own, hoping
    # watershed would then leave the detector (suspended, plans off) to "the administrator".
    # moto has no invitations: GetAdministratorAccount is injected with what AWS would answer.
    _designate(org, "eu-west-1", org.security)
    _owner_detector(reader, org.member, "eu-west-1")
    faults.add(
        "GetAdministratorAccount",
        None,
        region="eu-west-1",
        response={
            "Administrator": {
                "AccountId": "999988887777",
                "InvitationId": "inv-x",
                "RelationshipStatus": "Enabled",
            }
        },
    )
    onboarder = with_calls(settings)

    report = onboarder.onboard(OnboardingRequest(org.member, ("eu-west-1",)))
    audit = Auditor(settings, onboarder.sessions).run(accounts=[org.member], regions=["eu-west-1"])

    # Then watershed does not fight the relationship (no GuardDuty write) and keeps forwarding
    # the member's findings (the Security account does not receive them natively) ...
    assert "UpdateDetector" not in calls.of("guardduty")
    view = report.regions["eu-west-1"].guardduty
    assert view["unexpected_administrator"] is True
    assert view["findings_path"] == PATH_FORWARDED
    # ... but the audit never calls it ok
    cell = audit.accounts[0].regions["eu-west-1"]
    assert cell.state == "drift"
    assert [f.kind for f in cell.findings] == ["detector-administrator"]
    assert "999988887777" in cell.detail


def test_an_unreadable_administrator_means_forward_everything(
    org, settings, onboarder, reader, faults, load_finding
):
    # The launcher lost guardduty:ListOrganizationAdminAccounts (or an SCP denies it): the
    # Security account may well be the administrator, but that is not known, so nothing is
    # left out of the rule - duplicates are possible, losses are not.
    _designate(org, "eu-west-1", org.security)
    faults.add("ListOrganizationAdminAccounts", "AccessDeniedException", "not authorized")
    with administrator_relationships(org.management, [org.member]):
        onboarder.onboard(OnboardingRequest(org.member, ("eu-west-1",)))
        report = onboarder.onboard(OnboardingRequest(org.member, ("eu-west-1",)))

    rule = EventPattern.load(reader.rule(org.member, "eu-west-1")["EventPattern"])
    assert rule.matches_event(load_finding(org.member, "eu-west-1"))
    assert report.regions["eu-west-1"].status == "ok"
    assert report.regions["eu-west-1"].guardduty["findings_path"] == PATH_FORWARDED


def test_the_table_says_which_detectors_an_administrator_manages(org, settings, onboarder, reader):
    _designate(org, "eu-west-1", org.other_member)
    _owner_detector(reader, org.member, "eu-west-1")
    with administrator_relationships(org.management, [org.member]):
        report = onboarder.plan(OnboardingRequest(org.member, ("eu-west-1", "us-east-1")))

    lines = render_table(Report((report,)), plan=True).splitlines()
    [west] = [line for line in lines if line.strip().startswith("eu-west-1")]
    [east] = [line for line in lines if line.strip().startswith("us-east-1")]
    assert west.endswith(f"(GuardDuty managed by administrator {org.other_member})")
    assert "administrator" not in east


def test_guardduty_denied_in_a_member_region_never_stops_its_forwarding(
    org, settings, onboarder, reader, faults, load_finding
):
    # The Security account administers eu-west-1, and an SCP denies GuardDuty in the member
    # there: the GuardDuty step is skipped with its reason, and forwarding (whose decision
    # needs the member's GuardDuty administrator) still happens, with every finding.
    _designate(org, "eu-west-1", org.security)
    for operation in ("ListDetectors", "GetAdministratorAccount"):
        faults.add(
            operation,
            "AccessDeniedException",
            "not authorized to perform: guardduty:ListDetectors with an explicit deny in a "
            "service control policy",
            region="eu-west-1",
        )

    report = onboarder.onboard(OnboardingRequest(org.member, ("eu-west-1",)))

    result = report.regions["eu-west-1"]
    assert result.status == "skipped", result
    assert "service control policy" in result.reason
    rule = EventPattern.load(reader.rule(org.member, "eu-west-1")["EventPattern"])
    assert rule.matches_event(load_finding(org.member, "eu-west-1"))
