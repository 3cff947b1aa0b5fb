"""The MWAA Serverless form's Lambdas (this folder, with upload_ledger.py and pipeline_plan.py beside it, is their
asset). With LEDGER_TABLE set they keep the upload ledger, through what the service's events allow (it ignores DAG
callbacks, and its operators cannot write DynamoDB):

`start`: SQS (EventBridge S3 `Object Created` events) -> take the upload in the ledger at `crawl` for the run id
derived from the object version -> `StartWorkflowRun` (the object and that run id as the run's parameters, a
ClientToken derived from the object: the service answers a repeated token with the run it already started) -> the
service's RunId as the run's execution (serverless_runs.py). A repeated event for an upload another run holds or
that has ended starts nothing and is not an error. Any other error fails that message only (partial batch response):
SQS retries it and then keeps it in the dead-letter queue (alarmed); a malformed message fails the same way.

`record_progress`: the service's events of this workflow's runs -> the run count and the ledger. `MWAA Serverless
Workflow Run Succeeded` is counted (RunsSucceeded, below), with a ledger or without one. With a ledger, `MWAA
Serverless Task Running` of a later step records that step (the run reached it); the success records the steps the
run's task instances show it reached, then `loaded` when the load task succeeded, or
`pipeline_plan.outcome_without_load(rows_quarantined)` when the rows check skipped it (the clean job curated no
row). A repeated or late event finds the record ended (or at a later step) and writes nothing.

`report_failure`: run-failed, timed-out and stopped events -> the run looked up (GetWorkflowRun: the object and its
run id; ListTaskInstances + GetTaskInstance: the failed task and its error) -> one SNS message with the fields every
form sends (pipeline, object, run_id, failed_step, error, cause, execution) -> the ledger records `failed` at that
task's step. A record that already shows this run failed means a repeated event: no second message. A refused or
failed ledger write never stops the message. If a lookup fails it still publishes what the event says.

Two load targets (one load task each, `load_athena`, `load_redshift`): the success and the failure record each target's
outcome (`load_<target>`) from its task (success: loaded; failed or timed out: failed); the run failed at a target's
load is recorded with error LoadFailed and a cause naming it ("load into redshift failed: ..."). A later run of the
upload is told which targets are loaded (serverless_runs.LOADED_TARGETS_PARAMETER) and loads only the others.

Run counts (`count_run`): each run outcome prints one embedded-metric-format line (serverless_runs.run_metric_line):
RunsSucceeded from `record_progress`, RunsFailed from `report_failure` (failed, timed-out and stopped runs), in
METRICS_NAMESPACE with dimensions Dataset (DATASET) and WorkflowName (WORKFLOW_NAME); CloudWatch Logs makes the metric
from the function's log, so the form's alarms and `metric_runs_*` count what the runs record, not EventBridge's
best-effort MatchedEvents. With a ledger the run's map is marked counted first (a conditional write), so a repeated
event is not counted again, even one delivered after the Lambda stopped between its writes; without a ledger, or for
a run the ledger holds no record of, every delivery is counted (EventBridge delivers at least once: a rare repeat
counts twice; the line carries the service run id to tell).

Environment: WORKFLOW_ARN, METRICS_NAMESPACE, DATASET, WORKFLOW_NAME; TOPIC_ARN for `report_failure`; LEDGER_TABLE and
LEDGER_TTL_DAYS with a ledger.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

try:
    from pipeline_constructs.runtime.pipeline_plan import LOAD, describe_pipeline, outcome_without_load
    from pipeline_constructs.runtime.upload_lambdas.serverless_runs import (
        FORM_NAME,
        RUN_ID_PARAMETER,
        RUNS_FAILED,
        RUNS_SUCCEEDED,
        claim_run_count,
        repeated_event,
        run_metric_line,
        start_upload_run,
    )
    from pipeline_constructs.runtime.upload_lambdas.upload_events import (
        BatchItemFailure,
        BatchResponse,
        MalformedEvent,
        SqsEvent,
        UploadedObject,
        client_token,
        dag_run_id,
        uploaded_object,
    )
    from pipeline_constructs.runtime.upload_ledger import FAILED, LOADED, RUNNING, TARGET_NAMES, LedgerConflict, Upload, UploadLedger
except ImportError:  # in Lambda: the asset folder is the top level
    from pipeline_plan import LOAD, describe_pipeline, outcome_without_load  # type: ignore[import-not-found,no-redef]
    from serverless_runs import (  # type: ignore[import-not-found,no-redef]
        FORM_NAME,
        RUN_ID_PARAMETER,
        RUNS_FAILED,
        RUNS_SUCCEEDED,
        claim_run_count,
        repeated_event,
        run_metric_line,
        start_upload_run,
    )
    from upload_events import (  # type: ignore[import-not-found,no-redef]
        BatchItemFailure,
        BatchResponse,
        MalformedEvent,
        SqsEvent,
        UploadedObject,
        client_token,
        dag_run_id,
        uploaded_object,
    )
    from upload_ledger import (  # type: ignore[import-not-found,no-redef]
        FAILED,
        LOADED,
        RUNNING,
        TARGET_NAMES,
        LedgerConflict,
        Upload,
        UploadLedger,
    )

logger = logging.getLogger()
logger.setLevel(logging.INFO)

mwaa_serverless = boto3.client("mwaa-serverless")
sns = boto3.client("sns")
dynamodb = boto3.client("dynamodb")

FAILED_TASK_STATES = ("FAILED", "TIMEOUT")
STARTED_TASK_STATES = ("RUNNING", "SUCCESS", "FAILED", "TIMEOUT", "UP_FOR_RETRY", "UP_FOR_RESCHEDULE", "DEFERRED", "RESTARTING")
"""Task instance states of a task that began (the run reached its step)."""
STEPS = tuple(step.name for step in describe_pipeline())
TARGET_TASKS = {f"{LOAD}_{target}": target for target in TARGET_NAMES}
"""The load task of each target in a workflow with two targets (runtime/mwaa/pipeline_steps.load_task_id)."""
LOAD_FAILED = "LoadFailed"
TASK_RUNNING_DETAIL_TYPE = "MWAA Serverless Task Running"
RUN_SUCCEEDED_DETAIL_TYPE = "MWAA Serverless Workflow Run Succeeded"


def open_ledger() -> UploadLedger | None:
    """The form's ledger (LEDGER_TABLE, LEDGER_TTL_DAYS), or None when the form keeps none."""
    table = os.environ.get("LEDGER_TABLE")
    if not table:
        return None
    return UploadLedger(dynamodb, table, form=FORM_NAME, ttl_days=int(os.environ.get("LEDGER_TTL_DAYS") or 0))


