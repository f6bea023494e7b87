"""The work queue: fan-out, partial batch responses, delayed retries, the dead-letter path.

    direct invocation (event, manual, schedule) ──Dispatcher──► WorkQueue: one message per account
    SQS batch ──QueueWorker──► one onboarding per message ──► done | refused
                                                          ──► retry: only the failed regions,
                                                              attempt+1, SQS DelaySeconds
                                                          ──► dead letter: request + report + reason

A message body is always the request's manual form (`OnboardingRequest.as_message()`) or a raw
EventBridge event from the trigger rule. Nothing sleeps: a request that is not ready yet is sent
back with a growing delay (`retry_schedule`) until RETRY_CAP_SECONDS of delays have been used,
then dead-lettered. The message being processed always counts as done — only a failure to send
the follow-up message (retry or dead letter) hands it back in `batchItemFailures`, so SQS
redelivers it and the (idempotent) onboarding runs again. Follow-ups are therefore sent at
least once: dead letters first and the retry last, so a redelivery may duplicate an inert dead
letter but never forks a second live retry chain.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from onboarding.errors import InvalidRequest, WatershedError, error_code
from onboarding.events import (
    AllAccountsRequest,
    Ignored,
    OnboardingRequest,
    Parsed,
    parse_manual,
    parse_sqs_record,
)
from onboarding.queue.backfill import Selection, requests_for, select_accounts
from onboarding.report import AccountReport
from onboarding.service import Onboarder
from onboarding.sessions import Deadline

logger = logging.getLogger(__name__)

FIRST_RETRY_DELAY = 30  # seconds; doubles per attempt
MAX_DELAY_SECONDS = 900  # the SQS maximum DelaySeconds of one message
SEND_BATCH_SIZE = 10  # the SendMessageBatch maximum
# An SQS message is at most 256 KiB (262,144 bytes) of body plus attributes. A dead letter is
# capped in *encoded* bytes (what SendMessage carries: compact JSON, non-ASCII escaped), not in
# characters: one character of a body can take up to 12 bytes as a JSON escape.
MAX_DEAD_LETTER_BYTES = 250_000
MAX_DEAD_LETTER_REASON = 2_000  # characters of the reason kept
DEAD_LETTER_FORMAT = "watershed/dead-letter"
REPLAY_WAIT_SECONDS = 1  # long poll of `watershed replay`; it stops after one empty long poll
# Hand the rest of a batch back (re-sent, not failed) when less than this is left; it is also
# each request's deadline: no AWS call of the onboarding starts with less than this left.
TIME_MARGIN_MS = 60_000
# Stop waiting for region steps still in flight when less than this is left (an attempt on the
# wire takes at most connect 5 s + read 20 s): they are re-queued as timed out, and the rest is
# left for sending the follow-ups and answering Lambda before the function timeout.
STOP_WAITING_MS = 30_000

_QUEUE_URL_REGION = re.compile(r"^https?://(?:sqs\.)?([a-z]{2}(?:-[a-z]+)+-[0-9]{1,2})\.", re.ASCII)


class QueueSendFailed(WatershedError):
    """SendMessage(Batch) to the work queue or the dead-letter queue failed. `unsent` holds what
    was not sent, as the caller gave it: bodies to `send`, requests to `enqueue`."""

    def __init__(self, message: str, unsent: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.unsent = tuple(unsent)


# The retry schedule -----------------------------------------------------------------------------


def retry_schedule(cap_seconds: int) -> tuple[int, ...]:
    """The delays before attempt 2, 3, …: 30 s doubling to SQS's 900 s maximum, the last one cut
    so that the delays add up to exactly `cap_seconds`. For the default 3600 s:
    30, 60, 120, 240, 480, 900, 900, 870 — eight retries, nine attempts in all."""
    delays: list[int] = []
    total = 0
    while total < cap_seconds:
        delay = min(MAX_DELAY_SECONDS, FIRST_RETRY_DELAY * 2 ** len(delays), cap_seconds - total)
        delays.append(delay)
        total += delay
    return tuple(delays)


def retry_delay(attempt: int, cap_seconds: int) -> int | None:
    """The delay before the attempt after `attempt`, or None if the cap is reached."""
    schedule = retry_schedule(cap_seconds)
    return schedule[attempt - 1] if 1 <= attempt <= len(schedule) else None


# Sending ------------------------------------------------------------------------------------------


def queue_region(queue_url: str, default: str) -> str:
    """The region in an SQS queue URL (`https://sqs.<region>.amazonaws.com/...`), else default."""
    match = _QUEUE_URL_REGION.match(queue_url)
    return match.group(1) if match else default


class WorkQueue:
    """Sends to the work queue and the dead-letter queue. `sqs` is a client in their region."""

    def __init__(self, sqs: Any, queue_url: str, dead_letter_url: str | None = None) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.dead_letter_url = dead_letter_url

    def send(self, bodies: Sequence[Mapping[str, Any] | str], delay: int = 0) -> int:
        """Send bodies in SendMessageBatch calls of 10; entries that failed are sent once more,
        then QueueSendFailed is raised naming how many were lost (`unsent`: those bodies and
        every body after them, which were not tried)."""
        try:
            self._send_batches([_text(b) for b in bodies], delay)
        except QueueSendFailed as err:
            err.unsent = tuple(bodies[i] for i in err.unsent)  # positions → the bodies given
            raise
        return len(bodies)

    def _send_batches(self, texts: Sequence[str], delay: int) -> None:
        """Raises QueueSendFailed whose `unsent` are positions in `texts`."""
        for start in range(0, len(texts), SEND_BATCH_SIZE):
            chunk = dict(enumerate(texts[start : start + SEND_BATCH_SIZE], start))
            later = range(start + SEND_BATCH_SIZE, len(texts))
            for _ in range(2):
                entries = [
                    {"Id": str(i), "MessageBody": text, "DelaySeconds": delay}
                    for i, text in chunk.items()
                ]
                try:
                    response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
                except (ClientError, BotoCoreError) as err:
                    unsent = [*chunk, *later]
                    raise QueueSendFailed(f"SendMessageBatch: {error_code(err)}", unsent) from err
                failed = response.get("Failed", [])
                chunk = {int(f["Id"]): chunk[int(f["Id"])] for f in failed}
                if not chunk:
                    break
            if chunk:
                codes = sorted({f.get("Code", "?") for f in failed})
                raise QueueSendFailed(
                    f"{len(chunk)} message(s) not sent: {', '.join(codes)}", [*chunk, *later]
                )

    def enqueue(self, requests: Iterable[OnboardingRequest]) -> list[OnboardingRequest]:
        """One message per distinct request (account, regions, dry_run); returns those sent.
        Raises QueueSendFailed whose `unsent` are the requests not sent."""
        unique = list(
            {(r.account_id, r.regions, r.dry_run, r.action): r for r in requests}.values()
        )
        try:
            self._send_batches([_text(r.as_message()) for r in unique], 0)
        except QueueSendFailed as err:
            err.unsent = tuple(unique[i] for i in err.unsent)
            raise
        return unique

    def requeue(self, request: OnboardingRequest, delay: int) -> None:
        self._send_one(self.queue_url, request.as_message(), delay)

    def resend(self, body: str) -> None:
        """Put a message back unchanged, visible at once (the function ran out of time)."""
        self._send_one(self.queue_url, body, 0)

    def dead_letter(self, envelope: Mapping[str, Any]) -> bool:
        """Send a dead-letter envelope; False if no dead-letter queue is configured."""
        if not self.dead_letter_url:
            return False
        self._send_one(self.dead_letter_url, envelope, 0)
        return True

    def _send_one(self, url: str, body: Mapping[str, Any] | str, delay: int) -> None:
        try:
            self.sqs.send_message(QueueUrl=url, MessageBody=_text(body), DelaySeconds=delay)
        except (ClientError, BotoCoreError) as err:
            raise QueueSendFailed(f"SendMessage to {url}: {error_code(err)}") from err


def _text(body: Mapping[str, Any] | str) -> str:
    """A message body as sent: text as it is, a mapping as compact JSON."""
    return body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))


def work_queue_for(onboarder: Onboarder, queue_url: str | None = None) -> WorkQueue:
    """The WorkQueue of the settings (or `queue_url`), with a client from the own credentials."""
    settings = onboarder.settings
    url = queue_url or settings.work_queue_url
    if not url:
        raise ValueError("no work queue URL (WORK_QUEUE_URL)")
    region = queue_region(url, settings.home_region)
    sqs = onboarder.sessions.own().client("sqs", region)
    return WorkQueue(sqs, url, settings.dead_letter_queue_url)


# Dead letters -------------------------------------------------------------------------------------


def dead_letter_envelope(
    kind: str,
    reason: str,
    request: OnboardingRequest | None = None,
    report: AccountReport | None = None,
    message_id: str | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """What the dead-letter queue holds: `request` (manual form) is what a replay sends back."""
    envelope: dict[str, Any] = {
        "format": DEAD_LETTER_FORMAT,
        "kind": kind,  # "failed": replayable request; "invalid": a message nobody can process
        "reason": reason[:MAX_DEAD_LETTER_REASON],
        "dead_lettered_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if request is not None:
        envelope["request"] = request.as_message()
    if report is not None:
        envelope["report"] = report.as_dict()
    if message_id:
        envelope["message_id"] = message_id
    if body is not None:
        envelope["body"] = body
    return capped_envelope(envelope)


def _encoded_bytes(envelope: Mapping[str, Any]) -> int:
    return len(_text(envelope).encode("utf-8"))


def capped_envelope(envelope: dict[str, Any], limit: int = MAX_DEAD_LETTER_BYTES) -> dict[str, Any]:
    """The envelope within `limit` encoded bytes: the invalid body is cut first (the longest
    prefix that fits, `body_truncated` says so), then the report is left out (the request,
    which a replay needs, is small and always kept)."""
    if _encoded_bytes(envelope) <= limit:
        return envelope
    body = envelope.get("body")
    if isinstance(body, str):

        def cut(n: int) -> dict[str, Any]:
            return {**envelope, "body": body[:n], "body_truncated": True}

        low, high = 0, len(body)
        while low < high:  # the longest prefix of the body that fits
            middle = (low + high + 1) // 2
            if _encoded_bytes(cut(middle)) <= limit:
                low = middle
            else:
                high = middle - 1
        envelope = cut(low)
        if _encoded_bytes(envelope) <= limit:
            return envelope
    if "report" in envelope:
        size = _encoded_bytes({"report": envelope["report"]})
        envelope = {k: v for k, v in envelope.items() if k != "report"}
        envelope["report_omitted"] = f"{size} bytes: over the SQS message size"
    return envelope


def is_dead_letter(payload: Any) -> bool:
    return isinstance(payload, Mapping) and payload.get("format") == DEAD_LETTER_FORMAT


def replay_body(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The message to put back on the work queue for a dead letter: its request, attempt 1 (a
    fresh retry budget). None for an invalid message, which has nothing to replay."""
    request = payload.get("request")
    if payload.get("kind") != "failed" or not isinstance(request, Mapping):
        return None
    return {**request, "attempt": 1}


