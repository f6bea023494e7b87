"""Skipped vs failed regions, races and denials. moto produces none of these by itself, so
each test injects the AWS error response (see FaultInjector) and says what it stands in for."""

import threading
from dataclasses import replace

import pytest

from onboarding.events import OnboardingRequest
from onboarding.service import Onboarder
from onboarding.sessions import SessionFactory

SCP_MESSAGE = (
    "User: arn:aws:sts::{account}:assumed-role/OrganizationAccountAccessRole/watershed is not "
    "authorized to perform: {action} with an explicit deny in a service control policy"
)
REGION_OPS = {
    "guardduty": ("ListDetectors", "CreateDetector", "GetDetector", "UpdateDetector"),
    "events": ("DescribeRule", "PutRule", "ListTargetsByRule", "PutTargets"),
}


def _configured(reader, account, region):
    detector = reader.detector(account, region)
    return bool(detector and detector["Status"] == "ENABLED" and reader.targets(account, region))


def test_a_region_the_member_has_not_enabled_is_skipped(org, settings, make_onboarder, reader):
    # ap-east-1 is an opt-in region; moto's DescribeRegions reports it "not-opted-in".
    hub = replace(settings, hub_regions=("eu-west-1", "ap-east-1"))
    report = make_onboarder(hub).onboard(OnboardingRequest(org.member))

    assert report.status == "ok"
    skipped = report.regions["ap-east-1"]
    assert skipped.status == "skipped"
    assert skipped.reason == "region not enabled (not-opted-in)"
    assert reader.detector(org.member, "ap-east-1") is None
    assert reader.rule(org.member, "ap-east-1") is None
    assert _configured(reader, org.member, "eu-west-1")


def test_a_region_denied_by_an_scp_is_skipped_and_the_others_configured(
    org, onboarder, faults, reader
):
    # Stands in for Control Tower's region-deny SCP on eu-central-1.
    for service, operations in REGION_OPS.items():
        for op in operations:
            message = SCP_MESSAGE.format(account=org.member, action=f"{service}:{op}")
            faults.add(op, "AccessDeniedException", message, region="eu-central-1")

    report = onboarder.onboard(OnboardingRequest(org.member))

    assert report.status == "ok"
    denied = report.regions["eu-central-1"]
    assert denied.status == "skipped"
    assert "service control policy" in denied.reason
    assert reader.detector(org.member, "eu-central-1") is None
    assert _configured(reader, org.member, "us-east-1")
    assert _configured(reader, org.member, "eu-west-1")


def test_a_region_not_ready_fails_retryably_without_stopping_the_others(
    org, onboarder, faults, reader
):
    # Stands in for a fresh account whose GuardDuty subscription is not active yet.
    faults.add(
        "ListDetectors", "SubscriptionRequiredException", "not subscribed", region="eu-west-1"
    )

    report = onboarder.onboard(OnboardingRequest(org.member))

    assert report.status == "partial"
    failed = report.regions["eu-west-1"]
    assert (failed.status, failed.error, failed.retryable) == (
        "failed",
        "SubscriptionRequiredException",
        True,
    )
    assert report.retry_regions() == ("eu-west-1",)
    assert report.needs_retry
    assert report.as_dict()["regions"]["eu-west-1"]["retryable"] is True
    # The forwarding step of the same region is independent and went through.
    assert reader.targets(org.member, "eu-west-1")
    assert _configured(reader, org.member, "us-east-1")
    assert _configured(reader, org.member, "eu-central-1")


def test_a_permanent_error_is_reported_as_not_retryable(org, onboarder, faults):
    # Stands in for a permissions boundary on the member's admin role (no SCP involved).
    faults.add("PutRule", "AccessDeniedException", "not authorized", region="us-east-1")

    report = onboarder.onboard(OnboardingRequest(org.member))

    failed = report.regions["us-east-1"]
    assert (failed.status, failed.error, failed.retryable) == (
        "failed",
        "AccessDeniedException",
        False,
    )
    assert report.retry_regions() == ()
    assert report.permanent_failures() == ("us-east-1",)


