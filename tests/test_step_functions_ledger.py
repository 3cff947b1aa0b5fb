"""The Step Functions form keeps the upload ledger: the synthesized state machine, executed in the ASL interpreter,
and its ledger writes (with the clean job's counts write) replayed in order on moto's DynamoDB, where the
conditions are DynamoDB's own. Every kind of upload ends with the transitions the step description names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import boto3
import pytest

from pipeline_constructs.operations.runs import object_created_event
from pipeline_constructs.runtime.pipeline_plan import LEDGER_TRANSITIONS
from pipeline_constructs.runtime.upload_ledger import FAILED, Upload, UploadLedger
from tests.asl_runner import (
    ExecutionResult,
    definition_from_template,
    ledger_answers,
    published_message,
    replay_ledger_writes,
    run_failure_report,
    run_state_machine,
)
from tests.ledger_table import create_ledger_table
from tests.test_step_functions_form import BUCKET, CONTEXT, EXECUTION_ARN, KEY, NO_CURATED_ROWS, RUN_ID, UPLOAD_EVENT, query, scripts

pytestmark = pytest.mark.usefixtures("fake_aws")
VERSION = UPLOAD_EVENT["detail"]["object"]["version-id"]
COUNTS = {"rows_in": 40, "rows_out": 38, "rows_quarantined": 2, "duplicates_dropped": 0, "lines_read": 41, "lines_quarantined": 2}


@pytest.fixture(scope="module")
def template(templates: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """dev's StepFunctions stack (Athena), as the form's own tests execute it (and its failure reporter: conftest)."""
    return templates[("dev", "StepFunctions")]


@pytest.fixture(scope="module")
def definition(template: dict[str, Any]) -> dict[str, Any]:
    return definition_from_template(template)


def replay(result: ExecutionResult, counts: dict[str, Any], *reports: ExecutionResult) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The execution's writes, then each failure report's, replayed in order on one moto table."""
    client = boto3.client("dynamodb")
    table = create_ledger_table(client)
    seen = replay_ledger_writes(result, client, table, clean_counts=counts)
    for report in reports:
        seen += replay_ledger_writes(report, client, table)
    record = UploadLedger(client, table, form="step_functions").get(Upload(BUCKET, KEY, version_id=VERSION))
    assert record is not None
    return seen, record


def report(reporter: dict[str, Any], result: ExecutionResult, **answers: list[dict[str, Any]]) -> ExecutionResult:
    return run_failure_report(reporter, result, UPLOAD_EVENT, name=RUN_ID, execution_arn=EXECUTION_ARN, answers=answers)


def test_a_good_upload_is_recorded_running_at_each_step_then_loaded_with_its_counts(definition: dict[str, Any]) -> None:
    result = run_state_machine(definition, UPLOAD_EVENT, scripts(), context=CONTEXT)
    assert result.status == "SUCCEEDED", result
    seen, record = replay(result, COUNTS)
    assert tuple(seen) == LEDGER_TRANSITIONS["good"]
    assert (record["rows_in"], record["rows_out"], record["rows_quarantined"]) == (40, 38, 2)
    [run] = record["runs"]
    assert run["run_id"] == CONTEXT["Execution"]["Name"] and run["outcome"] == "loaded" and run["execution"].endswith(run["run_id"])
    assert record["form"] == "step_functions" and record["version"] == VERSION and "owner" not in record


def test_a_header_only_upload_is_skipped_as_empty(definition: dict[str, Any]) -> None:
    result = run_state_machine(definition, UPLOAD_EVENT, scripts(Find_Curated_Rows=[NO_CURATED_ROWS]), context=CONTEXT)
    assert result.status == "SUCCEEDED" and result.calls_to("Start Load Query") == []
    seen, _ = replay(result, {**COUNTS, "rows_in": 0, "rows_out": 0, "rows_quarantined": 0, "lines_quarantined": 0})
    assert tuple(seen) == LEDGER_TRANSITIONS["empty"]


