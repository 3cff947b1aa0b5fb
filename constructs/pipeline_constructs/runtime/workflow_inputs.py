"""Which uploads one Glue workflow run processes: every CSV under the form's landing prefix not yet loaded.

Why not the event ids: Glue's EVENT trigger batches the EventBridge events and gives the run only their ids (run
property `aws:eventIds`), never the event bodies, so the ids cannot be mapped to object keys without storing the
events somewhere else. Why not job bookmarks: the clean job is plain PySpark (no GlueContext), and bookmarks only
track reads made through GlueContext with a transformation context.

So the workflow keeps one small state file (`--workflow_state_uri`, e.g. `.../processed.json`): `objects` = {key: etag}
of the uploads that were loaded, and `rejected` = {key: {etag, reason, run_id}} of the uploads the clean job rejected
as a whole (quarantined). Each run works in two steps:

1. `claim_sources` (clean job, before the transform): list the landing prefix (`*.csv`, size > 0, as the upload rule
   matches), keep the objects whose key/ETag is not in the state file, record them in the workflow run's properties
   (`CLAIMED_PROPERTY`), and return their URIs. Every object whose event is in this run's batch is already listed
   (S3 lists an object as soon as its upload completes, and its event comes after that), and an object that is not
   listed yet has an event of its own that starts a later run, so no upload is left behind.
2. `commit_sources` (load job, after the load succeeded): merge the run's claimed objects into the state file with
   a conditional write (If-Match / If-None-Match), re-read and retried when another run committed in between.

Between the two, the clean job records what it rejected (`record_rejected`, right away, so a later run skips the file
even when this run's load fails, and the clean job alerts only about files it recorded for the first time) and the
run's curated row count (`record_curated_rows`, run property `CURATED_ROWS_PROPERTY`: zero rows skip the load).

The state file is one fixed key, so both jobs need access to that object only (no wildcard grants).
A run that fails before its commit leaves its objects unprocessed, so the next run (or a manual start of the
workflow) takes them again; a re-uploaded key with new content has a new ETag and is processed again. An object
may be processed twice (two runs claiming it before either commits): the load is a MERGE on the natural key, so it
still counts once. Pure boto3 and Python 3.9 compatible: the Glue Python shell load job imports it as well.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError, ParamValidationError  # type: ignore[import-untyped]

LOG = logging.getLogger("workflow_inputs")

# The workflow run property in which the clean job hands its claimed uploads ({key: etag} JSON) to the load job.
CLAIMED_PROPERTY = "pipeline_claimed_sources"
# The workflow run property in which the clean job tells the load job how many curated rows the run wrote.
CURATED_ROWS_PROPERTY = "pipeline_curated_rows"
DEFAULT_SUFFIX = ".csv"
_PRECONDITION_CODES = ("PreconditionFailed", "412", "ConditionalRequestConflict")


class WorkflowInputsError(RuntimeError):
    """The workflow's source state is missing or inconsistent; the message names the object."""


@dataclass(frozen=True)
class SourceObject:
    """One upload: its key and ETag (a new upload to the same key has a new ETag)."""

    key: str
    etag: str


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'prefix/') of an s3:// URI; a URI without a key gives an empty prefix."""
    if not isinstance(uri, str) or not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise ValueError(f"uri={uri!r}: expected s3://bucket/prefix/")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"uri={uri!r}: expected s3://bucket/prefix/")
    return bucket, prefix


def _etag(value: str) -> str:
    return value.strip('"')


def list_sources(s3: Any, *, bucket: str, prefix: str, suffix: str = DEFAULT_SUFFIX) -> list[SourceObject]:
    """Non-empty objects under `prefix` whose name ends with `suffix`; names starting with '_' or '.' are skipped
    (the crawler and the clean job skip them too). Sorted by key."""
    found: list[SourceObject] = []
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


def _read_json(s3: Any, bucket: str, key: str) -> tuple[dict[str, Any] | None, str | None]:
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


@dataclass
class WorkflowState:
    """The state file: loaded uploads {key: etag} and rejected uploads {key: {etag, reason, run_id}}."""

    processed: dict[str, str]
    rejected: dict[str, dict[str, str]]


