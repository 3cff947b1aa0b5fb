"""`make demo FORM=<form> [FAIL_AT=load]`: one orchestration form run end to end on this machine, from its synth.

The app is synthesized in-process (no cdk-nag: a demo needs the artifacts, not the policy checks), the form's
environment's stacks are "deployed" into moto (tests/deployed_environment.py; dev, where the app deploys
mwaa_serverless, and staging for mwaa, the only environment the app deploys it in), a generated CSV (scripts/make_sample_sales.py) is uploaded to moto's versioned
landing bucket, and the form's own definition runs with each step answered by the real local work:

- step_functions: the synthesized state machine in the ASL interpreter (aws-local-stepfunctions), each Task answered
  while the execution waits (scripts/asl_live.mjs): DynamoDB tasks on moto's ledger table (DynamoDB's conditions
  decide), the load lock by its Lambda's code, the clean job's Glue run by the real Glue entrypoint
  (runtime/glue_clean_job.py) on local Spark with the arguments the state machine and the job's defaults give it,
  the curated listing from the files Spark wrote, the Athena MERGE the state machine formats run on DuckDB over that
  Parquet, SNS captured. The crawler is answered as having crawled after the upload (a crawl cannot run locally).
- glue_workflow: the synthesized triggers walked (start trigger -> actions -> conditional triggers whose predicates
  the finished nodes meet), each job node the real job code (pending check, clean on Spark, load with its MERGE on
  DuckDB) with moto's S3, SQS, Glue run properties, SNS and ledger.
- mwaa: the DAG folder the Mwaa stack deploys (its BucketDeployment's assets from the cloud assembly, the deploy-time
  values filled in) parsed and run by Airflow 3.3.1 in .venv-airflow (scripts/demo_airflow.py), started by the
  trigger's REST request (the run id it derives from the object). The DAG's own operators make their AWS calls
  through boto3 to a local endpoint into this process's moto (scripts/demo_airflow_stand_ins.py): the crawler is
  moto's (it crawls nothing), the Glue job run is the real clean job on local Spark, the rows check lists what Spark
  wrote, the Redshift Data batch runs on DuckDB (CREATE and MERGE as sqlglot translates them, COPY as a read of the
  run's Parquet), the DAG's ledger writes and its failure callback's SNS message land in the same moto. The one
  change to the deployed configuration: no retries and 1 s polls (DEMO_DAG_SETTINGS).
- mwaa_serverless: the workflow YAML the MwaaServerless stack deploys (its BucketDeployment's asset from the cloud
  assembly, the deploy-time values filled in, DEMO_DAG_SETTINGS written into its tasks) built into its DAG by
  dag-factory and run by the same Airflow, its operators' AWS calls to the same endpoint (the Athena MERGE on DuckDB,
  as the Step Functions demo runs it). The stack's Lambdas run here with their deployed environment, on moto: the
  upload rule's event goes to the trigger's queue and its batch to the trigger Lambda (the ledger takes the upload,
  StartWorkflowRun with OverrideParameters), and after the run each event the service sends (Task Running per task,
  then Workflow Run Succeeded or Failed) goes to the Lambda its rule targets (record_progress: the steps, `loaded`,
  RunsSucceeded; report_failure: the SNS message, `failed`, RunsFailed). MWAA Serverless's API (moto has none) is
  answered from the demo's Airflow through botocore's Stubber (demo_airflow_stand_ins.MwaaServerlessApi).

FAIL_AT=load: the first load fails (step_functions, glue_workflow: the Iceberg table is not there yet, so DuckDB
refuses the MERGE; mwaa: the warehouse has no schema "public" yet), the form's failure message is shown (the Step
Functions failure reporter run on the execution's status-change event; the Glue form's EventBridge rule's input
template; the DAG's notify_failure, or for mwaa_serverless the report Lambda, read back from a queue subscribed to
the topic), the cause is fixed, and
`pipeline-ops rerun` recovers the upload against the same stand-ins (moto, with Stubber for the APIs moto lacks; for
mwaa, MWAA's InvokeRestApi answered by the demo's Airflow: the run's failed tasks are cleared and the scheduler's
loop runs them again; for mwaa_serverless, a new workflow run with a new run id that the ledger takes first); the
upload ends loaded once.

What only AWS can show: a real crawl, Glue's and MWAA's workers, IAM, the network paths (the MWAA environment's
private subnets and endpoints), Redshift's own SQL (DuckDB runs the statements as sqlglot translates them), the
MWAA trigger Lambda, EventBridge delivering the events (when, how often, in which order), MWAA Serverless's own
scheduler and its API's real answers, and the services' timings.
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


# --- set-up ------------------------------------------------------------------------------------------------------
def synthesize(outdir: Path | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """Every stage's templates, {(environment, stack id): template}, from one in-process synth without cdk-nag; the
    cloud assembly (with the assets the MWAA demo deploys its DAG folder from) stays in `outdir` when given."""
    import aws_cdk as cdk

    from app import build_app
    from tests.cdk_app import pinned_context

    kept = contextlib.nullcontext(str(outdir)) if outdir is not None else tempfile.TemporaryDirectory(prefix="demo-form-")
    with kept as outdir_name:
        app = cdk.App(context=pinned_context(), outdir=outdir_name)
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

    def __init__(
        self, templates: dict[tuple[str, str], dict[str, Any]], form_stack: str, workdir: Path, spark: Any, out: TextIO, env: str = ENV
    ) -> None:
        import boto3
        from demo_stand_ins import AthenaOnDuckDB, LocalMirror, StackValues

        from pipeline_constructs.contract import DatasetContract
        from stacks.stateful_stack import CONTRACT_PATH
        from tests.deployed_environment import FakeDeployment

        self.out = out
        self.workdir = workdir
        self.spark = spark
        self.env = env
        self.assembly: Path | None = None  # the cloud assembly, for the forms that deploy files from its assets
        self.started = time.perf_counter()
        self.deployment = FakeDeployment(templates, env, stacks=("Stateful", form_stack))
        self.stateful = templates[(env, "Stateful")]
        self.form_template = templates[(env, form_stack)]
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
        self.messages: list[dict[str, Any]] = []
        self.clean_summaries: list[dict[str, Any]] = []
        self.athena: Any = None  # the Athena target's stand-in; an environment that loads into Redshift has none
        if not any("OpenTableFormatInput" in r.get("Properties", {}) for r in self.stateful["Resources"].values()):
            return
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
        shown = {k: record.get(k) for k in keys if k in record}
        if len(str(shown.get("cause", ""))) > 400:  # an operator's error can carry a whole API answer
            shown["cause"] = f"{str(shown['cause'])[:400]} ... ({len(str(shown['cause']))} characters)"
        self.say("ledger record (moto DynamoDB):")
        self.say("  " + json.dumps(shown, default=str))
        for run in record.get("runs", []):
            self.say("  run " + json.dumps({k: run.get(k) for k in ("run_id", "outcome", "execution", "error") if run.get(k)}, default=str))

    def athena_merges(self, state: str | None = None) -> list[dict[str, Any]]:
        """The Athena stand-in's MERGE queries in the order they started (those in `state` only, when given)."""
        queries = self.athena.queries.values()
        return [q for q in queries if q["Query"].startswith("MERGE") and (state is None or q["Status"]["State"] == state)]

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
            "arn:aws:states:::lambda:invoke": self.invoke,
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

    def invoke(self, request: dict[str, Any]) -> dict[str, Any]:
        """The form's two Lambdas, told apart by their payload: the schema check (it names the run's uploads and the
        raw table's columns) and the load lock."""
        if "columns" in request["Payload"]:
            return self.check_schema(request)
        return self.load_lock(request)

    def check_schema(self, request: dict[str, Any]) -> dict[str, Any]:
        from pipeline_constructs.runtime import crawl_check

        payload = crawl_check.check(request["Payload"], {"glue": self.world.glue, "s3": self.world.s3, "dynamodb": self.world.dynamodb})
        self.note(f"schema check (its Lambda's code on moto): crawl={payload['crawl']} ({payload['reason']})")
        return {"Payload": payload, "StatusCode": 200, "ExecutedVersion": "$LATEST"}

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
        stubber.add_response(
            "get_execution_history", {"events": events[:25]}, {"executionArn": arn, "reverseOrder": True, "maxResults": 25}
        )
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
        "merges_succeeded": len(world.athena_merges("SUCCEEDED")),
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
    world.say(f"$ pipeline-ops --env {world.env} {' '.join(argv)}")
    code = main(["--env", world.env, "--json", *argv], session=FakeSession(world.deployment, **clients), out=out, now=datetime.now(UTC))
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
        "merges_succeeded": len(world.athena_merges("SUCCEEDED")),
        **results,
    }


