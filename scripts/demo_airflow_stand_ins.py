"""The local stand-ins `make demo FORM=mwaa` and `FORM=mwaa_serverless` answer the operators with (scripts/demo_form.py).

The DAG (MWAA) or the workflow YAML (MWAA Serverless, loaded by dag-factory) runs on Airflow in its own virtualenv
(scripts/demo_airflow.py); everything it calls is answered here, in the demo's process, by the same engines the other
forms' demos use:

- `AwsEndpoint`: an HTTP endpoint on 127.0.0.1 that hands each signed AWS request of the Airflow process to this
  process's moto (the one `mock_aws` the demo's deployment, ledger and landing bucket live in), so both processes
  see one ledger table, one S3, one SNS. The Airflow process reaches it through AWS_ENDPOINT_URL.
- `GlueJobRuns`: a StartJobRun of the clean job runs the real clean job (runtime/glue_clean_job.py) on the demo's
  local Spark, in a thread, with the job's default arguments and the operator's; GetJobRun says RUNNING until it
  ends, then SUCCEEDED or FAILED with its error. The curated Parquet it wrote is put into moto's curated bucket, where
  the DAG's rows check lists it. moto's Glue lacks GetCrawlerMetrics (the crawler operator logs it): one entry.
- `RedshiftOnDuckDB`: the Redshift Data API's BatchExecuteStatement (moto lacks it) run on DuckDB as one transaction:
  CREATE and MERGE as sqlglot translates them from Redshift SQL, COPY as DuckDB's read of the run's Parquet by
  position, LOCK left out (DuckDB serializes writers itself); DescribeStatement answers FINISHED or FAILED with
  DuckDB's message.
- `athena_through_moto`: moto's Athena query API answered by demo_stand_ins.AthenaOnDuckDB (the MERGE on DuckDB).
- `AirflowRestApi`: MWAA's InvokeRestApi (what the trigger and `pipeline-ops rerun` call) answered by the demo's
  Airflow: POST dagRuns, GET a dagRun, POST clearTaskInstances, each a run of scripts/demo_airflow.py.
- `MwaaServerlessApi`: MWAA Serverless's StartWorkflowRun, GetWorkflowRun, ListTaskInstances and GetTaskInstance
  (moto has none; what the trigger, the run-event Lambdas and `pipeline-ops rerun` call) through botocore's Stubber,
  each run driven on the demo's Airflow, and the EventBridge events the service sends for it.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"
MARKER = re.compile(r"<<marker:0xbaba:\d+>>")
SCOPE = re.compile(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/aws4_request")
ENDPOINT_PREFIX = {"sns": "sns", "sqs": "sqs", "dynamodb": "dynamodb", "glue": "glue", "redshift-data": "redshift-data", "s3": "s3"}
AIRFLOW_TIMEOUT_SECONDS = 900
"""One Airflow command (a whole DAG run at most): far above the demo's minute or two, so a hang ends it."""


# --- the deployed files ------------------------------------------------------------------------------------------------
def deployed_files(assembly: Path, template: dict[str, Any], resolve: Callable[[Any], Any], into: Path) -> Path:
    """The files the stack's one BucketDeployment ships (its assets from the cloud assembly, folders kept) written
    into `into`, each deploy-time marker replaced by its value as CloudFormation gives it. Returns `into`."""
    (deployment,) = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "Custom::CDKBucketDeployment"]
    markers: dict[str, Any] = {}
    for entry in deployment.get("SourceMarkers", []):
        markers.update(entry)
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    for key in deployment["SourceObjectKeys"]:
        source = assembly / f"asset.{key.split('.')[0]}"
        if not source.is_dir():
            raise SystemExit(f"asset {key}: {source} is not in the cloud assembly")
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            text = path.read_text(encoding="utf-8")
            target = into / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(MARKER.sub(lambda m: str(resolve(markers[m.group(0)])), text), encoding="utf-8")
    return into