def read_state(s3: Any, *, state_bucket: str, state_key: str) -> tuple[WorkflowState, str | None]:
    """(the state, ETag of the state file or None when nothing was written yet)."""
    document, etag = _read_json(s3, state_bucket, state_key)
    if document is None:
        return WorkflowState({}, {}), None
    objects = document.get("objects", {})
    rejected = document.get("rejected", {})
    if not isinstance(objects, dict):
        raise WorkflowInputsError(f"s3://{state_bucket}/{state_key}: 'objects' must be a mapping")
    if not isinstance(rejected, dict) or not all(isinstance(v, dict) for v in rejected.values()):
        raise WorkflowInputsError(f"s3://{state_bucket}/{state_key}: 'rejected' must map keys to objects")
    return (
        WorkflowState(
            processed={str(k): str(v) for k, v in objects.items()},
            rejected={str(k): {str(f): str(x) for f, x in v.items()} for k, v in rejected.items()},
        ),
        etag,
    )


def read_processed(s3: Any, *, state_bucket: str, state_key: str) -> tuple[dict[str, str], str | None]:
    """({key: etag} of the loaded objects, ETag of the state file or None when no run was committed yet)."""
    state, etag = read_state(s3, state_bucket=state_bucket, state_key=state_key)
    return state.processed, etag


def read_rejected(s3: Any, *, state_bucket: str, state_key: str) -> dict[str, dict[str, str]]:
    """{key: {etag, reason, run_id}} of the uploads rejected as a whole, which no later run claims again."""
    return read_state(s3, state_bucket=state_bucket, state_key=state_key)[0].rejected


def _write_state(s3: Any, *, state_bucket: str, state_key: str, state: WorkflowState, etag: str | None, run_id: str) -> bool:
    """Write the state file only if it is still the version read (`etag`, None: it must not exist yet).

    Returns False when another run changed it in between. With a boto3 older than S3 conditional writes (late
    2024) the write is unconditional: a lost concurrent update only means some objects are processed again, which
    the idempotent load absorbs.
    """
    body = {"objects": state.processed, "rejected": state.rejected, "last_run_id": run_id}
    put = {
        "Bucket": state_bucket,
        "Key": state_key,
        "Body": json.dumps(body, sort_keys=True).encode("utf-8"),
        "ContentType": "application/json",
    }
    condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
    try:
        try:
            s3.put_object(**put, **condition)
        except ParamValidationError:
            LOG.warning("this boto3 has no conditional put_object; writing the state file unconditionally")
            s3.put_object(**put)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _PRECONDITION_CODES:
            return False
        raise
    return True


def _update_state(
    s3: Any,
    *,
    state_bucket: str,
    state_key: str,
    run_id: str,
    change: Callable[[WorkflowState], WorkflowState | None],
    max_attempts: int = 5,
) -> WorkflowState | None:
    """Read, change, write conditionally; re-read and retried when another run wrote in between.

    `change` returns the new state, or None when nothing needs writing. Returns what was written (or None).
    """
    for attempt in range(1, max_attempts + 1):
        state, etag = read_state(s3, state_bucket=state_bucket, state_key=state_key)
        changed = change(state)
        if changed is None:
            return None
        if _write_state(s3, state_bucket=state_bucket, state_key=state_key, state=changed, etag=etag, run_id=run_id):
            return changed
        LOG.warning("run %s: the state file changed concurrently (attempt %d of %d)", run_id, attempt, max_attempts)
    raise WorkflowInputsError(f"s3://{state_bucket}/{state_key}: still changing after {max_attempts} attempts")


def claim_sources(
    s3: Any,
    glue: Any,
    *,
    landing_bucket: str,
    landing_prefix: str,
    state_bucket: str,
    state_key: str,
    workflow_name: str,
    run_id: str,
    suffix: str = DEFAULT_SUFFIX,
) -> list[str]:
    """The s3:// URIs of the uploads this workflow run processes (possibly none): see `claim_objects`."""
    claimed = claim_objects(
        s3,
        glue,
        landing_bucket=landing_bucket,
        landing_prefix=landing_prefix,
        state_bucket=state_bucket,
        state_key=state_key,
        workflow_name=workflow_name,
        run_id=run_id,
        suffix=suffix,
    )
    return [f"s3://{landing_bucket}/{o.key}" for o in claimed]


