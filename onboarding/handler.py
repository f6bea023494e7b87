"""Lambda entry point: decorate, parse, delegate. No boto3 call here.

Accepts EventBridge events, manual requests `{"accounts": [...]}` / `{"remove": [...]}` and SQS
batches whose bodies are either.

With WORK_QUEUE_URL (the deployed function): a direct invocation (event, manual request, the
reconcile schedule's `{"accounts": "ALL"}`) only enqueues — one message per account — and returns
what it enqueued; an SQS batch is onboarded message by message (`workqueue.QueueWorker`): not
ready → re-queued with a delay, out of retries or permanent → dead-lettered, and only a message
whose follow-up could not be sent is handed back in `batchItemFailures`.

Without a work queue (the CLI, tests, a small deployment) every request is processed inline and
the report is returned; for an SQS batch `batchItemFailures` then lists the messages whose
requests ended with a retryable failure, so SQS's own redelivery retries them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from onboarding.errors import InvalidRequest
from onboarding.events import Ignored, Parsed, is_sqs_batch, parse_input, parse_sqs_record
from onboarding.queue.workqueue import BatchResult, Dispatcher, QueueWorker, work_queue_for
from onboarding.report import Report
from onboarding.service import Onboarder
from onboarding.settings import Settings

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"onboarding"})


@cache
def onboarder() -> Onboarder:
    """Built on first use (cold start), from the environment; fails naming the bad variable."""
    return Onboarder(Settings.from_env())


@cache
def fanout() -> Any:
    """The fanned-out audit (AUDIT_BUCKET), built on first use: the audit and its HTML renderer
    are imported only by an invocation that audits, not on every cold start."""
    from onboarding.audit.audit_fanout import fanout_for

    service = onboarder()
    # AUDIT_QUEUE_URL: the stack's audit queue, consumed at its own concurrency (AuditWork).
    return fanout_for(service, work_queue_for(service, service.settings.audit_queue_url).send)


@cache
def metrics() -> Metrics:
    """Built on first use, so the namespace is read when the function runs, not at import."""
    return Metrics()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        if onboarder().settings.work_queue_url:
            return _handle_queued(event, context)
        return _handle(event)
    except Exception:  # refused input, bad configuration, a bug: count it, log it, re-raise
        metrics().add_metric(name="InvocationErrors", unit=MetricUnit.Count, value=1)
        logger.exception("invocation failed")
        raise
    finally:
        metrics().flush_metrics(raise_on_empty_metrics=False)


def _handle(event: dict[str, Any]) -> dict[str, Any]:
    service = onboarder()
    if not is_sqs_batch(event):
        report = service.handle(_logged(parse_input(event, service.settings)))
        _record_metrics(report)
        return report.as_dict()

    accounts, failures = [], []
    for record in event["Records"]:
        try:
            items = parse_sqs_record(record, service.settings)
        except InvalidRequest as err:
            logger.warning(
                "refused message", extra={"messageId": record.get("messageId"), "error": str(err)}
            )
            metrics().add_metric(name="MessagesRefused", unit=MetricUnit.Count, value=1)
            continue
        report = service.handle(_logged(items))
        accounts.extend(report.accounts)
        if any(a.needs_retry for a in report.accounts):
            failures.append({"itemIdentifier": record["messageId"]})
    report = Report(tuple(accounts))
    _record_metrics(report)
    return {**report.as_dict(), "batchItemFailures": failures}


def _handle_queued(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    service = onboarder()
    queue = work_queue_for(service)
    if isinstance(event, dict) and event.get("audit") == "start":  # the audit schedule
        return fanout().start().as_dict()
    if not is_sqs_batch(event):
        items = _logged(parse_input(event, service.settings))
        enqueued = Dispatcher(service, queue).dispatch(items)
        metrics().add_metric(
            name="MessagesEnqueued", unit=MetricUnit.Count, value=len(enqueued.requests)
        )
        if enqueued.selection is not None and enqueued.selection.missing_ous:
            missing = len(enqueued.selection.missing_ous)
            metrics().add_metric(name="ExcludedOusNotFound", unit=MetricUnit.Count, value=missing)
        return enqueued.as_dict()
    audit = (
        (lambda payload: fanout().audit_account(payload)) if service.settings.audit_bucket else None
    )
    result = QueueWorker(service, queue, audit).process(
        event["Records"], remaining_ms=context.get_remaining_time_in_millis
    )
    _record_batch_metrics(result)
    return result.response()


def _record_batch_metrics(result: BatchResult) -> None:
    _record_metrics(Report(tuple(result.reports)))
    for name in (
        "RetriesScheduled",
        "RequestsDeadLettered",
        "MessagesRefused",
        "MessagesEnqueued",
        "EventsIgnored",
        "MessagesFailed",
        "SendFailures",
        "MessagesDeferred",
        "ExcludedOusNotFound",
        "AccountsAudited",
    ):
        metrics().add_metric(name=name, unit=MetricUnit.Count, value=result.counts[name])


def _logged(items: list[Parsed]) -> list[Parsed]:
    ignored = sum(1 for item in items if isinstance(item, Ignored))
    if ignored:
        metrics().add_metric(name="EventsIgnored", unit=MetricUnit.Count, value=ignored)
    return items


def _record_metrics(report: Report) -> None:
    counts = {"AccountsOnboarded": 0, "AccountsRefused": 0, "AccountsFailed": 0}
    regions = {"RegionsConfigured": 0, "RegionsSkipped": 0, "RegionsFailed": 0}
    names = {"ok": "RegionsConfigured", "skipped": "RegionsSkipped", "failed": "RegionsFailed"}
    for account in report.accounts:
        if account.status == "ok":
            counts["AccountsOnboarded"] += 1
        elif account.status == "refused":
            counts["AccountsRefused"] += 1
        else:
            counts["AccountsFailed"] += 1
        for result in account.regions.values():
            regions[names[result.status]] += 1
    for name, value in {**counts, **regions}.items():
        metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)
