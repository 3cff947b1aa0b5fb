"""The Step Functions form with a RedshiftTarget: the synthesized state machine (staging with Redshift as its one target) executed
in aws-local-stepfunctions with scripted Data API answers: success, a FAILED statement, a statement still running when
the poll cap is reached (it is cancelled), and a run id that cannot go into the COPY.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlglot

from tests.asl_runner import (
    ExecutionResult,
    definition_from_template,
    ledger_answers,
    published_message,
    run_failure_report,
    run_state_machine,
)

RUN_ID = "3f0c2a9e-run-7"
BUCKET = "landing-bucket"
KEY = "incoming/step_functions/2026/11/sales.csv"
CONTEXT = {"Execution": {"Name": RUN_ID, "Id": f"arn:aws:states:eu-west-1:123456789012:execution:retail:{RUN_ID}"}}
EVENT: dict[str, Any] = {
    "source": "aws.s3",
    "time": "2026-11-25T09:12:44Z",
    "detail-type": "Object Created",
    "detail": {"bucket": {"name": BUCKET}, "object": {"key": KEY, "size": 1234, "etag": "5d41402abc4b2a76b9719d911017c592"}},
}
CRAWLER_DONE = {
    "result": {
        "Crawler": {"Name": "retail-raw", "State": "READY", "LastCrawl": {"Status": "SUCCEEDED", "StartTime": "2026-11-25T09:13:02.250Z"}}
    }
}
CURATED_ROWS = {"result": {"KeyCount": 1}}
JOB_DONE = {"result": {"Id": "jr_1", "JobRunState": "SUCCEEDED"}}
SUBMITTED = {"result": {"Id": "stmt-1", "Database": "retail_staging", "WorkgroupName": "retail-staging"}}
RUNNING = {"result": {"Id": "stmt-1", "Status": "STARTED", "HasResultSet": False}}
FINISHED = {"result": {"Id": "stmt-1", "Status": "FINISHED", "HasResultSet": False, "ResultRows": -1}}
COPY_ERROR = "ERROR: Spectrum Scan Error. File 's3://curated/retail_sales/runs/run_id=x/part-0.parquet' has an incompatible Parquet schema"
FAILED = {"result": {"Id": "stmt-1", "Status": "FAILED", "Error": COPY_ERROR}}


@pytest.fixture(scope="module")
def template(redshift_only_templates: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """staging's StepFunctions stack with Redshift as its one target (conftest's `redshift_only_templates`); its failure
    reporter is conftest's `reporter`."""
    return redshift_only_templates[("staging", "StepFunctions")]


@pytest.fixture(scope="module")
def definition(template: dict[str, Any]) -> dict[str, Any]:
    return definition_from_template(template)


def run(
    definition: dict[str, Any], describe: list[dict[str, Any]], *, context: dict[str, Any] = CONTEXT, **extra: list[dict[str, Any]]
) -> ExecutionResult:
    scripts = {
        **ledger_answers(),
        "Start Crawler": [{"result": {}}],
        "Get Crawler": [CRAWLER_DONE],
        "Run Clean Job": [JOB_DONE],
        "Find Curated Rows": [CURATED_ROWS],
        "Start Load Statements": [SUBMITTED],
        "Describe Load": describe,
        **extra,
    }
    return run_state_machine(definition, EVENT, scripts, context=context, timeout=120)


def failed_load(definition: dict[str, Any], reporter: dict[str, Any], result: ExecutionResult) -> dict[str, Any]:
    """The run ended failed at Load Into Redshift (its own state); the reporter's one message about it."""
    assert result.status == "FAILED", result
    assert [name for name in result.states_entered if name in definition["States"]][-1] == "Load Into Redshift"
    name = CONTEXT["Execution"]["Name"]
    report = run_failure_report(reporter, result, EVENT, name=name, execution_arn=CONTEXT["Execution"]["Id"])
    message, _ = published_message(report)
    return message


def test_load_submits_one_batch_that_copies_this_run_and_merges(definition: dict[str, Any]) -> None:
    result = run(definition, [RUNNING, RUNNING, FINISHED])

    assert result.status == "SUCCEEDED", result
    [submit] = result.inputs_to("Start Load Statements")
    assert submit["WorkgroupName"] == "retail-staging"
    assert submit["Database"] == "retail_staging"
    assert "SecretArn" not in submit and "DbUser" not in submit  # IAM authentication, no admin secret
    sqls = submit["Sqls"]
    assert [s.split()[0] for s in sqls] == ["CREATE", "LOCK", "CREATE", "COPY", "MERGE"]
    copy = sqls[3]
    assert f"/retail_sales/runs/run_id={RUN_ID}/sale_date=' " in copy
    assert "IAM_ROLE 'arn:" in copy or "IAM_ROLE '" in copy
    for sql in sqls:
        sqlglot.parse_one(sql, read="redshift")
    assert [c["Id"] for c in result.inputs_to("Describe Load")] == ["stmt-1"] * 3
    assert result.states_entered[-1] == "Loaded"


