"""`replay-dead-letters`: every dead-letter queue of the environment, counted first, then sent back the way its kind
allows. A message is deleted only after what it stands for has been re-sent or its run has started.

Kinds (the `kind` of each entry of a form stack's DeadLetterQueues output):
  sqs           an SQS queue's own dead-letter queue: moved back to that queue by SQS's message-move task
  eventbridge   events an EventBridge rule could not deliver: re-sent to the rule's target queue (`target_url`), or,
                for a rule whose target is the form itself (the Glue workflow), a new run of the form for the event's upload
  lambda        asynchronous invocations that failed after Lambda's retries: invoked again with the same payload;
                events the function's rule could not deliver: the function (`target_arn`) invoked with each
  failure_report  status-change events of failed executions the rule could not deliver to the Step Functions
                form's failure reporter: the reporter (`target_arn`) is started with each (it reports a failure once)
  schedule      starts of a scheduled Step Functions run EventBridge Scheduler could not make: the state machine
                (`target_arn`) is started with each message's input (a run takes whatever is pending; one that finds
                another going ends at once)
  notification  failure messages SNS could not deliver to a subscriber: published to the alert topic again (every
                subscriber receives them again)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .environment import DeadLetterQueue, Environment
from .runs import Runs, upload_of_event

RECEIVE_BATCH = 10
VISIBILITY_SECONDS = 120
"""How long a received message stays hidden while it is re-sent (it reappears if the command stops halfway)."""


@dataclass
class QueueReplay:
    queue: DeadLetterQueue
    waiting: int
    replayed: int = 0
    errors: list[str] = field(default_factory=list)
    task: str = ""


def waiting_messages(sqs: Any, queue: DeadLetterQueue) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", 0))


def replay_dead_letters(clients: Mapping[str, Any], environment: Environment, *, dry_run: bool, now: datetime) -> list[QueueReplay]:
    """Count every queue; unless `dry_run`, send each one's messages back."""
    sqs = clients["sqs"]
    replays = [QueueReplay(queue, waiting_messages(sqs, queue)) for queue in environment.dead_letter_queues()]
    if dry_run:
        return replays
    runs = Runs(clients, environment)
    for replay in replays:
        if not replay.waiting:
            continue
        if replay.queue.kind == "sqs":
            task = sqs.start_message_move_task(SourceArn=replay.queue.arn, DestinationArn=replay.queue.source_arn)
            replay.task = str(task.get("TaskHandle", ""))
            replay.replayed = replay.waiting
            continue
        _receive_and_resend(clients, environment, runs, replay, now)
    return replays


def _receive_and_resend(clients: Mapping[str, Any], environment: Environment, runs: Runs, replay: QueueReplay, now: datetime) -> None:
    sqs = clients["sqs"]
    # At most what was counted: a message that lands in the queue again while this runs waits for the next replay.
    budget = replay.waiting
    while budget > 0:
        answer = sqs.receive_message(
            QueueUrl=replay.queue.url,
            MaxNumberOfMessages=min(RECEIVE_BATCH, budget),
            VisibilityTimeout=VISIBILITY_SECONDS,
            WaitTimeSeconds=1,
        )
        messages = answer.get("Messages", [])
        if not messages:
            break
        budget -= len(messages)
        for message in messages:
            try:
                _resend(clients, environment, runs, replay.queue, message["Body"], now)
            except Exception as error:  # noqa: BLE001 - reported per message; the message stays in the queue
                replay.errors.append(f"message {message['MessageId']}: {error}")
                # Visible again at once, for the next replay or a look with the console.
                sqs.change_message_visibility(QueueUrl=replay.queue.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
                continue
            sqs.delete_message(QueueUrl=replay.queue.url, ReceiptHandle=message["ReceiptHandle"])
            replay.replayed += 1


def _resend(clients: Mapping[str, Any], environment: Environment, runs: Runs, queue: DeadLetterQueue, body: str, now: datetime) -> None:
    if queue.kind == "eventbridge":
        if queue.target_url:
            clients["sqs"].send_message(QueueUrl=queue.target_url, MessageBody=body)
            return
        stack = environment.forms[str(queue.form)]
        runs.start_new_run(stack, upload_of_event(body), now)
        return
    if queue.kind in ("failure_report", "schedule") and queue.target_arn:
        clients["stepfunctions"].start_execution(stateMachineArn=queue.target_arn, input=body)
        return
    if queue.kind == "lambda":
        record = json.loads(body)
        if isinstance(record, dict) and "requestContext" in record:  # an invocation that failed after Lambda's retries
            function = record["requestContext"]["functionArn"]
            clients["lambda"].invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(record["requestPayload"]).encode())
            return
        if not queue.target_arn:  # an event the function's rule could not deliver: the output names the function
            raise ValueError("an undelivered event, and the queue's DeadLetterQueues entry names no target_arn to invoke")
        clients["lambda"].invoke(FunctionName=queue.target_arn, InvocationType="Event", Payload=body.encode())
        return
    if queue.kind == "notification":
        notification = json.loads(body)
        message = notification.get("Message", body) if isinstance(notification, dict) else body
        subject = notification.get("Subject") if isinstance(notification, dict) else None
        clients["sns"].publish(TopicArn=environment.alert_topic_arn, Message=message, **({"Subject": subject} if subject else {}))
        return
    raise ValueError(f"dead-letter queue kind {queue.kind!r} is not one this version of pipeline-ops replays")
