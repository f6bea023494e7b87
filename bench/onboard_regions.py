"""Onboarding one account across 1 and 17 regions: wall time and API calls, parallel vs serial.

Runs against moto (in process) with an injected per-call latency (default 50 ms, a botocore
`before-call` hook that sleeps), so the figures show how the design behaves when every call
costs a round trip, not how fast moto is. For each case a fresh member account is onboarded
(first run: everything is created), then onboarded again (re-run: must write nothing).

    .venv/bin/python bench/onboard_regions.py [--latency-ms 50] [--workers 20] [--repeat 3]

moto runs in this process, so its own CPU time (and botocore's) competes with the region
threads for the GIL; `--latency-ms 0` shows that floor.
"""

from __future__ import annotations

import argparse
import os
import time

from _common import Meter, create_account, organization
from moto import mock_aws

from onboarding.events import OnboardingRequest
from onboarding.service import Onboarder
from onboarding.sessions import SessionFactory
from onboarding.settings import Settings

# The 17 regions every account has enabled by default (no opt-in needed).
DEFAULT_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
    "eu-central-1", "eu-west-1", "eu-west-2", "eu-west-3", "eu-north-1", "ap-south-1",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2",
)  # fmt: skip


def run(args: argparse.Namespace) -> None:
    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    meter = Meter(args.latency_ms / 1000)
    with mock_aws():
        orgs, management = organization()
        counter = iter(range(1000))

        def new_account() -> str:
            return create_account(orgs, next(counter))

        security = new_account()

        def onboarder(regions: tuple[str, ...], workers: int) -> Onboarder:
            settings = Settings(
                security_account_id=security,
                management_account_id=management,
                hub_regions=regions,
                region_workers=workers,
                home_region="us-east-1",
            )
            return Onboarder(settings, SessionFactory(settings, hooks=[("before-call", meter)]))

        # Warm moto's backends and botocore's models so the first timed case is not penalised.
        onboarder(DEFAULT_REGIONS, args.workers).onboard(OnboardingRequest(new_account()))

        rows = []
        for regions in (DEFAULT_REGIONS[:1], DEFAULT_REGIONS):
            for workers in (args.workers, 1):
                samples: dict[str, list[tuple[float, int, int]]] = {"first run": [], "re-run": []}
                for _ in range(args.repeat):  # a fresh account each time: first runs create all
                    service, account = onboarder(regions, workers), new_account()
                    for run_name in samples:
                        meter.reset()
                        started = time.perf_counter()
                        report = service.onboard(OnboardingRequest(account))
                        wall = time.perf_counter() - started
                        assert report.status == "ok", report.as_dict()
                        samples[run_name].append((wall, meter.total, meter.writes))
                for run_name, measured in samples.items():
                    wall, calls, writes = sorted(measured)[len(measured) // 2]  # the median run
                    rows.append((len(regions), workers, run_name, wall, calls, writes))

    print(
        f"onboard one account, moto + {args.latency_ms:g} ms injected per AWS call, "
        f"median of {args.repeat}\n"
    )
    header = (
        f"{'regions':>7}  {'workers':>7}  {'run':<9}  {'wall s':>7}  {'calls':>5}  {'writes':>6}"
    )
    print(header)
    print("-" * len(header))
    for regions, workers, run_name, wall, calls, writes in rows:
        print(f"{regions:>7}  {workers:>7}  {run_name:<9}  {wall:>7.2f}  {calls:>5}  {writes:>6}")
    by = {(r, w, n): wall for r, w, n, wall, _, _ in rows}
    one = by[(1, args.workers, "first run")]
    many = by[(17, args.workers, "first run")]
    serial = by[(17, 1, "first run")]
    print(
        f"\n17 regions vs 1 region (parallel, first run): {many / one:.2f}x the wall time"
        f"\n17 regions parallel vs one worker (first run): {serial / many:.1f}x faster"
        f"\nre-runs write nothing: {all(w == 0 for *_, n, _, _, w in rows if n == 're-run')}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=20, help="REGION_WORKERS for 'parallel'")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median shown)")
    run(parser.parse_args())
