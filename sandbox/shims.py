"""Where moto's EventBridge and Lambda differ from AWS on watershed's path, and what stands in.

moto 5 delivers EventBridge events itself, in `moto.events.models.Rule.send_to_targets`, which
`put_events` calls for every rule of the bus. On the path watershed uses it differs from AWS in
ways that would break the story (each one checked by tests/sandbox/test_moto_behaviour.py):

1. A rule with a Kinesis target raises `NotImplementedError` inside `put_events`, so the whole
   PutEvents call fails — for every event on that bus, matching or not (see 4).
2. Bus-to-bus delivery re-puts only source, detail-type and detail on the target bus: the event
   gets a new id, the receiving account as `account`, the current time and no resources. AWS
   keeps the envelope unchanged, and watershed's trigger rule pins `account` to the management
   account, so under moto it would never match.
3. An SQS target receives moto's default input template, which leaves out `account`. AWS sends
   the whole event.
4. Rules are evaluated without looking at their state or kind: a scheduled rule (no pattern)
   "matches" every event, and its Lambda target then raises `NotImplementedError` — so a bus
   holding the daily reconcile schedule cannot take any event at all.
5. A Lambda event source mapping makes moto run the function itself (in Docker) as soon as a
   message or record arrives, consuming SQS messages before anyone else can read them.
6. AssumeRole succeeds for a role that does not exist, so an account vended by Control Tower
   (which has `AWSControlTowerExecution`, not `OrganizationAccountAccessRole`) cannot be told
   apart from a created one.
7. Event bus policies are stored but never consulted.
8. A bus target in another region (direct delivery mode's cross-region hop, issue 13) is
   delivered, but as in 2 with the envelope rewritten (new id, and the receiving region as
   `region`), and without looking for the `RoleArn` AWS requires of cross-region bus targets.

The sandbox changes moto in three places, all reverted on exit (`installed`):

- `Rule.send_to_targets` is replaced by `EventBridgeDelivery.send_to_targets`, which does what
  AWS does for the target kinds watershed uses: skips disabled and scheduled rules, delivers
  bus-to-bus with the envelope unchanged (1 hop only: a second cross-account or cross-region
  hop is dropped as AWS drops it, with THIRD_ACCOUNT_HOP_DETECTED / THIRD_REGION_HOP_DETECTED,
  a *model* of the limit, not a proof; a cross-region bus target without RoleArn is refused),
  sends SQS targets the whole event, publishes it to SNS targets (moto's EventBridge has no SNS
  target at all), and hands Kinesis
  targets to `EventBridgeToKinesisShim` — the one step of the pipeline that moto cannot do at
  all. A matched Lambda target is reported as not run (a notice) instead of failing PutEvents;
  every other target kind goes to moto's own code unchanged. A cross-account delivery is
  checked against a model of the receiving bus's policy (sandbox.bus_policy, on by default):
  no policy, one that does not name the sender's organization or account, or an organization
  grant to a target without RoleArn refuse it.
- `LambdaBackend.create_event_source_mapping` still creates and lists the mapping, but detaches
  it from the queue or stream, so that moto no longer invokes functions itself: the sandbox's
  poller (sandbox.poller) stands in for the event source mapping, and runs the handler
  in-process.
- `STSBackend.assume_role` (on by default) refuses a role that does not exist in the target
  account, with AccessDenied, as AWS does.

What none of this can prove: IAM policies are not evaluated (the roles' permissions, trust
policies, PassRole), bus policies are checked only by our model of the few conditions watershed
uses, and the hop limit is our model of AWS's documented rule.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import copy
import json
import threading
import warnings
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from sandbox import bus_policy
from sandbox.journal import Journal

# The EventBridge envelope, in the order AWS serialises it.
ENVELOPE_KEYS = (
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
)

# Rule states in which AWS matches events (the second one also sends read-only CloudTrail calls).
_MATCHING_STATES = {"ENABLED", "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"}

# How many bus-to-bus hops the event being delivered has already made (AWS allows one).
_HOPS: contextvars.ContextVar[int] = contextvars.ContextVar("watershed_sandbox_hops", default=0)


def format_event_time(value: Any) -> str:
    """An EventBridge `time`: ISO 8601 in UTC to the second, as AWS writes it."""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        moment = datetime.fromtimestamp(float(value), tz=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event as AWS delivers it to a target: the standard keys, in order, nothing else.

    moto's internal event carries `time` as epoch seconds and an `ingestion-time` of its own;
    neither is what a target receives.
    """
    result = {key: event[key] for key in ENVELOPE_KEYS if key in event}
    result["time"] = format_event_time(event.get("time", datetime.now(tz=UTC)))
    result.setdefault("resources", [])
    return result


