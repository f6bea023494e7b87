"""The coverage audit at organization scale: 1,000 accounts x 4 regions against moto.

Prints the audit's wall and CPU time, the AWS calls it made (per operation, per account, and
the ones shared by the whole organization), then the HTML report's size and render time for
1,000 and 2,000 accounts (copies of the audited ones) and for a synthetic report of 10,000
accounts x 17 regions (built in memory, not audited: the page's cost only), and - when Debian's
chromium and chromedriver are installed - how long each page takes to load and to apply the state
filter and the search in headless Chromium, against the goals of issue 15: loads in under 2 s,
filters in under 200 ms.

    .venv/bin/python bench/audit.py [--accounts 1000] [--regions 4] [--delivery relay|direct]
                                    [--account-workers 4] [--latency-ms 0] [--no-browser]
                                    [--html-only] [--html-accounts 10000] [--html-regions 17]

`--html-only` skips the audit against moto and measures the synthetic page alone (seconds).

The organization is configured by watershed itself, so it cannot drift from what the audit
checks: the sandbox deploys management.yaml (the management account's launcher and forwarder
role) and template.yaml in every hub region of the Security account (bus policy, collect rule,
streams, the members' dead-letter queue) into moto's CloudFormation as the demo does; the
settings are the deployed onboarding function's environment; every account but the "missing"
ones is onboarded by `Onboarder` through the backfill's inline path (`run_inline`). Then the
mix is made behind watershed's back: ~90% as onboarded, 5% with a suspended detector in one
region (drift), 3% never onboarded (missing), 2% with a changed forwarder-role trust (drift in
every region). Before printing a figure the bench checks the report: the Security side `ok` in
every region and every cell in the state its account was set up for (the drift cells with
exactly their one finding) - management and Security accounts included, which are `ok` -
and otherwise exits 1 naming each unexpected cell. moto runs in this process, so its CPU
competes with the audit's threads for the GIL.

At 1,000 accounts on 2 cores the set-up takes ~5 minutes (onboarding through moto) and the
audit ~6 (`--accounts 50` for a quick look). The audit is CPU-bound here (no network latency to
hide), so 4 account workers beat 16: more threads only contend for the GIL. Against real AWS,
latency dominates and more workers help.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from _common import Meter, create_accounts, organization
from moto import mock_aws

from onboarding.audit.audit import AccountAudit, Auditor, AuditReport, Cell, Finding
from onboarding.audit.audit_html import render_html
from onboarding.events import OnboardingRequest
from onboarding.queue.backfill import run_inline
from onboarding.resources.iam import trust_policy
from onboarding.service import Onboarder
from onboarding.sessions import SessionFactory
from onboarding.settings import Settings, canonical_json
from sandbox import stacks

REGIONS = ("us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2", "us-west-2", "eu-north-1")
ALL_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
    "eu-central-1", "eu-west-1", "eu-west-2", "eu-west-3", "eu-north-1", "ap-south-1",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2",
)  # fmt: skip
LOAD_GOAL_S, FILTER_GOAL_MS = 2.0, 200.0
SHARED = ("ListAccounts", "DescribeAccount", "AssumeRole")  # from the management account
OUT = Path(__file__).parent / "out"
PROJECT = Path(__file__).resolve().parent.parent  # management.yaml, template.yaml, the code


def setup(
    n_accounts: int, regions: tuple[str, ...], delivery: str = "relay"
) -> tuple[Settings, dict[str, str]]:
    """An organization of n member accounts (the first is Security) configured by watershed
    itself: its templates deployed, then its accounts onboarded by the backfill's inline path,
    then the mix's drift made behind its back. Returns the settings the deployed function reads
    and each account's kind (kind_of)."""
    from moto.ec2.models import ec2_backends

    orgs, management = organization()
    ids = create_accounts(orgs, n_accounts)
    settings = deploy_watershed(orgs, management, ids[0], regions, delivery)
    kinds = {account: kind_of(n) for n, account in enumerate([management, *ids])}
    onboard = [OnboardingRequest(a) for a, kind in kinds.items() if kind != "missing"]
    for account, kind in kinds.items():
        if kind == "missing":  # never onboarded; moto builds an EC2 backend on first use: slow
            _ = ec2_backends[account][settings.home_region]
    report = run_inline(Onboarder(settings), onboard)
    failed = [a for a in report.accounts if a.status != "ok"]
    if failed:
        for account in failed[:20]:
            print(f"onboarding {account.account_id}: {account.status} {account.as_dict()}")
        raise SystemExit(f"bench set-up: {len(failed)} account(s) not onboarded, see above")
    sessions = SessionFactory(settings)
    for account, kind in kinds.items():
        if kind == "drift":  # suspended behind watershed's back
            guardduty = sessions.for_account(account).client("guardduty", drift_region(regions))
            detector = guardduty.list_detectors()["DetectorIds"][0]
            guardduty.update_detector(DetectorId=detector, Enable=False)
        elif kind == "role":  # trusts EventBridge on behalf of another account
            iam = sessions.for_account(account).client("iam", settings.home_region)
            trust = canonical_json(trust_policy(settings, "000000000000"))
            iam.update_assume_role_policy(
                RoleName=settings.forwarder_role_name, PolicyDocument=trust
            )
    return settings, kinds


