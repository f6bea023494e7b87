"""Lambda entry point for the Kinesis event source mapping: decorate, parse, delegate.

Importing this module builds nothing but the (shared) Powertools Logger; settings are read and
validated, clients and the Metrics object built, on the first invocation of an execution
environment.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from relay.events import parse_batch
from relay.sender import TimeBudget
from relay.service import Relay, record_metrics
from relay.settings import Settings
from relay.telemetry import logger


@cache
def relay() -> Relay:
    """The execution environment's Relay, configured from the environment on first use."""
    return Relay(Settings.from_env())


@cache
def metrics() -> Metrics:
    """Built on first use, so the namespace is read when the function runs, not at import."""
    return Metrics()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Relay one Kinesis batch; return the partial batch response for what was not delivered."""
    try:
        service = relay()
        budget = TimeBudget(context.get_remaining_time_in_millis, service.settings.time_margin_ms)
        outcome = service.handle(parse_batch(event), budget)
        record_metrics(metrics(), outcome)
        return outcome.as_response()
    finally:
        metrics().flush_metrics(raise_on_empty_metrics=False)
