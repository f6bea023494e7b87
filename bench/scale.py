"""Organization scale: watershed's own cost per account, against a model of AWS, not moto.

    .venv/bin/python bench/scale.py [--accounts 1000] [--regions 17] [--latency-ms 50]
                                    [--scenarios onboarding backfill audit] [--no-rate-limits]

AWS is `awsmodel.Model`: botocore builds, signs, sends (to a `before-send` hook), parses and
retries every call as against AWS; each HTTP attempt takes `--latency-ms`; the calls AWS limits
organization-wide are throttled at their documented rates with AWS's own errors
(DescribeAccount 20/s, ListAccounts 8/s, STS 600/s per caller and region), so the SDK's
retries run. The model's own CPU time is measured and subtracted.

Scenarios, each in its own process (so peak RSS is that scenario's own):

- onboarding: every member onboarded as the work-queue consumer does it (one request per
  account: DescribeAccount, assume role, forwarder role, regions, region steps), at the
  template's OnboardingMaxConcurrency (10 concurrent requests), on an organization where
  nothing is configured yet;
- backfill: `watershed backfill` without a queue (ListAccounts pages, then every ACTIVE
  account at its default 8 at a time, membership taken from the pages), also from scratch;
- audit: `watershed audit` (default 16 accounts at a time) of an organization where every
  account is configured (every cell must come out `ok`).

Printed per scenario: API calls per account (and the organization-wide ones), CPU ms per
account x region (process CPU, the model's subtracted), peak RSS, wall time, the floor the rate
limits set for 10,000 accounts x 17 regions, and the projection for 10,000 accounts:
`max(floor, wall x 10,000 / accounts)` — the run's throughput held constant (every per-account
cost is independent of the organization's size; only ListAccounts pages grow, and they are in
the floor) — with its ratio to the floor. Then each Lambda handler's import time (cold start),
in a fresh interpreter, median of 5.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from awsmodel import DEFAULT_REGIONS, ORG_RATES, PAGE_SIZE, STS_RATE, Model

from onboarding.audit.audit import DEFAULT_ACCOUNT_WORKERS as AUDIT_WORKERS
from onboarding.audit.audit import Auditor
from onboarding.events import OnboardingRequest
from onboarding.queue.backfill import DEFAULT_ACCOUNT_WORKERS as BACKFILL_WORKERS
from onboarding.queue.backfill import run_inline, select_accounts
from onboarding.service import Onboarder
from onboarding.sessions import SessionFactory

ROOT = Path(__file__).resolve().parent.parent
TARGET_ACCOUNTS = 10_000
QUEUE_CONCURRENCY = 10  # template.yaml OnboardingMaxConcurrency default
# Every Handler in template.yaml (read from it, so a new function is measured too).
HANDLERS = tuple(
    line.split("Handler:")[1].strip().rsplit(".", 1)[0]
    for line in (ROOT / "template.yaml").read_text().splitlines()
    if line.strip().startswith("Handler:")
)


def one(scenario: str, accounts: int, regions: int, latency: float, limits: bool) -> dict:
    """Run one scenario in this process; returns its figures."""
    model = Model(accounts, latency=latency, rate_limits=limits)
    hub = DEFAULT_REGIONS[:regions]
    if scenario == "audit":
        model.configure_all()
    settings = model.settings(hub)
    factory = SessionFactory(settings, base_session=model.session(), hooks=model.hooks())
    onboarder = Onboarder(settings, factory)
    members = model.member_ids()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    if scenario == "onboarding":
        concurrency = QUEUE_CONCURRENCY
        with ThreadPoolExecutor(concurrency) as pool:
            reports = list(pool.map(lambda a: onboarder.onboard(OnboardingRequest(a)), members))
        outcome = Counter(r.status for r in reports)
    elif scenario == "backfill":
        concurrency = BACKFILL_WORKERS
        management = factory.management().client("organizations", settings.home_region)
        selection = select_accounts(management, onboarder.exclusions)
        requests = [OnboardingRequest(a, reason="backfill") for a in selection.accounts]
        report = run_inline(onboarder, requests, concurrency)
        outcome = Counter(r.status for r in report.accounts)
    else:
        concurrency = AUDIT_WORKERS
        audit = Auditor(settings, factory, account_workers=concurrency).run()
        outcome = Counter(audit.totals)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    calls = Counter({f"{service}:{op}": n for (service, op), n in model.calls.items()})
    return {
        "scenario": scenario,
        "accounts": accounts,
        "audited_or_onboarded": len(members),
        "regions": regions,
        "concurrency": concurrency,
        "wall_s": wall,
        "cpu_s": cpu - model.cpu,
        "model_cpu_s": model.cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "calls": dict(calls),
        "attempts": model.attempts,
        "throttled": dict(model.throttled),
        "writes": model.writes(),
        "outcome": dict(outcome),
        "load": os.getloadavg()[0],
    }


def floor_seconds(result: dict, target: int) -> dict[str, float]:
    """Seconds the rate limits alone need for `target` accounts, per limited operation."""
    accounts = result["audited_or_onboarded"]
    floors: dict[str, float] = {}
    for name, n in result["calls"].items():
        service, op = name.split(":")
        if op == "ListAccounts":  # pages of 20, whatever the number of accounts
            floors[op] = math.ceil(target / PAGE_SIZE) / ORG_RATES[op]
        elif service == "organizations" and op in ORG_RATES:
            floors[op] = _scaled(n, accounts, target) / ORG_RATES[op]
        elif service == "sts":  # every AssumeRole comes from the management account's region
            floors[op] = _scaled(n, accounts, target) / STS_RATE
    return floors


def _scaled(calls: int, accounts: int, target: int) -> float:
    """Calls for `target` accounts: per-account calls scale, a few calls per run (fewer than
    one per two accounts, e.g. the audit's one DescribeAccount of the management account) not."""
    return calls / accounts * target if calls * 2 >= accounts else float(calls)


def import_times(repeat: int = 5) -> dict[str, float]:
    """Median seconds to import each Lambda handler module in a fresh interpreter."""
    code = "import time, importlib, sys; t = time.perf_counter(); importlib.import_module(sys.argv[1]); print(time.perf_counter() - t)"  # noqa: E501
    out: dict[str, float] = {}
    for module in HANDLERS:
        samples = []
        for _ in range(repeat):
            done = subprocess.run(
                [sys.executable, "-c", code, module],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            )
            samples.append(float(done.stdout.strip()))
        out[module] = statistics.median(samples)
    return out


def report(results: list[dict], args: argparse.Namespace) -> None:
    print(
        f"watershed at scale: {args.accounts} accounts x {args.regions} regions, "
        f"{args.latency_ms:g} ms per AWS call, rate limits "
        f"{'on' if not args.no_rate_limits else 'off'} (AWS modelled at botocore's HTTP layer)\n"
    )
    for r in results:
        n, regions = r["audited_or_onboarded"], r["regions"]
        org_wide = {
            k: v for k, v in r["calls"].items() if k.split(":")[0] in ("organizations", "sts")
        }
        floors = floor_seconds(r, TARGET_ACCOUNTS)
        floor = max(floors.values(), default=0.0)
        projected = max(floor, r["wall_s"] * TARGET_ACCOUNTS / n)
        print(f"== {r['scenario']} (concurrency {r['concurrency']}, load avg {r['load']:.1f})")
        print(f"  outcome           {r['outcome']}; writes {r['writes']}")
        print(
            f"  calls per account {sum(r['calls'].values()) / n:.1f} "
            f"(organization-wide: "
            + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(org_wide.items()))
            + f"); HTTP attempts {r['attempts']}, throttled {r['throttled'] or 'none'}"
        )
        print(
            f"  CPU               {r['cpu_s'] * 1000 / (n * regions):.1f} ms per account x region "
            f"({r['cpu_s']:.1f} s in all; the model's own {r['model_cpu_s']:.1f} s subtracted)"
        )
        print(f"  peak RSS          {r['peak_rss_mb']:.0f} MB (the model's organization included)")
        print(f"  wall              {r['wall_s']:.1f} s ({n / r['wall_s']:.1f} accounts/s)")
        print(
            f"  floor 10,000 x 17 {floor:.0f} s, set by "
            + (", ".join(f"{op} {s:.0f} s" for op, s in sorted(floors.items())) or "nothing")
        )
        print(
            f"  10,000 projected  {projected:.0f} s here = {projected / floor:.1f}x the floor"
            if floor
            else f"  10,000 projected  {projected:.0f} s here (no rate-limited call)"
        )
        cpu_10k = r["cpu_s"] / n * TARGET_ACCOUNTS
        print(
            f"  CPU for 10,000    {cpu_10k:.0f} s of one core: one process is bound by its CPU "
            f"(GIL) below {cpu_10k:.0f} s, whatever the concurrency\n"
        )
    if not args.no_imports:
        print("cold start: import time of each handler module (fresh interpreter, median of 5)")
        for module, seconds in import_times().items():
            print(f"  {module:<20} {seconds * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--regions", type=int, default=17, choices=range(1, 18), metavar="1-17")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument(
        "--scenarios", nargs="+", default=["onboarding", "backfill", "audit"],
        choices=["onboarding", "backfill", "audit"],
    )  # fmt: skip
    parser.add_argument("--no-rate-limits", action="store_true")
    parser.add_argument("--no-imports", action="store_true", help="skip the import times")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one scenario, print JSON
    args = parser.parse_args()
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    if args.one:
        result = one(
            args.one, args.accounts, args.regions, args.latency_ms / 1000, not args.no_rate_limits
        )
        print(json.dumps(result))
        return
    results = []
    for scenario in args.scenarios:
        command = [sys.executable, __file__, "--one", scenario, "--accounts", str(args.accounts)]
        command += ["--regions", str(args.regions), "--latency-ms", str(args.latency_ms)]
        command += ["--no-rate-limits"] if args.no_rate_limits else []
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            sys.exit(f"{scenario} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    report(results, args)


if __name__ == "__main__":
    main()
