"""The parsed templates and a small resolver of their intrinsic functions.

The resolver evaluates the intrinsic functions the templates use (Ref, Fn::Sub, Fn::GetAtt,
Fn::If, Fn::Join, Fn::Split, Fn::Select, conditions) for one concrete deployment - an account,
a region, a set of parameters - so policy documents can be linted as the JSON IAM will see,
and "what exists where" can be asked of the template itself. Attribute values of resources
(GetAtt) are given the shape AWS gives them; they are placeholders, not deployed resources.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parents[2]
SAM_TEMPLATE = ROOT / "template.yaml"
MANAGEMENT_TEMPLATE = ROOT / "management.yaml"

SECURITY_ACCOUNT = "222222222222"
MANAGEMENT_ACCOUNT = "111111111111"
ORGANIZATION_ID = "o-abcdefghij"
HOME_REGION = "eu-west-1"
RELAY_REGION = "us-east-1"
HUB_REGIONS = "eu-west-1,us-east-1,ap-southeast-2"

# Parameters a user gives template.yaml (the rest keep their defaults).
SAM_PARAMETERS = {
    "OrganizationId": ORGANIZATION_ID,
    "ManagementAccountId": MANAGEMENT_ACCOUNT,
    "HomeRegion": HOME_REGION,
    "HubRegions": HUB_REGIONS,
    "LauncherRoleArn": f"arn:aws:iam::{MANAGEMENT_ACCOUNT}:role/watershed-launcher",
}

MANAGEMENT_PARAMETERS = {
    "SecurityAccountId": SECURITY_ACCOUNT,
    "SecurityHomeRegion": HOME_REGION,
    "OnboardingRoleArn": f"arn:aws:iam::{SECURITY_ACCOUNT}:role/watershed-onboarding",
    "OrganizationId": ORGANIZATION_ID,
    "ControlTowerHomeRegion": HOME_REGION,
}


def load_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML file (short-form tags become long-form dicts)."""
    return json.loads(json.dumps(cfn_yaml.load(str(path))))


class _NoValue:
    """AWS::NoValue: the property or list item disappears."""


NO_VALUE = _NoValue()


