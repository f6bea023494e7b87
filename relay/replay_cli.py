"""`watershed relay-replay`: replay the relay's failure queue (see relay/replay.py).

    watershed relay-replay --failure-queue-url URL [--destination-stream-arn ARN]
                           [--oversize-bucket NAME] [--max N] [--seconds-per-message S] [--json]

The destination and the relay's tunables come from the relay's own variables
(DESTINATION_STREAM_ARN, OVERSIZE_BUCKET, RELAY_*); the flags override them. Run it with
credentials of the Security account that may read the regional stream, receive and delete from
the failure queue and write the destination (docs/operations.md). Exit codes: 0 every message
replayed, 1 a message was kept (destination still failing, unreadable) or records had expired,
2 bad configuration or arguments.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from typing import Any

import boto3

from relay.clients import CLIENT_CONFIG, Clients
from relay.errors import ConfigurationError
from relay.replay import STREAM_ARN, Replayer, ReplaySummary
from relay.service import Relay
from relay.settings import Settings

COMMAND = "relay-replay"
REGIONAL_STREAM_NAME = "watershed-regional"  # template.yaml RegionalStream
_QUEUE_URL = re.compile(
    r"\Ahttps://sqs[.-](?P<region>[a-z]{2}(-[a-z]+)+-[0-9])\.[^/]+/[0-9]{12}/[\w-]{1,80}\Z",
    re.ASCII,
)
_LOCAL_QUEUE_URL = re.compile(r"\Ahttps?://\S+/[0-9]{12}/[\w-]{1,80}\Z", re.ASCII)


def add_parser(commands: Any) -> None:
    """Register `relay-replay` on the `watershed` command's subparsers."""
    parser = commands.add_parser(
        COMMAND,
        help="replay the relay's failure queue from the regional stream (docs/operations.md)",
    )
    parser.add_argument("--failure-queue-url", required=True, help="the relay's failure queue")
    parser.add_argument("--destination-stream-arn", help="overrides DESTINATION_STREAM_ARN")
    parser.add_argument("--oversize-bucket", help="overrides OVERSIZE_BUCKET")
    parser.add_argument(
        "--regional-stream-arn",
        help="the only stream messages may name (default: watershed-regional in the queue's "
        "account and region)",
    )
    parser.add_argument("--region", help="the queue's region when its URL does not say it")
    parser.add_argument("--max", type=int, default=None, help="replay at most N messages")
    parser.add_argument(
        "--seconds-per-message", type=float, default=60.0, help="time budget of each message"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON summary")


def run(args: argparse.Namespace, environ: Mapping[str, str], session: Any = None) -> int:
    """Run the command; returns the exit code."""
    overrides = {
        "DESTINATION_STREAM_ARN": args.destination_stream_arn,
        "OVERSIZE_BUCKET": args.oversize_bucket,
    }
    env = {**environ, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        settings = Settings.from_env(env)
        region = _queue_region(args.failure_queue_url, args.region)
        if args.max is not None and args.max < 1:
            raise ConfigurationError("--max", f"{args.max} is below 1")
        if args.seconds_per_message <= 0:
            raise ConfigurationError("--seconds-per-message", "must be above 0")
        stream = args.regional_stream_arn or _regional_stream(
            settings.partition, region, args.failure_queue_url
        )
        if not STREAM_ARN.fullmatch(stream):
            raise ConfigurationError("--regional-stream-arn", f"{stream!r} is not a stream ARN")
    except ConfigurationError as err:
        print(f"watershed {COMMAND}: configuration error: {err}", file=sys.stderr)
        return 2
    session = session or boto3.Session()
    replayer = Replayer(
        Relay(settings, Clients(settings.destination_region, session)),
        session.client("sqs", region_name=region, config=CLIENT_CONFIG),
        lambda stream_region: session.client(
            "kinesis", region_name=stream_region, config=CLIENT_CONFIG
        ),
        seconds_per_message=args.seconds_per_message,
        source_stream_arn=stream,
    )
    summary = replayer.run(args.failure_queue_url, args.max)
    print(json.dumps(summary.as_dict(), indent=2) if args.json else render(summary))
    return 0 if summary.ok else 1


def render(summary: ReplaySummary) -> str:
    """One line per message, then the totals."""
    lines = []
    for detail in summary.details:
        where = f"{detail.get('shard', '?')} {detail.get('start', '?')}..{detail.get('end', '?')}"
        extra = detail.get("reason") or (
            f"delivered {detail.get('delivered', 0)}, expired {detail.get('expired', 0)}"
        )
        lines.append(f"{detail['outcome']:<22} {where}  {extra}")
    lines.append(
        f"{summary.messages} messages: {summary.replayed} replayed and deleted, {summary.kept} "
        f"kept (destination still failing), {summary.unreadable} unreadable; "
        f"{summary.records_delivered} records delivered, {summary.records_oversize_stored} "
        f"stored as oversize, {summary.records_expired} expired in {summary.expired_ranges} ranges"
    )
    return "\n".join(lines)


def _regional_stream(partition: str, region: str, queue_url: str) -> str:
    """The template's regional stream next to the failure queue (same account and region)."""
    account = queue_url.rstrip("/").split("/")[-2]
    return f"arn:{partition}:kinesis:{region}:{account}:stream/{REGIONAL_STREAM_NAME}"


def _queue_region(url: str, region: str | None) -> str:
    match = _QUEUE_URL.fullmatch(url)
    if match:
        return match["region"]
    if _LOCAL_QUEUE_URL.fullmatch(url) and region:
        return region
    raise ConfigurationError(
        "--failure-queue-url",
        f"{url!r} is not an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>; "
        "give --region for an endpoint that does not name one)",
    )