# Direct invocations: fan out to the queue ---------------------------------------------------------


@dataclass
class Enqueued:
    """What a direct invocation put on the work queue (the handler's return value)."""

    requests: list[OnboardingRequest] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    selection: Selection | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "enqueued": len(self.requests),
            "accounts": [r.account_id for r in self.requests],
        }
        if self.ignored:
            out["ignored"] = self.ignored
        if self.selection is not None:
            out["excluded"] = dict(self.selection.excluded)
            out["inactive"] = dict(self.selection.inactive)
            if self.selection.missing_ous:
                out["excluded_ous_not_found"] = list(self.selection.missing_ous)
        return out


class Dispatcher:
    """Turns parsed inputs into work-queue messages: one per account, "ALL" expanded."""

    def __init__(self, onboarder: Onboarder, queue: WorkQueue) -> None:
        self.onboarder = onboarder
        self.queue = queue

    def dispatch(self, items: Iterable[Parsed]) -> Enqueued:
        result = Enqueued()
        requests: list[OnboardingRequest] = []
        for item in items:
            if isinstance(item, Ignored):
                logger.info("ignored input", extra={"reason": item.reason})
                result.ignored.append(item.reason)
            elif isinstance(item, AllAccountsRequest):
                result.selection = self.select()
                retain = self.onboarder.settings.retain_on_exclusion
                requests += requests_for(result.selection, item, retain)
            else:
                requests.append(item)
        result.requests = self.queue.enqueue(requests)
        logger.info(
            "enqueued",
            extra={"count": len(result.requests), "queue_url": self.queue.queue_url},
        )
        return result

    def select(self) -> Selection:
        return organization_selection(self.onboarder)


