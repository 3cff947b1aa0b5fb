"""Starting and recovering runs, per form: a new run for an upload (`reconcile --start`, dead-letter replays) and the
cheapest correct recovery of a failed one (`rerun`).

- Step Functions: redrive the upload's last execution when it can be resumed at the step that failed (it ended
  failed at that step, not in a Fail state, and the service says REDRIVABLE); otherwise a new execution with the
  input an S3 `Object Created` event gives the state machine.
- Step Functions on a schedule (the stack has a ScheduleExpression output): never a redrive (a scheduled run holds
  many uploads and a run lock; a resumed one would hold neither). The upload's event goes to the form's inbox, where
  the next scheduled run takes it, and a new execution starts now, asking for it (`requested`); if a scheduled run is
  going, that execution ends at once and the next run takes the upload from the inbox. A record a timed-out run
  still holds is recorded failed first, for its owner.
- Glue Workflow: resume the workflow run that last took the upload (the ledger record's last run) at its failed
  crawler, or at its clean job when the clean or the load job failed: a resumed run has a new run id, so a resumed
  load alone would MERGE that id's empty output (with two targets Glue runs both loads again, downstream of the clean
  job, and the one the ledger has loaded skips its upload). Otherwise a new workflow run. Either way the upload is
  named in the run's `REQUESTED_PROPERTY`, so its clean job takes it (a record a timed-out run still holds is
  recorded failed first, for its owner).
- MWAA: clear the failed tasks of the upload's DAG run (its run id derives from the object, as the trigger's does),
  with `dry_run` false: the REST API clears nothing unless told so; a new DAG run when there is none.
- MWAA Serverless: a new workflow run with the object and a new run id as its parameters and a new ClientToken (the
  trigger's token would return the failed run), the upload taken in the ledger for that run id first, as the trigger
  does (`serverless_runs.start_upload_run`): the run's clean job writes its counts into the record that run holds.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from ..runtime.upload_lambdas.serverless_runs import start_upload_run
from ..runtime.upload_lambdas.upload_events import (
    UploadedObject,
    dag_run_id,
    dag_run_request,
    rest_api_status,
    uploaded_object as parsed_event,
)
from ..runtime.upload_ledger import FAILED, FINAL_STATES, RUNNING, Upload, UploadLedger, iso_utc
from ..runtime.workflow_inputs import REQUESTED_PROPERTY, uploads_to_json
from .environment import Environment, FormStack, OperationsError
from .uploads import stuck_reason

REDRIVABLE_END_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
GLUE_FAILED_STATES = ("FAILED", "TIMEOUT", "ERROR", "STOPPED")


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
    def start_new_run(self, stack: FormStack, upload: Upload, now: datetime, *, force: bool = False) -> RunAction:
        """A new run of the form for the upload (`force`: the MWAA Serverless run takes a finished record too)."""
        form = stack.form
        if form == "step_functions" and is_scheduled(stack):
            return self._start_scheduled_run(stack, upload, now)
        if form == "step_functions":
            name = f"ops-{uuid.uuid4().hex}"
            answer = self.clients["stepfunctions"].start_execution(
                stateMachineArn=stack.output("StateMachineArn"), name=name, input=json.dumps(object_created_event(upload, now))
            )
            return RunAction(form, "started", answer["executionArn"])
        if form == "glue_workflow":
            answer = self.clients["glue"].start_workflow_run(
                Name=stack.output("WorkflowName"), RunProperties={REQUESTED_PROPERTY: uploads_to_json([upload])}
            )
            return RunAction(form, "started", answer["RunId"], "the run takes this upload and the ones waiting in the inbox")
        if form == "mwaa":
            return self._start_dag_run(stack, upload)
        if form == "mwaa_serverless":
            ledger = UploadLedger(self.clients["dynamodb"], self.environment.ledger_table, form=form) if stack.writes_ledger else None
            service_run = start_upload_run(
                self.clients["mwaa-serverless"],
                stack.output("WorkflowArn"),
                uploaded_object(upload),
                run_id=f"ops-{uuid.uuid4().hex}",
                client_token=f"ops-{uuid.uuid4().hex}",
                ledger=ledger,
                force=force,
            )
            return RunAction(form, "started", service_run)
        raise OperationsError(f"form {form!r} is not one this version of pipeline-ops knows")

    def _start_scheduled_run(self, stack: FormStack, upload: Upload, now: datetime) -> RunAction:
        """The upload's event into the inbox (the next scheduled run takes it), then a run now that asks for it."""
        self.clients["sqs"].send_message(QueueUrl=stack.output("InboxQueueUrl"), MessageBody=json.dumps(object_created_event(upload, now)))
        requested = json.loads(uploads_to_json([upload]))
        answer = self.clients["stepfunctions"].start_execution(
            stateMachineArn=stack.output("StateMachineArn"), name=f"ops-{uuid.uuid4().hex}", input=json.dumps({"requested": requested})
        )
        return RunAction(
            stack.form,
            "started",
            answer["executionArn"],
            "a scheduled run that takes this upload first; if another scheduled run is going, it ends at once and the "
            f"next run ({stack.output('ScheduleExpression')} {stack.outputs.get('ScheduleTimeZone', 'UTC')}) takes the upload from the inbox",
        )

    def _fail_stuck(self, stack: FormStack, upload: Upload, record: dict[str, Any] | None) -> None:
        """A record a timed-out run still holds (rerun refuses the ones still in time) is recorded failed, for its owner."""
        if record is not None and record.get("state") == RUNNING:
            UploadLedger(self.clients["dynamodb"], self.environment.ledger_table, form=stack.form).fail(
                upload,
                run_id=str(record.get("owner", "")),
                error="RunTimedOut",
                cause=f"pipeline-ops rerun: the run held it at {record.get('step', '?')} past the form's run timeout",
            )

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
        if form == "step_functions" and is_scheduled(stack):
            if record is not None and record.get("state") in FINAL_STATES:
                raise Refused(
                    f"{upload.uri} is {record.get('state')}: a scheduled run takes an upload again only as a new object version "
                    "(the ledger refuses a finished record, so nothing loads twice). Upload the file again to rerun it"
                )
            self._fail_stuck(stack, upload, record)
            return self.start_new_run(stack, upload, now)
        if form == "step_functions":
            return self._rerun_execution(stack, upload, record, force=force, now=now)
        if form == "glue_workflow":
            return self._rerun_workflow(stack, upload, record, now)
        if form == "mwaa":
            return self._rerun_dag_run(stack, upload, force=force)
        return self.start_new_run(stack, upload, now, force=force)

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
        """True when the execution ended in a Fail state: a redrive would enter it again and fail at once. The last 25
        events: with parallel loads, the other branch's aborted states are logged after the Fail state."""
        history = self.clients["stepfunctions"].get_execution_history(executionArn=execution, reverseOrder=True, maxResults=25)
        return any(event.get("type") == "FailStateEntered" for event in history.get("events", []))

    def _rerun_workflow(self, stack: FormStack, upload: Upload, record: dict[str, Any] | None, now: datetime) -> RunAction:
        glue = self.clients["glue"]
        name = stack.output("WorkflowName")
        self._fail_stuck(stack, upload, record)
        runs = record.get("runs", []) if record else []
        run_id = str(runs[-1]["run_id"]) if runs else ""
        run = self._workflow_run(name, run_id) if run_id else None
        if run is not None:
            if run.get("Status") == "RUNNING":
                raise Refused(f"{upload.uri}: workflow run {run_id} holds it and is still running; wait for it to end")
            nodes = _resume_nodes(run.get("Graph", {}), stack.output("CleanJobName"))
            if nodes:
                answer = glue.resume_workflow_run(Name=name, RunId=run_id, NodeIds=nodes)
                resumed = str(answer["RunId"])
                glue.put_workflow_run_properties(Name=name, RunId=resumed, RunProperties={REQUESTED_PROPERTY: uploads_to_json([upload])})
                return RunAction(stack.form, "resumed", resumed, f"run {run_id} again from {', '.join(nodes)}")
        return self.start_new_run(stack, upload, now)

    def _workflow_run(self, name: str, run_id: str) -> dict[str, Any] | None:
        """The workflow run with its graph, or None when Glue no longer holds it (its history is kept 90 days)."""
        try:
            return dict(self.clients["glue"].get_workflow_run(Name=name, RunId=run_id, IncludeGraph=True)["Run"])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "EntityNotFoundException":
                return None
            raise

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


def is_scheduled(stack: FormStack) -> bool:
    """The form's runs start on a schedule (its stack publishes the schedule: ScheduleExpression)."""
    return bool(stack.outputs.get("ScheduleExpression"))


def _resume_nodes(graph: Mapping[str, Any], clean_job_name: str) -> list[str]:
    """Where to resume a workflow run: its crawler node when the crawl failed, its clean job node when the clean or
    the load job failed (the load reads the output the clean job writes under the run's id), else nowhere."""
    failed_crawl, failed_job, clean = [], False, []
    for node in graph.get("Nodes", []):
        job_runs = node.get("JobDetails", {}).get("JobRuns", [])
        crawls = node.get("CrawlerDetails", {}).get("Crawls", [])
        if crawls and crawls[-1].get("State") in GLUE_FAILED_STATES:
            failed_crawl.append(node["UniqueId"])
        if job_runs and job_runs[-1].get("JobRunState") in GLUE_FAILED_STATES:
            failed_job = True
        if node.get("Type") == "JOB" and node.get("Name") == clean_job_name:
            clean.append(node["UniqueId"])
    return failed_crawl or (clean if failed_job else [])
