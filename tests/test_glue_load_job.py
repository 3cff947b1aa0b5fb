"""The Glue Python shell load script (runtime/glue_load_job.py): Athena against moto, failures and Redshift via Stubber.

moto runs Athena queries to SUCCEEDED and has no way to make one fail, so the failed-query cases use botocore's
Stubber with the real service model (the responses are validated against it). moto's redshift-data never finishes
a statement, so the Redshift Data API path is Stubber only. The ledger writes run against moto DynamoDB + Glue.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from pipeline_constructs.runtime import glue_load_job
from pipeline_constructs.runtime.glue_load_job import (
    RUN_ID_TOKEN,
    LoadFailed,
    render_sql,
    resolve_args,
    run_athena_query,
    run_load,
    run_redshift_statements,
)
from pipeline_constructs.runtime.upload_ledger import Upload, UploadLedger
from pipeline_constructs.runtime.workflow_inputs import LOADING_PROPERTY, WorkflowInputsError, put_uploads
from tests.fake_aws import FAKE_AWS_REGION
from tests.ledger_table import create_ledger_table

REGION = FAKE_AWS_REGION
RUN_ID = "wr_0123456789abcdef"
MERGE_TEMPLATE = f'MERGE INTO "db"."t" AS t USING (SELECT * FROM "db"."t_runs" WHERE "run_id" = \'{RUN_ID_TOKEN}\') AS s ON t.k = s.k WHEN MATCHED THEN UPDATE SET v = s.v'
NO_SLEEP = {"sleep": lambda _seconds: None, "poll_seconds": 1}


def _athena_workgroup(athena: Any, name: str = "pipeline") -> str:
    athena.create_work_group(
        Name=name,
        Configuration={
            "ResultConfiguration": {"OutputLocation": "s3://results/athena/"},
            "EnforceWorkGroupConfiguration": True,
        },
    )
    return name


def test_render_sql_puts_the_run_id_where_the_token_is() -> None:
    [sql] = render_sql([MERGE_TEMPLATE], RUN_ID)
    assert f"\"run_id\" = '{RUN_ID}'" in sql
    assert RUN_ID_TOKEN not in sql


@pytest.mark.parametrize("run_id", ["", "x'; DROP TABLE t; --", "a/b", "x" * 129])
def test_render_sql_rejects_run_ids_that_could_break_the_literal(run_id: str) -> None:
    with pytest.raises(ValueError, match="run_id="):
        render_sql([MERGE_TEMPLATE], run_id)


def test_render_sql_rejects_sql_that_does_not_name_its_run() -> None:
    with pytest.raises(ValueError, match="does not contain the run id token"):
        render_sql(['MERGE INTO "db"."t" USING "db"."t_runs"'], RUN_ID)


def test_athena_load_succeeds_against_moto_and_runs_the_rendered_sql(fake_aws: None) -> None:
    athena = boto3.client("athena", region_name=REGION)
    workgroup = _athena_workgroup(athena)
    query_id = run_athena_query(athena, sql=render_sql([MERGE_TEMPLATE], RUN_ID)[0], workgroup=workgroup, database="db", **NO_SLEEP)
    execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
    assert execution["Status"]["State"] == "SUCCEEDED"
    assert execution["Query"] == MERGE_TEMPLATE.replace(RUN_ID_TOKEN, RUN_ID)
    assert execution["QueryExecutionContext"] == {"Database": "db"}
    assert execution["WorkGroup"] == workgroup


def _stubbed(service: str) -> tuple[Any, Stubber]:
    client = boto3.client(service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def test_athena_failed_query_raises_with_the_state_change_reason() -> None:
    athena, stub = _stubbed("athena")
    reason = "ICEBERG_COMMIT_ERROR: Failed to commit Iceberg update to table retail_sales"
    stub.add_response(
        "start_query_execution",
        {"QueryExecutionId": "q-1"},
        {"QueryString": "MERGE ...", "WorkGroup": "pipeline", "QueryExecutionContext": {"Database": "db"}},
    )
    stub.add_response("get_query_execution", {"QueryExecution": {"QueryExecutionId": "q-1", "Status": {"State": "RUNNING"}}})
    stub.add_response(
        "get_query_execution",
        {"QueryExecution": {"QueryExecutionId": "q-1", "Status": {"State": "FAILED", "StateChangeReason": reason}}},
    )
    with stub, pytest.raises(LoadFailed) as raised:
        run_athena_query(athena, sql="MERGE ...", workgroup="pipeline", database="db", **NO_SLEEP)
    assert reason in str(raised.value)
    assert "q-1 FAILED" in str(raised.value)
    stub.assert_no_pending_responses()


def test_athena_query_running_past_the_limit_is_stopped_and_fails() -> None:
    athena, stub = _stubbed("athena")
    stub.add_response(
        "start_query_execution",
        {"QueryExecutionId": "q-2"},
        {"QueryString": ANY, "WorkGroup": ANY, "QueryExecutionContext": ANY},
    )
    for _ in range(3):
        stub.add_response("get_query_execution", {"QueryExecution": {"QueryExecutionId": "q-2", "Status": {"State": "RUNNING"}}})
    stub.add_response("stop_query_execution", {}, {"QueryExecutionId": "q-2"})
    with stub, pytest.raises(LoadFailed, match="still RUNNING after 2 s; stopped it"):
        run_athena_query(athena, sql="MERGE ...", workgroup="pipeline", database="db", max_wait_seconds=2, **NO_SLEEP)
    stub.assert_no_pending_responses()


STATEMENTS = [
    "CREATE TABLE IF NOT EXISTS t (k INT)",
    "LOCK t",
    f"COPY s FROM 's3://b/runs/run_id={RUN_ID_TOKEN}/d='",
    "MERGE INTO t USING s",
]


def test_redshift_statements_run_as_one_batch_and_poll_until_finished() -> None:
    client, stub = _stubbed("redshift-data")
    sqls = render_sql(STATEMENTS, RUN_ID)
    stub.add_response(
        "batch_execute_statement",
        {"Id": "b-1", "WorkgroupName": "retail-wg", "Database": "retail"},
        {"WorkgroupName": "retail-wg", "Database": "retail", "Sqls": sqls, "WithEvent": False},
    )
    stub.add_response("describe_statement", {"Id": "b-1", "Status": "STARTED"}, {"Id": "b-1"})
    stub.add_response("describe_statement", {"Id": "b-1", "Status": "FINISHED"}, {"Id": "b-1"})
    with stub:
        assert run_redshift_statements(client, sqls=sqls, workgroup="retail-wg", database="retail", **NO_SLEEP) == "b-1"
    stub.assert_no_pending_responses()
    assert f"run_id={RUN_ID}/" in sqls[2]


def test_redshift_failed_statement_raises_with_redshift_error_and_the_failing_sub_statement() -> None:
    client, stub = _stubbed("redshift-data")
    error = "ERROR: Spectrum Scan Error: S3 object not found: s3://b/runs/run_id=wr_1/"
    stub.add_response(
        "batch_execute_statement",
        {"Id": "b-2"},
        {
            "WorkgroupName": "retail-wg",
            "Database": "retail",
            "Sqls": ["COPY ..."],
            "WithEvent": False,
            "SecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db",
        },
    )
    stub.add_response(
        "describe_statement",
        {"Id": "b-2", "Status": "FAILED", "Error": error, "SubStatements": [{"Id": "b-2:1", "Status": "FAILED"}]},
        {"Id": "b-2"},
    )
    with stub, pytest.raises(LoadFailed) as raised:
        run_redshift_statements(
            client,
            sqls=["COPY ..."],
            workgroup="retail-wg",
            database="retail",
            secret_arn="arn:aws:secretsmanager:eu-west-1:123456789012:secret:db",
            **NO_SLEEP,
        )
    assert error in str(raised.value)
    assert "b-2 FAILED (statement b-2:1)" in str(raised.value)


def test_resolve_args_takes_the_workflow_run_id_glue_passes_and_ignores_glue_extras() -> None:
    args = resolve_args(
        [
            "--job-bookmark-option", "job-bookmark-disable",
            "--athena_sql_template", MERGE_TEMPLATE,
            "--athena_workgroup", "pipeline",
            "--athena_database", "db",
            "--WORKFLOW_NAME", "wf",
            "--WORKFLOW_RUN_ID", RUN_ID,
            "--JOB_RUN_ID", "jr_1",
        ]
    )  # fmt: skip
    assert args["run_id"] == RUN_ID
    assert args["poll_seconds"] == 5.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--WORKFLOW_RUN_ID", RUN_ID], "nothing to load"),
        (["--WORKFLOW_RUN_ID", RUN_ID, "--athena_sql_template", "x"], "go together"),
        (
            [
                "--WORKFLOW_RUN_ID",
                RUN_ID,
                "--redshift_sql_templates",
                '"x"',
                "--redshift_workgroup",
                "w",
                "--redshift_database",
                "d",
            ],
            "JSON list",
        ),
        (["--athena_sql_template", "x", "--athena_workgroup", "w", "--athena_database", "d"], "--run_id is required"),
    ],
)
def test_resolve_args_rejects_incomplete_arguments(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        resolve_args(argv)


class Workflow:
    """A workflow run whose clean job claimed `uploads` in the ledger and handed them to the load (moto Glue and
    DynamoDB)."""

    def __init__(self, uploads: list[Upload]) -> None:
        self.glue = boto3.client("glue", region_name=REGION)
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        self.ledger = UploadLedger(self.dynamodb, create_ledger_table(self.dynamodb), form="glue_workflow")
        self.glue.create_workflow(Name="wf")
        self.run_id = self.glue.start_workflow_run(Name="wf")["RunId"]
        for upload in uploads:
            self.ledger.start(upload, run_id=self.run_id, execution=f"wf/{self.run_id}", step="crawl")
            self.ledger.step(upload, run_id=self.run_id, step="clean")
        put_uploads(self.glue, workflow_name="wf", run_id=self.run_id, name=LOADING_PROPERTY, uploads=uploads)

    def args(self, *target: str) -> list[str]:
        return [
            *(target or ("--athena_sql_template", MERGE_TEMPLATE, "--athena_workgroup", "pipeline", "--athena_database", "db")),
            *("--ledger_table", self.ledger.table_name, "--WORKFLOW_NAME", "wf", "--WORKFLOW_RUN_ID", self.run_id),
        ]

    def clients(self, **more: Any) -> dict[str, Any]:
        return {"glue": self.glue, "dynamodb": self.dynamodb, **more}

    def state(self, upload: Upload) -> tuple[str, str]:
        record = self.ledger.get(upload)
        assert record is not None
        return record["state"], record["step"]


UPLOAD = Upload("landing", "incoming/glue_workflow/a.csv", "v1", "etag-a")


def test_main_records_step_load_then_loaded_after_the_merge(
    fake_aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    athena = boto3.client("athena", region_name=REGION)
    workflow = Workflow([UPLOAD])
    monkeypatch.setattr(glue_load_job.time, "sleep", lambda _seconds: None)
    seen: list[tuple[str, str]] = []
    step = UploadLedger.step
    monkeypatch.setattr(UploadLedger, "step", lambda self, *a, **k: seen.append((r := step(self, *a, **k))["state"]) or r)
    summary = glue_load_job.main(
        [
            "--athena_sql_template", MERGE_TEMPLATE, "--athena_workgroup", _athena_workgroup(athena), "--athena_database", "db",
            "--ledger_table", workflow.ledger.table_name, "--WORKFLOW_NAME", "wf", "--WORKFLOW_RUN_ID", workflow.run_id,
        ]
    )  # fmt: skip
    assert summary["loaded_uploads"] == 1 and seen == ["running"]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"] == workflow.run_id
    assert workflow.state(UPLOAD) == ("loaded", "load")
    record = workflow.ledger.get(UPLOAD)
    assert record is not None and "owner" not in record and record["runs"][0]["outcome"] == "loaded"
    query = athena.get_query_execution(QueryExecutionId=summary["athena_query_id"])["QueryExecution"]["Query"]
    assert f"'{workflow.run_id}'" in query


def test_a_failed_load_is_recorded_failed_at_step_load_with_the_error_and_raised(fake_aws: None) -> None:
    workflow = Workflow([UPLOAD])
    athena, stub = _stubbed("athena")
    stub.add_response(
        "start_query_execution",
        {"QueryExecutionId": "q-3"},
        {"QueryString": ANY, "WorkGroup": ANY, "QueryExecutionContext": ANY},
    )
    stub.add_response(
        "get_query_execution",
        {
            "QueryExecution": {
                "QueryExecutionId": "q-3",
                "Status": {"State": "FAILED", "StateChangeReason": "TABLE_NOT_FOUND: retail_sales_runs"},
            }
        },
    )
    with stub, pytest.raises(LoadFailed, match="TABLE_NOT_FOUND: retail_sales_runs"):
        run_load(resolve_args(workflow.args()), workflow.clients(athena=athena), sleep=lambda _s: None)
    assert workflow.state(UPLOAD) == ("failed", "load")
    record = workflow.ledger.get(UPLOAD)
    assert record is not None and record["error"] == "LoadFailed" and "TABLE_NOT_FOUND" in record["cause"]


def test_a_run_whose_clean_job_handed_over_nothing_fails_naming_the_property(fake_aws: None) -> None:
    workflow = Workflow([])
    workflow.glue.put_workflow_run_properties(Name="wf", RunId=workflow.run_id, RunProperties={LOADING_PROPERTY: "not json"})
    with pytest.raises(WorkflowInputsError, match=f"run property {LOADING_PROPERTY}"):
        run_load(resolve_args(workflow.args()), workflow.clients(), sleep=lambda _s: None)
    other = workflow.glue.start_workflow_run(Name="wf")["RunId"]
    args = resolve_args([*workflow.args()[:-1], other])
    with pytest.raises(WorkflowInputsError, match="resume at the clean job"):
        run_load(args, workflow.clients(), sleep=lambda _s: None)


@pytest.mark.parametrize("target", ["athena", "redshift"])
def test_a_run_with_no_upload_to_load_succeeds_without_loading(fake_aws: None, target: str) -> None:
    """Nothing claimed, or every upload ended by the clean job (header-only, quarantined, rejected): no MERGE
    (Athena) and no COPY, which fails on an empty prefix (Redshift)."""
    workflow = Workflow([])
    service = "athena" if target == "athena" else "redshift-data"
    client, stub = _stubbed(service)  # no responses queued: any load call would fail the test
    target_args = (
        ["--athena_sql_template", MERGE_TEMPLATE, "--athena_workgroup", "pipeline", "--athena_database", "db"]
        if target == "athena"
        else ["--redshift_sql_templates", json.dumps(STATEMENTS), "--redshift_workgroup", "wg", "--redshift_database", "db"]
    )
    with stub:
        summary = run_load(resolve_args(workflow.args(*target_args)), workflow.clients(**{service: client}), sleep=lambda _s: None)
    stub.assert_no_pending_responses()
    assert summary == {"run_id": workflow.run_id, "loaded_uploads": 0, "load_skipped": "no upload with curated rows"}


def test_an_upload_the_run_no_longer_holds_is_not_recorded_loaded_by_it(fake_aws: None) -> None:
    athena = boto3.client("athena", region_name=REGION)
    other = Upload("landing", "incoming/glue_workflow/b.csv", "v1", "etag-b")
    workflow = Workflow([UPLOAD, other])
    workflow.ledger.fail(other, run_id=workflow.run_id, error="Timeout", cause="taken by another run since")
    workflow.ledger.start(other, run_id="wr_other", execution="wf/wr_other", step="crawl")
    args = resolve_args(
        workflow.args("--athena_sql_template", MERGE_TEMPLATE, "--athena_workgroup", _athena_workgroup(athena), "--athena_database", "db")
    )
    summary = run_load(args, workflow.clients(athena=athena), sleep=lambda _s: None)
    assert summary["loaded_uploads"] == 1
    assert workflow.state(UPLOAD) == ("loaded", "load") and workflow.state(other) == ("running", "crawl")


def test_the_ledger_needs_the_workflow(fake_aws: None) -> None:
    args = resolve_args(
        [
            "--athena_sql_template",
            MERGE_TEMPLATE,
            "--athena_workgroup",
            "w",
            "--athena_database",
            "db",
            "--ledger_table",
            "t",
            "--run_id",
            "r1",
        ]
    )
    with pytest.raises(SystemExit, match="--ledger_table needs Glue's --WORKFLOW_NAME"):
        run_load(args, {}, sleep=lambda _s: None)
