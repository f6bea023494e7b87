"""A local stand-in for Lambda event source mappings: poll SQS and Kinesis, invoke the handler.

The poller reads the mappings the deployed template created (moto Lambda keeps them, and lists
them with ListEventSourceMappings) and the functions' configuration (handler, environment,
role, timeout), then does what Lambda's pollers do, in this process:

- SQS: receive up to BatchSize messages, invoke with the SQS event shape, delete the messages
  that succeeded — all of them, or, with `ReportBatchItemFailures`, all but the ones returned
  in `batchItemFailures` (an invalid response fails the whole batch). Failed messages stay in
  flight until their visibility timeout, and the queue's redrive policy applies, as in AWS.
- Kinesis: per shard, read up to BatchSize records after the checkpoint, invoke with the
  Kinesis event shape; on success the checkpoint moves past the batch; with
  `ReportBatchItemFailures` it moves to just before the lowest sequence number returned, and
  the next batch starts there; a function error retries the batch (halved with
  `BisectBatchOnFunctionError`). After `MaximumRetryAttempts` the batch is skipped and its
  description sent to the on-failure destination, as Lambda does.

Not modelled: batching windows (a batch is taken as soon as records are there), parallelisation
factor, filter criteria, maximum record age, and concurrency (one invocation at a time).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.embedded import EmbeddedAws
from sandbox.journal import Journal
from sandbox.lambda_runtime import FunctionSpec, Invocation, LambdaRuntime

# The message attributes Lambda copies into an SQS record's `attributes`.
_SQS_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "DeadLetterQueueSourceArn",
)


@dataclass(frozen=True)
class Mapping:
    """One event source mapping as deployed: where it reads, what it invokes, how it retries."""

    uuid: str
    function: FunctionSpec
    source_arn: str
    batch_size: int
    report_batch_item_failures: bool
    enabled: bool = True
    starting_position: str | None = None
    maximum_retry_attempts: int = -1  # -1: until the records expire, as Lambda's default
    bisect_on_error: bool = False
    on_failure_arn: str | None = None
    filter_criteria: Any = None

    @property
    def kind(self) -> str:
        return self.source_arn.split(":", 3)[2]

    @property
    def region(self) -> str:
        return self.source_arn.split(":")[3]

    @property
    def source_name(self) -> str:
        resource = self.source_arn.split(":", 5)[5]
        return resource.split("/", 1)[1] if self.kind == "kinesis" else resource


def read_mappings(aws: EmbeddedAws, account_id: str, regions: list[str]) -> list[Mapping]:
    """Every event source mapping of `account_id` in `regions`, with its function's settings."""
    session = aws.session(account_id)
    mappings = []
    for region in regions:
        lam = session.client("lambda", region_name=region)
        for page in lam.get_paginator("list_event_source_mappings").paginate():
            for found in page["EventSourceMappings"]:
                config = lam.get_function_configuration(FunctionName=found["FunctionArn"])
                function = FunctionSpec(
                    account_id=account_id,
                    region=region,
                    name=config["FunctionName"],
                    arn=config["FunctionArn"],
                    handler=config["Handler"],
                    role_arn=config["Role"],
                    environment=dict(config.get("Environment", {}).get("Variables", {})),
                    timeout_seconds=int(config.get("Timeout", 3)),
                    memory_mb=int(config.get("MemorySize", 128)),
                )
                on_failure = found.get("DestinationConfig", {}).get("OnFailure", {})
                mappings.append(
                    Mapping(
                        uuid=found["UUID"],
                        function=function,
                        source_arn=found["EventSourceArn"],
                        batch_size=int(found.get("BatchSize", 10)),
                        report_batch_item_failures="ReportBatchItemFailures"
                        in found.get("FunctionResponseTypes", []),
                        enabled=found.get("State", "Enabled") in ("Enabled", "Creating"),
                        starting_position=found.get("StartingPosition"),
                        maximum_retry_attempts=int(found.get("MaximumRetryAttempts", -1)),
                        bisect_on_error=bool(found.get("BisectBatchOnFunctionError", False)),
                        on_failure_arn=on_failure.get("Destination"),
                        filter_criteria=found.get("FilterCriteria"),
                    )
                )
    return mappings