def start_run(workflow_arn: str, obj: UploadedObject, ledger: UploadLedger | None = None) -> str | None:
    """Take the upload and start its run; returns the service's run id, or None when the event is a repeat the ledger
    refuses. Raises ClientError or BotoCoreError on any other failure."""
    run_id = dag_run_id(obj)
    if ledger is not None:
        upload = Upload(obj["bucket"], obj["key"], version_id=obj["version_id"] or None)
        reason = repeated_event(ledger.get(upload), run_id)
        if reason is not None:
            logger.info(
                "%s (version %s): %s; no run started (`pipeline-ops rerun` recovers a failed one)", upload.uri, upload.version, reason
            )
            return None
    try:
        return start_upload_run(mwaa_serverless, workflow_arn, obj, run_id=run_id, client_token=client_token(obj), ledger=ledger)
    except LedgerConflict as conflict:
        logger.info("%s; no run started", conflict)
        return None


def start(event: SqsEvent, context: Any) -> BatchResponse:
    workflow_arn = os.environ["WORKFLOW_ARN"]
    ledger = open_ledger()
    failures: list[BatchItemFailure] = []
    started: dict[str, str] = {}
    for record in event.get("Records", []):
        message_id = record["messageId"]
        try:
            obj = uploaded_object(record["body"])
            token = client_token(obj)
            if token in started:
                logger.info("message %s: same object as message %s in this batch; no second run", message_id, started[token])
                continue
            start_run(workflow_arn, obj, ledger)
            started[token] = message_id
        except MalformedEvent as error:
            logger.error("message %s: %s; it goes to the dead-letter queue after its retries", message_id, error)
            failures.append({"itemIdentifier": message_id})
        except (ClientError, BotoCoreError) as error:
            logger.error("message %s: starting the run failed: %s", message_id, error)
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


