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
  account is configured (every cell must come out `ok`), inline in one process;
- fanout: the same audit as the deployed function runs it (onboarding.audit.audit_fanout):
  the start (listing, one message per account sent while listing), then every message as the
  AuditWork mapping hands them over, in batches of 5, one invocation at a time here (so one
  invocation has this machine's core to itself: the function's 1,769 MB are one vCPU), the
  last one assembling the report from the groups' roll-ups. The bucket and the queue are the
  model's.

Printed per scenario: API calls per account (and the organization-wide ones), CPU ms per
account x region (process CPU, the model's subtracted), peak RSS, wall time, the floor the rate
limits set for 10,000 accounts x 17 regions, and the projection for 10,000 accounts:
`max(floor, wall x 10,000 / accounts)` — the run's throughput held constant (every per-account
cost is independent of the organization's size; only ListAccounts pages grow, and they are in
the floor) — with its ratio to the floor. For `fanout`, the projection is the deployed
audit's instead: AuditMaxConcurrency invocations (template default), each auditing a batch in
the wall time a batch took here, fed by the listing (the floor) and ramped up as Lambda scales
an SQS mapping (5 at first, 300 more a minute), then the assembly scaled to 10,000 accounts.
Then each Lambda handler's import time (cold start), in a fresh interpreter, median of 5.
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from awsmodel import DEFAULT_REGIONS, ORG_RATES, PAGE_SIZE, STS_RATE, Model

from onboarding.audit.audit import DEFAULT_ACCOUNT_WORKERS as AUDIT_WORKERS
from onboarding.audit.audit import Auditor
from onboarding.audit.audit_fanout import AuditStore, FanoutAudit
from onboarding.events import OnboardingRequest
from onboarding.queue.backfill import DEFAULT_ACCOUNT_WORKERS as BACKFILL_WORKERS
from onboarding.queue.backfill import run_inline, select_accounts
from onboarding.queue.workqueue import QueueWorker, WorkQueue
from onboarding.service import Onboarder
from onboarding.sessions import SessionFactory

ROOT = Path(__file__).resolve().parent.parent
TARGET_ACCOUNTS = 10_000
QUEUE_CONCURRENCY = 10  # template.yaml OnboardingMaxConcurrency default
AUDIT_BATCH = 5  # template.yaml AuditWork BatchSize
# Lambda's SQS mapping: 5 concurrent batches at first, up to 300 more a minute
# (docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html).
SQS_START, SQS_RAMP_PER_S = 5, 300 / 60
# Every Handler in template.yaml (read from it, so a new function is measured too).
HANDLERS = tuple(
    line.split("Handler:")[1].strip().rsplit(".", 1)[0]
    for line in (ROOT / "template.yaml").read_text().splitlines()
    if line.strip().startswith("Handler:")
)


def _template_default(parameter: str) -> int:
    """A parameter's Default in template.yaml (so the bench follows the template)."""
    lines = (ROOT / "template.yaml").read_text().splitlines()
    start = lines.index(f"  {parameter}:")
    for line in lines[start + 1 :]:
        if line.strip().startswith("Default:"):
            return int(line.split(":", 1)[1])
    raise KeyError(parameter)


AUDIT_CONCURRENCY = _template_default("AuditMaxConcurrency")


def one(scenario: str, accounts: int, regions: int, latency: float, limits: bool) -> dict:
    """Run one scenario in this process; returns its figures."""
    model = Model(accounts, latency=latency, rate_limits=limits)
    hub = DEFAULT_REGIONS[:regions]
    if scenario in ("audit", "fanout"):
        model.configure_all(hub)
    settings = model.settings(hub)
    if scenario == "fanout":
        return fanout(model, settings, accounts, regions, limits)
    factory = SessionFactory(settings, base_session=model.session(), hooks=model.hooks())
    onboarder = Onboarder(settings, factory)
    members = model.member_ids()

    def run() -> tuple[int, Counter[str]]:  # (concurrency, outcome)
        if scenario == "onboarding":
            with ThreadPoolExecutor(QUEUE_CONCURRENCY) as pool:
                reports = pool.map(lambda a: onboarder.onboard(OnboardingRequest(a)), members)
                return QUEUE_CONCURRENCY, Counter(r.status for r in reports)
        if scenario == "backfill":
            management = factory.management().client("organizations", settings.home_region)
            selection = select_accounts(management, onboarder.exclusions)
            requests = [OnboardingRequest(a, reason="backfill") for a in selection.accounts]
            report = run_inline(onboarder, requests, BACKFILL_WORKERS)
            return BACKFILL_WORKERS, Counter(r.status for r in report.accounts)
        audit = Auditor(settings, factory, account_workers=AUDIT_WORKERS).run()
        return AUDIT_WORKERS, Counter(audit.totals)

    (concurrency, outcome), measured = _timed(model, run)
    return {
        "scenario": scenario,
        "accounts": accounts,
        "audited_or_onboarded": len(members),
        "regions": regions,
        "concurrency": concurrency,
        "wall_s": measured["wall_s"],
        "cpu_s": measured["cpu_s"],
        "outcome": dict(outcome),
        **_figures(model),
    }