# --- MWAA and MWAA Serverless: Airflow -------------------------------------------------------------------------------
DEMO_DAG_SETTINGS = {"retries": 0, "retry_delay_seconds": 1, "max_retry_delay_seconds": 1, "poll_interval_seconds": 1}
"""The demo's one change to the deployed DAG configuration: no retries and 1 s polls, so a failure reports at once
(deployed: each task retries with backoff, and the operators poll Glue, Athena and Redshift every 30 s)."""


class AirflowDemo:
    """What the two Airflow forms' demos share: the deployed definition run on Airflow (scripts/demo_airflow.py in
    .venv-airflow), its operators' AWS calls answered by this process's moto through one local endpoint
    (scripts/demo_airflow_stand_ins.py): the Glue resources the operators call, each Glue run of the clean job the
    real job on Spark, a queue on the alert topic that reads its messages back. `config` names what the definition
    calls: crawler_name, clean_job_name, curated_rows (bucket, prefix: where the rows check lists a run's rows),
    topic_arn."""

    stack = ""

    def __init__(self, world: World, config: dict[str, Any]) -> None:
        from demo_airflow_stand_ins import GlueJobRuns

        self.world = world
        self.config = config
        _, job = resource_of(world.stateful, "AWS::Glue::Job", lambda k, _r: k.startswith("CleanJob"))
        self.job_defaults = world.stateful_values.job_arguments(job)
        self.jobs = GlueJobRuns(self.clean_job)
        self.alerts = self._alert_copy()
        self._create_glue()

    def _create_glue(self) -> None:
        """The Glue resources the stateful stack declares and the DAG's operators call (FakeDeployment names them)."""
        glue, role = self.world.glue, "arn:aws:iam::123456789012:role/demo"
        _, database = resource_of(self.world.stateful, "AWS::Glue::Database")
        name = str(self.world.stateful_values.resolve(database["Properties"]["DatabaseInput"]["Name"]))
        glue.create_database(DatabaseInput={"Name": name})
        landing = f"s3://{self.world.landing}/{self.world.deployment.output(self.stack, 'LandingPrefix')}"
        glue.create_crawler(Name=self.config["crawler_name"], Role=role, DatabaseName=name, Targets={"S3Targets": [{"Path": landing}]})
        glue.create_job(
            Name=self.config["clean_job_name"],
            Role=role,
            Command={"Name": "glueetl", "ScriptLocation": "s3://assets/glue_clean_job.py"},
            DefaultArguments=self.job_defaults,
        )

    def _alert_copy(self) -> str:
        """An SQS queue subscribed to the alert topic: what the form publishes, read back."""
        url = self.world.sqs.create_queue(QueueName="demo-alert-copy")["QueueUrl"]
        arn = self.world.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.world.sns.subscribe(TopicArn=self.config["topic_arn"], Protocol="sqs", Endpoint=arn)
        return str(url)

    def alert_messages(self) -> list[dict[str, Any]]:
        got = self.world.sqs.receive_message(QueueUrl=self.alerts, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        return [json.loads(m["Body"]) for m in got]

    def show_failure(self, upload: Any, form: str, sender: str) -> dict[str, Any]:
        """The failure message the topic got (read back from the queue on it), printed, with the ledger record."""
        messages = self.alert_messages()
        if not messages:
            raise SystemExit(f"the failed run published nothing; Airflow's logs are in {self.world.workdir}")
        failure = {"subject": messages[-1].get("Subject"), "message": json.loads(messages[-1]["Message"])}
        self.world.messages.append(failure)
        self.world.say(f"failure message ({sender} -> SNS, read back from a queue subscribed to the topic):")
        self.world.say(f"  Subject: {failure['subject']}")
        cause = str(failure["message"].get("cause", ""))  # the operator's error: it can carry a whole API answer
        shown = {**failure["message"], "cause": cause[:400] + (f" ... ({len(cause)} characters)" if len(cause) > 400 else "")}
        self.world.say("  " + json.dumps(shown, default=str))
        self.world.show_record(self.world.record(upload, form))
        return failure

    @staticmethod
    def airflow_environment(endpoint_url: str) -> dict[str, str]:
        """The Airflow process's environment: this one's without Python's, Airflow's and AWS's settings, fake
        credentials, and every AWS call to the local endpoint (this process's moto)."""
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AIRFLOW", "AWS_", "VIRTUAL_ENV"))},
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint_url,
        }

    # --- the clean job's Glue run ----------------------------------------------------------------------------------
    def clean_job(self, job_run_id: str, arguments: dict[str, str]) -> str:
        """The Glue run moto started: the real entrypoint on local Spark with the job's defaults and the operator's
        script_args (moto merged them, as Glue does), its counts into the ledger, its Parquet into moto's S3."""
        from pipeline_constructs.runtime import glue_clean_job
        from pipeline_constructs.runtime.clean_transform import CleanRunFailed

        world = self.world
        merged = {**arguments, "--JOB_NAME": self.config["clean_job_name"], "--JOB_RUN_ID": job_run_id}
        (uri,) = json.loads(merged["--source_uris"])
        (version,) = json.loads(merged["--source_versions"])
        local = world.local_job_argv(merged, source_uris=json.dumps([world.mirror.local(uri)]))
        for name in ("--ledger_table", "--source_versions"):  # recorded below against the s3:// upload
            index = local.index(name)
            del local[index : index + 2]
        started = time.perf_counter()
        glue_clean_job.check_source_versions(world.s3, [uri], [version])
        try:
            result = world.run_clean_main(local)
        except CleanRunFailed as failed:
            record_clean_counts(world, merged, failed.result)
            raise
        glue_clean_job.check_source_versions(world.s3, [uri], [version])
        record_clean_counts(world, merged, result)
        rows = self.config["curated_rows"]
        prefix = f"{rows['prefix']}{merged['--run_id']}/"
        keys = world.mirror.keys(rows["bucket"], prefix)
        for key in keys:  # where the DAG's rows check lists them
            world.s3.put_object(Bucket=rows["bucket"], Key=key, Body=world.mirror.path(f"s3://{rows['bucket']}/{key}").read_bytes())
        return (
            f"glue_clean_job.main on local Spark: {result.rows_in} rows in, {result.rows_out} out, {result.rows_quarantined} "
            f"quarantined, {result.duplicates_dropped} duplicates ({time.perf_counter() - started:.1f} s); {len(keys)} curated objects"
        )

    # --- printing --------------------------------------------------------------------------------------------------
    def show_run(self, run: dict[str, Any], since: int = 0, before: dict[str, Any] | None = None) -> None:
        """Each task instance with its time (Airflow's start and end), the operator, its outcome and what answered it;
        with `before` (the run before its tasks were cleared), the tasks that did not run again are marked kept."""
        kept = {(t["task_id"], t["try_number"], t["start"]) for t in (before or {}).get("tasks", [])}
        tasks = [t for t in run["tasks"] if t["start"]]
        origin = min((datetime.fromisoformat(t["start"]) for t in tasks), default=None)
        for task in run["tasks"]:
            if not task["start"] or origin is None:
                self.world.say(f"{'':8s}  {'':7s}     {task['task_id']} [{task['operator']}] {task['state'].upper()}")
                continue
            start, end = datetime.fromisoformat(task["start"]), datetime.fromisoformat(task["end"] or task["start"])
            mark = "" if task["state"] == "success" else f" {task['state'].upper()}"
            again = (task["task_id"], task["try_number"], task["start"]) not in kept
            note = self.note(task["task_id"], since) if again else "(not cleared: its first try stands)"
            self.world.say(
                f"{(start - origin).total_seconds():8.2f}s {int((end - start).total_seconds() * 1000):7d} ms  "
                f"{task['task_id']} [{task['operator']}] try {task['try_number']}{mark}{'  ' + note if note else ''}"
            )
        self.world.say(f"  -> DAG run {run['dag_run_id']}: {run['state']}")

    def note(self, task_id: str, since: int) -> str:
        if task_id == "clean":
            runs = list(self.jobs.states.values())
            if runs:
                last = runs[-1]
                return str(last.get("note") or f"the clean job FAILED: {last.get('error', '')[:300]}")
        if task_id == "load":
            return self.load_note(since)
        if task_id == "crawl":
            return "moto's crawler (no crawl runs locally; the clean job reads the CSV by the contract)"
        if task_id == "find_curated_rows":
            return "listed the run's partition folders in moto's curated bucket"
        return ""

    def load_note(self, since: int) -> str:
        """What answered the load task (`since`: the loads before this run's)."""
        return ""

    def results(self, run_id: str) -> dict[str, Any]:
        """The loaded table against the run's curated rows, and the shipped query over it (Athena's: World.results)."""
        return self.world.results(run_id)