def kind_of(n: int) -> str:
    """The mix, by position (0: management, 1: Security - both `ok`)."""
    kind = "missing" if n % 33 == 7 else "drift" if n % 20 == 3 else "ok"
    return "role" if n % 50 == 11 else kind


def drift_region(regions: tuple[str, ...]) -> str:
    return regions[min(1, len(regions) - 1)]


def deploy_watershed(
    orgs: Any, management: str, security: str, regions: tuple[str, ...], delivery: str
) -> Settings:
    """management.yaml in the management account, template.yaml in every hub region of the
    Security account (home region first), deployed into moto's CloudFormation the way the
    sandbox's demo does it (sandbox.stacks: packaged and translated as `sam deploy` would, the
    bus policy applied with PutPermission). Returns the Settings of the deployed onboarding
    function, read from its environment as Lambda hands it over (strings)."""
    warnings.filterwarnings("ignore", message="Tried to parse", category=UserWarning)
    home = regions[0]
    organization_id = orgs.describe_organization()["Organization"]["Id"]
    own = boto3.Session()  # moto's default account: the management account
    deployed = stacks.deploy(
        own,
        management,
        home,
        "watershed-management",
        stacks.load_template(PROJECT / "management.yaml"),
        {
            "SecurityAccountId": security,
            "SecurityHomeRegion": home,
            "OnboardingRoleArn": f"arn:aws:iam::{security}:role/watershed-onboarding",
            "OrganizationId": organization_id,
            "ControlTowerHomeRegion": home,
        },
    )
    # The Security account's admin role, reached from the management account as watershed does.
    session = SessionFactory(Settings(security, management, regions)).for_account(security).session
    template = stacks.load_template(PROJECT / "template.yaml")
    parameters = {
        "OrganizationId": organization_id,
        "ManagementAccountId": management,
        "HomeRegion": home,
        "HubRegions": ",".join(regions),
        "LauncherRoleArn": deployed.outputs["LauncherRoleArn"],
        "DeliveryMode": delivery,
    }
    environment: dict[str, str] = {}
    for region in regions:
        bucket = f"watershed-artifacts-{security}-{region}"
        packaged = stacks.package(template, PROJECT, session, region, bucket)
        translated = stacks.translate(packaged, region, security, parameters)
        stack = stacks.deploy(session, security, region, "watershed", translated, parameters)
        if region == home:
            function = session.client("lambda", region_name=region).get_function_configuration(
                FunctionName=stack.physical_id("OnboardingFunction")
            )
            variables = function["Environment"]["Variables"]
            environment = {name: str(value) for name, value in variables.items()}
    return Settings.from_env(environment)


def expected_cells(kind: str, regions: tuple[str, ...]) -> dict[str, tuple[str, str | None]]:
    """region -> (state, the one finding kind a drift cell must have) for an account of `kind`."""
    cells: dict[str, tuple[str, str | None]] = dict.fromkeys(regions, ("ok", None))
    if kind == "missing":
        cells = dict.fromkeys(regions, ("missing", None))
    elif kind == "role":
        cells = dict.fromkeys(regions, ("drift", "role-trust"))
    elif kind == "drift":
        cells[drift_region(regions)] = ("drift", "detector-suspended")
    return cells