# --- the run, as the service shows it ------------------------------------------------------------------------------


def _detail_value(detail: dict[str, Any], *names: str) -> str | None:
    # The service does not document the detail's field names; accept the usual spellings.
    for name in names:
        value = detail.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _detail(event: dict[str, Any]) -> dict[str, Any]:
    raw = event.get("detail")
    return raw if isinstance(raw, dict) else {}


def event_run_id(event: dict[str, Any]) -> str | None:
    """The service's run id an event names."""
    return _detail_value(_detail(event), "runId", "RunId", "run_id")


@dataclass
class TaskInstance:
    task_id: str
    status: str
    error: str | None = None


@dataclass
class WorkflowRun:
    """A run's parameters (the upload and its ledger run id) and, when read, its task instances."""

    service_run_id: str
    parameters: dict[str, Any]
    error: str | None = None
    tasks: list[TaskInstance] = field(default_factory=list)

    @property
    def upload(self) -> Upload | None:
        bucket, key = self.parameters.get("bucket"), self.parameters.get("key")
        if not bucket or not key:
            return None
        return Upload(str(bucket), str(key), version_id=str(self.parameters.get("version_id") or "") or None)

    @property
    def run_id(self) -> str | None:
        """The run id the run's tasks and the ledger use (None for a run started without one)."""
        return str(self.parameters.get(RUN_ID_PARAMETER) or "") or None

    def reached(self) -> list[str]:
        """The plan's steps whose task began, in the plan's order (the rows check is no step: a run that failed there
        reached clean)."""
        began = {LOAD if task.task_id in TARGET_TASKS else task.task_id for task in self.tasks if task.status in STARTED_TASK_STATES}
        return [step for step in STEPS if step in began]

    def target_outcomes(self) -> dict[str, str]:
        """Two targets: the outcome of each target whose load task ended (loaded, or failed); empty with one target."""
        outcomes: dict[str, str] = {}
        for task in self.tasks:
            target = TARGET_TASKS.get(task.task_id)
            if target is not None and task.status == "SUCCESS":
                outcomes[target] = LOADED
            elif target is not None and task.status in FAILED_TASK_STATES:
                outcomes[target] = FAILED
        return outcomes

    def status_of(self, task_id: str) -> set[str]:
        return {task.status for task in self.tasks if task.task_id == task_id}

    def failed_task(self) -> TaskInstance | None:
        return next((task for task in self.tasks if task.status in FAILED_TASK_STATES), None)


def look_up_run(workflow_arn: str, service_run_id: str, *, with_tasks: bool = True) -> WorkflowRun:
    """GetWorkflowRun, and with `with_tasks` every task instance (ListTaskInstances, GetTaskInstance for each: the
    listing names no task id)."""
    answer = mwaa_serverless.get_workflow_run(WorkflowArn=workflow_arn, RunId=service_run_id)
    run = WorkflowRun(service_run_id, dict(answer.get("OverrideParameters") or {}), answer.get("RunDetail", {}).get("ErrorMessage"))
    if not with_tasks:
        return run
    kwargs: dict[str, Any] = {"WorkflowArn": workflow_arn, "RunId": service_run_id}
    while True:
        page = mwaa_serverless.list_task_instances(**kwargs)
        for summary in page.get("TaskInstances", []):
            task = mwaa_serverless.get_task_instance(
                WorkflowArn=workflow_arn, RunId=service_run_id, TaskInstanceId=summary["TaskInstanceId"]
            )
            status = str(task.get("Status") or summary.get("Status") or "NONE")
            run.tasks.append(TaskInstance(str(task.get("TaskId") or summary["TaskInstanceId"]), status, task.get("ErrorMessage")))
        if not page.get("NextToken"):
            return run
        kwargs["NextToken"] = page["NextToken"]


