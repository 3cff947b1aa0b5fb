"""Which uploads one Glue workflow run processes, claimed through the upload ledger (runtime/upload_ledger.py).

Why not the event ids: Glue's EVENT trigger batches the EventBridge events and gives the run only their ids (run
property `aws:eventIds`), never the event bodies, so the ids cannot be mapped to object keys. Why not a listing of the
landing prefix: it is O(everything ever uploaded) per run. At 10,000 uploads a day and the default one year of
retention the prefix holds 3.65 million objects (300,000 after a month): 3,650 LIST pages (300) and, to skip the
finished ones, 36,500 BatchGetItem calls (3,000) of 100 keys per run, about 6 minutes (1) and $0.23 ($0.02) of
reads per run, with a run every few minutes.

So the upload rule sends every event twice: to the workflow (which starts a run) and to the form's inbox queue (SQS,
a native EventBridge target, no code). The clean job claims, in this order, each upload once:
1. the uploads its own run claimed before (`CLAIMED_PROPERTY`: a retried attempt of the job takes them back);
2. the uploads `pipeline-ops` named when it started or resumed the run (`REQUESTED_PROPERTY`: reruns, dead-letter
   replays and `reconcile --start`, whose events never reached the inbox);
3. this form's failed uploads under the prefix that fewer than `MAX_AUTOMATIC_ATTEMPTS` runs tried (a query of the
   ledger's `by_state` index: bounded by the failed uploads, and a file that fails every run stops failing the runs
   after three; `pipeline-ops rerun` still takes it);
4. the inbox, up to `INBOX_RECEIVES` x 10 messages (1,000 uploads) per run; the rest wait for the next run.
Each is taken with `UploadLedger.start` (step crawl, as on every form: the crawl of this run already ran) and moved
to step clean at once; a refused start (another run holds it, or it ended loaded, rejected, ...) is not this run's.
Then the claim is recorded in the run's properties and only then are the inbox messages deleted. Per run that is one
Query, one ReceiveMessage per 10 new uploads (plus an empty one), one DeleteMessageBatch per 10 and two ledger writes
per upload: at 10,000 uploads a day about 3,000 SQS requests ($0.001) and 20,000 writes ($0.03) a day, the same in
the first month and after a year.

An event that reached the workflow but not the inbox leaves its upload without a record (its delivery went to the
dead-letter queue, which `pipeline-ops replay-dead-letters` replays); a crawl that fails leaves its run's uploads in
the inbox for the next run. `pipeline-ops reconcile` reports either as unaccounted uploads.

`claim_pending` and `count_pending` are the same claim and count without Glue's run properties: every form's
scheduled run takes its uploads through them, and records its claim where its own retries read it back.

Pure boto3 and Python 3.9 compatible: the Glue Python shell load job imports it as well.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

try:
    from pipeline_constructs.runtime.pipeline_plan import CLEAN, CRAWL, LOAD
    from pipeline_constructs.runtime.upload_ledger import (
        FAILED,
        LOADED,
        STATE_INDEX,
        LedgerConflict,
        Upload,
        UploadLedger,
        from_item,
        loaded_targets,
        targets_to_load,
    )
except ImportError:  # on Glue: top-level modules shipped beside the job
    from pipeline_plan import CLEAN, CRAWL, LOAD  # type: ignore[import-not-found,no-redef]
    from upload_ledger import (  # type: ignore[import-not-found,no-redef]
        FAILED,
        LOADED,
        STATE_INDEX,
        LedgerConflict,
        Upload,
        UploadLedger,
        from_item,
        loaded_targets,
        targets_to_load,
    )

# Re-exported for the load job, which imports only this module by name.
__all__ = ["FAILED", "LOAD", "LOADED", "LedgerConflict", "Upload", "UploadLedger", "loaded_targets", "targets_to_load"]

LOG = logging.getLogger("workflow_inputs")

# Workflow run properties, each a JSON list of uploads ({bucket, key, version_id, etag}).
CLAIMED_PROPERTY = "pipeline_claimed_uploads"
"""Every upload the run's clean job took."""
LOADING_PROPERTY = "pipeline_loading_uploads"
"""The uploads the load job loads and ends `loaded` (the clean job ended the others: rejected, empty, quarantined)."""
REQUESTED_PROPERTY = "pipeline_requested_uploads"
"""Uploads `pipeline-ops` asks the run to take (set when it starts or resumes a run)."""
EMPTY_RUN_PROPERTY = "pipeline_empty_run"
"""Set by a scheduled run's pending check when nothing waits: why the run ended before its crawl (then it is stopped)."""
DEFAULT_SUFFIX = ".csv"
MAX_AUTOMATIC_ATTEMPTS = 3
INBOX_RECEIVES = 100


