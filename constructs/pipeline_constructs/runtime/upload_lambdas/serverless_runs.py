"""Starting an MWAA Serverless run for an upload, holding the upload in the ledger first: the trigger Lambda starts
runs this way, and `pipeline-ops` can (rerun, reconcile --start), so every run of the form owns its ledger record.

The run id is chosen here, not by the service: the workflow takes it as its `run_id` parameter, and the clean job
(--run_id), the curated prefix and the load SQL use it, so the ledger's run id is known before the run starts. The
trigger derives it from the object version (`upload_events.dag_run_id`): a repeated message takes the same record for
the same run (`UploadLedger.start` is idempotent for one run id) and sends the same ClientToken, so a crash between
the ledger write and StartWorkflowRun, or after it, starts exactly one run when the message comes back.

boto3 clients are passed in (no client is made at import): pipeline-ops imports this module too.
"""

from __future__ import annotations

import logging
from typing import Any

try:
    from pipeline_constructs.runtime.pipeline_plan import CRAWL
    from pipeline_constructs.runtime.upload_lambdas.upload_events import UploadedObject, run_parameters
    from pipeline_constructs.runtime.upload_ledger import RECEIVED, RUNNING, Upload, UploadLedger, attribute_names
except ImportError:  # in Lambda: the asset folder is the top level
    from pipeline_plan import CRAWL  # type: ignore[import-not-found,no-redef]
    from upload_events import UploadedObject, run_parameters  # type: ignore[import-not-found,no-redef]
    from upload_ledger import (  # type: ignore[import-not-found,no-redef]
        RECEIVED,
        RUNNING,
        Upload,
        UploadLedger,
        attribute_names,
    )

logger = logging.getLogger(__name__)

FORM_NAME = "mwaa_serverless"
RUN_ID_PARAMETER = "run_id"
NOT_STARTED = "(not started yet)"
"""The run's `execution` between the ledger write and StartWorkflowRun's answer (then the service's RunId)."""


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
    if ledger is not None:
        ledger.start(upload, run_id=run_id, execution=NOT_STARTED, step=CRAWL, force=force)
    answer = service.start_workflow_run(
        WorkflowArn=workflow_arn, ClientToken=client_token, OverrideParameters=workflow_run_parameters(obj, run_id)
    )
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
