"""The demo story: an organization on an embedded AWS, onboarded and streaming, end to end.

1. An organization: management, Security and members (the last one vended by Control Tower).
2. management.yaml deployed in the management account (us-east-1 and the Control Tower home
   region); template.yaml translated and deployed in the Security account in every hub region,
   home region first — the project's own templates, with the stand-ins sandbox.stacks lists.
3. Organizations CreateAccountResult (us-east-1) and Control Tower CreateManagedAccount (home
   region) events put on the management account's buses, as AWS emits them → forwarded by
   management.yaml's rules to the Security home bus → trigger rule → work queue → the poller
   invokes the onboarding handler → every member configured in every hub region, read back.
   Every trigger must come out of the function as a per-request outcome (its log's "request
   outcome" lines: done, or a duplicate of one), never ignored, refused or dead-lettered.
4. The daily reconcile: the schedule rule template.yaml declares is fired once (its target's
   Input, `{"accounts": "ALL"}`, invoked as EventBridge Scheduler would) → the function backfills
   one message per ACTIVE account onto the work queue → the poller → every account onboarded,
   the management account like a member and the Security account with GuardDuty only, read back.
5. Events raised in the members → their watershed-forward rule (written by onboarding) → the
   Security bus of the same region → collect rule → Kinesis (the shim) → the poller invokes the
   relay handler → destination stream in the home region, read back and matched byte for byte.
6. Every SQS queue the stacks created (work queue and its DLQ, invoke-failure queue, events
   DLQs, relay failure queues, management.yaml's trigger DLQs) is read back: all must be empty.
7. The canary act (sandbox/canary_act.py, unless DemoOptions.canary is off): one hub region's
   Security bus policy removed, `watershed canary` over every member and hub region, the
   policy restored - that region reported as not arrived, every other with its latency.
8. Optional (`--uninstall`): `{"remove": "ALL"}` invoked on the onboarding function, as
   docs/deploy.md's uninstall does → one removal per account on the work queue → the poller →
   every member read back with no watershed rule, target or role in any hub region (GuardDuty
   stays, by design); the queues are read back again and must be empty.

`DemoOptions.delivery = "direct"` (issue 13, `--delivery direct`) deploys template.yaml with
DeliveryMode direct: the onboarding function then points every member region's rule at the
Security bus *in the home region*, no other region has a stream or relay, and step 5 becomes
member bus → home Security bus (one cross-region hop) → collect rule → destination stream; each
delivered event must show exactly one bus hop and no Kinesis write but the destination's. The
Security account's own finding in the farthest region is raised too (its stack there sends it to
the home bus).

Nothing here decides what watershed does: the handlers, the rules and the templates do. The
story only puts events where AWS would, drains the pollers, and reads the world back.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import canary_act, stacks
from sandbox import events as shapes
from sandbox.canary_act import CanaryAct
from sandbox.embedded import EmbeddedAws, SandboxError
from sandbox.journal import Journal
from sandbox.lambda_runtime import FunctionSpec, LambdaRuntime
from sandbox.organization import Account, Organization, create_organization
from sandbox.poller import Delivery, EventSourceMappingPoller, read_mappings
from sandbox.shims import envelope_bytes
from sandbox.streams import read_stream

# Regions in the order `--regions N` takes them: home first, then us-east-1 (Trusted Advisor
# and global-service API calls appear only there), then farther and farther away.
REGION_ORDER = (
    "eu-west-1",
    "us-east-1",
    "ap-southeast-2",
    "us-west-2",
    "eu-central-1",
    "ap-northeast-1",
    "sa-east-1",
    "ca-central-1",
    "eu-north-1",
    "ap-south-1",
)
# A region no hub covers, for the event that must stay where it was raised.
OUTSIDE_REGION_CANDIDATES = ("sa-east-1", "eu-north-1", "ap-south-1", "ca-central-1")

STACK_NAME = "watershed"
MANAGEMENT_STACK_NAME = "watershed-management"
FORWARD_RULE = "watershed-forward"
FORWARD_TARGET_ID = "security-bus"
FORWARDER_ROLE = "watershed-forwarder"


@dataclass(frozen=True)
class DemoOptions:
    """What to simulate: hub regions (the first is home), members, and where the project is."""

    regions: tuple[str, ...] = REGION_ORDER[:3]
    members: int = 3
    control_tower_members: int = 1
    canary: bool = True  # the canary act (sandbox/canary_act.py), after the queues
    project_dir: Path = Path(__file__).resolve().parent.parent
    delivery: str = "relay"  # template.yaml's DeliveryMode: relay | direct (issue 13)
    uninstall: bool = False  # the optional last act: remove watershed from every account

    @property
    def home_region(self) -> str:
        return self.regions[0]

    @property
    def direct(self) -> bool:
        return self.delivery == "direct"


@dataclass
class Act:
    """One act of the story and how long it took."""

    name: str
    seconds: float = 0.0


@dataclass
class RegionState:
    """A member's configuration in one hub region, as read back after onboarding."""

    detector: str  # "enabled" | "missing" | the detector's status
    rule: str  # "ok" | what is wrong with watershed-forward