class WorkflowInputsError(RuntimeError):
    """The run's inputs are missing or inconsistent; the message names the run property or value."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'prefix/') of an s3:// URI; a URI without a key gives an empty prefix."""
    if not isinstance(uri, str) or not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise ValueError(f"uri={uri!r}: expected s3://bucket/prefix/")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"uri={uri!r}: expected s3://bucket/prefix/")
    return bucket, prefix


def is_source(key: str, prefix: str, suffix: str = DEFAULT_SUFFIX) -> bool:
    """A key the form processes: under `prefix`, ending with `suffix`, its name not starting with '_' or '.' (the
    crawler and the clean job skip those)."""
    return key.startswith(prefix) and key.endswith(suffix) and not key.rsplit("/", 1)[-1].startswith(("_", "."))


# --- uploads in run properties --------------------------------------------------------------------------------------
def uploads_to_json(uploads: Iterable[Upload]) -> str:
    return json.dumps([{"bucket": u.bucket, "key": u.key, "version_id": u.version_id, "etag": u.etag} for u in uploads], sort_keys=True)


def uploads_from_json(text: str, where: str) -> list[Upload]:
    """The uploads of a run property; WorkflowInputsError naming `where` when it is not a list of uploads."""
    try:
        items = json.loads(text)
        if not isinstance(items, list):
            raise TypeError("not a list")
        return [Upload(str(i["bucket"]), str(i["key"]), i.get("version_id") or None, i.get("etag") or None) for i in items]
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise WorkflowInputsError(f"{where}: expected a JSON list of {{bucket, key, version_id, etag}} ({error})") from None


def read_uploads(glue: Any, *, workflow_name: str, run_id: str, name: str) -> list[Upload] | None:
    """The uploads in run property `name`, or None when the run has no such property."""
    properties = glue.get_workflow_run_properties(Name=workflow_name, RunId=run_id).get("RunProperties", {})
    if name not in properties:
        return None
    return uploads_from_json(properties[name], f"run property {name} of workflow {workflow_name} run {run_id}")


def put_uploads(glue: Any, *, workflow_name: str, run_id: str, name: str, uploads: Iterable[Upload]) -> None:
    glue.put_workflow_run_properties(Name=workflow_name, RunId=run_id, RunProperties={name: uploads_to_json(uploads)})


# --- where the candidates come from --------------------------------------------------------------------------------
def upload_of_event(body: str) -> Upload | None:
    """The upload an EventBridge S3 `Object Created` event (an inbox message) names, or None when it names none."""
    try:
        obj = json.loads(body)["detail"]
        bucket, key = obj["bucket"]["name"], obj["object"]["key"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        return None
    version, etag = obj["object"].get("version-id"), obj["object"].get("etag")
    return Upload(bucket, key, version if isinstance(version, str) else None, etag if isinstance(etag, str) else None)


def upload_of_record(record: dict[str, Any]) -> Upload:
    """The upload a ledger record is about (its sort key is the version id, or 'etag:<etag>')."""
    version = str(record.get("version", ""))
    if version.startswith("etag:"):
        return Upload(record["bucket"], record["key"], None, version[len("etag:") :])
    if version in ("", "null"):
        return Upload(record["bucket"], record["key"])
    return Upload(record["bucket"], record["key"], version, record.get("etag") or None)


def retakable_failed(ledger: UploadLedger, *, bucket: str, prefix: str) -> list[Upload]:
    """This form's failed uploads under s3://bucket/prefix that fewer than MAX_AUTOMATIC_ATTEMPTS runs tried."""
    found: list[Upload] = []
    pages = ledger.client.get_paginator("query").paginate(
        TableName=ledger.table_name,
        IndexName=STATE_INDEX,
        KeyConditionExpression="#state = :failed",
        FilterExpression="#form = :form AND begins_with(#object, :under)",
        ExpressionAttributeNames={"#state": "state", "#form": "form", "#object": "object"},
        ExpressionAttributeValues={":failed": {"S": FAILED}, ":form": {"S": ledger.form}, ":under": {"S": f"s3://{bucket}/{prefix}"}},
    )
    for page in pages:
        for item in page.get("Items", []):
            record = from_item(item)
            if len(record["runs"]) < MAX_AUTOMATIC_ATTEMPTS:
                found.append(upload_of_record(record))
            else:
                LOG.warning(
                    "%s failed in %d runs: not retaken automatically (pipeline-ops rerun takes it)", record["object"], len(record["runs"])
                )
    return found


def receive_inbox(sqs: Any, queue_url: str, receives: int = INBOX_RECEIVES) -> list[tuple[Upload | None, str, str]]:
    """Up to `receives` x 10 inbox messages as (upload or None, receipt handle, body). Long polls of 1 s: a short
    poll may answer empty while messages wait on other servers."""
    messages: list[tuple[Upload | None, str, str]] = []
    for _ in range(receives):
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not batch:
            break
        messages.extend((upload_of_event(m["Body"]), m["ReceiptHandle"], m["Body"]) for m in batch)
    return messages


def delete_messages(sqs: Any, queue_url: str, receipts: list[str]) -> None:
    """Delete received messages, 10 per call; one not deleted comes back and is refused by the next run's start."""
    for start in range(0, len(receipts), 10):
        entries = [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts[start : start + 10])]
        failed = sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed", [])
        for failure in failed:
            LOG.warning("inbox message not deleted (%s): it comes back, and the ledger refuses it", failure.get("Message", failure))


