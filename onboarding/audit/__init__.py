"""The coverage audit: the audit, its fan-out through the work queue, the fix, the HTML page."""
