"""The audit at organization scale: one audit-queue message per account, results in S3.

    start (the audit schedule, or `watershed audit --via-queue`)
      → organization id; then, side by side: the Security side and the GuardDuty administrators,
        and the ACTIVE accounts (ListAccounts pages, 8 a second) with their exclusions
      → as each group of 100 accounts is listed, its messages go on the audit queue:
        {"audit": {"run": <run>, "account": <id>, "group": <g>, "group_size": <n>, ...}}, so the
        workers audit while the listing goes on (10,000 accounts are 500 pages, 62 s)
      → s3://AUDIT_BUCKET/audits/<run>/manifest.json (every account listed), then listed.json
        ({"groups": N}): written LAST, once every group was sent
      → whether every group is already rolled up (see below): then the start assembles
    each message (the audit queue's consumer, any invocation)
      → that account's audit (the inline audit's own code) → audits/<run>/accounts/<g>/<id>.json
      → ListObjectsV2 of its group: as many objects as the group has accounts?
        → the group's results read (≤ 100, side by side) and rolled up into
          audits/<run>/groups/<g>.json
        → listed.json there, and as many roll-ups as it says? → assemble
    assemble (whoever finds the set complete; several invocations may)
      → ≤ 1 roll-up per 100 accounts read → audits/<run>/report.json, then report.html, each
        written with `If-None-Match: *`: the first writer wins, the others get 412 and stop.

Why this completes without timing: every writer lists or reads *after* its own write, and S3 is
strongly consistent. The worker whose write completes a group sees it complete. Of the last
roll-up and listed.json, whichever is written second is written by a step that then looks for
the other and finds it: the last worker (reading listed.json after its roll-up) or the start
(listing the roll-ups after listed.json). No list is longer than one page. An account whose
audit failed is written as `error` cells by the audit code itself; an account whose message
never produced a result (dead-lettered, lost) has no object, so its group never completes:
`finalize(run)` (the next scheduled start, or the CLI after its `--timeout`) assembles what is
there and reports each such account as `error` (`NoResult`), never omits it. A start that fails
before its manifest (the listing did not finish) leaves a run without a report: the invocation
fails (the InvocationErrors alarm) and the schedule's retry starts a new run.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from onboarding.audit import hub
from onboarding.audit.audit import (
    TIMESTAMP_FORMAT,
    AccountAudit,
    Auditor,
    AuditReport,
    Cell,
    Finding,
    Member,
)
from onboarding.audit.audit_html import render_html
from onboarding.errors import ConfigError, InvalidRequest, error_code
from onboarding.events import validate_regions
from onboarding.service import Onboarder
from onboarding.settings import ACCOUNT_ID, Settings

logger = logging.getLogger(__name__)

PREFIX = "audits"
MESSAGE_KEY = "audit"
NO_RESULT = "NoResult"
NO_RESULT_DETAIL = "no result: the account's audit message was lost or dead-lettered"
NO_REGION_CELL = Cell(
    "error", "no result for this region: its audit message did not name it", error=NO_RESULT
)
# A scheduled start finalizes earlier runs still without a report once they are this old: by
# then every message has been processed, retried or dead-lettered (the queue's retries take
# minutes), so what is missing is lost, not late.
FINALIZE_AFTER = timedelta(hours=2)
# Results are written in groups of this many accounts (audits/<run>/accounts/<group>/<id>.json),
# so a completion check lists one group, never the whole run (10,000 keys would be 10 pages).
GROUP_SIZE = 100
MAX_GROUPS = 1000  # 100,000 accounts
READ_WORKERS = 32
SEND_WORKERS = 4  # groups sent side by side while the listing goes on (SendMessageBatch, 10 a call)
LISTED = "listed.json"  # written after the manifest: the listing is finished, with N groups


def _key(run: str, *parts: str) -> str:
    return "/".join((PREFIX, run, *parts))


def new_run_id(now: datetime | None = None) -> str:
    """`20260130T060000Z-1a2b3c4d`: sorts by time; unique per start."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def is_audit_message(payload: Any) -> bool:
    return isinstance(payload, Mapping) and set(payload) == {MESSAGE_KEY}


