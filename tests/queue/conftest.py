"""Fixtures for the work-queue tests: the onboarding fixtures (moto organization, readers, call
recorder, fault injector), plus real moto SQS queues, an SQS-event builder, a clock that moto's
SQS honours (DelaySeconds without waiting) and a driver that runs the queue like Lambda would."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from moto.sqs import models as sqs_models

from onboarding import handler

# The onboarding fixtures, loaded from their conftest by path (pytest runs with
# --import-mode=importlib, and a conftest is not importable as a package module).
_spec = importlib.util.spec_from_file_location(
    "onboarding_fixtures", Path(__file__).parent.parent / "onboarding" / "conftest.py"
)
_fixtures = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _fixtures  # dataclasses look their module up while it loads
_spec.loader.exec_module(_fixtures)

aws = _fixtures.aws
org = _fixtures.org
settings = _fixtures.settings
recorder = _fixtures.recorder
faults = _fixtures.faults
make_onboarder = _fixtures.make_onboarder
onboarder = _fixtures.onboarder
reader = _fixtures.reader
org_event = _fixtures.org_event
org_env = _fixtures.org_env
lambda_context = _fixtures.lambda_context
Org = _fixtures.Org
HUB_REGIONS = _fixtures.HUB_REGIONS
FakeLambdaContext = _fixtures.FakeLambdaContext


class Clock:
    """moto SQS's notion of now, moved forward by hand: a message sent with DelaySeconds=30
    becomes receivable after `clock.advance(30)`, and not a second earlier.

    The millisecond clock behind delays and visibility is logical: it starts at the real time
    and moves 1 ms per reading (so "now" is always later than a moment ago, as moto's
    `visible` needs) plus whatever `advance` adds — never by the wall clock, so a slow machine
    cannot make a delayed message visible early. The seconds clock (long-poll loops) stays
    real, offset by `advance`, so a long poll of an empty queue still ends."""

    def __init__(self, monkeypatch):
        self.offset = 0.0
        real_s = sqs_models.unix_time
        self._ms = sqs_models.unix_time_millis()
        self._lock = threading.Lock()

        def unix_time_millis(*_):
            with self._lock:
                self._ms += 1
                return self._ms + self.offset * 1000

        monkeypatch.setattr(sqs_models, "unix_time_millis", unix_time_millis)
        monkeypatch.setattr(sqs_models, "unix_time", lambda *a: real_s(*a) + self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    return Clock(monkeypatch)


@dataclass
class Queues:
    sqs: object
    work: str
    dead_letter: str

    def receive(self, url: str, visibility: int = 0) -> list[dict]:
        """Every message visible now. Received with a long visibility timeout so each comes
        once; with `visibility=0` (a peek) they are made visible again afterwards."""
        messages = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=max(visibility, 600),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                break
            messages += batch
        if visibility == 0:
            for message in messages:
                self.sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
        return messages

    def take(self, url: str) -> list[dict]:
        """Receive and delete every visible message (what Lambda does on success)."""
        messages = self.receive(url, visibility=30)
        for message in messages:
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return messages

    def bodies(self, url: str) -> list[dict]:
        return [json.loads(m["Body"]) for m in self.receive(url)]

    def counts(self, url: str) -> dict[str, int]:
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        return {
            k: int(v)
            for k, v in attributes["Attributes"].items()
            if k.startswith("ApproximateNumberOfMessages")
        }


@pytest.fixture
def queues(aws) -> Queues:
    """The function's own work queue and dead-letter queue (in the default moto account)."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    dead_letter = sqs.create_queue(QueueName="watershed-work-dlq")["QueueUrl"]
    work = sqs.create_queue(QueueName="watershed-work", Attributes={"VisibilityTimeout": "1800"})[
        "QueueUrl"
    ]
    return Queues(sqs, work, dead_letter)


