"""What the upload Lambdas share: the SQS batch they receive (EventBridge S3 `Object Created` events) and the object
each message names. Standard library only: it ships in the same asset folder as the handlers."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, TypedDict


class SqsRecord(TypedDict):
    messageId: str
    body: str


class SqsEvent(TypedDict):
    Records: list[SqsRecord]


class BatchItemFailure(TypedDict):
    itemIdentifier: str


class BatchResponse(TypedDict):
    batchItemFailures: list[BatchItemFailure]


class UploadedObject(TypedDict):
    bucket: str
    key: str
    version_id: str | None


class MalformedEvent(ValueError):
    """The message is not an S3 `Object Created` event with a bucket name and an object key."""


def uploaded_object(body: str) -> UploadedObject:
    """The object an EventBridge S3 event names; raises MalformedEvent otherwise."""
    try:
        event = json.loads(body)
        detail = event["detail"]
        bucket, key = detail["bucket"]["name"], detail["object"]["key"]
    except (ValueError, TypeError, KeyError) as error:
        raise MalformedEvent(f"not an S3 Object Created event: {error!r}") from None
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        raise MalformedEvent(f"bucket {bucket!r} or key {key!r} is not a non-empty string")
    version = detail["object"].get("version-id")
    return {"bucket": bucket, "key": key, "version_id": version if isinstance(version, str) else None}


_RUN_ID_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_STEM_CHARS = 40


def _object_digest(obj: UploadedObject) -> str:
    return hashlib.sha256("\n".join([obj["bucket"], obj["key"], obj["version_id"] or ""]).encode()).hexdigest()


def dag_run_id(obj: UploadedObject) -> str:
    """The MWAA form's DAG run id of an object version, in the characters Airflow, S3 paths and the load SQL all
    accept: `upload-<readable file name>-<hash of bucket, key, version>` (the same object, the same run)."""
    digest = _object_digest(obj)[:32]
    stem = _RUN_ID_SAFE.sub("-", obj["key"].rsplit("/", 1)[-1].rsplit(".", 1)[0]).strip("-.")[:_STEM_CHARS]
    return f"upload-{stem}-{digest}" if stem else f"upload-{digest}"


def dag_run_request(obj: UploadedObject) -> dict[str, Any]:
    """The body of the MWAA REST API's POST /dags/{dag_id}/dagRuns for the object (its run id, the object as conf)."""
    return {"dag_run_id": dag_run_id(obj), "logical_date": None, "conf": dict(obj)}


def rest_api_status(error: Any) -> int | None:
    """The HTTP status Airflow answered an MWAA InvokeRestApi call with, from the botocore ClientError."""
    status = error.response.get("RestApiStatusCode")
    return int(status) if status is not None else None


def client_token(obj: UploadedObject) -> str:
    """The MWAA Serverless form's StartWorkflowRun ClientToken of an object version (printable ASCII, at most 128
    characters, as the API requires): the same token for the same object version."""
    return "upload-" + _object_digest(obj)


def run_parameters(obj: UploadedObject) -> dict[str, str]:
    """The MWAA Serverless run's parameters (the workflow's `params`); the version id is '' for an unversioned object."""
    return {"bucket": obj["bucket"], "key": obj["key"], "version_id": obj["version_id"] or ""}