def _figures(model: Model) -> dict:
    """What every scenario reports of the model and the process."""
    return {
        "model_cpu_s": model.cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "calls": {f"{service}:{op}": n for (service, op), n in model.calls.items()},
        "attempts": model.attempts,
        "throttled": dict(model.throttled),
        "writes": model.writes(),
        "load": os.getloadavg()[0],
    }


def _fanout_on(model: Model, settings: Any) -> tuple[FanoutAudit, QueueWorker]:
    """The fanned-out audit and its queue consumer, on the model's bucket and queue."""
    queue_url = "https://sqs.us-east-1.amazonaws.com/100000000001/watershed-audit"
    settings = replace(settings, audit_bucket="bench-audit", audit_queue_url=queue_url)
    factory = SessionFactory(settings, base_session=model.session(), hooks=model.hooks())
    auditor = Auditor(settings, factory)
    own = factory.own()
    queue = WorkQueue(own.client("sqs", settings.home_region), queue_url)
    store = AuditStore(own.client("s3", settings.home_region), "bench-audit")
    audit = FanoutAudit(auditor, store, queue.send)
    return audit, QueueWorker(auditor.onboarder, queue, audit.audit_account)


def _timed(model: Model, step: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """Run `step`; its wall time and this process's CPU time, the model's own subtracted."""
    cpu0, wall0, model0 = time.process_time(), time.perf_counter(), model.cpu
    out = step()
    wall = time.perf_counter() - wall0
    return out, {"wall_s": wall, "cpu_s": time.process_time() - cpu0 - (model.cpu - model0)}


def fanout(model: Model, settings: Any, accounts: int, regions: int, limits: bool) -> dict:
    """The fanned-out audit, each part measured where it is cheapest to measure honestly:

    - the start at the full 10,000 accounts (it only lists and sends: 500 ListAccounts pages at
      8 a second, 1,000 SendMessageBatch calls), on an organization of that size;
    - every message of `accounts` accounts, as the AuditWork mapping hands them over in batches,
      one invocation at a time (one core here, one vCPU in Lambda), the last assembling;
    - the assembly of a 10,000-account run: 100 group roll-ups made of this run's results
      (account ids renumbered), assembled as the last worker would."""
    big = Model(TARGET_ACCOUNTS, latency=model.latency, rate_limits=limits)
    big_audit, _ = _fanout_on(big, settings)
    started_big, start = _timed(big, big_audit.start)
    assert len(big.messages) == started_big.expected == TARGET_ACCOUNTS + 2
    start_calls = dict(Counter({f"{s}:{op}": n for (s, op), n in big.calls.items()}))
    del big, big_audit

    audit, worker = _fanout_on(model, settings)
    started = audit.start()
    batches: list[float] = []

    def drain() -> None:  # every message, in batches as the AuditWork mapping hands them over
        while bodies := model.take_messages(AUDIT_BATCH):
            records = [
                {"messageId": f"m{len(batches)}-{i}", "body": body, "attributes": {}}
                for i, body in enumerate(bodies)
            ]
            wall0 = time.perf_counter()
            result = worker.process(records)
            batches.append(time.perf_counter() - wall0)
            assert not result.failures and not result.counts["MessagesRefused"], result

    _, workers = _timed(model, drain)
    report = audit.stored_report(started.run)
    assert report is not None, "the fanned-out audit assembled no report"

    run = _synthetic_run(model, started.run, TARGET_ACCOUNTS)
    key, assembly = _timed(model, lambda: audit.assemble(run))
    assert key is not None and len(audit.stored_report(run).accounts) == TARGET_ACCOUNTS
    return {
        "scenario": "fanout",
        "accounts": accounts,
        "audited_or_onboarded": started.expected,
        "regions": regions,
        "concurrency": AUDIT_CONCURRENCY,
        "start": start,
        "start_calls": start_calls,
        "batch_wall_s": batches,
        "assembly": assembly,
        "wall_s": sum(batches),
        "cpu_s": workers["cpu_s"],
        "outcome": dict(report.totals),
        **_figures(model),
    }


def _synthetic_run(model: Model, run: str, target: int) -> str:
    """A run of `target` accounts in the model's bucket, made of `run`'s results: its manifest
    with the accounts renumbered, and every group rolled up (what the last worker finds)."""
    from onboarding.audit import audit_fanout

    manifest = json.loads(model.objects[f"audits/{run}/manifest.json"])
    results = [
        r
        for key, body in model.objects.items()
        if key.startswith(f"audits/{run}/groups/")
        for r in json.loads(body)
    ]
    synthetic = f"{run}-x{target}"
    accounts, group = [], []
    for n in range(target):
        result = results[n % len(results)]
        account = f"{300000000000 + n:012d}"
        text = json.dumps(result).replace(result["account_id"], account)
        group.append(json.loads(text))
        accounts.append({"account_id": account, "name": result.get("name", "")})
        if len(group) == audit_fanout.GROUP_SIZE or n == target - 1:
            number = n // audit_fanout.GROUP_SIZE
            model.objects[f"audits/{synthetic}/groups/{number:05d}.json"] = json.dumps(
                group
            ).encode()
            group = []
    groups = math.ceil(target / audit_fanout.GROUP_SIZE)
    model.objects[f"audits/{synthetic}/manifest.json"] = json.dumps(
        {**manifest, "run": synthetic, "groups": groups, "accounts": accounts}
    ).encode()
    model.objects[f"audits/{synthetic}/listed.json"] = json.dumps({"groups": groups}).encode()
    return synthetic


def fanout_projection(r: dict, floor: float) -> dict[str, float]:
    """Seconds for the deployed fan-out audit of 10,000 accounts (module docstring).

    Not modelled: cold starts of the new instances (~0.2 s of imports each, overlapping the
    ramp-up), the mapping's own SQS receive and delete, TLS handshakes (every account has new
    clients, so new connections: their CPU is not in the per-account figure), round trips
    longer than `--latency-ms` to far regions, and EXCLUDE_TAG (the template then caps the
    audit at OnboardingMaxConcurrency). Invocations run one at a time here, so limits they
    would share (STS 600/s: 17 s for 10,000) are in the floor, not contended."""
    c = r["concurrency"]
    start = max(floor, r["start"]["wall_s"])  # measured at 10,000: the listing, sends overlapping
    batch = statistics.mean(r["batch_wall_s"])
    rate = c * AUDIT_BATCH / batch  # accounts per second at full concurrency
    ramp_s = max(0.0, c - SQS_START) / SQS_RAMP_PER_S
    ramp_lost = max(0.0, c - SQS_START) * ramp_s / 2 / c  # capacity not there while ramping
    workers = (
        max(start, TARGET_ACCOUNTS / rate + ramp_lost) + batch
    )  # + the last batch after its message
    assembly = r["assembly"]["wall_s"]  # measured at 10,000
    return {
        "start": start,
        "batch": batch,
        "rate": rate,
        "ramp_lost": ramp_lost,
        "workers": workers,
        "assembly": assembly,
        "total": workers + assembly,
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
        if r["scenario"] == "fanout":
            _print_fanout(r, floor, projected)
            continue
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


def _print_fanout(r: dict, floor: float, one_process: float) -> None:
    n = r["audited_or_onboarded"]
    p = fanout_projection(r, floor)
    batches = sorted(r["batch_wall_s"])
    print(
        f"  start, 10,000     {r['start']['wall_s']:.1f} s wall, {r['start']['cpu_s']:.1f} s CPU: "
        + ", ".join(f"{k} {v}" for k, v in sorted(r["start_calls"].items()))
        + "; each group of 100 sent as soon as it is listed"
    )
    print(
        f"  one invocation    batch of {AUDIT_BATCH}: {p['batch']:.2f} s mean, "
        f"{batches[len(batches) // 2]:.2f} s median, {batches[-1]:.2f} s max "
        f"({len(batches)} batches, one at a time on one core = the function's one vCPU); "
        f"CPU {r['cpu_s'] * 1000 / n:.0f} ms per account"
    )
    print(
        f"  assembly, 10,000  {r['assembly']['wall_s']:.1f} s wall, "
        f"{r['assembly']['cpu_s']:.1f} s CPU (100 roll-ups of this run's results read, "
        f"report.json and report.html written)"
    )
    print(
        f"  10,000 deployed   at AuditMaxConcurrency {r['concurrency']}: listing {p['start']:.0f} s"
        f" | {p['rate']:.0f} accounts/s, mapping ramp-up costs {p['ramp_lost']:.0f} s"
        f" -> last result at {p['workers']:.0f} s | assembly {p['assembly']:.0f} s"
        f"\n                    = {p['total']:.0f} s = {p['total'] / floor:.2f}x the floor"
        f" (one process, inline: {one_process:.0f} s = {one_process / floor:.0f}x)"
    )
    needed = next(
        (c for c in range(2, 1001)
         if fanout_projection({**r, "concurrency": c}, floor)["total"]
         <= 2 * floor),
        None,
    )  # fmt: skip
    print(f"  within 2x floor   from AuditMaxConcurrency {needed}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--regions", type=int, default=17, choices=range(1, 18), metavar="1-17")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument(
        "--scenarios", nargs="+", default=["onboarding", "backfill", "audit", "fanout"],
        choices=["onboarding", "backfill", "audit", "fanout"],
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
