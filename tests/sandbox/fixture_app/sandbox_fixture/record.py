"""Remember every SQS event and the environment it ran with; fail messages whose body says so."""

import json
import os

import boto3

SEEN = []


def lambda_handler(event, context):
    identity = boto3.client("sts").get_caller_identity()
    SEEN.append(
        {
            "event": event,
            "account": identity["Account"],
            "region": os.environ["AWS_REGION"],
            "setting": os.environ.get("SETTING"),
            "remaining_ms": context.get_remaining_time_in_millis(),
        }
    )
    failures = [
        {"itemIdentifier": r["messageId"]}
        for r in event["Records"]
        if json.loads(r["body"]).get("detail", {}).get("fail")
    ]
    if any(json.loads(r["body"]).get("detail", {}).get("raise") for r in event["Records"]):
        raise RuntimeError("asked to raise")
    return {"batchItemFailures": failures}