# --- run counts ------------------------------------------------------------------------------------------------------

METRICS_ENVIRONMENT = ("METRICS_NAMESPACE", "DATASET", "WORKFLOW_NAME")


def count_run(
    metric: str,
    service_run_id: str | None,
    *,
    outcome: str,
    run: WorkflowRun | None = None,
    ledger: UploadLedger | None = None,
    raise_on_ledger_error: bool = True,
) -> bool:
    """Print the EMF line that counts one run outcome (`metric`: RUNS_SUCCEEDED or RUNS_FAILED), unless the ledger shows
    this service run counted already. Returns True when it printed the line. With a ledger and a run it holds, the
    run's map is marked first (serverless_runs.claim_run_count); a ledger error raises with `raise_on_ledger_error`
    (the invocation is retried and the retry counts it), otherwise it is logged and the run counted (at least once)."""
    namespace, dataset, workflow_name = (os.environ.get(name) for name in METRICS_ENVIRONMENT)
    if not (namespace and dataset and workflow_name):
        logger.error("%s are not all set: the %s run %s is not counted", ", ".join(METRICS_ENVIRONMENT), outcome, service_run_id)
        return False
    upload, run_id = (run.upload, run.run_id) if run is not None else (None, None)
    if ledger is not None and upload is not None and run_id is not None and service_run_id is not None:
        try:
            if not claim_run_count(ledger, upload, run_id=run_id, service_run_id=service_run_id):
                logger.info("%s: service run %s (run %s) is counted already: a repeated event", upload.uri, service_run_id, run_id)
                return False
        except LookupError as missing:
            logger.info("%s: counted without the ledger's mark", missing)
        except (ClientError, BotoCoreError) as error:
            if raise_on_ledger_error:
                raise
            logger.error("%s: marking run %s counted failed (%s); counted anyway", upload.uri, run_id, error)
    properties = {
        "Form": FORM_NAME,
        "Outcome": outcome,
        "ServiceRunId": service_run_id,
        "RunId": run_id,
        "Object": upload.uri if upload is not None else None,
        "VersionId": upload.version_id if upload is not None else None,
    }
    line = run_metric_line(
        metric,
        namespace=namespace,
        dataset=dataset,
        workflow_name=workflow_name,
        properties={name: value for name, value in properties.items() if value is not None},
    )
    print(line, flush=True)  # stdout -> the function's log group -> the metric (EMF)
    return True


# --- the ledger ------------------------------------------------------------------------------------------------------


def advance_steps(ledger: UploadLedger, upload: Upload, run_id: str, record: dict[str, Any], reached: list[str]) -> dict[str, Any]:
    """Record each step the run reached after the record's step, in order (events may have been late or lost)."""
    current = str(record.get("step") or "")
    position = STEPS.index(current) if current in STEPS else -1
    for step in reached:
        if STEPS.index(step) > position:
            record = ledger.step(upload, run_id=run_id, step=step)
            position = STEPS.index(step)
    return record


def _owned(record: dict[str, Any] | None, run_id: str) -> bool:
    return record is not None and record.get("state") == RUNNING and record.get("owner") == run_id