@dataclass
class Arrival:
    """One raised event and what became of it."""

    event: shapes.RaisedEvent
    event_id: str
    raised_at: float
    expected: bool
    records: list[dict[str, Any]] = field(default_factory=list)  # at the destination
    first_hop: dict[str, Any] | None = None  # the record the shim wrote on the first stream
    problem: str = ""

    @property
    def arrived(self) -> bool:
        return bool(self.records)


@dataclass(frozen=True)
class Trigger:
    """A lifecycle event put on the management account's bus."""

    label: str
    member: Account
    event_id: str
    raised_at: float


@dataclass(frozen=True)
class QueueState:
    """A queue a stack created, read back at the end of the story: empty, or what is in it."""

    stack: str  # "<account> <region> <stack>"
    logical_id: str
    url: str
    visible: int
    in_flight: int
    delayed: int
    contents: tuple[str, ...] = ()  # what the messages are, as far as they can be told

    @property
    def empty(self) -> bool:
        return not (self.visible or self.in_flight or self.delayed)

    def describe(self) -> str:
        counts = [
            f"{n} {what}"
            for n, what in (
                (self.visible, "waiting"),
                (self.in_flight, "in flight"),
                (self.delayed, "delayed"),
            )
            if n
        ]
        what = f": {'; '.join(self.contents)}" if self.contents else ""
        return f"{self.logical_id} ({self.stack}) holds {', '.join(counts)}{what}"


@dataclass(frozen=True)
class OptIn:
    """A region opt-in raised in a member, and the member's two regions read back after it:
    the opted-in region (taken back first, as if never onboarded) and a control region, whose
    rule was disabled first so that any whole-account onboarding would have re-enabled it."""

    member: Account
    region: str
    control_region: str
    event_id: str
    raised_at: float
    region_state: RegionState
    control_state: RegionState

    @property
    def ok(self) -> bool:
        onboarded = self.region_state == RegionState("enabled", "ok")
        return onboarded and self.control_state.rule == "rule DISABLED"


@dataclass
class DemoResult:
    """Everything the story observed; `ok` says whether it ended as designed."""

    options: DemoOptions
    journal: Journal = field(default_factory=Journal)
    organization: Organization | None = None
    deployed: list[stacks.DeployedStack] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    onboarding: list[Delivery] = field(default_factory=list)
    configured: dict[tuple[str, str], RegionState] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    unknown_records: list[dict[str, Any]] = field(default_factory=list)
    acts: list[Act] = field(default_factory=list)
    destination_arn: str = ""
    notices: list[str] = field(default_factory=list)
    # per trigger: what the onboarding function did with it, when that was not an onboarding
    unhandled: list[str] = field(default_factory=list)
    reconcile: list[Delivery] = field(default_factory=list)
    queues: list[QueueState] = field(default_factory=list)
    canary: CanaryAct | None = None
    opt_in: OptIn | None = None  # None: us-east-1 is no hub region, nothing to route it
    # the uninstall act: per member and hub region what is left of watershed ("" = nothing)
    removal: list[Delivery] = field(default_factory=list)
    left_behind: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def loaded_queues(self) -> list[QueueState]:
        return [q for q in self.queues if not q.empty]

    @property
    def expected(self) -> list[Arrival]:
        return [a for a in self.arrivals if a.expected]

    @property
    def delivered(self) -> list[Arrival]:
        return [a for a in self.expected if a.arrived and not a.problem]

    @property
    def lost(self) -> list[Arrival]:
        return [a for a in self.expected if not a.arrived]

    @property
    def unexpected(self) -> list[Arrival]:
        return [a for a in self.arrivals if not a.expected and a.arrived]

    @property
    def damaged(self) -> list[Arrival]:
        return [a for a in self.arrivals if a.arrived and a.problem]

    @property
    def unconfigured(self) -> list[tuple[str, str]]:
        return [
            key
            for key, state in self.configured.items()
            if state.detector != "enabled" or state.rule != "ok"
        ]

    @property
    def ok(self) -> bool:
        return (
            bool(self.configured)
            and not self.unconfigured
            and not self.lost
            and not self.unexpected
            and not self.damaged
            and not self.unknown_records
            and not self.unhandled
            and bool(self.queues)
            and not self.loaded_queues
            and not self.notices
            and (self.canary is None or self.canary.ok)
            and (self.opt_in is None or self.opt_in.ok)
            and not any(self.left_behind.values())
        )

    @property
    def destination_name(self) -> str:
        return self.destination_arn.rsplit("/", 1)[-1]