def deployed_dag_folder(
    assembly: Path, template: dict[str, Any], resolve: Callable[[Any], Any], into: Path, overrides: dict[str, Any]
) -> tuple[Path, dict[str, Any]]:
    """The DAG folder the Mwaa stack's BucketDeployment ships (`deployed_files`); `overrides` replace top-level
    settings of its configuration. Returns (folder, the configuration as deployed, before the overrides)."""
    deployed_files(assembly, template, resolve, into)
    config_path = into / "pipeline_dag_config.json"
    deployed = json.loads(config_path.read_text(encoding="utf-8"))
    config_path.write_text(json.dumps({**deployed, **overrides}), encoding="utf-8")
    return into, deployed


# --- one AWS endpoint for both processes --------------------------------------------------------------------------
class AwsEndpoint:
    """http://127.0.0.1:<port>: each request re-addressed to the service's AWS host (from its signature's scope) and
    answered by moto's botocore handler in this process (mock_aws must be active)."""

    def __init__(self) -> None:
        from botocore.awsrequest import AWSPreparedRequest
        from moto.core.models import botocore_stubber

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                scope = SCOPE.search(self.headers.get("Authorization", ""))
                if scope is None:
                    self._send(400, {}, b"unsigned request")
                    return
                region, service = scope.groups()
                host = f"{ENDPOINT_PREFIX.get(service, service)}.{region}.amazonaws.com"
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                headers["Host"] = host
                request = AWSPreparedRequest(self.command, f"https://{host}{self.path}", headers, body, False)
                response = botocore_stubber("before-send", request)
                if response is None:
                    self._send(501, {}, f"moto does not answer {self.command} {host}{self.path}".encode())
                    return
                self._send(response.status_code, dict(response.headers), response.content)

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, str(value))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer  # noqa: N815

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="aws-endpoint", daemon=True)

    def __enter__(self) -> AwsEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def patched(*patches: tuple[Any, str, Any]) -> Iterator[None]:
    """setattr each (owner, name, value) for the block, then restore (or remove what was not there)."""
    saved = [(owner, name, owner.__dict__.get(name)) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in saved:
            if value is None:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


# --- Glue --------------------------------------------------------------------------------------------------------------
class GlueJobRuns:
    """moto's Glue job runs answered by `run(job_run_id, arguments) -> note` (raises: the run FAILED)."""

    def __init__(self, run: Callable[[str, dict[str, str]], str]) -> None:
        self.run = run
        self.states: dict[str, dict[str, Any]] = {}
        self.threads: list[threading.Thread] = []

    def _start(self, job_run_id: str, arguments: dict[str, str]) -> None:
        self.states[job_run_id] = {"state": "RUNNING", "arguments": arguments, "started": time.time()}

        def work() -> None:
            try:
                note = self.run(job_run_id, arguments)
                self.states[job_run_id].update(state="SUCCEEDED", note=note)
            except BaseException as error:  # the job run fails, as Glue's does when the script raises
                self.states[job_run_id].update(state="FAILED", error=f"{type(error).__name__}: {error}")
            self.states[job_run_id]["ended"] = time.time()

        thread = threading.Thread(target=work, name=f"clean-{job_run_id[:12]}", daemon=True)
        self.threads.append(thread)
        thread.start()

    @contextlib.contextmanager
    def installed(self) -> Iterator[GlueJobRuns]:
        from moto.glue.models import FakeJob, FakeJobRun
        from moto.glue.responses import GlueResponse
        from moto.moto_api import state_manager

        runs = self
        moto_start = FakeJob.start_job_run

        def start_job_run(job: Any, *args: Any, **kwargs: Any) -> str:
            job_run_id = moto_start(job, *args, **kwargs)
            run = next(r for r in job.job_runs if r.job_run_id == job_run_id)
            runs._start(job_run_id, dict(run.arguments or {}))
            return str(job_run_id)

        def status(run: Any) -> str:
            return str(runs.states.get(run.job_run_id, {}).get("state", "RUNNING"))

        def as_dict(run: Any) -> dict[str, Any]:
            out = dict(moto_as_dict(run))
            if "error" in runs.states.get(run.job_run_id, {}):
                out["ErrorMessage"] = runs.states[run.job_run_id]["error"][:2000]
            return out

        moto_as_dict = FakeJobRun.as_dict

        def get_crawler_metrics(response: Any) -> str:  # moto lacks it; the crawler operator only logs it
            names = response._get_param("CrawlerNameList") or []
            metrics = {"LastRuntimeSeconds": 1.0, "MedianRuntimeSeconds": 1.0, "TablesCreated": 0, "TablesUpdated": 0, "TablesDeleted": 0}
            return json.dumps({"CrawlerMetricsList": [{"CrawlerName": n, **metrics} for n in names]})

        state_manager.set_transition("glue::crawl", {"progression": "immediate"})
        try:
            with patched(
                (FakeJob, "start_job_run", start_job_run),
                (FakeJobRun, "status", property(status, lambda _run, _value: None)),
                (FakeJobRun, "as_dict", as_dict),
                (GlueResponse, "get_crawler_metrics", get_crawler_metrics),
            ):
                yield self
        finally:
            state_manager.unset_transition("glue::crawl")
            for thread in self.threads:
                thread.join(timeout=AIRFLOW_TIMEOUT_SECONDS)


# --- Redshift Data on DuckDB -------------------------------------------------------------------------------------------
class RedshiftOnDuckDB:
    """The warehouse: one DuckDB connection; `local(uri)` is where an s3:// prefix of the curated bucket sits on disk."""

    def __init__(self, local: Callable[[str], str], *, schema_exists: bool = True) -> None:
        import duckdb

        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.local = local
        if schema_exists:
            self.create_schema()
        self.batches: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def create_schema(self) -> None:
        self.con.execute('CREATE SCHEMA IF NOT EXISTS "public"')

    def execute(self, sqls: list[str]) -> None:
        """The batch as one transaction (Redshift Data runs a batch in one): all of it or nothing."""
        import sqlglot

        with self.lock:
            self.con.execute("BEGIN TRANSACTION")
            try:
                temp_tables = []
                for sql in sqls:
                    parsed = sqlglot.parse_one(sql, read="redshift")
                    if sql.lstrip().upper().startswith("LOCK "):
                        continue
                    if isinstance(parsed, sqlglot.exp.Copy):
                        target = parsed.this.sql(dialect="duckdb")
                        prefix = self.local(parsed.args["files"][0].name)
                        self.con.execute(
                            f"INSERT INTO {target} SELECT * FROM read_parquet('{prefix}*/*.parquet', hive_partitioning = false)"
                        )
                        continue
                    if re.match(r"\s*CREATE\s+TEMP(ORARY)?\s+TABLE", sql, re.IGNORECASE):
                        temp_tables.append(parsed.find(sqlglot.exp.Table).sql(dialect="duckdb"))
                    self.con.execute(sqlglot.transpile(sql, read="redshift", write="duckdb")[0])
                for table in temp_tables:  # a temp table ends with the Data API session
                    self.con.execute(f"DROP TABLE {table}")
                self.con.execute("COMMIT")
            except Exception:
                self.con.execute("ROLLBACK")
                raise

    def rows(self, sql: str) -> tuple[list[str], list[tuple]]:
        with self.lock:
            cursor = self.con.execute(sql)
            return [d[0] for d in cursor.description], cursor.fetchall()

    @contextlib.contextmanager
    def installed(self) -> Iterator[RedshiftOnDuckDB]:
        """moto's Redshift Data answering BatchExecuteStatement with this warehouse (DescribeStatement: moto's own)."""
        from moto.redshiftdata.models import Statement, redshiftdata_backends
        from moto.redshiftdata.responses import RedshiftDataAPIServiceResponse

        warehouse = self

        class RanStatement(Statement):
            error: str | None = None

            def __iter__(self) -> Iterator[tuple[str, Any]]:
                yield from super().__iter__()
                if self.error:
                    yield "Error", self.error

        def batch_execute_statement(response: Any) -> tuple[int, dict[str, str], str]:
            params = {name: response._get_param(name) for name in ("WorkgroupName", "Database", "Sqls", "StatementName")}
            statement = RanStatement("", params["Database"], "", [], "; ".join(params["Sqls"]), "")
            started = time.time()
            try:
                warehouse.execute(list(params["Sqls"]))
                statement.status = "FINISHED"
            except Exception as error:
                statement.status = "FAILED"
                statement.error = f"DuckDB {type(error).__name__}: {error}".splitlines()[0]
            warehouse.batches.append({**params, "status": statement.status, "error": statement.error, "seconds": time.time() - started})
            redshiftdata_backends[response.current_account][response.region].statements[statement.id] = statement
            return 200, {}, json.dumps({"Id": statement.id, "Database": params["Database"], "WorkgroupName": params["WorkgroupName"]})

        with patched((RedshiftDataAPIServiceResponse, "batch_execute_statement", batch_execute_statement)):
            yield self


# --- MWAA's REST API on the demo's Airflow -----------------------------------------------------------------------------
class AirflowRestApi:
    """An `mwaa` client whose InvokeRestApi the demo's Airflow answers (scripts/demo_airflow.py in .venv-airflow)."""

    def __init__(self, home: Path, dag_folder: Path, env: dict[str, str], logs: Path) -> None:
        self.home = home
        self.dag_folder = dag_folder
        self.env = env
        self.logs = logs
        self.calls = 0
        home.mkdir(parents=True, exist_ok=True)

    def airflow(self, command: str, argument: str) -> dict[str, Any]:
        self.calls += 1
        out = self.home / f"answer-{self.calls}.json"
        log = self.logs / f"airflow-{self.calls:02d}-{command}.log"
        with log.open("w", encoding="utf-8") as handle:
            done = subprocess.run(
                [
                    str(AIRFLOW_PYTHON),
                    str(ROOT / "scripts" / "demo_airflow.py"),
                    str(self.home),
                    str(self.dag_folder),
                    str(out),
                    command,
                    argument,
                ],
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=AIRFLOW_TIMEOUT_SECONDS,
                check=False,
            )
        if done.returncode != 0:
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise SystemExit(f"Airflow ({command}) exited {done.returncode}; its log {log}:\n{tail}")
        return dict(json.loads(out.read_text(encoding="utf-8")))

    def invoke_rest_api(self, Name: str, Path: str, Method: str, Body: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:  # noqa: N803
        """InvokeRestApi: {"RestApiStatusCode", "RestApiResponse"}; a 4xx is a ClientError carrying RestApiStatusCode."""
        from botocore.exceptions import ClientError

        parts = Path.strip("/").split("/")
        if Method == "POST" and parts[-1] == "dagRuns":
            answer = self.airflow("post_dag_run", json.dumps(Body))
        elif Method == "GET" and len(parts) == 4 and parts[2] == "dagRuns":
            answer = self.airflow("get_dag_run", parts[3])
        elif Method == "POST" and parts[-1] == "clearTaskInstances":
            answer = self.airflow("clear", json.dumps(Body))
        else:
            raise ValueError(f"InvokeRestApi {Method} {Path}: not a call the pipeline makes")
        status = int(answer.pop("status", 200))
        if status >= 400:
            raise ClientError(
                {"Error": {"Code": "RestApiClientException", "Message": f"{Method} {Path}: {status}"}, "RestApiStatusCode": status},
                "InvokeRestApi",
            )
        return {"RestApiStatusCode": status, "RestApiResponse": answer}


# --- Athena on DuckDB, through moto --------------------------------------------------------------------------------------
@contextlib.contextmanager
def athena_through_moto(athena: Any) -> Iterator[Any]:
    """moto's Athena answering StartQueryExecution, GetQueryExecution and StopQueryExecution with `athena`
    (demo_stand_ins.AthenaOnDuckDB: each query run on DuckDB as sqlglot translates it), for the operators that reach
    moto through the endpoint."""
    from moto.athena.responses import AthenaResponse

    def start_query_execution(response: Any) -> str:
        request = {name: response._get_param(name) for name in ("QueryString", "QueryExecutionContext", "WorkGroup")}
        return json.dumps(athena.start_query_execution(**request))

    def get_query_execution(response: Any) -> str:
        return json.dumps(athena.get_query_execution(response._get_param("QueryExecutionId")), default=str)

    def stop_query_execution(response: Any) -> str:
        return json.dumps(athena.stop_query_execution(response._get_param("QueryExecutionId")))

    with patched(
        (AthenaResponse, "start_query_execution", start_query_execution),
        (AthenaResponse, "get_query_execution", get_query_execution),
        (AthenaResponse, "stop_query_execution", stop_query_execution),
    ):
        yield athena


# --- MWAA Serverless's run API on the demo's Airflow ---------------------------------------------------------------------
SERVERLESS_TASK_STATUS = {
    "success": "SUCCESS",
    "failed": "FAILED",
    "upstream_failed": "UPSTREAM_FAILED",
    "skipped": "NONE",  # the service's task statuses have no SKIPPED
    "up_for_retry": "UP_FOR_RETRY",
    "up_for_reschedule": "UP_FOR_RESCHEDULE",
    "running": "RUNNING",
    "queued": "QUEUED",
    "scheduled": "SCHEDULED",
    "deferred": "DEFERRED",
    "restarting": "RESTARTING",
    "removed": "REMOVED",
}
"""Airflow's task instance states -> MWAA Serverless's TaskInstance Status."""
SERVERLESS_EVENT_SOURCE = "aws.airflow-serverless"
SERVERLESS_OPERATIONS = ("start_workflow_run", "get_workflow_run", "list_task_instances", "get_task_instance")
"""The service's calls the pipeline makes (the trigger and `pipeline-ops`: the first; the run-event Lambdas: the rest)."""


class MwaaServerlessApi:
    """MWAA Serverless's run API for one workflow (moto has none): StartWorkflowRun records the run (a repeated
    ClientToken answers the run it started), `drive` runs it on the demo's Airflow (the workflow YAML loaded by
    dag-factory, `dag.test()` with the run's parameters as its conf), and GetWorkflowRun, ListTaskInstances and
    GetTaskInstance answer from that run. `client()` is a real botocore client whose calls a Stubber answers: the
    requests and the answers are checked against the service's model."""

    def __init__(self, workflow_arn: str, airflow: AirflowRestApi, *, region: str) -> None:
        self.workflow_arn = workflow_arn
        self.airflow = airflow
        self.region = region
        self.runs: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str] = {}
        self.calls: list[str] = []

    # --- the runs, driven on Airflow -------------------------------------------------------------------------------
    def drive(self, service_run_id: str) -> dict[str, Any]:
        """The run on Airflow, to its end, under the service's run id; returns Airflow's answer (demo_airflow.py)."""
        run = self.runs[service_run_id]
        run["status"] = "RUNNING"
        answer = self.airflow.airflow("post_dag_run", json.dumps({"dag_run_id": service_run_id, "conf": run["parameters"]}))
        run.update(airflow=answer, status="SUCCESS" if answer["state"] == "success" else "FAILED", ended=_now())
        return answer

    def events(self, service_run_id: str) -> list[dict[str, Any]]:
        """The events the service sends for a driven run: one `Task Running` per task that began (in the order they
        began), then the run's outcome."""
        run = self.runs[service_run_id]
        began = sorted((t for t in run["airflow"]["tasks"] if t["start"]), key=lambda t: t["start"])
        out = [
            self._event(
                "MWAA Serverless Task Running",
                service_run_id,
                taskId=t["task_id"],
                taskInstanceId=_task_instance_id(t),
                status="RUNNING",
                at=t["start"],
            )
            for t in began
        ]
        outcome = "Succeeded" if run["status"] == "SUCCESS" else "Failed"
        out.append(
            self._event(f"MWAA Serverless Workflow Run {outcome}", service_run_id, status=run["status"], at=run["ended"].isoformat())
        )
        return out

    def _event(self, detail_type: str, service_run_id: str, *, at: str, **detail: str) -> dict[str, Any]:
        return {
            "version": "0",
            "id": uuid.uuid4().hex,
            "detail-type": detail_type,
            "source": SERVERLESS_EVENT_SOURCE,
            "account": self.workflow_arn.split(":")[4],
            "time": datetime.fromisoformat(at).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [self.workflow_arn],
            "detail": {"workflowArn": self.workflow_arn, "runId": service_run_id, **detail},
        }

    # --- the API ------------------------------------------------------------------------------------------------------
    def start_workflow_run(self, **request: Any) -> dict[str, Any]:
        self._workflow(request["WorkflowArn"])
        token = str(request.get("ClientToken", ""))
        if token in self.tokens:  # the service answers a repeated token with the run it started
            run = self.runs[self.tokens[token]]
        else:
            service_run_id = uuid.uuid4().hex
            run = {
                "run_id": service_run_id,
                "parameters": dict(request.get("OverrideParameters") or {}),
                "status": "STARTING",
                "started": _now(),
            }
            self.runs[service_run_id] = run
            self.tokens[token] = service_run_id
        return {"RunId": run["run_id"], "Status": run["status"], "StartedAt": run["started"]}

    def get_workflow_run(self, WorkflowArn: str, RunId: str) -> dict[str, Any]:  # noqa: N803
        run = self._run(WorkflowArn, RunId)
        detail: dict[str, Any] = {"WorkflowArn": WorkflowArn, "RunId": RunId, "RunType": "ON_DEMAND", "RunState": run["status"]}
        detail["StartedOn"] = run["started"]
        if "ended" in run:
            detail.update(CompletedOn=run["ended"], Duration=int((run["ended"] - run["started"]).total_seconds()))
        answer = {"WorkflowArn": WorkflowArn, "RunId": RunId, "RunType": "ON_DEMAND", "RunDetail": detail}
        return {**answer, "OverrideParameters": run["parameters"]}

    def list_task_instances(self, WorkflowArn: str, RunId: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        run = self._run(WorkflowArn, RunId)
        summaries = [
            {
                "WorkflowArn": WorkflowArn,
                "RunId": RunId,
                "TaskInstanceId": _task_instance_id(t),
                "Status": _status(t),
                "OperatorName": t["operator"],
            }
            for t in run.get("airflow", {}).get("tasks", [])
        ]
        return {"TaskInstances": summaries}

    def get_task_instance(self, WorkflowArn: str, RunId: str, TaskInstanceId: str) -> dict[str, Any]:  # noqa: N803
        run = self._run(WorkflowArn, RunId)
        task = next((t for t in run.get("airflow", {}).get("tasks", []) if _task_instance_id(t) == TaskInstanceId), None)
        if task is None:
            raise ServiceError("ResourceNotFoundException", f"task instance {TaskInstanceId} of run {RunId} does not exist")
        answer: dict[str, Any] = {
            "WorkflowArn": WorkflowArn,
            "RunId": RunId,
            "TaskInstanceId": TaskInstanceId,
            "TaskId": task["task_id"],
            "Status": _status(task),
            "OperatorName": task["operator"],
            "AttemptNumber": task["try_number"],
        }
        for name, value in (("StartedAt", task["start"]), ("EndedAt", task["end"])):
            if value:
                answer[name] = datetime.fromisoformat(value)
        if task.get("error"):
            answer["ErrorMessage"] = task["error"]
        return answer

    def _workflow(self, workflow_arn: str) -> None:
        if workflow_arn != self.workflow_arn:
            raise ServiceError("ResourceNotFoundException", f"workflow {workflow_arn} does not exist")

    def _run(self, workflow_arn: str, run_id: str) -> dict[str, Any]:
        self._workflow(workflow_arn)
        if run_id not in self.runs:
            raise ServiceError("ResourceNotFoundException", f"run {run_id} of {workflow_arn} does not exist")
        return self.runs[run_id]

    def client(self) -> Any:
        """An `mwaa-serverless` client answered by this API (each call's answer added to its Stubber as it comes)."""
        import boto3
        from botocore.stub import Stubber

        client = boto3.client("mwaa-serverless", region_name=self.region)
        stubber = Stubber(client)
        stubber.activate()
        api = self

        class Answered:
            exceptions = client.exceptions
            meta = client.meta

            def __getattr__(self, name: str) -> Any:
                operation = getattr(api, name) if name in SERVERLESS_OPERATIONS else None
                if operation is None:
                    raise AttributeError(f"mwaa-serverless {name}: not a call the pipeline makes")

                def call(**kwargs: Any) -> Any:
                    api.calls.append(name)
                    try:
                        stubber.add_response(name, operation(**kwargs), kwargs)
                    except ServiceError as error:
                        stubber.add_client_error(name, error.code, str(error), http_status_code=404, expected_params=kwargs)
                    return getattr(client, name)(**kwargs)

                return call

        return Answered()


class ServiceError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _task_instance_id(task: dict[str, Any]) -> str:
    return f"{task['task_id']}-{task['try_number']}"


def _status(task: dict[str, Any]) -> str:
    return SERVERLESS_TASK_STATUS.get(str(task["state"]), "NONE")


def _now() -> datetime:
    return datetime.now(UTC)


# --- a deployed Lambda, in this process ---------------------------------------------------------------------------------
LAMBDA_PACKAGE = "pipeline_constructs.runtime.upload_lambdas"
"""The package of the folder the form's Lambda asset is staged from (flat: its handler modules are top-level there)."""


class DeployedLambda:
    """A Lambda function of a synthesized template run in this process: the handler its template names (a module of
    runtime/upload_lambdas), its environment as deployed (`resolve`: the template's values against the fake
    deployment), and every boto3 client the module made at import replaced by `clients[service]` (moto's, or a
    Stubber-backed one) for the call."""

    def __init__(self, logical_id: str, properties: dict[str, Any], resolve: Callable[[Any], Any], clients: dict[str, Any]) -> None:
        self.logical_id = logical_id
        self.handler = str(properties["Handler"])
        self.environment = {name: str(resolve(value)) for name, value in properties.get("Environment", {}).get("Variables", {}).items()}
        self.clients = clients

    def invoke(self, event: dict[str, Any]) -> tuple[Any, list[str], list[str]]:
        """The handler on `event`; returns (its answer, the lines it printed, the lines it logged)."""
        import importlib
        import io
        import logging
        import os

        from botocore.client import BaseClient

        module_name, function_name = self.handler.rsplit(".", 1)
        module = importlib.import_module(f"{LAMBDA_PACKAGE}.{module_name}")
        replaced = []
        for name, value in list(vars(module).items()):
            if isinstance(value, BaseClient):
                service = value.meta.service_model.service_name
                if service not in self.clients:
                    raise SystemExit(f"{self.handler}: no client for {service} (module attribute {name})")
                replaced.append((module, name, self.clients[service]))
        saved = {name: os.environ.get(name) for name in self.environment}
        printed, logged = io.StringIO(), []

        class Kept(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.name in ("root", module.__name__) or record.name.startswith(LAMBDA_PACKAGE):
                    logged.append(record.getMessage())

        kept = Kept(logging.INFO)
        root = logging.getLogger()
        os.environ.update(self.environment)
        root.addHandler(kept)
        try:
            with patched(*replaced), contextlib.redirect_stdout(printed):
                answer = getattr(module, function_name)(event, None)
        finally:
            root.removeHandler(kept)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return answer, printed.getvalue().splitlines(), logged