def envelope_bytes(event: Mapping[str, Any]) -> bytes:
    """The bytes EventBridge writes for an event: compact JSON of the envelope."""
    return json.dumps(envelope(event), separators=(",", ":"), ensure_ascii=False).encode()


def json_path(document: Any, path: str) -> Any:
    """Resolve a simple EventBridge JSON path (`$.detail.accountId`); None when absent."""
    if path in ("$", ""):
        return document
    if not path.startswith("$."):
        raise ValueError(f"unsupported JSON path {path!r}: expected $.field.field")
    node = document
    for part in path[2:].split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _target_payload(target: Mapping[str, Any], event: Mapping[str, Any]) -> bytes:
    """What a target receives: the whole event, or what Input/InputPath/InputTransformer say."""
    if "Input" in target:
        return str(target["Input"]).encode()
    if "InputPath" in target:
        return json.dumps(json_path(envelope(event), target["InputPath"])).encode()
    if "InputTransformer" in target:
        from moto.events.utils import EventTemplateParser

        transformer = target["InputTransformer"]
        rendered = EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=envelope(event),
        )
        return (rendered if isinstance(rendered, str) else json.dumps(rendered)).encode()
    return envelope_bytes(event)


def _parse_arn(arn: str) -> tuple[str, str, str, str]:
    """(service, region, account, resource) of an ARN."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise ValueError(f"not an ARN: {arn!r}")
    return parts[2], parts[3], parts[4], parts[5]


class EventBridgeToKinesisShim:
    """Stands in for exactly one AWS step: EventBridge putting a matched event on a Kinesis target.

    moto matches the rule; this writes what EventBridge would write — the event's bytes (the
    whole envelope unless the target transforms its input) with PutRecord semantics, the
    partition key taken from `KinesisParameters.PartitionKeyPath` or else the event id. When the
    stream cannot take the record, the event goes to the target's dead-letter queue if it has
    one, as AWS does after its retries, and is otherwise dropped with a notice.
    """

    def __init__(self, journal: Journal | None = None) -> None:
        self._journal = journal or Journal()

    def deliver(self, rule: Any, target: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        """Put one matched event on the target's stream (rule: a moto Rule)."""
        from moto.kinesis.models import kinesis_backends

        _, region, account, resource = _parse_arn(target["Arn"])
        stream_name = resource.split("/", 1)[1]
        data = _target_payload(target, event)
        key_path = target.get("KinesisParameters", {}).get("PartitionKeyPath")
        partition_key = json_path(envelope(event), key_path) if key_path else event["id"]
        if partition_key is None or partition_key == "":
            partition_key = event["id"]
        backend = kinesis_backends[account][region]
        try:
            sequence_number, shard_id = backend.put_record(
                stream_arn=target["Arn"],
                stream_name=stream_name,
                partition_key=str(partition_key),
                explicit_hash_key=None,  # type: ignore[arg-type]
                data=base64.b64encode(data).decode(),
            )
        except Exception as err:  # any failure of the put is a failed invocation in AWS
            self._dead_letter(rule, target, event, data, f"{type(err).__name__}: {err}")
            return
        self._journal.record(
            event["id"],
            f"rule {rule.name} → Kinesis (shim)",
            f"{account} {region} stream {stream_name}",
            f"{shard_id} seq {sequence_number}",
        )

    def _dead_letter(
        self, rule: Any, target: Mapping[str, Any], event: Mapping[str, Any], data: bytes, why: str
    ) -> None:
        dlq_arn = target.get("DeadLetterConfig", {}).get("Arn")
        where = f"{rule.account_id} {rule.region_name} rule {rule.name}"
        if not dlq_arn:
            self._journal.notice("dropped", f"event {event['id']} at {where}: {why}, no DLQ")
            self._journal.record(event["id"], "dropped (no DLQ)", where, why)
            return
        _send_to_queue(dlq_arn, data.decode())
        self._journal.notice("dead-lettered", f"event {event['id']} at {where}: {why}")
        self._journal.record(event["id"], "dead-lettered", dlq_arn, why)


def _send_to_queue(queue_arn: str, body: str, group_id: str | None = None) -> None:
    from moto.sqs.models import sqs_backends

    _, region, account, queue_name = _parse_arn(queue_arn)
    sqs_backends[account][region].send_message(
        queue_name=queue_name, message_body=body, group_id=group_id
    )