# --- a scheduled run's first step: is anything pending? -------------------------------------------------------------
def pending_uploads(
    ledger: UploadLedger, *, sqs: Any, glue: Any, inbox_url: str, workflow_name: str, run_id: str, landing_bucket: str, landing_prefix: str
) -> dict[str, int]:
    """What a run of the scheduled Glue workflow would take (`count_pending`, with the uploads `pipeline-ops`
    requested in the run's properties), counted without taking anything: the clean job claims, after the crawl."""
    requested = read_uploads(glue, workflow_name=workflow_name, run_id=run_id, name=REQUESTED_PROPERTY) or []
    return count_pending(
        ledger, sqs=sqs, inbox_url=inbox_url, landing_bucket=landing_bucket, landing_prefix=landing_prefix, requested=len(requested)
    )


def end_empty_run(glue: Any, *, workflow_name: str, run_id: str, pending: dict[str, int]) -> str:
    """Record why the run ends (run property EMPTY_RUN_PROPERTY), then stop the run: Glue terminates what runs and
    starts nothing more ("Stopping a workflow run", Glue developer guide), so no crawl, no clean, no load. Returns the
    message recorded. The stop is the last call: it may end the calling job itself (STOPPED)."""
    message = f"nothing pending ({pending['requested']} requested, {pending['failed']} failed to retry, {pending['inbox']} in the inbox): nothing crawled, cleaned or loaded"
    glue.put_workflow_run_properties(Name=workflow_name, RunId=run_id, RunProperties={EMPTY_RUN_PROPERTY: message})
    LOG.info("run %s of %s: %s", run_id, workflow_name, message)
    glue.stop_workflow_run(Name=workflow_name, RunId=run_id)
    return message


# --- the claim ------------------------------------------------------------------------------------------------------
def _take(ledger: UploadLedger, upload: Upload, *, run_id: str, execution: str, then_step: str | None = CLEAN) -> bool:
    """Start the upload for this run (step crawl, then `then_step` unless None); False when the ledger refuses it."""
    try:
        ledger.start(upload, run_id=run_id, execution=execution, step=CRAWL)
        if then_step is not None:
            ledger.step(upload, run_id=run_id, step=then_step)
    except LedgerConflict as refused:
        LOG.info("not this run's: %s", refused)
        return False
    return True


def fail_uploads(ledger: UploadLedger, uploads: Iterable[Upload], *, run_id: str, error: str, cause: str) -> int:
    """Record the run's failure on each upload it still holds; returns how many (the others ended already)."""
    failed = 0
    for upload in uploads:
        try:
            ledger.fail(upload, run_id=run_id, error=error, cause=cause)
            failed += 1
        except LedgerConflict:
            continue
    return failed


