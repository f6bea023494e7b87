"""Deploy the project's own templates into moto's CloudFormation, as `sam deploy` would.

A SAM template goes through the same three steps as in AWS: its local CodeUris are zipped and
uploaded to S3 (what `sam package` does), it is translated to plain CloudFormation by
aws-sam-translator (what the `AWS::Serverless-2016-10-31` transform does), and the result is
created as a stack. moto's CloudFormation then creates the resources it knows.

Resource types moto's CloudFormation does not implement are created as empty placeholders.
The sandbox lists them for every stack; the one that matters for the pipeline,
`AWS::Events::EventBusPolicy`, is applied afterwards with PutPermission, its properties resolved
by moto's own intrinsic-function resolver — and the report says so.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from sandbox.embedded import SandboxError

_CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
_PACKAGED_SUFFIXES = (".py", ".json", ".txt", ".yaml", ".yml", ".j2", ".html", ".jinja")
_NOT_PACKAGED_DIRS = {"__pycache__", "tests", "bench", "docs", "build", "node_modules"}


@dataclass(frozen=True)
class StandIn:
    """A resource moto skipped, and what the sandbox did in its place (or that it did nothing)."""

    logical_id: str
    resource_type: str
    action: str


@dataclass(frozen=True)
class DeployedStack:
    """A stack as moto created it, read back."""

    account_id: str
    region: str
    stack_name: str
    stack_id: str
    parameters: dict[str, str]
    outputs: dict[str, str]
    resources: dict[str, tuple[str, str]]  # logical id -> (type, physical id)
    stand_ins: tuple[StandIn, ...] = field(default_factory=tuple)

    def physical_id(self, logical_id: str) -> str:
        return self.resources[logical_id][1]

    def of_type(self, resource_type: str) -> dict[str, str]:
        """Logical id -> physical id of every created resource of that type."""
        return {
            logical: physical
            for logical, (kind, physical) in self.resources.items()
            if kind == resource_type and physical
        }


def load_template(path: Path) -> dict[str, Any]:
    """A CloudFormation/SAM YAML or JSON template, short-form tags (!Ref, !Sub ...) expanded."""
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse(path.read_text())


def is_sam(template: dict[str, Any]) -> bool:
    transform = template.get("Transform", [])
    transforms = transform if isinstance(transform, list) else [transform]
    return any(str(t).startswith("AWS::Serverless") for t in transforms)


def _zip_directory(directory: Path, only: str | None = None) -> bytes:
    """The code files under `directory` (or only its package `only`) as a zip archive."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        root = directory / only if only else directory
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(directory)
            if any(p.startswith(".") or p in _NOT_PACKAGED_DIRS for p in relative.parts[:-1]):
                continue
            if path.is_file() and path.suffix in _PACKAGED_SUFFIXES:
                archive.write(path, relative.as_posix())
    return buffer.getvalue()


def package(
    template: dict[str, Any], base_dir: Path, session: boto3.Session, region: str, bucket: str
) -> dict[str, Any]:
    """Upload every local CodeUri as a zip to S3 and point the template at it (`sam package`).

    A function whose CodeUri holds its handler's package (CodeUri `.` with a makefile build, as
    watershed's functions) gets that package only, as `make build-<Function>` would produce.
    moto stores the archive and never runs it: the sandbox runs handlers from this checkout.
    """
    s3 = session.client("s3", region_name=region)
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
    packaged = json.loads(json.dumps(template))
    global_code = packaged.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    uploaded: dict[tuple[Path, str | None], str] = {}
    for resource in packaged.get("Resources", {}).values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.setdefault("Properties", {})
        code_uri = properties.get("CodeUri", global_code)
        if not isinstance(code_uri, str) or code_uri.startswith("s3://"):
            if code_uri is not None:
                properties["CodeUri"] = code_uri
            continue
        directory = (base_dir / code_uri).resolve()
        if not directory.is_dir():
            raise SandboxError(f"CodeUri {code_uri!r}: no such directory under {base_dir}")
        package_name = str(properties.get("Handler", "")).split(".", 1)[0]
        only = package_name if package_name and (directory / package_name).is_dir() else None
        if (directory, only) not in uploaded:
            key = f"code/{only or directory.name or 'root'}-{len(uploaded)}.zip"
            s3.put_object(Bucket=bucket, Key=key, Body=_zip_directory(directory, only))
            uploaded[(directory, only)] = f"s3://{bucket}/{key}"
        properties["CodeUri"] = uploaded[(directory, only)]
    return packaged