class EventBridgeDelivery:
    """Replaces moto's `Rule.send_to_targets` with AWS's delivery for watershed's target kinds."""

    def __init__(
        self, kinesis: EventBridgeToKinesisShim, journal: Journal, enforce_bus_policies: bool = True
    ) -> None:
        self._kinesis = kinesis
        self._journal = journal
        self._enforce_bus_policies = enforce_bus_policies

    def send_to_targets(
        self, rule: Any, event: dict[str, Any], transform_input: bool = True
    ) -> None:
        """Deliver one event that reached `rule`'s bus (called by moto's put_events)."""
        if rule.state not in _MATCHING_STATES:
            return
        if rule.scheduled_expression and not rule.event_pattern.get_pattern():
            return  # a schedule never matches events
        if not rule.event_pattern.matches_event(event):
            return
        for target in rule.targets:
            service, region, account, resource = _parse_arn(target["Arn"])
            if service == "kinesis":
                self._kinesis.deliver(rule, target, event)
            elif service == "events" and resource.startswith("event-bus/"):
                self._to_bus(rule, target, event, account, region, resource.split("/", 1)[1])
            elif service == "sqs" and not {"Input", "InputPath", "InputTransformer"} & set(target):
                group = target.get("SqsParameters", {}).get("MessageGroupId")
                _send_to_queue(target["Arn"], envelope_bytes(event).decode(), group)
                self._journal.record(
                    event["id"], f"rule {rule.name} → SQS", f"{account} {region} queue {resource}"
                )
            elif service == "sns" and not {"Input", "InputPath", "InputTransformer"} & set(target):
                _publish_to_topic(target["Arn"], envelope_bytes(event).decode())
                self._journal.record(
                    event["id"], f"rule {rule.name} → SNS", f"{account} {region} topic {resource}"
                )
            elif service == "lambda":
                self._journal.notice(
                    "not-run",
                    f"rule {rule.name} ({rule.account_id} {rule.region_name}) matched event "
                    f"{event['id']} for Lambda target {target['Arn']}: the sandbox runs functions "
                    "only through their event source mappings",
                )
            else:
                single = copy.copy(rule)
                single.targets = [target]
                _MOTO_SEND_TO_TARGETS(single, event, transform_input)

    def _to_bus(
        self,
        rule: Any,
        target: Mapping[str, Any],
        event: dict[str, Any],
        account: str,
        region: str,
        bus_name: str,
    ) -> None:
        from moto.events.models import events_backends

        here = f"{rule.account_id} {rule.region_name}"
        crosses = account != rule.account_id or region != rule.region_name
        if crosses and _HOPS.get() >= 1:
            code = (
                "THIRD_ACCOUNT_HOP_DETECTED"
                if account != rule.account_id
                else "THIRD_REGION_HOP_DETECTED"
            )
            self._journal.notice("hop-limit", f"event {event['id']} at {here}: {code}")
            self._journal.record(event["id"], f"dropped: {code}", f"{here} rule {rule.name}")
            return
        if region != rule.region_name and not target.get("RoleArn"):
            # AWS requires RoleArn on a bus target in another region (direct delivery mode)
            self._refused(rule, target, event, "a cross-Region bus target needs a RoleArn")
            return
        try:
            bus = events_backends[account][region].describe_event_bus(bus_name)
        except Exception as err:
            self._journal.notice("dropped", f"event {event['id']}: bus {target['Arn']}: {err}")
            return
        if account != rule.account_id and self._enforce_bus_policies:
            verdict, unevaluated = bus_policy.evaluate(
                bus.policy, rule.account_id, bool(target.get("RoleArn"))
            )
            for text in unevaluated:
                self._journal.notice("policy-model", f"bus {target['Arn']}: {text}")
            if not verdict.allowed:
                self._refused(rule, target, event, verdict.reason)
                return
        self._journal.record(
            event["id"],
            f"rule {rule.name} → bus",
            f"{account} {region} {bus_name} bus",
            "role " + target["RoleArn"].rsplit("/", 1)[-1] if target.get("RoleArn") else "",
        )
        token = _HOPS.set(_HOPS.get() + (1 if crosses else 0))
        try:
            for receiving_rule in list(bus.rules.values()):
                receiving_rule.send_to_targets(copy.deepcopy(event))
        finally:
            _HOPS.reset(token)

    def _refused(
        self, rule: Any, target: Mapping[str, Any], event: dict[str, Any], reason: str
    ) -> None:
        """AWS retries a refused PutEvents, then dead-letters the event (or drops it)."""
        where = f"{rule.account_id} {rule.region_name} rule {rule.name}"
        message = f"event {event['id']} at {where} → {target['Arn']}: AccessDenied ({reason})"
        self._journal.notice("bus-policy", message)
        self._journal.record(event["id"], "refused by the receiving bus", target["Arn"], reason)
        dlq_arn = target.get("DeadLetterConfig", {}).get("Arn")
        if dlq_arn:
            _send_to_queue(dlq_arn, envelope_bytes(event).decode())


