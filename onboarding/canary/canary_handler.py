"""The scheduled canary (template.yaml `CanaryFunction`, off unless CanaryIntervalMinutes > 0).

Each run takes the next slice of the organization (onboarding.canary.canary.rotation: the sorted
list of ACTIVE, not excluded accounts, CANARY_ACCOUNTS_PER_RUN at a time, the slice chosen by the
scheduled time divided by CANARY_INTERVAL_MINUTES - stateless), raises one sample finding per
account x hub region and waits for them on the destination stream. Then, per region, with the
dimension `Region` (Powertools Metrics, namespace POWERTOOLS_METRICS_NAMESPACE):

- `EndToEndLatency` (Seconds): one value per arrived finding;
- `CanaryMissing` (Count): findings that did not arrive in time, plus those that could not be
  raised (nothing proved that region delivers); 0 when everything arrived, so the alarm sees
  data and returns to OK.

and the run's total `CanaryMissing` without `Region` (only the `service` dimension): one metric
for one alarm (template.yaml `CanaryMissingAlarm`) instead of one alarm per region.

Skipped regions (not enabled, GuardDuty off or managed elsewhere) publish nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from onboarding.canary.canary import (
    Canary,
    CanaryReport,
    CanarySettings,
    organization_accounts,
    rotation,
    run_index,
    without_tagged,
)
from onboarding.settings import Settings

logger = Logger()
# Kept free of the wait: the accounts are listed and the findings raised before it starts.
RAISE_BUDGET_SECONDS = 120


@cache
def canary() -> Canary:
    """Built on first use (cold start), from the environment; fails naming the bad variable."""
    return Canary(Settings.from_env(), CanarySettings.from_env())


def scheduled_time(event: dict[str, Any]) -> datetime:
    """The scheduled event's `time` (EventBridge Scheduler / a schedule rule), else now."""
    raw = event.get("time") if isinstance(event, dict) else None
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            logger.warning("scheduled event time not understood, using now", extra={"time": raw})
    return datetime.now(UTC)


def run_scheduled(
    service: Canary, moment: datetime, remaining_ms: Callable[[], int]
) -> tuple[list[str], CanaryReport]:
    """This run's slice of the organization, canaried within the invocation's time."""
    settings = service.canary
    accounts = organization_accounts(service)
    index = run_index(moment, settings.interval_minutes)
    chosen = without_tagged(service, rotation(accounts, settings.accounts_per_run, index))
    budget = remaining_ms() // 1000 - RAISE_BUDGET_SECONDS
    timeout = max(1, min(settings.timeout_seconds, budget))
    logger.info(
        "canary run",
        extra={"run": index, "accounts": chosen, "of": len(accounts), "timeout": timeout},
    )
    return chosen, service.run(chosen, timeout_seconds=timeout)


def publish(report: CanaryReport, metrics_factory: Callable[[], Any] = EphemeralMetrics) -> None:
    """Per region: EndToEndLatency for each arrival, CanaryMissing (missing + failed)."""
    by_region: dict[str, list[Any]] = {}
    for result in report.results:
        if result.status != "skipped":
            by_region.setdefault(result.region, []).append(result)
    for region, results in sorted(by_region.items()):
        metrics = metrics_factory()
        metrics.add_dimension(name="Region", value=region)
        for result in results:
            if result.status == "arrived" and result.latency_seconds is not None:
                metrics.add_metric(
                    name="EndToEndLatency",
                    unit=MetricUnit.Seconds,
                    value=max(0.0, result.latency_seconds),
                )
        missing = sum(1 for r in results if r.status in ("missing", "failed"))
        metrics.add_metric(name="CanaryMissing", unit=MetricUnit.Count, value=missing)
        metrics.flush_metrics()
    if by_region:  # the run's total, without the Region dimension: what the alarm watches
        total = metrics_factory()
        missing = sum(1 for r in report.results if r.status in ("missing", "failed"))
        total.add_metric(name="CanaryMissing", unit=MetricUnit.Count, value=missing)
        total.flush_metrics()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    chosen, report = run_scheduled(
        canary(), scheduled_time(event), context.get_remaining_time_in_millis
    )
    publish(report)
    for result in report.results:
        if result.status in ("missing", "failed"):
            logger.warning("canary not arrived", extra=result.as_dict())
    return {"accounts": chosen, **report.as_dict()}
