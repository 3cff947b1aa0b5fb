"""Parallel loads in the Step Functions form (`target=[AthenaTarget, RedshiftTarget]`): a two-target construct
synthesized with cdk-nag, its state machine executed in the ASL interpreter with scripted Athena and Redshift
answers, and its ledger writes (and the failure reporter's) replayed on moto's DynamoDB.

One target failing: the other's MERGE ran and its `load_<target>` says loaded, the failed one's says failed, the
execution fails naming the failed target, and a re-run (a new execution for the same upload, as `pipeline-ops rerun`
starts when the run ended in a Fail state) loads only the failed target. aws-local-stepfunctions has no redrive, so
a redrive is not executed here; what makes one possible (a task's error fails the branch at its load, not at a Fail
state) is checked on the definition's run instead.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import boto3
import pytest

from pipeline_constructs import (
    AthenaTarget,
    CleanJob,
    DatasetContract,
    PipelineAlerting,
    PipelineCatalog,
    PipelineNetwork,
    PipelineStorage,
    RedshiftTarget,
    StepFunctionsPipeline,
)
from pipeline_constructs.ledger import UploadLedger as LedgerTable
from pipeline_constructs.runtime import scheduled_runs
from pipeline_constructs.runtime.upload_ledger import Upload, UploadLedger
from stacks.stateful_stack import CONTRACT_PATH
from tests.asl_runner import (
    ExecutionResult,
    definition_from_template,
    ledger_answers,
    lock_taken,
    published_message,
    replay_ledger_writes,
    run_failure_report,
    run_state_machine,
    task_states,
)
from tests.ledger_table import create_ledger_table
from tests.test_constructs import feature_flags

pytestmark = [pytest.mark.usefixtures("fake_aws"), pytest.mark.timeout(600)]

BUCKET = "landing-bucket"
KEY = "incoming/step_functions/2026/11/sales.csv"
VERSION = "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"
EVENT: dict[str, Any] = {
    "source": "aws.s3",
    "time": "2026-11-25T09:12:44Z",
    "detail-type": "Object Created",
    "detail": {
        "bucket": {"name": BUCKET},
        "object": {"key": KEY, "size": 1234, "etag": "5d41402abc4b2a76b9719d911017c592", "version-id": VERSION},
    },
}
STATE_MACHINE = "arn:aws:states:eu-west-1:123456789012:execution:retail"


def context(run_id: str) -> dict[str, Any]:
    return {"Execution": {"Name": run_id, "Id": f"{STATE_MACHINE}:{run_id}"}}


CRAWLER_DONE = {
    "result": {
        "Crawler": {"Name": "retail-raw", "State": "READY", "LastCrawl": {"Status": "SUCCEEDED", "StartTime": "2026-11-25T09:13:02.250Z"}}
    }
}
QUERY_STARTED = {"result": {"QueryExecutionId": "q-1"}}
QUERY_SUCCEEDED = {"result": {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}}}
SUBMITTED = {"result": {"Id": "stmt-1"}}
STATEMENT_RUNNING = {"result": {"Id": "stmt-1", "Status": "STARTED"}}
STATEMENT_FINISHED = {"result": {"Id": "stmt-1", "Status": "FINISHED"}}
COPY_ERROR = "ERROR: Spectrum Scan Error: incompatible Parquet schema"
STATEMENT_FAILED = {"result": {"Id": "stmt-1", "Status": "FAILED", "Error": COPY_ERROR}}
COUNTS = {"rows_in": 40, "rows_out": 40, "rows_quarantined": 0, "duplicates_dropped": 0, "lines_read": 41, "lines_quarantined": 0}


def _app(*, schedule: str | None = None, single: bool = False) -> cdk.App:
    """One stack: storage, catalog, clean job, ledger, an Athena and a Redshift target, and the form loading both
    (or, `single`, the Athena target alone), with cdk-nag's AwsSolutions and Serverless checks as validation plugins."""
    from cdk_nag import AwsSolutionsChecks, ServerlessChecks

    from pipeline_constructs.acknowledgements import AcknowledgementsPlugin

    app = cdk.App(context=feature_flags())
    stack = cdk.Stack(app, "Pipeline", env=cdk.Environment(region="eu-west-1"))
    storage = PipelineStorage(stack, "Storage")
    alerting = PipelineAlerting(stack, "Alerts", emails=["ops@example.com"])
    catalog = PipelineCatalog(stack, "Catalog", storage=storage, database_name="retail_test")
    clean = CleanJob(stack, "Clean", storage=storage, catalog=catalog, contract=DatasetContract.from_file(CONTRACT_PATH))
    ledger = LedgerTable(stack, "Ledger", encryption_key=storage.key)
    athena = AthenaTarget(stack, "Athena", storage=storage, catalog=catalog, clean_job=clean)
    target: Any = athena
    if not single:
        network = PipelineNetwork(stack, "Network", availability_zones=["eu-west-1a", "eu-west-1b", "eu-west-1c"], min_availability_zones=3)
        target = [athena, RedshiftTarget(stack, "Redshift", storage=storage, clean_job=clean, vpc=network.vpc)]
    StepFunctionsPipeline(
        stack,
        "Pipeline",
        storage=storage,
        catalog=catalog,
        clean_job=clean,
        target=target,
        alerting=alerting,
        ledger=ledger,
        schedule=schedule,
    )
    cdk.Validations.of(app).add_plugins(AcknowledgementsPlugin(), AwsSolutionsChecks(app), ServerlessChecks(app))
    return app


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """The two-target upload-mode stack; its synth fails on any cdk-nag finding not acknowledged with a reason."""
    return _app().synth().get_stack_by_name("Pipeline").template


