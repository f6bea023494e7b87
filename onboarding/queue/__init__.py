"""The work queue: fan-out, retries, the dead-letter path, and the organization-wide backfill."""
