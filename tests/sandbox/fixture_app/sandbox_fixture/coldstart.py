"""Counts its own imports (cold starts) and reports the settings it read at cold start."""

import os

COLD_STARTS = []
COLD_STARTS.append(os.environ.get("SETTING"))


def lambda_handler(event, context):
    return {
        "cold_starts": len(COLD_STARTS),
        "setting_at_cold_start": COLD_STARTS[0],
        "setting_now": os.environ.get("SETTING"),
        "function": context.function_name,
    }
