"""A backfill of 1,000 accounts across 4 regions against moto, through the real work-queue path.

    .venv/bin/python bench/backfill.py [--accounts 1000] [--concurrency 2 8] [--latency-ms 10]

For each concurrency setting, in its own process (so peak memory is that run's own; the
settings run side by side, one core each):
1. setup (timed separately): a moto organization with N member accounts and the work queue;
2. enqueue: the reconcile schedule's `{"accounts": "ALL"}` through the Lambda handler — one
   message per ACTIVE account, SendMessageBatch 10 at a time;
3. drain: `concurrency` threads stand in for concurrent Lambda invocations (the mapping's
   MaximumConcurrency); each receives batches of 5 (the template's BatchSize), runs the handler
   on the SQS event and deletes what was not handed back, until the queue is empty.

Printed: accounts per minute, AWS calls per account (split into organization-wide calls made
from the management account / the function's own account, and calls inside members), and the
process's peak RSS (resource.getrusage; includes moto and its in-memory AWS).

A per-call latency (`--latency-ms`, a botocore before-call hook that sleeps) stands in for the
network round trip; without it every thread competes for the GIL with moto, which runs in the
same process, and concurrency only shows moto's CPU cost. The figures show the design's
shape (calls per account, how concurrency scales), not real AWS speed. moto's own costs show
in the times: its SQS gets slower with every message a queue holds (SendMessageBatch takes
~0.3 s at 1,000 messages, so "enqueue" is mostly moto), and each new account costs it fresh
per-account backends (~0.3 s of CPU per account in all, shared by the threads under the GIL).
With 1,000 accounts the two runs take ~13 minutes side by side on 2 cores, and the higher
concurrency is *slower* (64 threads contending for one GIL); `--accounts 200` gives the same
calls-per-account figures in about two minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

HUB_REGIONS = "us-east-1,eu-west-1,eu-central-1,ap-southeast-2"
ORG_WIDE = {"organizations", "sts"}  # shared by the whole organization (management side)


@dataclass
class Context:
    function_name: str = "watershed-onboarding"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:watershed"
    aws_request_id: str = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def one_run(accounts: int, concurrency: int, latency_ms: float) -> dict:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        MOTO_EC2_LOAD_DEFAULT_AMIS="false",
        POWERTOOLS_METRICS_NAMESPACE="watershed-bench",
        POWERTOOLS_SERVICE_NAME="onboarding",
        POWERTOOLS_LOG_LEVEL="WARNING",
    )
    import logging

    import boto3
    from _common import Meter, create_accounts, declare_management_forwarder, organization
    from moto import mock_aws

    from onboarding import handler
    from onboarding.service import Onboarder
    from onboarding.sessions import SessionFactory
    from onboarding.settings import Settings

    logging.getLogger("onboarding").setLevel(logging.WARNING)
    handler.logger.setLevel(logging.WARNING)
    meter = Meter(latency_ms / 1000)

    with mock_aws():
        started = time.perf_counter()
        orgs, management = organization()
        ids = create_accounts(orgs, accounts)
        security = ids[0]
        sqs = boto3.client("sqs", region_name="us-east-1")
        dlq = sqs.create_queue(QueueName="watershed-work-dlq")["QueueUrl"]
        work = sqs.create_queue(
            QueueName="watershed-work", Attributes={"VisibilityTimeout": "1800"}
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=work, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        os.environ.update(
            SECURITY_ACCOUNT_ID=security,
            MANAGEMENT_ACCOUNT_ID=management,
            HUB_REGIONS=HUB_REGIONS,
            REGION_WORKERS="8",
            WORK_QUEUE_URL=work,
            DEAD_LETTER_QUEUE_URL=dlq,
        )
        settings = Settings.from_env()
        declare_management_forwarder(settings)
        service = Onboarder(settings, SessionFactory(settings, hooks=[("before-call", meter)]))
        handler.onboarder = lambda: service  # the function's cold-start object, instrumented
        setup = time.perf_counter() - started

        started = time.perf_counter()
        enqueued = handler.lambda_handler({"accounts": "ALL", "reason": "schedule"}, Context())
        enqueue_seconds = time.perf_counter() - started
        enqueue_calls = meter.snapshot()

        statuses: Counter[str] = Counter()
        lock = threading.Lock()

        def invocation_loop() -> None:
            while True:
                messages = sqs.receive_message(
                    QueueUrl=work, MaxNumberOfMessages=5, VisibilityTimeout=1800
                ).get("Messages", [])
                if not messages:
                    return
                event = {
                    "Records": [
                        {
                            "messageId": m["MessageId"],
                            "receiptHandle": m["ReceiptHandle"],
                            "body": m["Body"],
                            "attributes": {},
                            "messageAttributes": {},
                            "md5OfBody": m["MD5OfBody"],
                            "eventSource": "aws:sqs",
                            "eventSourceARN": arn,
                            "awsRegion": "us-east-1",
                        }
                        for m in messages
                    ]
                }
                response = handler.lambda_handler(event, Context())
                failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
                for m in messages:
                    if m["MessageId"] not in failed:
                        sqs.delete_message(QueueUrl=work, ReceiptHandle=m["ReceiptHandle"])
                with lock:
                    statuses.update(a["status"] for a in response["accounts"])

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for future in [pool.submit(invocation_loop) for _ in range(concurrency)]:
                future.result()
        drain_seconds = time.perf_counter() - started

        drain_calls = meter.snapshot() - enqueue_calls
        onboarded = sum(statuses.values())
        org_wide = sum(n for (svc, _), n in drain_calls.items() if svc in ORG_WIDE)
        own_queue = sum(n for (svc, _), n in drain_calls.items() if svc == "sqs")
        member = sum(drain_calls.values()) - org_wide - own_queue
        dead = int(
            sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])[
                "Attributes"
            ]["ApproximateNumberOfMessages"]
        )
        return {
            "accounts": onboarded,
            "enqueued": enqueued["enqueued"],
            "concurrency": concurrency,
            "setup_s": round(setup, 1),
            "enqueue_s": round(enqueue_seconds, 2),
            "enqueue_calls": dict(Counter({op: n for (_, op), n in enqueue_calls.items()})),
            "drain_s": round(drain_seconds, 1),
            "accounts_per_min": round(onboarded / drain_seconds * 60),
            "calls_per_account": round(sum(drain_calls.values()) / onboarded, 1),
            "org_wide_calls_per_account": round(org_wide / onboarded, 2),
            "member_calls_per_account": round(member / onboarded, 1),
            "top_calls": {f"{svc}:{op}": n for (svc, op), n in drain_calls.most_common(8)},
            "statuses": dict(statuses),
            "dead_lettered": dead,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one_run:
        print(json.dumps(one_run(args.accounts, args.concurrency[0], args.latency_ms)))
        return

    print(
        f"backfill of {args.accounts} accounts x {len(HUB_REGIONS.split(','))} regions "
        f"({HUB_REGIONS}), {args.latency_ms:g} ms per AWS call, moto in process"
    )
    # One process per setting, started together (moto is CPU-bound and holds the GIL, so each
    # run uses about one core); peak RSS is then each run's own.
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--one-run",
                "--accounts",
                str(args.accounts),
                "--concurrency",
                str(concurrency),
                "--latency-ms",
                str(args.latency_ms),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for concurrency in args.concurrency
    ]
    for run in runs:
        out, _ = run.communicate()
        if run.returncode:
            raise SystemExit(f"run failed: {run.args}")
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"\nconcurrency {r['concurrency']:>3}: {r['accounts']} accounts onboarded "
            f"({r['statuses']}), dead-lettered {r['dead_lettered']}\n"
            f"  setup (moto org + queue)   {r['setup_s']} s\n"
            f"  enqueue (schedule, ALL)    {r['enqueue_s']} s  {r['enqueue_calls']}\n"
            f"  drain                      {r['drain_s']} s"
            f"  = {r['accounts_per_min']} accounts/min\n"
            f"  AWS calls per account      {r['calls_per_account']} "
            f"(organization-wide {r['org_wide_calls_per_account']}, "
            f"in the member {r['member_calls_per_account']})\n"
            f"  most frequent              {r['top_calls']}\n"
            f"  peak RSS                   {r['peak_rss_mb']} MB"
        )


if __name__ == "__main__":
    main()
