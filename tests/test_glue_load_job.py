"""The Glue Python shell load script (runtime/glue_load_job.py): Athena against moto, failures and Redshift via Stubber.

moto runs Athena queries to SUCCEEDED and has no way to make one fail, so the failed-query cases use botocore's
Stubber with the real service model (the responses are validated against it). moto's redshift-data never finishes
a statement, so the Redshift Data API path is Stubber only. The workflow state commit runs against moto S3 + Glue.
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
from pipeline_constructs.runtime.workflow_inputs import (
    CLAIMED_PROPERTY,
    WorkflowInputsError,
    read_processed,
    record_curated_rows,
)
from tests.fake_aws import FAKE_AWS_REGION

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


def _workflow_with_claim(glue: Any, claimed: dict[str, str]) -> tuple[str, str]:
    glue.create_workflow(Name="wf")
    run_id = glue.start_workflow_run(Name="wf")["RunId"]
    glue.put_workflow_run_properties(Name="wf", RunId=run_id, RunProperties={CLAIMED_PROPERTY: json.dumps(claimed)})
    return "wf", run_id


def test_main_loads_then_commits_the_claimed_uploads(
    fake_aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    athena, s3, glue = (boto3.client(n, region_name=REGION) for n in ("athena", "s3", "glue"))
    s3.create_bucket(Bucket="curated", CreateBucketConfiguration={"LocationConstraint": REGION})
    workflow, run_id = _workflow_with_claim(glue, {"incoming/glue_workflow/a.csv": "etag-a"})
    monkeypatch.setattr(glue_load_job.time, "sleep", lambda _seconds: None)
    summary = glue_load_job.main(
        [
            "--athena_sql_template", MERGE_TEMPLATE,
            "--athena_workgroup", _athena_workgroup(athena),
            "--athena_database", "db",
            "--workflow_state_uri", "s3://curated/sales/_workflow_state/glue_workflow/processed.json",
            "--WORKFLOW_NAME", workflow,
            "--WORKFLOW_RUN_ID", run_id,
        ]
    )  # fmt: skip
    assert summary["committed_sources"] == 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"] == run_id
    processed, _ = read_processed(s3, state_bucket="curated", state_key="sales/_workflow_state/glue_workflow/processed.json")
    assert processed == {"incoming/glue_workflow/a.csv": "etag-a"}
    query = athena.get_query_execution(QueryExecutionId=summary["athena_query_id"])["QueryExecution"]["Query"]
    assert f"'{run_id}'" in query


def test_a_failed_load_commits_nothing_so_the_next_run_takes_the_uploads_again(fake_aws: None) -> None:
    s3, glue = (boto3.client(n, region_name=REGION) for n in ("s3", "glue"))
    s3.create_bucket(Bucket="curated", CreateBucketConfiguration={"LocationConstraint": REGION})
    workflow, run_id = _workflow_with_claim(glue, {"incoming/glue_workflow/a.csv": "etag-a"})
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
    args = resolve_args(
        [
            "--athena_sql_template", MERGE_TEMPLATE, "--athena_workgroup", "pipeline", "--athena_database", "db",
            "--workflow_state_uri", "s3://curated/state/processed.json", "--WORKFLOW_NAME", workflow, "--WORKFLOW_RUN_ID", run_id,
        ]
    )  # fmt: skip
    with stub, pytest.raises(LoadFailed, match="TABLE_NOT_FOUND: retail_sales_runs"):
        run_load(args, {"athena": athena, "s3": s3, "glue": glue}, sleep=lambda _s: None)
    assert read_processed(s3, state_bucket="curated", state_key="state/processed.json") == ({}, None)


def test_commit_fails_loudly_when_the_clean_job_claimed_nothing(fake_aws: None) -> None:
    s3, glue, athena = (boto3.client(n, region_name=REGION) for n in ("s3", "glue", "athena"))
    s3.create_bucket(Bucket="curated", CreateBucketConfiguration={"LocationConstraint": REGION})
    glue.create_workflow(Name="wf")
    run_id = glue.start_workflow_run(Name="wf")["RunId"]
    args = resolve_args(
        [
            "--athena_sql_template", MERGE_TEMPLATE, "--athena_workgroup", _athena_workgroup(athena), "--athena_database", "db",
            "--workflow_state_uri", "s3://curated/state/processed.json", "--WORKFLOW_NAME", "wf", "--WORKFLOW_RUN_ID", run_id,
        ]
    )  # fmt: skip
    with pytest.raises(WorkflowInputsError, match="did not claim its sources"):
        run_load(args, {"athena": athena, "s3": s3, "glue": glue}, sleep=lambda _s: None)


def test_a_run_that_claimed_no_new_upload_loads_nothing(fake_aws: None) -> None:
    s3, glue = (boto3.client(n, region_name=REGION) for n in ("s3", "glue"))
    workflow, run_id = _workflow_with_claim(glue, {})
    athena, stub = _stubbed("athena")  # no responses queued: any Athena call would fail the test
    args = resolve_args(
        [
            "--athena_sql_template", MERGE_TEMPLATE, "--athena_workgroup", "pipeline", "--athena_database", "db",
            "--workflow_state_uri", "s3://curated/state/processed.json", "--WORKFLOW_NAME", workflow, "--WORKFLOW_RUN_ID", run_id,
        ]
    )  # fmt: skip
    with stub:
        summary = run_load(args, {"athena": athena, "s3": s3, "glue": glue}, sleep=lambda _s: None)
    assert summary == {"run_id": run_id, "committed_sources": 0}


# --- zero curated rows: the run succeeds and skips the load ------------------------------------------------------


@pytest.mark.parametrize("target", ["athena", "redshift"])
def test_a_run_with_zero_curated_rows_succeeds_without_loading_and_commits_its_uploads(fake_aws: None, target: str) -> None:
    """A header-only CSV cleans to zero rows: no MERGE (Athena) and no COPY, which fails on an empty prefix (Redshift)."""
    s3, glue = (boto3.client(n, region_name=REGION) for n in ("s3", "glue"))
    s3.create_bucket(Bucket="curated", CreateBucketConfiguration={"LocationConstraint": REGION})
    workflow, run_id = _workflow_with_claim(glue, {"incoming/glue_workflow/header_only.csv": "etag-h"})
    record_curated_rows(glue, workflow_name=workflow, run_id=run_id, rows=0)
    service = "athena" if target == "athena" else "redshift-data"
    client, stub = _stubbed(service)  # no responses queued: any load call would fail the test
    target_args = (
        ["--athena_sql_template", MERGE_TEMPLATE, "--athena_workgroup", "pipeline", "--athena_database", "db"]
        if target == "athena"
        else ["--redshift_sql_templates", json.dumps(STATEMENTS), "--redshift_workgroup", "wg", "--redshift_database", "db"]
    )
    args = resolve_args(
        [
            *target_args,
            "--workflow_state_uri", "s3://curated/state/processed.json", "--WORKFLOW_NAME", workflow, "--WORKFLOW_RUN_ID", run_id,
        ]
    )  # fmt: skip
    with stub:
        summary = run_load(args, {service: client, "s3": s3, "glue": glue}, sleep=lambda _s: None)
    stub.assert_no_pending_responses()
    assert summary == {"run_id": run_id, "curated_rows": 0, "load_skipped": "zero curated rows", "committed_sources": 1}
    assert read_processed(s3, state_bucket="curated", state_key="state/processed.json")[0] == {
        "incoming/glue_workflow/header_only.csv": "etag-h"
    }, "the header-only upload is done: the next run must not take it again"


def test_a_run_with_curated_rows_loads_them(fake_aws: None) -> None:
    athena, s3, glue = (boto3.client(n, region_name=REGION) for n in ("athena", "s3", "glue"))
    s3.create_bucket(Bucket="curated", CreateBucketConfiguration={"LocationConstraint": REGION})
    workflow, run_id = _workflow_with_claim(glue, {"incoming/glue_workflow/a.csv": "etag-a"})
    record_curated_rows(glue, workflow_name=workflow, run_id=run_id, rows=3)
    args = resolve_args(
        [
            "--athena_sql_template", MERGE_TEMPLATE, "--athena_workgroup", _athena_workgroup(athena), "--athena_database", "db",
            "--workflow_state_uri", "s3://curated/state/processed.json", "--WORKFLOW_NAME", workflow, "--WORKFLOW_RUN_ID", run_id,
        ]
    )  # fmt: skip
    summary = run_load(args, {"athena": athena, "s3": s3, "glue": glue}, sleep=lambda _s: None)
    assert summary["curated_rows"] == 3 and summary["athena_query_id"] and summary["committed_sources"] == 1