def test_an_upload_whose_every_row_was_quarantined_is_recorded_quarantined(definition: dict[str, Any]) -> None:
    answers = {
        **scripts(Find_Curated_Rows=[NO_CURATED_ROWS]),
        **{"Read Clean Counts": ledger_answers(rows_quarantined=3)["Read Clean Counts"]},
    }
    result = run_state_machine(definition, UPLOAD_EVENT, answers, context=CONTEXT)
    assert result.status == "SUCCEEDED", result
    seen, _ = replay(result, {**COUNTS, "rows_out": 0, "rows_quarantined": 3})
    assert tuple(seen) == LEDGER_TRANSITIONS["quarantined"]


def failed_load(definition: dict[str, Any]) -> ExecutionResult:
    failed = query("FAILED", "TABLE_NOT_FOUND: line 1:12: Table 'retail_sales' does not exist")
    result = run_state_machine(definition, UPLOAD_EVENT, scripts(Get_Load_Query=[failed]), context=CONTEXT)
    assert result.status == "FAILED", result
    return result


def test_a_failed_load_is_recorded_failed_at_load_with_its_error_by_the_failure_reporter(
    definition: dict[str, Any], reporter: dict[str, Any]
) -> None:
    result = failed_load(definition)
    reported = report(reporter, result)
    seen, record = replay(result, COUNTS, reported)
    assert tuple(seen) == LEDGER_TRANSITIONS["failed_at_load"]
    assert record["state"] == FAILED and record["error"] == "LoadFailed" and "TABLE_NOT_FOUND" in record["cause"]
    assert record["runs"][0]["outcome"] == FAILED and "owner" not in record
    message, _ = published_message(reported)
    assert (message["object"], message["run_id"], message["execution"]) == (f"s3://{BUCKET}/{KEY}", RUN_ID, EXECUTION_ARN)


