"""WorkQueue.enqueue, the one way a request is put on the work queue: batches of 10, one message
per distinct request, refused entries sent once more, and what was not sent named on the error."""

import json

import boto3
import pytest

from onboarding.events import OnboardingRequest
from onboarding.queue.workqueue import QueueSendFailed, WorkQueue


class RefusingSqs:
    """Stands in for SQS refusing entries of a SendMessageBatch (throttling, a partial outage),
    which moto never does: entries whose body names a refused account come back in `Failed`,
    the others go to moto's queue."""

    def __init__(self, sqs, refused: set[str]):
        self.sqs = sqs
        self.refused = refused

    def send_message_batch(self, QueueUrl, Entries):
        def refused(entry):
            return json.loads(entry["MessageBody"])["accounts"][0] in self.refused

        kept = [e for e in Entries if not refused(e)]
        response = self.sqs.send_message_batch(QueueUrl=QueueUrl, Entries=kept) if kept else {}
        failed = [
            {"Id": e["Id"], "Code": "ThrottlingException", "SenderFault": False, "Message": "slow"}
            for e in Entries
            if refused(e)
        ]
        return {**response, "Failed": failed}


def received(sqs, url: str) -> list[dict]:
    bodies = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def accounts(n: int) -> list[str]:
    return [f"{100000000000 + i}" for i in range(n)]


def test_enqueue_sends_one_manual_message_per_distinct_request(aws):
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="work")["QueueUrl"]
    requests = [OnboardingRequest(a, ("eu-west-1",), "audit-fix") for a in accounts(23)]

    sent = WorkQueue(sqs, url).enqueue([*requests, requests[0]])

    assert sent == requests
    bodies = received(sqs, url)
    assert sorted(b["accounts"][0] for b in bodies) == accounts(23)
    assert bodies[0] == {**requests[0].as_message(), "attempt": 1}


def test_entries_refused_twice_are_named_on_the_error_and_the_rest_are_sent(aws):
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="work")["QueueUrl"]
    ids = accounts(15)
    requests = [OnboardingRequest(a, None, "audit-fix") for a in ids]

    with pytest.raises(
        QueueSendFailed, match="1 message\\(s\\) not sent: ThrottlingException"
    ) as err:
        WorkQueue(RefusingSqs(sqs, {ids[3]}), url).enqueue(requests)

    # The refused entry, and the second batch that was never tried, are what was not sent.
    assert [r.account_id for r in err.value.unsent] == [ids[3], *ids[10:]]
    assert sorted(b["accounts"][0] for b in received(sqs, url)) == [*ids[:3], *ids[4:10]]