# JSON <-> audit objects ------------------------------------------------------------------------


def account_from_dict(data: Mapping[str, Any]) -> AccountAudit:
    """The inverse of `AccountAudit.as_dict` (what each worker writes to S3)."""

    def finding(f: Mapping[str, Any]) -> Finding:
        return Finding(f["kind"], f["detail"], bool(f.get("global")))

    cells = {
        region: Cell(
            cell["state"],
            cell.get("detail", ""),
            tuple(finding(f) for f in cell.get("findings", ())),
            cell.get("error"),
            bool(cell.get("retryable", False)),
            cell.get("guardduty"),
        )
        for region, cell in data["regions"].items()
    }
    return AccountAudit(
        data["account_id"],
        data.get("name", ""),
        cells,
        tuple(finding(f) for f in data.get("findings", ())),
    )


def report_from_dict(data: Mapping[str, Any]) -> AuditReport:
    """The inverse of `AuditReport.as_dict` (the assembled report.json)."""
    generated_at = datetime.strptime(data["generated_at"], TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    return AuditReport(
        generated_at=generated_at,
        regions=tuple(data["regions"]),
        accounts=tuple(account_from_dict(a) for a in data["accounts"]),
        security=tuple(_hub_from_dict(r, d) for r, d in data["security"]["regions"].items()),
        management_account_id=data["management_account_id"],
        security_account_id=data["security_account_id"],
        organization_id=data.get("organization_id"),
        duration_seconds=float(data.get("duration_seconds", 0.0)),
        guardduty_administrators=data.get("guardduty_administrators"),
    )


def _hub_from_dict(region: str, data: Mapping[str, Any]) -> hub.HubRegion:
    checks = {
        name: hub.Check(bool(c["ok"]), c.get("detail", ""))
        for name, c in data.get("checks", {}).items()
    }
    return hub.HubRegion(
        region, data["state"], checks, detail=data.get("detail", ""), error=data.get("error")
    )


# The store ------------------------------------------------------------------------------------


class AuditStore:
    """The audit bucket. `s3` is a client in the bucket's region (the home region)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def put(self, key: str, body: str, content_type: str, only_if_new: bool = False) -> bool:
        """Write `key`; with `only_if_new`, False if it already existed (S3's 412)."""
        extra = {"IfNoneMatch": "*"} if only_if_new else {}
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body.encode("utf-8"),
                ContentType=content_type,
                **extra,
            )
        except ClientError as err:
            if only_if_new and error_code(err) in ("PreconditionFailed", "412"):
                return False
            raise
        return True

    def get_json(self, key: str) -> Any | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as err:
            if error_code(err) in ("NoSuchKey", "404"):
                return None
            raise
        return json.loads(body)

    def folders(self, prefix: str) -> list[str]:
        """The next path segment below `prefix` (a delimiter listing: one key per folder)."""
        paginator = self.s3.get_paginator("list_objects_v2")
        return [
            common["Prefix"].removeprefix(prefix).rstrip("/")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/")
            for common in page.get("CommonPrefixes", [])
        ]

    def keys(self, prefix: str) -> list[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]


# Start, audit one account, assemble ------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    run: str
    expected: int
    finalized: tuple[str, ...] = ()  # earlier runs this start assembled with missing accounts

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"audit_run": self.run, "expected": self.expected}
        if self.finalized:
            out["finalized"] = list(self.finalized)
        return out


