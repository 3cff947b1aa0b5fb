"""Which uploads one Glue workflow run processes: every CSV under the form's landing prefix not yet loaded.

Why not the event ids: Glue's EVENT trigger batches the EventBridge events and gives the run only their ids (run
property `aws:eventIds`), never the event bodies, so the ids cannot be mapped to object keys without storing the
events somewhere else. Why not job bookmarks: the clean job is plain PySpark (no GlueContext), and bookmarks only
track reads made through GlueContext with a transformation context.

So the workflow keeps a small state file, `<state root>processed.json` = {key: etag} of the objects that were
loaded, and each run works in two steps:

1. `claim_sources` (clean job, before the transform): list the landing prefix (`*.csv`, size > 0, as the upload rule
   matches), keep the objects whose key/ETag is not in processed.json, record them in `pending/<run id>.json`, and
   return their URIs. Every object whose event is in this run's batch is already listed (S3 lists an object as
   soon as its upload completes, and its event comes after that), and an object that is not yet listed has an event
   of its own that starts a later run, so no upload is left behind.
2. `commit_sources` (load job, after the load succeeded): merge `pending/<run id>.json` into processed.json with a
   conditional write (If-Match / If-None-Match), retried on a concurrent update, and delete the pending file.

A run that fails before its commit leaves its objects unprocessed, so the next run (or a manual start of the
workflow) takes them again; a re-uploaded key with new content has a new ETag and is processed again. An object
may be processed twice (two runs claiming it before either commits): the load is a MERGE on the natural key, so it
still counts once. Pure boto3 and Python 3.9 compatible: the Glue Python shell load job imports it as well.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from botocore.exceptions import ClientError, ParamValidationError

LOG = logging.getLogger("workflow_inputs")

STATE_FILE = "processed.json"
PENDING_DIR = "pending/"
DEFAULT_SUFFIX = ".csv"
_PRECONDITION_CODES = ("PreconditionFailed", "412", "ConditionalRequestConflict")


class WorkflowInputsError(RuntimeError):
    """The workflow's source state is missing or inconsistent; the message names the object."""


@dataclass(frozen=True)
class SourceObject:
    """One upload: its key and ETag (a new upload to the same key has a new ETag)."""

    key: str
    etag: str


def parse_s3_uri(uri: str) -> Tuple[str, str]:
    """('bucket', 'prefix/') of an s3:// URI; a URI without a key gives an empty prefix."""
    if not isinstance(uri, str) or not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise ValueError(f"uri={uri!r}: expected s3://bucket/prefix/")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"uri={uri!r}: expected s3://bucket/prefix/")
    return bucket, prefix


def _etag(value: str) -> str:
    return value.strip('"')


def list_sources(s3: Any, *, bucket: str, prefix: str, suffix: str = DEFAULT_SUFFIX) -> List[SourceObject]:
    """Non-empty objects under `prefix` whose name ends with `suffix`; names starting with '_' or '.' are skipped
    (the crawler and the clean job skip them too). Sorted by key."""
    found: List[SourceObject] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            name = key.rsplit("/", 1)[-1]
            if not key.endswith(suffix) or item.get("Size", 0) <= 0 or name.startswith(("_", ".")):
                continue
            found.append(SourceObject(key=key, etag=_etag(item["ETag"])))
    return sorted(found, key=lambda o: o.key)


def _is_missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


