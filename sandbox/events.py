"""The events the story raises, shaped as AWS sends them (see shared/aws-events.md).

Each builder returns a PutEvents entry: the envelope fields that EventBridge fills in itself
(`id`, `account`, `region`) come from the bus the entry is put on — the sandbox puts every event
on the bus of the account and region where AWS would emit it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.organization import Account


@dataclass(frozen=True)
class RaisedEvent:
    """An event the story puts on a bus, and whether it should reach the destination stream."""

    label: str
    account: Account
    region: str
    entry: dict[str, Any]
    forwardable: bool  # matches the members' default forwarding pattern
    why: str  # why it should (or should not) arrive

    @property
    def detail(self) -> dict[str, Any]:
        return json.loads(self.entry["Detail"])


def _entry(source: str, detail_type: str, detail: dict[str, Any], resources: list[str]) -> dict:
    return {
        "Source": source,
        "DetailType": detail_type,
        "Detail": json.dumps(detail),
        "Resources": resources,
        "Time": datetime.now(tz=UTC).replace(microsecond=0),
    }


def _org_time(moment: datetime) -> str:
    """Organizations' own timestamp format inside createAccountStatus (not ISO 8601)."""
    return moment.strftime("%b %-d, %Y %-I:%M:%S %p")


def create_account_result(management: Account, member: Account) -> dict[str, Any]:
    """Organizations CreateAccountResult, SUCCEEDED: management account, us-east-1."""
    now = datetime.now(tz=UTC)
    detail = {
        "eventVersion": "1.08",
        "userIdentity": {"accountId": management.account_id, "invokedBy": "AWS Internal"},
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "organizations.amazonaws.com",
        "eventName": "CreateAccountResult",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "AWS Internal",
        "userAgent": "AWS Internal",
        "requestParameters": None,
        "responseElements": None,
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsServiceEvent",
        "managementEvent": True,
        "recipientAccountId": management.account_id,
        "serviceEventDetails": {
            "createAccountStatus": {
                "id": member.create_request_id or f"car-{uuid.uuid4().hex}",
                "state": "SUCCEEDED",
                "accountName": "****",
                "accountId": member.account_id,
                "requestedTimestamp": _org_time(now),
                "completedTimestamp": _org_time(now),
            }
        },
        "eventCategory": "Management",
    }
    return _entry("aws.organizations", "AWS Service Event via CloudTrail", detail, [])


def create_managed_account(
    management: Account, member: Account, home_region: str
) -> dict[str, Any]:
    """Control Tower CreateManagedAccount, SUCCEEDED: management account, Control Tower home."""
    now = datetime.now(tz=UTC)
    detail = {
        "eventVersion": "1.08",
        "userIdentity": {"accountId": management.account_id, "invokedBy": "AWS Internal"},
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "controltower.amazonaws.com",
        "eventName": "CreateManagedAccount",
        "awsRegion": home_region,
        "sourceIPAddress": "AWS Internal",
        "userAgent": "AWS Internal",
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsServiceEvent",
        "serviceEventDetails": {
            "createManagedAccountStatus": {
                "organizationalUnit": {
                    "organizationalUnitName": member.ou_name,
                    "organizationalUnitId": member.ou_id,
                },
                "account": {"accountName": member.name, "accountId": member.account_id},
                "state": "SUCCEEDED",
                "message": "AWS Control Tower successfully created a managed account.",
                "requestedTimestamp": now.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                "completedTimestamp": now.strftime("%Y-%m-%dT%H:%M:%S+0000"),
            }
        },
    }
    return _entry("aws.controltower", "AWS Service Event via CloudTrail", detail, [])