def organization_selection(onboarder: Onboarder) -> Selection:
    """The backfill selection, read through the management account (launcher)."""
    management = onboarder.sessions.management()
    orgs = management.client("organizations", onboarder.settings.home_region)
    return select_accounts(orgs, onboarder.exclusions)


# SQS batches: onboard, then done | retry | dead letter -------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What became of one request taken from the queue (logged, one line per request)."""

    account_id: str
    disposition: str  # done | refused | retry | dead-lettered | retry+dead-lettered | duplicate
    attempt: int
    report: AccountReport | None = None
    delay: int | None = None
    retry_regions: tuple[str, ...] | None = None


@dataclass
class BatchResult:
    reports: list[AccountReport] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # messageIds handed back to SQS
    counts: Counter[str] = field(default_factory=Counter)

    def response(self) -> dict[str, Any]:
        return {
            "accounts": [r.as_dict() for r in self.reports],
            "batchItemFailures": [{"itemIdentifier": m} for m in self.failures],
        }


class QueueWorker:
    """Processes an SQS batch of the work queue. One message never blocks another."""

    def __init__(
        self,
        onboarder: Onboarder,
        queue: WorkQueue,
        audit: Callable[[Mapping[str, Any]], Any] | None = None,
    ) -> None:
        self.onboarder = onboarder
        self.queue = queue
        self.cap = onboarder.settings.retry_cap_seconds
        self._deadline: Deadline | None = None
        self._audited: dict[str, Exception | None] = {}
        # The fanned-out audit's per-account step (onboarding.audit.audit_fanout), when configured.
        self.audit = audit

    def process(
        self,
        records: Sequence[Mapping[str, Any]],
        remaining_ms: Callable[[], int] | None = None,
    ) -> BatchResult:
        result = BatchResult()
        seen: set[tuple[str, tuple[str, ...] | None, bool, str]] = set()
        self._deadline = (
            Deadline(remaining_ms, TIME_MARGIN_MS, STOP_WAITING_MS) if remaining_ms else None
        )
        self._audited = self._audit_side_by_side(records)
        for record in records:
            message_id = str(record.get("messageId"))
            # An audit message is never deferred: it takes seconds (TIME_MARGIN_MS is a minute),
            # it has most likely run side by side already, and the work queue `_defer` resends
            # to is not necessarily the queue it came from.
            late = remaining_ms is not None and remaining_ms() < TIME_MARGIN_MS
            if late and not _is_audit_message(record):
                self._defer(record, result)
                continue
            try:
                self._process_record(record, result, seen)
            except QueueSendFailed as err:
                logger.error("could not send", extra={"messageId": message_id, "error": str(err)})
                result.counts["SendFailures"] += 1
                result.failures.append(message_id)
            except Exception:  # a bug: hand the message back; maxReceiveCount parks it
                logger.exception("message failed", extra={"messageId": message_id})
                result.counts["MessagesFailed"] += 1
                result.failures.append(message_id)
        return result

    # One message ------------------------------------------------------------------------------

    def _process_record(
        self,
        record: Mapping[str, Any],
        result: BatchResult,
        seen: set[tuple[str, tuple[str, ...] | None, bool, str]],
    ) -> None:
        message_id = str(record.get("messageId"))
        if _is_audit_message(record):  # one account of a fanned-out audit (audit_fanout)
            try:
                if message_id in self._audited:  # already run, side by side with the others
                    if (error := self._audited.pop(message_id)) is not None:
                        raise error
                else:
                    self._audit_record(record)
                result.counts["AccountsAudited"] += 1
            except InvalidRequest as err:
                self._invalid(record, str(err), result)
            return
        try:
            items = self._parse(record)
        except InvalidRequest as err:
            self._invalid(record, str(err), result)
            return

        requests: list[OnboardingRequest] = []
        for item in items:
            if isinstance(item, Ignored):
                logger.info("ignored input", extra={"reason": item.reason})
                result.counts["EventsIgnored"] += 1
            elif isinstance(item, AllAccountsRequest):  # "ALL" put on the queue: fan out
                selection = Dispatcher(self.onboarder, self.queue).select()
                result.counts["ExcludedOusNotFound"] += len(selection.missing_ous)
                retain = self.onboarder.settings.retain_on_exclusion
                requests += requests_for(selection, item, retain)
            else:
                requests.append(item)

        if len(requests) > 1:  # several accounts in one message: one message each
            sent = self.queue.enqueue(requests)
            result.counts["MessagesEnqueued"] += len(sent)
            logger.info("fanned out", extra={"messageId": message_id, "count": len(sent)})
            return
        for request in requests:
            key = (request.account_id, request.regions, request.dry_run, request.action)
            if key in seen:  # Control Tower's second trigger in the same batch: nothing to do
                result.outcomes.append(Outcome(request.account_id, "duplicate", request.attempt))
                continue
            seen.add(key)
            report = self.onboarder.onboard(request, deadline=self._deadline)
            result.reports.append(report)
            outcome = self._settle(request, report, message_id, result)
            result.outcomes.append(outcome)
            _log_outcome(outcome)

    def _audit_record(self, record: Mapping[str, Any]) -> None:
        if self.audit is None:
            raise InvalidRequest("audit message, but no AUDIT_BUCKET is configured")
        self.audit(json.loads(str(record.get("body"))))

    def _audit_side_by_side(
        self, records: Sequence[Mapping[str, Any]]
    ) -> dict[str, Exception | None]:
        """A batch's audit messages, run at once: each account is independent reads, mostly
        waiting on the network, so side by side they keep the invocation's CPU busy. Returns
        each one's error (None: audited), by messageId, settled in order by the batch's loop."""
        audits = [r for r in records if _is_audit_message(r)] if self.audit else []
        if len(audits) < 2:
            return {}

        def run(record: Mapping[str, Any]) -> Exception | None:
            try:
                self._audit_record(record)
            except Exception as err:  # settled like a sequential failure, in the loop
                return err
            return None

        with ThreadPoolExecutor(len(audits), thread_name_prefix="audit") as pool:
            errors = list(pool.map(run, audits))
        return {str(r.get("messageId")): e for r, e in zip(audits, errors, strict=True)}

    def _parse(self, record: Mapping[str, Any]) -> list[Parsed]:
        """A body is an EventBridge event, a manual request, or a dead letter redriven by the
        SQS console ("start DLQ redrive"): its request is replayed with attempt 1."""
        settings = self.onboarder.settings
        body = record.get("body")
        try:
            payload = json.loads(body) if isinstance(body, str) else None
        except (json.JSONDecodeError, RecursionError):  # refused by parse_sqs_record below
            payload = None
        if is_dead_letter(payload):
            replay = replay_body(payload)
            if replay is None:
                raise InvalidRequest(f"dead letter without a replayable request: {body!r:.120}")
            return list(parse_manual(replay, settings))
        return parse_sqs_record(record, settings)

    def _invalid(self, record: Mapping[str, Any], error: str, result: BatchResult) -> None:
        """A poison message: dead-lettered as it came (never retried), the batch goes on."""
        message_id = str(record.get("messageId"))
        logger.warning("invalid message", extra={"messageId": message_id, "error": error})
        result.counts["MessagesRefused"] += 1
        body = record.get("body")
        envelope = dead_letter_envelope(
            "invalid", error, message_id=message_id, body=body if isinstance(body, str) else ""
        )
        if self.queue.dead_letter(envelope):
            result.counts["RequestsDeadLettered"] += 1

    def _defer(self, record: Mapping[str, Any], result: BatchResult) -> None:
        """Out of time: put the message back unchanged (counts as done for this batch)."""
        message_id = str(record.get("messageId"))
        try:
            self.queue.resend(str(record.get("body")))
            result.counts["MessagesDeferred"] += 1
        except QueueSendFailed:
            result.failures.append(message_id)

    # Done, retry or dead letter ------------------------------------------------------------------

    def _settle(
        self,
        request: OnboardingRequest,
        report: AccountReport,
        message_id: str,
        result: BatchResult,
    ) -> Outcome:
        account_level = report.status == "failed" and not report.regions
        if report.status in ("ok", "refused") or (
            not account_level and not report.retry_regions() and not report.permanent_failures()
        ):
            done = "refused" if report.status == "refused" else "done"
            return Outcome(request.account_id, done, request.attempt, report)

        # An account-level failure (assume-role, IAM, regions) concerns the whole request;
        # otherwise only the failed regions go on, split into retryable and permanent.
        retry: tuple[str, ...] | None
        permanent: tuple[str, ...] | None
        if account_level:
            retry = (request.regions or None) if report.retryable else ()
            permanent = () if report.retryable else (request.regions or None)
        else:
            retry, permanent = report.retry_regions(), report.permanent_failures()

        # The dead letter goes first, the retry last: if a send fails, the message is handed
        # back and redelivered, and the redelivery sends everything again. Sent in this order,
        # only an inert dead letter can be duplicated — never the retry, which would fork a
        # second live retry chain for the same account and regions.
        dead_letters: list[tuple[OnboardingRequest, str]] = []
        requeue: tuple[OnboardingRequest, int] | None = None
        delay: int | None = None
        if retry != ():
            delay = retry_delay(request.attempt, self.cap)
            follow_up = replace(request, regions=retry)
            if delay is None:
                reason = (
                    f"not ready after {request.attempt} attempt(s) and "
                    f"{sum(retry_schedule(self.cap))} s of delays (RETRY_CAP_SECONDS)"
                )
                dead_letters.append((follow_up, reason))
            else:
                requeue = (replace(follow_up, attempt=request.attempt + 1), delay)
        if permanent != ():
            failed = replace(request, regions=permanent)
            why = report.reason or "; ".join(
                f"{r}: {report.regions[r].error}" for r in permanent or () if r in report.regions
            )
            dead_letters.append((failed, f"permanent failure: {why}"))

        for dead, reason in dead_letters:
            self._dead_letter(dead, report, reason, message_id, result)
        dispositions: list[str] = []
        if requeue is not None:
            self.queue.requeue(*requeue)
            result.counts["RetriesScheduled"] += 1
            dispositions.append("retry")
        if dead_letters:
            dispositions.append("dead-lettered")
        return Outcome(
            request.account_id,
            "+".join(dict.fromkeys(dispositions)),
            request.attempt,
            report,
            delay if "retry" in dispositions else None,
            retry,
        )

    def _dead_letter(
        self,
        request: OnboardingRequest,
        report: AccountReport,
        reason: str,
        message_id: str,
        result: BatchResult,
    ) -> None:
        envelope = dead_letter_envelope("failed", reason, request, report, message_id)
        if self.queue.dead_letter(envelope):
            result.counts["RequestsDeadLettered"] += 1
        else:
            logger.error("no DEAD_LETTER_QUEUE_URL: request dropped", extra=envelope)


