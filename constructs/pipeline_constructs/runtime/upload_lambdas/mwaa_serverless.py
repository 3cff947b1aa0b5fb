"""The MWAA Serverless form's two small Lambdas (this folder is their asset):

`start`: SQS (EventBridge S3 `Object Created` events) -> `StartWorkflowRun`, the object as the run's parameters and a
ClientToken derived from the object (bucket, key, version id). The service answers a repeated token with the run it
already started, so a duplicate event starts no second run; a duplicate inside one batch is not even sent. Any error
fails that message only (partial batch response): SQS retries it and then keeps it in the dead-letter queue (alarmed).
A malformed message fails the same way, so nothing is dropped silently.

`report_failure`: the service ignores DAG callbacks and its run-failed events do not carry the run's parameters, so
this function looks the run up (GetWorkflowRun: the object and the error; ListTaskInstances + GetTaskInstance: the
failed task and its error) and publishes one SNS message with the fields every form sends: pipeline, object, run_id,
failed_step, error, cause. If a lookup fails it still publishes what the event says, naming the lookup error.

Environment: WORKFLOW_ARN; TOPIC_ARN and DATASET for `report_failure`.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

try:
    from pipeline_constructs.runtime.upload_lambdas.upload_events import (
        BatchItemFailure,
        BatchResponse,
        MalformedEvent,
        SqsEvent,
        UploadedObject,
        client_token,
        run_parameters,
        uploaded_object,
    )
except ImportError:  # in Lambda: the asset folder is the top level
    from upload_events import (  # type: ignore[import-not-found,no-redef]
        BatchItemFailure,
        BatchResponse,
        MalformedEvent,
        SqsEvent,
        UploadedObject,
        client_token,
        run_parameters,
        uploaded_object,
    )

logger = logging.getLogger()
logger.setLevel(logging.INFO)

mwaa_serverless = boto3.client("mwaa-serverless")
sns = boto3.client("sns")

FORM_NAME = "mwaa_serverless"
FAILED_TASK_STATES = ("FAILED", "TIMEOUT")


def start_run(workflow_arn: str, obj: UploadedObject) -> str:
    """Start the run; returns the service's run id. Raises ClientError or BotoCoreError on any failure."""
    response = mwaa_serverless.start_workflow_run(
        WorkflowArn=workflow_arn, ClientToken=client_token(obj), OverrideParameters=run_parameters(obj)
    )
    run_id = str(response.get("RunId"))
    logger.info("run %s (%s) of %s for s3://%s/%s", run_id, response.get("Status"), workflow_arn, obj["bucket"], obj["key"])
    return run_id


def start(event: SqsEvent, context: Any) -> BatchResponse:
    workflow_arn = os.environ["WORKFLOW_ARN"]
    failures: list[BatchItemFailure] = []
    started: dict[str, str] = {}
    for record in event.get("Records", []):
        message_id = record["messageId"]
        try:
            obj = uploaded_object(record["body"])
            token = client_token(obj)
            if token in started:
                logger.info("message %s: same object as message %s in this batch; no second run", message_id, started[token])
                continue
            start_run(workflow_arn, obj)
            started[token] = message_id
        except MalformedEvent as error:
            logger.error("message %s: %s; it goes to the dead-letter queue after its retries", message_id, error)
            failures.append({"itemIdentifier": message_id})
        except (ClientError, BotoCoreError) as error:
            logger.error("message %s: StartWorkflowRun failed: %s", message_id, error)
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


# --- failure reports ---------------------------------------------------------------------------------------------


def _detail_value(detail: dict[str, Any], *names: str) -> str | None:
    # The service does not document the detail's field names; accept the usual spellings.
    for name in names:
        value = detail.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def failed_task(workflow_arn: str, run_id: str) -> tuple[str | None, str | None]:
    """(task id, error message) of the run's first failed or timed-out task, or (None, None)."""
    kwargs: dict[str, Any] = {"WorkflowArn": workflow_arn, "RunId": run_id}
    while True:
        page = mwaa_serverless.list_task_instances(**kwargs)
        for summary in page.get("TaskInstances", []):
            if summary.get("Status") in FAILED_TASK_STATES:
                task = mwaa_serverless.get_task_instance(WorkflowArn=workflow_arn, RunId=run_id, TaskInstanceId=summary["TaskInstanceId"])
                return task.get("TaskId") or summary["TaskInstanceId"], task.get("ErrorMessage")
        if not page.get("NextToken"):
            return None, None
        kwargs["NextToken"] = page["NextToken"]


def failure_message(event: dict[str, Any], workflow_arn: str) -> dict[str, Any]:
    """The SNS message for one run-failed or run-timed-out event."""
    raw_detail = event.get("detail")
    detail: dict[str, Any] = raw_detail if isinstance(raw_detail, dict) else {}
    run_id = _detail_value(detail, "runId", "RunId", "run_id")
    state = str(event.get("detail-type", "")).removeprefix("MWAA Serverless Workflow Run ") or None
    message: dict[str, Any] = {
        "pipeline": FORM_NAME,
        "object": None,
        "version_id": None,
        "run_id": run_id,
        "failed_step": None,
        "error": f"WorkflowRun{state}" if state else "WorkflowRunFailed",
        "cause": _detail_value(detail, "errorMessage", "ErrorMessage", "message"),
        "workflow_arn": workflow_arn,
    }
    if run_id is None:
        message["cause"] = f"the event names no run (detail keys: {sorted(detail)})"
        return message
    try:
        run = mwaa_serverless.get_workflow_run(WorkflowArn=workflow_arn, RunId=run_id)
        parameters = run.get("OverrideParameters") or {}
        if parameters.get("bucket") and parameters.get("key"):
            message["object"] = f"s3://{parameters['bucket']}/{parameters['key']}"
        message["version_id"] = parameters.get("version_id") or None
        message["cause"] = run.get("RunDetail", {}).get("ErrorMessage") or message["cause"]
        task_id, task_error = failed_task(workflow_arn, run_id)
        message["failed_step"] = task_id
        message["cause"] = task_error or message["cause"]
    except (ClientError, BotoCoreError) as error:
        logger.error("run %s: looking up the run failed: %s", run_id, error)
        message["cause"] = f"{message['cause'] or 'unknown'} (the run could not be looked up: {error})"
    return message


def report_failure(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge target: publish one failure message. Raises when the topic refuses it (the invocation is retried,
    then kept by the function's failure destination, which is alarmed)."""
    workflow_arn = os.environ["WORKFLOW_ARN"]
    message = failure_message(event, workflow_arn)
    step = message["failed_step"] or "the workflow"
    sns.publish(
        TopicArn=os.environ["TOPIC_ARN"],
        Subject=f"{os.environ['DATASET']} pipeline ({FORM_NAME}) failed at {step}"[:100],
        Message=json.dumps(message),
    )
    logger.info("failure of run %s reported: %s", message["run_id"], message)
    return message
