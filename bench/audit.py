"""The coverage audit at organization scale: 1,000 accounts x 4 regions against moto.

Prints the audit's wall and CPU time, the AWS calls it made (per operation, per account, and
the ones shared by the whole organization), then the HTML report's size and render time for
1,000 and 2,000 accounts and - when Debian's chromium and chromedriver are installed - how long
the page takes to load and to apply the state filter and the search in headless Chromium.

    .venv/bin/python bench/audit.py [--accounts 1000] [--regions 4] [--account-workers 4]
                                    [--latency-ms 0] [--no-browser]

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

from onboarding.audit.audit import AccountAudit, Auditor, AuditReport
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


def measure_browser(path: Path, repeat: int = 5) -> dict | None:
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
        started = time.perf_counter()
        driver.get(path.as_uri())
        load = time.perf_counter() - started
        nodes = driver.execute_script("return document.getElementsByTagName('*').length")
        # Time the handler plus the layout it forces, as a click would cost it.
        timing = """
            const box = document.querySelector('#filters input[data-state="ok"]');
            const search = document.getElementById('search');
            const t0 = performance.now();
            box.checked = !box.checked; box.dispatchEvent(new Event('change'));
            document.body.offsetHeight;
            const t1 = performance.now();
            search.value = arguments[0]; search.dispatchEvent(new Event('input'));
            document.body.offsetHeight;
            const t2 = performance.now();
            search.value = ''; search.dispatchEvent(new Event('input'));
            box.checked = true; box.dispatchEvent(new Event('change'));
            document.body.offsetHeight;
            return [t1 - t0, t2 - t1];"""
        filters, searches = [], []
        for _ in range(repeat):
            toggle, search = driver.execute_script(timing, "bench-0001")
            filters.append(toggle)
            searches.append(search)
        return {
            "load_s": load,
            "dom_nodes": nodes,
            "filter_ms": statistics.median(filters),
            "search_ms": statistics.median(searches),
        }
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def run(args: argparse.Namespace) -> None:
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

    print("\nHTML report")
    print(
        f"{'accounts':>8} {'cells':>7} {'render s':>9} {'HTML KiB':>9} {'gzip KiB':>9} "
        f"{'JSON KiB':>9}"
    )
    pages_measured = []
    for label, total in (("1000", accounts), ("2000", max(2000, accounts))):
        measured = measure_html(more_accounts(report, total), label)
        pages_measured.append(measured)
        print(
            f"{measured['accounts']:>8} {measured['cells']:>7} {measured['render_s']:>9.2f} "
            f"{measured['bytes'] / 1024:>9.0f} {measured['gzip_bytes'] / 1024:>9.0f} "
            f"{measured['json_bytes'] / 1024:>9.0f}"
        )
    if args.no_browser:
        return
    for measured in pages_measured:
        browser = measure_browser(measured["path"])
        if browser is None:
            print("\n(headless Chromium not installed: page responsiveness not measured)")
            return
        print(
            f"\nheadless Chromium, {measured['accounts']} accounts: "
            f"load {browser['load_s']:.2f} s, "
            f"{browser['dom_nodes']} DOM nodes, state filter {browser['filter_ms']:.0f} ms, "
            f"search {browser['search_ms']:.0f} ms (handler + forced layout, median of 5)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--regions", type=int, default=4, choices=range(1, len(REGIONS) + 1))
    parser.add_argument("--account-workers", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--no-browser", action="store_true")
    run(parser.parse_args())
