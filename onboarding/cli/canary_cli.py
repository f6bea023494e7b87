"""`watershed canary`: prove end to end that accounts and regions deliver, and how fast.

    watershed canary ACCOUNT... | --all [--regions r1,r2] [--timeout 600] [--json]
                     [--stream-arn ARN] [--finding-type TYPE]

Raises one GuardDuty sample finding per account x hub region and watches the destination
stream (DESTINATION_STREAM_ARN, or --stream-arn) for it; see onboarding/canary/canary.py and
docs/operations.md. Exit codes: 0 every raised finding arrived (skipped regions are listed, not
failures), 1 something did not arrive within the timeout or could not be raised, 2 bad
configuration or arguments, 3 the canary could not run (the stream or the organization could
not be read).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from onboarding.canary.canary import (
    DEFAULT_TIMEOUT_SECONDS,
    MAX_TIMEOUT_SECONDS,
    Canary,
    CanarySettings,
    organization_accounts,
    parse_finding_type,
    parse_stream_arn,
    render_table,
    without_tagged,
)
from onboarding.cli.arguments import (
    EXIT_FAILED,
    EXIT_NOT_OK,
    EXIT_OK,
    account_ids,
    region_subset,
    usage_error,
)
from onboarding.errors import ConfigError, InvalidRequest, StepFailed
from onboarding.settings import Settings


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register the `canary` subcommand on the CLI's subparsers."""
    canary = commands.add_parser(
        "canary",
        parents=parents,
        help="raise a GuardDuty sample finding per account x region and time its arrival",
        description="End-to-end canary: GuardDuty sample findings, watched on the destination "
        "stream (reads never remove records).",
    )
    canary.add_argument("accounts", nargs="*", metavar="ACCOUNT", help="12-digit account ids")
    canary.add_argument(
        "--all", action="store_true", help="every ACTIVE account that is not excluded"
    )
    canary.add_argument("--regions", help="comma-separated subset of the hub regions")
    canary.add_argument(
        "--timeout",
        type=int,
        default=None,
        metavar="SECONDS",
        help=f"how long to wait after the last call (default {DEFAULT_TIMEOUT_SECONDS}, "
        "or CANARY_TIMEOUT_SECONDS)",
    )
    canary.add_argument("--json", action="store_true", help="print the JSON report")
    canary.add_argument(
        "--stream-arn", metavar="DESTINATION_STREAM_ARN", help="overrides DESTINATION_STREAM_ARN"
    )
    canary.add_argument(
        "--finding-type", metavar="TYPE", help="overrides CANARY_FINDING_TYPE (a GuardDuty type)"
    )


def _canary_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> CanarySettings:
    env = dict(environ)
    if args.stream_arn:
        env["DESTINATION_STREAM_ARN"] = parse_stream_arn("--stream-arn", args.stream_arn)
    if args.finding_type:
        env["CANARY_FINDING_TYPE"] = parse_finding_type("--finding-type", args.finding_type)
    return CanarySettings.from_env(env)


def _accounts(args: argparse.Namespace) -> list[str]:
    if args.all == bool(args.accounts):
        raise InvalidRequest("give account ids or --all (not both)")
    return account_ids(args.accounts)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        settings = Settings.from_env(environ)
        canary_settings = _canary_settings(args, environ)
        accounts = _accounts(args)
        regions = region_subset(args.regions, settings) if args.regions else settings.hub_regions
        if args.timeout is not None and not 1 <= args.timeout <= MAX_TIMEOUT_SECONDS:
            raise InvalidRequest(f"--timeout {args.timeout} is not 1..{MAX_TIMEOUT_SECONDS}")
    except (ConfigError, InvalidRequest) as err:
        return usage_error(err)

    canary = Canary(settings, canary_settings)
    try:
        if args.all:
            accounts = without_tagged(canary, organization_accounts(canary))
        report = canary.run(accounts, regions, args.timeout)
    except (StepFailed, ClientError, BotoCoreError) as err:
        print(f"watershed: canary could not run: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(report.as_dict(), indent=2) if args.json else render_table(report))
    return EXIT_OK if report.ok else EXIT_NOT_OK