def test_a_header_only_upload_succeeds_without_a_copy(definition: dict[str, Any]) -> None:
    """Zero curated rows: no partition folder under the run, so a COPY would fail with "no files found"; the run
    succeeds without loading."""
    result = run(definition, [FINISHED], **{"Find Curated Rows": [{"result": {"KeyCount": 0}}]})

    assert result.status == "SUCCEEDED", result
    [listing] = result.inputs_to("Find Curated Rows")
    assert listing["Prefix"] == f"retail_sales/runs/run_id={RUN_ID}/sale_date="
    assert not result.calls_to("Start Load Statements")
    assert result.states_entered[-1] == "No Rows To Load"


def test_failed_statement_fails_the_load_and_is_reported_with_the_statements_error(
    definition: dict[str, Any], reporter: dict[str, Any]
) -> None:
    result = run(definition, [RUNNING, FAILED])

    assert result.error == "LoadFailed"
    message = failed_load(definition, reporter, result)
    assert message["failed_step"] == "Load Statement Failed"
    assert message["error"] == "LoadFailed"
    assert message["cause"] == COPY_ERROR
    assert message["run_id"] == RUN_ID
    assert message["object"] == f"s3://{BUCKET}/{KEY}"
    assert COPY_ERROR in result.cause


def test_aborted_statement_without_error_fails_naming_the_statement(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    result = run(definition, [{"result": {"Id": "stmt-1", "Status": "ABORTED"}}])

    message = failed_load(definition, reporter, result)
    assert message["error"] == "LoadAborted"
    assert message["cause"] == "statement stmt-1 was ABORTED"


def test_statement_still_running_at_the_poll_cap_is_cancelled_and_the_run_fails(
    definition: dict[str, Any], reporter: dict[str, Any]
) -> None:
    cap = _poll_cap(definition)
    result = run(definition, [RUNNING], **{"Cancel Load": [{"result": {}}]})

    assert len(result.calls_to("Describe Load")) == cap
    [cancel] = result.inputs_to("Cancel Load")
    assert cancel == {"Id": "stmt-1"}
    message = failed_load(definition, reporter, result)
    assert message["error"] == "LoadTimeout"
    assert message["cause"] == f"statement stmt-1 was still running after {cap} checks; cancelled"


def test_cap_is_reported_even_when_the_cancel_fails(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    result = run(
        definition,
        [RUNNING],
        **{
            "Cancel Load": [
                {"error": "RedshiftData.ValidationException", "cause": "Could not cancel a query that is already in FINISHED state"}
            ]
        },
    )

    assert failed_load(definition, reporter, result)["error"] == "LoadTimeout"


def test_data_api_throttling_is_retried_then_the_load_succeeds(definition: dict[str, Any]) -> None:
    result = run(
        definition,
        [FINISHED],
        **{"Start Load Statements": [{"error": "RedshiftData.ActiveStatementsExceededException", "cause": "too many"}, SUBMITTED]},
    )

    assert result.status == "SUCCEEDED", result
    assert [c["attempt"] for c in result.calls_to("Start Load Statements")] == [1, 2]


def test_a_submit_error_fails_the_load_and_is_reported(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    result = run(
        definition,
        [FINISHED],
        **{"Start Load Statements": [{"error": "RedshiftData.ValidationException", "cause": "Workgroup retail-staging not found"}]},
    )

    message = failed_load(definition, reporter, result)
    assert message["failed_step"] == "Start Load Statements"
    assert message["error"] == "RedshiftData.ValidationException"
    assert not result.calls_to("Describe Load")


def test_run_id_with_a_quote_never_reaches_the_copy(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    context = {"Execution": {"Name": "o'hara", "Id": "arn:aws:states:eu-west-1:123456789012:execution:retail:o'hara"}}
    result = run(definition, [FINISHED], context=context)

    assert not result.calls_to("Start Load Statements")
    assert failed_load(definition, reporter, result)["error"] == "InvalidRunId"


def test_every_data_api_task_has_retry_and_timeout_inside_the_load(definition: dict[str, Any]) -> None:
    assert "Catch" not in definition["States"]["Load Into Redshift"]  # a failed load ends the execution there
    states = definition["States"]["Load Into Redshift"]["Branches"][0]["States"]
    for name in ("Start Load Statements", "Describe Load", "Cancel Load"):
        state = states[name]
        assert state["Resource"].startswith("arn:aws:states:::aws-sdk:redshiftdata:"), name
        assert state["TimeoutSeconds"] <= 120, name
        assert all(r["JitterStrategy"] == "FULL" and r["BackoffRate"] == 2 for r in state["Retry"]), name
    assert "States.Timeout" not in json.dumps(states["Start Load Statements"]["Retry"])  # a timed-out submit may have started


def _poll_cap(definition: dict[str, Any]) -> int:
    choice = definition["States"]["Load Into Redshift"]["Branches"][0]["States"]["Poll Load Again?"]
    [rule] = choice["Choices"]
    return int(rule["NumericGreaterThanEquals"])
