"""The Step Functions form on a schedule (forms/step_functions_schedule.py): the SYNTHESIZED state machine and failure
reporter of a scheduled environment, executed in the ASL interpreter, with their Lambda calls answered by the real
function code (runtime/scheduled_runs.py) and the clean job's settlement by the real `settle_workflow_run`, all on
one moto world (DynamoDB ledger, SQS inbox).

How a run is played: each Lambda answer is computed first, in the state machine's order, by calling the function's
code with the payload the definition gives that state (resolved from the same context and state the interpreter
uses); after the execution, every payload the interpreter sent is checked against the one computed, so the answers
are the ones the deployed function would give that execution. The clean job is a stand-in for the Spark transform:
it computes each file's counts by its kind (a header that differs from the contract: rejected; header only: empty;
else 10 rows) and hands them to the real settlement.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import boto3
import pytest
from aws_cdk.assertions import Match, Template

from pipeline_constructs.contract import DatasetContract
from pipeline_constructs.operations.dead_letters import replay_dead_letters
from pipeline_constructs.operations.environment import DeadLetterQueue, Environment, FormStack
from pipeline_constructs.operations.runs import Refused, Runs
from pipeline_constructs.runtime import crawl_check, glue_clean_job as job, scheduled_runs
from pipeline_constructs.runtime.clean_transform import CleanResult
from pipeline_constructs.runtime.upload_ledger import FAILED, LOADED, REJECTED, SKIPPED_EMPTY, Upload, UploadLedger
from pipeline_constructs.schedules import Schedule
from pipeline_constructs.validation import PipelinePropsError
from stacks.config import parse_app_config
from stacks.stateful_stack import CONTRACT_PATH, StatefulStack
from tests.asl_runner import (
    ExecutionResult,
    definition_from_template,
    history_answer,
    lock_taken,
    run_state_machine,
    status_change_event,
)
from tests.cdk_app import cdk_context, pinned_context, synth_app
from tests.fake_aws import FAKE_AWS_REGION
from tests.ledger_table import create_ledger_table
from tests.test_step_functions_form import QUERY_STARTED, pipeline_in, query

pytestmark = [pytest.mark.timeout(300)]
ENV, STACK = "dev", "StepFunctions"
SCHEDULE = {"schedule": "cron(0 6-18 ? * MON-FRI *)", "time_zone": "Europe/Paris"}
MACHINE = "arn:aws:states:eu-west-1:123456789012:execution:retail-pipeline"
LAMBDA_STATES = ("Claim Pending Uploads", "Check Schema", "Record Load Step", "Record Loaded", "Record Run Without Load")
COLUMNS = [column.name for column in DatasetContract.from_file(CONTRACT_PATH).columns]
HEADER = ",".join(COLUMNS)
CRAWL_STATES = ("Crawl", "Get Crawler", "Start Crawler")
CRAWLER_BEFORE = {"result": {"Crawler": {"State": "READY", "LastCrawl": {"Status": "SUCCEEDED", "StartTime": "2020-01-01T00:00:00Z"}}}}
CRAWLED_AFTER = {"result": {"Crawler": {"State": "READY", "LastCrawl": {"Status": "SUCCEEDED", "StartTime": "2099-01-01T00:00:00Z"}}}}
JOB_DONE = {"result": {"Id": "jr_1", "JobRunState": "SUCCEEDED"}}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """dev with only the Step Functions form, on a schedule in Paris time (cdk-nag and the Control Tower controls on)."""
    context = pinned_context()
    dev = {**context["pipeline:environments"][ENV], "forms": ["step_functions"], "trigger": {"step_functions": SCHEDULE}}
    context["pipeline:environments"] = {ENV: dev}
    return synth_app(context, nag=True).template(ENV, STACK)


@pytest.fixture(scope="module")
def definition(template: dict[str, Any]) -> dict[str, Any]:
    return definition_from_template(template)


@pytest.fixture(scope="module")
def reporter(template: dict[str, Any]) -> dict[str, Any]:
    return definition_from_template(template, "FailureReporter")


# --- resolving a state's Parameters as the interpreter does (the paths these states use) ------------------------------
def _path(document: Any, path: str) -> Any:
    for part in path.lstrip("$").strip(".").split("."):
        if part:
            document = document[part]
    return document


def resolve(parameters: Any, state: dict[str, Any], context: dict[str, Any]) -> Any:
    if isinstance(parameters, dict):
        out = {}
        for key, value in parameters.items():
            if key.endswith(".$"):
                out[key[:-2]] = _path(context, value[1:]) if value.startswith("$$") else _path(state, value)
            else:
                out[key] = resolve(value, state, context)
        return out
    return parameters


class LandingHeads:
    """The landing bucket as the schema check reads it (a ranged GET of each upload's first bytes); the bucket's name
    in the resolved definition is no name moto's S3 accepts, so the objects' heads are kept here."""

    def __init__(self) -> None:
        self.heads: dict[tuple[str, str, str | None], bytes] = {}

    def get_object(self, *, Bucket: str, Key: str, Range: str, VersionId: str | None = None) -> dict[str, Any]:  # noqa: N803
        end = int(Range.removeprefix("bytes=0-"))
        return {"Body": io.BytesIO(self.heads[(Bucket, Key, VersionId)][: end + 1])}


class ScheduledWorld:
    """The moto ledger, inbox and Glue catalog the synthesized definition names, and the form's runs played against them."""

    def __init__(self, definition: dict[str, Any], reporter: dict[str, Any], *, spark: Any = None, tmp_path: Path | None = None) -> None:
        self.spark, self.tmp_path = spark, tmp_path
        """With both, the clean job is the real one (glue_clean_job.main, --settle_uploads) on a local Spark."""
        self.definition = definition
        self.reporter = reporter
        claim = definition["States"]["Claim Pending Uploads"]["Parameters"]["Payload"]
        self.dynamodb = boto3.client("dynamodb", region_name=FAKE_AWS_REGION)
        self.sqs = boto3.client("sqs", region_name=FAKE_AWS_REGION)
        self.table = create_ledger_table(self.dynamodb, claim["TableName"])
        self.inbox = self.sqs.create_queue(QueueName="inbox")["QueueUrl"]
        self.bucket, self.prefix = claim["landing_bucket"], claim["landing_prefix"]
        self.ledger = UploadLedger(self.dynamodb, self.table, form="step_functions")
        check = definition["States"]["Check Schema"]["Parameters"]["Payload"]
        self.glue = boto3.client("glue", region_name=FAKE_AWS_REGION)
        self.glue.create_database(DatabaseInput={"Name": check["database"]})
        self.raw_table = (check["database"], check["table"])
        self.landing = LandingHeads()
        self.clients = {"dynamodb": self.dynamodb, "sqs": self.sqs, "glue": self.glue, "s3": self.landing}
        self.alerts: list[dict[str, Any]] = []
        self.uploads: list[Upload] = []

    def crawled(self) -> None:
        """What a crawl of the contract's files leaves: the raw table, the contract's columns in the header's order."""
        database, table = self.raw_table
        columns = [{"Name": name, "Type": "string"} for name in COLUMNS]
        self.glue.create_table(DatabaseName=database, TableInput={"Name": table, "StorageDescriptor": {"Columns": columns}})

    def upload(self, name: str, text: str = "", *, header: str = HEADER) -> Upload:
        """An upload's event reaches the inbox, as the upload rule delivers it (and, for the real clean job, its
        `text` lands where the local Spark reads it); the schema check reads `text`, or `header` without it."""
        upload = Upload(self.bucket, f"{self.prefix}{name}", f"v-{len(self.uploads)}", f"e{len(self.uploads)}")
        self.landing.heads[(upload.bucket, upload.key, upload.version_id)] = (text or f"{header}\n").encode()
        if self.tmp_path is not None:
            local = Path(self.read_from(upload.uri))
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(text)
        detail = {"bucket": {"name": upload.bucket}, "object": {"key": upload.key, "version-id": upload.version_id, "etag": upload.etag}}
        self.sqs.send_message(QueueUrl=self.inbox, MessageBody=json.dumps({"detail-type": "Object Created", "detail": detail}))
        self.uploads.append(upload)
        return upload

    def read_from(self, uri: str) -> str:
        assert self.tmp_path is not None
        return str(self.tmp_path / "landing" / uri.rsplit("/", 1)[-1])

    def record(self, upload: Upload) -> dict[str, Any]:
        record = self.ledger.get(upload)
        assert record is not None, upload
        return record

    def payload(
        self, state: str, data: dict[str, Any], context: dict[str, Any], definition: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        parameters = (definition or self.definition)["States"][state]["Parameters"]["Payload"]
        payload = resolve(parameters, data, context)
        return {**payload, "inbox_url": self.inbox} if "inbox_url" in payload else payload

    # --- one scheduled execution ------------------------------------------------------------------------------------
    def run(self, name: str, *, load_fails: bool = False, execution_input: Any = None) -> tuple[ExecutionResult, dict[str, Any]]:
        """Play one execution named `name`; returns its result and the payloads computed for its Lambda states."""
        execution_input = {"requested": []} if execution_input is None else execution_input
        context = {"Execution": {"Name": name, "Id": f"{MACHINE}:{name}", "Input": execution_input}}
        now = datetime.now(UTC)
        sent: dict[str, Any] = {}
        scripts: dict[str, list[dict[str, Any]]] = {}

        def call(state: str, action: Any, data: dict[str, Any]) -> dict[str, Any]:
            sent[state] = self.payload(state, data, context)
            answer = action(sent[state])
            scripts[state] = [{"result": {"Payload": answer, "StatusCode": 200}}]
            return answer

        claim = call("Claim Pending Uploads", lambda p: scheduled_runs.claim(p, self.clients, now), {})
        if claim["held"] or claim["count"] == 0:
            return self._execute(name, context, scripts, sent), sent
        data = {"claim": {"answer": claim}, "upload": {"run_id": name}}
        call("Check Schema", lambda p: crawl_check.check(p, self.clients), data)
        arguments = self.definition["States"]["Run Clean Job"]["Parameters"]["Arguments"]
        loading = self.clean_on_spark(arguments, data, context) if self.spark is not None else self.clean(arguments, data, context)
        scripts.update({"Get Crawler": [CRAWLER_BEFORE, CRAWLED_AFTER], "Start Crawler": [{"result": {}}], "Run Clean Job": [JOB_DONE]})
        scripts["Find Curated Rows"] = [{"result": {"KeyCount": 1 if loading else 0}}]
        if not loading:
            call("Record Run Without Load", lambda p: scheduled_runs.finish(p, self.clients), data)
            return self._execute(name, context, scripts, sent), sent
        call("Record Load Step", lambda p: scheduled_runs.to_load(p, self.clients), data)
        scripts["Take Load Lock"] = [lock_taken(f"{MACHINE}:{name}")]
        scripts["Start Load Query"] = [QUERY_STARTED]
        scripts["Get Load Query"] = [
            query("FAILED", "TABLE_NOT_FOUND: Table 'retail_sales' does not exist") if load_fails else query("SUCCEEDED")
        ]
        if not load_fails:
            scripts["Release Load Lock"] = [{"result": {}}]
            call("Record Loaded", lambda p: scheduled_runs.finish(p, self.clients), data)
        return self._execute(name, context, scripts, sent), sent

    def clean(self, arguments: dict[str, Any], data: dict[str, Any], context: dict[str, Any]) -> list[Upload]:
        """The clean job on the run's arguments: each file's counts by its kind, settled by `settle_workflow_run` as
        the job settles a run of claimed uploads (--settle_uploads). Returns the uploads handed over to the load."""
        argv = [part for key, value in resolve(arguments, data, context).items() for part in (key, value)]
        args = job.resolve_args([*argv, "--contract_path", "contract.json", "--curated_root", "s3://c/", "--quarantine_root", "s3://q/"])
        claimed = job.named_uploads(args)
        result = CleanResult(dataset="retail_sales", run_id=args["run_id"], quarantine_path="s3://q/run")
        for uri in claimed:
            name = uri.rsplit("/", 1)[-1]
            if name.startswith("bad-"):
                result.rejected_files.append({"source_uri": uri, "reason": "header differs from the contract", "copy": f"s3://q/{name}"})
                result.errors.append(f"file rejected: {uri}: header differs from the contract")
                continue
            rows = 0 if name.startswith("empty-") else 10
            result.per_file[uri] = {
                "rows_in": rows,
                "rows_out": rows,
                "rows_quarantined": 0,
                "duplicates_dropped": 0,
                "lines_read": rows + 1,
                "lines_quarantined": 0,
            }
        for name in ("rows_in", "rows_out", "rows_quarantined", "lines_read"):  # a run's totals are its files' sums
            setattr(result, name, sum(counts[name] for counts in result.per_file.values()))
        handed: list[Upload] = []
        job.settle_workflow_run(args, result, claimed, self.ledger, sns=self, hand_over=handed.extend)
        assert result.ok, result.errors
        return handed

    def clean_on_spark(self, arguments: dict[str, Any], data: dict[str, Any], context: dict[str, Any]) -> bool:
        """The real clean job (glue_clean_job.main) on the run's arguments; True when it curated rows to load."""
        assert self.tmp_path is not None
        contract = self.tmp_path / "contract.json"
        contract.write_text(DatasetContract.from_file(CONTRACT_PATH).to_json())
        argv = [part for key, value in resolve(arguments, data, context).items() for part in (key, value)]
        roots = ("--curated_root", str(self.tmp_path / "curated"), "--quarantine_root", str(self.tmp_path / "quarantine"))
        argv += ["--contract_path", str(contract), *roots, "--metrics_namespace", ""]
        result = job.main(argv, spark=self.spark, read_from=self.read_from, dynamodb=self.dynamodb, clients={"sns": self})
        assert result is not None and result.ok, result
        return any(Path(result.curated_path).rglob("*.parquet"))

    def publish(self, **message: Any) -> None:  # the rejection alert's SNS publish
        self.alerts.append(message)

    def _execute(
        self, name: str, context: dict[str, Any], scripts: dict[str, list[dict[str, Any]]], sent: dict[str, Any]
    ) -> ExecutionResult:
        given = {"Execution": {key: value for key, value in context["Execution"].items() if key != "Input"}}
        result = run_state_machine(self.definition, context["Execution"]["Input"], scripts, context=given)
        for state, payload in sent.items():
            [called] = result.inputs_to(state)
            assert _with_inbox(called["Payload"], self.inbox) == payload, f"{state}: the interpreter sent another payload"
        return result

    # --- the failure reporter ---------------------------------------------------------------------------------------
    def report(self, result: ExecutionResult, name: str) -> ExecutionResult:
        event = status_change_event(result, {"requested": []}, name=name, execution_arn=f"{MACHINE}:{name}")
        data = {"detail": event["detail"], "error": reported_error(result)}
        payload = self.payload("Record Run Failure", data, {}, self.reporter)
        answer = scheduled_runs.fail(payload, self.clients)
        scripts = {
            "Release Load Lock": [{"result": {}}],
            "Read Execution History": [history_answer(result)],
            "Record Run Failure": [{"result": {"Payload": answer, "StatusCode": 200}}],
            "Notify Failure": [{"result": {"MessageId": "m-1"}}],
        }
        report = run_state_machine(self.reporter, event, scripts, context={"Execution": {"Name": "report-1"}})
        [called] = report.inputs_to("Record Run Failure")
        assert called["Payload"] == payload
        return report


def reported_error(result: ExecutionResult) -> dict[str, str | None]:
    """The {Error, Cause} the failure reporter names for how the execution ended (its How Did It End? choice)."""
    if result.status == "FAILED" and isinstance(result.cause, str):
        return {"Error": result.error, "Cause": result.cause}
    if result.status == "FAILED":
        return {"Error": result.error, "Cause": "the failing state gave no cause"}
    if result.status == "TIMED_OUT":
        return {"Error": "States.Timeout", "Cause": "the execution ran past its timeout"}
    return {"Error": f"Execution{result.status}", "Cause": "stopped before its end"}


def _with_inbox(payload: dict[str, Any], inbox: str) -> dict[str, Any]:
    return {**payload, "inbox_url": inbox} if "inbox_url" in payload else payload


@pytest.fixture
def world(fake_aws: None, definition: dict[str, Any], reporter: dict[str, Any]) -> ScheduledWorld:
    return ScheduledWorld(definition, reporter)


def twelve_uploads(world: ScheduledWorld) -> tuple[list[Upload], list[Upload], list[Upload]]:
    bad = [world.upload(f"bad-{i}.csv") for i in range(2)]
    empty = [world.upload("empty-0.csv")]
    good = [world.upload(f"store-{i}.csv") for i in range(9)]
    return bad, empty, good


# --- the runs -----------------------------------------------------------------------------------------------------------
def test_a_scheduled_run_takes_all_twelve_pending_uploads_cleans_once_loads_once_and_ends_each_with_its_own_outcome(
    world: ScheduledWorld,
) -> None:
    bad, empty, good = twelve_uploads(world)
    result, sent = world.run("sched-1")
    assert result.status == "SUCCEEDED", result
    assert len(result.calls_to("Run Clean Job")) == 1 and len(result.calls_to("Start Load Query")) == 1
    [clean] = result.inputs_to("Run Clean Job")
    assert len(json.loads(clean["Arguments"]["--source_uris"])) == 12 and clean["Arguments"]["--settle_uploads"] == "true"
    assert result.output["outcomes"] == {LOADED: 9, REJECTED: 2, SKIPPED_EMPTY: 1}
    assert [world.record(u)["state"] for u in bad + empty] == [REJECTED, REJECTED, SKIPPED_EMPTY]
    for upload in good:
        record = world.record(upload)
        assert (record["state"], record["step"], record["rows_out"]) == (LOADED, "load", 10) and "owner" not in record
        assert [run["outcome"] for run in record["runs"]] == [LOADED]
    assert len(world.alerts) == 1 and "bad-0.csv" in world.alerts[0]["Message"], "the rejected files are alerted once"
    assert world.sqs.get_queue_attributes(QueueUrl=world.inbox, AttributeNames=["All"])["Attributes"]["ApproximateNumberOfMessages"] == "0"
    assert (
        world.dynamodb.get_item(
            TableName=world.table, Key={"object": {"S": sent["Claim Pending Uploads"]["lock_object"]}, "version": {"S": "run"}}
        ).get("Item")
        is None
    ), "run lock released"


def test_a_scheduled_run_with_nothing_pending_ends_at_once_and_says_so(world: ScheduledWorld) -> None:
    twelve_uploads(world)
    assert world.run("sched-1")[0].succeeded
    result, _ = world.run("sched-2")
    assert result.status == "SUCCEEDED" and result.states_entered[-1] == "Nothing To Run"
    assert result.output["message"].startswith("nothing pending") and "nothing crawled, cleaned or loaded" in result.output["message"]
    assert [call["state"] for call in result.calls] == ["Claim Pending Uploads"], "no crawl, no clean, no load"


def test_a_scheduled_run_whose_load_fails_leaves_all_twelve_for_the_next_which_loads_them_once(world: ScheduledWorld) -> None:
    bad, empty, good = twelve_uploads(world)
    failed, _ = world.run("sched-1", load_fails=True)
    assert failed.status == "FAILED" and failed.error == "LoadFailed"
    report = world.report(failed, "sched-1")
    assert report.status == "SUCCEEDED", report
    [message] = report.inputs_to("Notify Failure")
    assert message["Message"]["object"].startswith("9 uploads: ") and all(u.uri in message["Message"]["object"] for u in good)
    assert (message["Message"]["run_id"], message["Message"]["failed_step"]) == ("sched-1", "Load Query Failed")
    assert {world.record(u)["state"] for u in good} == {FAILED}
    assert [world.record(u)["state"] for u in bad + empty] == [REJECTED, REJECTED, SKIPPED_EMPTY], "ended ones stay ended"
    again = world.report(failed, "sched-1")
    assert again.states_entered[-1] == "Already Reported" and again.calls_to("Notify Failure") == [], "one failure, one message"

    retried, _ = world.run("sched-2")
    assert retried.status == "SUCCEEDED", retried
    [clean] = retried.inputs_to("Run Clean Job")
    assert sorted(json.loads(clean["Arguments"]["--source_uris"])) == sorted(u.uri for u in good), (
        "the failed run's uploads, and only those"
    )
    assert retried.output["outcomes"] == {LOADED: 9}
    for upload in good:
        assert [run["outcome"] for run in world.record(upload)["runs"]] == [FAILED, LOADED], "loaded exactly once"
    assert world.run("sched-3")[0].states_entered[-1] == "Nothing To Run"


def test_a_scheduled_run_of_several_uploads_with_one_different_header_crawls_once_and_says_why_on_each(world: ScheduledWorld) -> None:
    world.crawled()
    good = [world.upload(f"store-{i}.csv") for i in range(3)]
    bad = world.upload("bad-renamed.csv", header=HEADER.replace("store_id", "store_code"))
    result, _ = world.run("sched-1")
    assert result.status == "SUCCEEDED", result
    assert result.states_entered.count("Crawl") == 1 and len(result.calls_to("Start Crawler")) == 1, "one crawl for the run"
    [check], [clean] = result.inputs_to("Check Schema"), result.inputs_to("Run Clean Job")
    assert check["Payload"]["source_uris"] == clean["Arguments"]["--source_uris"], "the check sees the uploads the run cleans"
    reasons = {world.record(upload)["crawl"] for upload in [*good, bad]}
    [reason] = reasons
    assert reason.startswith(f"{bad.uri}: header (") and "store_code" in reason, reasons
    assert world.record(bad)["state"] == REJECTED, "the clean job still rejects the file as a whole"
    assert [world.record(upload)["state"] for upload in good] == [LOADED] * 3


def test_a_scheduled_run_whose_uploads_all_have_the_tables_header_skips_the_crawl(world: ScheduledWorld) -> None:
    world.crawled()
    good = [world.upload(f"store-{i}.csv") for i in range(3)]
    result, _ = world.run("sched-1")
    assert result.status == "SUCCEEDED", result
    assert not any(state in result.states_entered for state in CRAWL_STATES), "nothing for a crawl to change"
    assert len(result.calls_to("Run Clean Job")) == 1 and len(result.calls_to("Start Load Query")) == 1
    assert [(world.record(u)["crawl"], world.record(u)["state"]) for u in good] == [("schema unchanged", LOADED)] * 3


def test_a_first_scheduled_run_without_a_raw_table_crawls(world: ScheduledWorld) -> None:
    uploads = [world.upload(f"store-{i}.csv") for i in range(2)]
    result, _ = world.run("sched-1")
    assert result.status == "SUCCEEDED" and len(result.calls_to("Start Crawler")) == 1
    assert {world.record(upload)["crawl"] for upload in uploads} == {crawl_check.NO_TABLE}


def lock_item(world: ScheduledWorld) -> dict[str, Any] | None:
    claim = world.definition["States"]["Claim Pending Uploads"]["Parameters"]["Payload"]
    key = {"object": {"S": claim["lock_object"]}, "version": {"S": scheduled_runs.LOCK_VERSION}}
    item: dict[str, Any] | None = world.dynamodb.get_item(TableName=world.table, Key=key).get("Item")
    return item


def test_an_overlapping_scheduled_run_ends_at_once_and_says_so(world: ScheduledWorld) -> None:
    twelve_uploads(world)
    going = {"Execution": {"Name": "sched-0", "Id": f"{MACHINE}:sched-0", "Input": {"requested": []}}}
    taken = scheduled_runs.claim(world.payload("Claim Pending Uploads", {}, going), world.clients, datetime.now(UTC))
    assert taken["count"] == 12, "a run in flight holds the lock and the 12 uploads"
    overlapping, _ = world.run("sched-1")
    assert overlapping.status == "SUCCEEDED" and overlapping.states_entered[-1] == "Run Already Going"
    assert "sched-0 holds the run lock" in overlapping.output["message"]
    assert [call["state"] for call in overlapping.calls] == ["Claim Pending Uploads"], "nothing crawled, cleaned or loaded"
    assert lock_item(world) is not None and lock_item(world)["run_id"]["S"] == "sched-0", "the other run keeps its lock"


def test_a_failed_run_holds_the_lock_until_its_failure_report_releases_it(world: ScheduledWorld) -> None:
    twelve_uploads(world)
    failed, _ = world.run("sched-1", load_fails=True)  # ended without its report: it still holds the run lock
    assert failed.status == "FAILED"
    overlapping, _ = world.run("sched-2")
    assert overlapping.status == "SUCCEEDED" and overlapping.states_entered[-1] == "Run Already Going"
    assert "sched-1 holds the run lock" in overlapping.output["message"]
    assert [call["state"] for call in overlapping.calls] == ["Claim Pending Uploads"]
    world.report(failed, "sched-1")  # the failure reporter releases the lock
    assert world.run("sched-3")[0].output["outcomes"] == {LOADED: 9}


def test_a_run_that_curated_no_row_ends_its_uploads_and_releases_the_lock_without_a_load(world: ScheduledWorld) -> None:
    empty = world.upload("empty-0.csv")
    result, _ = world.run("sched-1")
    assert result.status == "SUCCEEDED" and result.states_entered[-1] == "No Rows To Load"
    assert result.calls_to("Start Load Query") == [] and result.calls_to("Take Load Lock") == []
    assert result.output["outcomes"] == {SKIPPED_EMPTY: 1} and world.record(empty)["state"] == SKIPPED_EMPTY
    assert lock_item(world) is None


@pytest.mark.parametrize(("status", "error"), [("TIMED_OUT", "States.Timeout"), ("ABORTED", "ExecutionABORTED")])
def test_a_timed_out_or_aborted_run_records_the_failure_on_its_uploads_releases_the_lock_and_says_so_once(
    world: ScheduledWorld, status: str, error: str
) -> None:
    """The run stopped during its load (the interpreter cannot time out or stop a run: its result is rewritten to
    what EventBridge reports for one)."""
    _, _, good = twelve_uploads(world)
    running, _ = world.run("sched-1", load_fails=True)
    stopped = ExecutionResult(
        status=status, output=None, error=None, cause=None, calls=running.calls, states_entered=running.states_entered
    )
    report = world.report(stopped, "sched-1")
    [message] = report.inputs_to("Notify Failure")
    assert message["Message"]["error"] == error and message["Message"]["object"].startswith("9 uploads: ")
    assert {(world.record(u)["state"], world.record(u)["error"]) for u in good} == {(FAILED, error)}
    assert lock_item(world) is None
    assert world.run("sched-2")[0].output["outcomes"] == {LOADED: 9}


def test_a_run_pipeline_ops_starts_takes_the_requested_upload_first(world: ScheduledWorld) -> None:
    """`rerun` of a failed upload that three runs already tried (no longer retaken automatically) asks for it."""
    [upload] = [world.upload("store-x.csv")]
    for attempt in range(3):
        result, _ = world.run(f"sched-{attempt}", load_fails=True)
        world.report(result, f"sched-{attempt}")
    assert world.run("sched-3")[0].states_entered[-1] == "Nothing To Run", "three failed runs: not retaken automatically"
    requested = {"requested": [{"bucket": upload.bucket, "key": upload.key, "version_id": upload.version_id, "etag": upload.etag}]}
    result, _ = world.run("ops-1", execution_input=requested)
    assert result.output["outcomes"] == {LOADED: 1} and world.record(upload)["state"] == LOADED


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pipeline_constructs.runtime.spark_settings import local_session

    session = local_session(app_name="step-functions-schedule-tests", cores=2)
    yield session
    session.stop()


HEADER = "transaction_id,store_id,sku,quantity,unit_price,discount,currency,sold_at,channel"


@pytest.mark.spark
def test_on_the_real_clean_job_a_scheduled_run_loads_the_9_good_uploads_rejects_the_2_bad_and_skips_the_empty_one(
    fake_aws: None, definition: dict[str, Any], reporter: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    """Scenario 1 with the clean job's own transform on a local Spark (its settlement, --settle_uploads, included)."""
    world = ScheduledWorld(definition, reporter, spark=spark, tmp_path=tmp_path)
    bad = [world.upload(f"bad-{i}.csv", "store_id,sku\nS009,SKU-1\n") for i in range(2)]
    empty = [world.upload("empty-0.csv", f"{HEADER}\n")]
    rows = lambda i: "".join(f"TX-{10 * i + n:010d},S001,SKU-{n},2,10.00,1.00,EUR,2024-05-0{n + 1}T10:00:00Z,store\n" for n in range(3))  # noqa: E731
    good = [world.upload(f"store-{i}.csv", f"{HEADER}\n{rows(i)}") for i in range(9)]
    result, _ = world.run("sched-spark")
    assert result.status == "SUCCEEDED", result
    assert len(result.calls_to("Run Clean Job")) == 1 and len(result.calls_to("Start Load Query")) == 1
    assert result.output["outcomes"] == {LOADED: 9, REJECTED: 2, SKIPPED_EMPTY: 1}
    assert [world.record(u)["state"] for u in bad + empty] == [REJECTED, REJECTED, SKIPPED_EMPTY]
    assert all((world.record(u)["state"], world.record(u)["rows_out"]) == (LOADED, 3) for u in good), "each upload's own counts"
    assert len(world.alerts) == 1


# --- the template ---------------------------------------------------------------------------------------------------------
def test_the_schedule_starts_the_state_machine_in_its_time_zone_without_a_flexible_window_retried_with_a_dead_letter_queue(
    template: dict[str, Any],
) -> None:
    assertions = Template.from_json(template)
    assertions.resource_count_is("AWS::Scheduler::Schedule", 1)
    assertions.has_resource_properties(
        "AWS::Scheduler::Schedule",
        {
            "ScheduleExpression": SCHEDULE["schedule"],
            "ScheduleExpressionTimezone": SCHEDULE["time_zone"],
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            "Target": Match.object_like(
                {
                    "Arn": {"Ref": Match.string_like_regexp("PipelineStateMachine")},
                    "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600},
                    "DeadLetterConfig": {"Arn": {"Fn::GetAtt": [Match.string_like_regexp("ScheduleDeadLetterQueue"), "Arn"]}},
                }
            ),
        },
    )
    queues = {lid: r for lid, r in template["Resources"].items() if r["Type"] == "AWS::SQS::Queue"}
    for lid in (next(q for q in queues if "ScheduleDeadLetterQueue" in q), next(q for q in queues if "ScheduledRunsInbox" in q)):
        assert "KmsMasterKeyId" in queues[lid]["Properties"], f"{lid} is encrypted"
    outputs = {key: value["Value"] for key, value in template["Outputs"].items()}
    assert (outputs["ScheduleExpression"], outputs["ScheduleTimeZone"]) == (SCHEDULE["schedule"], SCHEDULE["time_zone"])
    assert '\\"kind\\":\\"schedule\\"' in json.dumps(outputs["DeadLetterQueues"]), "the schedule's dead-letter queue is listed for replay"


def test_on_a_schedule_the_upload_rule_feeds_the_inbox_and_starts_no_execution(template: dict[str, Any]) -> None:
    [rule] = [r for r in template["Resources"].values() if r["Type"] == "AWS::Events::Rule" and "Object Created" in json.dumps(r)]
    [target] = rule["Properties"]["Targets"]
    [inbox] = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::SQS::Queue" and "ScheduledRunsInbox" in lid]
    assert target["Arn"] == {"Fn::GetAtt": [inbox, "Arn"]}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 8


def test_upload_mode_builds_no_schedule_and_no_inbox(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    upload_mode = copy.deepcopy(templates[(ENV, STACK)])
    kinds = {r["Type"] for r in upload_mode["Resources"].values()}
    assert "AWS::Scheduler::Schedule" not in kinds
    assert not any("ScheduledRuns" in lid for lid in upload_mode["Resources"])


# --- pipeline-ops with a scheduled Step Functions form ------------------------------------------------------------------
def scheduled_stack(world: ScheduledWorld, state_machine_arn: str) -> tuple[Environment, FormStack]:
    outputs = {
        "StateMachineArn": state_machine_arn,
        "ScheduleExpression": SCHEDULE["schedule"],
        "ScheduleTimeZone": SCHEDULE["time_zone"],
        "InboxQueueUrl": world.inbox,
    }
    stack = FormStack("step_functions", "dev-StepFunctions", world.prefix, 14400, True, outputs)
    environment = Environment(
        "dev", FAKE_AWS_REGION, world.table, world.bucket, "quarantine", "topic", "retail_sales", {"step_functions": stack}
    )
    return environment, stack


@pytest.fixture
def state_machine(fake_aws: None) -> str:
    sfn = boto3.client("stepfunctions", region_name=FAKE_AWS_REGION)
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    return str(
        sfn.create_state_machine(name="retail-pipeline", definition=definition, roleArn="arn:aws:iam::123456789012:role/sfn")[
            "stateMachineArn"
        ]
    )


def test_rerun_of_a_failed_upload_on_a_scheduled_form_starts_a_run_that_takes_it_and_leaves_it_in_the_inbox_for_the_next(
    world: ScheduledWorld, state_machine: str
) -> None:
    """No redrive (a scheduled run holds many uploads and the run lock): the event goes to the inbox and a new
    execution asks for the upload; played on the synthesized definition, that execution loads it."""
    upload = world.upload("store-x.csv")
    for attempt in range(3):
        result, _ = world.run(f"sched-{attempt}", load_fails=True)
        world.report(result, f"sched-{attempt}")
    environment, stack = scheduled_stack(world, state_machine)
    sfn = boto3.client("stepfunctions", region_name=FAKE_AWS_REGION)
    clients = {"stepfunctions": sfn, "sqs": world.sqs, "dynamodb": world.dynamodb}
    action = Runs(clients, environment).rerun(stack, upload, world.record(upload), force=False, now=datetime.now(UTC))
    assert action.how == "started" and "takes the upload from the inbox" in action.note
    started = json.loads(sfn.describe_execution(executionArn=action.run)["input"])
    assert started == {"requested": [{"bucket": upload.bucket, "key": upload.key, "version_id": upload.version_id, "etag": upload.etag}]}
    result, _ = world.run("ops-1", execution_input=started)
    assert result.output["outcomes"] == {LOADED: 1}
    assert [run["outcome"] for run in world.record(upload)["runs"]] == [FAILED, FAILED, FAILED, LOADED]
    assert world.run("sched-9")[0].states_entered[-1] == "Nothing To Run", "the inbox copy is refused by the ledger, not loaded twice"


def test_rerun_on_a_scheduled_form_refuses_a_finished_upload_and_fails_a_stuck_one_for_its_owner_first(
    world: ScheduledWorld, state_machine: str
) -> None:
    done, stuck = world.upload("store-1.csv"), world.upload("store-2.csv")
    environment, stack = scheduled_stack(world, state_machine)
    clients = {"stepfunctions": boto3.client("stepfunctions", region_name=FAKE_AWS_REGION), "sqs": world.sqs, "dynamodb": world.dynamodb}
    world.ledger.start(done, run_id="old", execution="x", step="crawl")
    world.ledger.finish(done, run_id="old", outcome=LOADED)
    with pytest.raises(Refused, match="loaded: a scheduled run takes an upload again only as a new object version"):
        Runs(clients, environment).rerun(stack, done, world.record(done), force=True, now=datetime.now(UTC))
    world.ledger.start(stuck, run_id="timed-out", execution="x", step="crawl")
    later = datetime.now(UTC) + timedelta(days=1)  # past the form's run timeout
    action = Runs(clients, environment).rerun(stack, stuck, world.record(stuck), force=False, now=later)
    record = world.record(stuck)
    assert action.how == "started" and (record["state"], record["error"]) == (FAILED, "RunTimedOut")


def test_reconcile_start_and_the_schedule_dead_letters_start_a_scheduled_run(world: ScheduledWorld, state_machine: str) -> None:
    environment, stack = scheduled_stack(world, state_machine)
    sfn = boto3.client("stepfunctions", region_name=FAKE_AWS_REGION)
    clients = {"stepfunctions": sfn, "sqs": world.sqs, "dynamodb": world.dynamodb}
    lost = Upload(world.bucket, f"{world.prefix}lost.csv", "v-lost", "e-lost")
    Runs(clients, environment).start_new_run(stack, lost, datetime.now(UTC))
    assert world.run("sched-1")[0].output["outcomes"] == {LOADED: 1}, "the run takes the lost upload (from the inbox here)"
    dead_letters = world.sqs.create_queue(QueueName="schedule-dlq")["QueueUrl"]
    world.sqs.send_message(QueueUrl=dead_letters, MessageBody=json.dumps({"requested": []}))
    queue = DeadLetterQueue(url=dead_letters, arn="arn:dlq", kind="schedule", form="step_functions", target_arn=state_machine)
    with_queue = Environment(
        **{**environment.__dict__, "forms": {"step_functions": FormStack(**{**stack.__dict__, "dead_letter_queues": (queue,)})}}
    )
    [replay] = replay_dead_letters(clients, with_queue, dry_run=False, now=datetime.now(UTC))
    assert (replay.replayed, replay.errors) == (1, [])
    inputs = [
        json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])
        for e in sfn.list_executions(stateMachineArn=state_machine)["executions"]
    ]
    assert {"requested": []} in inputs


# --- construct validation ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stateful() -> StatefulStack:
    """A dev StatefulStack in a fresh App with cdk.json's context (no synth)."""
    context = cdk_context()
    config = parse_app_config(context["pipeline:environments"], only="dev", default_region="eu-west-1")
    contract = DatasetContract.from_file(CONTRACT_PATH)
    return StatefulStack(
        cdk.App(context=context), "Stateful", config=config.environments[0], contract=contract, env=cdk.Environment(region="eu-west-1")
    )


@pytest.mark.parametrize(
    ("construct_id", "kwargs", "named"),
    [
        ("NoLedger", {"schedule": Schedule("rate(1 hour)")}, ["ledger=None", "schedule=None"]),
        ("BadExpression", {"schedule": "every hour", "with_ledger": True}, ["schedule='every hour'", "cron("]),
        ("BadZone", {"schedule": Schedule("rate(1 hour)", "Mars/Olympus"), "with_ledger": True}, ["time_zone='Mars/Olympus'", "IANA"]),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_setting_and_value(
    stateful: StatefulStack, construct_id: str, kwargs: dict[str, Any], named: list[str]
) -> None:
    if kwargs.pop("with_ledger", False):
        kwargs["ledger"] = stateful.ledger
    with pytest.raises(PipelinePropsError) as raised:
        pipeline_in(stateful, construct_id, landing_prefix=f"incoming/{construct_id.lower()}/", **kwargs)
    for fragment in named:
        assert fragment in str(raised.value)


def test_a_scheduled_pipeline_exposes_its_schedule_inbox_and_alarms(stateful: StatefulStack) -> None:
    pipeline = pipeline_in(stateful, "Scheduled", ledger=stateful.ledger, schedule="rate(2 hours)", landing_prefix="incoming/scheduled/")
    assert (pipeline.schedule_expression, pipeline.schedule and pipeline.schedule.time_zone) == ("rate(2 hours)", "UTC")
    runs = pipeline.scheduled_runs
    assert runs is not None and runs.schedule is not None and runs.dead_letter_queue is not None
    assert runs.lease.to_seconds() == pipeline.state_machine_timeout.to_seconds() + 15 * 60
    assert pipeline.schedule_dead_letter_alarm in pipeline.alarms