def translate(
    template: dict[str, Any], region: str, account_id: str, parameters: dict[str, str]
) -> dict[str, Any]:
    """The CloudFormation that the SAM transform would produce in `region` of `account_id`."""
    from samtranslator.metrics.metrics import Metrics
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    values = {
        **parameters,
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::Partition": "aws",
    }
    metrics = Metrics()  # recorded by the translator, published nowhere
    translator = Translator(
        None, Parser(), boto_session=boto3.Session(region_name=region), metrics=metrics
    )
    try:
        return translator.translate(
            json.loads(json.dumps(template)),
            parameter_values=values,
            get_managed_policy_map=dict,  # no managed policies by name: watershed grants inline
        )
    finally:
        metrics.publish()


def deploy(
    session: boto3.Session,
    account_id: str,
    region: str,
    stack_name: str,
    template: dict[str, Any],
    parameters: dict[str, str],
) -> DeployedStack:
    """Create a (plain CloudFormation) stack in moto, apply stand-ins, and read it back."""
    with _moto_log_errors_only():  # "No Moto CloudFormation support": listed in stand_ins
        cfn = session.client("cloudformation", region_name=region)
        response = cfn.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=_CAPABILITIES,
        )
        stack = cfn.describe_stacks(StackName=response["StackId"])["Stacks"][0]
        if stack["StackStatus"] != "CREATE_COMPLETE":
            events = cfn.describe_stack_events(StackName=response["StackId"])["StackEvents"]
            reasons = [
                e.get("ResourceStatusReason", "") for e in events if "FAILED" in e["ResourceStatus"]
            ]
            raise SandboxError(f"stack {stack_name} in {region}: {stack['StackStatus']} {reasons}")
        resources = {}
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name):
            for summary in page["StackResourceSummaries"]:
                resources[summary["LogicalResourceId"]] = (
                    summary["ResourceType"],
                    summary.get("PhysicalResourceId", ""),
                )
        stand_ins = _apply_stand_ins(session, account_id, region, response["StackId"], template)
        _inline_role_policies_as_json(session, account_id, region, response["StackId"], template)
        return DeployedStack(
            account_id=account_id,
            region=region,
            stack_name=stack_name,
            stack_id=response["StackId"],
            parameters=dict(parameters),
            outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
            resources=resources,
            stand_ins=tuple(stand_ins),
        )


@contextmanager
def _moto_log_errors_only() -> Iterator[None]:
    moto_log = logging.getLogger("moto")
    level = moto_log.level
    moto_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        moto_log.setLevel(level)


def _moto_stack(account_id: str, region: str, stack_id: str) -> Any:
    from moto.cloudformation.models import cloudformation_backends

    return cloudformation_backends[account_id][region].stacks[stack_id]


