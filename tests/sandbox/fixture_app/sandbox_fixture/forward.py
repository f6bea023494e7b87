"""Copy Kinesis records to TARGET_STREAM_ARN; hand back the ones keyed as FAIL_KEYS says.

A test double for the sandbox poller, shaped like a relay but deliberately naive.
"""

import base64
import os

import boto3

_calls = {"cold_starts": 0}
_CLIENT = None
_calls["cold_starts"] += 1


def lambda_handler(event, context):
    global _CLIENT
    target = os.environ["TARGET_STREAM_ARN"]
    fail_keys = set(filter(None, os.environ.get("FAIL_KEYS", "").split(",")))
    if _CLIENT is None:
        _CLIENT = boto3.client("kinesis", region_name=target.split(":")[3])
    failures = []
    for record in event["Records"]:
        kinesis = record["kinesis"]
        if kinesis["partitionKey"] in fail_keys:
            failures.append({"itemIdentifier": kinesis["sequenceNumber"]})
            continue
        _CLIENT.put_record(
            StreamARN=target,
            Data=base64.b64decode(kinesis["data"]),
            PartitionKey=kinesis["partitionKey"],
        )
    forwarded = len(event["Records"]) - len(failures)
    print(f"forwarded {forwarded}, {context.get_remaining_time_in_millis()} ms left")
    return {"batchItemFailures": failures}
