"""What the upload Lambdas share: the SQS batch they receive (EventBridge S3 `Object Created` events) and the object
each message names. Standard library only: it ships in the same asset folder as the handlers."""

from __future__ import annotations

import json
from typing import TypedDict


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
