"""Typed, frozen configuration, read once from the environment and validated at cold start.

`Settings.from_env()` is the only place in the package that reads `os.environ`. Every error
names the variable at fault, so a misconfigured deployment fails on its first invocation with
a message an operator can act on.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import boto3

from onboarding.errors import ConfigError
from onboarding.patterns import PatternError, check_pattern
from onboarding.resources.guardduty_model import NOT_SENT_AT_CREATION, detector_features

# ASCII only and anchored with \A...\Z (never `$`, which also matches before a trailing newline;
# never `\d`, which also matches non-ASCII digits): `.match` and `.fullmatch` are then the same.
ACCOUNT_ID = re.compile(r"\A[0-9]{12}\Z", re.ASCII)
REGION_NAME = re.compile(r"\A[a-z]{2}(-[a-z]+)+-[0-9]{1,2}\Z", re.ASCII)
ROLE_NAME = re.compile(r"\A[\w+=,.@-]{1,64}\Z", re.ASCII)
RULE_NAME = re.compile(r"\A[.\-_A-Za-z0-9]{1,64}\Z", re.ASCII)
ROLE_ARN = re.compile(r"\Aarn:(aws[a-z-]*):iam::([0-9]{12}):role/[\w+=,.@/-]{1,128}\Z", re.ASCII)
FEATURE_NAME = re.compile(r"\A[A-Z][A-Z0-9_]{1,63}\Z", re.ASCII)

PUBLISHING_FREQUENCIES = ("FIFTEEN_MINUTES", "ONE_HOUR", "SIX_HOURS")
MAX_PATTERN_CHARS = 2048  # EventBridge limit on an event pattern

DEFAULT_MEMBER_ROLE_NAMES = ("OrganizationAccountAccessRole", "AWSControlTowerExecution")
DEFAULT_FORWARDER_ROLE_NAME = "watershed-forwarder"
DEFAULT_FORWARD_RULE_NAME = "watershed-forward"
MEMBER_DEAD_LETTER_QUEUE_NAME = "watershed-forward-dlq"  # one per hub region, Security account
# FINDING_PUBLISHING_FREQUENCY unset: an existing detector keeps its frequency; a detector
# watershed creates gets this one (GuardDuty's own default would be SIX_HOURS).
DEFAULT_PUBLISHING_FREQUENCY = "FIFTEEN_MINUTES"
DEFAULT_REGION_WORKERS = 20
MAX_REGION_WORKERS = 64
DEFAULT_RETRY_CAP_SECONDS = 3600
MAX_RETRY_CAP_SECONDS = 12 * 3600  # the template's RetryCapSeconds MaxValue
QUEUE_URL = re.compile(r"\Ahttps?://\S+/[0-9]{12}/[\w-]{1,80}\Z", re.ASCII)
OU_ID = re.compile(r"\Aou-[0-9a-z]{4,32}-[0-9a-z]{8,32}\Z", re.ASCII)
TAG_KEY = re.compile(r"\A[^=,]{1,128}\Z")

# Where a member's forwarding target delivers (issue 13). `relay`: the Security account's bus in
# the member's own region (a regional stream and the relay carry the events home); `direct`:
# the Security account's bus in the home region, one cross-region hop, no relay.
DELIVERY_MODES = ("relay", "direct")
DEFAULT_DELIVERY_MODE = "relay"

DEFAULT_FORWARD_EVENT_PATTERN: dict[str, Any] = {
    "$or": [
        {"source": ["aws.guardduty"]},
        {"source": ["aws.trustedadvisor"]},
        {
            # Only AWS services can send a source starting with "aws." (PutEvents refuses it):
            # without this fence anyone in the organization could forge CloudTrail events.
            "source": [{"prefix": "aws."}],
            "detail-type": [
                "AWS API Call via CloudTrail",
                "AWS Console Sign In via CloudTrail",
                "AWS Console Signin via CloudTrail",
            ],
        },
        # A member's own region opt-ins (us-east-1 only): the Security account routes them to
        # the work queue (template.yaml LifecycleRule), so the new region is onboarded at once.
        {"source": ["aws.account"], "detail-type": ["Region Opt-In Status Change"]},
    ]
}

# GuardDuty protection plans are tri-state (GUARDDUTY_FEATURES): NAME=ENABLED, NAME=DISABLED, or
# not named = left as the owner set it. The plans are those of the installed SDK's GuardDuty
# model (onboarding.resources.guardduty_model); at creation every one of them is sent, unnamed ones
# DISABLED (CreateDetector without a plan turns it on).
FEATURE_STATUSES = ("ENABLED", "DISABLED")
# GUARDDUTY: manage (create or re-enable detectors, enforce what is named), observe (read and
# report, never write GuardDuty), off (no GuardDuty call at all).
GUARDDUTY_MODES = ("manage", "observe", "off")
DEFAULT_GUARDDUTY_MODE = "manage"


def _require(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(name, "is required and not set")
    return value


def _account(env: Mapping[str, str], name: str) -> str:
    value = _require(env, name)
    if not ACCOUNT_ID.fullmatch(value):
        raise ConfigError(name, f"{value!r} is not a 12-digit AWS account id")
    return value


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def parse_regions(name: str, value: str) -> tuple[str, ...]:
    regions = _csv(value)
    if not regions:
        raise ConfigError(name, "needs at least one region")
    for region in regions:
        if not REGION_NAME.fullmatch(region):
            raise ConfigError(name, f"{region!r} is not a region name (e.g. eu-west-1)")
    if len(set(regions)) != len(regions):
        raise ConfigError(name, f"lists a region twice: {value!r}")
    return regions


def parse_features(name: str, value: str) -> tuple[tuple[str, str], ...]:
    """`NAME[=ENABLED|DISABLED],...`: only the named plans (a bare name means ENABLED).

    Names must be `DetectorFeature` values of the installed SDK's GuardDuty model."""
    features: dict[str, str] = {}
    for item in _csv(value):
        feature, _, status = item.partition("=")
        feature, status = feature.strip().upper(), (status.strip().upper() or "ENABLED")
        if not FEATURE_NAME.fullmatch(feature):
            raise ConfigError(name, f"{feature!r} is not a GuardDuty feature name")
        if status not in FEATURE_STATUSES:
            raise ConfigError(name, f"{item!r}: status must be ENABLED or DISABLED")
        if feature == "EKS_RUNTIME_MONITORING":
            raise ConfigError(name, "use RUNTIME_MONITORING (EKS_RUNTIME_MONITORING is legacy)")
        if feature in NOT_SENT_AT_CREATION:
            why = NOT_SENT_AT_CREATION[feature]
            raise ConfigError(name, f"{feature} is never configured: {why}")
        known = detector_features()  # loaded only when a plan is named (cached)
        if feature not in known:
            raise ConfigError(
                name, f"{feature!r} is not a GuardDuty plan this SDK knows ({', '.join(known)})"
            )
        if feature in features:
            raise ConfigError(name, f"names {feature} twice")
        features[feature] = status
    return tuple(sorted(features.items()))