def _publish_to_topic(topic_arn: str, message: str) -> None:
    """What EventBridge does for an SNS target: publish the event; moto's SNS then delivers it to
    the topic's subscriptions (an SQS queue in another region too, as SNS does)."""
    from moto.sns.models import sns_backends

    _, region, account, _ = _parse_arn(topic_arn)
    sns_backends[account][region].publish(message=message, arn=topic_arn)


# moto's own implementations, kept for the targets the sandbox leaves to moto and for uninstall.
_MOTO_SEND_TO_TARGETS: Any = None


def _detached_create_event_source_mapping(original: Any) -> Any:
    def create_event_source_mapping(self: Any, spec: dict[str, Any]) -> Any:
        from moto.kinesis.models import kinesis_backends
        from moto.sqs.models import sqs_backends

        esm = original(self, spec)
        for queue in sqs_backends[self.account_id][self.region_name].queues.values():
            if queue.queue_arn == esm.event_source_arn:
                queue.lambda_event_source_mappings.pop(esm.function_arn, None)
        for stream in kinesis_backends[self.account_id][self.region_name].streams.values():
            if stream.arn == esm.event_source_arn:
                stream.lambda_event_source_mappings.pop(esm.event_source_arn, None)
        return esm

    return create_event_source_mapping


def _strict_assume_role(original: Any) -> Any:
    def assume_role(self: Any, **kwargs: Any) -> Any:
        from moto.iam.models import iam_backends
        from moto.sts.exceptions import STSClientError

        role_arn = kwargs["role_arn"]
        _, _, account, _ = _parse_arn(role_arn)
        partition = role_arn.split(":", 2)[1]
        try:
            iam_backends[account][partition].get_role_by_arn(role_arn)
        except Exception:
            raise STSClientError(
                "AccessDenied",
                f"User is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
            ) from None
        return original(self, **kwargs)

    return assume_role


_install_lock = threading.Lock()


@contextlib.contextmanager
def installed(
    journal: Journal, strict_assume_role: bool = True, enforce_bus_policies: bool = True
) -> Iterator[EventBridgeDelivery]:
    """Apply the sandbox's changes to moto for the duration of the block, then restore moto."""
    global _MOTO_SEND_TO_TARGETS
    from moto.awslambda.models import LambdaBackend
    from moto.events.models import Rule
    from moto.sts.models import STSBackend

    if not _install_lock.acquire(blocking=False):
        raise RuntimeError(
            "the sandbox's moto patches are already installed (one sandbox at a time)"
        )
    delivery = EventBridgeDelivery(EventBridgeToKinesisShim(journal), journal, enforce_bus_policies)
    saved = (
        Rule.send_to_targets,
        LambdaBackend.create_event_source_mapping,
        STSBackend.assume_role,
    )
    _MOTO_SEND_TO_TARGETS = saved[0]

    def send_to_targets(rule: Any, event: dict[str, Any], transform_input: bool = True) -> None:
        delivery.send_to_targets(rule, event, transform_input)

    try:
        Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]
        LambdaBackend.create_event_source_mapping = _detached_create_event_source_mapping(  # type: ignore[method-assign]
            saved[1]
        )
        if strict_assume_role:
            STSBackend.assume_role = _strict_assume_role(saved[2])  # type: ignore[method-assign]
        with warnings.catch_warnings():
            # moto warns once per unsupported CloudFormation type; the sandbox reports them itself
            warnings.filterwarnings("ignore", message="Tried to parse AWS::", module="moto")
            # moto's STS has no error shape for AccessDenied; the client still gets the code
            warnings.filterwarnings("ignore", message=r"Exception\(STSClientError\)")
            yield delivery
    finally:
        (
            Rule.send_to_targets,  # type: ignore[method-assign]
            LambdaBackend.create_event_source_mapping,  # type: ignore[method-assign]
            STSBackend.assume_role,  # type: ignore[method-assign]
        ) = saved
        _install_lock.release()