class Story:
    """Plays the demo on an open EmbeddedAws; each act also reports through `on_act`."""

    def __init__(
        self,
        aws: EmbeddedAws,
        options: DemoOptions,
        on_act: Callable[[str, DemoResult], None] | None = None,
    ) -> None:
        self.aws = aws
        self.options = options
        self.journal: Journal = aws.journal
        self.runtime = LambdaRuntime(aws)
        self.result = DemoResult(options, journal=aws.journal)
        self._on_act = on_act or (lambda name, result: None)
        self.poller: EventSourceMappingPoller | None = None

    # --- the acts --------------------------------------------------------------------------

    def play(self) -> DemoResult:
        acts: list[tuple[str, Callable[[], None]]] = [
            ("organization", self.create_organization),
            ("deploy", self.deploy),
            ("onboarding", self.onboard),
            ("reconcile", self.reconcile),
            ("opt-in", self.region_opt_in),
            ("events", self.raise_events),
            ("queues", self.read_queues),
        ]
        if self.options.canary:
            acts.append(("canary", self.run_canary))
        if self.options.uninstall:
            acts.append(("uninstall", self.uninstall))
        for name, act in acts:
            started = time.perf_counter()
            act()
            self.result.acts.append(Act(name, time.perf_counter() - started))
            if name in ("queues", "uninstall"):  # everything the sandbox noticed on the way
                expected = self.result.canary.expected_notices if self.result.canary else []
                self.result.notices = [
                    f"{n.kind}: {n.message}" for n in self.journal.notices() if n not in expected
                ]
            self._on_act(name, self.result)
        return self.result

    def create_organization(self) -> None:
        self.result.organization = create_organization(
            self.aws, self.options.members, self.options.control_tower_members
        )

    def deploy(self) -> None:
        org = self._org()
        options = self.options
        project = options.project_dir
        management = self.aws.management_session()
        security_id = org.security.account_id
        management_parameters = {
            "SecurityAccountId": org.security.account_id,
            "SecurityHomeRegion": options.home_region,
            # fixed name, so known before the Security stack exists (docs/deploy.md, step 1)
            "OnboardingRoleArn": f"arn:aws:iam::{security_id}:role/watershed-onboarding",
            "OrganizationId": org.organization_id,
            "ControlTowerHomeRegion": options.home_region,
        }
        management_template = stacks.load_template(project / "management.yaml")
        launcher_arn = ""
        for region in dict.fromkeys(("us-east-1", options.home_region)):
            deployed = stacks.deploy(
                management,
                org.management.account_id,
                region,
                MANAGEMENT_STACK_NAME,
                management_template,
                management_parameters,
            )
            launcher_arn = deployed.outputs.get("LauncherRoleArn", launcher_arn)
            self.result.deployed.append(deployed)
        if not launcher_arn:
            raise SandboxError("management.yaml created no LauncherRoleArn output in us-east-1")

        security = self.aws.session(org.security.account_id)
        sam = stacks.load_template(project / "template.yaml")
        parameters = {
            "OrganizationId": org.organization_id,
            "ManagementAccountId": org.management.account_id,
            "HomeRegion": options.home_region,
            "HubRegions": ",".join(options.regions),
            "LauncherRoleArn": launcher_arn,
            "DeliveryMode": options.delivery,
        }
        for region in options.regions:
            bucket = f"watershed-artifacts-{org.security.account_id}-{region}"
            packaged = stacks.package(sam, project, security, region, bucket)
            translated = stacks.translate(packaged, region, org.security.account_id, parameters)
            deployed = stacks.deploy(
                security, org.security.account_id, region, STACK_NAME, translated, parameters
            )
            self.result.deployed.append(deployed)
            if region == options.home_region:
                self.result.destination_arn = deployed.outputs.get("DestinationStreamArn", "")
        if not self.result.destination_arn:
            raise SandboxError("template.yaml's home stack has no DestinationStreamArn output")
        mappings = read_mappings(self.aws, org.security.account_id, list(options.regions))
        self.poller = EventSourceMappingPoller(self.aws, self.runtime, mappings, self.journal)

    def onboard(self) -> None:
        org = self._org()
        events = self.aws.management_session()
        for member in org.members:
            self._trigger(
                "CreateAccountResult",
                member,
                events,
                "us-east-1",
                shapes.create_account_result(org.management, member),
            )
            if member.vended_by == "control tower":
                # Control Tower accounts produce both: the duplicate must cost reads only
                self._trigger(
                    "CreateManagedAccount",
                    member,
                    events,
                    self.options.home_region,
                    shapes.create_managed_account(org.management, member, self.options.home_region),
                )
        logged = len(self._onboarding_log())
        self.result.onboarding = self._drain()
        self.result.unhandled = self._unhandled_triggers(self._onboarding_log()[logged:])
        for member in org.members:
            for region in self.options.regions:
                self.result.configured[(member.account_id, region)] = self._read_back(
                    member, region
                )

    def reconcile(self) -> None:
        """Fire the reconcile schedule once, as EventBridge would, and drain what it enqueued.

        moto keeps schedule rules but never fires them: the story reads the rule the home stack
        declares (its ScheduleExpression and its target's Input) and invokes the target function
        with that input. Then every ACTIVE account is read back: the management account like a
        member, the Security account with GuardDuty only (its events are on its own bus)."""
        org = self._org()
        home = self.options.home_region
        security = self.aws.session(org.security.account_id)
        events = security.client("events", region_name=home)
        fired = 0
        for stack in self.result.deployed:
            if (stack.account_id, stack.region) != (org.security.account_id, home):
                continue
            for rule_name in stack.of_type("AWS::Events::Rule").values():
                if not events.describe_rule(Name=rule_name).get("ScheduleExpression"):
                    continue
                for target in events.list_targets_by_rule(Rule=rule_name)["Targets"]:
                    invocation = self.runtime.invoke(
                        self._function(target["Arn"]), json.loads(target.get("Input", "{}"))
                    )
                    fired += 1
                    if not invocation.ok:
                        self.result.unhandled.append(
                            f"schedule {rule_name} invocation failed: {invocation.error}"
                        )
        if not fired:
            raise SandboxError("template.yaml's home stack has no schedule rule with a target")
        self.result.reconcile = self._drain()
        for account in (org.management, org.security):
            for region in self.options.regions:
                self.result.configured[(account.account_id, region)] = self._read_back(
                    account, region, forwards=account is not org.security
                )

    def region_opt_in(self) -> None:
        """A member enables a region itself. AWS sends Region Opt-In Status Change to that
        member's us-east-1 bus only; its own forwarding rule carries it to the Security
        account's us-east-1 bus, the lifecycle rule there to the home work queue (through the
        lifecycle topic: a second bus hop would be dropped), and onboarding configures that one
        region. The region is first taken back from the member (rule and target deleted), and
        the rule of a control region disabled: only the opted-in region may come back."""
        org = self._org()
        regions = self.options.regions
        others = [r for r in regions if r != "us-east-1"]
        if "us-east-1" not in regions or len(others) < 2:
            return  # nothing to route it: the opt-in path needs us-east-1 and two other regions
        region, control = others[-1], others[0]
        member = org.members[0]
        session = self.aws.session(member.account_id, member.admin_role)
        events = session.client("events", region_name=region)
        events.remove_targets(Rule=FORWARD_RULE, Ids=[FORWARD_TARGET_ID])
        events.delete_rule(Name=FORWARD_RULE)
        session.client("events", region_name=control).disable_rule(Name=FORWARD_RULE)

        raised_at = self.journal.now()
        entry = shapes.region_opt_in(member, region)
        event_id = self._put(session, "us-east-1", entry, at=raised_at, owner=member)
        trigger = Trigger("Region opt-in", member, event_id, raised_at)
        logged = len(self._onboarding_log())
        self._drain()
        self.result.unhandled += self._unhandled_triggers(
            self._onboarding_log()[logged:], [trigger]
        )
        self.result.opt_in = OptIn(
            member,
            region,
            control,
            event_id,
            raised_at,
            self._read_back(member, region),
            self._read_back(member, control),
        )
        # the control region's marker is put back; the member ends the act as it began
        session.client("events", region_name=control).enable_rule(Name=FORWARD_RULE)
        for name in (region, control):
            self.result.configured[(member.account_id, name)] = self._read_back(member, name)

    def read_queues(self) -> None:
        """Read back every SQS queue the stacks created: anything left is a loss or a retry."""
        names = {t.event_id: f"{t.label} for {t.member.name}" for t in self.result.triggers}
        names.update(
            {a.event_id: f"{a.event.label} ({a.event.region})" for a in self.result.arrivals}
        )
        for stack in self.result.deployed:
            sqs = self.aws.session(stack.account_id).client("sqs", region_name=stack.region)
            where = f"{stack.account_id} {stack.region} {stack.stack_name}"
            for logical_id, url in sorted(stack.of_type("AWS::SQS::Queue").items()):
                attributes = sqs.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                        "ApproximateNumberOfMessagesDelayed",
                    ],
                )["Attributes"]
                visible = int(attributes.get("ApproximateNumberOfMessages", 0))
                contents: tuple[str, ...] = ()
                if visible:  # peek (visibility 0: the messages stay where they are)
                    messages = sqs.receive_message(
                        QueueUrl=url,
                        MaxNumberOfMessages=10,
                        VisibilityTimeout=0,
                        MessageAttributeNames=["All"],
                    ).get("Messages", [])
                    contents = tuple(describe_message(m, names) for m in messages)
                self.result.queues.append(
                    QueueState(
                        where,
                        logical_id,
                        url,
                        visible,
                        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
                        int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
                        contents,
                    )
                )

    def run_canary(self) -> None:
        """The canary act, one region broken on purpose and repaired (sandbox/canary_act.py)."""
        self.result.canary = canary_act.play(self)

    def raise_events(self) -> None:
        org = self._org()
        regions = self.options.regions
        home, far = regions[0], regions[-1]
        outside = next(r for r in OUTSIDE_REGION_CANDIDATES if r not in regions)
        first = org.members[0]
        raised: list[shapes.RaisedEvent] = []
        for member in org.members:
            raised.append(
                shapes.guardduty_finding(
                    member,
                    far,
                    "GuardDuty → member bus → Security bus → regional stream → relay"
                    if far != home and not self.options.direct
                    else "GuardDuty → member bus → Security bus → destination stream",
                )
            )
        if self.options.direct and far != home:
            raised.append(
                shapes.guardduty_finding(
                    org.security, far, "Security account's own: collect rule → home bus (direct)"
                )
            )
        raised += [
            shapes.guardduty_finding(first, home, "home region: collect rule → destination"),
            shapes.cloudtrail_api_call(first, "IAM call: global service, us-east-1"),
            shapes.trusted_advisor_check(first, far, "Trusted Advisor: us-east-1 only"),
            shapes.instance_state_change(first, far, "not a security event: not forwarded"),
            shapes.guardduty_finding(first, outside, "region outside the hub: not onboarded"),
        ]
        for event in raised:
            session = self.aws.session(event.account.account_id, event.account.admin_role)
            raised_at = self.journal.now()
            event_id = self._put(
                session.client("events", region_name=event.region),
                event.region,
                event.entry,
                at=raised_at,
                owner=event.account,
            )
            expected = event.forwardable and event.region in regions
            self.result.arrivals.append(Arrival(event, event_id, raised_at, expected))
        self._drain()
        self._match_destination()

    def uninstall(self) -> None:
        """docs/deploy.md's uninstall, step 1: `{"remove": "ALL"}` on the onboarding function
        (a direct invocation: it enqueues one removal per account), the queue drained, then
        every member read back in every hub region, and the queues read back again."""
        org = self._org()
        invocation = self.runtime.invoke(
            self._onboarding_function(), {"remove": "ALL", "reason": "uninstall"}
        )
        if not invocation.ok:
            self.result.unhandled.append(f"remove ALL invocation failed: {invocation.error}")
        self.result.removal = self._drain()
        for member in org.members:
            role = self._left_role(member)
            for region in self.options.regions:
                left = [*self._left_rule(member, region), *role]
                self.result.left_behind[(member.account_id, region)] = ", ".join(left)
        self.result.queues = []
        self.read_queues()

    def _left_rule(self, member: Account, region: str) -> list[str]:
        events = self.aws.session(member.account_id, member.admin_role).client(
            "events", region_name=region
        )
        try:
            events.describe_rule(Name=FORWARD_RULE)
        except events.exceptions.ResourceNotFoundException:
            return []
        targets = events.list_targets_by_rule(Rule=FORWARD_RULE)["Targets"]
        return [f"rule {FORWARD_RULE}"] + [f"target {t['Id']}" for t in targets]

    def _left_role(self, member: Account) -> list[str]:
        iam = self.aws.session(member.account_id, member.admin_role).client("iam")
        try:
            iam.get_role(RoleName=FORWARDER_ROLE)
        except iam.exceptions.NoSuchEntityException:
            return []
        return [f"role {FORWARDER_ROLE}"]

    # --- helpers ---------------------------------------------------------------------------

    def _org(self) -> Organization:
        if self.result.organization is None:
            raise SandboxError("no organization yet")
        return self.result.organization

    def _put(
        self,
        client_or_session: Any,
        region: str,
        entry: dict[str, Any],
        at: float | None = None,
        owner: Account | None = None,
    ) -> str:
        client = (
            client_or_session.client("events", region_name=region)
            if hasattr(client_or_session, "client")
            else client_or_session
        )
        at = self.journal.now() if at is None else at
        response = client.put_events(Entries=[entry])
        (result,) = response["Entries"]
        if "EventId" not in result:
            raise SandboxError(f"PutEvents in {region} refused {entry['DetailType']}: {result}")
        account = owner.account_id if owner else self._org().management.account_id
        self.journal.record(result["EventId"], "raised", f"{account} {region} default bus", "", at)
        return result["EventId"]

    def _trigger(
        self, label: str, member: Account, session: Any, region: str, entry: dict[str, Any]
    ) -> None:
        raised_at = self.journal.now()
        event_id = self._put(session, region, entry, at=raised_at)
        self.result.triggers.append(Trigger(label, member, event_id, raised_at))

    def _drain(self) -> list[Delivery]:
        if self.poller is None:
            raise SandboxError("nothing deployed yet")
        return self.poller.drain()

    def _onboarding_function(self) -> FunctionSpec:
        if self.poller is None:
            raise SandboxError("nothing deployed yet")
        for mapping in self.poller.mappings:
            if mapping.kind == "sqs":
                return mapping.function
        raise SandboxError("template.yaml declares no SQS mapping for the onboarding function")

    def _function(self, arn: str) -> FunctionSpec:
        """The deployed function a target ARN names (as the pollers read it)."""
        if self.poller is not None:
            for mapping in self.poller.mappings:
                if mapping.function.arn == arn:
                    return mapping.function
        raise SandboxError(f"no deployed function {arn}")

    def _onboarding_log(self) -> list[str]:
        return self.runtime.log(self._onboarding_function())

    def _unhandled_triggers(
        self, log: list[str], triggers: list[Trigger] | None = None
    ) -> list[str]:
        """Did every trigger become an onboarding? Read from the function's per-request log.

        The read-back of the accounts cannot tell: a Control Tower account gets two triggers,
        and one of them configures it even if the other was dropped. So every account with a
        trigger must have a `request outcome` of `done` with status ok, and the function must
        have logged no other outcome (refused, retry, dead-lettered), no `ignored input` (a
        lifecycle event it did not recognise) and no `invalid message` (dead-lettered as
        invalid). A duplicate in the same batch is the one legitimate path that logs no
        outcome of its own; a retry or a dead letter also leaves a message on a queue, which
        `read_queues` reports."""
        done: set[str] = set()
        problems: list[str] = []
        for line in log:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            message = entry.get("message")
            if message == "request outcome":
                if entry.get("outcome") == "done" and entry.get("status") == "ok":
                    done.add(str(entry.get("account_id")))
                else:
                    problems.append(
                        f"request for {entry.get('account_id')} ended {entry.get('outcome')}"
                        f" (status {entry.get('status')})"
                    )
            elif message in ("ignored input", "invalid message", "refused message"):
                why = entry.get("reason") or entry.get("error") or ""
                problems.append(f"{message}: {str(why)[:160]}")
        triggers = self.result.triggers if triggers is None else triggers
        names = {t.member.account_id: t.member.name for t in triggers}
        for account_id, name in names.items():
            if account_id not in done:
                labels = [t.label for t in triggers if t.member.account_id == account_id]
                problems.insert(0, f"{' + '.join(labels)} for {name}: no onboarding done")
        return problems

    def _read_back(self, member: Account, region: str, forwards: bool = True) -> RegionState:
        """The account's GuardDuty detector and forwarding rule in `region`, read back.
        `forwards=False` (the Security account): no forwarding rule is the desired state."""
        org = self._org()
        session = self.aws.session(member.account_id, member.admin_role)
        guardduty = session.client("guardduty", region_name=region)
        detectors = guardduty.list_detectors()["DetectorIds"]
        if not detectors:
            detector = "missing"
        else:
            status = guardduty.get_detector(DetectorId=detectors[0])["Status"]
            detector = "enabled" if status == "ENABLED" else status.lower()
        events = session.client("events", region_name=region)
        try:
            rule = events.describe_rule(Name=FORWARD_RULE)
        except events.exceptions.ResourceNotFoundException:
            return RegionState(detector, "no rule" if forwards else "ok")
        if not forwards:
            return RegionState(detector, f"{FORWARD_RULE} exists: it would forward to itself")
        targets = {t["Id"]: t for t in events.list_targets_by_rule(Rule=FORWARD_RULE)["Targets"]}
        bus_region = self.options.home_region if self.options.direct else region
        bus = f"arn:aws:events:{bus_region}:{org.security.account_id}:event-bus/default"
        role = f"arn:aws:iam::{member.account_id}:role/{FORWARDER_ROLE}"
        target = targets.get(FORWARD_TARGET_ID)
        if rule["State"] != "ENABLED":
            state = f"rule {rule['State']}"
        elif target is None:
            state = f"no target {FORWARD_TARGET_ID}"
        elif target["Arn"] != bus or target.get("RoleArn") != role:
            state = f"target → {target['Arn']} as {target.get('RoleArn')}"
        else:
            state = "ok"
        return RegionState(detector, state)

    def _match_destination(self) -> None:
        """Read the destination stream back and match each record to the event it carries."""
        org = self._org()
        security = self.aws.session(org.security.account_id)
        records = read_stream(security, self.result.destination_arn)
        by_id = {a.event_id: a for a in self.result.arrivals}
        for record in records:
            try:
                event_id = json.loads(record["Data"])["id"]
            except (ValueError, KeyError, TypeError):
                event_id = None
            arrival = by_id.get(event_id) if event_id else None
            if arrival is None:
                self.result.unknown_records.append(record)
                continue
            arrival.records.append(record)
            self.journal.record_last(
                arrival.event_id,
                "in the destination stream",
                f"{org.security.account_id} {self.options.home_region} "
                f"stream {self.result.destination_name}",
                f"{record['ShardId']} seq {record['SequenceNumber']}",
                at=self.journal.from_wall_clock(record["ApproximateArrivalTimestamp"].timestamp()),
            )
        regional_streams = {
            d.region: d.outputs.get("RegionalStreamArn", "")
            for d in self.result.deployed
            if d.account_id == org.security.account_id
        }
        for arrival in self.result.arrivals:
            if arrival.arrived:
                arrival.problem = self._check(arrival, regional_streams.get(arrival.event.region))

    def _check(self, arrival: Arrival, regional_stream: str | None) -> str:
        """'' when the destination holds exactly the event as EventBridge wrote it, else why not."""
        if len(arrival.records) > 1:
            return f"{len(arrival.records)} copies at the destination"
        (record,) = arrival.records
        document = json.loads(record["Data"])
        event = arrival.event
        expected = {
            "id": arrival.event_id,
            "account": event.account.account_id,
            "region": event.region,
            "source": event.entry["Source"],
            "detail-type": event.entry["DetailType"],
            "detail": event.detail,
        }
        different = [k for k, v in expected.items() if document.get(k) != v]
        if different:
            return f"envelope differs in {', '.join(different)}"
        if record["Data"] != envelope_bytes(document):
            return "bytes are not the EventBridge serialisation of the event"
        if self.options.direct:
            return self._direct_path_problem(arrival)
        if regional_stream:
            # relayed: the bytes and key must be exactly what the shim wrote on the regional stream
            security = self.aws.session(self._org().security.account_id)
            originals = [
                r
                for r in read_stream(security, regional_stream)
                if json.loads(r["Data"]).get("id") == arrival.event_id
            ]
            if len(originals) != 1:
                return f"{len(originals)} records on the regional stream"
            arrival.first_hop = originals[0]
            if (originals[0]["Data"], originals[0]["PartitionKey"]) != (
                record["Data"],
                record["PartitionKey"],
            ):
                return "relayed bytes or partition key differ from the regional record"
        return ""

    def _direct_path_problem(self, arrival: Arrival) -> str:
        """Direct mode: one bus hop (to the home region's bus), one Kinesis write (the
        destination stream), read from the journal the delivery patch and the shim keep."""
        hops = self.journal.hops(arrival.event_id)
        bus_hops = [h for h in hops if h.step.endswith("→ bus")]
        home = self.options.home_region
        if len(bus_hops) != 1 or f" {home} " not in f" {bus_hops[0].where} ":
            return f"{len(bus_hops)} bus hop(s) ({'; '.join(h.where for h in bus_hops)}), not 1"
        stream = f"{self._org().security.account_id} {home} stream {self.result.destination_name}"
        writes = [h.where for h in hops if "Kinesis" in h.step]
        if writes != [stream]:
            return f"written to {writes}, not only the destination stream"
        return ""


