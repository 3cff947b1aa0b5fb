"""What the ledger says about uploads: `status` (by state, then the failed and stuck ones), `show` (one object's
history) and `reconcile` (every object under the landing prefixes against its ledger record)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..runtime.upload_ledger import (
    FAILED,
    FINAL_STATES,
    PARTITION_KEY,
    RECEIVED,
    RUNNING,
    SORT_KEY,
    STATE_INDEX,
    STATES,
    Upload,
    from_item,
    iso_utc,
)
from ..runtime.workflow_inputs import DEFAULT_SUFFIX
from .environment import Environment, FormStack


def parse_time(text: str) -> datetime:
    """An ISO 8601 UTC timestamp as the ledger writes it (also with fractional seconds, as Step Functions does)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def console_link(environment: Environment, form: str, run: dict[str, Any]) -> str:
    """Where a run is looked at in the AWS console (the service's page of the run, or of its workflow)."""
    region = environment.region
    home = f"https://{region}.console.aws.amazon.com"
    execution = str(run.get("execution", ""))
    stack = environment.forms.get(form)
    if form == "step_functions" and execution.startswith("arn:"):
        return f"{home}/states/home?region={region}#/v2/executions/details/{execution}"
    if form == "glue_workflow" and stack is not None:
        return f"{home}/glue/home?region={region}#/v2/etl-configuration/workflows/view/{stack.outputs.get('WorkflowName', '')}"
    if form == "mwaa" and stack is not None:
        return f"{home}/mwaa/home?region={region}#environments/{stack.outputs.get('MwaaEnvironmentName', '')}"
    return f"{home}/mwaa/home?region={region}"


# --- status -------------------------------------------------------------------------------------------------------
@dataclass
class StatusReport:
    since: str
    counts: dict[str, int]
    failed: list[dict[str, Any]]
    stuck: list[dict[str, Any]]

    @property
    def needs_attention(self) -> bool:
        return bool(self.failed or self.stuck)


def _query_state(dynamodb: Any, table: str, state: str, since: str | None) -> Iterator[dict[str, Any]]:
    condition = "#state = :state" + (" AND #updated_at >= :since" if since else "")
    values: dict[str, Any] = {":state": {"S": state}}
    names = {"#state": "state"}
    if since:
        values[":since"] = {"S": since}
        names["#updated_at"] = "updated_at"
    for page in dynamodb.get_paginator("query").paginate(
        TableName=table,
        IndexName=STATE_INDEX,
        KeyConditionExpression=condition,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    ):
        for item in page.get("Items", []):
            yield from_item(item)


def _timeout_of(environment: Environment, record: dict[str, Any]) -> int | None:
    stack = environment.forms.get(str(record.get("form", "")))
    return stack.run_timeout_seconds if stack is not None else None