def _read_json(s3: Any, bucket: str, key: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """(document, ETag) of a JSON object, or (None, None) when it does not exist."""
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _is_missing(error):
            return None, None
        raise
    try:
        document = json.loads(response["Body"].read())
    except ValueError as error:
        raise WorkflowInputsError(f"s3://{bucket}/{key} is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise WorkflowInputsError(f"s3://{bucket}/{key}: expected a JSON object")
    return document, _etag(response["ETag"])


def read_processed(s3: Any, *, state_bucket: str, state_prefix: str) -> Tuple[Dict[str, str], Optional[str]]:
    """({key: etag} of the loaded objects, ETag of the state file or None when no run was committed yet)."""
    document, etag = _read_json(s3, state_bucket, state_prefix + STATE_FILE)
    if document is None:
        return {}, None
    objects = document.get("objects", {})
    if not isinstance(objects, dict):
        raise WorkflowInputsError(f"s3://{state_bucket}/{state_prefix}{STATE_FILE}: 'objects' must be a mapping")
    return {str(k): str(v) for k, v in objects.items()}, etag


def pending_key(state_prefix: str, run_id: str) -> str:
    """Where a run's claimed objects are recorded until its load commits them."""
    if not run_id or "/" in run_id:
        raise ValueError(f"run_id={run_id!r}: must be a non-empty id without '/'")
    return f"{state_prefix}{PENDING_DIR}{run_id}.json"


def claim_sources(
    s3: Any,
    *,
    landing_bucket: str,
    landing_prefix: str,
    state_bucket: str,
    state_prefix: str,
    run_id: str,
    suffix: str = DEFAULT_SUFFIX,
) -> List[str]:
    """The s3:// URIs of the uploads this run processes (possibly none), recorded as pending for `run_id`."""
    listed = list_sources(s3, bucket=landing_bucket, prefix=landing_prefix, suffix=suffix)
    processed, _ = read_processed(s3, state_bucket=state_bucket, state_prefix=state_prefix)
    new = [o for o in listed if processed.get(o.key) != o.etag]
    document = {
        "run_id": run_id,
        "bucket": landing_bucket,
        "objects": {o.key: o.etag for o in new},
        # Keys present when the run listed the prefix: the commit forgets processed keys that are gone (expired).
        "listed": [o.key for o in listed],
    }
    s3.put_object(
        Bucket=state_bucket,
        Key=pending_key(state_prefix, run_id),
        Body=json.dumps(document, sort_keys=True).encode("utf-8"),
        ContentType="application/json",
    )
    LOG.info("run %s: %d new of %d uploads under s3://%s/%s", run_id, len(new), len(listed), landing_bucket, landing_prefix)
    return [f"s3://{landing_bucket}/{o.key}" for o in new]


def commit_sources(s3: Any, *, state_bucket: str, state_prefix: str, run_id: str, max_attempts: int = 5) -> int:
    """Mark the objects `run_id` claimed as processed; returns how many. Call it only after the load succeeded.

    Raises WorkflowInputsError when the run claimed nothing (no pending file: the clean job did not call
    `claim_sources`) or when the state file kept changing under concurrent commits.
    """
    key = pending_key(state_prefix, run_id)
    pending, _ = _read_json(s3, state_bucket, key)
    if pending is None:
        raise WorkflowInputsError(f"s3://{state_bucket}/{key} does not exist: the clean job of run {run_id} did not claim its sources")
    claimed = {str(k): str(v) for k, v in pending.get("objects", {}).items()}
    listed = set(pending.get("listed", [])) | set(claimed)
    for attempt in range(1, max_attempts + 1):
        processed, etag = read_processed(s3, state_bucket=state_bucket, state_prefix=state_prefix)
        merged = {k: v for k, v in processed.items() if k in listed}
        merged.update(claimed)
        body = json.dumps({"objects": merged, "last_run_id": run_id}, sort_keys=True).encode("utf-8")
        condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        put = {"Bucket": state_bucket, "Key": state_prefix + STATE_FILE, "Body": body, "ContentType": "application/json"}
        try:
            try:
                s3.put_object(**put, **condition)
            except ParamValidationError:
                # A boto3 older than S3 conditional writes (late 2024): write unconditionally. A lost concurrent
                # commit only means its objects are processed again, which the idempotent load absorbs.
                LOG.warning("this boto3 has no conditional put_object; writing the state file unconditionally")
                s3.put_object(**put)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _PRECONDITION_CODES:
                LOG.warning("run %s: state file changed concurrently (attempt %d of %d)", run_id, attempt, max_attempts)
                continue
            raise
        s3.delete_object(Bucket=state_bucket, Key=key)
        LOG.info("run %s: committed %d objects", run_id, len(claimed))
        return len(claimed)
    raise WorkflowInputsError(f"s3://{state_bucket}/{state_prefix}{STATE_FILE}: still changing after {max_attempts} attempts")


def claim_sources_from_uris(s3: Any, *, listing_uri: str, state_uri: str, run_id: str) -> List[str]:
    """`claim_sources` with the job arguments as given: `--source_listing_prefix` and `--workflow_state_root`."""
    landing_bucket, landing_prefix = parse_s3_uri(listing_uri)
    state_bucket, state_prefix = parse_s3_uri(state_uri)
    return claim_sources(
        s3,
        landing_bucket=landing_bucket,
        landing_prefix=landing_prefix,
        state_bucket=state_bucket,
        state_prefix=state_prefix,
        run_id=run_id,
    )


def commit_sources_from_uri(s3: Any, *, state_uri: str, run_id: str) -> int:
    """`commit_sources` with the `--workflow_state_root` job argument."""
    state_bucket, state_prefix = parse_s3_uri(state_uri)
    return commit_sources(s3, state_bucket=state_bucket, state_prefix=state_prefix, run_id=run_id)