def _is_audit_message(record: Mapping[str, Any]) -> bool:
    """A body `{"audit": {...}}`: what `audit_fanout.FanoutAudit.start` sends, one per account."""
    body = record.get("body")
    if not isinstance(body, str) or not body.lstrip().startswith('{"audit"'):
        return False  # cheap: anything else goes to the request parser, which refuses it
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(payload, Mapping) and set(payload) == {"audit"}


def _log_outcome(outcome: Outcome) -> None:
    extra: dict[str, Any] = {
        "account_id": outcome.account_id,
        "outcome": outcome.disposition,
        "attempt": outcome.attempt,
    }
    if outcome.report is not None:
        extra["status"] = outcome.report.status
    if outcome.delay is not None:
        extra["retry_in_seconds"] = outcome.delay
        extra["retry_regions"] = list(outcome.retry_regions or ())
    logger.info("request outcome", extra=extra)


# Replaying the dead-letter queue ----------------------------------------------------------------


@dataclass
class Replayed:
    replayed: list[dict[str, Any] | str] = field(default_factory=list)  # what went back
    skipped: list[str] = field(default_factory=list)  # why a message stayed on the DLQ

    def as_dict(self) -> dict[str, Any]:
        return {"replayed": len(self.replayed), "skipped": self.skipped}


