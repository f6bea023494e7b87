"""The demo's canary act: `watershed canary` over every member and hub region, one region broken.

The project's own canary (onboarding/canary/canary.py) runs unchanged: it reaches each member
through the launcher and the member's admin role, reads the member's regions and GuardDuty detector,
calls CreateSampleFindings, and watches the destination stream from a starting point recorded
before the first call. Two things stand in for AWS:

- moto has no CreateSampleFindings. A botocore `before-call` hook answers the call the way
  GuardDuty's effect would be seen from outside: it puts one GuardDuty finding event, shaped as
  a real sample finding (the canary's finding type, the real detector id, and GuardDuty's sample
  marker `detail.service.additionalInfo.sample: true`), on that member's default bus in that
  region - where GuardDuty publishes it. From there the member's watershed-forward rule, the
  Security bus (its policy checked by sandbox.bus_policy), the collect rule, the Kinesis shim
  and the relay carry it like any event.
- Time: the canary "sleeps" between polls; here a sleep drains the pollers (the relay runs) and
  advances a virtual clock by the poll interval, so a missing region times out in no real time.

The broken region is the last hub region. In relay mode its Security bus policy is removed
before the canary (members' forwarded events are then refused, as AWS would refuse them) and put
back exactly as it was afterwards, read back. In direct mode (`--delivery direct`) every member
region targets the home region's bus, so no single region's bus policy carries that region: the
members' `watershed-forward` rule in the broken region is disabled instead (as if by hand) and
enabled again afterwards, read back. The act passes when every other region arrived with a
latency, the broken region is reported as not arrived, and the damage is repaired.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from botocore.awsrequest import AWSResponse

from onboarding.canary.canary import Canary, CanaryReport, CanarySettings
from onboarding.sessions import SessionFactory
from onboarding.settings import Settings
from sandbox import events as shapes
from sandbox.organization import Account

CANARY_TIMEOUT_SECONDS = 120
FORWARD_RULE = "watershed-forward"
POLL_SECONDS = 5.0


@dataclass
class CanaryAct:
    """What the canary act observed."""

    broken_region: str
    how: str = ""  # what was broken, for the output
    report: CanaryReport | None = None
    raised: list[tuple[str, str]] = field(default_factory=list)  # (account, region) stand-ins
    restored: bool = False
    problems: list[str] = field(default_factory=list)
    # what the breakage caused, by design: the refusals the sandbox noticed, and the refused
    # sample findings dead-lettered on a queue of the stacks (taken off it again: queue -> count)
    expected_notices: list[Any] = field(default_factory=list)
    dead_lettered: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.report is not None and not self.problems


class SampleFindingsStandIn:
    """`before-call.guardduty.CreateSampleFindings`: put a sample finding on the member's bus."""

    def __init__(self, story: Any) -> None:
        self.story = story
        self.raised: list[tuple[str, str]] = []
        self.event_ids: dict[str, str] = {}  # event id -> region
        self._lock = threading.Lock()

    def _owner(self, detector_id: str, region: str) -> Account:
        from moto.guardduty.models import guardduty_backends

        for account in self.story._org().accounts:
            backend = guardduty_backends[account.account_id][region]
            if detector_id in getattr(backend, "detectors", {}):
                return account
        raise LookupError(f"no account owns GuardDuty detector {detector_id} in {region}")

    def __call__(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
        region = context["client_region"]
        detector_id = unquote(params["url_path"].split("/")[2])
        body = params.get("body") or b"{}"
        finding_types = json.loads(body if isinstance(body, str) else body.decode())["findingTypes"]
        owner = self._owner(detector_id, region)
        for finding_type in finding_types:
            entry = sample_finding(owner, region, detector_id, finding_type)
            session = self.story.aws.session(owner.account_id, owner.admin_role)
            event_id = self.story._put(session, region, entry, owner=owner)
            with self._lock:
                self.raised.append((owner.account_id, region))
                self.event_ids[event_id] = region
        ok = {"ResponseMetadata": {"HTTPStatusCode": 200}}
        return AWSResponse("https://guardduty.stand-in.invalid", 200, {}, None), ok


def sample_finding(
    account: Account, region: str, detector_id: str, finding_type: str
) -> dict[str, Any]:
    """A PutEvents entry shaped as GuardDuty's event for a sample finding (aws-events.md)."""
    event = shapes.guardduty_finding(account, region, "canary sample finding")
    detail = event.detail
    finding_id = detail["id"]
    detail["type"] = finding_type
    detail["arn"] = (
        f"arn:aws:guardduty:{region}:{account.account_id}:detector/{detector_id}"
        f"/finding/{finding_id}"
    )
    detail["service"]["detectorId"] = detector_id
    detail["service"]["additionalInfo"] = {"sample": True}
    detail["severity"] = 2
    detail["title"] = f"[SAMPLE] {finding_type}"
    detail["description"] = f"Sample finding of type {finding_type} (CreateSampleFindings)."
    return {**event.entry, "Detail": json.dumps(detail)}


class _VirtualClock:
    """Wall-clock time plus what the canary has 'slept' (each sleep drains the pollers)."""

    def __init__(self, drain: Any) -> None:
        self._drain = drain
        self._offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def sleep(self, seconds: float) -> None:
        self._drain()
        self._offset += timedelta(seconds=seconds)


def play(story: Any) -> CanaryAct:
    """Break one region's Security bus policy, run the canary over every member, repair."""
    org = story._org()
    options = story.options
    broken = options.regions[-1]
    act = CanaryAct(broken)
    launcher = next(
        (
            d.outputs["LauncherRoleArn"]
            for d in story.result.deployed
            if "LauncherRoleArn" in d.outputs
        ),
        None,
    )
    settings = Settings(
        security_account_id=org.security.account_id,
        management_account_id=org.management.account_id,
        hub_regions=tuple(options.regions),
        launcher_role_arn=launcher,
        home_region=options.home_region,
    )
    security = story.aws.session(org.security.account_id)
    breakage = (_DisabledRules if options.direct else _RemovedBusPolicy)(story, broken)
    act.how = breakage.how
    noticed_before = len(story.journal.notices())
    problem = breakage.apply()
    if problem:
        act.problems.append(problem)
        return act

    stand_in = SampleFindingsStandIn(story)
    clock = _VirtualClock(story._drain)
    try:
        factory = SessionFactory(
            settings,
            base_session=security,
            hooks=[("before-call.guardduty.CreateSampleFindings", stand_in)],
        )
        canary = Canary(
            settings,
            CanarySettings(stream_arn=story.result.destination_arn),
            factory,
            clock=clock.now,
            sleep=clock.sleep,
            poll_seconds=POLL_SECONDS,
        )
        act.report = canary.run(
            [m.account_id for m in org.members], options.regions, CANARY_TIMEOUT_SECONDS
        )
    finally:
        act.restored = breakage.repair()
    act.raised = list(stand_in.raised)
    broken_ids = {e for e, region in stand_in.event_ids.items() if region == broken}
    act.expected_notices = [
        n
        for n in story.journal.notices()[noticed_before:]
        if any(event_id in n.message for event_id in broken_ids)
    ]
    act.dead_lettered = _take_dead_letters(story, broken_ids)
    act.problems += _problems(act, [m.account_id for m in org.members], options.regions)
    return act


class _RemovedBusPolicy:
    """Relay mode: the broken region's Security bus policy, removed and put back as it was."""

    how = "the Security bus policy removed"

    def __init__(self, story: Any, region: str) -> None:
        security = story.aws.session(story._org().security.account_id)
        self.bus = security.client("events", region_name=region)
        self.region = region
        self.saved: str | None = None

    def apply(self) -> str | None:
        self.saved = self.bus.describe_event_bus(Name="default").get("Policy")
        if not self.saved:
            return f"the Security bus in {self.region} has no policy to break"
        self.bus.remove_permission(EventBusName="default", RemoveAllPermissions=True)
        return None

    def repair(self) -> bool:
        assert self.saved is not None
        self.bus.put_permission(EventBusName="default", Policy=self.saved)
        restored = self.bus.describe_event_bus(Name="default").get("Policy")
        return bool(restored) and json.loads(restored) == json.loads(self.saved)


class _DisabledRules:
    """Direct mode: every member's forwarding rule in the broken region, disabled and enabled."""

    how = "the members' watershed-forward rule disabled"

    def __init__(self, story: Any, region: str) -> None:
        self.clients = [
            story.aws.session(m.account_id, m.admin_role).client("events", region_name=region)
            for m in story._org().members
        ]

    def apply(self) -> str | None:
        for events in self.clients:
            events.disable_rule(Name=FORWARD_RULE)
        return None

    def repair(self) -> bool:
        for events in self.clients:
            events.enable_rule(Name=FORWARD_RULE)
        return all(e.describe_rule(Name=FORWARD_RULE)["State"] == "ENABLED" for e in self.clients)


def _take_dead_letters(story: Any, event_ids: set[str]) -> dict[str, int]:
    """Take the refused sample findings off the stacks' queues (a target DLQ keeps what a bus
    refused): they are the act's expected result, and the queues are read back again later."""
    taken: dict[str, int] = {}
    for stack in story.result.deployed:
        sqs = story.aws.session(stack.account_id).client("sqs", region_name=stack.region)
        for logical_id, url in stack.of_type("AWS::SQS::Queue").items():
            seen: set[str] = set()
            while True:
                messages = sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30
                ).get("Messages", [])
                fresh = [m for m in messages if m["MessageId"] not in seen]
                if not fresh:
                    break
                for message in fresh:
                    seen.add(message["MessageId"])
                    try:
                        event_id = json.loads(message["Body"]).get("id")
                    except (ValueError, AttributeError):
                        event_id = None
                    if event_id in event_ids:
                        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                        taken[logical_id] = taken.get(logical_id, 0) + 1
                    else:  # not ours: back on the queue at once
                        sqs.change_message_visibility(
                            QueueUrl=url,
                            ReceiptHandle=message["ReceiptHandle"],
                            VisibilityTimeout=0,
                        )
    return taken


def _problems(act: CanaryAct, members: list[str], regions: tuple[str, ...]) -> list[str]:
    assert act.report is not None
    by_key = {(r.account_id, r.region): r for r in act.report.results}
    problems = []
    for account in members:
        for region in regions:
            result = by_key.get((account, region))
            expected = "missing" if region == act.broken_region else "arrived"
            if result is None:
                problems.append(f"canary reported nothing for {account} {region}")
            elif result.status != expected:
                why = f" ({result.reason})" if result.reason else ""
                problems.append(
                    f"canary {account} {region}: {result.status}{why}, expected {expected}"
                )
            elif expected == "arrived" and result.latency_seconds is None:
                problems.append(f"canary {account} {region}: arrived without a latency")
    if not act.restored:
        problems.append(f"{act.how} in {act.broken_region}: not repaired")
    return problems
