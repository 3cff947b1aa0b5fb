"""Starting an MWAA Serverless run for an upload, holding the upload in the ledger first: the trigger Lambda starts
runs this way, and `pipeline-ops` can (rerun, reconcile --start), so every run of the form owns its ledger record.

The run id is chosen here, not by the service: the workflow takes it as its `run_id` parameter, and the clean job
(--run_id), the curated prefix and the load SQL use it, so the ledger's run id is known before the run starts. The
trigger derives it from the object version (`upload_events.dag_run_id`): a repeated message takes the same record for
the same run (`UploadLedger.start` is idempotent for one run id) and sends the same ClientToken, so a crash between
the ledger write and StartWorkflowRun, or after it, starts exactly one run when the message comes back.

Run counts: the form's Lambdas print one CloudWatch embedded-metric-format (EMF) line per run outcome
(`run_metric_line`): RUNS_SUCCEEDED or RUNS_FAILED = 1 in the clean job's metrics namespace, dimensions Dataset and
WorkflowName, the run ids and the object as properties. Lambda sends stdout to the function's log group, and CloudWatch
Logs turns the line into the metric: no PutMetricData call, no permission. With a ledger a run is counted once:
`claim_run_count` marks the run's map (`counted`: the service run id) with a conditional write first, and a repeated
event finds it marked.

boto3 clients are passed in (no client is made at import): pipeline-ops imports this module too, and so does the
form's construct (the metric names and dimensions).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

try:
    from pipeline_constructs.runtime.pipeline_plan import CRAWL
    from pipeline_constructs.runtime.upload_lambdas.upload_events import UploadedObject, run_parameters
    from pipeline_constructs.runtime.upload_ledger import RECEIVED, RUNNING, Upload, UploadLedger, attribute_names, loaded_targets
except ImportError:  # in Lambda: the asset folder is the top level
    from pipeline_plan import CRAWL  # type: ignore[import-not-found,no-redef]
    from upload_events import UploadedObject, run_parameters  # type: ignore[import-not-found,no-redef]
    from upload_ledger import (  # type: ignore[import-not-found,no-redef]
        RECEIVED,
        RUNNING,
        Upload,
        UploadLedger,
        attribute_names,
        loaded_targets,
    )

logger = logging.getLogger(__name__)

FORM_NAME = "mwaa_serverless"
RUN_ID_PARAMETER = "run_id"
LOADED_TARGETS_PARAMETER = "loaded_targets"
"""A workflow with two load targets: the targets the ledger shows loaded (comma-separated), whose loads the run skips
(runtime/mwaa_serverless/workflow_yaml.py). Passed only when there is one, so a one-target workflow's parameters stay
as they were."""
NOT_STARTED = "(not started yet)"
"""The run's `execution` between the ledger write and StartWorkflowRun's answer (then the service's RunId)."""
RUNS_SUCCEEDED, RUNS_FAILED = "RunsSucceeded", "RunsFailed"
"""The metrics a run's outcome is counted in (one EMF line each: `run_metric_line`)."""
DATASET_DIMENSION, WORKFLOW_DIMENSION = "Dataset", "WorkflowName"
"""Their dimensions: the dataset and the MWAA Serverless workflow's name (as the Glue Workflow form's run count)."""
COUNTED = "counted"
"""The field of a run's map in the ledger that says its outcome was counted (the service run id)."""


def upload_of(obj: UploadedObject) -> Upload:
    return Upload(obj["bucket"], obj["key"], version_id=obj["version_id"] or None)


def workflow_run_parameters(obj: UploadedObject, run_id: str) -> dict[str, str]:
    """The run's parameters: the object (bucket, key, version_id) and the run id its tasks use."""
    return {**run_parameters(obj), RUN_ID_PARAMETER: run_id}


def repeated_event(record: dict[str, Any] | None, run_id: str) -> str | None:
    """Why an upload event must start no run (another run holds the upload, or it has ended: recovering an ended upload
    is `pipeline-ops rerun`'s), or None when the trigger may take it (new, received, or already this run's)."""
    if record is None or record.get("state") == RECEIVED:
        return None
    if record.get("state") == RUNNING and record.get("owner") == run_id:
        return None
    owner = record.get("owner")
    return f"the ledger holds it {record.get('state')}" + (f" by run {owner}" if owner else "")


def start_upload_run(
    service: Any,
    workflow_arn: str,
    obj: UploadedObject,
    *,
    run_id: str,
    client_token: str,
    ledger: UploadLedger | None,
    force: bool = False,
) -> str:
    """Take the upload for `run_id` (LedgerConflict when the ledger refuses: nothing is started), start the run, and
    record the service's RunId as the run's execution. Returns that RunId; raises ClientError or BotoCoreError."""
    upload = upload_of(obj)
    parameters = workflow_run_parameters(obj, run_id)
    if ledger is not None:
        record = ledger.start(upload, run_id=run_id, execution=NOT_STARTED, step=CRAWL, force=force)
        loaded = loaded_targets(record)
        if loaded:  # a re-run of an upload loaded into some targets: the run loads only the others
            parameters[LOADED_TARGETS_PARAMETER] = ",".join(loaded)
    answer = service.start_workflow_run(WorkflowArn=workflow_arn, ClientToken=client_token, OverrideParameters=parameters)
    service_run_id = str(answer["RunId"])
    logger.info("run %s (service run %s, %s) of %s for %s", run_id, service_run_id, answer.get("Status"), workflow_arn, upload.uri)
    if ledger is not None:
        record_execution(ledger, upload, run_id=run_id, execution=service_run_id)
    return service_run_id


def record_execution(ledger: UploadLedger, upload: Upload, *, run_id: str, execution: str) -> None:
    """Write the service's run id into the run's map while the run owns the record. Refused (the run has ended the
    upload already), the record keeps what it has: logged, not raised (the run is started; this is its label)."""
    expression = {"UpdateExpression": "SET #run.#execution = :execution", "ConditionExpression": "#owner = :run_id"}
    try:
        ledger.client.update_item(
            TableName=ledger.table_name,
            Key=upload.item_key(),
            UpdateExpression=expression["UpdateExpression"],
            ConditionExpression=expression["ConditionExpression"],
            ExpressionAttributeNames=attribute_names(expression, run_id),
            ExpressionAttributeValues={":execution": {"S": execution}, ":run_id": {"S": run_id}},
        )
    except ledger.client.exceptions.ConditionalCheckFailedException:
        logger.warning("%s: run %s no longer holds the record; its execution %s is not written", upload.uri, run_id, execution)


# --- run counts -------------------------------------------------------------------------------------------------------
def run_metric_line(
    metric: str,
    *,
    namespace: str,
    dataset: str,
    workflow_name: str,
    properties: dict[str, Any] | None = None,
    timestamp_ms: int | None = None,
) -> str:
    """One embedded-metric-format line: `metric` = 1 (Count) in `namespace`, dimensions Dataset and WorkflowName;
    `properties` (run ids, object, outcome) ride along as fields that are no dimension (searchable in Logs Insights)."""
    if metric not in (RUNS_SUCCEEDED, RUNS_FAILED):
        raise ValueError(f"metric={metric!r}: the form counts {RUNS_SUCCEEDED} and {RUNS_FAILED}")
    extra = {
        name: value for name, value in (properties or {}).items() if name not in (DATASET_DIMENSION, WORKFLOW_DIMENSION, metric, "_aws")
    }
    document = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [[DATASET_DIMENSION, WORKFLOW_DIMENSION]],
                    "Metrics": [{"Name": metric, "Unit": "Count"}],
                }
            ],
        },
        DATASET_DIMENSION: dataset,
        WORKFLOW_DIMENSION: workflow_name,
        metric: 1,
        **extra,
    }
    return json.dumps(document, sort_keys=True, default=str)


