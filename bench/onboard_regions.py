"""Onboarding one account across 1 and 17 regions: wall time and API calls, parallel vs serial.

Two backends answer the AWS calls, both with an injected per-call latency (default 50 ms, a
round trip):

- `model` (default): `awsmodel.Model`, a model of AWS at botocore's HTTP layer (requests are
  built, signed, answered, parsed and retried by the real SDK). The figures are watershed's own.
- `moto`: moto in this process (a botocore `before-call` hook sleeps). moto's CPU time competes
  with the region threads for the GIL, so the figures mostly show moto's cost.

For each case a fresh member account is onboarded (first run: everything is created), then
onboarded again (re-run: must write nothing). "one worker" is REGION_WORKERS=1: one region at
a time (its two steps side by side).

    .venv/bin/python bench/onboard_regions.py [--latency-ms 50] [--workers 20] [--repeat 3]
                                              [--backend model|moto]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from _common import Meter, create_account, organization
from awsmodel import DEFAULT_REGIONS, Model

from onboarding.events import OnboardingRequest
from onboarding.service import Onboarder
from onboarding.sessions import SessionFactory
from onboarding.settings import Settings

# (new account, onboarder for (regions, workers), (calls, writes) since the last reset, reset)
World = tuple[
    Callable[[], str],
    Callable[[tuple[str, ...], int], Onboarder],
    Callable[[], tuple[int, int]],
    Callable[[], None],
]


@contextmanager
def model_world(latency: float) -> Iterator[World]:
    model = Model(1000, latency=latency)
    accounts = iter(model.member_ids())

    def onboarder(regions: tuple[str, ...], workers: int) -> Onboarder:
        settings = model.settings(regions, region_workers=workers)
        factory = SessionFactory(settings, base_session=model.session(), hooks=model.hooks())
        return Onboarder(settings, factory)

    def counts() -> tuple[int, int]:
        return sum(model.calls.values()), model.writes()

    yield (lambda: next(accounts)), onboarder, counts, model.reset_counts


@contextmanager
def moto_world(latency: float) -> Iterator[World]:
    from moto import mock_aws

    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    meter = Meter(latency)
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

        yield new_account, onboarder, lambda: (meter.total, meter.writes), meter.reset


def run(args: argparse.Namespace) -> None:
    world = model_world if args.backend == "model" else moto_world
    with world(args.latency_ms / 1000) as (new_account, onboarder, counts, reset):
        # Warm botocore's models (and moto's backends) so the first timed case is not penalised.
        onboarder(DEFAULT_REGIONS, args.workers).onboard(OnboardingRequest(new_account()))

        rows = []
        for regions in (DEFAULT_REGIONS[:1], DEFAULT_REGIONS):
            for workers in (args.workers, 1):
                samples: dict[str, list[tuple[float, int, int]]] = {"first run": [], "re-run": []}
                # One onboarder per case, warmed by an untimed account: a warm Lambda container
                # (its launcher session and GuardDuty administrators cached, as in production).
                service = onboarder(regions, workers)
                service.onboard(OnboardingRequest(new_account()))
                for _ in range(args.repeat):  # a fresh account each time: first runs create all
                    account = new_account()
                    for run_name in samples:
                        reset()
                        started = time.perf_counter()
                        report = service.onboard(OnboardingRequest(account))
                        wall = time.perf_counter() - started
                        assert report.status == "ok", report.as_dict()
                        samples[run_name].append((wall, *counts()))
                for run_name, measured in samples.items():
                    wall, calls, writes = sorted(measured)[len(measured) // 2]  # the median run
                    rows.append((len(regions), workers, run_name, wall, calls, writes))

    print(
        f"onboard one account, {args.backend} + {args.latency_ms:g} ms per AWS call, "
        f"median of {args.repeat}, load average {os.getloadavg()[0]:.1f}\n"
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
    parser.add_argument("--backend", choices=("model", "moto"), default="model")
    run(parser.parse_args())