class MwaaDemo(AirflowDemo):
    """The Mwaa stack's deployed DAG folder run on Airflow: its Redshift load on DuckDB, its Athena load (when it loads
    both targets) the MERGE on DuckDB through moto's Athena. FAIL_AT=load fails the Redshift load (the schema is not
    there yet), so with both targets the rerun loads Redshift only."""

    stack = "Mwaa"

    def __init__(self, world: World, *, fail_at: str | None) -> None:
        from demo_airflow_stand_ins import RedshiftOnDuckDB, deployed_dag_folder

        from pipeline_constructs.runtime.mwaa.pipeline_steps import load_settings

        assert world.assembly is not None, "the MWAA demo deploys its DAG folder from the cloud assembly"
        self.folder, self.deployed = deployed_dag_folder(
            world.assembly, world.form_template, world.form_values.resolve, world.workdir / "dags", DEMO_DAG_SETTINGS
        )
        config = json.loads((self.folder / "pipeline_dag_config.json").read_text(encoding="utf-8"))
        self.environment_name = world.deployment.output(self.stack, "MwaaEnvironmentName")
        self.dag_id = world.deployment.output(self.stack, "DagId")
        self.targets = [str(settings["target"]) for settings in load_settings(config)]
        if "redshift" not in self.targets:
            raise SystemExit(f"the MWAA demo fails and recovers a Redshift load; this DAG loads into {', '.join(self.targets)}")
        if "athena" in self.targets and world.athena is None:
            raise SystemExit("the DAG loads into Athena but the environment's Stateful stack has no Iceberg table")
        self.warehouse = RedshiftOnDuckDB(world.mirror.local, schema_exists=fail_at != "load")
        super().__init__(world, config)

    def note(self, task_id: str, since: int) -> str:
        if task_id == "load_athena":
            return self.athena_note()
        if task_id in ("load", "load_redshift"):
            return self.load_note(since)
        return super().note(task_id, since)

    def load_note(self, since: int) -> str:
        if len(self.warehouse.batches) <= since:
            return ""
        batch = self.warehouse.batches[-1]
        verdict = "FINISHED" if batch["status"] == "FINISHED" else f"FAILED ({batch['error']})"
        return f"Redshift Data BatchExecuteStatement: {len(batch['Sqls'])} statements on DuckDB in one transaction, {verdict}"

    def athena_note(self) -> str:
        merges = self.world.athena_merges()
        return f"Athena StartQueryExecution: the MERGE on DuckDB, {merges[-1]['Status']['State']}" if merges else ""

    def loads_succeeded(self) -> dict[str, int]:
        """Each target's successful loads: Redshift's finished batches, Athena's succeeded MERGEs."""
        loads = {"redshift": sum(1 for batch in self.warehouse.batches if batch["status"] == "FINISHED")}
        if "athena" in self.targets:
            loads["athena"] = len(self.world.athena_merges("SUCCEEDED"))
        return loads

    # --- the result ------------------------------------------------------------------------------------------------
    def results(self, run_id: str) -> dict[str, Any]:
        """Each target's loaded table against the run's curated rows, and the shipped query over it: the top-level
        figures are Redshift's, `targets` has each target's, and `rows_match` holds only when every target matches."""
        each = {"redshift": self.redshift_results(run_id)}
        if "athena" in self.targets:
            each["athena"] = self.world.results(run_id)
        return {**each["redshift"], "rows_match": all(r["rows_match"] for r in each.values()), "targets": each}

    def redshift_results(self, run_id: str) -> dict[str, Any]:
        """The Redshift table (on DuckDB) against the run's curated Parquet, and the shipped query over it."""
        from athena_on_duckdb import format_table, translate

        schema_table = '"public"."retail_sales"'
        columns = [row[0] for row in self.warehouse.rows(f"DESCRIBE {schema_table}")[1]]
        types = {row[0]: row[1] for row in self.warehouse.rows(f"DESCRIBE {schema_table}")[1]}
        listed = ", ".join(f'"{c}"' for c in columns)
        _, table_rows = self.warehouse.rows(f"SELECT {listed} FROM {schema_table} ORDER BY 1")
        rows = self.config["curated_rows"]
        run_dir = self.world.mirror.path(f"s3://{rows['bucket']}/{rows['prefix']}{run_id}/")
        cast = ", ".join(f'CAST("{c}" AS {types[c]})' for c in columns)
        _, curated = self.warehouse.rows(
            f"SELECT {cast} FROM read_parquet('{run_dir}/*/*.parquet', hive_partitioning = true, "
            "hive_types = {'sale_date': 'DATE'}) ORDER BY 1"
        )
        with self.warehouse.lock:
            self.warehouse.con.execute("SET schema = 'public'")
        names, revenue = self.warehouse.rows(translate(QUERY.read_text(encoding="utf-8")))
        self.world.say(f"query: {QUERY.relative_to(ROOT)} on DuckDB over the loaded table public.retail_sales (the Redshift target):")
        self.world.say(format_table(names, revenue, limit=8))
        same = table_rows == curated
        self.world.say(f"loaded table: {len(table_rows)} rows; the run's curated rows: {len(curated)}; identical: {same}")
        return {"table_rows": len(table_rows), "curated_rows": len(curated), "rows_match": same, "query_rows": len(revenue)}


