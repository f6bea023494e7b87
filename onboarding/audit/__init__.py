"""The coverage audit: the audit, its fan-out through the audit queue, the fix, the HTML page."""