def test_all_regions_failing_fails_the_account(org, onboarder, faults):
    faults.add("ListDetectors", "SubscriptionRequiredException", "not subscribed")

    report = onboarder.onboard(OnboardingRequest(org.member))

    assert report.status == "failed"
    assert set(report.retry_regions()) == set(report.regions)


def test_put_targets_failed_entries_are_retryable(org, onboarder, faults):
    # PutTargets answers 200 with FailedEntries, e.g. while the new forwarder role propagates.
    faults.add(
        "PutTargets",
        None,
        response={
            "FailedEntryCount": 1,
            "FailedEntries": [
                {
                    "TargetId": "security-bus",
                    "ErrorCode": "ValidationException",
                    "ErrorMessage": "Role cannot be assumed",
                }
            ],
        },
        region="eu-west-1",
    )

    report = onboarder.onboard(OnboardingRequest(org.member))

    assert report.regions["eu-west-1"].status == "failed"
    assert report.regions["eu-west-1"].retryable
    assert report.retry_regions() == ("eu-west-1",)


def test_detector_already_exists_race_ends_with_one_enabled_detector(
    org, onboarder, faults, reader, settings
):
    # moto accepts a second CreateDetector; real GuardDuty rejects it. Inject the rejection,
    # after letting "someone else" (org auto-enable, a parallel run) create one first.
    other = reader.client(org.member, "guardduty", "eu-west-1")

    def someone_else_wins():
        other.create_detector(
            Enable=False, Features=[{"Name": "S3_DATA_EVENTS", "Status": "ENABLED"}]
        )

    faults.add(
        "CreateDetector",
        "BadRequestException",
        "The request is rejected because a detector already exists for the current account.",
        region="eu-west-1",
        times=1,
        before=someone_else_wins,
    )

    report = onboarder.onboard(OnboardingRequest(org.member))

    assert report.regions["eu-west-1"].status == "ok"
    detector = reader.detector(org.member, "eu-west-1")  # asserts there is exactly one
    assert detector["Status"] == "ENABLED"
    # the winner's plan is not named by GUARDDUTY_FEATURES: it stays as the winner set it
    assert dict((f["Name"], f["Status"]) for f in detector["Features"]) == {
        "S3_DATA_EVENTS": "ENABLED"
    }


def test_member_roles_are_tried_in_order(org, settings, make_onboarder, faults, recorder, reader):
    # moto lets anyone assume a missing role: inject the AccessDenied real STS would return.
    faults.add("AssumeRole", "AccessDenied", "not authorized to perform sts:AssumeRole", times=1)
    ct_first = replace(
        settings, member_role_names=("AWSControlTowerExecution", "OrganizationAccountAccessRole")
    )

    report = make_onboarder(ct_first).onboard(OnboardingRequest(org.member))

    assert report.status == "ok"
    assumed = [p["RoleArn"] for op, _, p in recorder.calls if op == "AssumeRole"]
    assert assumed == [
        f"arn:aws:iam::{org.member}:role/AWSControlTowerExecution",
        f"arn:aws:iam::{org.member}:role/OrganizationAccountAccessRole",
    ]
    sessions = {p["RoleSessionName"] for op, _, p in recorder.calls if op == "AssumeRole"}
    assert sessions == {f"watershed-{org.member}"}
    assert _configured(reader, org.member, "us-east-1")


def test_no_assumable_role_fails_the_account_retryably_and_writes_nothing(
    org, onboarder, faults, recorder
):
    # A freshly created account whose admin role is not assumable yet.
    faults.add("AssumeRole", "AccessDenied", "not authorized to perform sts:AssumeRole")

    report = onboarder.onboard(OnboardingRequest(org.member))

    assert (report.status, report.error, report.retryable) == ("failed", "AccessDenied", True)
    assert report.reason.startswith("assume-role")
    assert report.needs_retry
    assert recorder.writes == []