def record_clean_counts(world: World, arguments: dict[str, str], result: Any) -> None:
    """The clean job's counts into the upload's record, as the job writes them with --ledger_table."""
    from pipeline_constructs.runtime import glue_clean_job

    names = ("--source_uris", "--source_versions", "--run_id", "--ledger_table", "--ledger_ttl_days", "--pipeline_form")
    argv = [x for name in names for x in (name, arguments[name])]
    argv += [
        "--curated_root",
        world.mirror.local(arguments["--curated_root"]),
        "--quarantine_root",
        world.mirror.local(arguments["--quarantine_root"]),
    ]
    argv += ["--contract_path", str(world.contract_path)]
    glue_clean_job.record_counts_in_ledger(glue_clean_job.resolve_args(argv), result, world.dynamodb)


def airflow_summary(
    demo: AirflowDemo, form: str, upload: Any, runs: list[dict[str, Any]], failure: dict[str, Any] | None, merges: int
) -> dict[str, Any]:
    """The summary both Airflow forms' demos return: the upload's record (printed), the results, each run's tasks."""
    record = demo.world.record(upload, form)
    demo.world.show_record(record)
    results = demo.results(record["runs"][-1]["run_id"])
    return {
        "form": form,
        "upload": upload.uri,
        "executions": ["SUCCEEDED" if r["state"] == "success" else "FAILED" for r in runs],
        "steps": [[{"state": t["task_id"], "outcome": t["state"], "try": t["try_number"]} for t in r["tasks"]] for r in runs],
        "failure_message": failure,
        "record": {"state": record["state"], "runs": [run_.get("outcome") for run_ in record.get("runs", [])]},
        "merges_succeeded": merges,
        "clean_job_runs": len(demo.jobs.states),
        **results,
    }


