"""Starting and recovering runs, per form: a new run for an upload (`reconcile --start`, dead-letter replays) and the
cheapest correct recovery of a failed one (`rerun`).

- Step Functions: redrive the upload's last execution when it can be resumed at the step that failed (it ended
  failed at that step, not in a Fail state, and the service says REDRIVABLE); otherwise a new execution with the
  input an S3 `Object Created` event gives the state machine.
- Glue Workflow: resume the failed nodes of the workflow run that claimed the upload; otherwise a new workflow run
  (which takes every upload under the prefix that no run loaded, this one included).
- MWAA: clear the failed tasks of the upload's DAG run (its run id derives from the object, as the trigger's does),
  with `dry_run` false: the REST API clears nothing unless told so; a new DAG run when there is none.
- MWAA Serverless: a new workflow run with the object as its parameters and a new ClientToken (the trigger's token
  would return the failed run).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from ..runtime.upload_lambdas.upload_events import (
    UploadedObject,
    dag_run_id,
    dag_run_request,
    rest_api_status,
    run_parameters,
    uploaded_object as parsed_event,
)
from ..runtime.upload_ledger import FAILED, FINAL_STATES, RUNNING, Upload, UploadLedger, iso_utc
from ..runtime.workflow_inputs import CLAIMED_PROPERTY
from .environment import Environment, FormStack, OperationsError
from .uploads import stuck_reason

REDRIVABLE_END_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
GLUE_FAILED_STATES = ("FAILED", "TIMEOUT", "ERROR", "STOPPED")
WORKFLOW_RUNS_SEARCHED = 50
"""How many of the Glue workflow's latest runs `rerun` searches for the one that claimed the upload."""


class Refused(Exception):
    """The recovery would be wrong now (the upload is loaded, or a run still holds it); exit status 1."""


@dataclass(frozen=True)
class RunAction:
    """What a command did for one upload: `how` (redriven, resumed, cleared, started), the run it acted on, a note."""

    form: str
    how: str
    run: str
    note: str = ""


def uploaded_object(upload: Upload) -> UploadedObject:
    return {"bucket": upload.bucket, "key": upload.key, "version_id": upload.version_id}


def object_created_event(upload: Upload, now: datetime) -> dict[str, Any]:
    """The EventBridge S3 `Object Created` event for the upload, as the state machine reads it."""
    obj: dict[str, Any] = {"key": upload.key, "etag": upload.etag or ""}
    if upload.version_id:
        obj["version-id"] = upload.version_id
    return {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": iso_utc(now),
        "resources": [f"arn:aws:s3:::{upload.bucket}"],
        "detail": {"version": "0", "bucket": {"name": upload.bucket}, "object": obj, "reason": "pipeline-ops"},
    }


def upload_of_event(body: str) -> Upload:
    """The upload an S3 `Object Created` event names, checked as the trigger Lambdas check it (MalformedEvent, a
    ValueError, otherwise); with the event's ETag, the ledger's key for an unversioned object."""
    obj = parsed_event(body)
    etag = json.loads(body)["detail"]["object"].get("etag")
    return Upload(obj["bucket"], obj["key"], obj["version_id"], etag if isinstance(etag, str) else None)


