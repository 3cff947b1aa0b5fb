"""The ledger work of a scheduled Step Functions run, as one small Lambda (forms/step_functions_schedule.py).

A scheduled execution starts on the clock, not on an upload, so before anything else it must learn what it takes.
Five actions, each one call from the state machine (or its failure reporter):

- `claim` (the run's first state): take the form's run lock, so two scheduled runs never overlap (a lease in the
  ledger's table, the load lock's item and code: `load_lock.take`); held, the run ends at once and says so. Then
  take what is pending with `workflow_inputs.claim_pending`, the Glue Workflow form's claim: the uploads this run
  already holds (a retried attempt), the ones `pipeline-ops` requested (the execution's input `requested`), the
  failed ones fewer than three runs tried, then the inbox. Nothing pending: the lock is released and the run ends.
  Otherwise the answer names the uploads as the clean job takes them (`--source_uris`, `--source_versions`).
- `load` (before the load): the uploads the run still holds move to step load.
- `target` (parallel loads, after each target's load): that target's outcome (`load_<target>`: loaded or failed) on
  every upload the run still holds.
- `finish` (the run's last state): each upload still held ends `loaded` (the clean job ended the others: rejected,
  skipped_empty, quarantined: `glue_clean_job` with --settle_uploads, `settle_workflow_run`), the lock is released, and the answer counts
  the outcomes.
- `fail` (the failure reporter, for a failed, timed-out or aborted run): release the lock, record the failure on
  every upload the run still holds (so the next scheduled run retakes them) and name every upload the run failed
  with (whoever recorded it) for the one message; a marker item makes a repeated status-change event publish nothing.

The claim is recorded by the ledger itself: every upload taken is `running`, owned by the run (the execution
name), which is how a retried claim and the failure reporter find them again (the ledger's by_state index).

Standard library and boto3 only, Python 3.9 compatible.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from pipeline_constructs.runtime import workflow_inputs as inputs
from pipeline_constructs.runtime.load_lock.load_lock import LoadLockHeld, take
from pipeline_constructs.runtime.pipeline_plan import LOAD
from pipeline_constructs.runtime.upload_ledger import (
    FAILED,
    LOADED,
    RUN_ATTRIBUTE_PREFIX,
    RUNNING,
    STATE_INDEX,
    LedgerConflict,
    Upload,
    UploadLedger,
    from_item,
    split_uri,
)

LOG = logging.getLogger("scheduled_runs")
LOCK_VERSION = "run"
"""The sort key of the run lock item (its partition key: `run_lock_object`)."""
REPORT_VERSION = "failure-report"
"""The sort key of the marker a failure report writes once per run."""
NAMED_UPLOADS = 50
"""Uploads a failure message names one by one; the rest are counted."""


def run_lock_object(form: str, landing_prefix: str) -> str:
    """The run lock item's partition key: one lock per form and landing prefix (no S3 URI, no `state`: the ledger's
    index, `status`, `show` and `reconcile` never meet it)."""
    return f"lock:run:{form}:{landing_prefix}"


def _ledger(event: dict[str, Any], dynamodb: Any) -> UploadLedger:
    return UploadLedger(dynamodb, event["TableName"], form=event["form"], ttl_days=int(event.get("ttl_days", 0)))


def _lock_key(event: dict[str, Any]) -> dict[str, Any]:
    return {"object": {"S": event["lock_object"]}, "version": {"S": LOCK_VERSION}}


def release_run_lock(dynamodb: Any, event: dict[str, Any]) -> bool:
    """Delete the run lock if this execution holds it; False when it does not (released already, or never taken)."""
    try:
        dynamodb.delete_item(
            TableName=event["TableName"],
            Key=_lock_key(event),
            ConditionExpression="#owner = :owner",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":owner": {"S": event["execution"]}},
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def held_by_run(ledger: UploadLedger, run_id: str) -> list[Upload]:
    """The uploads of this form the run holds (`running`, owned by `run_id`), from the ledger's by_state index."""
    found: list[Upload] = []
    pages = ledger.client.get_paginator("query").paginate(
        TableName=ledger.table_name,
        IndexName=STATE_INDEX,
        KeyConditionExpression="#state = :running",
        FilterExpression="#owner = :run_id AND #form = :form",
        ExpressionAttributeNames={"#state": "state", "#owner": "owner", "#form": "form"},
        ExpressionAttributeValues={":running": {"S": RUNNING}, ":run_id": {"S": run_id}, ":form": {"S": ledger.form}},
    )
    for page in pages:
        found.extend(inputs.upload_of_record(from_item(item)) for item in page.get("Items", []))
    return found