def demo_mwaa(world: World, *, rows: int, fail_at: str | None) -> dict[str, Any]:
    from contextlib import nullcontext

    from demo_airflow_stand_ins import AirflowRestApi, AwsEndpoint, athena_through_moto

    from pipeline_constructs.operations.runs import uploaded_object
    from pipeline_constructs.runtime.upload_lambdas.upload_events import dag_run_request

    demo = MwaaDemo(world, fail_at=fail_at)
    shipped = sorted(path.name for path in demo.folder.iterdir())
    world.say(f"the stack's DAG folder (from the cloud assembly, deploy-time values filled in): {', '.join(shipped)}")
    changed = ", ".join(f"{k} {demo.deployed[k]} -> {v}" for k, v in DEMO_DAG_SETTINGS.items())
    world.say(f"DAG {demo.config['dag_id']}, load into {' and '.join(demo.targets)}; the demo's settings: {changed}")
    if "athena" in demo.targets:
        world.athena.create_target_table(world.database)
    prefix = world.deployment.output("Mwaa", "LandingPrefix")
    upload, _event = world.upload(f"{prefix}store-sales-2024-05.csv", rows)
    if fail_at == "load":
        world.say('FAIL_AT=load: the warehouse has no schema "public" yet, so the load\'s first statement fails')
    runs: list[dict[str, Any]] = []
    failure = None
    athena = athena_through_moto(world.athena) if "athena" in demo.targets else nullcontext()
    with AwsEndpoint() as endpoint, demo.jobs.installed(), demo.warehouse.installed(), athena:
        api = AirflowRestApi(world.workdir / "airflow", demo.folder, demo.airflow_environment(endpoint.url), world.workdir)
        request = dag_run_request(uploaded_object(upload))
        world.say(f"the trigger's InvokeRestApi POST /dags/{demo.dag_id}/dagRuns {json.dumps(request)}")
        world.say(f"DAG run on Airflow 3.3.1 (.venv-airflow, dag.test()), AWS calls to moto at {endpoint.url}:")
        answer = api.invoke_rest_api(Name=demo.environment_name, Path=f"/dags/{demo.dag_id}/dagRuns", Method="POST", Body=request)
        run = answer["RestApiResponse"]
        demo.show_run(run)
        runs.append(run)
        if run["state"] != "success":
            failure = demo.show_failure(upload, "mwaa", "notify_failure")
            demo.warehouse.create_schema()
            world.say('the cause is fixed: the schema "public" is created (in AWS: the Redshift database has it)')
            batches = len(demo.warehouse.batches)
            action = pipeline_ops(world, "rerun", upload.uri, mwaa=api)
            world.say(f"the scheduler runs the cleared tasks of DAG run {action['run']}:")
            run = api.airflow("run_queued", str(action["run"]))
            demo.show_run(run, since=batches, before=runs[0])
            runs.append(run)
    loads = demo.loads_succeeded()
    return {**airflow_summary(demo, "mwaa", upload, runs, failure, loads["redshift"]), "loads_succeeded": loads}


