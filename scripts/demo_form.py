"""`make demo FORM=<form> [FAIL_AT=load]`: one orchestration form run end to end on this machine, from its synth.

The app is synthesized in-process (no cdk-nag: a demo needs the artifacts, not the policy checks), dev's stacks are
"deployed" into moto (tests/deployed_environment.py), a generated CSV (scripts/make_sample_sales.py) is uploaded to
moto's versioned landing bucket, and the form's own definition runs with each step answered by the real local work:

- step_functions: the synthesized state machine in the ASL interpreter (aws-local-stepfunctions), each Task answered
  while the execution waits (scripts/asl_live.mjs): DynamoDB tasks on moto's ledger table (DynamoDB's conditions
  decide), the load lock by its Lambda's code, the clean job's Glue run by the real Glue entrypoint
  (runtime/glue_clean_job.py) on local Spark with the arguments the state machine and the job's defaults give it,
  the curated listing from the files Spark wrote, the Athena MERGE the state machine formats run on DuckDB over that
  Parquet, SNS captured. The crawler is answered as having crawled after the upload (a crawl cannot run locally).
- glue_workflow: the synthesized triggers walked (start trigger -> actions -> conditional triggers whose predicates
  the finished nodes meet), each job node the real job code (pending check, clean on Spark, load with its MERGE on
  DuckDB) with moto's S3, SQS, Glue run properties, SNS and ledger.

FAIL_AT=load: the first load fails (the Iceberg table is not there yet, so DuckDB refuses the MERGE), the form's
failure message is shown (the Step Functions failure reporter run on the execution's status-change event; the Glue
form's EventBridge rule's input template), the table is created, and `pipeline-ops rerun` recovers the upload
against the same stand-ins (moto, with Stubber for the APIs moto lacks); the new run is executed and the upload ends
loaded once. mwaa and mwaa_serverless exit 2 (see NOT_HERE).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
for entry in (str(ROOT), str(ROOT / "scripts"), str(ROOT / "constructs")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import tests.cdk_app  # noqa: E402,F401  (puts the project's Node first on PATH before jsii starts)

FORMS = ("step_functions", "glue_workflow", "mwaa", "mwaa_serverless")
FAIL_POINTS = ("load",)
ENV = "dev"
REGION = "eu-west-1"
QUERY = ROOT / "sql" / "athena" / "daily_revenue_by_store.sql"
NOT_HERE = {
    "mwaa": "the MWAA form's DAG runs in Airflow 3.3.1 (.venv-airflow), not in this demo: tests/airflow/test_pipeline_dag.py "
    "and test_dag_ledger.py run the DAG with dag.test(), its operators' calls answered by moto and Stubber, and check "
    "the ledger it keeps (make test runs them)",
    "mwaa_serverless": "the MWAA Serverless workflow runs in Airflow (dag-factory), not in this demo: "
    "tests/airflow/test_mwaa_serverless_yaml.py loads the synthesized YAML into a DAG and runs it, and "
    "tests/test_mwaa_serverless_ledger.py and test_mwaa_serverless_trigger.py cover its trigger and ledger",
}


# --- set-up ------------------------------------------------------------------------------------------------------
def synthesize() -> dict[tuple[str, str], dict[str, Any]]:
    """Every stage's templates, {(environment, stack id): template}, from one in-process synth without cdk-nag."""
    import aws_cdk as cdk

    from app import build_app
    from tests.cdk_app import pinned_context

    with tempfile.TemporaryDirectory(prefix="demo-form-") as outdir:
        app = cdk.App(context=pinned_context(), outdir=outdir)
        stages = build_app(app, nag=False, control_tower=False)
        assembly = app.synth()
        out = {}
        for stage in stages:
            for artifact in assembly.get_nested_assembly(stage.artifact_id).stacks:
                out[(stage.stage_name, artifact.stack_name.split("-", 1)[1])] = artifact.template
        return out