@dataclass
class Deployment:
    """One template deployed in one account and region with concrete parameters."""

    template: dict[str, Any]
    region: str
    account: str
    parameters: dict[str, str] = field(default_factory=dict)
    partition: str = "aws"

    def __post_init__(self) -> None:
        values = {k: str(v.get("Default", "")) for k, v in self.template["Parameters"].items()}
        values.update(self.parameters)
        self.values = values
        self._conditions: dict[str, bool] = {}

    # -- conditions --------------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(
                self._evaluate_condition(self.template["Conditions"][name])
            )
        return self._conditions[name]

    def _evaluate_condition(self, node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            (key, arg) = next(iter(node.items()))
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Equals":
                return self.resolve(arg[0]) == self.resolve(arg[1])
            if key == "Fn::And":
                return all(self._evaluate_condition(a) for a in arg)
            if key == "Fn::Or":
                return any(self._evaluate_condition(a) for a in arg)
            if key == "Fn::Not":
                return not self._evaluate_condition(arg[0])
        return self.resolve(node)

    def exists(self, logical_id: str) -> bool:
        name = self.template["Resources"][logical_id].get("Condition")
        return name is None or self.condition(name)

    def resources(self) -> dict[str, dict[str, Any]]:
        """The resources this deployment creates, by logical id."""
        return {k: v for k, v in self.template["Resources"].items() if self.exists(k)}

    # -- values ------------------------------------------------------------------------------
    def _pseudo(self, name: str) -> Any:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": self.partition,
            "AWS::StackName": "watershed",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }[name]

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self._pseudo(name)
        if name in self.values:
            return self.values[name]
        resource = self.template["Resources"][name]
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{name}"
        if kind == "AWS::SNS::Topic":
            return f"arn:{self.partition}:sns:{self.region}:{self.account}:{name}"
        if kind == "AWS::S3::Bucket":
            return f"watershed-{name.lower()}"
        if kind == "AWS::IAM::Role":
            return self.resolve(props.get("RoleName", name))
        return self.resolve(props.get("Name", props.get("FunctionName", name)))

    def get_att(self, name: str, attribute: str) -> str:
        resource = self.template["Resources"][name]
        kind, props = resource["Type"], resource.get("Properties", {})
        p, r, a = self.partition, self.region, self.account
        function_arn = f"arn:{p}:lambda:{r}:{a}:function:" + str(self.ref(name))
        arns = {
            "AWS::Kinesis::Stream": lambda: f"arn:{p}:kinesis:{r}:{a}:stream/{self.ref(name)}",
            "AWS::SQS::Queue": lambda: f"arn:{p}:sqs:{r}:{a}:{name}",
            "AWS::S3::Bucket": lambda: f"arn:{p}:s3:::{self.ref(name)}",
            "AWS::IAM::Role": lambda: f"arn:{p}:iam::{a}:role/{self.ref(name)}",
            "AWS::Logs::LogGroup": lambda: (
                f"arn:{p}:logs:{r}:{a}:log-group:{self.resolve(props['LogGroupName'])}:*"
            ),
            "AWS::Serverless::Function": lambda: function_arn,
            "AWS::Lambda::Function": lambda: function_arn,
            "AWS::Events::Rule": lambda: f"arn:{p}:events:{r}:{a}:rule/{self.ref(name)}",
        }
        if attribute == "Arn":
            return arns[kind]()
        if attribute == "QueueName":
            return name
        raise KeyError(f"{name}.{attribute}")

    def _sub(self, text: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            token = match.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"
            if token in variables:
                return str(variables[token])
            if "." in token:
                return self.get_att(*token.split(".", 1))
            return str(self.ref(token))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, node: Any) -> Any:
        """Evaluate the intrinsic functions in node; AWS::NoValue items are dropped."""
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg) = next(iter(node.items()))
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                parts = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(parts[0], parts[1])
            if key == "Fn::Sub":
                if isinstance(arg, list):
                    return self._sub(arg[0], {k: self.resolve(v) for k, v in arg[1].items()})
                return self._sub(arg, {})
            if key == "Fn::If":
                branch = arg[1] if self.condition(arg[0]) else arg[2]
                return self.resolve(branch)
            if key == "Fn::Join":
                return arg[0].join(str(x) for x in self.resolve(arg[1]))
            if key == "Fn::Split":
                return self.resolve(arg[1]).split(arg[0])
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}