# --- MWAA Serverless -------------------------------------------------------------------------------------------------
SERVERLESS_POLLS = ("poll_interval", "job_poll_interval", "sleep_time")
"""The workflow's operator arguments that set a poll interval (crawler, Glue job, Athena)."""
DAG_FACTORY_LOADER = """\
# dag-factory's entry point: the workflow YAML beside it built into its DAG, as MWAA Serverless builds a definition
# (an airflow DAG folder: written by scripts/demo_form.py)
from pathlib import Path

from dagfactory import load_yaml_dags

load_yaml_dags(globals_dict=globals(), dags_folder=str(Path(__file__).parent))
"""


class MwaaServerlessDemo(AirflowDemo):
    """The workflow YAML the MwaaServerless stack deploys run on Airflow through dag-factory, its Athena load on
    DuckDB; the stack's Lambdas (the trigger, the run-event ones) run in this process with their deployed environment
    and MWAA Serverless's API answered by the demo's Airflow (demo_airflow_stand_ins.MwaaServerlessApi)."""

    stack = "MwaaServerless"

    def __init__(self, world: World) -> None:
        import yaml
        from demo_airflow_stand_ins import DeployedLambda, deployed_files

        if world.athena is None:
            raise SystemExit("the MWAA Serverless demo answers an Athena load; this environment loads into Redshift")
        assert world.assembly is not None, "the MWAA Serverless demo deploys its workflow YAML from the cloud assembly"
        shipped = deployed_files(world.assembly, world.form_template, world.form_values.resolve, world.workdir / "definition")
        (definition,) = sorted(shipped.rglob("*.yaml"))
        self.definition_key = str(definition.relative_to(shipped))
        document = yaml.safe_load(definition.read_text(encoding="utf-8"))
        ((self.dag_id, dag),) = document.items()
        tasks = dag["tasks"]
        self.deployed = self._demo_settings(tasks)
        self.folder = world.workdir / "dags"
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / definition.name).write_text(yaml.safe_dump(document, sort_keys=False, width=100_000), encoding="utf-8")
        (self.folder / "load_workflows.py").write_text(DAG_FACTORY_LOADER, encoding="utf-8")
        self.workflow_arn = world.deployment.output(self.stack, "WorkflowArn")
        _, workflow = resource_of(world.form_template, "AWS::MWAAServerless::Workflow")
        self.workflow_name = str(world.form_values.resolve(workflow["Properties"]["Name"]))
        self.clients: dict[str, Any] = {"dynamodb": world.dynamodb, "sns": world.sns}
        self.lambdas: dict[str, Any] = {}  # handler -> the stack's function with it (the form's handlers: mwaa_serverless.*)
        for logical_id, resource in world.form_template["Resources"].items():
            handler = str(resource["Properties"].get("Handler", "")) if resource["Type"] == "AWS::Lambda::Function" else ""
            if handler.startswith("mwaa_serverless."):
                self.lambdas[handler] = DeployedLambda(logical_id, resource["Properties"], world.form_values.resolve, self.clients)
        crawl, rows_check = tasks["crawl"], tasks["find_curated_rows"]
        super().__init__(
            world,
            {
                "crawler_name": crawl.get("crawler_name") or crawl["config"]["Name"],
                "clean_job_name": tasks["clean"]["job_name"],
                "curated_rows": {"bucket": rows_check["bucket_name"], "prefix": rows_check["bucket_key"].split("{{", 1)[0]},
                "topic_arn": self.lambdas["mwaa_serverless.report_failure"].environment["TOPIC_ARN"],
            },
        )

    @staticmethod
    def _demo_settings(tasks: dict[str, Any]) -> dict[str, Any]:
        """DEMO_DAG_SETTINGS into every task of the definition; returns the deployed values they replace."""
        deployed: dict[str, Any] = {}
        for task in tasks.values():
            deployed.setdefault("retries", task["retries"])
            task["retries"] = DEMO_DAG_SETTINGS["retries"]
            for name in ("retry_delay", "max_retry_delay"):
                deployed.setdefault(f"{name}_seconds", task[name]["seconds"])
                task[name] = {**task[name], "seconds": DEMO_DAG_SETTINGS[f"{name}_seconds"]}
            for name in SERVERLESS_POLLS:
                if name in task:
                    deployed.setdefault("poll_interval_seconds", task[name])
                    task[name] = DEMO_DAG_SETTINGS["poll_interval_seconds"]
        return deployed

    def load_note(self, since: int) -> str:
        merges = self.world.athena_merges()[since:]
        if not merges:
            return ""
        status = merges[-1]["Status"]
        reason = f" ({status['StateChangeReason']})" if "StateChangeReason" in status else ""
        return f"Athena StartQueryExecution: the MERGE on DuckDB, {status['State']}{reason}"

    def merges(self, state: str | None = None) -> int:
        return len(self.world.athena_merges(state))

    # --- the service around the YAML -------------------------------------------------------------------------------
    def trigger(self, event: dict[str, Any], upload: Any) -> str:
        """The upload rule's event into the trigger's queue (moto SQS), the queue's batch to the trigger Lambda (as
        its event source mapping gives it), the messages it took deleted; returns the run it started."""
        _, mapping = resource_of(self.world.form_template, "AWS::Lambda::EventSourceMapping")
        queue_id = mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
        queue = str(self.world.form_values.resolve({"Ref": queue_id}))
        self.world.sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(event))
        got = self.world.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)["Messages"]
        batch = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"]} for m in got]}
        self.world.say(f"the upload rule delivers the event to the trigger's queue (moto SQS {queue.rsplit('/', 1)[-1]}); its Lambda:")
        answer = self.invoke("mwaa_serverless.start", batch)
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        for message in got:
            if message["MessageId"] not in failed:
                self.world.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        if failed:
            raise SystemExit(f"the trigger failed its messages {sorted(failed)}")
        record = self.world.record(upload, "mwaa_serverless")
        return str(record["runs"][-1]["execution"])

    def invoke(self, handler: str, event: dict[str, Any]) -> Any:
        """One Lambda's handler on an event, printed: what it logged, the run counts it printed (EMF), its answer."""
        function = self.lambdas[handler]
        answer, printed, logged = function.invoke(event)
        for line in logged:
            self.world.say(f"    log: {line[:300]}")
        for line in printed:
            if line.startswith("{") and '"_aws"' in line:
                metric = json.loads(line)
                ((name, metrics),) = [(m["Metrics"][0]["Name"], m) for m in metric["_aws"]["CloudWatchMetrics"]]
                dims = ", ".join(f"{d}={metric[d]}" for d in metrics["Dimensions"][0])
                self.world.say(f"    run metric (EMF line): {metrics['Namespace']} {name} = {metric[name]} ({dims})")
        shown = {k: v for k, v in answer.items() if v is not None} if isinstance(answer, dict) else answer
        self.world.say(f"    -> {json.dumps(shown, default=str)[:400]}")
        return answer

    def run(self, service: Any, service_run_id: str, endpoint: str) -> dict[str, Any]:
        """The run on Airflow, then each event the service sends for it to the Lambda its rule targets."""
        parameters = service.runs[service_run_id]["parameters"]
        self.world.say(
            f"workflow run {service_run_id} (parameters {json.dumps(parameters)}) on Airflow 3.3.1 (.venv-airflow, "
            f"dag-factory, dag.test()), AWS calls to moto at {endpoint}:"
        )
        queries = self.merges()
        answer: dict[str, Any] = service.drive(service_run_id)
        self.show_run(answer, since=queries)
        self.world.say("  the service's events for the run, each to the Lambda its rule targets (sent here when the run has ended):")
        for event in service.events(service_run_id):
            detail = event["detail"]
            what = f"{event['detail-type']}" + (f" ({detail['taskId']})" if "taskId" in detail else "")
            for rule, handler in self.rules(event):
                self.world.say(f"  event {what} -> rule {rule} -> {handler}:")
                self.invoke(handler, event)
        return answer

    def rules(self, event: dict[str, Any]) -> list[tuple[str, str]]:
        """The stack's rules whose pattern the service's event matches (source, detail-type, the workflow), and the
        handler of each one's Lambda target."""
        out = []
        handlers = {function.logical_id: handler for handler, function in self.lambdas.items()}
        for rule_id, rule in self.world.form_template["Resources"].items():
            if rule["Type"] != "AWS::Events::Rule":
                continue
            pattern = rule["Properties"].get("EventPattern", {})
            resources = [str(self.world.form_values.resolve(r)) for r in pattern.get("resources", [])]
            if event["source"] not in pattern.get("source", []) or event["detail-type"] not in pattern.get("detail-type", []):
                continue
            if resources and not set(event["resources"]) & set(resources):
                continue
            for target in rule["Properties"].get("Targets", []):
                function = target["Arn"].get("Fn::GetAtt", [None])[0]
                if function in handlers:
                    out.append((rule_id, handlers[function]))
        return out