@pytest.mark.parametrize(
    ("operation", "step"), [("DescribeRegions", "regions"), ("GetRole", "iam")]
)
def test_account_level_steps_fail_the_account_with_the_step_named(
    org, onboarder, faults, recorder, operation, step
):
    faults.add(operation, "AccessDenied", "not authorized")

    report = onboarder.onboard(OnboardingRequest(org.member))

    assert report.status == "failed"
    assert report.reason.startswith(step)
    assert report.error == "AccessDenied"
    assert not report.retryable
    assert not any(op in ("CreateDetector", "PutRule") for op, _ in recorder.writes)


def test_a_role_that_cannot_be_written_stops_every_region_write(
    org, onboarder, faults, recorder, reader
):
    # The region steps read their regions while the role is written; none may write once the
    # role has failed (here its policy: e.g. an SCP denying iam:PutRolePolicy).
    faults.add("PutRolePolicy", "AccessDenied", "not authorized")

    report = onboarder.onboard(OnboardingRequest(org.member))

    assert report.status == "failed"
    assert report.reason.startswith("iam")
    assert report.error == "AccessDenied"
    assert {op for op, _ in recorder.writes} == {"CreateRole", "PutRolePolicy"}
    for region in ("us-east-1", "eu-west-1", "eu-central-1"):
        assert reader.detector(org.member, region) is None
        assert reader.rule(org.member, region) is None


def test_region_steps_read_while_the_role_is_written_and_write_only_after_it(org, settings):
    # PutRolePolicy is held on the wire until every region has started its read (at most
    # 10 s: without the overlap they never would): the reads run while the role is written,
    # and the regions' first write comes only once it has returned.
    events: list[tuple[str, str]] = []
    lock = threading.Lock()
    reads = ("ListDetectors", "DescribeRule")
    every_region_reading = threading.Event()

    def started(model, **_):
        with lock:
            events.append(("start", model.name))
            if sum(kind == "start" and op in reads for kind, op in events) == 2 * len(
                settings.hub_regions
            ):
                every_region_reading.set()
        if model.name == "PutRolePolicy":
            every_region_reading.wait(timeout=10)

    def finished(model, **_):
        with lock:
            events.append(("end", model.name))

    hooks = [("before-call", started), ("after-call", finished)]
    report = Onboarder(settings, SessionFactory(settings, hooks=hooks)).onboard(
        OnboardingRequest(org.member)
    )

    assert report.status == "ok"
    role_written = events.index(("end", "PutRolePolicy"))
    region_writes = [
        i
        for i, (kind, op) in enumerate(events)
        if kind == "start" and op in ("CreateDetector", "PutRule", "PutTargets")
    ]
    region_reads = [i for i, (kind, op) in enumerate(events) if kind == "start" and op in reads]
    assert len(region_writes) == 3 * len(settings.hub_regions)
    assert min(region_writes) > role_written
    assert len(region_reads) == 2 * len(settings.hub_regions)
    assert max(region_reads) < role_written


def test_a_bug_in_one_region_does_not_take_the_others_down(org, onboarder, monkeypatch, reader):
    from onboarding.resources import forwarding

    real = forwarding.ensure_forwarding

    def broken(events, settings, account_id, region, *rest):
        if region == "eu-central-1":
            raise KeyError("unexpected shape")
        return real(events, settings, account_id, region, *rest)

    monkeypatch.setattr(forwarding, "ensure_forwarding", broken)

    report = onboarder.onboard(OnboardingRequest(org.member))

    assert report.regions["eu-central-1"].status == "failed"
    assert report.regions["eu-central-1"].error == "KeyError"
    assert _configured(reader, org.member, "us-east-1")
    assert _configured(reader, org.member, "eu-west-1")
