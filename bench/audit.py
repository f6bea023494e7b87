"""The coverage audit at organization scale: 1,000 accounts x 4 regions against moto.

Prints the audit's wall and CPU time, the AWS calls it made (per operation, per account, and
the ones shared by the whole organization), then the HTML report's size and render time for
1,000 and 2,000 accounts (copies of the audited ones) and for a synthetic report of 10,000
accounts x 17 regions (built in memory, not audited: the page's cost only), and - when Debian's
chromium and chromedriver are installed - how long each page takes to load and to apply the state
filter and the search in headless Chromium, against the goals of issue 15: loads in under 2 s,
filters in under 200 ms.

    .venv/bin/python bench/audit.py [--accounts 1000] [--regions 4] [--account-workers 4]
                                    [--latency-ms 0] [--no-browser]
                                    [--html-only] [--html-accounts 10000] [--html-regions 17]

`--html-only` skips the audit against moto and measures the synthetic page alone (seconds).

Set-up is done straight in moto's backends (organization accounts through the API; detectors,
rules, targets and roles written into the member backends directly), because onboarding 1,000
accounts through the API would take longer than the audit itself. The mix: ~90% configured, 5%
drifted (a suspended detector), 3% never onboarded, 2% with a changed forwarder role.
moto runs in this process, so its CPU competes with the audit's threads for the GIL.

It takes about 8 minutes at 1,000 accounts on 2 cores (`--accounts 200` for a quick look). The
audit is CPU-bound here (no network latency to hide), so 4 account workers beat 16: more
threads only contend for the GIL. Against real AWS, latency dominates and more workers help.
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
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from _common import Meter, create_accounts, organization
from moto import mock_aws

from onboarding.audit.audit import AccountAudit, Auditor, AuditReport, Cell, Finding
from onboarding.audit.audit_html import render_html
from onboarding.resources.iam import (
    POLICY_NAME,
    management_permissions_policy,
    permissions_policy,
    trust_policy,
)
from onboarding.sessions import SessionFactory
from onboarding.settings import Settings, canonical_json

REGIONS = ("us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2", "us-west-2", "eu-north-1")
ALL_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
    "eu-central-1", "eu-west-1", "eu-west-2", "eu-west-3", "eu-north-1", "ap-south-1",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2",
)  # fmt: skip
LOAD_GOAL_S, FILTER_GOAL_MS = 2.0, 200.0
SHARED = ("ListAccounts", "DescribeAccount", "AssumeRole")  # from the management account
OUT = Path(__file__).parent / "out"


def setup(n_accounts: int, regions: tuple[str, ...]) -> tuple[Settings, dict[str, str]]:
    """An organization of n accounts; members configured straight in moto's backends."""
    from moto.ec2.models import ec2_backends
    from moto.events.models import events_backends
    from moto.guardduty.models import guardduty_backends
    from moto.iam.models import iam_backends

    orgs, management = organization()
    ids = create_accounts(orgs, n_accounts)
    security = ids[0]
    settings = Settings(security, management, regions, home_region="us-east-1")
    # moto keeps features as they arrive on the wire (rest-json member names are lower case).
    features = [{"name": f["Name"], "status": f["Status"]} for f in settings.features_list]
    kinds: dict[str, str] = {}
    for n, account in enumerate([management, *ids]):
        kind = "missing" if n % 33 == 7 else "drift" if n % 20 == 3 else "ok"
        kind = "role" if n % 50 == 11 else kind
        kinds[account] = kind
        _ = ec2_backends[account]["us-east-1"]  # moto builds an EC2 backend on first use: slow
        if kind == "missing":
            continue
        if account != security:
            iam = iam_backends[account]["aws"]
            iam.create_role(
                "watershed-forwarder",
                canonical_json(
                    trust_policy(settings, account if kind != "role" else "000000000000")
                ),
                "/",
                None,
                "",
                [],
                None,
            )
            # The management account's role is management.yaml's, with its declared policy.
            declared = (
                management_permissions_policy if account == management else permissions_policy
            )
            iam.put_role_policy(
                "watershed-forwarder", POLICY_NAME, canonical_json(declared(settings))
            )
        for r, region in enumerate(regions):
            guardduty_backends[account][region].create_detector(
                enable=not (kind == "drift" and r == 1),
                finding_publishing_frequency=settings.creation_frequency,
                data_sources={},
                tags={},
                features=features,
            )
            if account == security:
                continue
            events = events_backends[account][region]
            events.put_rule(
                "watershed-forward", event_pattern=settings.forward_pattern_json, state="ENABLED"
            )
            events.put_targets(
                "watershed-forward",
                None,
                [
                    {
                        "Id": "security-bus",
                        "Arn": settings.security_bus_arn(region),
                        "RoleArn": settings.forwarder_role_arn(account),
                    }
                ],
            )
    # The Security side: bus policy, stream and collect rule in every region.
    for region in regions:
        events = events_backends[security][region]
        org_id = orgs.describe_organization()["Organization"]["Id"]
        events.put_permission(
            "default",
            "events:PutEvents",
            "*",
            "WatershedOrganizationPutEvents",
            {"Type": "StringEquals", "Key": "aws:PrincipalOrgID", "Value": org_id},
            None,
        )
    return settings, kinds


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
        settings, kinds = setup(args.accounts, regions)
        set_up = time.perf_counter() - started
        factory = SessionFactory(settings, hooks=[("before-call", meter)])
        auditor = Auditor(settings, factory, account_workers=args.account_workers)
        cpu, wall = time.process_time(), time.perf_counter()
        report = auditor.run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    accounts = len(report.accounts)
    operations = meter.operations()
    calls, writes = meter.total, meter.writes
    states = Counter(a.state for a in report.accounts)
    expected = Counter(kinds.values())
    print(
        f"audit of {accounts} accounts x {len(regions)} regions against moto (in process), "
        f"{args.account_workers} account workers, {args.latency_ms:g} ms injected per call, "
        f"{datetime.now(UTC):%Y-%m-%d}\n"
    )
    print(f"set-up (not measured below): {set_up:.1f} s")
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
    parser.add_argument("--account-workers", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--html-only", action="store_true", help="the synthetic page only")
    parser.add_argument("--html-accounts", type=int, default=10_000)
    parser.add_argument("--html-regions", type=int, default=17, choices=range(1, 18))
    run(parser.parse_args())
