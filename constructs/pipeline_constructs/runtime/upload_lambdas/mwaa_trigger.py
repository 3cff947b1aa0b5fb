"""Start one Airflow DAG run per uploaded object: SQS (EventBridge `Object Created` events) -> MWAA InvokeRestApi.

The run's `dag_run_id` is derived from the object (bucket, key, version id), so a repeated event asks for a run
that already exists: Airflow answers 409 and the message counts as done. Any other error fails that message only
(partial batch response): SQS retries it and, after the queue's receive limit, keeps it in the dead-letter queue,
which is alarmed. A malformed message fails the same way, so nothing is dropped silently.

Environment: MWAA_ENVIRONMENT_NAME, DAG_ID.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import boto3
from botocore.exceptions import ClientError

try:
    from pipeline_constructs.runtime.upload_lambdas.upload_events import (
        BatchItemFailure,
        BatchResponse,
        MalformedEvent,
        SqsEvent,
        UploadedObject,
        dag_run_id,
        dag_run_request,
        rest_api_status,
        uploaded_object,
    )
except ImportError:  # in Lambda: the asset folder is the top level
    from upload_events import (  # type: ignore[import-not-found,no-redef]
        BatchItemFailure,
        BatchResponse,
        MalformedEvent,
        SqsEvent,
        UploadedObject,
        dag_run_id,
        dag_run_request,
        rest_api_status,
        uploaded_object,
    )

logger = logging.getLogger()
logger.setLevel(logging.INFO)

mwaa = boto3.client("mwaa")


def start_run(environment: str, dag_id: str, obj: UploadedObject) -> str:
    """Create the DAG run; returns 'started' or 'duplicate'. Raises ClientError for anything else."""
    run_id = dag_run_id(obj)
    try:
        response = mwaa.invoke_rest_api(
            Name=environment,
            Path=f"/dags/{dag_id}/dagRuns",
            Method="POST",
            Body=dag_run_request(obj),
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "RestApiClientException" and rest_api_status(error) == 409:
            logger.info("run %s of %s already exists: duplicate event for s3://%s/%s", run_id, dag_id, obj["bucket"], obj["key"])
            return "duplicate"
        raise
    logger.info(
        "started run %s of %s for s3://%s/%s (HTTP %s)", run_id, dag_id, obj["bucket"], obj["key"], response.get("RestApiStatusCode")
    )
    return "started"


def handler(event: SqsEvent, context: Any) -> BatchResponse:
    environment = os.environ["MWAA_ENVIRONMENT_NAME"]
    dag_id = os.environ["DAG_ID"]
    failures: list[BatchItemFailure] = []
    for record in event.get("Records", []):
        message_id = record["messageId"]
        try:
            start_run(environment, dag_id, uploaded_object(record["body"]))
        except MalformedEvent as error:
            logger.error("message %s: %s; it goes to the dead-letter queue after its retries", message_id, error)
            failures.append({"itemIdentifier": message_id})
        except ClientError as error:
            logger.error(
                "message %s: MWAA refused the run: %s %s", message_id, error.response.get("Error"), error.response.get("RestApiResponse")
            )
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}