class Runs:
    """The services' clients for one environment."""

    def __init__(self, clients: Mapping[str, Any], environment: Environment) -> None:
        self.clients = clients
        self.environment = environment

    # --- new runs -------------------------------------------------------------------------------------------------
    def start_new_run(self, stack: FormStack, upload: Upload, now: datetime) -> RunAction:
        """A new run of the form for the upload."""
        form = stack.form
        if form == "step_functions":
            name = f"ops-{uuid.uuid4().hex}"
            answer = self.clients["stepfunctions"].start_execution(
                stateMachineArn=stack.output("StateMachineArn"), name=name, input=json.dumps(object_created_event(upload, now))
            )
            return RunAction(form, "started", answer["executionArn"])
        if form == "glue_workflow":
            answer = self.clients["glue"].start_workflow_run(Name=stack.output("WorkflowName"))
            return RunAction(form, "started", answer["RunId"], "the run takes every upload under the prefix that no run loaded")
        if form == "mwaa":
            return self._start_dag_run(stack, upload)
        if form == "mwaa_serverless":
            answer = self.clients["mwaa-serverless"].start_workflow_run(
                WorkflowArn=stack.output("WorkflowArn"),
                ClientToken=f"ops-{uuid.uuid4().hex}",
                OverrideParameters=run_parameters(uploaded_object(upload)),
            )
            return RunAction(form, "started", str(answer.get("RunId")))
        raise OperationsError(f"form {form!r} is not one this version of pipeline-ops knows")

    def _start_dag_run(self, stack: FormStack, upload: Upload) -> RunAction:
        obj = uploaded_object(upload)
        run_id = dag_run_id(obj)
        try:
            self._airflow(stack, "POST", f"/dags/{stack.output('DagId')}/dagRuns", dag_run_request(obj))
        except ClientError as error:
            if rest_api_status(error) == 409:
                return RunAction("mwaa", "exists", run_id, "a DAG run for this object version exists already")
            raise
        return RunAction("mwaa", "started", run_id)

    def _airflow(self, stack: FormStack, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {"Name": stack.output("MwaaEnvironmentName"), "Path": path, "Method": method}
        if body is not None:
            request["Body"] = body
        return self.clients["mwaa"].invoke_rest_api(**request)

    # --- rerun ----------------------------------------------------------------------------------------------------
    def rerun(self, stack: FormStack, upload: Upload, record: dict[str, Any] | None, *, force: bool, now: datetime) -> RunAction:
        """The cheapest correct recovery of the upload on its form; Refused when it is loaded (without force) or in flight."""
        if record is not None:
            state = record.get("state")
            if state in FINAL_STATES and not force:
                raise Refused(
                    f"{upload.uri} is {state} (at {record.get('finished_at', record.get('updated_at', '?'))}); nothing to recover. "
                    "With --force it runs again (the load is a MERGE on the natural key: loading it again changes nothing)"
                )
            if state == RUNNING and stuck_reason(self.environment, record, now) is None:
                raise Refused(f"{upload.uri} is running (run {record.get('owner', '?')}, at {record.get('step', '?')}); wait for it to end")
        form = stack.form
        if form == "step_functions":
            return self._rerun_execution(stack, upload, record, force=force, now=now)
        if form == "glue_workflow":
            return self._rerun_workflow(stack, upload, now)
        if form == "mwaa":
            return self._rerun_dag_run(stack, upload, force=force)
        return self.start_new_run(stack, upload, now)

    def _rerun_execution(self, stack: FormStack, upload: Upload, record: dict[str, Any] | None, *, force: bool, now: datetime) -> RunAction:
        if record is not None and record.get("state") in FINAL_STATES:
            raise Refused(
                f"{upload.uri} is {record.get('state')}: the state machine takes an upload again only as a new object "
                "version (it refuses a finished record, so a repeated event cannot load twice). Upload the file again to rerun it"
            )
        sfn = self.clients["stepfunctions"]
        runs = record.get("runs", []) if record else []
        execution = str(runs[-1].get("execution", "")) if runs else ""
        described = self._described(execution) if execution.startswith("arn:") else None
        if described is not None:
            status = described.get("status")
            if status == "RUNNING":
                raise Refused(f"{upload.uri}: execution {execution} is still running; wait for it to end")
            resumable = status in REDRIVABLE_END_STATUSES and described.get("redriveStatus") == "REDRIVABLE"
            if resumable and not self._ended_in_fail_state(execution):
                if record is not None and record.get("state") == FAILED:
                    # The redriven execution keeps its name (the run id): its ledger writes need it to own the upload again.
                    UploadLedger(self.clients["dynamodb"], self.environment.ledger_table, form=stack.form).start(
                        upload, run_id=str(runs[-1]["run_id"]), execution=execution, step=str(record.get("step", "crawl"))
                    )
                sfn.redrive_execution(executionArn=execution)
                return RunAction(
                    stack.form, "redriven", execution, f"resumes at the step that failed ({record.get('step') if record else '?'})"
                )
        action = self.start_new_run(stack, upload, now)
        if described is not None:
            note = "its last execution cannot be resumed at the failed step"
        elif execution:
            note = "its last execution is no longer in the service's history"
        else:
            note = "no execution of it is on record"
        return RunAction(action.form, action.how, action.run, note)

    def _described(self, execution: str) -> dict[str, Any] | None:
        """The execution, or None when the service no longer holds it (its history is kept 90 days)."""
        try:
            return dict(self.clients["stepfunctions"].describe_execution(executionArn=execution))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                return None
            raise

    def _ended_in_fail_state(self, execution: str) -> bool:
        """True when the execution ended in a Fail state: a redrive would enter it again and fail at once."""
        history = self.clients["stepfunctions"].get_execution_history(executionArn=execution, reverseOrder=True, maxResults=5)
        return any(event.get("type") == "FailStateEntered" for event in history.get("events", []))

    def _rerun_workflow(self, stack: FormStack, upload: Upload, now: datetime) -> RunAction:
        glue = self.clients["glue"]
        name = stack.output("WorkflowName")
        runs = glue.get_workflow_runs(Name=name, IncludeGraph=True, MaxResults=WORKFLOW_RUNS_SEARCHED).get("Runs", [])
        for run in sorted(runs, key=lambda run: run.get("StartedOn", datetime.min.replace(tzinfo=now.tzinfo)), reverse=True):
            claimed = json.loads(run.get("WorkflowRunProperties", {}).get(CLAIMED_PROPERTY) or "{}")
            if upload.key not in claimed:
                continue
            if run.get("Status") == "RUNNING":
                raise Refused(f"{upload.uri}: workflow run {run['WorkflowRunId']} holds it and is still running; wait for it to end")
            failed = _failed_nodes(run.get("Graph", {}))
            if failed:
                glue.resume_workflow_run(Name=name, RunId=run["WorkflowRunId"], NodeIds=failed)
                return RunAction(stack.form, "resumed", run["WorkflowRunId"], f"its failed nodes again: {', '.join(failed)}")
            break
        return self.start_new_run(stack, upload, now)

    def _rerun_dag_run(self, stack: FormStack, upload: Upload, *, force: bool) -> RunAction:
        run_id = dag_run_id(uploaded_object(upload))
        dag = stack.output("DagId")
        try:
            answer = self._airflow(stack, "GET", f"/dags/{dag}/dagRuns/{run_id}")
        except ClientError as error:
            if rest_api_status(error) == 404:
                return self._start_dag_run(stack, upload)
            raise
        state = answer.get("RestApiResponse", {}).get("state")
        if state in ("queued", "running"):
            raise Refused(f"{upload.uri}: DAG run {run_id} is {state}; wait for it to end")
        if state == "success" and not force:
            raise Refused(f"{upload.uri}: DAG run {run_id} succeeded; with --force it runs again (loading it again changes nothing)")
        # dry_run defaults to true in Airflow's REST API: without it nothing would be cleared.
        body = {"dag_run_id": run_id, "dry_run": False, "only_failed": not force, "reset_dag_runs": True}
        cleared = self._airflow(stack, "POST", f"/dags/{dag}/clearTaskInstances", body)
        tasks = [task.get("task_id") for task in cleared.get("RestApiResponse", {}).get("task_instances", [])]
        return RunAction(stack.form, "cleared", run_id, f"tasks cleared: {', '.join(map(str, tasks)) or 'none'}")


def _failed_nodes(graph: Mapping[str, Any]) -> list[str]:
    """The ids of a workflow run's job and crawler nodes whose last run failed."""
    failed = []
    for node in graph.get("Nodes", []):
        job_runs = node.get("JobDetails", {}).get("JobRuns", [])
        crawls = node.get("CrawlerDetails", {}).get("Crawls", [])
        if (job_runs and job_runs[-1].get("JobRunState") in GLUE_FAILED_STATES) or (
            crawls and crawls[-1].get("State") in GLUE_FAILED_STATES
        ):
            failed.append(node["UniqueId"])
    return failed