def failed_by_run(ledger: UploadLedger, run_id: str) -> list[Upload]:
    """The uploads of this form whose record is `failed` and names the run (its `run:<run id>` map): what the run
    held when it failed, whoever recorded the failure (the clean job records its own)."""
    found: list[Upload] = []
    pages = ledger.client.get_paginator("query").paginate(
        TableName=ledger.table_name,
        IndexName=STATE_INDEX,
        KeyConditionExpression="#state = :failed",
        FilterExpression="attribute_exists(#run) AND #form = :form",
        ExpressionAttributeNames={"#state": "state", "#run": f"{RUN_ATTRIBUTE_PREFIX}{run_id}", "#form": "form"},
        ExpressionAttributeValues={":failed": {"S": FAILED}, ":form": {"S": ledger.form}},
    )
    for page in pages:
        found.extend(inputs.upload_of_record(from_item(item)) for item in page.get("Items", []))
    return found


def requested_uploads(execution_input: Any) -> list[Upload]:
    """The uploads `pipeline-ops` named in the execution's input (`requested`: a list of {bucket, key, version_id,
    etag}); none for a scheduled start. WorkflowInputsError naming the input when `requested` is not such a list."""
    if not isinstance(execution_input, dict) or not execution_input.get("requested"):
        return []
    return inputs.uploads_from_json(json.dumps(execution_input["requested"]), "the execution input's `requested`")