def demo_mwaa_serverless(world: World, *, rows: int, fail_at: str | None) -> dict[str, Any]:
    from demo_airflow_stand_ins import AirflowRestApi, AwsEndpoint, MwaaServerlessApi, athena_through_moto

    demo = MwaaServerlessDemo(world)
    world.say(
        f"the stack's workflow definition (from the cloud assembly, deploy-time values filled in): {demo.definition_key}, "
        "built into its DAG by dag-factory, as the service does"
    )
    changed = ", ".join(f"{k} {demo.deployed[k]} -> {v}" for k, v in DEMO_DAG_SETTINGS.items())
    world.say(f"workflow {demo.workflow_name} (DAG {demo.dag_id}), load into Athena; the demo's settings: {changed}")
    prefix = world.deployment.output(demo.stack, "LandingPrefix")
    upload, event = world.upload(f"{prefix}store-sales-2024-05.csv", rows)
    if fail_at != "load":
        world.athena.create_target_table(world.database)
    else:
        world.say(f"FAIL_AT=load: the Iceberg table {world.database}.{world.target_table} is not there yet, so the MERGE fails")
    runs: list[dict[str, Any]] = []
    failure = None
    with AwsEndpoint() as endpoint, demo.jobs.installed(), athena_through_moto(world.athena):
        airflow = AirflowRestApi(world.workdir / "airflow", demo.folder, demo.airflow_environment(endpoint.url), world.workdir)
        service = MwaaServerlessApi(demo.workflow_arn, airflow, region=REGION)
        demo.clients["mwaa-serverless"] = service.client()
        runs.append(demo.run(service, demo.trigger(event, upload), endpoint.url))
        if runs[-1]["state"] != "success":
            failure = demo.show_failure(upload, "mwaa_serverless", "the report Lambda")
            world.athena.create_target_table(world.database)
            world.say(f"the cause is fixed: {world.database}.{world.target_table} is created (in AWS: the stateful stack's table)")
            action = pipeline_ops(world, "rerun", upload.uri, **{"mwaa-serverless": demo.clients["mwaa-serverless"]})
            runs.append(demo.run(service, str(action["run"]), endpoint.url))
    return airflow_summary(demo, "mwaa_serverless", upload, runs, failure, demo.merges("SUCCEEDED"))