def test_a_repeated_status_change_event_is_not_reported_twice(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    """The second delivery's failure write is refused by DynamoDB (the record is no longer this run's running one), and
    the record it then reads says failed: nothing is published. Both answers come from moto."""
    result = failed_load(definition)
    first = report(reporter, result)
    client = boto3.client("dynamodb")
    table = create_ledger_table(client)
    replay_ledger_writes(result, client, table, clean_counts=COUNTS)
    replay_ledger_writes(first, client, table)
    [write] = first.inputs_to("Record Failure")
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.update_item(**{**write, "TableName": table})
    refused = {"error": "DynamoDB.ConditionalCheckFailedException", "cause": "The conditional request failed"}
    [read] = report(reporter, result, **{"Record Failure": [refused]}).inputs_to("Read Upload State")
    current = client.get_item(**{**read, "TableName": table})
    again = report(reporter, result, **{"Record Failure": [refused], "Read Upload State": [{"result": current}]})
    assert again.status == "SUCCEEDED" and again.states_entered[-1] == "Already Reported"
    assert again.calls_to("Notify Failure") == [] and len(first.calls_to("Notify Failure")) == 1


def test_a_run_that_never_took_its_record_is_still_reported(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    outage = {"error": "DynamoDB.InternalServerErrorException", "cause": "Internal server error"}
    result = run_state_machine(definition, UPLOAD_EVENT, scripts(Record_Start=[outage]), context=CONTEXT)
    assert result.status == "FAILED" and result.states_entered[-1] == "Record Start"
    client = boto3.client("dynamodb")
    table = create_ledger_table(client)
    refused = {"error": "DynamoDB.ConditionalCheckFailedException", "cause": "The conditional request failed"}
    [read] = report(reporter, result, **{"Record Failure": [refused]}).inputs_to("Read Upload State")
    current = client.get_item(**{**read, "TableName": table})  # no record: the run never took it
    reported = report(reporter, result, **{"Record Failure": [refused], "Read Upload State": [{"result": current}]})
    message, _ = published_message(reported)
    assert (message["failed_step"], message["error"]) == ("Record Start", "DynamoDB.InternalServerErrorException")


@pytest.mark.parametrize(("status", "error"), [("TIMED_OUT", "States.Timeout"), ("ABORTED", "ExecutionABORTED")])
def test_a_timed_out_or_aborted_execution_is_recorded_failed_and_reported_once(
    definition: dict[str, Any], reporter: dict[str, Any], status: str, error: str
) -> None:
    """The execution stopped while its clean job ran (the interpreter cannot time out or stop a run: its result is
    rewritten to what EventBridge reports for one, which carries no error)."""
    running = run_state_machine(
        definition, UPLOAD_EVENT, scripts(Run_Clean_Job=[{"error": "States.TaskFailed", "cause": "{}"}]), context=CONTEXT
    )
    stopped = ExecutionResult(
        status=status, output=None, error=None, cause=None, calls=running.calls, states_entered=running.states_entered
    )
    reported = report(reporter, stopped)
    seen, record = replay(running, COUNTS, reported)
    assert seen[-1] == (FAILED, "clean") and record["error"] == error
    message, subject = published_message(reported)
    assert (message["failed_step"], message["error"]) == ("Run Clean Job", error)
    assert subject == "retail_sales pipeline failed at Run Clean Job"


def test_a_history_that_cannot_be_read_still_sends_the_message(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    result = failed_load(definition)
    denied = {"error": "Sfn.AccessDeniedException", "cause": "not authorized"}
    message, _ = published_message(report(reporter, result, **{"Read Execution History": [denied]}))
    assert message["failed_step"].startswith("unknown") and message["error"] == "LoadFailed"


def test_a_repeated_event_for_an_upload_another_run_holds_ends_without_running_a_step(definition: dict[str, Any]) -> None:
    refused = {"error": "DynamoDB.ConditionalCheckFailedException", "cause": "The conditional request failed"}
    result = run_state_machine(definition, UPLOAD_EVENT, scripts(Record_Start=[refused]), context=CONTEXT)
    assert result.status == "SUCCEEDED" and result.states_entered[-1] == "Upload Already Taken"
    assert result.calls_to("Get Crawler") == [] and result.calls_to("Notify Failure") == []


def test_the_start_write_is_refused_by_dynamodb_while_another_run_holds_the_upload(definition: dict[str, Any]) -> None:
    """The condition the state machine sends is the ledger's own: replaying a second execution's start on a record
    another run holds is refused by moto's DynamoDB."""
    first = run_state_machine(definition, UPLOAD_EVENT, scripts(), context=CONTEXT)
    client = boto3.client("dynamodb")
    table = create_ledger_table(client)
    [start] = first.inputs_to("Record Start")
    client.update_item(**{**start, "TableName": table})
    other = {**start, "ExpressionAttributeValues": {**start["ExpressionAttributeValues"], ":run_id": {"S": "another-execution"}}}
    other["ExpressionAttributeNames"] = {**start["ExpressionAttributeNames"], "#run": "run:another-execution"}
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.update_item(**{**other, "TableName": table})


@pytest.mark.parametrize("versioned", [True, False], ids=["versioned", "unversioned"])
def test_the_run_pipeline_ops_starts_takes_the_same_object_version(definition: dict[str, Any], versioned: bool) -> None:
    """`rerun` and `reconcile --start` start the state machine with the event they build (operations/runs.py)."""
    etag = UPLOAD_EVENT["detail"]["object"]["etag"]
    upload = Upload(BUCKET, KEY, version_id=VERSION if versioned else None, etag=etag)
    event = object_created_event(upload, datetime.fromisoformat(UPLOAD_EVENT["time"].replace("Z", "+00:00")))
    result = run_state_machine(definition, event, scripts(), context=CONTEXT)
    assert result.status == "SUCCEEDED", result
    client = boto3.client("dynamodb")
    table = create_ledger_table(client)
    assert tuple(replay_ledger_writes(result, client, table, clean_counts=COUNTS)) == LEDGER_TRANSITIONS["good"]
    record = UploadLedger(client, table, form="step_functions").get(upload)
    assert record is not None and record["state"] == "loaded"
    assert record["version"] == (VERSION if versioned else f"etag:{etag}") and record["etag"] == etag
