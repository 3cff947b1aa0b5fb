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
from tests.asl_runner import ExecutionResult, definition_from_template, ledger_answers, replay_ledger_writes, run_state_machine
from tests.ledger_table import create_ledger_table
from tests.test_step_functions_form import BUCKET, CONTEXT, KEY, NO_CURATED_ROWS, UPLOAD_EVENT, query, scripts

pytestmark = pytest.mark.usefixtures("fake_aws")
VERSION = UPLOAD_EVENT["detail"]["object"]["version-id"]
COUNTS = {"rows_in": 40, "rows_out": 38, "rows_quarantined": 2, "duplicates_dropped": 0, "lines_read": 41, "lines_quarantined": 2}


@pytest.fixture(scope="module")
def definition(templates: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """dev's state machine (Athena), as the form's own tests execute it."""
    return definition_from_template(templates[("dev", "StepFunctions")])


def replay(result: ExecutionResult, counts: dict[str, Any]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    client = boto3.client("dynamodb")
    table = create_ledger_table(client)
    seen = replay_ledger_writes(result, client, table, clean_counts=counts)
    record = UploadLedger(client, table, form="step_functions").get(Upload(BUCKET, KEY, version_id=VERSION))
    assert record is not None
    return seen, record


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


def test_a_failed_load_is_recorded_failed_at_load_with_its_error(definition: dict[str, Any]) -> None:
    failed = query("FAILED", "TABLE_NOT_FOUND: line 1:12: Table 'retail_sales' does not exist")
    result = run_state_machine(definition, UPLOAD_EVENT, scripts(Get_Load_Query=[failed]), context=CONTEXT)
    assert result.status == "FAILED", result
    seen, record = replay(result, COUNTS)
    assert tuple(seen) == LEDGER_TRANSITIONS["failed_at_load"]
    assert record["state"] == FAILED and record["error"] == "LoadFailed" and "TABLE_NOT_FOUND" in record["cause"]
    assert record["runs"][0]["outcome"] == FAILED


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
