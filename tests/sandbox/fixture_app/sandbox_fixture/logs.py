"""A handler that logs through a module-level `logging` handler, as Powertools' Logger does: the
handler is attached to the process-wide logger once, bound to the sys.stdout of that moment."""

import logging
import sys

logger = logging.getLogger("sandbox_fixture.logs")
if not logger.handlers:
    logger.addHandler(logging.StreamHandler(sys.stdout))
    logger.setLevel(logging.INFO)


def lambda_handler(event, context):
    logger.info("logged %s", event.get("n"))
    return {}