def claim(event: dict[str, Any], clients: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Take the run lock, then the pending uploads (see the module docstring). Answer: {held, count, message} and,
    with uploads, {source_uris, source_versions} (JSON arrays, as the clean job reads them)."""
    dynamodb = clients["dynamodb"]
    run_id, execution = event["run_id"], event["execution"]
    lock = {"TableName": event["TableName"], "Key": _lock_key(event), "owner": execution, "run_id": run_id}
    try:
        take(dynamodb, {**lock, "lease_seconds": int(event["lease_seconds"])}, now)
    except LoadLockHeld:
        holder = dynamodb.get_item(TableName=event["TableName"], Key=_lock_key(event), ConsistentRead=True).get("Item", {})
        other = holder.get("run_id", {}).get("S", "another execution")
        until = holder.get("lease_expires_at", {}).get("S", "?")
        message = (
            f"another run is going ({other} holds the run lock, lease until {until}): this run ends without taking, "
            "crawling, cleaning or loading anything"
        )
        LOG.info("run %s: %s", run_id, message)
        return {"held": True, "count": 0, "message": message}
    ledger = _ledger(event, dynamodb)
    uploads = inputs.claim_pending(
        ledger,
        sqs=clients["sqs"],
        inbox_url=event["inbox_url"],
        run_id=run_id,
        execution=execution,
        landing_bucket=event["landing_bucket"],
        landing_prefix=event["landing_prefix"],
        first=[*held_by_run(ledger, run_id), *requested_uploads(event.get("input"))],
    )
    if not uploads:
        release_run_lock(dynamodb, event)
        message = "nothing pending (no upload requested, none failed to retry, none in the inbox): nothing crawled, cleaned or loaded"
        LOG.info("run %s: %s", run_id, message)
        return {"held": False, "count": 0, "message": message}
    return {
        "held": False,
        "count": len(uploads),
        "message": f"took {len(uploads)} pending uploads",
        "source_uris": json.dumps([upload.uri for upload in uploads]),
        "source_versions": json.dumps([upload.version for upload in uploads]),
    }


def claimed_uploads(source_uris: str, source_versions: str) -> list[Upload]:
    """The uploads of a claim's answer (its two JSON arrays, one version per URI); ValueError naming them otherwise."""
    uris, versions = json.loads(source_uris), json.loads(source_versions)
    if not isinstance(uris, list) or not isinstance(versions, list) or len(uris) != len(versions):
        raise ValueError(f"source_uris={source_uris[:200]!r}, source_versions={source_versions[:200]!r}: give one version per URI")
    uploads = []
    for index, uri in enumerate(uris):
        bucket, key = split_uri(uri)
        uploads.append(inputs.upload_of_record({"bucket": bucket, "key": key, "version": versions[index]}))
    return uploads


def to_load(event: dict[str, Any], clients: dict[str, Any]) -> dict[str, Any]:
    """Before the load: each claimed upload the run still holds (the clean job ended the others) moves to step load.
    Answer: {loading: count}."""
    ledger = _ledger(event, clients["dynamodb"])
    moved = 0
    for upload in claimed_uploads(event["source_uris"], event["source_versions"]):
        try:
            ledger.step(upload, run_id=event["run_id"], step=LOAD)
            moved += 1
        except LedgerConflict:
            continue
    return {"loading": moved}


def record_target(event: dict[str, Any], clients: dict[str, Any]) -> dict[str, Any]:
    """Parallel loads: record `event["target"]`'s outcome (`event["outcome"]`: loaded or failed) on each claimed upload
    the run still holds (the clean job ended the others). Answer: {recorded: count}."""
    ledger = _ledger(event, clients["dynamodb"])
    recorded = 0
    for upload in claimed_uploads(event["source_uris"], event["source_versions"]):
        try:
            ledger.target(upload, run_id=event["run_id"], target=str(event["target"]), outcome=str(event["outcome"]))
            recorded += 1
        except LedgerConflict:
            continue
    LOG.info("run %s: %s %s on %d uploads", event["run_id"], event["target"], event["outcome"], recorded)
    return {"recorded": recorded}


def finish(event: dict[str, Any], clients: dict[str, Any]) -> dict[str, Any]:
    """End the run: with `loaded` true, each upload it still holds ends `loaded`; then the lock is released. Answer:
    {outcomes: {state: count}, message}."""
    dynamodb = clients["dynamodb"]
    ledger = _ledger(event, dynamodb)
    outcomes: dict[str, int] = {}
    for upload in claimed_uploads(event["source_uris"], event["source_versions"]):
        state = None
        if event.get("loaded"):
            try:
                state = ledger.finish(upload, run_id=event["run_id"], outcome=LOADED)["state"]
            except LedgerConflict:
                state = None
        if state is None:
            record = ledger.get(upload)
            state = str(record.get("state")) if record else "missing"
        outcomes[state] = outcomes.get(state, 0) + 1
    release_run_lock(dynamodb, event)
    message = ", ".join(f"{count} {state}" for state, count in sorted(outcomes.items()))
    LOG.info("run %s ended: %s", event["run_id"], message)
    return {"outcomes": outcomes, "message": message}


def _named(uploads: Iterable[Upload]) -> str:
    listed = sorted({upload.uri for upload in uploads})
    if not listed:
        return "no upload (the run held none when it ended)"
    shown = ", ".join(listed[:NAMED_UPLOADS])
    more = f" and {len(listed) - NAMED_UPLOADS} more" if len(listed) > NAMED_UPLOADS else ""
    return f"{len(listed)} upload{'s' if len(listed) != 1 else ''}: {shown}{more}"


def fail(event: dict[str, Any], clients: dict[str, Any]) -> dict[str, Any]:
    """A scheduled run failed, timed out or was aborted: release its lock, record the failure (error, cause) on every
    upload it holds, and say whether this is the first report of the run. Answer: {already_reported, object (the
    uploads named for the message), run_id, failed}."""
    dynamodb = clients["dynamodb"]
    ledger = _ledger(event, dynamodb)
    run_id = event["run_id"]
    release_run_lock(dynamodb, event)
    held = held_by_run(ledger, run_id)
    cause = str(event.get("cause") or "")
    failed = inputs.fail_uploads(ledger, held, run_id=run_id, error=str(event.get("error") or "Error"), cause=cause)
    named = {(upload.uri, upload.version): upload for upload in [*held, *failed_by_run(ledger, run_id)]}
    try:
        dynamodb.put_item(
            TableName=event["TableName"],
            Item={
                "object": {"S": f"report:{event['form']}:{run_id}"},
                "version": {"S": REPORT_VERSION},
                "execution": {"S": event["execution"]},
                "expires_at": {"N": str(ledger.expires_at())},
            },
            ConditionExpression="attribute_not_exists(#object)",
            ExpressionAttributeNames={"#object": "object"},
        )
        already = False
    except dynamodb.exceptions.ConditionalCheckFailedException:
        already = True
    LOG.info("run %s failed: %d uploads recorded failed (report %s)", run_id, failed, "repeated" if already else "first")
    return {"already_reported": already, "object": _named(named.values()), "run_id": run_id, "failed": failed}


_CLIENTS: dict[str, Any] = {}
ACTIONS = ("claim", "load", "target", "finish", "fail")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: `event["action"]` is one of ACTIONS."""
    import boto3

    logging.getLogger().setLevel(logging.INFO)
    for name in ("dynamodb", "sqs"):
        if name not in _CLIENTS:
            _CLIENTS[name] = boto3.client(name)
    action = event.get("action")
    if action == "claim":
        return claim(event, _CLIENTS, datetime.now(timezone.utc))  # noqa: UP017 (Python 3.9)
    if action == "load":
        return to_load(event, _CLIENTS)
    if action == "target":
        return record_target(event, _CLIENTS)
    if action == "finish":
        return finish(event, _CLIENTS)
    if action == "fail":
        return fail(event, _CLIENTS)
    raise ValueError(f"action={action!r}: use one of {', '.join(ACTIONS)}")