def sqs_event(messages: list[dict], queue_arn: str) -> dict:
    """Lambda's SQS event for received messages, in the shape of the SQS event source."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def raw_records(*bodies: str | dict) -> dict:
    """An SQS event with hand-written bodies (a poison message, say), without going via moto."""
    return {
        "Records": [
            {
                "messageId": f"hand-{i}",
                "receiptHandle": f"rh-{i}",
                "body": body if isinstance(body, str) else json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "0" * 32,
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:watershed-work",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


@dataclass
class Lambda:
    """Invokes the handler as Lambda would: direct invocations, and the SQS event source."""

    queues: Queues
    context: object
    responses: list[dict] = field(default_factory=list)

    def invoke(self, event: dict) -> dict:
        response = handler.lambda_handler(event, self.context)
        self.responses.append(response)
        return response

    def event(self, messages: list[dict]) -> dict:
        """The SQS event the event source would build for these received messages."""
        arn = self.queues.sqs.get_queue_attributes(
            QueueUrl=self.queues.work, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        return sqs_event(messages, arn)

    def poll(self, batch_size: int = 5) -> list[dict]:
        """One pass of the event source over what is visible now: receive in batches, invoke,
        delete the messages not listed in batchItemFailures. Returns the responses."""
        arn = self.queues.sqs.get_queue_attributes(
            QueueUrl=self.queues.work, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        messages = self.queues.receive(self.queues.work, visibility=1800)
        out = []
        for start in range(0, len(messages), batch_size):
            batch = messages[start : start + batch_size]
            response = self.invoke(sqs_event(batch, arn))
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            for message in batch:
                if message["MessageId"] not in failed:
                    self.queues.sqs.delete_message(
                        QueueUrl=self.queues.work, ReceiptHandle=message["ReceiptHandle"]
                    )
            out.append(response)
        return out


@pytest.fixture
def queued_env(org_env, queues):
    """The onboarding environment with the work queue and its dead-letter queue."""

    def apply(**extra: str) -> dict[str, str]:
        return org_env(
            WORK_QUEUE_URL=queues.work, DEAD_LETTER_QUEUE_URL=queues.dead_letter, **extra
        )

    return apply


@pytest.fixture
def function(queued_env, queues, recorder, faults, monkeypatch, lambda_context):
    """The deployed function: queue settings in the environment, instrumented sessions
    (every call recorded, faults injectable), invoked through `function.invoke/poll`."""
    from onboarding.service import Onboarder
    from onboarding.sessions import SessionFactory
    from onboarding.settings import Settings

    queued_env()

    def build() -> Onboarder:
        settings = Settings.from_env()
        hooks = [("before-parameter-build", recorder), ("before-call", faults)]
        return Onboarder(settings, SessionFactory(settings, hooks=hooks))

    monkeypatch.setattr(handler, "onboarder", build)
    return Lambda(queues, lambda_context)


@dataclass
class BigOrg:
    """The onboarding organization plus what a backfill must tell apart."""

    base: Org
    extra_active: list[str]
    suspended: str  # closed: SUSPENDED, still listed by ListAccounts
    removed: str  # removed from the organization: no longer listed
    ou: str  # an OU with one account directly in it ...
    child_ou: str  # ... and a child OU with another
    in_ou: str
    in_child_ou: str
    tagged: str  # carries the tag watershed=skip

    @property
    def active(self) -> set[str]:
        b = self.base
        return {
            b.management,
            b.security,
            b.member,
            b.other_member,
            *self.extra_active,
            self.in_ou,
            self.in_child_ou,
            self.tagged,
        }


@pytest.fixture
def big_org(org) -> BigOrg:
    client = boto3.client("organizations", region_name="us-east-1")

    def create(name: str) -> str:
        status = client.create_account(Email=f"{name}@example.com", AccountName=name)
        return status["CreateAccountStatus"]["AccountId"]

    extra = [create(f"extra{i}") for i in range(4)]  # 11 ACTIVE: two send batches
    suspended, removed = create("closed"), create("leaver")
    client.close_account(AccountId=suspended)
    client.remove_account_from_organization(AccountId=removed)

    root = client.list_roots()["Roots"][0]["Id"]
    ou = client.create_organizational_unit(ParentId=root, Name="sandbox")["OrganizationalUnit"]
    child = client.create_organizational_unit(ParentId=ou["Id"], Name="deep")["OrganizationalUnit"]
    in_ou, in_child = create("sandbox1"), create("deep1")
    client.move_account(AccountId=in_ou, SourceParentId=root, DestinationParentId=ou["Id"])
    client.move_account(AccountId=in_child, SourceParentId=root, DestinationParentId=child["Id"])

    tagged = create("tagged")
    client.tag_resource(ResourceId=tagged, Tags=[{"Key": "watershed", "Value": "skip"}])
    return BigOrg(org, extra, suspended, removed, ou["Id"], child["Id"], in_ou, in_child, tagged)


@pytest.fixture
def raw():
    """`raw(*bodies)`: an SQS event with hand-written bodies (see raw_records)."""
    return raw_records