class FanoutAudit:
    """The audit through a queue (`send` puts message bodies on it) and the bucket."""

    def __init__(
        self,
        auditor: Auditor,
        store: AuditStore,
        send: Callable[[list[dict[str, Any]]], Any],
    ) -> None:
        self.auditor = auditor
        self.store = store
        self.send = send

    def start(self, regions: Iterable[str] | None = None, run: str | None = None) -> Started:
        """One message per ACTIVE account, each group of 100 sent as soon as it is listed; then
        the manifest and listed.json. Before that, any earlier run still without a report is
        assembled with its missing accounts as errors."""
        finalized = tuple(r for r in self.unfinished_runs(FINALIZE_AFTER) if self.finalize(r))
        auditor, settings = self.auditor, self.auditor.settings
        run = run or new_run_id()
        regions = tuple(regions or settings.hub_regions)
        generated_at = datetime.now(UTC).strftime(TIMESTAMP_FORMAT)
        management = auditor.sessions.management_or_fail(settings.management_account_id)
        orgs = management.client("organizations", settings.home_region)
        organization_id = auditor._organization_id(orgs)
        members: list[tuple[Member, str | None]] = []
        with ThreadPoolExecutor(SEND_WORKERS + 2, thread_name_prefix="start") as pool:
            # Read while the accounts are listed: neither is needed before the manifest.
            security = pool.submit(auditor._security_side, regions, organization_id)
            administrators = pool.submit(
                lambda: (
                    auditor.onboarder.guardduty_administrators(regions)
                    if settings.guardduty_mode != "off"
                    else None
                )
            )
            sends: list[Future[Any]] = []

            def send_group() -> None:  # the members listed since the last group was sent
                for sent in sends:  # a group that could not be sent stops the listing
                    if sent.done() and sent.exception() is not None:
                        sent.result()
                group = len(sends)
                batch = members[group * GROUP_SIZE :]
                sends.append(pool.submit(self._send_group, run, regions, group, batch))

            excluded = auditor._exclusions(orgs, None)
            for member in auditor._members(orgs, None):
                members.append((member, excluded(member.account_id)))
                if len(members) % GROUP_SIZE == 0:
                    send_group()
            if len(members) % GROUP_SIZE:
                send_group()
            for sent in sends:
                sent.result()  # a group that could not be sent fails the start: no manifest
            manifest = {
                "run": run,
                "generated_at": generated_at,
                "regions": list(regions),
                "organization_id": organization_id,
                "management_account_id": settings.management_account_id,
                "security_account_id": settings.security_account_id,
                "security": {r.region: r.as_dict() for r in security.result()},
                "guardduty_administrators": administrators.result(),
                "groups": len(sends),
                "accounts": [{"account_id": m.account_id, "name": m.name} for m, _ in members],
            }
        self.store.put(_key(run, "manifest.json"), json.dumps(manifest), "application/json")
        listed = json.dumps({"groups": len(sends)})
        self.store.put(_key(run, LISTED), listed, "application/json")
        logger.info("audit fanned out", extra={"run": run, "accounts": len(members)})
        # The workers may all have finished while the last groups were listed: then no worker
        # saw listed.json, and the start assembles (an empty organization too). If that fails,
        # the run is complete in the bucket: the next start finalizes it. Failing the start
        # instead would make Lambda retry it: a second audit of every account.
        try:
            self._complete(run)
        except (ClientError, BotoCoreError) as err:
            logger.error("audit not assembled", extra={"run": run, "error": error_code(err)})
        return Started(run, len(members), finalized)

    def _send_group(
        self,
        run: str,
        regions: tuple[str, ...],
        group: int,
        batch: list[tuple[Member, str | None]],
    ) -> None:
        self.send(
            [
                {
                    MESSAGE_KEY: {
                        "run": run,
                        "account": m.account_id,
                        "name": m.name,
                        "regions": list(regions),
                        "excluded": reason,
                        "group": group,
                        "group_size": len(batch),
                    }
                }
                for m, reason in batch
            ]
        )

    def audit_account(self, payload: Mapping[str, Any]) -> str | None:
        """One message: audit the account, write its result; roll its group up if that made it
        complete, and assemble if that was the last group. Returns the report key if this call
        assembled the report."""
        settings = self.auditor.settings
        message = _message(payload, settings)
        management = self.auditor.sessions.management_or_fail(settings.management_account_id)
        orgs = management.client("organizations", settings.home_region)
        reason = message["excluded"]
        audit = self.auditor._audit_account(
            orgs,
            Member(message["account"], message["name"]),
            message["regions"],
            None,
            lambda _: reason,
        )
        run, group = message["run"], f"{message['group']:05d}"
        self.store.put(
            _key(run, "accounts", group, f"{audit.account_id}.json"),
            json.dumps(audit.as_dict()),
            "application/json",
        )
        # Listed only after this write: the writer that completes the group sees it complete.
        keys = self.store.keys(_key(run, "accounts", group) + "/")
        if len(keys) < message["group_size"]:
            return None
        results = self._read(keys)
        self.store.put(
            _key(run, "groups", f"{group}.json"), json.dumps(results), "application/json"
        )
        return self._complete(run)

    def _complete(self, run: str) -> str | None:
        """Assemble `run` if the listing is finished and every group is rolled up."""
        listed = self.store.get_json(_key(run, LISTED))
        if listed is None:  # still listing: the start looks again after writing it
            return None
        rolled = {k.rsplit("/", 1)[1] for k in self._rollups(run)}
        if not {f"{g:05d}.json" for g in range(listed["groups"])} <= rolled:
            return None  # every group listed, by number, not a count a stray object could fill
        if self.finished(run):
            return None  # complete before (a message delivered twice)
        return self.assemble(run)

    def finalize(self, run: str) -> str | None:
        """Assemble `run` now, whatever is missing (reported as errors). None if it already
        had a report or has no manifest."""
        if self.store.get_json(_key(run, "report.json")) is not None:
            return None
        return self.assemble(run)

    def finished(self, run: str) -> bool:
        """The run has its report."""
        return bool(self.store.keys(_key(run, "report.json")))

    def stored_report(self, run: str) -> AuditReport | None:
        """The assembled report of `run`, as written to the bucket."""
        data = self.store.get_json(_key(run, "report.json"))
        return None if data is None else report_from_dict(data)

    def unfinished_runs(self, older_than: timedelta | None = None) -> list[str]:
        """Runs with a manifest and no report; with `older_than`, only those started at least
        that long ago (by the time in their id; ids not made by `new_run_id` count as old)."""
        cutoff = datetime.now(UTC) - older_than if older_than else None
        return sorted(
            run
            for run in self.store.folders(f"{PREFIX}/")
            if (cutoff is None or _started(run) <= cutoff)
            and not self.finished(run)
            and self.store.keys(_key(run, "manifest.json"))
        )

    def assemble(self, run: str) -> str | None:
        """Build the report from the manifest and the account objects and write it once.
        Returns the key of report.json if this call wrote it."""
        report = self.report(run)
        if report is None:
            return None
        key = _key(run, "report.json")
        if not self.store.put(
            key, json.dumps(report.as_dict(), indent=2), "application/json", True
        ):
            return None  # another invocation assembled it first
        self.store.put(_key(run, "report.html"), render_html(report), "text/html", True)
        logger.info("audit assembled", extra={"run": run, "key": key})
        return key

    def report(self, run: str) -> AuditReport | None:
        manifest = self.store.get_json(_key(run, "manifest.json"))
        if manifest is None:
            return None
        regions = tuple(manifest["regions"])
        results = self._results(run, manifest.get("groups"))
        accounts = []
        for entry in manifest["accounts"]:
            data = results.get(entry["account_id"])
            if data is None:  # never silently omitted
                cell = Cell("error", NO_RESULT_DETAIL, error=NO_RESULT, retryable=True)
                accounts.append(
                    AccountAudit(entry["account_id"], entry["name"], dict.fromkeys(regions, cell))
                )
            else:  # exactly the run's regions, whatever a result holds
                audit = account_from_dict(data)
                cells = {r: audit.regions.get(r, NO_REGION_CELL) for r in regions}
                accounts.append(replace(audit, regions=cells))
        generated_at = datetime.strptime(manifest["generated_at"], TIMESTAMP_FORMAT)
        return AuditReport(
            generated_at=generated_at.replace(tzinfo=UTC),
            regions=regions,
            accounts=tuple(sorted(accounts, key=lambda a: a.account_id)),
            security=tuple(_hub_from_dict(r, d) for r, d in manifest["security"].items()),
            management_account_id=manifest["management_account_id"],
            security_account_id=manifest["security_account_id"],
            organization_id=manifest["organization_id"],
            duration_seconds=(datetime.now(UTC) - generated_at.replace(tzinfo=UTC)).total_seconds(),
            guardduty_administrators=manifest.get("guardduty_administrators"),
        )

    def _rollups(self, run: str) -> list[str]:
        return [k for k in self.store.keys(_key(run, "groups") + "/") if k.endswith(".json")]

    def _results(self, run: str, groups: int | None) -> dict[str, Any]:
        """Every account result of `run`: the groups' roll-ups (≤ 1 per 100 accounts), and only
        if some group has none (finalize: an account is missing) the other accounts' objects."""
        rollups = self._rollups(run)
        documents = [d for group in self._read(rollups) for d in group]
        if groups is None or len(rollups) < groups:
            rolled = {k.rsplit("/", 1)[1].removesuffix(".json") for k in rollups}
            keys = self.store.keys(_key(run, "accounts") + "/")
            documents += self._read(
                [k for k in keys if k.endswith(".json") and k.rsplit("/", 2)[1] not in rolled]
            )
        return {d["account_id"]: d for d in documents}

    def _read(self, keys: list[str]) -> list[Any]:
        """The JSON documents at `keys`, read side by side (one by one, 10,000 GETs would take
        minutes); a key deleted meanwhile is left out."""
        if not keys:
            return []
        with ThreadPoolExecutor(min(READ_WORKERS, len(keys)), thread_name_prefix="read") as pool:
            return [d for d in pool.map(self.store.get_json, keys) if d is not None]