def parse_pattern(name: str, value: str) -> dict[str, Any]:
    try:
        pattern = json.loads(value)
    except json.JSONDecodeError as err:
        raise ConfigError(name, f"is not valid JSON ({err.msg} at char {err.pos})") from err
    try:  # EventBridge's grammar, then the aws. source fence (onboarding.patterns)
        check_pattern(pattern)
    except PatternError as err:
        raise ConfigError(name, f"refused at {err}") from err
    if len(canonical_json(pattern)) > MAX_PATTERN_CHARS:
        raise ConfigError(name, f"is longer than EventBridge's {MAX_PATTERN_CHARS} characters")
    return pattern


def _queue_url(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    if not value:
        return None  # CloudFormation passes an unset parameter as "": the same as unset
    if not QUEUE_URL.fullmatch(value):
        raise ConfigError(name, f"{value!r} is not an SQS queue URL")
    return value


# The fanned-out audit's bucket (issue 15): S3's bucket naming rules, no dots (TLS wildcards).
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def _bucket(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    if not BUCKET_NAME.match(value):
        raise ConfigError(name, f"{value!r} is not an S3 bucket name (a-z, 0-9, -; 3-63)")
    return value


def parse_tag(name: str, value: str) -> tuple[str, str | None] | None:
    """`key` (any value) or `key=value`; empty means no tag exclusion."""
    value = value.strip()
    if not value:
        return None
    key, sep, tag_value = value.partition("=")
    key = key.strip()
    if not TAG_KEY.fullmatch(key):
        raise ConfigError(name, f"{value!r}: the tag key must be 1-128 characters, no '=' or ','")
    return key, (tag_value.strip() if sep else None)


def parse_bool(name: str, value: str) -> bool:
    """`true` or `false` (any case); empty means false. Anything else is refused."""
    value = value.strip().lower()
    if value not in ("", "true", "false"):
        raise ConfigError(name, f"{value!r} must be true or false")
    return value == "true"


@lru_cache(maxsize=64)
def partition_for(region: str) -> str:
    """`aws`, `aws-cn`, `aws-us-gov`… from botocore's bundled endpoint data (read once)."""
    return boto3.session.Session().get_partition_for_region(region)


def canonical_json(document: Any) -> str:
    """One serialisation for comparing and writing JSON documents (patterns, policies)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Settings:
    """Everything onboarding needs to know, validated. Build with `Settings.from_env()`."""

    security_account_id: str
    management_account_id: str
    hub_regions: tuple[str, ...]
    launcher_role_arn: str | None = None
    member_role_names: tuple[str, ...] = DEFAULT_MEMBER_ROLE_NAMES
    forwarder_role_name: str = DEFAULT_FORWARDER_ROLE_NAME
    forward_rule_name: str = DEFAULT_FORWARD_RULE_NAME
    forward_event_pattern: Mapping[str, Any] = field(
        default_factory=lambda: DEFAULT_FORWARD_EVENT_PATTERN
    )
    # None: not enforced on existing detectors; DEFAULT_PUBLISHING_FREQUENCY at creation.
    finding_publishing_frequency: str | None = None
    # Only the named plans: (name, ENABLED|DISABLED); a plan not named is the owner's.
    guardduty_features: tuple[tuple[str, str], ...] = ()
    guardduty_mode: str = DEFAULT_GUARDDUTY_MODE  # manage | observe | off
    region_workers: int = DEFAULT_REGION_WORKERS
    # Where the function's own STS, IAM and Organizations calls go (Lambda's AWS_REGION).
    home_region: str = ""
    # Organization scale (issue 5): the work queue, its dead-letter queue, how long a request
    # that is not ready keeps being retried, and the accounts never onboarded.
    work_queue_url: str | None = None
    dead_letter_queue_url: str | None = None
    retry_cap_seconds: int = DEFAULT_RETRY_CAP_SECONDS
    excluded_accounts: frozenset[str] = frozenset()
    excluded_ous: frozenset[str] = frozenset()
    exclude_tag: tuple[str, str | None] | None = None  # (key, value or None for "any value")
    # The fanned-out audit writes its results here (issue 15).
    audit_bucket: str | None = None
    # Its messages go on a queue of their own when set (the template's AuditQueue), so an audit
    # of the whole organization never delays an onboarding waiting on the work queue.
    audit_queue_url: str | None = None
    # Delivery mode (issue 13): see DELIVERY_MODES and `target_bus_arn`.
    delivery_mode: str = DEFAULT_DELIVERY_MODE
    # Offboarding (issue 14): an account put out of scope keeps watershed's resources if true.
    retain_on_exclusion: bool = False

    def __post_init__(self) -> None:
        if not self.home_region:
            object.__setattr__(self, "home_region", self.hub_regions[0])
        if self.delivery_mode not in DELIVERY_MODES:
            raise ConfigError(
                "DELIVERY_MODE",
                f"{self.delivery_mode!r} is not one of {', '.join(DELIVERY_MODES)}",
            )
        if self.delivery_mode == "direct" and self.home_region not in self.hub_regions:
            # The target of every member would be a bus no stack of ours collects from.
            raise ConfigError(
                "DELIVERY_MODE",
                f"direct delivers to the home region's bus, but the home region "
                f"{self.home_region} (HOME_REGION) is not one of HUB_REGIONS",
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; raises ConfigError naming the variable at fault."""
        env = os.environ if environ is None else environ
        security = _account(env, "SECURITY_ACCOUNT_ID")
        management = _account(env, "MANAGEMENT_ACCOUNT_ID")
        hub_regions = parse_regions("HUB_REGIONS", _require(env, "HUB_REGIONS"))

        launcher = env.get("LAUNCHER_ROLE_ARN", "").strip() or None
        if launcher:
            match = ROLE_ARN.fullmatch(launcher)
            if not match:
                raise ConfigError("LAUNCHER_ROLE_ARN", f"{launcher!r} is not an IAM role ARN")
            if match.group(2) != management:
                raise ConfigError(
                    "LAUNCHER_ROLE_ARN",
                    f"{launcher!r} is not in the management account {management}",
                )

        member_roles = _csv(env.get("MEMBER_ROLE_NAMES", "")) or DEFAULT_MEMBER_ROLE_NAMES
        for role in member_roles:
            if not ROLE_NAME.fullmatch(role):
                raise ConfigError("MEMBER_ROLE_NAMES", f"{role!r} is not an IAM role name")

        forwarder = env.get("FORWARDER_ROLE_NAME", "").strip() or DEFAULT_FORWARDER_ROLE_NAME
        if not ROLE_NAME.fullmatch(forwarder):
            raise ConfigError("FORWARDER_ROLE_NAME", f"{forwarder!r} is not an IAM role name")

        rule = env.get("FORWARD_RULE_NAME", "").strip() or DEFAULT_FORWARD_RULE_NAME
        if not RULE_NAME.fullmatch(rule):
            raise ConfigError("FORWARD_RULE_NAME", f"{rule!r} is not an EventBridge rule name")

        raw_pattern = env.get("FORWARD_EVENT_PATTERN", "").strip()
        pattern = (
            parse_pattern("FORWARD_EVENT_PATTERN", raw_pattern)
            if raw_pattern
            else DEFAULT_FORWARD_EVENT_PATTERN
        )

        frequency = env.get("FINDING_PUBLISHING_FREQUENCY", "").strip().upper() or None
        if frequency is not None and frequency not in PUBLISHING_FREQUENCIES:
            raise ConfigError(
                "FINDING_PUBLISHING_FREQUENCY",
                f"{frequency!r} is not one of {', '.join(PUBLISHING_FREQUENCIES)}",
            )

        features = parse_features("GUARDDUTY_FEATURES", env.get("GUARDDUTY_FEATURES", ""))
        mode = env.get("GUARDDUTY", "").strip().lower() or DEFAULT_GUARDDUTY_MODE
        if mode not in GUARDDUTY_MODES:
            raise ConfigError("GUARDDUTY", f"{mode!r} is not one of {', '.join(GUARDDUTY_MODES)}")

        raw_workers = env.get("REGION_WORKERS", "").strip() or str(DEFAULT_REGION_WORKERS)
        try:
            workers = int(raw_workers)
        except ValueError:
            raise ConfigError("REGION_WORKERS", f"{raw_workers!r} is not an integer") from None
        if not 1 <= workers <= MAX_REGION_WORKERS:
            raise ConfigError("REGION_WORKERS", f"{workers} is not between 1 and 64")

        # HOME_REGION names the home region outright (the template sets it); without it, the
        # region this process runs in. Direct mode requires it: every member target is
        # pointed at the home region's bus, and a CLI run with AWS_REGION set to another hub
        # region must not repoint the whole organization at a bus whose events go nowhere.
        declared_home = env.get("HOME_REGION", "").strip()
        if declared_home and not REGION_NAME.fullmatch(declared_home):
            raise ConfigError("HOME_REGION", f"{declared_home!r} is not a region name")
        delivery_mode = env.get("DELIVERY_MODE", "").strip().lower() or DEFAULT_DELIVERY_MODE
        if delivery_mode == "direct" and not declared_home:
            raise ConfigError(
                "HOME_REGION",
                "is required with DELIVERY_MODE=direct: the region of the stack that holds the "
                "destination stream, where every member target will point (AWS_REGION is only "
                "where this process runs)",
            )
        home = declared_home or (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "")
        home = home.strip()
        if home and not REGION_NAME.fullmatch(home):
            raise ConfigError("AWS_REGION", f"{home!r} is not a region name")

        queue = _queue_url(env, "WORK_QUEUE_URL")
        dead_letter = _queue_url(env, "DEAD_LETTER_QUEUE_URL")
        if dead_letter and not queue:
            raise ConfigError("DEAD_LETTER_QUEUE_URL", "is set but WORK_QUEUE_URL is not")

        raw_cap = env.get("RETRY_CAP_SECONDS", "").strip() or str(DEFAULT_RETRY_CAP_SECONDS)
        try:
            cap = int(raw_cap)
        except ValueError:
            raise ConfigError("RETRY_CAP_SECONDS", f"{raw_cap!r} is not an integer") from None
        if not 0 <= cap <= MAX_RETRY_CAP_SECONDS:
            raise ConfigError(
                "RETRY_CAP_SECONDS", f"{cap} is not between 0 and {MAX_RETRY_CAP_SECONDS}"
            )

        excluded_accounts = _csv(env.get("EXCLUDED_ACCOUNTS", ""))
        for account in excluded_accounts:
            if not ACCOUNT_ID.fullmatch(account):
                raise ConfigError("EXCLUDED_ACCOUNTS", f"{account!r} is not a 12-digit account id")
        excluded_ous = _csv(env.get("EXCLUDED_OUS", ""))
        for ou in excluded_ous:
            if not OU_ID.fullmatch(ou):
                raise ConfigError("EXCLUDED_OUS", f"{ou!r} is not an OU id (ou-xxxx-xxxxxxxx)")

        return cls(
            security_account_id=security,
            management_account_id=management,
            hub_regions=hub_regions,
            launcher_role_arn=launcher,
            member_role_names=member_roles,
            forwarder_role_name=forwarder,
            forward_rule_name=rule,
            forward_event_pattern=pattern,
            finding_publishing_frequency=frequency,
            guardduty_features=features,
            guardduty_mode=mode,
            region_workers=workers,
            home_region=home or hub_regions[0],
            work_queue_url=queue,
            dead_letter_queue_url=dead_letter,
            retry_cap_seconds=cap,
            excluded_accounts=frozenset(excluded_accounts),
            excluded_ous=frozenset(excluded_ous),
            exclude_tag=parse_tag("EXCLUDE_TAG", env.get("EXCLUDE_TAG", "")),
            delivery_mode=delivery_mode,
            retain_on_exclusion=parse_bool(
                "RETAIN_ON_EXCLUSION", env.get("RETAIN_ON_EXCLUSION", "")
            ),
            audit_bucket=_bucket(env, "AUDIT_BUCKET"),
            audit_queue_url=_queue_url(env, "AUDIT_QUEUE_URL"),
        )

    # Derived values -----------------------------------------------------------------------

    def partition(self, region: str | None = None) -> str:
        """`aws`, `aws-cn`, `aws-us-gov`… for a region (default: the home region)."""
        return partition_for(region or self.home_region)

    def security_bus_arn(self, region: str) -> str:
        """The Security account's default bus in `region`: where a member's rule forwards to."""
        return (
            f"arn:{self.partition(region)}:events:{region}:{self.security_account_id}"
            ":event-bus/default"
        )

    @property
    def direct(self) -> bool:
        """Direct mode: every member region delivers straight to the home region's bus."""
        return self.delivery_mode == "direct"

    def target_bus_arn(self, region: str) -> str:
        """Where a member's forwarding rule in `region` delivers, in this delivery mode.

        relay: the Security bus of the same region; direct: the Security bus of the home region
        (a cross-region bus target, which needs RoleArn). The one place the mode decides this.
        """
        return self.security_bus_arn(self.home_region if self.direct else region)

    def target_bus_arns(self) -> tuple[str, ...]:
        """Every bus the members deliver to in this mode (sorted, each once): what the
        forwarder role may put events on, and nothing else."""
        return tuple(sorted({self.target_bus_arn(region) for region in self.hub_regions}))

    def member_dead_letter_queue_arn(self, region: str) -> str:
        """The Security account's queue in `region` for events a member's target could not
        deliver (template.yaml MemberDeadLetterQueue; a DLQ must be in the rule's region)."""
        return (
            f"arn:{self.partition(region)}:sqs:{region}:{self.security_account_id}"
            f":{MEMBER_DEAD_LETTER_QUEUE_NAME}"
        )

    def forwarder_role_arn(self, account_id: str) -> str:
        return f"arn:{self.partition()}:iam::{account_id}:role/{self.forwarder_role_name}"

    @property
    def forward_pattern_json(self) -> str:
        return canonical_json(self.forward_event_pattern)

    @property
    def features_list(self) -> list[dict[str, str]]:
        """UpdateDetector's `Features`: the named plans only (the others are left alone)."""
        return [{"Name": name, "Status": status} for name, status in self.guardduty_features]

    @property
    def creation_frequency(self) -> str:
        """The publishing frequency a detector watershed creates gets."""
        return self.finding_publishing_frequency or DEFAULT_PUBLISHING_FREQUENCY