@dataclass
class Delivery:
    """One invocation made by the poller, and what became of its batch."""

    mapping: Mapping
    invocation: Invocation
    records: int
    failed: list[str] = field(default_factory=list)  # message ids / sequence numbers handed back
    whole_batch_failed: bool = False
    event_ids: list[str] = field(default_factory=list)
    started: float = 0.0  # on the journal's clock


@dataclass
class _ShardCursor:
    after: str | None = None  # last sequence number done with; None: start position
    attempts: int = 0
    batch_limit: int | None = None  # set while bisecting


def _event_id(payload: bytes | str) -> str | None:
    """The EventBridge id inside a record or message body, for the journal only."""
    try:
        document = json.loads(payload)
    except (ValueError, TypeError):
        return None
    return document.get("id") if isinstance(document, dict) else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _batch_item_failures(result: Any, known: set[str]) -> list[str] | None:
    """The identifiers handed back, or None when the response is not a valid partial response."""
    if result is None:
        return []
    if not isinstance(result, dict):
        return None
    items = result.get("batchItemFailures")
    if items is None:
        return []
    if not isinstance(items, list):
        return None
    identifiers = []
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in known:
            return None
        identifiers.append(identifier)
    return identifiers


class EventSourceMappingPoller:
    """Polls every mapping's source and invokes its function, as Lambda's pollers would."""

    def __init__(
        self,
        aws: EmbeddedAws,
        runtime: LambdaRuntime,
        mappings: list[Mapping],
        journal: Journal | None = None,
    ) -> None:
        self._aws = aws
        self._runtime = runtime
        self.mappings = [m for m in mappings if m.enabled]
        self._journal = journal or aws.journal
        self._cursors: dict[tuple[str, str], _ShardCursor] = {}
        self.deliveries: list[Delivery] = []
        for mapping in self.mappings:
            if mapping.kind not in ("sqs", "kinesis"):
                raise ValueError(f"mapping {mapping.uuid}: unsupported source {mapping.source_arn}")
            if mapping.kind == "kinesis" and mapping.starting_position == "LATEST":
                self._start_at_latest(mapping)

    def poll(self) -> list[Delivery]:
        """One round: at most one batch per SQS mapping and per Kinesis shard."""
        done = []
        for mapping in self.mappings:
            if mapping.kind == "sqs":
                delivery = self._poll_queue(mapping)
                if delivery:
                    done.append(delivery)
            else:
                for shard_id in self._shards(mapping):
                    delivery = self._poll_shard(mapping, shard_id)
                    if delivery:
                        done.append(delivery)
        self.deliveries.extend(done)
        return done

    def drain(self, max_rounds: int = 100) -> list[Delivery]:
        """Poll until a round finds nothing to deliver (or `max_rounds`: no endless retries)."""
        done: list[Delivery] = []
        for _ in range(max_rounds):
            batch = self.poll()
            if not batch:
                break
            done.extend(batch)
        return done

    # --- SQS -------------------------------------------------------------------------------

    def _sqs(self, mapping: Mapping) -> tuple[Any, str]:
        _, region, account, name = mapping.source_arn.split(":", 5)[2:]
        client = self._aws.session(account).client("sqs", region_name=region)
        url = client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        return client, url

    def _poll_queue(self, mapping: Mapping) -> Delivery | None:
        client, url = self._sqs(mapping)
        messages: list[dict[str, Any]] = []
        while len(messages) < mapping.batch_size:
            received = client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(10, mapping.batch_size - len(messages)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not received:
                break
            messages.extend(received)
        if not messages:
            return None
        event = {"Records": [self._sqs_record(mapping, m) for m in messages]}
        event_ids = [i for i in (_event_id(m["Body"]) for m in messages) if i]
        started = self._journal.now()
        invocation = self._runtime.invoke(mapping.function, event)
        delivery = Delivery(
            mapping, invocation, len(messages), event_ids=event_ids, started=started
        )
        by_id = {m["MessageId"]: m for m in messages}
        failed: list[str] | None = list(by_id) if not invocation.ok else []
        if invocation.ok and mapping.report_batch_item_failures:
            failed = _batch_item_failures(invocation.result, set(by_id))
        if failed is None:
            failed = list(by_id)
        delivery.failed = failed
        delivery.whole_batch_failed = len(failed) == len(by_id)
        for message_id, message in by_id.items():
            if message_id not in failed:
                client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        self._note(delivery, "handed back" if failed else "ok")
        return delivery

    @staticmethod
    def _sqs_record(mapping: Mapping, message: dict[str, Any]) -> dict[str, Any]:
        attributes = message.get("Attributes", {})
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {k: attributes[k] for k in _SQS_RECORD_ATTRIBUTES if k in attributes},
            "messageAttributes": {
                name: {
                    "stringValue": value.get("StringValue"),
                    "binaryValue": base64.b64encode(value["BinaryValue"]).decode()
                    if "BinaryValue" in value
                    else None,
                    "stringListValues": value.get("StringListValues", []),
                    "binaryListValues": [
                        base64.b64encode(v).decode() for v in value.get("BinaryListValues", [])
                    ],
                    "dataType": value["DataType"],
                }
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": mapping.source_arn,
            "awsRegion": mapping.region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        for value in record["messageAttributes"].values():
            for key in ("stringValue", "binaryValue"):
                if value[key] is None:
                    del value[key]
        return record

    # --- Kinesis ---------------------------------------------------------------------------

    def _kinesis(self, mapping: Mapping) -> Any:
        account, region = mapping.source_arn.split(":")[4], mapping.region
        return self._aws.session(account).client("kinesis", region_name=region)

    def _shards(self, mapping: Mapping) -> list[str]:
        shards = self._kinesis(mapping).list_shards(StreamARN=mapping.source_arn)["Shards"]
        return [shard["ShardId"] for shard in shards]

    def _start_at_latest(self, mapping: Mapping) -> None:
        client = self._kinesis(mapping)
        for shard_id in self._shards(mapping):
            cursor = self._cursors.setdefault((mapping.uuid, shard_id), _ShardCursor())
            cursor.after = self._latest_sequence(client, mapping, shard_id)

    @staticmethod
    def _latest_sequence(client: Any, mapping: Mapping, shard_id: str) -> str | None:
        iterator = client.get_shard_iterator(
            StreamARN=mapping.source_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        last = None
        while iterator:
            response = client.get_records(
                ShardIterator=iterator, StreamARN=mapping.source_arn, Limit=10000
            )
            if not response["Records"]:
                break
            last = response["Records"][-1]["SequenceNumber"]
            iterator = response.get("NextShardIterator")
        return last

    def _poll_shard(self, mapping: Mapping, shard_id: str) -> Delivery | None:
        client = self._kinesis(mapping)
        cursor = self._cursors.setdefault((mapping.uuid, shard_id), _ShardCursor())
        if cursor.after is None:
            position = {"ShardIteratorType": "TRIM_HORIZON"}
        else:
            position = {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": cursor.after,
            }
        iterator = client.get_shard_iterator(
            StreamARN=mapping.source_arn, ShardId=shard_id, **position
        )["ShardIterator"]
        limit = min(mapping.batch_size, cursor.batch_limit or mapping.batch_size)
        records = client.get_records(
            ShardIterator=iterator, StreamARN=mapping.source_arn, Limit=limit
        )["Records"]
        if not records:
            return None
        event = {"Records": [self._kinesis_record(mapping, shard_id, r) for r in records]}
        started = self._journal.now()
        invocation = self._runtime.invoke(mapping.function, event)
        sequence_numbers = [r["SequenceNumber"] for r in records]
        delivery = Delivery(
            mapping,
            invocation,
            len(records),
            event_ids=[i for i in (_event_id(r["Data"]) for r in records) if i],
            started=started,
        )
        failed: list[str] | None = [] if invocation.ok else None
        if invocation.ok and mapping.report_batch_item_failures:
            failed = _batch_item_failures(invocation.result, set(sequence_numbers))
        if failed is None:  # function error or invalid response: the whole batch again
            delivery.failed, delivery.whole_batch_failed = list(sequence_numbers), True
            cursor.attempts += 1
            if not invocation.ok and mapping.bisect_on_error and len(records) > 1:
                cursor.batch_limit = max(1, len(records) // 2)
        elif failed:
            lowest = min(failed, key=int)
            delivery.failed = [s for s in sequence_numbers if int(s) >= int(lowest)]
            before = [s for s in sequence_numbers if int(s) < int(lowest)]
            if before:
                cursor.after = before[-1]
                cursor.attempts = 0
            cursor.attempts += 1
        else:
            cursor.after, cursor.attempts, cursor.batch_limit = sequence_numbers[-1], 0, None
        exhausted = 0 <= mapping.maximum_retry_attempts < cursor.attempts
        if delivery.failed and exhausted:
            kept = [r for r in records if r["SequenceNumber"] in delivery.failed]
            self._send_on_failure(mapping, shard_id, kept, invocation, cursor.attempts)
            cursor.after, cursor.attempts, cursor.batch_limit = sequence_numbers[-1], 0, None
        self._note(delivery, "handed back" if delivery.failed else "ok")
        return delivery

    def _kinesis_record(
        self, mapping: Mapping, shard_id: str, record: dict[str, Any]
    ) -> dict[str, Any]:
        arrival = record["ApproximateArrivalTimestamp"]
        return {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": record["PartitionKey"],
                "sequenceNumber": record["SequenceNumber"],
                "data": base64.b64encode(record["Data"]).decode(),
                "approximateArrivalTimestamp": round(arrival.timestamp(), 3),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{record['SequenceNumber']}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": mapping.function.role_arn,
            "awsRegion": mapping.region,
            "eventSourceARN": mapping.source_arn,
        }

    def _send_on_failure(
        self,
        mapping: Mapping,
        shard_id: str,
        records: list[dict[str, Any]],
        invocation: Invocation,
        attempts: int,
    ) -> None:
        """What Lambda sends to a stream mapping's on-failure destination: a batch description."""
        description = {
            "requestContext": {
                "requestId": invocation.request_id,
                "functionArn": mapping.function.arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled" if not invocation.ok else "",
            },
            "version": "1.0",
            "timestamp": _iso(datetime.now(tz=UTC)),
            "KinesisBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": records[0]["SequenceNumber"],
                "endSequenceNumber": records[-1]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(records[0]["ApproximateArrivalTimestamp"]),
                "approximateArrivalOfLastRecord": _iso(records[-1]["ApproximateArrivalTimestamp"]),
                "batchSize": len(records),
                "streamArn": mapping.source_arn,
            },
        }
        where = f"{mapping.function.name} {mapping.region}"
        if not mapping.on_failure_arn:
            self._journal.notice(
                "dropped", f"{where}: retries exhausted, no on-failure destination"
            )
            return
        service, region, account, resource = mapping.on_failure_arn.split(":", 5)[2:]
        if service != "sqs":
            raise ValueError(f"on-failure destination {mapping.on_failure_arn}: only SQS modelled")
        sqs = self._aws.session(account).client("sqs", region_name=region)
        url = sqs.get_queue_url(QueueName=resource, QueueOwnerAWSAccountId=account)["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(description))
        self._journal.notice(
            "on-failure", f"{where}: {len(records)} record(s) from {shard_id} sent to {resource}"
        )

    def _note(self, delivery: Delivery, outcome: str) -> None:
        mapping = delivery.mapping
        step = f"{mapping.kind} mapping → {mapping.function.name}"
        where = f"{mapping.function.account_id} {mapping.region}"
        note = outcome if delivery.invocation.ok else f"error: {delivery.invocation.error}"
        took = f"{delivery.invocation.duration_seconds * 1000:.0f} ms"
        for event_id in delivery.event_ids:
            self._journal.record(
                event_id,
                step,
                where,
                f"batch of {delivery.records}, {note} in {took}",
                at=delivery.started,
            )