@pytest.fixture(scope="module")
def scheduled_template() -> dict[str, Any]:
    return _app(schedule="rate(1 hour)").synth().get_stack_by_name("Pipeline").template


@pytest.fixture(scope="module")
def definition(template: dict[str, Any]) -> dict[str, Any]:
    return definition_from_template(template)


@pytest.fixture(scope="module")
def reporter(template: dict[str, Any]) -> dict[str, Any]:
    return definition_from_template(template, "FailureReporter")


def scripts(definition: dict[str, Any], **outcomes: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every Task of the two-target definition answered: the ledger accepts, the crawl covers the upload, the clean
    job curates rows, Athena's MERGE succeeds and Redshift's batch finishes (unless `outcomes`, keyed by state name)."""
    answers: dict[str, list[dict[str, Any]]] = {
        **ledger_answers(),
        "Get Crawler": [CRAWLER_DONE],
        "Start Crawler": [{"result": {}}],
        "Run Clean Job": [{"result": {"Id": "jr_1", "JobRunState": "SUCCEEDED"}}],
        "Find Curated Rows": [{"result": {"KeyCount": 1}}],
        "Read Athena Outcome": [{"result": {}}],
        "Read Redshift Outcome": [{"result": {}}],
        "Start Load Query (athena)": [QUERY_STARTED],
        "Get Load Query (athena)": [QUERY_SUCCEEDED],
        "Start Load Statements (redshift)": [SUBMITTED],
        "Describe Load (redshift)": [STATEMENT_RUNNING, STATEMENT_FINISHED],
        **{f"{state} ({name})": [lock_taken()] for state in ("Take Load Lock",) for name in ("athena", "redshift")},
        **{
            f"{state} ({name})": [{"result": {}}]
            for state in ("Release Load Lock", "Release Load Lock After Failure")
            for name in ("athena", "redshift")
        },
        **{f"Record {name} {outcome}": [{"result": {}}] for name in ("Athena", "Redshift") for outcome in ("Loaded", "Failed")},
        **outcomes,
    }
    present = set(task_states(definition))
    return {name: answer for name, answer in answers.items() if name in present}


def execute(definition: dict[str, Any], run_id: str, **outcomes: list[dict[str, Any]]) -> ExecutionResult:
    # Redshift's polls wait a little (real time), so Athena's branch has ended when Redshift's fails.
    return run_state_machine(
        definition,
        EVENT,
        scripts(definition, **outcomes),
        context=context(run_id),
        wait_time_overrides={"Wait For Load (redshift)": 40},
        timeout=120,
    )


class World:
    """One moto ledger table every run and report of a test writes to, in order."""

    def __init__(self) -> None:
        self.client = boto3.client("dynamodb")
        self.table = create_ledger_table(self.client)
        self.upload = Upload(BUCKET, KEY, version_id=VERSION)

    def replay(self, result: ExecutionResult, *, counts: dict[str, Any] | None = COUNTS) -> None:
        replay_ledger_writes(result, self.client, self.table, clean_counts=counts)

    def record(self) -> dict[str, Any]:
        record = UploadLedger(self.client, self.table, form="step_functions").get(self.upload)
        assert record is not None
        return record

    def read_outcome(self, definition: dict[str, Any], target: str) -> dict[str, Any]:
        """What Read <Target> Outcome gets from the table now: the state's own GetItem on moto."""
        state = branch_state(definition, f"Read {target.title()} Outcome")
        parameters = state["Parameters"]
        answer = self.client.get_item(
            TableName=self.table,
            Key={"object": {"S": self.upload.uri}, "version": {"S": VERSION}},
            ProjectionExpression=parameters["ProjectionExpression"],
            ExpressionAttributeNames=parameters["ExpressionAttributeNames"],
            ConsistentRead=parameters["ConsistentRead"],
        )
        return {"result": {"Item": answer["Item"]} if "Item" in answer else {}}

    def report(self, reporter: dict[str, Any], result: ExecutionResult, run_id: str) -> ExecutionResult:
        report = run_failure_report(reporter, result, EVENT, name=run_id, execution_arn=f"{STATE_MACHINE}:{run_id}")
        replay_ledger_writes(report, self.client, self.table)
        return report

    def lock_items(self) -> list[dict[str, Any]]:
        items = self.client.scan(TableName=self.table)["Items"]
        return [item for item in items if item["object"]["S"].startswith("lock:")]


def branch_state(definition: dict[str, Any], name: str) -> dict[str, Any]:
    for branch in definition["States"]["Load Targets"]["Branches"]:
        if name in branch["States"]:
            return dict(branch["States"][name])
    raise KeyError(name)


# --- synthesized -------------------------------------------------------------------------------------------------------
def test_two_targets_synthesize_cdk_nag_clean_with_one_branch_and_one_lock_per_target(
    template: dict[str, Any], definition: dict[str, Any]
) -> None:
    """The `template` fixture's synth ran cdk-nag's AwsSolutions and Serverless packs (a finding stops it)."""
    load = definition["States"]["Load Targets"]
    assert load["Type"] == "Parallel" and [b["StartAt"] for b in load["Branches"]] == ["Read Athena Outcome", "Read Redshift Outcome"]
    assert definition["States"]["Record Load Step"]["Next"] == "Load Targets" and load["Next"] == "Record Loaded"
    locks = {
        name: branch_state(definition, f"Load Into {name.title()}")["Branches"][0]["States"][f"Take Load Lock ({name})"]["Parameters"]
        for name in ("athena", "redshift")
    }
    objects = {name: parameters["Payload"]["Key"]["object"]["S"] for name, parameters in locks.items()}
    assert objects["athena"].startswith("lock:athena:") and objects["redshift"].startswith("lock:redshift:")
    # One lock function, allowed to write those two items only.
    statements = [
        statement
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::IAM::Policy"
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
        if statement.get("Condition", {}).get("ForAllValues:StringEquals", {}).get("dynamodb:LeadingKeys")
    ]
    assert statements and all(
        sorted(s["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]) == sorted(objects.values()) for s in statements
    )
    functions = [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"] == "load_lock.handler"
    ]
    assert len(functions) == 1


def test_one_target_keeps_todays_state_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """With one target nothing is parallel: no Load Targets, the load lock states named as before (the app's
    snapshots, tests/test_app_synth.py, hold the whole template byte for byte)."""
    definition = definition_from_template(_app(single=True).synth().get_stack_by_name("Pipeline").template)
    assert "Load Targets" not in definition["States"] and definition["States"]["Record Load Step"]["Next"] == "Load Into Athena"
    inner = definition["States"]["Load Into Athena"]["Branches"][0]["States"]
    assert {"Take Load Lock", "Start Load Query", "Wait For Load"} <= set(inner)
    assert definition["States"]["Load Into Athena"]["Next"] == "Release Load Lock"


# --- executed ----------------------------------------------------------------------------------------------------------
def test_both_targets_load_in_parallel_and_the_record_ends_loaded(definition: dict[str, Any]) -> None:
    world = World()
    result = execute(definition, "run-1")
    assert result.status == "SUCCEEDED", result
    assert len(result.calls_to("Start Load Query (athena)")) == 1 and len(result.calls_to("Start Load Statements (redshift)")) == 1
    world.replay(result)
    record = world.record()
    assert (record["state"], record["load_athena"], record["load_redshift"]) == ("loaded", "loaded", "loaded")
    assert world.lock_items() == []  # each branch released its own lock


def test_redshift_failing_keeps_athenas_load_fails_naming_redshift_and_a_rerun_loads_only_redshift(
    definition: dict[str, Any], reporter: dict[str, Any]
) -> None:
    world = World()
    first = execute(definition, "run-1", **{"Describe Load (redshift)": [STATEMENT_RUNNING, STATEMENT_RUNNING, STATEMENT_FAILED]})

    assert first.status == "FAILED", first
    assert first.error == "LoadFailed" and first.cause == f"load into redshift failed: {COPY_ERROR}"
    assert "Athena Loaded" in first.states_entered and "Redshift Load Failed" in first.states_entered
    assert len(first.calls_to("Start Load Query (athena)")) == 1  # Athena's MERGE ran
    world.replay(first)
    report = world.report(reporter, first, "run-1")
    message, subject = published_message(report)
    assert "redshift" in message["cause"] and message["error"] == "LoadFailed"
    record = world.record()
    assert (record["state"], record["load_athena"], record["load_redshift"]) == ("failed", "loaded", "failed")
    assert record["cause"].startswith("load into redshift failed: ")
    assert world.lock_items() == []  # Athena's released after its load, Redshift's on its failure path

    # pipeline-ops rerun: the run ended in a Fail state, so a new execution for the same upload.
    second = execute(
        definition,
        "run-2",
        **{
            "Read Athena Outcome": [world.read_outcome(definition, "athena")],
            "Read Redshift Outcome": [world.read_outcome(definition, "redshift")],
            "Describe Load (redshift)": [STATEMENT_FINISHED],
        },
    )
    assert second.status == "SUCCEEDED", second
    assert second.calls_to("Start Load Query (athena)") == [] and "Athena Loaded Before" in second.states_entered
    assert len(second.calls_to("Start Load Statements (redshift)")) == 1
    assert second.calls_to("Take Load Lock (athena)") == []
    [read] = second.inputs_to("Read Athena Outcome")
    assert read["Key"] == {"object": {"S": f"s3://{BUCKET}/{KEY}"}, "version": {"S": VERSION}}
    world.replay(second)
    record = world.record()
    assert (record["state"], record["load_athena"], record["load_redshift"]) == ("loaded", "loaded", "loaded")
    assert [run["outcome"] for run in record["runs"]] == ["failed", "loaded"]


def test_a_task_error_fails_the_branch_at_its_load_where_a_redrive_resumes_it(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    """A task's error (after its retries) is not caught into a Fail state: the execution ends failed at Load Targets
    with the error of Load Into Redshift's task, so `pipeline-ops rerun` may redrive it (RedriveExecution reruns only
    the Parallel's failed branch); the failure reporter releases every target's lock the execution holds."""
    world = World()
    error = {"error": "RedshiftData.ValidationException", "cause": "Redshift workgroup retail-staging is not available"}
    result = execute(definition, "run-1", **{"Start Load Statements (redshift)": [error]})
    assert result.status == "FAILED" and result.error == "RedshiftData.ValidationException", result
    fail_states = {name for name in _states_of_type(definition, "Fail")}
    assert not fail_states & set(result.states_entered)
    world.replay(result)
    # Redshift failed at once, so Step Functions stopped Athena's branch too (before its release, here).
    assert "redshift" in [item["object"]["S"].split(":")[1] for item in world.lock_items()]
    report = world.report(reporter, result, "run-1")
    assert [c["state"] for c in report.calls[:2]] == ["Release Load Lock (athena)", "Release Load Lock (redshift)"]
    assert world.lock_items() == []
    record = world.record()
    assert record["state"] == "failed" and record["error"] == "RedshiftData.ValidationException" and "load_redshift" not in record


def _states_of_type(definition: dict[str, Any], kind: str) -> list[str]:
    found = []
    for name, state in definition["States"].items():
        if state["Type"] == kind:
            found.append(name)
        for branch in state.get("Branches", []):
            found.extend(_states_of_type(branch, kind))
    return found


# --- scheduled ---------------------------------------------------------------------------------------------------------
def test_a_scheduled_run_loads_every_target_in_parallel_and_records_each_on_the_held_uploads(scheduled_template: dict[str, Any]) -> None:
    definition = definition_from_template(scheduled_template)
    load = definition["States"]["Load Targets"]
    assert definition["States"]["Record Load Step"]["Next"] == "Load Targets" and load["Next"] == "Record Loaded"
    for branch, name in zip(load["Branches"], ("athena", "redshift"), strict=True):
        assert branch["StartAt"] == f"Load Into {name.title()}"  # no skip: a scheduled run's uploads load together
        recorded = branch["States"][f"Record {name.title()} Loaded"]["Parameters"]["Payload"]
        assert (recorded["action"], recorded["target"], recorded["outcome"]) == ("target", name, "loaded")
        failed = branch["States"][f"Record {name.title()} Failed"]["Parameters"]["Payload"]
        assert (failed["action"], failed["outcome"]) == ("target", "failed")


def test_the_scheduled_function_records_a_targets_outcome_on_every_upload_the_run_still_holds() -> None:
    client = boto3.client("dynamodb")
    table = create_ledger_table(client)
    ledger = UploadLedger(client, table, form="step_functions")
    held = [Upload(BUCKET, f"incoming/step_functions/store-{n}.csv", version_id=f"v{n}") for n in range(3)]
    for upload in held:
        ledger.start(upload, run_id="sched-1", execution=f"{STATE_MACHINE}:sched-1", step="load")
    ledger.finish(held[2], run_id="sched-1", outcome="quarantined")  # the clean job ended this one
    event = {
        "TableName": table,
        "form": "step_functions",
        "run_id": "sched-1",
        "target": "redshift",
        "outcome": "failed",
        "source_uris": json.dumps([u.uri for u in held]),
        "source_versions": json.dumps([u.version for u in held]),
    }
    assert scheduled_runs.record_target(event, {"dynamodb": client}) == {"recorded": 2}
    assert [ledger.get(u).get("load_redshift") for u in held] == ["failed", "failed", None]  # type: ignore[union-attr]


def _branch_payload(definition: dict[str, Any], state: str, data: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    from tests.test_step_functions_schedule import resolve

    for branch in definition["States"]["Load Targets"]["Branches"]:
        if state in branch["States"]:
            return dict(resolve(branch["States"][state]["Parameters"]["Payload"], data, context))
    raise KeyError(state)


def _scheduled_run(world: Any, definition: dict[str, Any], name: str, *, redshift_fails: bool) -> ExecutionResult:
    """One scheduled execution of the two-target definition against the schedule tests' world (moto ledger and
    inbox): the scheduled runs function's own code answers each Lambda state, Redshift's batch FAILED or FINISHED."""
    from datetime import UTC, datetime

    from pipeline_constructs.runtime import crawl_check
    from tests.test_step_functions_schedule import CRAWLED_AFTER, CRAWLER_BEFORE, JOB_DONE

    context = {"Execution": {"Name": name, "Id": f"{STATE_MACHINE}:{name}", "Input": {"requested": []}}}
    answers: dict[str, list[dict[str, Any]]] = {}

    def call(state: str, action: Any, payload: dict[str, Any]) -> dict[str, Any]:
        answer = action({**payload, "inbox_url": world.inbox} if "inbox_url" in payload else payload)
        answers[state] = [{"result": {"Payload": answer, "StatusCode": 200}}]
        return answer

    claim = call(
        "Claim Pending Uploads",
        lambda p: scheduled_runs.claim(p, world.clients, datetime.now(UTC)),
        world.payload("Claim Pending Uploads", {}, context),
    )
    data = {"claim": {"answer": claim}, "upload": {"run_id": name}}
    call("Check Schema", lambda p: crawl_check.check(p, world.clients), world.payload("Check Schema", data, context))
    assert world.clean(definition["States"]["Run Clean Job"]["Parameters"]["Arguments"], data, context)
    call("Record Load Step", lambda p: scheduled_runs.to_load(p, world.clients), world.payload("Record Load Step", data, context))
    outcomes = {"Athena": "Loaded", "Redshift": "Failed" if redshift_fails else "Loaded"}
    for target, outcome in outcomes.items():
        state = f"Record {target} {outcome}"
        call(state, lambda p: scheduled_runs.record_target(p, world.clients), _branch_payload(definition, state, data, context))
    if not redshift_fails:
        call("Record Loaded", lambda p: scheduled_runs.finish(p, world.clients), world.payload("Record Loaded", data, context))
    answers.update(
        {
            "Get Crawler": [CRAWLER_BEFORE, CRAWLED_AFTER],
            "Start Crawler": [{"result": {}}],
            "Run Clean Job": [JOB_DONE],
            "Find Curated Rows": [{"result": {"KeyCount": 1}}],
            "Take Load Lock (athena)": [lock_taken()],
            "Take Load Lock (redshift)": [lock_taken()],
            "Release Load Lock (athena)": [{"result": {}}],
            "Release Load Lock (redshift)": [{"result": {}}],
            "Release Load Lock After Failure (redshift)": [{"result": {}}],
            "Start Load Query (athena)": [QUERY_STARTED],
            "Get Load Query (athena)": [QUERY_SUCCEEDED],
            "Start Load Statements (redshift)": [SUBMITTED],
            "Describe Load (redshift)": [STATEMENT_RUNNING, STATEMENT_RUNNING, STATEMENT_FAILED if redshift_fails else STATEMENT_FINISHED],
        }
    )
    given = {"Execution": {key: value for key, value in context["Execution"].items() if key != "Input"}}
    return run_state_machine(
        definition, context["Execution"]["Input"], answers, context=given, wait_time_overrides={"Wait For Load (redshift)": 40}, timeout=120
    )


def test_a_scheduled_run_whose_redshift_load_fails_records_each_target_on_every_upload_and_the_next_run_loads_them(
    scheduled_template: dict[str, Any],
) -> None:
    from tests.test_step_functions_schedule import ScheduledWorld, reported_error

    definition = definition_from_template(scheduled_template)
    reporter = definition_from_template(scheduled_template, "FailureReporter")
    world = ScheduledWorld(definition, reporter)
    world.crawled()
    uploads = [world.upload(f"store-{n}.csv") for n in range(3)]

    first = _scheduled_run(world, definition, "sched-1", redshift_fails=True)
    assert first.status == "FAILED" and first.error == "LoadFailed", first
    assert first.cause == f"load into redshift failed: {COPY_ERROR}"
    assert len(first.calls_to("Start Load Query (athena)")) == 1
    assert [(world.record(u)["load_athena"], world.record(u)["load_redshift"]) for u in uploads] == [("loaded", "failed")] * 3
    # The failure reporter: every target's lock, then the failure on every upload the run holds.
    from tests.asl_runner import history_answer, status_change_event

    event = status_change_event(first, {"requested": []}, name="sched-1", execution_arn=f"{STATE_MACHINE}:sched-1")
    payload = world.payload("Record Run Failure", {"detail": event["detail"], "error": reported_error(first)}, {}, reporter)
    answer = scheduled_runs.fail(payload, world.clients)
    report = run_state_machine(
        reporter,
        event,
        {
            "Release Load Lock (athena)": [{"result": {}}],
            "Release Load Lock (redshift)": [{"result": {}}],
            "Read Execution History": [history_answer(first)],
            "Record Run Failure": [{"result": {"Payload": answer, "StatusCode": 200}}],
            "Notify Failure": [{"result": {"MessageId": "m-1"}}],
        },
        context={"Execution": {"Name": "report-1"}},
    )
    assert report.status == "SUCCEEDED", report
    assert all(world.record(u)["state"] == "failed" and "redshift" in world.record(u)["cause"] for u in uploads)

    second = _scheduled_run(world, definition, "sched-2", redshift_fails=False)
    assert second.status == "SUCCEEDED", second
    assert [(world.record(u)["state"], world.record(u)["load_redshift"]) for u in uploads] == [("loaded", "loaded")] * 3
