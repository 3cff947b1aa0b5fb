"""One environment of the synthesized app "deployed" into moto, for the `pipeline-ops` tests.

Every resource that a stack output names is created in moto (queues, buckets, the ledger table, the topic, the state
machine, the Glue workflow), and each output is resolved from the synthesized template (Ref, Fn::GetAtt, Fn::Join),
so the commands read exactly the OutputKeys and value shapes the app publishes. CloudFormation itself answers through
botocore's Stubber: moto's CloudFormation needs extras the project does not install, and only DescribeStacks is called.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.stub import Stubber

from pipeline_constructs.operations.environment import FORM_STACKS, STATEFUL_STACK
from tests.fake_aws import FAKE_AWS_REGION
from tests.ledger_table import create_ledger_table

ACCOUNT = "123456789012"
_PASS_MACHINE = json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}})


class FakeDeployment:
    """The stacks of `env` in `templates`, their output-named resources created in moto, their outputs resolved."""

    def __init__(self, templates: dict[tuple[str, str], dict[str, Any]], env: str, *, stacks: tuple[str, ...] | None = None) -> None:
        self.env = env
        chosen = {stack: template for (name, stack), template in templates.items() if name == env}
        if stacks is not None:
            chosen = {stack: chosen[stack] for stack in stacks}
        self.templates = chosen
        self.resources: dict[tuple[str, str], dict[str, str]] = {}
        self.outputs: dict[str, dict[str, str]] = {
            stack: {key: self._resolve(stack, output["Value"]) for key, output in template.get("Outputs", {}).items()}
            for stack, template in self.templates.items()
        }

    # --- resolving the outputs --------------------------------------------------------------------------------------
    def _resolve(self, stack: str, value: Any) -> str:
        if isinstance(value, str):
            return value
        ((function, argument),) = value.items()
        if function == "Ref":
            return self._resource(stack, argument)["Ref"]
        if function == "Fn::GetAtt":
            logical_id, attribute = argument
            resource = self._resource(stack, logical_id)
            return resource.get(attribute) or f"{resource['Ref']}:{attribute}"
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(self._resolve(stack, part) for part in parts)
        raise AssertionError(f"{stack}: output intrinsic {function} is not one the fake deployment resolves")

    def _resource(self, stack: str, logical_id: str) -> dict[str, str]:
        if (stack, logical_id) not in self.resources:
            resource = self.templates[stack]["Resources"][logical_id]
            self.resources[(stack, logical_id)] = self._create(stack, logical_id, resource["Type"], resource.get("Properties", {}))
        return self.resources[(stack, logical_id)]

    def _create(self, stack: str, logical_id: str, kind: str, properties: dict[str, Any]) -> dict[str, str]:
        name = f"{self.env}-{stack}-{logical_id}".lower()[:63]
        if kind == "AWS::SQS::Queue":
            sqs = boto3.client("sqs")
            url = sqs.create_queue(QueueName=name[:80])["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            return {"Ref": url, "Arn": arn, "QueueName": name}
        if kind == "AWS::S3::Bucket":
            s3 = boto3.client("s3")
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": FAKE_AWS_REGION})
            if properties.get("VersioningConfiguration", {}).get("Status") == "Enabled":
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            return {"Ref": name, "Arn": f"arn:aws:s3:::{name}"}
        if kind == "AWS::DynamoDB::Table":
            create_ledger_table(boto3.client("dynamodb"), name)
            return {"Ref": name, "Arn": f"arn:aws:dynamodb:{FAKE_AWS_REGION}:{ACCOUNT}:table/{name}"}
        if kind == "AWS::SNS::Topic":
            arn = boto3.client("sns").create_topic(Name=name)["TopicArn"]
            return {"Ref": arn, "TopicArn": arn}
        if kind == "AWS::StepFunctions::StateMachine":
            arn = boto3.client("stepfunctions").create_state_machine(
                name=name, definition=_PASS_MACHINE, roleArn=f"arn:aws:iam::{ACCOUNT}:role/{name[:60]}"
            )["stateMachineArn"]
            return {"Ref": arn, "Arn": arn, "Name": name}
        if kind == "AWS::Glue::Workflow":
            boto3.client("glue").create_workflow(Name=name)
            return {"Ref": name}
        arn = f"arn:aws:{kind.split('::')[1].lower()}:{FAKE_AWS_REGION}:{ACCOUNT}:{name}"
        return {"Ref": name, "Arn": arn, "WorkflowArn": arn}

    # --- reading it back --------------------------------------------------------------------------------------------
    def output(self, stack: str, key: str) -> str:
        return self.outputs[stack][key]

    def describe_stacks_client(self) -> Any:
        """A CloudFormation client that answers DescribeStacks for this environment's stacks, in the order the tool asks."""
        client = boto3.client("cloudformation", region_name=FAKE_AWS_REGION)
        stubber = Stubber(client)
        for stack in (STATEFUL_STACK, *FORM_STACKS.values()):
            stack_name = f"{self.env}-{stack}"
            if stack in self.outputs:
                outputs = [{"OutputKey": key, "OutputValue": value} for key, value in self.outputs[stack].items()]
                stubber.add_response(
                    "describe_stacks",
                    {
                        "Stacks": [
                            {
                                "StackName": stack_name,
                                "CreationTime": "2026-12-01T00:00:00Z",
                                "StackStatus": "CREATE_COMPLETE",
                                "Outputs": outputs,
                            }
                        ]
                    },
                    {"StackName": stack_name},
                )
            else:
                stubber.add_client_error(
                    "describe_stacks",
                    "ValidationError",
                    f"Stack with id {stack_name} does not exist",
                    expected_params={"StackName": stack_name},
                )
                if stack == STATEFUL_STACK:
                    break
        stubber.activate()
        return client


class FakeSession:
    """What `pipeline-ops` takes as its boto3 session: moto's clients, CloudFormation from the deployment, and any
    client a test replaces (a Stubber-backed one for APIs moto does not implement)."""

    def __init__(self, deployment: FakeDeployment | None, region: str | None = FAKE_AWS_REGION, **clients: Any) -> None:
        self.deployment = deployment
        self.region_name = region
        self.clients = clients

    def client(self, name: str, region_name: str | None = None) -> Any:
        if name in self.clients:
            return self.clients[name]
        if name == "cloudformation":
            if self.deployment is None:
                client = boto3.client("cloudformation", region_name=region_name)
                stubber = Stubber(client)
                stubber.add_client_error("describe_stacks", "ValidationError", "Stack with id x does not exist")
                stubber.activate()
                return client
            return self.deployment.describe_stacks_client()
        return boto3.client(name, region_name=region_name)
