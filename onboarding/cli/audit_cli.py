"""`watershed audit`: the coverage audit on the command line.

    watershed audit [--all | --accounts ID [ID ...]] [--regions r1,r2]
                    [--json FILE|-] [--html FILE] [--fix] [--allow-skipped]
                    [--account-workers N] [--canary-results FILE]
    watershed audit --via-queue [--queue-url URL] [--bucket NAME] [--timeout SECONDS] ...

`--via-queue` runs the audit the way the schedule does (onboarding.audit.audit_fanout): one message
per account on the audit queue (AUDIT_QUEUE_URL), the deployed function audits them and
assembles the report in the audit bucket; the CLI waits for report.json (up to `--timeout`,
then assembles what is there, every account without a result as `error`) and downloads it.
For organizations of thousands.

Read-only unless `--fix`. Prints every account x region that is not `ok` with the reason, then
the totals (a progress line goes to stderr while it runs, on a terminal only). Exit codes:
0 every cell and the Security side ok, 1 something is not ok (the audit's finding — before any
`--fix`: audit again to confirm a fix; `skipped` counts as not ok unless `--allow-skipped`),
2 bad configuration or arguments, 3 the audit could not run (the management account could not
be reached or listed).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from onboarding.audit.audit import DEFAULT_ACCOUNT_WORKERS, STATES, Auditor, AuditReport, Progress
from onboarding.audit.audit_fix import FixResult, enqueue, fix_requests, onboard_inline
from onboarding.audit.audit_html import render_html
from onboarding.canary.canary import CanaryResults, load_results
from onboarding.cli.arguments import (
    EXIT_FAILED,
    EXIT_NOT_OK,
    EXIT_OK,
    EXIT_USAGE,
    account_ids,
    region_subset,
    usage_error,
)
from onboarding.errors import ConfigError, InvalidRequest, StepFailed
from onboarding.queue.workqueue import work_queue_for
from onboarding.settings import Settings

POLL_SECONDS = 5


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register the `audit` subcommand on the CLI's subparsers."""
    audit = commands.add_parser(
        "audit",
        parents=parents,
        help="report every account x hub region: ok, drift, missing, skipped or error",
        description="Read-only coverage audit of the organization (writes only with --fix).",
    )
    which = audit.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every ACTIVE account (the default)")
    which.add_argument(
        "--accounts", nargs="+", metavar="ACCOUNT", help="only these 12-digit account ids"
    )
    audit.add_argument("--regions", help="comma-separated subset of the hub regions")
    audit.add_argument("--json", dest="json_file", metavar="FILE", help="write JSON (- = stdout)")
    audit.add_argument("--html", dest="html_file", metavar="FILE", help="write the HTML report")
    audit.add_argument(
        "--fix",
        action="store_true",
        help="hand every account that is not ok to onboarding (the work queue if "
        "WORK_QUEUE_URL is set, inline otherwise)",
    )
    audit.add_argument(
        "--queue-url",
        metavar="URL",
        help="overrides WORK_QUEUE_URL (--fix), and AUDIT_QUEUE_URL (--via-queue)",
    )
    audit.add_argument(
        "--allow-skipped",
        action="store_true",
        help="exit 0 even with skipped cells (region not enabled, denied by an SCP, account "
        "excluded); drift, missing and error still exit 1. Default: anything not ok exits 1",
    )
    audit.add_argument(
        "--canary-results",
        metavar="FILE",
        help="a `watershed canary --json` report: its result per account x region is shown "
        "next to the configuration (HTML) and included as `canary` (JSON)",
    )
    audit.add_argument(
        "--via-queue",
        action="store_true",
        help="fan the audit out through the audit queue (the deployed function audits, the "
        "report is assembled in the audit bucket and downloaded)",
    )
    audit.add_argument("--bucket", metavar="AUDIT_BUCKET", help="overrides AUDIT_BUCKET")
    audit.add_argument(
        "--timeout",
        type=int,
        default=1800,
        metavar="SECONDS",
        help="--via-queue: how long to wait for the report before assembling what is there",
    )
    audit.add_argument(
        "--account-workers",
        type=int,
        default=DEFAULT_ACCOUNT_WORKERS,
        metavar="N",
        help=f"accounts audited at once (default {DEFAULT_ACCOUNT_WORKERS})",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        settings = Settings.from_env(environ)
        accounts = _accounts(args.accounts)
        regions = _regions(args.regions, settings)
        if not 1 <= args.account_workers <= 64:
            raise InvalidRequest(f"--account-workers {args.account_workers} is not 1..64")
        canary = _canary_results(getattr(args, "canary_results", None))
    except (ConfigError, InvalidRequest) as err:
        return usage_error(err)

    auditor = Auditor(settings, account_workers=args.account_workers)
    if args.via_queue:
        try:
            via = _via_queue(auditor, args, accounts, regions)
        except InvalidRequest as err:
            print(f"watershed: {err}", file=sys.stderr)
            return EXIT_USAGE
        except StepFailed as err:
            print(f"watershed: audit could not run: {err}", file=sys.stderr)
            return EXIT_FAILED
        return _output(via, None, canary, args)
    meter = _ProgressLine(sys.stderr) if sys.stderr.isatty() else None
    try:
        report = auditor.run(accounts, regions, progress=meter)
    except StepFailed as err:
        print(f"watershed: audit could not run: {err}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if meter:
            meter.close()

    fix: FixResult | None = None
    if args.fix:
        requests = fix_requests(report)
        queue_url = args.queue_url or settings.work_queue_url
        if queue_url:
            fix = enqueue(work_queue_for(auditor.onboarder, queue_url), requests)
        else:
            fix = onboard_inline(auditor.onboarder, requests, args.account_workers)

    return _output(report, fix, canary, args)


def _output(
    report: AuditReport,
    fix: FixResult | None,
    canary: CanaryResults | None,
    args: argparse.Namespace,
) -> int:
    document: dict[str, Any] = report.as_dict()
    if fix is not None:
        document["fix"] = fix.as_dict()
    if canary is not None:
        document["canary"] = canary.as_dict()
    if args.html_file:
        Path(args.html_file).write_text(render_html(report, canary=canary), encoding="utf-8")
    if args.json_file == "-":
        print(json.dumps(document, indent=2))
    else:
        if args.json_file:
            Path(args.json_file).write_text(json.dumps(document, indent=2) + "\n")
        print(render_text(report))
        if fix is not None:
            print(fix.summary())
    return EXIT_OK if report.passes(allow_skipped=args.allow_skipped) else EXIT_NOT_OK


def _via_queue(
    auditor: Auditor,
    args: argparse.Namespace,
    accounts: list[str] | None,
    regions: tuple[str, ...] | None,
) -> AuditReport:
    """Start the fanned-out audit, wait for its report, return it."""
    from onboarding.audit.audit_fanout import AuditStore, FanoutAudit

    settings = auditor.settings
    # The stack's audit queue; a deployment without one takes audit messages on its work queue.
    queue_url = args.queue_url or settings.audit_queue_url or settings.work_queue_url
    if not args.queue_url and not settings.audit_queue_url and queue_url:
        print("AUDIT_QUEUE_URL not set: sending to WORK_QUEUE_URL", file=sys.stderr)
    bucket = args.bucket or settings.audit_bucket
    if accounts is not None or args.fix:
        raise InvalidRequest("--via-queue audits every ACTIVE account and cannot --fix")
    if not queue_url or not bucket:
        raise InvalidRequest(
            "--via-queue needs AUDIT_QUEUE_URL (or WORK_QUEUE_URL, --queue-url) and AUDIT_BUCKET"
        )
    queue = work_queue_for(auditor.onboarder, queue_url)
    s3 = auditor.sessions.own().client("s3", settings.home_region)
    fanout = FanoutAudit(auditor, AuditStore(s3, bucket), queue.send)
    started = fanout.start(regions)
    print(f"audit {started.run}: {started.expected} account(s) queued", file=sys.stderr)
    waited = 0
    while not fanout.finished(started.run) and waited < args.timeout:
        time.sleep(POLL_SECONDS)
        waited += POLL_SECONDS
    fanout.finalize(started.run)  # nothing if the function assembled it; else what is there
    report = fanout.stored_report(started.run)
    if report is None:
        raise InvalidRequest(f"audit {started.run}: no report in s3://{bucket}")
    return report


def _canary_results(path: str | None) -> CanaryResults | None:
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidRequest(f"--canary-results {path}: {err.strerror}") from None
    return load_results(text, path)


def _accounts(values: list[str] | None) -> list[str] | None:
    return None if values is None else account_ids(values)


def _regions(value: str | None, settings: Settings) -> tuple[str, ...] | None:
    return region_subset(value, settings) if value else None


def render_text(report: AuditReport) -> str:
    """What is not ok, one line per account x region, then the totals."""
    lines = [
        f"audit: {len(report.accounts)} account(s) x {len(report.regions)} region(s), "
        f"organization {report.organization_id or '(unknown)'}: "
        + ("all ok" if report.ok else "NOT OK")
    ]
    lines.append(f"security account {report.security_account_id}: {report.security_state}")
    for hub in report.security:
        if hub.state != "ok":
            error = f" [{hub.error}]" if hub.error else ""
            lines.append(f"  {hub.region:<15} {hub.state:<8}{error} {hub.detail}")
    if report.guardduty_administrators is not None:
        lines.append(guardduty_paths_line(report))
    problems = list(report.not_ok())
    if problems:
        lines.append(f"{'ACCOUNT':<12}  {'REGION':<15} {'STATE':<8} DETAIL")
        for account, region, cell in problems:
            error = f"[{cell.error}] " if cell.error else ""
            name = f" ({account.name})" if account.name else ""
            lines.append(
                f"{account.account_id:<12}  {region:<15} {cell.state:<8} {error}{cell.detail}{name}"
            )
    totals = report.totals
    lines.append("cells: " + ", ".join(f"{totals[s]} {s}" for s in STATES))
    return "\n".join(lines)


class _ProgressLine:
    """A single self-rewriting line on a terminal: `audit: 120/2000 accounts, 3 not ok`."""

    def __init__(self, stream: TextIO, interval: float = 0.2) -> None:
        self.stream = stream
        self.interval = interval
        self._last = 0.0
        self._shown = False
        self._lock = threading.Lock()  # called from the account threads

    def __call__(self, state: Progress) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.interval:
                return
            self._last = now
            total = state.total if state.total is not None else f"{state.listed}+"
            self.stream.write(f"\raudit: {state.done}/{total} accounts, {state.not_ok} not ok ")
            self.stream.flush()
            self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()


def guardduty_paths_line(report: AuditReport) -> str:
    """Which path GuardDuty findings take to the Security bus, region by region."""
    security = report.security_account_id
    parts = []
    for region, admin in (report.guardduty_administrators or {}).items():
        if admin == security:
            parts.append(f"{region} native for its members (Security is the administrator)")
        elif admin:
            parts.append(f"{region} forwarded (administrator {admin})")
        else:
            parts.append(f"{region} forwarded")
    return "GuardDuty findings: " + "; ".join(parts)