def guardduty_finding(member: Account, region: str, why: str) -> RaisedEvent:
    finding_id = uuid.uuid4().hex
    detector_id = uuid.uuid4().hex
    now = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    arn = f"arn:aws:guardduty:{region}:{member.account_id}:detector/{detector_id}"
    attack = "198.51.100.200 is performing SSH brute force attacks"
    detail = {
        "schemaVersion": "2.0",
        "accountId": member.account_id,
        "region": region,
        "partition": "aws",
        "id": finding_id,
        "arn": f"{arn}/finding/{finding_id}",
        "type": "UnauthorizedAccess:EC2/SSHBruteForce",
        "resource": {
            "resourceType": "Instance",
            "instanceDetails": {"instanceId": "i-0123456789abcdef0", "instanceType": "t3.micro"},
        },
        "service": {
            "serviceName": "guardduty",
            "detectorId": detector_id,
            "action": {
                "actionType": "NETWORK_CONNECTION",
                "networkConnectionAction": {
                    "connectionDirection": "INBOUND",
                    "remoteIpDetails": {"ipAddressV4": "198.51.100.200"},
                },
            },
            "archived": False,
            "count": 3,
            "eventFirstSeen": now,
            "eventLastSeen": now,
            "resourceRole": "TARGET",
        },
        "severity": 5,
        "createdAt": now,
        "updatedAt": now,
        "title": f"{attack} against i-0123456789abcdef0.",
        "description": f"{attack} against i-0123456789abcdef0.",
    }
    entry = _entry("aws.guardduty", "GuardDuty Finding", detail, [])
    return RaisedEvent("GuardDuty finding", member, region, entry, True, why)


def cloudtrail_api_call(member: Account, why: str) -> RaisedEvent:
    """An IAM write call: a global service, so its CloudTrail event appears in us-east-1 only."""
    detail = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "accountId": member.account_id,
            "arn": f"arn:aws:sts::{member.account_id}:assumed-role/DevOps/bob",
        },
        "eventTime": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateAccessKey",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.25",
        "userAgent": "aws-cli/2.22.0",
        "requestParameters": {"userName": "ci-deployer"},
        "responseElements": {
            "accessKey": {
                "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
                "status": "Active",
                "userName": "ci-deployer",
            }
        },
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": member.account_id,
        "eventCategory": "Management",
    }
    entry = _entry("aws.iam", "AWS API Call via CloudTrail", detail, [])
    return RaisedEvent("CloudTrail API call", member, "us-east-1", entry, True, why)


def trusted_advisor_check(member: Account, checked_region: str, why: str) -> RaisedEvent:
    """Trusted Advisor: always in us-east-1; the checked region is inside the detail."""
    detail = {
        "check-name": "Security Groups - Specific Ports Unrestricted",
        "check-item-detail": {
            "Region": checked_region,
            "Security Group Name": "web",
            "Security Group ID": "sg-0a1b2c3d4e5f67890",
            "Protocol": "tcp",
            "Port": "22",
            "Status": "Red",
        },
        "status": "ERROR",
        "resource_id": f"arn:aws:ec2:{checked_region}:{member.account_id}:"
        "security-group/sg-0a1b2c3d4e5f67890",
        "uuid": str(uuid.uuid4()),
    }
    entry = _entry(
        "aws.trustedadvisor", "Trusted Advisor Check Item Refresh Notification", detail, []
    )
    return RaisedEvent("Trusted Advisor check", member, "us-east-1", entry, True, why)


def instance_state_change(member: Account, region: str, why: str) -> RaisedEvent:
    """An EC2 state change: on every default bus, and not a security event watershed forwards."""
    instance = "i-0fedcba9876543210"
    detail = {"instance-id": instance, "state": "running"}
    resources = [f"arn:aws:ec2:{region}:{member.account_id}:instance/{instance}"]
    entry = _entry("aws.ec2", "EC2 Instance State-change Notification", detail, resources)
    return RaisedEvent("EC2 state change", member, region, entry, False, why)


def region_opt_in(member: Account, region: str) -> dict[str, Any]:
    """Account Management's Region Opt-In Status Change, ENABLED: AWS sends it to the account
    that made the call (here the member itself), in us-east-1 only."""
    detail = {"accountId": member.account_id, "regionName": region, "status": "ENABLED"}
    resources = [f"arn:aws:account::{member.account_id}:account"]
    return _entry("aws.account", "Region Opt-In Status Change", detail, resources)