def stuck_reason(environment: Environment, record: dict[str, Any], now: datetime) -> str | None:
    """Why a received or running upload is stuck (older than its form's run timeout), or None when it is in flight."""
    state = record.get("state")
    timeout = _timeout_of(environment, record)
    if state not in (RECEIVED, RUNNING) or timeout is None:
        return None
    since = record.get("updated_at") or record.get("received_at")
    if not since:
        return f"{state} without a timestamp"
    age = now - parse_time(str(since))
    if age <= timedelta(seconds=timeout):
        return None
    minutes = int(age.total_seconds() // 60)
    if state == RECEIVED:
        return f"received {minutes} min ago and no run took it (run timeout {timeout} s)"
    return f"running at {record.get('step', '?')} for {minutes} min, past the run timeout of {timeout} s"


def upload_status(dynamodb: Any, environment: Environment, *, since: datetime, now: datetime, state: str | None = None) -> StatusReport:
    """Uploads updated since `since`, counted by state; every failed one of that window; every stuck one, however old."""
    states = (state,) if state else STATES
    counts: dict[str, int] = {}
    failed: list[dict[str, Any]] = []
    for name in states:
        records = list(_query_state(dynamodb, environment.ledger_table, name, iso_utc(since)))
        counts[name] = len(records)
        if name == FAILED:
            failed = sorted(records, key=lambda record: str(record.get("updated_at", "")))
    stuck = []
    for name in (RECEIVED, RUNNING):
        if state and state != name:
            continue
        for record in _query_state(dynamodb, environment.ledger_table, name, None):
            reason = stuck_reason(environment, record, now)
            if reason:
                stuck.append({**record, "stuck": reason})
    return StatusReport(since=iso_utc(since), counts=counts, failed=failed, stuck=stuck)


# --- show ---------------------------------------------------------------------------------------------------------
def upload_history(dynamodb: Any, environment: Environment, bucket: str, key: str) -> list[dict[str, Any]]:
    """Every ledger record of the object (one per version), oldest first, each run with its console link."""
    environment.form_of_key(bucket, key)
    records: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("query").paginate(
        TableName=environment.ledger_table,
        KeyConditionExpression="#object = :object",
        ExpressionAttributeNames={"#object": PARTITION_KEY},
        ExpressionAttributeValues={":object": {"S": f"s3://{bucket}/{key}"}},
        ConsistentRead=True,
    ):
        records.extend(from_item(item) for item in page.get("Items", []))
    for record in records:
        for run in record["runs"]:
            run["console"] = console_link(environment, str(run.get("form") or record.get("form", "")), run)
    return sorted(records, key=lambda record: str(record.get("received_at", "")))


# --- reconcile ----------------------------------------------------------------------------------------------------
@dataclass
class Finding:
    """An object under a landing prefix that the ledger does not account for."""

    upload: Upload
    form: str
    problem: str
    startable: bool
    """True when no run holds it and `reconcile --start` may start one (a failed upload is re-run with `rerun`)."""


@dataclass
class ReconcileReport:
    since: str
    checked: int = 0
    in_flight: int = 0
    accounted: int = 0
    findings: list[Finding] = field(default_factory=list)
    unchecked_forms: list[str] = field(default_factory=list)
    """Forms whose runs do not write the ledger: their objects cannot be checked against it."""

    @property
    def needs_attention(self) -> bool:
        return bool(self.findings)


def landing_objects(s3: Any, bucket: str, prefix: str, since: datetime) -> Iterator[tuple[Upload, datetime]]:
    """The current version of every upload under `prefix` (`*.csv`, size above zero) modified since `since`."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            if not version.get("IsLatest") or not version["Key"].endswith(DEFAULT_SUFFIX) or not version.get("Size"):
                continue
            modified = version["LastModified"]
            if modified < since:
                continue
            version_id = version.get("VersionId")
            yield (
                Upload(bucket, version["Key"], None if version_id in (None, "null") else version_id, version.get("ETag", "").strip('"')),
                modified,
            )


def _records(dynamodb: Any, table: str, uploads: list[Upload]) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for start in range(0, len(uploads), 100):
        keys = [upload.item_key() for upload in uploads[start : start + 100]]
        request: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": True}}
        while request:
            answer = dynamodb.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(table, []):
                record = from_item(item)
                found[(record[PARTITION_KEY], record[SORT_KEY])] = record
            request = answer.get("UnprocessedKeys") or {}
    return found


def reconcile(s3: Any, dynamodb: Any, environment: Environment, *, since: datetime, now: datetime) -> ReconcileReport:
    """Every upload under each ledger-writing form's prefix: loaded, quarantined, rejected or skipped (final), in
    flight (younger than the form's run timeout), or a finding."""
    report = ReconcileReport(since=iso_utc(since))
    for stack in environment.forms.values():
        if not stack.writes_ledger:
            report.unchecked_forms.append(stack.form)
            continue
        objects = list(landing_objects(s3, environment.landing_bucket, stack.landing_prefix, since))
        records = _records(dynamodb, environment.ledger_table, [upload for upload, _ in objects])
        for upload, modified in objects:
            report.checked += 1
            verdict, problem, startable = _verdict(environment, stack, upload, modified, records.get((upload.uri, upload.version)), now)
            if verdict == ACCOUNTED:
                report.accounted += 1
            elif verdict == IN_FLIGHT:
                report.in_flight += 1
            else:
                report.findings.append(Finding(upload, stack.form, problem, startable))
    return report


ACCOUNTED, IN_FLIGHT, NOT_ACCOUNTED = "accounted", "in_flight", "not_accounted"


def _verdict(
    environment: Environment, stack: FormStack, upload: Upload, modified: datetime, record: dict[str, Any] | None, now: datetime
) -> tuple[str, str, bool]:
    """(verdict, problem, startable) of one upload."""
    young = now - modified <= timedelta(seconds=stack.run_timeout_seconds)
    if record is None:
        if young:
            return IN_FLIGHT, "", False
        return NOT_ACCOUNTED, "no ledger record: no run started for it (its event was lost or is in a dead-letter queue)", True
    state = record.get("state")
    if state in FINAL_STATES:
        return ACCOUNTED, "", False
    if state == FAILED:
        return NOT_ACCOUNTED, f"failed at {record.get('step', '?')}: {record.get('error', '')} (pipeline-ops rerun {upload.uri})", False
    reason = stuck_reason(environment, record, now)
    if reason is None:
        return IN_FLIGHT, "", False
    return NOT_ACCOUNTED, reason, state == RECEIVED


def latest_upload(s3: Any, bucket: str, key: str, version_id: str | None = None) -> Upload:
    """The object's current version (or the one named) as the ledger keys it."""
    answer = s3.head_object(Bucket=bucket, Key=key, **({"VersionId": version_id} if version_id else {}))
    found = answer.get("VersionId")
    found = None if found in (None, "null") else found
    return Upload(bucket, key, found, str(answer.get("ETag", "")).strip('"'))