def _apply_stand_ins(
    session: boto3.Session,
    account_id: str,
    region: str,
    stack_id: str,
    template: dict[str, Any],
) -> list[StandIn]:
    """Do what moto's CloudFormation skipped, where the pipeline depends on it; list the rest."""
    from moto.cloudformation.parsing import clean_json, get_model_map

    supported = set(get_model_map()) | {"AWS::CloudFormation::WaitConditionHandle"}
    resource_map = _moto_stack(account_id, region, stack_id).resource_map
    policies: dict[str, list[dict[str, Any]]] = {}
    stand_ins = []
    for logical_id, resource in template.get("Resources", {}).items():
        kind = resource["Type"]
        if kind in supported or kind.startswith("Custom::"):
            continue
        condition = resource.get("Condition")
        if condition and not resource_map.lazy_condition_map[condition]:
            continue
        if kind == "AWS::Events::EventBusPolicy":
            properties = clean_json(resource.get("Properties", {}), resource_map)
            bus, statement = _bus_policy_statement(logical_id, properties)
            policies.setdefault(bus, []).append(statement)
            stand_ins.append(
                StandIn(logical_id, kind, f"applied by the sandbox with PutPermission on {bus}")
            )
        elif kind == "AWS::SNS::Subscription":
            properties = clean_json(resource.get("Properties", {}), resource_map)
            _subscribe(session, region, properties)
            stand_ins.append(
                StandIn(
                    logical_id,
                    kind,
                    f"applied by the sandbox with Subscribe to {properties['Endpoint']}",
                )
            )
        else:
            stand_ins.append(StandIn(logical_id, kind, "not created: moto does not implement it"))
    events = session.client("events", region_name=region)
    for bus, statements in policies.items():
        policy = {"Version": "2012-10-17", "Statement": statements}
        events.put_permission(EventBusName=bus, Policy=json.dumps(policy))
    return stand_ins


def _inline_role_policies_as_json(
    session: boto3.Session, account_id: str, region: str, stack_id: str, template: dict[str, Any]
) -> None:
    """moto's CloudFormation stores an AWS::IAM::Role's inline policies as Python text
    (`{'Version': ...}`), where IAM returns JSON: put them again as the JSON IAM would hold, so
    what reads them (onboarding verifies the management account's forwarder role) sees AWS's
    shape. The documents are the template's own, resolved by moto."""
    from moto.cloudformation.parsing import clean_json

    resource_map = _moto_stack(account_id, region, stack_id).resource_map
    iam = session.client("iam", region_name=region)
    for logical_id, resource in template.get("Resources", {}).items():
        if resource["Type"] != "AWS::IAM::Role" or logical_id not in resource_map:
            continue
        condition = resource.get("Condition")
        if condition and not resource_map.lazy_condition_map[condition]:
            continue
        properties = clean_json(resource.get("Properties", {}), resource_map)
        name = resource_map[logical_id].name
        for policy in properties.get("Policies", []):
            iam.put_role_policy(
                RoleName=name,
                PolicyName=policy["PolicyName"],
                PolicyDocument=json.dumps(policy["PolicyDocument"]),
            )


def _subscribe(session: boto3.Session, region: str, properties: dict[str, Any]) -> None:
    """What CloudFormation does for an AWS::SNS::Subscription (moto's skips the type)."""
    attributes = {
        name: json.dumps(value) if isinstance(value, dict) else str(value).lower()
        for name, value in properties.items()
        if name in ("RawMessageDelivery", "RedrivePolicy", "FilterPolicy")
    }
    session.client("sns", region_name=region).subscribe(
        TopicArn=properties["TopicArn"],
        Protocol=properties["Protocol"],
        Endpoint=properties["Endpoint"],
        Attributes=attributes,
    )


def _bus_policy_statement(logical_id: str, properties: dict[str, Any]) -> tuple[str, dict]:
    """(bus name, IAM statement) of an AWS::Events::EventBusPolicy's resolved properties."""
    bus = properties.get("EventBusName") or "default"
    if bus.startswith("arn:"):
        bus = bus.rsplit("/", 1)[-1]
    sid = properties.get("StatementId", logical_id)
    if "Statement" in properties:
        return bus, {"Sid": sid, **properties["Statement"]}
    statement: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": properties["Principal"]}
        if properties.get("Principal") != "*"
        else "*",
        "Action": properties.get("Action", "events:PutEvents"),
    }
    condition = properties.get("Condition")
    if condition:
        statement["Condition"] = {
            "StringEquals": {condition.get("Key", "aws:PrincipalOrgID"): condition["Value"]}
        }
    return bus, statement