def claim_pending(
    ledger: UploadLedger,
    *,
    sqs: Any,
    inbox_url: str,
    run_id: str,
    execution: str,
    landing_bucket: str,
    landing_prefix: str,
    first: Iterable[Upload] = (),
    record: Callable[[list[Upload]], None] | None = None,
    then_step: str | None = CLEAN,
    suffix: str = DEFAULT_SUFFIX,
) -> list[Upload]:
    """The uploads run `run_id` takes (possibly none), any form: `first` (what the run held before, what
    `pipeline-ops` requested), then this form's failed uploads fewer than MAX_AUTOMATIC_ATTEMPTS runs tried, then the
    inbox. Each is started in the ledger at step crawl (and moved to `then_step` unless None); a refused start is
    not this run's. `record(uploads)` stores the claim where a retried attempt reads it back; only then are the
    inbox messages deleted. If `record` fails, the uploads taken are recorded failed (the next run retakes them)
    and the error is raised."""
    first = list(first)
    failed = retakable_failed(ledger, bucket=landing_bucket, prefix=landing_prefix)
    inbox = receive_inbox(sqs, inbox_url)
    candidates = [*first, *failed, *(upload for upload, _, _ in inbox if upload is not None)]
    for upload, _, body in inbox:
        if upload is None:
            LOG.warning("inbox message that names no upload, deleted: %s", body[:500])
    claimed: dict[tuple[str, str], Upload] = {}
    for upload in candidates:
        ident = (upload.uri, upload.version)
        if ident in claimed:
            continue
        if upload.bucket != landing_bucket or not is_source(upload.key, landing_prefix, suffix):
            LOG.warning("%s is not an upload of this form (s3://%s/%s*%s): skipped", upload.uri, landing_bucket, landing_prefix, suffix)
            continue
        if _take(ledger, upload, run_id=run_id, execution=execution, then_step=then_step):
            claimed[ident] = upload
    uploads = list(claimed.values())
    if record is not None:
        try:
            record(uploads)
        except Exception as error:
            fail_uploads(ledger, uploads, run_id=run_id, error=type(error).__name__, cause=f"recording the run's claim: {error}")
            raise
    delete_messages(sqs, inbox_url, [receipt for _, receipt, _ in inbox])
    LOG.info(
        "run %s: took %d uploads (%d held or requested, %d failed before, %d inbox messages)",
        run_id,
        len(uploads),
        len(first),
        len(failed),
        len(inbox),
    )
    return uploads


def count_pending(
    ledger: UploadLedger, *, sqs: Any, inbox_url: str, landing_bucket: str, landing_prefix: str, requested: int = 0
) -> dict[str, int]:
    """What a run would take, counted without taking anything: `requested` (uploads `pipeline-ops` named), the
    failed ones fewer than MAX_AUTOMATIC_ATTEMPTS runs tried, and the inbox's messages. The inbox is counted twice
    over, cautiously: one long-polled receive that hands its message straight back (visibility timeout 0), and the
    queue's approximate counts of waiting, in-flight and delayed messages; either one above zero counts. A doubt
    costs one crawl; a wrong "empty" would only delay an upload to the next run, never lose it (it stays in the
    inbox or the ledger)."""
    failed = retakable_failed(ledger, bucket=landing_bucket, prefix=landing_prefix)
    peeked = sqs.receive_message(QueueUrl=inbox_url, MaxNumberOfMessages=1, WaitTimeSeconds=2, VisibilityTimeout=0).get("Messages", [])
    attributes = sqs.get_queue_attributes(
        QueueUrl=inbox_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    waiting = sum(int(value) for value in attributes.values())
    return {"requested": requested, "failed": len(failed), "inbox": max(waiting, len(peeked))}


def claim_uploads(
    ledger: UploadLedger,
    *,
    sqs: Any,
    glue: Any,
    inbox_url: str,
    workflow_name: str,
    run_id: str,
    landing_bucket: str,
    landing_prefix: str,
    suffix: str = DEFAULT_SUFFIX,
) -> list[Upload]:
    """The uploads this Glue workflow run takes (`claim_pending`, in the order of the module docstring), recorded in
    the run's `CLAIMED_PROPERTY` before the inbox messages are deleted."""
    own = read_uploads(glue, workflow_name=workflow_name, run_id=run_id, name=CLAIMED_PROPERTY) or []
    requested = read_uploads(glue, workflow_name=workflow_name, run_id=run_id, name=REQUESTED_PROPERTY) or []

    def record(uploads: list[Upload]) -> None:
        put_uploads(glue, workflow_name=workflow_name, run_id=run_id, name=CLAIMED_PROPERTY, uploads=uploads)

    return claim_pending(
        ledger,
        sqs=sqs,
        inbox_url=inbox_url,
        run_id=run_id,
        execution=f"{workflow_name}/{run_id}",
        landing_bucket=landing_bucket,
        landing_prefix=landing_prefix,
        first=[*own, *requested],
        record=record,
        suffix=suffix,
    )
