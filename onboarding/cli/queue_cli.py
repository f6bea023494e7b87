"""`watershed backfill` and `watershed replay`: the organization-scale commands.

    watershed backfill --all [--regions r1,r2] [--queue-url URL | --inline] [--concurrency N]
                       [--dry-run] [--json] [--progress]
    watershed replay --dlq-url URL [--queue-url URL] [--max N] [--dry-run] [--json]

`backfill` selects every ACTIVE account (ListAccounts pages, minus EXCLUDED_ACCOUNTS and
EXCLUDED_OUS). With a queue (`--queue-url`, default WORK_QUEUE_URL) it enqueues one message per
account, exactly like the reconcile schedule; otherwise (`--inline`, or no queue configured) it
onboards them here, `--concurrency` accounts at a time (each with REGION_WORKERS region
threads), with a progress line on stderr when stderr is a terminal (or with `--progress`).
`replay` moves the dead-letter queue's requests back onto the work queue with a fresh retry
budget.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from onboarding.errors import InvalidRequest
from onboarding.events import AllAccountsRequest, parse_manual
from onboarding.queue.backfill import (
    DEFAULT_ACCOUNT_WORKERS,
    MAX_ACCOUNT_WORKERS,
    requests_for,
    run_inline,
)
from onboarding.queue.workqueue import (
    Dispatcher,
    QueueSendFailed,
    organization_selection,
    queue_region,
    replay_dead_letters,
    work_queue_for,
)
from onboarding.report import AccountReport, render_table
from onboarding.service import Onboarder
from onboarding.settings import Settings

COMMANDS = ("backfill", "replay")


def add_commands(commands: Any, config: argparse.ArgumentParser) -> None:
    """Register `backfill` and `replay` on the `watershed` sub-command parser."""
    backfill = commands.add_parser(
        "backfill",
        parents=[config],
        help="onboard every ACTIVE account (enqueue one message each, or run inline)",
    )
    backfill.add_argument(
        "--all", action="store_true", required=True, help="every ACTIVE account, minus exclusions"
    )
    backfill.add_argument("--regions", help="comma-separated subset of the hub regions")
    where = backfill.add_mutually_exclusive_group()
    where.add_argument("--queue-url", help="work queue to enqueue on (default: WORK_QUEUE_URL)")
    where.add_argument("--inline", action="store_true", help="onboard here, not via the queue")
    backfill.add_argument(
        "--concurrency",
        dest="concurrency",
        type=int,
        default=DEFAULT_ACCOUNT_WORKERS,
        help=f"accounts onboarded at once when inline (default {DEFAULT_ACCOUNT_WORKERS})",
    )
    backfill.add_argument("--dry-run", action="store_true", help="report changes, write nothing")
    backfill.add_argument("--json", action="store_true", help="print JSON")
    backfill.add_argument("--progress", action="store_true", help="progress line even if no tty")

    replay = commands.add_parser(
        "replay",
        parents=[config],
        help="move dead-lettered requests back onto the work queue (attempt 1)",
    )
    replay.add_argument("--dlq-url", required=True, help="the work dead-letter queue URL")
    replay.add_argument("--queue-url", help="the work queue (default: WORK_QUEUE_URL)")
    replay.add_argument("--max", type=int, default=None, help="replay at most this many")
    replay.add_argument("--dry-run", action="store_true", help="show, move nothing")
    replay.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "replay":
        return _replay(args, settings)
    return _backfill(args, settings)


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.concurrency <= MAX_ACCOUNT_WORKERS:
        print(f"watershed: --concurrency must be 1-{MAX_ACCOUNT_WORKERS}", file=sys.stderr)
        return 2
    request: dict[str, Any] = {"accounts": "ALL", "reason": "backfill", "dry_run": args.dry_run}
    if args.regions:
        request["regions"] = [r.strip() for r in args.regions.split(",") if r.strip()]
    try:
        [item] = parse_manual(request, settings)  # validates the regions
    except InvalidRequest as err:
        print(f"watershed: {err}", file=sys.stderr)
        return 2
    assert isinstance(item, AllAccountsRequest)

    onboarder = Onboarder(settings)
    queue_url = None if args.inline else (args.queue_url or settings.work_queue_url)
    if queue_url:
        enqueued = Dispatcher(onboarder, work_queue_for(onboarder, queue_url)).dispatch([item])
        if args.json:
            print(json.dumps(enqueued.as_dict(), indent=2))
        else:
            selection = enqueued.selection
            print(
                f"enqueued {len(enqueued.requests)} account(s) on {queue_url}"
                + (
                    f"; excluded {len(selection.excluded)}, not ACTIVE {len(selection.inactive)}"
                    if selection
                    else ""
                )
            )
        return 0

    selection = organization_selection(onboarder)
    requests = requests_for(selection, item, settings.retain_on_exclusion)
    progress = _Progress() if (args.progress or sys.stderr.isatty()) else None
    report = run_inline(onboarder, requests, args.concurrency, progress)
    if progress:
        progress.finish()
    if args.json:
        print(json.dumps({**report.as_dict(), **selection.as_dict()}, indent=2))
    else:
        print(render_table(report, plan=args.dry_run))
        if selection.excluded or selection.inactive:
            print(f"excluded {len(selection.excluded)}, not ACTIVE {len(selection.inactive)}")
    return 1 if report.any_region_failed else 0


class _Progress:
    """`backfill 37/120 · 35 ok · 1 failed · 1 refused` rewritten in place on stderr."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, done: int, total: int, report: AccountReport) -> None:
        self.counts[report.status] = self.counts.get(report.status, 0) + 1
        parts = " · ".join(f"{n} {s}" for s, n in sorted(self.counts.items()))
        sys.stderr.write(f"\rbackfill {done}/{total} · {parts}   ")
        sys.stderr.flush()

    def finish(self) -> None:
        sys.stderr.write("\n")


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    queue_url = args.queue_url or settings.work_queue_url
    if not queue_url:
        print("watershed: replay needs --queue-url or WORK_QUEUE_URL", file=sys.stderr)
        return 2
    onboarder = Onboarder(settings)
    sqs = onboarder.sessions.own().client("sqs", queue_region(args.dlq_url, settings.home_region))
    try:
        result = replay_dead_letters(sqs, args.dlq_url, queue_url, args.max, args.dry_run)
    except QueueSendFailed as err:
        print(f"watershed: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        verb = "would replay" if args.dry_run else "replayed"
        print(f"{verb} {len(result.replayed)} message(s) onto {queue_url}")
        for why in result.skipped:
            print(f"  left on the dead-letter queue: {why}")
    return 0