def unexpected(report: AuditReport, kinds: dict[str, str]) -> list[str]:
    """Every Security region that is not `ok`, and every cell whose state (or drift finding)
    is not the one its account was set up for: empty when the organization is as built."""
    problems = [
        f"Security side {hub.region}: {hub.state}, expected ok ({hub.detail})"
        for hub in report.security
        if hub.state != "ok"
    ]
    audited = {a.account_id: a for a in report.accounts}
    problems += [f"{a}: not in the report" for a in kinds if a not in audited]
    problems += [f"{a}: audited but not set up" for a in audited if a not in kinds]
    for account, kind in kinds.items():
        if account not in audited:
            continue
        cells = audited[account].regions
        for region, (state, finding) in expected_cells(kind, report.regions).items():
            cell = cells.get(region)
            if cell is None:
                problems.append(f"{account} ({kind}) {region}: no cell, expected {state}")
                continue
            found = sorted({f.kind for f in cell.findings})
            if cell.state != state or (finding is not None and found != [finding]):
                expected = f"{state} ({finding})" if finding else state
                problems.append(
                    f"{account} ({kind}) {region}: {cell.state} {found or ''}, expected "
                    f"{expected}: {cell.detail or cell.error}"
                )
    return problems


def more_accounts(report: AuditReport, total: int) -> AuditReport:
    """The same report with copies of its accounts under new ids, up to `total` accounts."""
    accounts = list(report.accounts)
    n = 0
    while len(accounts) < total:
        source = report.accounts[n % len(report.accounts)]
        copy_id = f"{900000000000 + n:012d}"
        accounts.append(AccountAudit(copy_id, source.name + "-copy", source.regions))
        n += 1
    return replace(report, accounts=tuple(accounts))


def synthetic_report(n_accounts: int, n_regions: int) -> AuditReport:
    """A report of n accounts x n regions built in memory, with the audit's mix (~90% ok, 5%
    with a suspended detector, 3% never onboarded, 2% with a changed forwarder role everywhere)
    plus an error cell in 1% of the accounts, the last regions skipped (not enabled) in 10%, and
    every 7th account's ok cells carrying a GuardDuty hover (plans on, an administrator)."""
    regions = ALL_REGIONS[:n_regions]
    plain = {"mode": "manage", "status": "ENABLED", "plans_on": [], "findings_path": "forwarded"}
    rich = {
        "mode": "manage",
        "status": "ENABLED",
        "plans_on": ["S3_DATA_EVENTS", "RUNTIME_MONITORING"],
        "administrator": "999999999999",
        "findings_path": "natively (the Security account is its GuardDuty administrator)",
    }
    missing = tuple(
        Finding(kind, detail)
        for kind, detail in (
            ("detector-missing", "create detector"),
            ("rule-missing", "create rule watershed-forward"),
            ("target-missing", "put target security-bus"),
        )
    )
    role = Finding("role-trust", "forwarder role trust policy changed", is_global=True)
    accounts = []
    for n in range(n_accounts):
        cells: dict[str, Cell] = {}
        for r, region in enumerate(regions):
            if n % 10 == 0 and r >= n_regions - 3:
                cell = Cell("skipped", "region not enabled")
            elif n % 33 == 7:
                cell = Cell("missing", "nothing of ours", missing)
            elif n % 50 == 11:
                cell = Cell("drift", f"{role} ({region})", (role,), guardduty=plain)
            elif n % 20 == 3 and r == 1:
                suspended = {**plain, "status": "SUSPENDED"}
                cell = Cell("drift", "GuardDuty detector suspended", guardduty=suspended)
            elif n % 97 == 5 and r == 2:
                cell = Cell("error", "could not read GuardDuty", error="AccessDenied")
            else:
                cell = Cell("ok", guardduty=rich if n % 7 == 0 else plain)
            cells[region] = cell
        findings = (role,) if n % 50 == 11 else ()
        name = f"bench-{n:05d} workload {n % 13}"
        accounts.append(AccountAudit(f"{100000000000 + n:012d}", name, cells, findings))
    return AuditReport(
        datetime.now(UTC), regions, tuple(accounts), (), "100000000000", "100000000001", "o-bench"
    )


def measure_html(report: AuditReport, label: str) -> dict:
    started = time.perf_counter()
    page = render_html(report)
    render = time.perf_counter() - started
    data = page.encode()
    OUT.mkdir(exist_ok=True)
    path = OUT / f"audit-{label}.html"
    path.write_bytes(data)
    json_size = len(json.dumps(report.as_dict()).encode())
    return {
        "label": label,
        "accounts": len(report.accounts),
        "cells": sum(len(a.regions) for a in report.accounts),
        "render_s": render,
        "bytes": len(data),
        "gzip_bytes": len(gzip.compress(data)),
        "json_bytes": json_size,
        "path": path,
    }