# --- entry point ---------------------------------------------------------------------------------------------------
FORM_STACKS = {"step_functions": "StepFunctions", "glue_workflow": "GlueWorkflow", "mwaa": "Mwaa", "mwaa_serverless": "MwaaServerless"}
FORM_ENVIRONMENTS = {"mwaa": "staging"}
"""The environment whose stacks a form's demo deploys into moto (dev otherwise): the app deploys the MWAA form in
staging only (and MWAA Serverless in dev only)."""
DEMOS = {
    "step_functions": demo_step_functions,
    "glue_workflow": demo_glue_workflow,
    "mwaa": demo_mwaa,
    "mwaa_serverless": demo_mwaa_serverless,
}
ASSEMBLY_FORMS = ("mwaa", "mwaa_serverless")
"""The forms whose demo deploys files from the cloud assembly's assets (the DAG folder, the workflow YAML)."""


def run_demo(
    form: str,
    *,
    fail_at: str | None = None,
    rows: int = 2000,
    workdir: Path,
    templates: dict[tuple[str, str], dict[str, Any]] | None = None,
    assembly: Path | None = None,
    spark: Any = None,
    out: TextIO = sys.stdout,
) -> dict[str, Any]:
    """One form's demo (in-process: the tests pass their synth, its cloud assembly and SparkSession); returns its summary."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.perf_counter()
    if templates is None:
        print("synthesizing the app (cdk-nag off) ... ", end="", file=out, flush=True)
        assembly = workdir / "cdk.out"
        templates = synthesize(assembly)
        print(f"{time.perf_counter() - started:.0f} s", file=out, flush=True)
    if form in ASSEMBLY_FORMS and assembly is None:
        raise ValueError(f"the {form} demo deploys its definition from the cloud assembly: pass the synth's `assembly`")
    env = FORM_ENVIRONMENTS.get(form, ENV)
    own_spark = spark is None
    if own_spark:
        from pipeline_constructs.runtime.spark_settings import local_session

        spark = local_session(app_name="demo-form", cores=2)
    try:
        with fake_aws():
            world = World(templates, FORM_STACKS[form], workdir, spark, out, env=env)
            world.assembly = assembly
            world.say(f"{env}'s {FORM_STACKS[form]} and Stateful stacks deployed into moto (tests/deployed_environment.py)")
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
    summary = run_demo(args.form, fail_at=args.fail_at or None, rows=args.rows, workdir=Path(args.workdir) / args.form)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(summary, indent=2, default=str))
    ok = summary["record"]["state"] == "loaded" and summary["rows_match"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
