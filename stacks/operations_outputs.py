"""The outputs of a form's stack that `pipeline-ops --env NAME` reads: which form, where it listens, how long a run
may take, and its dead-letter queues (their OutputKeys are the tool's contract, see pipeline_constructs.operations)."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

from aws_cdk import CfnOutput, Stack, aws_lambda as lambda_, aws_sqs as sqs, aws_stepfunctions as sfn

from pipeline_constructs.queue_trigger import QueueTrigger

DeadLetterQueue = tuple[sqs.IQueue, str, "sqs.IQueue | sfn.StateMachine | lambda_.Function | None"]
_PUBLISHED: weakref.WeakKeyDictionary[Stack, tuple[DeadLetterQueue, ...]] = weakref.WeakKeyDictionary()


def published_dead_letter_queues(stack: Stack) -> tuple[DeadLetterQueue, ...]:
    """The dead-letter queues `publish_form_outputs` wrote into the stack's DeadLetterQueues output (none if it did not
    run): the dashboard shows the depth of exactly these."""
    return _PUBLISHED.get(stack, ())


def queue_trigger_dead_letters(trigger: QueueTrigger) -> list[DeadLetterQueue]:
    """A queue trigger's two dead-letter queues: its SQS queue's (moved back to the queue with the message-move task) and
    its rule's (events the rule could not deliver to the queue: re-sent to it)."""
    return [(trigger.dead_letter_queue, "sqs", trigger.queue), (trigger.undelivered_queue, "eventbridge", trigger.queue)]


def publish_form_outputs(
    stack: Stack,
    *,
    form: str,
    landing_prefix: str,
    run_timeout_seconds: int,
    writes_ledger: bool,
    dead_letter_queues: Sequence[DeadLetterQueue],
    **form_values: str,
) -> None:
    """CfnOutputs PipelineForm, LandingPrefix, RunTimeoutSeconds, WritesLedger ('true' when the form's runs keep the
    upload ledger, so `pipeline-ops reconcile` checks its prefix), DeadLetterQueues (JSON: url, arn, kind, and the
    related queue: `source_arn` of the queue whose failures an `sqs` queue keeps, `target_url` of the queue an
    `eventbridge` rule delivers to, `target_arn` of the state machine a `failure_report` rule starts or of the function a
    `lambda` queue's undelivered events were meant for) and one output per
    `form_values` entry (e.g. StateMachineArn)."""
    _PUBLISHED[stack] = tuple(dead_letter_queues)
    queues = []
    for queue, kind, source in dead_letter_queues:
        entry = {"url": queue.queue_url, "arn": queue.queue_arn, "kind": kind}
        if isinstance(source, sfn.StateMachine):
            entry["target_arn"] = source.state_machine_arn
        elif isinstance(source, lambda_.Function):
            entry["target_arn"] = source.function_arn
        elif source is not None and kind == "sqs":
            entry["source_arn"] = source.queue_arn
        elif source is not None:
            entry["target_url"] = source.queue_url
        queues.append(entry)
    values = {
        "PipelineForm": form,
        "LandingPrefix": landing_prefix,
        "RunTimeoutSeconds": str(run_timeout_seconds),
        "WritesLedger": "true" if writes_ledger else "false",
        "DeadLetterQueues": stack.to_json_string(queues),
        **form_values,
    }
    for key, value in values.items():
        CfnOutput(stack, key, value=value)
