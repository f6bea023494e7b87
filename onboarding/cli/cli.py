"""The `watershed` command line.

    watershed onboard ACCOUNT... [--regions r1,r2] [--dry-run] [--json]
    watershed plan ACCOUNT... [--regions r1,r2] [--json]
    watershed remove ACCOUNT... | --all [--regions r1,r2] [--dry-run] [--json] [--guardduty]
    watershed audit [--all | --accounts ID...] [--regions r1,r2] [--json FILE] [--html FILE] [--fix]
    watershed backfill --all [--regions r1,r2] [--queue-url URL | --inline] [--concurrency N]
    watershed replay --dlq-url URL [--queue-url URL] [--max N] [--dry-run]
    watershed canary ACCOUNT... | --all [--regions r1,r2] [--timeout 600] [--json]
    watershed relay-replay --failure-queue-url URL [--destination-stream-arn ARN] [--max N]
    watershed demo [--regions N|r1,r2] [--accounts N] [--delivery relay|direct]   (the sandbox)

Configuration comes from the same environment variables as the Lambda function (see
docs/configuration.md); the flags below override them. Works against real AWS credentials and
against any endpoint set with AWS_ENDPOINT_URL (e.g. a moto server). Exit codes: 0 everything
ok, 1 an account was refused or a region failed, 2 bad configuration or arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from onboarding.cli import audit_cli, canary_cli, queue_cli
from onboarding.errors import ConfigError, InvalidRequest
from onboarding.events import parse_manual
from onboarding.report import render_table
from onboarding.service import Onboarder
from onboarding.settings import Settings
from relay import replay_cli

# flag → environment variable it overrides
OVERRIDES = {
    "security_account_id": "SECURITY_ACCOUNT_ID",
    "management_account_id": "MANAGEMENT_ACCOUNT_ID",
    "hub_regions": "HUB_REGIONS",
    "launcher_role_arn": "LAUNCHER_ROLE_ARN",
    "member_role_names": "MEMBER_ROLE_NAMES",
    "workers": "REGION_WORKERS",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watershed",
        description="Onboard AWS accounts: GuardDuty and event forwarding in every hub region.",
    )
    config = argparse.ArgumentParser(add_help=False)
    group = config.add_argument_group("configuration (overrides the environment variable)")
    for dest, variable in OVERRIDES.items():
        flag = "--" + dest.replace("_", "-")
        group.add_argument(flag, dest=dest, metavar=variable, help=f"overrides {variable}")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("accounts", nargs="+", metavar="ACCOUNT", help="12-digit account ids")
    common.add_argument("--regions", help="comma-separated subset of the hub regions")
    common.add_argument("--json", action="store_true", help="print the JSON report")

    commands = parser.add_subparsers(dest="command", required=True)
    onboard = commands.add_parser(
        "onboard", parents=[common, config], help="configure accounts (writes only differences)"
    )
    onboard.add_argument("--dry-run", action="store_true", help="show changes, write nothing")
    commands.add_parser(
        "plan", parents=[common, config], help="show what onboarding would change; writes nothing"
    )
    _add_remove(commands, config)  # offboarding (docs/deploy.md, "Uninstall")
    audit_cli.add_parser(commands, parents=[config])  # coverage audit (docs/operations.md)
    queue_cli.add_commands(commands, config)  # backfill, replay (organization scale)
    canary_cli.add_parser(commands, parents=[config])  # end-to-end canary (docs/operations.md)
    replay_cli.add_parser(commands)  # the relay's failure queue (docs/operations.md)
    commands.add_parser(
        "demo", help="the whole pipeline on an embedded AWS (watershed demo --help)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        # Imported only here: the sandbox needs moto and aws-sam-translator (the dev extra).
        from sandbox.cli import main as demo

        return demo(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == replay_cli.COMMAND:  # the relay's variables, not onboarding's
        return replay_cli.run(args, os.environ)
    environ = dict(os.environ)
    for dest, variable in OVERRIDES.items():
        value = getattr(args, dest)
        if value is not None:
            environ[variable] = value
    if args.command == "audit":
        return audit_cli.run(args, environ)
    if args.command == "canary":
        return canary_cli.run(args, environ)
    if args.command in queue_cli.COMMANDS:
        try:
            settings = Settings.from_env(environ)
        except ConfigError as err:
            print(f"watershed: configuration error: {err}", file=sys.stderr)
            return 2
        return queue_cli.run(args, settings)
    dry_run = args.command == "plan" or bool(getattr(args, "dry_run", False))

    try:
        settings = Settings.from_env(environ)
        request: dict[str, object] = {"accounts": args.accounts, "dry_run": dry_run}
        request["reason"] = "cli"
        if args.command == "remove":
            request = _remove_request(args, dry_run)
        if args.regions:
            request["regions"] = [r.strip() for r in args.regions.split(",") if r.strip()]
        requests = parse_manual(request, settings)
    except ConfigError as err:
        print(f"watershed: configuration error: {err}", file=sys.stderr)
        return 2
    except InvalidRequest as err:
        print(f"watershed: {err}", file=sys.stderr)
        return 2

    report = Onboarder(settings).handle(requests)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(render_table(report, plan=dry_run))
    return 0 if report.ok else 1


def _add_remove(commands: argparse._SubParsersAction, config: argparse.ArgumentParser) -> None:
    remove = commands.add_parser(
        "remove",
        parents=[config],
        help="take watershed out of accounts: rule, target, role (writes only what exists)",
    )
    remove.add_argument("accounts", nargs="*", metavar="ACCOUNT", help="12-digit account ids")
    remove.add_argument(
        "--all", action="store_true", help="every ACTIVE account, excluded ones included"
    )
    remove.add_argument("--regions", help="comma-separated subset of the hub regions")
    remove.add_argument("--dry-run", action="store_true", help="show changes, write nothing")
    remove.add_argument("--json", action="store_true", help="print the JSON report")
    remove.add_argument(
        "--guardduty",
        action="store_true",
        help="also delete GuardDuty detectors watershed created (tagged managed-by=watershed)",
    )


def _remove_request(args: argparse.Namespace, dry_run: bool) -> dict[str, object]:
    if bool(args.all) == bool(args.accounts):
        raise InvalidRequest("remove: give account ids or --all (one of them)")
    return {
        "remove": "ALL" if args.all else args.accounts,
        "dry_run": dry_run,
        "guardduty": args.guardduty,
        "reason": "cli",
    }