def measure_browser(path: Path, last_id: str, repeat: int = 5) -> dict | None:
    chromium, driver_path = "/usr/bin/chromium", "/usr/bin/chromedriver"
    if not (Path(chromium).exists() and Path(driver_path).exists()):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="watershed-bench-")
    for flag in (
        "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
        "--disable-background-networking --disable-component-update --disable-sync "
        f"--window-size=1400,1000 --user-data-dir={profile}"
    ).split():
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        # Load: until the load event, which follows the page's script (JSON parsed, filter
        # index built, first page drawn); the first load, then the median of `repeat` reloads.
        loads, navigations = [], []
        for _ in range(1 + repeat):
            driver.get("about:blank")
            started = time.perf_counter()
            driver.get(path.as_uri())
            loads.append(time.perf_counter() - started)
            navigations.append(
                driver.execute_script(
                    "const n = performance.getEntriesByType('navigation')[0];"
                    "return n.loadEventEnd - n.startTime;"
                )
            )
        nodes = driver.execute_script("return document.getElementsByTagName('*').length")
        # Time the handler plus the layout it forces, as a click would cost it: untick ok (keep
        # the accounts with something to do), search an account on the last page, next page.
        timing = """
            const box = document.querySelector('#filters input[data-state="ok"]');
            const search = document.getElementById('search');
            const next = document.getElementById('next');
            const t0 = performance.now();
            search.value = arguments[0]; search.dispatchEvent(new Event('input'));
            document.body.offsetHeight;
            const t1 = performance.now();
            const found = document.querySelectorAll('#matrix tbody tr').length;
            search.value = ''; search.dispatchEvent(new Event('input'));
            const t2 = performance.now();
            box.checked = !box.checked; box.dispatchEvent(new Event('change'));
            document.body.offsetHeight;
            const t3 = performance.now();
            box.checked = true; box.dispatchEvent(new Event('change'));
            document.body.offsetHeight;
            const t4 = performance.now();
            next.click();
            document.body.offsetHeight;
            const t5 = performance.now();
            window.watershedPage(0);
            return [t3 - t2, t1 - t0, t5 - t4, found];"""
        filters, searches, pages = [], [], []
        for _ in range(repeat):
            toggle, search, page, found = driver.execute_script(timing, last_id)
            filters.append(toggle)
            searches.append(search)
            pages.append(page)
        return {
            "first_load_s": loads[0],
            "load_s": statistics.median(loads[1:]),
            "navigation_ms": statistics.median(navigations[1:]),
            "dom_nodes": nodes,
            "filter_ms": statistics.median(filters),
            "search_ms": statistics.median(searches),
            "page_ms": statistics.median(pages),
            "found": found,
        }
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def run(args: argparse.Namespace) -> None:
    reports: list[tuple[str, AuditReport]] = []
    if not args.html_only:
        report = audit(args)
        accounts = len(report.accounts)
        reports += [(str(accounts), report)]
        reports += [("2000", more_accounts(report, max(2000, accounts)))]
    synthetic = synthetic_report(args.html_accounts, args.html_regions)
    reports.append((f"{args.html_accounts}x{args.html_regions}-synthetic", synthetic))
    html(reports, browser=not args.no_browser)