def replay_dead_letters(
    sqs: Any,
    dead_letter_url: str,
    queue_url: str,
    limit: int | None = None,
    dry_run: bool = False,
    hold_seconds: int = 300,
) -> Replayed:
    """Move dead letters back to the work queue: a watershed dead letter as its request with
    attempt 1 (a fresh retry budget), a message SQS redrove after maxReceiveCount as it was.
    Invalid messages stay where they are. Each message is deleted from the DLQ only after it
    was sent. Messages are hidden for `hold_seconds` while the run looks at them, so a run sees
    each once; those left (invalid, or all of them in a dry run) are made visible again."""
    result = Replayed()
    queue = WorkQueue(sqs, queue_url)
    left: list[str] = []
    try:
        _replay(sqs, dead_letter_url, queue, limit, dry_run, hold_seconds, result, left)
    finally:
        for receipt in left:
            sqs.change_message_visibility(
                QueueUrl=dead_letter_url, ReceiptHandle=receipt, VisibilityTimeout=0
            )
    return result


def _replay(
    sqs: Any,
    dead_letter_url: str,
    queue: WorkQueue,
    limit: int | None,
    dry_run: bool,
    hold_seconds: int,
    result: Replayed,
    left: list[str],
) -> None:
    while limit is None or len(result.replayed) + len(result.skipped) < limit:
        wanted = (
            10 if limit is None else min(10, limit - len(result.replayed) - len(result.skipped))
        )
        # A long poll: a short poll samples a subset of SQS's servers and may answer nothing
        # from a non-empty queue, which would end the replay early. Stop on an empty long poll.
        messages = sqs.receive_message(
            QueueUrl=dead_letter_url,
            MaxNumberOfMessages=wanted,
            VisibilityTimeout=hold_seconds,
            WaitTimeSeconds=REPLAY_WAIT_SECONDS,
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            body = message["Body"]
            try:
                payload = json.loads(body)
            except json.JSONDecodeError:
                payload = None
            replay: dict[str, Any] | str | None = body
            if not isinstance(payload, Mapping):
                result.skipped.append(f"{message['MessageId']}: body is not a JSON object")
                left.append(message["ReceiptHandle"])
                continue
            if is_dead_letter(payload):
                replay = replay_body(payload)
                if replay is None:
                    result.skipped.append(
                        f"{message['MessageId']}: {payload.get('kind')}: {payload.get('reason')}"
                    )
                    left.append(message["ReceiptHandle"])
                    continue
            if dry_run:
                left.append(message["ReceiptHandle"])
            else:
                queue.resend(replay if isinstance(replay, str) else json.dumps(replay))
                sqs.delete_message(QueueUrl=dead_letter_url, ReceiptHandle=message["ReceiptHandle"])
            result.replayed.append(replay)
