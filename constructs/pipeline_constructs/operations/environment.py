"""One deployed environment as `pipeline-ops` sees it: the outputs of `<env>-Stateful` and of each form's stack.

The OutputKeys read here are written by `stacks/stateful_stack.py` and `stacks/operations_outputs.py`; a test
synthesizes the app and reads them back through this module, so the two cannot drift."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

FORM_STACKS = {
    "step_functions": "StepFunctions",
    "glue_workflow": "GlueWorkflow",
    "mwaa": "Mwaa",
    "mwaa_serverless": "MwaaServerless",
}
"""Each form and the id of its stack in a stage (the deployed stack is `<env>-<id>`)."""
STATEFUL_STACK = "Stateful"


class OperationsError(Exception):
    """A problem the user must fix before the command can run (exit status 2); the message says what to do."""


@dataclass(frozen=True)
class DeadLetterQueue:
    """A dead-letter queue of the environment and how its messages go back (see `dead_letters.py`)."""

    url: str
    arn: str
    kind: str
    form: str | None = None
    source_arn: str | None = None
    target_url: str | None = None
    target_arn: str | None = None


@dataclass(frozen=True)
class FormStack:
    """One deployed form: its landing prefix, its run timeout and the outputs that name its service resources."""

    form: str
    stack_name: str
    landing_prefix: str
    run_timeout_seconds: int
    writes_ledger: bool
    outputs: Mapping[str, str]
    dead_letter_queues: tuple[DeadLetterQueue, ...] = ()

    def output(self, key: str) -> str:
        return _required(self.outputs, self.stack_name, key)


@dataclass(frozen=True)
class Environment:
    """The resources of one environment, found from its stacks."""

    name: str
    region: str
    ledger_table: str
    landing_bucket: str
    quarantine_bucket: str
    alert_topic_arn: str
    dataset: str
    forms: dict[str, FormStack] = field(default_factory=dict)
    notification_dead_letter_queue: DeadLetterQueue | None = None

    def form_of_key(self, bucket: str, key: str) -> FormStack:
        """The form whose landing prefix holds the key; OperationsError naming the prefixes otherwise."""
        if bucket == self.landing_bucket:
            for form in self.forms.values():
                if key.startswith(form.landing_prefix):
                    return form
        prefixes = ", ".join(f"s3://{self.landing_bucket}/{form.landing_prefix}" for form in self.forms.values()) or "none"
        raise OperationsError(
            f"s3://{bucket}/{key} is under no landing prefix of environment {self.name!r} (its forms listen under: {prefixes})"
        )

    def dead_letter_queues(self) -> list[DeadLetterQueue]:
        queues = [queue for form in self.forms.values() for queue in form.dead_letter_queues]
        if self.notification_dead_letter_queue is not None:
            queues.append(self.notification_dead_letter_queue)
        return queues


def _outputs(cloudformation: Any, stack_name: str) -> dict[str, str] | None:
    """The stack's outputs, or None when no such stack is deployed."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error.response.get("Error", {}).get("Message", "")):
            return None
        raise
    if not stacks or stacks[0].get("StackStatus", "").startswith("DELETE_"):
        return None
    return {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}


def _required(outputs: Mapping[str, str], stack_name: str, key: str) -> str:
    if key not in outputs:
        raise OperationsError(f"stack {stack_name} has no output {key!r}: deploy it again with this version of the library")
    return outputs[key]


def _form_stack(form: str, stack_name: str, outputs: Mapping[str, str]) -> FormStack:
    raw_queues = _required(outputs, stack_name, "DeadLetterQueues")
    try:
        entries = json.loads(raw_queues)
        queues = tuple(
            DeadLetterQueue(
                url=entry["url"],
                arn=entry["arn"],
                kind=entry["kind"],
                form=form,
                source_arn=entry.get("source_arn"),
                target_url=entry.get("target_url"),
                target_arn=entry.get("target_arn"),
            )
            for entry in entries
        )
    except (ValueError, TypeError, KeyError) as error:
        raise OperationsError(f"stack {stack_name}: output DeadLetterQueues is not the list this tool reads ({error!r})") from None
    timeout = _required(outputs, stack_name, "RunTimeoutSeconds")
    if not timeout.isdigit():
        raise OperationsError(f"stack {stack_name}: output RunTimeoutSeconds={timeout!r} is not a number of seconds")
    return FormStack(
        form=form,
        stack_name=stack_name,
        landing_prefix=_required(outputs, stack_name, "LandingPrefix"),
        run_timeout_seconds=int(timeout),
        writes_ledger=outputs.get("WritesLedger") == "true",
        outputs=dict(outputs),
        dead_letter_queues=queues,
    )


def load_environment(cloudformation: Any, name: str, region: str) -> Environment:
    """Read `<name>-Stateful` and every form stack of the environment; OperationsError when the stateful stack is not
    deployed (or no form is)."""
    stateful_name = f"{name}-{STATEFUL_STACK}"
    stateful = _outputs(cloudformation, stateful_name)
    if stateful is None:
        raise OperationsError(
            f"environment {name!r}: no stack {stateful_name} in region {region}. Deploy it (make deploy ENV={name}), "
            "or name the region it is in with --region"
        )
    forms = {}
    for form, stack_id in FORM_STACKS.items():
        stack_name = f"{name}-{stack_id}"
        outputs = _outputs(cloudformation, stack_name)
        if outputs is not None:
            forms[form] = _form_stack(form, stack_name, outputs)
    if not forms:
        names = ", ".join(f"{name}-{stack_id}" for stack_id in FORM_STACKS.values())
        raise OperationsError(f"environment {name!r}: {stateful_name} is deployed but none of its form stacks ({names}) is")
    notification_queue = stateful.get("NotificationDeadLetterQueueUrl")
    return Environment(
        name=name,
        region=region,
        ledger_table=_required(stateful, stateful_name, "LedgerTableName"),
        landing_bucket=_required(stateful, stateful_name, "LandingBucketName"),
        quarantine_bucket=_required(stateful, stateful_name, "QuarantineBucketName"),
        alert_topic_arn=_required(stateful, stateful_name, "AlertTopicArn"),
        dataset=_required(stateful, stateful_name, "DatasetName"),
        forms=forms,
        notification_dead_letter_queue=(
            DeadLetterQueue(url=notification_queue, arn="", kind="notification") if notification_queue else None
        ),
    )