def claim_objects(
    s3: Any,
    glue: Any,
    *,
    landing_bucket: str,
    landing_prefix: str,
    state_bucket: str,
    state_key: str,
    workflow_name: str,
    run_id: str,
    suffix: str = DEFAULT_SUFFIX,
) -> list[SourceObject]:
    """The uploads this workflow run processes (possibly none): listed, and neither processed nor rejected with
    the same ETag.

    The claimed objects are recorded in the run's properties (`CLAIMED_PROPERTY`) for the load job's commit, and
    processed or rejected keys that are no longer listed (expired uploads) are dropped from the state file.
    """
    listed = list_sources(s3, bucket=landing_bucket, prefix=landing_prefix, suffix=suffix)
    state, etag = read_state(s3, state_bucket=state_bucket, state_key=state_key)
    new = [o for o in listed if state.processed.get(o.key) != o.etag and state.rejected.get(o.key, {}).get("etag") != o.etag]
    glue.put_workflow_run_properties(
        Name=workflow_name,
        RunId=run_id,
        RunProperties={CLAIMED_PROPERTY: json.dumps({o.key: o.etag for o in new}, sort_keys=True)},
    )
    keys = {o.key for o in listed}
    pruned = WorkflowState(
        processed={k: v for k, v in state.processed.items() if k in keys},
        rejected={k: v for k, v in state.rejected.items() if k in keys},
    )
    gone = len(state.processed) + len(state.rejected) - len(pruned.processed) - len(pruned.rejected)
    # Best effort: a concurrent commit wins, and the next run prunes again.
    if (
        etag is not None
        and gone
        and _write_state(s3, state_bucket=state_bucket, state_key=state_key, state=pruned, etag=etag, run_id=run_id)
    ):
        LOG.info("run %s: forgot %d processed or rejected uploads that are gone", run_id, gone)
    LOG.info("run %s: %d new of %d uploads under s3://%s/%s", run_id, len(new), len(listed), landing_bucket, landing_prefix)
    return new


def record_rejected(
    s3: Any,
    *,
    state_bucket: str,
    state_key: str,
    rejected: Mapping[str, tuple[str, str]],
    run_id: str,
    max_attempts: int = 5,
) -> dict[str, str]:
    """Record uploads the clean job rejected as a whole ({key: (etag, reason)}), so no later run claims them again.

    Returns {key: reason} of those not recorded before with the same ETag: the ones to alert about (a retried job
    run finds them recorded and alerts nobody twice). Call it before alerting: a failed alert fails the job, whose
    failure rule then reports it.
    """
    newly: dict[str, str] = {}

    def add(state: WorkflowState) -> WorkflowState | None:
        newly.clear()
        for key, (etag, reason) in rejected.items():
            if state.rejected.get(key, {}).get("etag") != etag:
                newly[key] = reason
        if not newly:
            return None
        entries = {key: {"etag": rejected[key][0], "reason": reason, "run_id": run_id} for key, reason in newly.items()}
        return WorkflowState(processed=state.processed, rejected={**state.rejected, **entries})

    _update_state(s3, state_bucket=state_bucket, state_key=state_key, run_id=run_id, change=add, max_attempts=max_attempts)
    if newly:
        LOG.info("run %s: recorded %d rejected uploads: %s", run_id, len(newly), ", ".join(sorted(newly)))
    return dict(newly)


def record_rejected_from_uri(s3: Any, *, state_uri: str, rejected: Mapping[str, tuple[str, str]], run_id: str) -> dict[str, str]:
    """`record_rejected` with the `--workflow_state_uri` job argument."""
    state_bucket, state_key = parse_s3_uri(state_uri)
    return record_rejected(s3, state_bucket=state_bucket, state_key=state_key, rejected=rejected, run_id=run_id)