def policy_documents(deployment: Deployment) -> list[tuple[str, str, dict[str, Any]]]:
    """Every IAM policy document the deployment creates: (logical id, kind, resolved document).

    kind is "identity" (what a role may do), "trust" (who may assume a role) or "resource"
    (a bus, queue, bucket or topic policy).
    """
    documents: list[tuple[str, str, dict[str, Any]]] = []
    for logical_id, resource in deployment.resources().items():
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::IAM::Role":
            documents.append(
                (logical_id, "trust", deployment.resolve(props["AssumeRolePolicyDocument"]))
            )
            for policy in deployment.resolve(props.get("Policies", [])):
                documents.append((logical_id, "identity", policy["PolicyDocument"]))
        elif kind == "AWS::IAM::Policy":
            documents.append((logical_id, "identity", deployment.resolve(props["PolicyDocument"])))
        elif kind in ("AWS::SQS::QueuePolicy", "AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy"):
            documents.append((logical_id, "resource", deployment.resolve(props["PolicyDocument"])))
        elif kind == "AWS::Events::EventBusPolicy":
            statement = deployment.resolve(props["Statement"])
            documents.append(
                (logical_id, "resource", {"Version": "2012-10-17", "Statement": [statement]})
            )
    return documents


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = document["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def sam_deployments(template: dict[str, Any]) -> dict[str, Deployment]:
    """template.yaml in the parameter combinations that switch conditions on and off."""
    existing = "arn:aws:kinesis:eu-west-1:222222222222:stream/streamalert"
    key = "arn:aws:kms:eu-west-1:222222222222:key/0a1b2c3d-0000-4000-8000-000000000000"
    variants = {
        "home": (HOME_REGION, {}),
        "relay": (RELAY_REGION, {}),
        "home-no-launcher": (HOME_REGION, {"LauncherRoleArn": ""}),
        "home-existing-stream": (
            HOME_REGION,
            {"ExistingDestinationStreamArn": existing, "ExistingDestinationStreamKeyArn": key},
        ),
        "relay-existing-stream": (
            RELAY_REGION,
            {"ExistingDestinationStreamArn": existing, "ExistingDestinationStreamKeyArn": key},
        ),
        "home-alarm-email": (HOME_REGION, {"AlarmEmail": "soc@example.com"}),
        "home-canary": (HOME_REGION, {"CanaryIntervalMinutes": "60"}),
        "home-canary-existing-stream": (
            HOME_REGION,
            {
                "CanaryIntervalMinutes": "60",
                "ExistingDestinationStreamArn": existing,
                "ExistingDestinationStreamKeyArn": key,
            },
        ),
        "relay-alarm-topic": (
            RELAY_REGION,
            {"AlarmTopicArn": "arn:aws:sns:us-east-1:222222222222:soc"},
        ),
        # DeliveryMode direct (issue 13): members deliver to the home region's bus.
        "direct-home": (HOME_REGION, {"DeliveryMode": "direct"}),
        "direct-other": (RELAY_REGION, {"DeliveryMode": "direct"}),
    }
    return {
        name: Deployment(template, region, SECURITY_ACCOUNT, {**SAM_PARAMETERS, **extra})
        for name, (region, extra) in variants.items()
    }


def management_deployments(template: dict[str, Any]) -> dict[str, Deployment]:
    """management.yaml in us-east-1 and in a separate Control Tower home region."""
    return {
        "us-east-1": Deployment(template, "us-east-1", MANAGEMENT_ACCOUNT, MANAGEMENT_PARAMETERS),
        "ct-home": Deployment(template, HOME_REGION, MANAGEMENT_ACCOUNT, MANAGEMENT_PARAMETERS),
        "us-east-1-is-ct-home": Deployment(
            template,
            "us-east-1",
            MANAGEMENT_ACCOUNT,
            {**MANAGEMENT_PARAMETERS, "ControlTowerHomeRegion": "us-east-1"},
        ),
    }


def eventbridge_event(
    source: str, detail_type: str, account: str, detail: dict[str, Any]
) -> dict[str, Any]:
    """An EventBridge event envelope as a rule's pattern sees it (us-east-1, fixed id and time)."""
    return {
        "version": "0",
        "id": "0",
        "source": source,
        "detail-type": detail_type,
        "account": account,
        "time": "2026-03-02T10:15:03Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def declare_management_forwarder(
    iam: Any, management: str, security: str, parameters: dict[str, str] | None = None
) -> dict[str, Any]:
    """Create the management account's forwarder role exactly as management.yaml declares it
    (ForwarderRole, resolved for this organization), with `iam` - a client of the management
    account. moto cannot run CloudFormation's IAM in the tests' organizations, so the resolved
    properties are applied here: what onboarding then verifies is the template's own role.
    Returns the resolved properties."""
    template = load_template(MANAGEMENT_TEMPLATE)
    deployment = Deployment(
        template,
        "us-east-1",
        management,
        {
            **MANAGEMENT_PARAMETERS,
            "SecurityAccountId": security,
            "OnboardingRoleArn": f"arn:aws:iam::{security}:role/watershed-onboarding",
            **(parameters or {}),
        },
    )
    role = deployment.resolve(template["Resources"]["ForwarderRole"]["Properties"])
    iam.create_role(
        RoleName=role["RoleName"],
        AssumeRolePolicyDocument=json.dumps(role["AssumeRolePolicyDocument"]),
        Description=role["Description"],
        Tags=role["Tags"],
    )
    for policy in role["Policies"]:
        iam.put_role_policy(
            RoleName=role["RoleName"],
            PolicyName=policy["PolicyName"],
            PolicyDocument=json.dumps(policy["PolicyDocument"]),
        )
    return role