def describe_message(message: dict[str, Any], names: dict[str, str]) -> str:
    """What a message left on a queue is: a dead-lettered trigger (named), an event, a batch."""
    body = message.get("Body", "")
    try:
        document = json.loads(body)
    except ValueError:
        return f"{len(body)} bytes: {body[:60]!r}"
    if not isinstance(document, dict):
        return f"{body[:60]!r}"
    if "kind" in document and "reason" in document:  # the work DLQ's envelope
        inner = document.get("body") or ""
        try:
            event_id = json.loads(inner).get("id") if inner else None
        except (ValueError, AttributeError):
            event_id = None
        request = document.get("request") or {}
        what = names.get(event_id or "") or (
            f"request for {request.get('accounts')}" if request else f"message {event_id}"
        )
        return f"{what} dead-lettered as {document['kind']}: {document['reason']}"
    if "id" in document and "detail-type" in document:  # an EventBridge event (events DLQ)
        error = (message.get("MessageAttributes") or {}).get("ERROR_CODE", {})
        why = f" ({error.get('StringValue')})" if error else ""
        what = names.get(document["id"]) or f"{document['detail-type']} {document['id']}"
        return f"event {what}{why}"
    if "KinesisBatchInfo" in document:  # a relay mapping's on-failure record
        info = document["KinesisBatchInfo"]
        return f"{info.get('batchSize')} record(s) of {info.get('shardId')} not relayed"
    if "requestContext" in document:  # an asynchronous invocation that failed
        return f"failed invocation: {document['requestContext'].get('condition')}"
    if "accounts" in document:  # a request still waiting
        return f"request for {document.get('accounts')} (attempt {document.get('attempt', 1)})"
    if "id" in document:
        return f"message about {names.get(document['id'], document['id'])}"
    return f"{body[:60]!r}"


def describe_record(record: dict[str, Any]) -> str:
    """A short description of a record nobody expected."""
    data = record["Data"]
    try:
        document = json.loads(data)
        return (
            f"{document.get('detail-type')} from {document.get('account')} "
            f"in {document.get('region')} (id {document.get('id')})"
        )
    except ValueError:
        return f"{len(data)} bytes: {base64.b64encode(data[:48]).decode()}…"