def record_curated_rows(glue: Any, *, workflow_name: str, run_id: str, rows: int) -> None:
    """Tell the run's load job how many rows the clean job wrote (run property `CURATED_ROWS_PROPERTY`)."""
    glue.put_workflow_run_properties(Name=workflow_name, RunId=run_id, RunProperties={CURATED_ROWS_PROPERTY: str(int(rows))})


def curated_rows(glue: Any, *, workflow_name: str, run_id: str) -> int | None:
    """The curated row count the run's clean job recorded, or None when it recorded none."""
    properties = glue.get_workflow_run_properties(Name=workflow_name, RunId=run_id).get("RunProperties", {})
    value = properties.get(CURATED_ROWS_PROPERTY)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise WorkflowInputsError(f"run property {CURATED_ROWS_PROPERTY}={value!r} of run {run_id}: expected an integer") from None


def claimed_sources(glue: Any, *, workflow_name: str, run_id: str) -> dict[str, str]:
    """{key: etag} the run's clean job claimed; raises WorkflowInputsError when it claimed nothing."""
    properties = glue.get_workflow_run_properties(Name=workflow_name, RunId=run_id).get("RunProperties", {})
    if CLAIMED_PROPERTY not in properties:
        raise WorkflowInputsError(
            f"workflow {workflow_name} run {run_id} has no run property {CLAIMED_PROPERTY!r}: its clean job did not claim its sources"
        )
    claimed = json.loads(properties[CLAIMED_PROPERTY])
    if not isinstance(claimed, dict):
        raise WorkflowInputsError(f"run property {CLAIMED_PROPERTY!r} of run {run_id}: expected a JSON object")
    return {str(k): str(v) for k, v in claimed.items()}


def commit_sources(
    s3: Any,
    glue: Any,
    *,
    state_bucket: str,
    state_key: str,
    workflow_name: str,
    run_id: str,
    max_attempts: int = 5,
) -> int:
    """Mark the objects the run claimed as processed; returns how many. Call it only after the load succeeded.

    A rejected entry of a key the run claimed with another ETag (the upload was replaced) is dropped. Raises
    WorkflowInputsError when the run claimed nothing or the state file kept changing under concurrent commits.
    """
    claimed = claimed_sources(glue, workflow_name=workflow_name, run_id=run_id)

    def merge(state: WorkflowState) -> WorkflowState:
        rejected = {k: v for k, v in state.rejected.items() if k not in claimed or claimed[k] == v.get("etag")}
        return WorkflowState(processed={**state.processed, **claimed}, rejected=rejected)

    _update_state(s3, state_bucket=state_bucket, state_key=state_key, run_id=run_id, change=merge, max_attempts=max_attempts)
    LOG.info("run %s: committed %d uploads", run_id, len(claimed))
    return len(claimed)


def claim_sources_from_uris(s3: Any, glue: Any, *, listing_uri: str, state_uri: str, workflow_name: str, run_id: str) -> list[str]:
    """`claim_sources` with job arguments as given: `--source_listing_prefix`, `--workflow_state_uri`, and Glue's
    `--WORKFLOW_NAME` / `--WORKFLOW_RUN_ID`."""
    landing_bucket, landing_prefix = parse_s3_uri(listing_uri)
    state_bucket, state_key = parse_s3_uri(state_uri)
    return claim_sources(
        s3,
        glue,
        landing_bucket=landing_bucket,
        landing_prefix=landing_prefix,
        state_bucket=state_bucket,
        state_key=state_key,
        workflow_name=workflow_name,
        run_id=run_id,
    )


def commit_sources_from_uri(s3: Any, glue: Any, *, state_uri: str, workflow_name: str, run_id: str) -> int:
    """`commit_sources` with the `--workflow_state_uri` job argument and Glue's workflow name and run id."""
    state_bucket, state_key = parse_s3_uri(state_uri)
    return commit_sources(s3, glue, state_bucket=state_bucket, state_key=state_key, workflow_name=workflow_name, run_id=run_id)