def claim_run_count(ledger: UploadLedger, upload: Upload, *, run_id: str, service_run_id: str) -> bool:
    """Mark the run's map `counted` (the service run id) unless it is marked for that service run already: True when
    this call marked it (count the outcome now), False when it was marked (a repeated event: counted before). Raises
    LookupError when the record holds no map for the run (nothing to mark), ClientError or BotoCoreError otherwise."""
    expression = {
        "UpdateExpression": "SET #run.#counted = :service_run",
        "ConditionExpression": "attribute_exists(#run) AND (attribute_not_exists(#run.#counted) OR #run.#counted <> :service_run)",
    }
    try:
        ledger.client.update_item(
            TableName=ledger.table_name,
            Key=upload.item_key(),
            UpdateExpression=expression["UpdateExpression"],
            ConditionExpression=expression["ConditionExpression"],
            ExpressionAttributeNames=attribute_names(expression, run_id),
            ExpressionAttributeValues={":service_run": {"S": service_run_id}},
        )
    except ledger.client.exceptions.ConditionalCheckFailedException:
        record = ledger.get(upload)
        entry = next((run for run in (record or {}).get("runs", []) if run["run_id"] == run_id), None)
        if entry is None:
            raise LookupError(f"{upload.uri} (version {upload.version}): the ledger holds no run {run_id}") from None
        return False
    return True