def _started(run: str) -> datetime:
    try:
        return datetime.strptime(run.split("-")[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def _count(body: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"audit message: {name} {value!r} is not an integer {low}..{high}")
    return value


def _message(payload: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Validate an audit message before any call: clear errors name what is wrong."""
    body = payload.get(MESSAGE_KEY)
    if not isinstance(body, Mapping):
        raise InvalidRequest('audit message: "audit" must be an object')
    run, account = body.get("run"), body.get("account")
    if not isinstance(run, str) or not run or "/" in run or len(run) > 64:
        raise InvalidRequest(f"audit message: bad run id {run!r}")
    if not isinstance(account, str) or not ACCOUNT_ID.match(account):
        raise InvalidRequest(f"audit message: account {account!r} is not 12 digits")
    regions = validate_regions(body.get("regions"), settings)
    excluded = body.get("excluded")
    return {
        "group": _count(body, "group", 0, MAX_GROUPS - 1),
        "group_size": _count(body, "group_size", 1, GROUP_SIZE),
        "run": run,
        "account": account,
        "name": str(body.get("name") or ""),
        "regions": regions,
        "excluded": excluded if isinstance(excluded, str) and excluded else None,
    }


def fanout_for(onboarder: Onboarder, send: Callable[[list[dict[str, Any]]], Any]) -> FanoutAudit:
    """The fanned-out audit of the settings' AUDIT_BUCKET, sending through `send` (the audit
    queue's `WorkQueue.send`); the bucket is read and written with the function's own role."""
    settings = onboarder.settings
    if not settings.audit_bucket:
        raise ConfigError("AUDIT_BUCKET", "not set: the fanned-out audit writes its results there")
    s3 = onboarder.sessions.own().client("s3", settings.home_region)
    auditor = Auditor(settings, onboarder=onboarder)  # the function's own: its caches are shared
    return FanoutAudit(auditor, AuditStore(s3, settings.audit_bucket), send)


def is_start(payload: Any) -> bool:
    """The audit schedule's input: `{"audit": "start"}`."""
    return isinstance(payload, Mapping) and payload.get(MESSAGE_KEY) == "start"