def audit(args: argparse.Namespace) -> AuditReport:
    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    regions = REGIONS[: args.regions]
    meter = Meter(args.latency_ms / 1000)
    with mock_aws():
        started = time.perf_counter()
        settings, kinds = setup(args.accounts, regions, args.delivery)
        set_up = time.perf_counter() - started
        factory = SessionFactory(settings, hooks=[("before-call", meter)])
        auditor = Auditor(settings, factory, account_workers=args.account_workers)
        load_before = os.getloadavg()[0]
        cpu, wall = time.process_time(), time.perf_counter()
        report = auditor.run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        load_after = os.getloadavg()[0]

    problems = unexpected(report, kinds)
    if problems:  # the figures would measure some other audit than the normal one
        print(f"bench organization is not as set up: {len(problems)} unexpected cell(s)")
        for problem in problems[:30]:
            print(f"  {problem}")
        raise SystemExit(f"bench organization is not as set up ({len(problems)} cells, above)")
    accounts = len(report.accounts)
    operations = meter.operations()
    calls, writes = meter.total, meter.writes
    states = Counter(a.state for a in report.accounts)
    expected = Counter(kinds.values())
    print(
        f"audit of {accounts} accounts x {len(regions)} regions against moto (in process), "
        f"{args.delivery} delivery, {args.account_workers} account workers, "
        f"{args.latency_ms:g} ms injected per call, "
        f"{datetime.now(UTC):%Y-%m-%d}; load average (1 min) {load_before:.2f} before the "
        f"audit, {load_after:.2f} after\n"
    )
    print(
        f"set-up (not measured below): {set_up:.1f} s (management.yaml and template.yaml "
        f"deployed, {sum(k != 'missing' for k in kinds.values())} accounts onboarded by "
        "watershed, the mix's drift applied)"
    )
    print(
        f"organization check: every cell as set up - Security side ok in {len(regions)} "
        "regions, accounts ok except the mix (drift: a suspended detector in one region; "
        "role: a changed forwarder trust, every region; missing: never onboarded)"
    )
    print(f"audit wall time:   {wall:8.1f} s   ({accounts / wall:.1f} accounts/s)")
    print(f"audit CPU time:    {cpu:8.1f} s   (CPU/wall {cpu / wall:.2f}: the GIL-bound share)")
    print(f"AWS calls:         {calls:8d}   ({calls / accounts:.1f} per account), writes: {writes}")
    print(f"account states:    {dict(states)}   (set up: {dict(expected)})")
    print(f"cell totals:       {report.totals}")
    print("\ncalls per operation:")
    for op, n in sorted(operations.items(), key=lambda kv: -kv[1]):
        print(f"  {op:<28} {n:7d}{'  (shared by the organization)' if op in SHARED else ''}")
    pages = operations["ListAccounts"]
    assumes = operations["AssumeRole"]
    print(
        "\nshared limits at this size (real AWS): "
        f"ListAccounts {pages} pages at 8 req/s = {pages / 8:.1f} s; "
        f"AssumeRole {assumes} at 600 req/s = {assumes / 600:.1f} s; every other call is made "
        "inside a member, against that member's own quotas."
    )

    return report


def html(reports: list[tuple[str, AuditReport]], browser: bool) -> None:
    print("\nHTML report (the synthetic one: built in memory, not audited)")
    print(
        f"{'accounts':>8} {'regions':>7} {'cells':>7} {'render s':>9} {'HTML KiB':>9} "
        f"{'gzip KiB':>9} {'JSON KiB':>9}"
    )
    pages_measured = []
    for label, report in reports:
        measured = measure_html(report, label)
        measured["last_id"] = report.accounts[-1].account_id
        pages_measured.append(measured)
        print(
            f"{measured['accounts']:>8} {len(report.regions):>7} {measured['cells']:>7} "
            f"{measured['render_s']:>9.2f} {measured['bytes'] / 1024:>9.0f} "
            f"{measured['gzip_bytes'] / 1024:>9.0f} {measured['json_bytes'] / 1024:>9.0f}"
        )
    if not browser:
        return
    print(f"\nheadless Chromium (goals: load < {LOAD_GOAL_S:g} s, filter < {FILTER_GOAL_MS:g} ms)")
    for measured in pages_measured:
        timed = measure_browser(measured["path"], measured["last_id"])
        if timed is None:
            print("(headless Chromium not installed: page responsiveness not measured)")
            return
        slowest = max(timed["filter_ms"], timed["search_ms"], timed["page_ms"])
        load_ok = "within" if timed["load_s"] < LOAD_GOAL_S else "OVER"
        filter_ok = "within" if slowest < FILTER_GOAL_MS else "OVER"
        print(
            f"  {measured['label']}: load {timed['load_s']:.2f} s "
            f"(first {timed['first_load_s']:.2f} s; "
            f"load event at {timed['navigation_ms']:.0f} ms) [{load_ok} the goal], "
            f"{timed['dom_nodes']} DOM nodes; untick ok {timed['filter_ms']:.0f} ms, search the "
            f"last account {timed['search_ms']:.0f} ms (found {timed['found']} row), next page "
            f"{timed['page_ms']:.0f} ms [{filter_ok} the goal] (handler + forced layout, "
            "median of 5)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--regions", type=int, default=4, choices=range(1, len(REGIONS) + 1))
    parser.add_argument("--delivery", choices=("relay", "direct"), default="relay")
    parser.add_argument("--account-workers", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--html-only", action="store_true", help="the synthetic page only")
    parser.add_argument("--html-accounts", type=int, default=10_000)
    parser.add_argument("--html-regions", type=int, default=17, choices=range(1, 18))
    run(parser.parse_args())