def record_progress(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge target (task-running and run-succeeded events): the step reached, or the run's outcome, and a
    success is counted (RunsSucceeded). Raises when a lookup or a write fails (the invocation is retried, then kept by
    the function's failure destination)."""
    ledger = open_ledger()
    service_run_id = event_run_id(event)
    detail_type = str(event.get("detail-type", ""))
    if detail_type not in (TASK_RUNNING_DETAIL_TYPE, RUN_SUCCEEDED_DETAIL_TYPE):
        raise ValueError(
            f"detail-type {detail_type!r}: record_progress takes {TASK_RUNNING_DETAIL_TYPE!r} and {RUN_SUCCEEDED_DETAIL_TYPE!r}"
        )
    if ledger is None or service_run_id is None:
        counted = detail_type == RUN_SUCCEEDED_DETAIL_TYPE and count_run(RUNS_SUCCEEDED, service_run_id, outcome="Succeeded")
        if service_run_id is None:
            logger.warning("nothing to record: the event names no run (%s)", sorted(_detail(event)))
        return {"recorded": None, "counted": counted}
    workflow_arn = os.environ["WORKFLOW_ARN"]
    if detail_type == TASK_RUNNING_DETAIL_TYPE:
        return _record_task_running(ledger, workflow_arn, service_run_id, event)
    return _record_success(ledger, workflow_arn, service_run_id)


def _task_id_of(event: dict[str, Any], workflow_arn: str, service_run_id: str) -> str | None:
    detail = _detail(event)
    task_id = _detail_value(detail, "taskId", "TaskId", "task_id")
    instance = _detail_value(detail, "taskInstanceId", "TaskInstanceId", "task_instance_id")
    if task_id is None and instance is not None:
        task_id = mwaa_serverless.get_task_instance(WorkflowArn=workflow_arn, RunId=service_run_id, TaskInstanceId=instance).get("TaskId")
    return task_id


def _record_task_running(ledger: UploadLedger, workflow_arn: str, service_run_id: str, event: dict[str, Any]) -> dict[str, Any]:
    task_id = _task_id_of(event, workflow_arn, service_run_id)
    if task_id in TARGET_TASKS:  # one target's load: the run reached the load step
        task_id = LOAD
    if task_id not in STEPS[1:]:  # the first step is taken by the trigger; the rows check is no step
        return {"recorded": None, "task": task_id}
    run = look_up_run(workflow_arn, service_run_id, with_tasks=False)
    upload, run_id = run.upload, run.run_id
    if upload is None or run_id is None:
        logger.warning(
            "service run %s has no object or run id in its parameters (%s): not a run the ledger holds", service_run_id, run.parameters
        )
        return {"recorded": None, "task": task_id}
    record = ledger.get(upload)
    if not _owned(record, run_id):
        logger.info(
            "%s: run %s does not hold the record (%s): a late event, nothing written", upload.uri, run_id, (record or {}).get("state")
        )
        return {"recorded": None, "task": task_id}
    try:
        record = advance_steps(ledger, upload, run_id, record or {}, [step for step in STEPS if STEPS.index(step) <= STEPS.index(task_id)])
    except LedgerConflict as conflict:
        logger.info("%s: the run ended meanwhile; nothing written", conflict)
        return {"recorded": None, "task": task_id}
    return {"recorded": record.get("step"), "object": upload.uri, "run_id": run_id}


def _record_success(ledger: UploadLedger, workflow_arn: str, service_run_id: str) -> dict[str, Any]:
    run = look_up_run(workflow_arn, service_run_id)
    upload, run_id = run.upload, run.run_id
    # Counted first, once per service run (the run's map is marked): a retry after a failed write below, or a repeated
    # event, finds it marked and counts nothing.
    counted = count_run(RUNS_SUCCEEDED, service_run_id, outcome="Succeeded", run=run, ledger=ledger)
    if upload is None or run_id is None:
        logger.warning(
            "service run %s has no object or run id in its parameters (%s): not a run the ledger holds", service_run_id, run.parameters
        )
        return {"recorded": None, "counted": counted}
    record = ledger.get(upload)
    if not _owned(record, run_id):
        # Repeated (the record is ended) or the clean job ended it itself (a file rejected as a whole).
        logger.info("%s: run %s does not hold the record (%s); nothing written", upload.uri, run_id, (record or {}).get("state"))
        return {"recorded": None, "object": upload.uri, "run_id": run_id, "counted": counted}
    assert record is not None
    record = advance_steps(ledger, upload, run_id, record, run.reached())
    targets = record_target_outcomes(ledger, run)
    if "SUCCESS" in run.status_of(LOAD) or LOADED in targets.values() or _skipped_as_loaded(run):
        outcome = LOADED
    else:
        rows_out, quarantined = record.get("rows_out"), record.get("rows_quarantined")
        if rows_out is None or int(rows_out) > 0:
            raise RuntimeError(
                f"{upload.uri} (run {run_id}, service run {service_run_id}): the run succeeded without its load task succeeding, "
                f"but the ledger has rows_out={rows_out!r} from the clean job (expected 0): the outcome is not written; "
                "look at the run's tasks in the console, then `pipeline-ops rerun`"
            )
        outcome = outcome_without_load(int(quarantined or 0))
    record = ledger.finish(upload, run_id=run_id, outcome=outcome)
    logger.info("%s: run %s ended it %s at %s", upload.uri, run_id, outcome, record.get("step"))
    return {"recorded": outcome, "object": upload.uri, "run_id": run_id, "step": record.get("step"), "counted": counted}


# --- failure reports ---------------------------------------------------------------------------------------------


def failure_message(event: dict[str, Any], workflow_arn: str) -> tuple[dict[str, Any], WorkflowRun | None]:
    """The SNS message for one run-failed, timed-out or stopped event, and the run as looked up (None when it could
    not be)."""
    detail = _detail(event)
    service_run_id = event_run_id(event)
    state = str(event.get("detail-type", "")).removeprefix("MWAA Serverless Workflow Run ") or None
    message: dict[str, Any] = {
        "pipeline": FORM_NAME,
        "object": None,
        "version_id": None,
        "run_id": service_run_id,
        "failed_step": None,
        "error": f"WorkflowRun{state}" if state else "WorkflowRunFailed",
        "cause": _detail_value(detail, "errorMessage", "ErrorMessage", "message"),
        "execution": service_run_id,
        "workflow_arn": workflow_arn,
    }
    if service_run_id is None:
        message["cause"] = f"the event names no run (detail keys: {sorted(detail)})"
        return message, None
    try:
        run = look_up_run(workflow_arn, service_run_id)
    except (ClientError, BotoCoreError) as error:
        logger.error("run %s: looking up the run failed: %s", service_run_id, error)
        message["cause"] = f"{message['cause'] or 'unknown'} (the run could not be looked up: {error})"
        return message, None
    if run.upload is not None:
        message["object"] = run.upload.uri
        message["version_id"] = run.upload.version_id
    message["run_id"] = run.run_id or service_run_id
    failed = run.failed_task()
    reached = run.reached()
    message["failed_step"] = failed.task_id if failed else (reached[-1] if reached else None)
    message["cause"] = (failed.error if failed else None) or run.error or message["cause"]
    failed_targets = [target for target, outcome in run.target_outcomes().items() if outcome == FAILED]
    if failed_targets:  # two targets: the message and the ledger name the target that failed
        message["error"] = LOAD_FAILED
        message["cause"] = "; ".join(f"load into {target} failed: {message['cause'] or 'no error given'}" for target in failed_targets)
    return message, run


def record_target_outcomes(ledger: UploadLedger, run: WorkflowRun) -> dict[str, str]:
    """Two targets: write each ended target load's outcome (`load_<target>`) while the run holds the record."""
    outcomes = run.target_outcomes()
    upload, run_id = run.upload, run.run_id
    if upload is None or run_id is None:
        return outcomes
    for target, outcome in outcomes.items():
        ledger.target(upload, run_id=run_id, target=target, outcome=outcome)
    return outcomes


def _skipped_as_loaded(run: WorkflowRun) -> bool:
    """Two targets: every target load was skipped because the run was told its target is loaded (a re-run of an
    upload already loaded into both)."""
    loaded = set(str(run.parameters.get("loaded_targets") or "").split(","))
    present = {TARGET_TASKS[task.task_id] for task in run.tasks if task.task_id in TARGET_TASKS}
    return bool(present) and present <= loaded


def already_reported(ledger: UploadLedger, run: WorkflowRun) -> bool:
    """True when the ledger shows this run failed: its failure was recorded after its message went out, so this event
    is a repeat. A lookup that fails counts as not reported (the message goes out: at least once, never lost)."""
    upload, run_id = run.upload, run.run_id
    if upload is None or run_id is None:
        return False
    try:
        record = ledger.get(upload)
    except (ClientError, BotoCoreError) as error:
        logger.error("%s: reading the ledger failed (%s); reporting the failure of run %s", upload.uri, error, run_id)
        return False
    if record is None or record.get("state") != FAILED:
        return False
    return any(entry["run_id"] == run_id and entry.get("outcome") == FAILED for entry in record["runs"])


def record_failure(ledger: UploadLedger, run: WorkflowRun, message: dict[str, Any]) -> dict[str, Any] | None:
    """Record the run `failed` at the last step it reached (steps a late or lost event did not record first). Returns
    the record, or None when there is nothing to write or the write failed (logged: the message is out already)."""
    upload, run_id = run.upload, run.run_id
    if upload is None or run_id is None:
        logger.warning("service run %s has no object or run id in its parameters: the ledger holds no record of it", run.service_run_id)
        return None
    try:
        record = ledger.get(upload)
        if _owned(record, run_id):
            advance_steps(ledger, upload, run_id, record or {}, run.reached())
            record_target_outcomes(ledger, run)
        return ledger.fail(upload, run_id=run_id, error=str(message["error"]), cause=str(message["cause"] or ""))
    except LedgerConflict as conflict:
        logger.warning("%s; its failure was reported, not recorded", conflict)
    except (ClientError, BotoCoreError) as error:
        logger.error("%s: the ledger did not record the failure of run %s (%s); it was reported", upload.uri, run_id, error)
    return None


def report_failure(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge target: one message per failed run, then the ledger's `failed`. A repeated event finds the record
    failed by this run and sends nothing. The message goes out before the record is written: a topic that refuses
    it raises (the invocation is retried, then kept by the function's failure destination, alarmed, and
    `pipeline-ops replay-dead-letters` invokes it again), and that retry still sends it, since nothing was recorded.
    A second message is possible only when two deliveries of one event run at once, or the function stops between
    the message and the write."""
    workflow_arn = os.environ["WORKFLOW_ARN"]
    message, run = failure_message(event, workflow_arn)
    ledger = open_ledger()
    # Counted first, once per service run with a ledger (the run's map is marked); a ledger error counts it anyway.
    state = str(event.get("detail-type", "")).removeprefix("MWAA Serverless Workflow Run ") or "Failed"
    counted = count_run(RUNS_FAILED, event_run_id(event), outcome=state, run=run, ledger=ledger, raise_on_ledger_error=False)
    if ledger is not None and run is not None and already_reported(ledger, run):
        logger.info("%s: run %s is recorded failed already: a repeated event, reported before", message["object"], message["run_id"])
        return {**message, "published": False, "counted": counted}
    step = message["failed_step"] or "the workflow"
    sns.publish(
        TopicArn=os.environ["TOPIC_ARN"],
        Subject=f"{os.environ['DATASET']} pipeline ({FORM_NAME}) failed at {step}"[:100],
        Message=json.dumps(message),
    )
    logger.info("failure of run %s reported: %s", message["run_id"], message)
    if ledger is not None and run is not None:
        record_failure(ledger, run, message)
    return {**message, "published": True, "counted": counted}