@contextlib.contextmanager
def fake_aws() -> Iterator[None]:
    """moto with fake credentials in REGION (no client can reach a real account), as tests/fake_aws.py does."""
    from moto import mock_aws

    saved = {name: os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    try:
        with mock_aws():
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def resource_of(template: dict[str, Any], kind: str, predicate: Any = None) -> tuple[str, dict[str, Any]]:
    found = [(k, r) for k, r in template["Resources"].items() if r["Type"] == kind and (predicate is None or predicate(k, r))]
    if len(found) != 1:
        raise SystemExit(f"expected one {kind} in the template, found {[k for k, _ in found]}")
    return found[0]


class World:
    """What every form's demo shares: the deployment in moto, the landing mirror, DuckDB's Athena, the printer."""

    def __init__(self, templates: dict[tuple[str, str], dict[str, Any]], form_stack: str, workdir: Path, spark: Any, out: TextIO) -> None:
        import boto3
        from demo_stand_ins import AthenaOnDuckDB, LocalMirror, StackValues

        from pipeline_constructs.contract import DatasetContract
        from stacks.stateful_stack import CONTRACT_PATH
        from tests.deployed_environment import FakeDeployment

        self.out = out
        self.workdir = workdir
        self.spark = spark
        self.started = time.perf_counter()
        self.deployment = FakeDeployment(templates, ENV, stacks=("Stateful", form_stack))
        self.stateful = templates[(ENV, "Stateful")]
        self.form_template = templates[(ENV, form_stack)]
        self.stateful_values = StackValues(self.deployment, "Stateful")
        self.form_values = StackValues(self.deployment, form_stack)
        self.mirror = LocalMirror(workdir / "s3")
        self.contract_path = workdir / "contract.json"
        self.contract_path.write_text(DatasetContract.from_file(CONTRACT_PATH).to_json())
        self.s3, self.dynamodb, self.glue, self.sqs, self.sns, self.cloudwatch = (
            boto3.client(name, region_name=REGION) for name in ("s3", "dynamodb", "glue", "sqs", "sns", "cloudwatch")
        )
        self.ledger_table = self.deployment.output("Stateful", "LedgerTableName")
        self.landing = self.deployment.output("Stateful", "LandingBucketName")
        self.curated = self.deployment.output("Stateful", "CuratedBucketName")
        _, runs = resource_of(self.stateful, "AWS::Glue::Table", lambda _k, r: "PartitionKeys" in r["Properties"]["TableInput"])
        _, target = resource_of(self.stateful, "AWS::Glue::Table", lambda _k, r: "OpenTableFormatInput" in r["Properties"])
        runs_location = str(self.stateful_values.resolve(runs["Properties"]["TableInput"]["StorageDescriptor"]["Location"]))
        iceberg = target["Properties"]["OpenTableFormatInput"]["IcebergInput"]["IcebergTableInput"]
        self.database = str(target["Properties"]["DatabaseName"])
        self.target_table = target["Properties"]["TableInput"]["Name"]
        self.athena = AthenaOnDuckDB(
            self.mirror.path(runs_location),
            runs_table=runs["Properties"]["TableInput"]["Name"],
            target_table=self.target_table,
            target_columns=[(f["Name"], f["Type"]) for f in iceberg["Schema"]["Fields"]],
        )
        self.messages: list[dict[str, Any]] = []
        self.clean_summaries: list[dict[str, Any]] = []

    # --- printing -------------------------------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    # --- the upload -----------------------------------------------------------------------------------------------
    def upload(self, key: str, rows: int) -> tuple[Any, dict[str, Any]]:
        """A generated CSV put into moto's landing bucket (and its local mirror); returns (Upload, its S3 event)."""
        from make_sample_sales import generate

        from pipeline_constructs.runtime.upload_ledger import Upload

        local = self.mirror.path(f"s3://{self.landing}/{key}")
        counts = generate(local, rows, days=3)
        answer = self.s3.put_object(Bucket=self.landing, Key=key, Body=local.read_bytes())
        upload = Upload(self.landing, key, answer["VersionId"], answer["ETag"].strip('"'))
        arrived = datetime.now(UTC).replace(microsecond=0)
        detail = {
            "version": "0",
            "bucket": {"name": self.landing},
            "object": {"key": key, "size": local.stat().st_size, "etag": upload.etag, "version-id": upload.version_id},
            "reason": "PutObject",
        }
        event = {
            "version": "0",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": arrived.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [f"arn:aws:s3:::{self.landing}"],
            "detail": detail,
        }
        bad = sum(v for k, v in counts.items() if k not in ("good", "duplicate"))
        self.say(
            f"upload: s3://{self.landing}/{key} (moto, versioned, version {upload.version_id}): {rows} rows, {bad} bad, {counts['duplicate']} duplicates"
        )
        return upload, event

    # --- the clean job ----------------------------------------------------------------------------------------------
    def local_job_argv(self, arguments: dict[str, str], **replace: str) -> list[str]:
        """Glue's merged job arguments as argv, with S3 roots pointed at the local mirror and the contract on disk."""
        merged = {**arguments, **{f"--{k}": v for k, v in replace.items()}}
        for name in ("--curated_root", "--quarantine_root"):
            if merged.get(name, "").startswith("s3://"):
                merged[name] = self.mirror.local(merged[name])
        merged["--contract_path"] = str(self.contract_path)
        argv: list[str] = []
        for name, value in merged.items():
            if name.startswith("--enable-") or name in ("--job-language", "library-set", "--extra-py-files", "--extra-files"):
                continue
            argv += [name, value]
        return argv

    def run_clean_main(self, argv: list[str], **kwargs: Any) -> Any:
        """glue_clean_job.main on the local Spark; its summary line (stdout) is kept, not printed."""
        from pipeline_constructs.runtime import glue_clean_job

        captured = io.StringIO()
        try:
            with contextlib.redirect_stdout(captured):
                return glue_clean_job.main(argv, spark=self.spark, cloudwatch=self.cloudwatch, **kwargs)
        finally:
            lines = [line for line in captured.getvalue().splitlines() if line.startswith("{")]
            if lines:
                self.clean_summaries.append(json.loads(lines[-1]))

    # --- the result -------------------------------------------------------------------------------------------------
    def record(self, upload: Any, form: str) -> dict[str, Any]:
        from pipeline_constructs.runtime.upload_ledger import UploadLedger

        record = UploadLedger(self.dynamodb, self.ledger_table, form=form).get(upload)
        assert record is not None, upload
        return record

    def show_record(self, record: dict[str, Any]) -> None:
        keys = (
            "object",
            "version",
            "state",
            "step",
            "error",
            "cause",
            "form",
            "rows_in",
            "rows_out",
            "rows_quarantined",
            "duplicates_dropped",
            "finished_at",
        )
        self.say("ledger record (moto DynamoDB):")
        self.say("  " + json.dumps({k: record.get(k) for k in keys if k in record}, default=str))
        for run in record.get("runs", []):
            self.say("  run " + json.dumps({k: run.get(k) for k in ("run_id", "outcome", "execution", "error") if run.get(k)}, default=str))

    def results(self, run_id: str) -> dict[str, Any]:
        """The loaded table against the run's curated rows, and the shipped query over the loaded table."""
        from athena_on_duckdb import format_table, translate

        columns = ", ".join(f'"{name}"' for name, _ in self.athena.target_columns)
        _, table_rows = self.athena.rows(f'SELECT {columns} FROM "{self.target_table}" ORDER BY 1', self.database)
        from demo_stand_ins import duckdb_type

        as_table = ", ".join(f'CAST("{name}" AS {duckdb_type(kind)})' for name, kind in self.athena.target_columns)
        _, curated = self.athena.rows(
            f"SELECT {as_table} FROM \"{self.athena.runs_table}\" WHERE run_id = '{run_id}' ORDER BY 1", self.database
        )
        names, revenue = self.athena.rows(translate(QUERY.read_text(encoding="utf-8")), self.database)
        self.say(f"query: {QUERY.relative_to(ROOT)} on DuckDB over the loaded table {self.database}.{self.target_table}:")
        self.say(format_table(names, revenue, limit=8))
        same = table_rows == curated
        self.say(f"loaded table: {len(table_rows)} rows; the run's curated rows: {len(curated)}; identical: {same}")
        return {"table_rows": len(table_rows), "curated_rows": len(curated), "rows_match": same, "query_rows": len(revenue)}


def print_step(world: World, origin: float, nested: set[str]) -> Any:
    def show(step: Any) -> None:
        offset = (step.entered / 1000) - origin
        indent = "    " if step.state in nested else "  "
        marks = {"failed": " FAILED", "caught": " (caught)"}.get(step.outcome, "")
        retries = f" retried {step.retries}x" if step.retries else ""
        note = f"  {step.note}" if step.note else ""
        world.say(f"{offset:8.2f}s {step.millis:7d} ms{indent}{step.state} [{step.state_type}]{marks}{retries}{note}")

    return show


# --- Step Functions ------------------------------------------------------------------------------------------------
class StepFunctionsDemo:
    def __init__(self, world: World) -> None:
        from tests.asl_runner import definition_from_template

        self.world = world
        template = world.form_template
        placeholders = {f"{ENV}-Stateful.{key}": value for key, value in world.deployment.outputs["Stateful"].items()}
        self.definition = self._deployed(definition_from_template(template), placeholders)
        self.reporter = self._deployed(definition_from_template(template, "FailureReporter"), placeholders)
        self.machine_arn = world.deployment.output("StepFunctions", "StateMachineArn")
        _, job = resource_of(world.stateful, "AWS::Glue::Job", lambda k, _r: k.startswith("CleanJob"))
        self.job_defaults = world.stateful_values.job_arguments(job)
        self.nested = self._nested(self.definition) | self._nested(self.reporter)
        self.notes: dict[str, str] = {}
        self.load_queries: list[str] = []

    @staticmethod
    def _deployed(definition: dict[str, Any], placeholders: dict[str, str]) -> dict[str, Any]:
        """The definition with the stateful stack's outputs in place of their placeholders, as CloudFormation resolves them."""
        text = json.dumps(definition)
        for placeholder, value in placeholders.items():
            text = text.replace(placeholder, value)
        return dict(json.loads(text))

    @staticmethod
    def _nested(definition: dict[str, Any]) -> set[str]:
        out: set[str] = set()
        for state in definition["States"].values():
            for branch in state.get("Branches", []):
                out |= set(branch["States"]) | StepFunctionsDemo._nested(branch)
        return out

    # --- the Task answers -------------------------------------------------------------------------------------------
    def handlers(self, definition: dict[str, Any], execution: dict[str, Any]) -> dict[str, Any]:
        states: dict[str, Any] = {}
        stack = [definition]
        while stack:
            machine = stack.pop()
            for name, state in machine["States"].items():
                states[name] = state
                stack += state.get("Branches", [])
        by_resource = {
            "arn:aws:states:::dynamodb:updateItem": self.dynamodb("update_item"),
            "arn:aws:states:::dynamodb:getItem": self.dynamodb("get_item"),
            "arn:aws:states:::dynamodb:deleteItem": self.dynamodb("delete_item"),
            "arn:aws:states:::aws-sdk:glue:getCrawler": self.get_crawler(execution),
            "arn:aws:states:::aws-sdk:glue:startCrawler": lambda _input: {},
            "arn:aws:states:::glue:startJobRun.sync": self.clean_job,
            "arn:aws:states:::aws-sdk:s3:listObjectsV2": self.list_objects,
            "arn:aws:states:::lambda:invoke": self.load_lock,
            "arn:aws:states:::aws-sdk:athena:startQueryExecution": self.start_query,
            "arn:aws:states:::aws-sdk:athena:getQueryExecution": self.get_query,
            "arn:aws:states:::aws-sdk:athena:stopQueryExecution": lambda q: self.world.athena.stop_query_execution(**q),
            "arn:aws:states:::sns:publish": self.publish,
        }
        out = {}
        for name, state in states.items():
            if state["Type"] == "Task":
                handler = by_resource.get(state["Resource"])
                if handler is None:
                    continue  # the runner fails the execution on a Task without an answer, naming it
                out[name] = self._noting(name, handler)
        return out

    def _noting(self, name: str, handler: Any) -> Any:
        def answer(task_input: Any) -> Any:
            self.current = name
            return handler(task_input)

        return answer

    def note(self, text: str) -> None:
        self.notes[self.current] = text

    def dynamodb(self, operation: str) -> Any:
        from asl_live import TaskError

        from pipeline_constructs.runtime.upload_ledger import from_item

        def call(request: dict[str, Any]) -> dict[str, Any]:
            client = self.world.dynamodb
            try:
                if operation == "update_item":
                    answer = client.update_item(**request, ReturnValues="ALL_NEW")
                    record = from_item(answer["Attributes"])
                    self.note(f"moto DynamoDB UpdateItem -> {record['state']} / {record['step']}")
                    return {}
                answer = getattr(client, operation)(**request)
            except client.exceptions.ConditionalCheckFailedException as refused:
                self.note(f"moto DynamoDB {operation}: condition refused")
                raise TaskError("DynamoDB.ConditionalCheckFailedException", str(refused)) from None
            self.note(f"moto DynamoDB {operation}")
            return {k: v for k, v in answer.items() if k != "ResponseMetadata"}

        return call

    def get_crawler(self, execution: dict[str, Any]) -> Any:
        def crawler(request: dict[str, Any]) -> dict[str, Any]:
            arrived = datetime.fromisoformat(execution["time"].replace("Z", "+00:00")) + timedelta(seconds=1)
            self.note("answered: a crawl that began after the upload succeeded (no crawler runs locally)")
            crawl = {"Status": "SUCCEEDED", "StartTime": arrived.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
            return {"Crawler": {"Name": request["Name"], "State": "READY", "LastCrawl": crawl}}

        return crawler

    def clean_job(self, request: dict[str, Any]) -> dict[str, Any]:
        """The Glue run: the real entrypoint on local Spark, with the job's defaults and the state machine's arguments."""
        from asl_live import TaskError

        from pipeline_constructs.runtime import glue_clean_job
        from pipeline_constructs.runtime.clean_transform import CleanRunFailed

        arguments = {**self.job_defaults, **request["Arguments"], "--JOB_NAME": request["JobName"]}
        run_id = arguments["--run_id"]
        arguments["--JOB_RUN_ID"] = f"jr_{run_id}"
        (uri,) = json.loads(arguments["--source_uris"])
        (version,) = json.loads(arguments["--source_versions"])
        local = self.world.local_job_argv(arguments, source_uris=json.dumps([self.world.mirror.local(uri)]))
        for name in ("--ledger_table", "--source_versions"):  # recorded below against the s3:// upload
            index = local.index(name)
            del local[index : index + 2]
        started = time.perf_counter()
        try:
            glue_clean_job.check_source_versions(self.world.s3, [uri], [version])
            result = self.world.run_clean_main(local)
            glue_clean_job.check_source_versions(self.world.s3, [uri], [version])
        except CleanRunFailed as failed:
            result = failed.result
            self._record_counts(arguments, result)
            self.note(f"clean job FAILED: {failed}")
            raise TaskError("States.TaskFailed", json.dumps({"JobRunState": "FAILED", "ErrorMessage": str(failed)})) from None
        self._record_counts(arguments, result)
        seconds = time.perf_counter() - started
        self.note(
            f"glue_clean_job.main on local Spark: {result.rows_in} rows in, {result.rows_out} out, "
            f"{result.rows_quarantined} quarantined, {result.duplicates_dropped} duplicates ({seconds:.1f} s)"
        )
        return {
            "Id": arguments["--JOB_RUN_ID"],
            "JobName": request["JobName"],
            "JobRunState": "SUCCEEDED",
            "Attempt": 0,
            "ExecutionTime": int(seconds),
        }

    def _record_counts(self, arguments: dict[str, str], result: Any) -> None:
        from pipeline_constructs.runtime import glue_clean_job

        argv = [
            x
            for name, value in arguments.items()
            if name
            in (
                "--source_uris",
                "--source_versions",
                "--run_id",
                "--ledger_table",
                "--ledger_ttl_days",
                "--pipeline_form",
                "--curated_root",
                "--quarantine_root",
                "--contract_path",
            )
            for x in (name, value)
        ]
        glue_clean_job.record_counts_in_ledger(glue_clean_job.resolve_args(argv), result, self.world.dynamodb)

    def list_objects(self, request: dict[str, Any]) -> dict[str, Any]:
        keys = self.world.mirror.keys(request["Bucket"], request["Prefix"])
        shown = keys[: request.get("MaxKeys", 1000)]
        self.note(f"{len(keys)} Parquet files under s3://{request['Bucket']}/{request['Prefix']}* (as Spark wrote them)")
        return {
            "Name": request["Bucket"],
            "Prefix": request["Prefix"],
            "KeyCount": len(shown),
            "MaxKeys": request.get("MaxKeys", 1000),
            "IsTruncated": len(keys) > len(shown),
        }

    def load_lock(self, request: dict[str, Any]) -> dict[str, Any]:
        from asl_live import TaskError

        from pipeline_constructs.runtime.load_lock.load_lock import LoadLockHeld, take

        try:
            payload = take(self.world.dynamodb, request["Payload"], datetime.now(UTC))
        except LoadLockHeld as held:
            raise TaskError("LoadLockHeld", json.dumps({"errorMessage": str(held), "errorType": "LoadLockHeld"})) from None
        self.note(f"load lock taken (the lock Lambda's code on moto), lease until {payload['lease_expires_at']}")
        return {"Payload": payload, "StatusCode": 200, "ExecutedVersion": "$LATEST"}

    def start_query(self, request: dict[str, Any]) -> dict[str, Any]:
        self.load_queries.append(request["QueryString"])
        answer = self.world.athena.start_query_execution(**request)
        status = self.world.athena.queries[answer["QueryExecutionId"]]["Status"]
        self.note(
            f"the MERGE on DuckDB: {status['State']}" + (f" ({status['StateChangeReason']})" if "StateChangeReason" in status else "")
        )
        return answer

    def get_query(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = self.world.athena.get_query_execution(**request)
        self.note(f"query {answer['QueryExecution']['Status']['State']}")
        return answer

    def publish(self, request: dict[str, Any]) -> dict[str, Any]:
        message = request["Message"]
        self.world.messages.append({"subject": request.get("Subject"), "message": message})
        body = message if isinstance(message, str) else json.dumps(message)
        answer = self.world.sns.publish(TopicArn=request["TopicArn"], Message=body, Subject=request.get("Subject", "")[:100])
        self.note("published to the alert topic (moto SNS)")
        return {"MessageId": answer["MessageId"]}

    # --- one execution ----------------------------------------------------------------------------------------------
    def execute(
        self,
        execution: dict[str, Any],
        name: str,
        arn: str,
        *,
        definition: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Any:
        from asl_live import run_live

        definition = definition or self.definition
        self.world.say(
            f"execution {name} ({'failure reporter' if definition is self.reporter else 'state machine'}, in the ASL interpreter):"
        )
        context = {"Execution": {"Name": name, "Id": arn}, "StateMachine": {"Name": arn.split(":")[-2], "Id": self.machine_arn}}
        origin = time.time()
        run = run_live(
            definition,
            execution,
            {**self.handlers(definition, execution), **(extra or {})},
            context=context,
            notes=self.notes,
            on_step=print_step(self.world, origin, self.nested),
        )
        self.world.say(
            f"  -> {run.result.status}" + (f": {run.result.error}: {(run.result.cause or '')[:300]}" if run.result.error else "")
        )
        return run

    def report(self, run: Any, execution: dict[str, Any], name: str, arn: str) -> dict[str, Any]:
        """The failure reporter on the execution's status-change event (EventBridge -> the Express state machine)."""
        from tests.asl_runner import history_answer, status_change_event

        event = status_change_event(run.result, execution, name=name, execution_arn=arn)
        history = history_answer(run.result)["result"]

        def read_history(_request: Any) -> dict[str, Any]:
            self.note("the failed execution's history, as the interpreter ran it")
            return dict(history)

        extra = {"Read Execution History": self._noting("Read Execution History", read_history)}
        express = arn.replace(":execution:", ":express:")
        reported = self.execute(event, f"report-{name}", express, definition=self.reporter, extra=extra)
        if not self.world.messages:
            raise SystemExit(f"the failure reporter published nothing: {reported.result}")
        return self.world.messages[-1]


def demo_step_functions(world: World, *, rows: int, fail_at: str | None) -> dict[str, Any]:
    import boto3
    from botocore.stub import Stubber

    demo = StepFunctionsDemo(world)
    prefix = world.deployment.output("StepFunctions", "LandingPrefix")
    upload, event = world.upload(f"{prefix}2024/05/store-sales.csv", rows)
    if fail_at != "load":
        world.athena.create_target_table(world.database)
    else:
        world.say(f"FAIL_AT=load: the Iceberg table {world.database}.{world.target_table} is not there yet, so the MERGE fails")
    name = "upload-0001"
    arn = f"{demo.machine_arn.replace(':stateMachine:', ':execution:')}:{name}"
    run = demo.execute(event, name, arn)
    runs = [run]
    failure = None
    if run.result.status != "SUCCEEDED":
        failure = demo.report(run, event, name, arn)
        world.say("failure message (SNS):")
        world.say(f"  Subject: {failure['subject']}")
        world.say("  " + json.dumps(failure["message"], default=str))
        world.show_record(world.record(upload, "step_functions"))
        world.athena.create_target_table(world.database)
        world.say(f"the cause is fixed: {world.database}.{world.target_table} is created (in AWS: the stateful stack's table)")
        sfn = boto3.client("stepfunctions", region_name=REGION)
        stubbed = boto3.client("stepfunctions", region_name=REGION)
        stubber = Stubber(stubbed)
        stubber.add_response(
            "describe_execution",
            {
                "executionArn": arn,
                "stateMachineArn": demo.machine_arn,
                "status": run.result.status,
                "startDate": datetime.now(UTC),
                "redriveStatus": "REDRIVABLE",
            },
            {"executionArn": arn},
        )
        state_types = {step.state: step.state_type for step in run.steps}
        events = [{"id": len(run.result.states_entered) + 1, "timestamp": datetime.now(UTC), "type": "ExecutionFailed"}]
        for number, state in reversed(list(enumerate(run.result.states_entered, start=1))):
            events.append(
                {
                    "id": number,
                    "timestamp": datetime.now(UTC),
                    "type": f"{state_types.get(state, 'Task')}StateEntered",
                    "stateEnteredEventDetails": {"name": state},
                }
            )
        stubber.add_response("get_execution_history", {"events": events[:5]}, {"executionArn": arn, "reverseOrder": True, "maxResults": 5})
        stubber.activate()
        client = RoutedStepFunctions(sfn, stubbed)
        action = pipeline_ops(world, "rerun", upload.uri, stepfunctions=client)
        stubber.assert_no_pending_responses()
        started = sfn.describe_execution(executionArn=action["run"])
        run = demo.execute(json.loads(started["input"]), started["name"], started["executionArn"])
        runs.append(run)
    record = world.record(upload, "step_functions")
    world.show_record(record)
    results = world.results(record["runs"][-1]["run_id"])
    return {
        "form": "step_functions",
        "upload": upload.uri,
        "executions": [r.result.status for r in runs],
        "steps": [[{"state": s.state, "ms": s.millis, "outcome": s.outcome} for s in r.steps] for r in runs],
        "failure_message": failure,
        "record": {"state": record["state"], "runs": [run_.get("outcome") for run_ in record.get("runs", [])]},
        "merges_succeeded": sum(
            1 for q in world.athena.queries.values() if q["Query"].startswith("MERGE") and q["Status"]["State"] == "SUCCEEDED"
        ),
        **results,
    }


def RoutedStepFunctions(moto: Any, stubbed: Any) -> Any:  # noqa: N802
    """DescribeExecution and GetExecutionHistory of the interpreter's execution from a Stubber (moto never ran it),
    StartExecution and the rest on moto (the deployment's state machine)."""
    from demo_stand_ins import RoutedClient

    return RoutedClient(moto, stubbed, ("describe_execution", "get_execution_history"))


def pipeline_ops(world: World, *argv: str, **clients: Any) -> dict[str, Any]:
    """`pipeline-ops --env dev --json ...` against the deployment in moto; prints the command and its answer."""
    from pipeline_constructs.operations.cli import main
    from tests.deployed_environment import FakeSession

    out = io.StringIO()
    world.say(f"$ pipeline-ops --env {ENV} {' '.join(argv)}")
    code = main(["--env", ENV, "--json", *argv], session=FakeSession(world.deployment, **clients), out=out, now=datetime.now(UTC))
    answer = json.loads(out.getvalue())
    world.say(f"  exit {code}: " + json.dumps(answer, default=str)[:600])
    if code != 0:
        raise SystemExit(f"pipeline-ops {' '.join(argv)} exited {code}")
    return dict(answer)


# --- Glue Workflow -------------------------------------------------------------------------------------------------
class GlueWorkflowDemo:
    def __init__(self, world: World) -> None:
        self.world = world
        template = world.form_template
        self.workflow_id, _ = resource_of(template, "AWS::Glue::Workflow")
        self.workflow = world.deployment.output("GlueWorkflow", "WorkflowName")
        self.triggers = {
            k: r["Properties"]
            for k, r in template["Resources"].items()
            if r["Type"] == "AWS::Glue::Trigger" and r["Properties"].get("WorkflowName") == {"Ref": self.workflow_id}
        }
        self.jobs = {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::Glue::Job"}
        self.crawlers = {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::Glue::Crawler"}
        self.rules = {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == "AWS::Events::Rule"}
        self.names = {k: str(world.form_values.resolve({"Ref": k})) for k in [*self.jobs, *self.crawlers]}
        inbox_id = next(k for k, r in template["Resources"].items() if r["Type"] == "AWS::SQS::Queue" and "Inbox" in k)
        self.inbox = str(world.form_values.resolve({"Ref": inbox_id}))
        self.failures: list[tuple[str, str, Exception]] = []

    def kind(self, job_id: str) -> str:
        arguments = self.jobs[job_id]["Properties"].get("DefaultArguments", {})
        if "--athena_sql_template" in arguments or "--redshift_sql_templates" in arguments:
            return "load"
        if "--curated_root" in arguments:
            return "clean"
        return "pending_check"

    def node_of(self, action: dict[str, Any]) -> str:
        return str(action.get("JobName", action.get("CrawlerName", {})).get("Ref"))

    def start_trigger(self) -> tuple[str, dict[str, Any]]:
        starts = [(k, t) for k, t in self.triggers.items() if t["Type"] in ("SCHEDULED", "EVENT", "ON_DEMAND")]
        if len(starts) != 1:
            raise SystemExit(f"expected one start trigger in the workflow, found {[k for k, _ in starts]}")
        return starts[0]

    def fired_by(self, states: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
        """The conditional triggers whose predicate the finished nodes meet."""
        out = []
        for trigger_id, trigger in self.triggers.items():
            if trigger["Type"] != "CONDITIONAL":
                continue
            predicate = trigger.get("Predicate", {})
            met = [
                states.get(str((c.get("JobName") or c.get("CrawlerName"))["Ref"])) == (c.get("State") or c.get("CrawlState"))
                for c in predicate.get("Conditions", [])
            ]
            if met and (any(met) if predicate.get("Logical") == "ANY" else all(met)):
                out.append((trigger_id, trigger))
        return out

    # --- one workflow run -------------------------------------------------------------------------------------------
    def walk(self, run_id: str, first: list[str], how: str) -> dict[str, str]:
        """Run `first`'s nodes, then every node a conditional trigger starts, until none fires; {node id: end state}."""
        states: dict[str, str] = {}
        fired: set[str] = set()
        queue = [(node, how) for node in first]
        self.world.say(f"workflow run {run_id} of {self.workflow} (triggers walked from the synth):")
        origin = time.perf_counter()
        while queue:
            node, reason = queue.pop(0)
            started = time.perf_counter()
            state, note = self.run_node(node, run_id)
            states[node] = state
            offset = started - origin
            millis = int((time.perf_counter() - started) * 1000)
            mark = "" if state == "SUCCEEDED" else f" {state}"
            self.world.say(f"{offset:8.2f}s {millis:7d} ms  {node} [{self.node_kind(node)}]{mark}  <- {reason}; {note}")
            for trigger_id, trigger in self.fired_by(states):
                if trigger_id in fired:
                    continue
                fired.add(trigger_id)
                queue += [(self.node_of(action), f"trigger {trigger_id}") for action in trigger["Actions"]]
        return states

    def node_kind(self, node: str) -> str:
        return "crawler" if node in self.crawlers else f"job: {self.kind(node)}"

    def run_node(self, node: str, run_id: str) -> tuple[str, str]:
        if node in self.crawlers:
            return "SUCCEEDED", "answered SUCCEEDED (no crawler runs locally; the clean job reads the CSV by the contract)"
        arguments = {
            **self.world.form_values.job_arguments(self.jobs[node]),
            "--WORKFLOW_NAME": self.workflow,
            "--WORKFLOW_RUN_ID": run_id,
            "--JOB_NAME": self.names[node],
            "--JOB_RUN_ID": f"jr_{run_id}_{self.kind(node)}",
        }
        try:
            return "SUCCEEDED", getattr(self, f"run_{self.kind(node)}")(arguments)
        except Exception as error:  # the job run fails; the form's EventBridge rule reports it
            self.failures.append((node, f"jr_{run_id}_{self.kind(node)}", error))
            return "FAILED", f"{type(error).__name__}: {str(error)[:300]}"

    def run_pending_check(self, arguments: dict[str, str]) -> str:
        from pipeline_constructs.runtime import glue_pending_check

        args = glue_pending_check.resolve_args(self.world.local_job_argv(arguments))
        answer = glue_pending_check.check(args, {"dynamodb": self.world.dynamodb, "sqs": self.world.sqs, "glue": self.world.glue})
        if answer["empty"]:
            raise RuntimeError(f"nothing pending: {answer.get('message')}")
        return f"glue_pending_check.check: pending {json.dumps(answer['pending'], default=str)}"

    def run_clean(self, arguments: dict[str, str]) -> str:
        world = self.world
        argv = world.local_job_argv(arguments)
        clients = {"sqs": world.sqs, "glue": world.glue, "sns": world.sns, "s3": world.s3}
        result = world.run_clean_main(argv, read_from=world.mirror.local, dynamodb=world.dynamodb, clients=clients)
        if result is None:
            return "glue_clean_job.main: nothing to take"
        return (
            f"glue_clean_job.main on local Spark: {result.files_in} file(s), {result.rows_in} rows in, {result.rows_out} out, "
            f"{result.rows_quarantined} quarantined, {result.duplicates_dropped} duplicates"
        )

    def run_load(self, arguments: dict[str, str]) -> str:
        from pipeline_constructs.runtime.glue_load_job import resolve_args, run_load

        args = resolve_args(self.world.local_job_argv(arguments))
        clients = {"athena": self.world.athena, "glue": self.world.glue, "dynamodb": self.world.dynamodb}
        summary = run_load(args, clients, sleep=lambda _s: None)
        return f"glue_load_job.run_load: the MERGE on DuckDB, {summary.get('loaded_uploads')} upload(s) loaded"

    def failure_message(self, node: str, job_run_id: str, error: Exception) -> dict[str, Any]:
        """What the form's failure rule sends for the job's FAILED state change: its input template, rendered."""
        from demo_stand_ins import render_input_template

        for rule_id, rule in self.rules.items():
            if rule["EventPattern"].get("detail", {}).get("jobName") == [{"Ref": node}]:
                target = rule["Targets"][0]
                transformer = target["InputTransformer"]
                template = str(self.world.form_values.resolve(transformer["InputTemplate"]))
                event = {
                    "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "detail": {"jobName": self.names[node], "jobRunId": job_run_id, "state": "FAILED", "message": str(error)},
                }
                message = json.loads(render_input_template(template, transformer["InputPathsMap"], event))
                self.world.messages.append({"rule": rule_id, "message": message})
                return {"rule": rule_id, "message": message}
        raise SystemExit(f"no failure rule for {node}")

    def graph(self, run_id: str, states: dict[str, str]) -> dict[str, Any]:
        """GetWorkflowRun's answer (with its graph) for a run the demo walked: moto keeps no node states."""
        nodes = []
        for node, state in states.items():
            if node in self.crawlers:
                nodes.append(
                    {"UniqueId": node, "Type": "CRAWLER", "Name": self.names[node], "CrawlerDetails": {"Crawls": [{"State": state}]}}
                )
            else:
                nodes.append(
                    {"UniqueId": node, "Type": "JOB", "Name": self.names[node], "JobDetails": {"JobRuns": [{"JobRunState": state}]}}
                )
        return {
            "Run": {
                "Name": self.workflow,
                "WorkflowRunId": run_id,
                "StartedOn": datetime.now(UTC),
                "Status": "COMPLETED",
                "Graph": {"Nodes": nodes},
            }
        }


def demo_glue_workflow(world: World, *, rows: int, fail_at: str | None) -> dict[str, Any]:
    import boto3
    from botocore.stub import Stubber

    demo = GlueWorkflowDemo(world)
    prefix = world.deployment.output("GlueWorkflow", "LandingPrefix")
    upload, event = world.upload(f"{prefix}store-sales-2024-05.csv", rows)
    world.sqs.send_message(QueueUrl=demo.inbox, MessageBody=json.dumps(event))
    world.say(f"the upload rule delivers its event to the form's inbox queue (moto SQS {demo.inbox.rsplit('/', 1)[-1]})")
    if fail_at != "load":
        world.athena.create_target_table(world.database)
    else:
        world.say(f"FAIL_AT=load: the Iceberg table {world.database}.{world.target_table} is not there yet, so the MERGE fails")
    trigger_id, trigger = demo.start_trigger()
    run_id = world.glue.start_workflow_run(Name=demo.workflow)["RunId"]
    how = f"start trigger {trigger_id} ({trigger['Type']}{' ' + trigger['Schedule'] if 'Schedule' in trigger else ''})"
    states = demo.walk(run_id, [demo.node_of(a) for a in trigger["Actions"]], how)
    walks = [states]
    failure = None
    if demo.failures:
        node, job_run_id, error = demo.failures[-1]
        failure = demo.failure_message(node, job_run_id, error)
        world.say(f"failure message (SNS, by the EventBridge rule {failure['rule']}):")
        world.say("  " + json.dumps(failure["message"], default=str))
        world.show_record(world.record(upload, "glue_workflow"))
        world.athena.create_target_table(world.database)
        world.say(f"the cause is fixed: {world.database}.{world.target_table} is created (in AWS: the stateful stack's table)")
        resumed = world.glue.start_workflow_run(Name=demo.workflow)["RunId"]  # the run Glue's resume starts, in moto
        clean = next(n for n in demo.jobs if demo.kind(n) == "clean")
        stubbed = boto3.client("glue", region_name=REGION)
        stubber = Stubber(stubbed)
        stubber.add_response("get_workflow_run", demo.graph(run_id, states), {"Name": demo.workflow, "RunId": run_id, "IncludeGraph": True})
        stubber.add_response(
            "resume_workflow_run", {"RunId": resumed, "NodeIds": [clean]}, {"Name": demo.workflow, "RunId": run_id, "NodeIds": [clean]}
        )
        stubber.activate()
        from demo_stand_ins import RoutedClient

        glue = RoutedClient(world.glue, stubbed, ("get_workflow_run", "resume_workflow_run"))
        action = pipeline_ops(world, "rerun", upload.uri, glue=glue)
        stubber.assert_no_pending_responses()
        demo.failures = []
        walks.append(demo.walk(str(action["run"]), [clean], f"resume_workflow_run ({action.get('note', '')})"))
    record = world.record(upload, "glue_workflow")
    world.show_record(record)
    results = world.results(record["runs"][-1]["run_id"])
    return {
        "form": "glue_workflow",
        "upload": upload.uri,
        "executions": ["SUCCEEDED" if all(s == "SUCCEEDED" for s in w.values()) else "FAILED" for w in walks],
        "steps": [[{"state": node, "outcome": state} for node, state in w.items()] for w in walks],
        "failure_message": failure,
        "record": {"state": record["state"], "runs": [run_.get("outcome") for run_ in record.get("runs", [])]},
        "merges_succeeded": sum(
            1 for q in world.athena.queries.values() if q["Query"].startswith("MERGE") and q["Status"]["State"] == "SUCCEEDED"
        ),
        **results,
    }


# --- entry point ---------------------------------------------------------------------------------------------------
FORM_STACKS = {"step_functions": "StepFunctions", "glue_workflow": "GlueWorkflow"}
DEMOS = {"step_functions": demo_step_functions, "glue_workflow": demo_glue_workflow}


def run_demo(
    form: str,
    *,
    fail_at: str | None = None,
    rows: int = 2000,
    workdir: Path,
    templates: dict[tuple[str, str], dict[str, Any]] | None = None,
    spark: Any = None,
    out: TextIO = sys.stdout,
) -> dict[str, Any]:
    """One form's demo (in-process: the tests pass their synth and SparkSession); returns its summary."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.perf_counter()
    if templates is None:
        print("synthesizing the app (cdk-nag off) ... ", end="", file=out, flush=True)
        templates = synthesize()
        print(f"{time.perf_counter() - started:.0f} s", file=out, flush=True)
    own_spark = spark is None
    if own_spark:
        from pipeline_constructs.runtime.spark_settings import local_session

        spark = local_session(app_name="demo-form", cores=2)
    try:
        with fake_aws():
            world = World(templates, FORM_STACKS[form], workdir, spark, out)
            world.say(f"{ENV}'s {FORM_STACKS[form]} and Stateful stacks deployed into moto (tests/deployed_environment.py)")
            summary = DEMOS[form](world, rows=rows, fail_at=fail_at)
    finally:
        if own_spark:
            spark.stop()
    summary["fail_at"] = fail_at
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(f"demo {form}{' FAIL_AT=' + fail_at if fail_at else ''} finished in {summary['seconds']:.0f} s", file=out)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--form", required=True, choices=FORMS)
    parser.add_argument("--fail-at", default="", help="load: the first load fails, then pipeline-ops recovers it")
    parser.add_argument("--rows", type=int, default=2000, help="rows of the generated upload (default: 2000)")
    parser.add_argument("--workdir", default=str(ROOT / ".demo" / "forms"), help="where it writes (default: .demo/forms/)")
    parser.add_argument("--json", dest="json_path", help="also write the summary as JSON to this file")
    args = parser.parse_args(argv)
    if args.fail_at and args.fail_at not in FAIL_POINTS:
        parser.error(f"--fail-at {args.fail_at!r}: one of {', '.join(FAIL_POINTS)}")
    if args.form in NOT_HERE:
        print(f"make demo FORM={args.form}: not available. {NOT_HERE[args.form]}.", file=sys.stderr)
        return 2
    summary = run_demo(args.form, fail_at=args.fail_at or None, rows=args.rows, workdir=Path(args.workdir) / args.form)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(summary, indent=2, default=str))
    ok = summary["record"]["state"] == "loaded" and summary["rows_match"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
