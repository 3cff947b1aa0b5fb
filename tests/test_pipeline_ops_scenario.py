"""A bad night on the Step Functions form, executed locally, then recovered with `pipeline-ops`.

20 uploads: 3 fail at different steps (crawl, clean, load) and 1 event never arrives. Every run is the synthesized
state machine in the ASL interpreter, its ledger writes replayed on moto's DynamoDB (DynamoDB's own conditions), the
uploads in moto's S3. `status` shows 16 loaded and 3 failed with their steps, `reconcile` finds the missing one;
after the cause is fixed, `rerun` and `reconcile --start` start executions (in moto), each of which is then run in
the interpreter from the input pipeline-ops gave it: all 20 end loaded, and no upload is loaded twice.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from pipeline_constructs.operations.cli import main
from pipeline_constructs.runtime.upload_ledger import Upload
from tests.asl_runner import ExecutionResult, definition_from_template, replay_ledger_writes, run_failure_report, run_state_machine
from tests.deployed_environment import FakeDeployment, FakeSession
from tests.test_pipeline_ops import SFN_PREFIX, execution_arn, upload
from tests.test_step_functions_form import query, scripts

pytestmark = [pytest.mark.timeout(600)]
COUNTS = {"rows_in": 40, "rows_out": 40, "rows_quarantined": 0, "duplicates_dropped": 0, "lines_read": 41, "lines_quarantined": 0}


def crawled_after(event_time: str, status: str = "SUCCEEDED", error: str | None = None) -> dict[str, Any]:
    """GetCrawler's answer: a crawl that began one second after the upload (so it covers it), ended in `status`."""
    began = datetime.fromisoformat(event_time.replace("Z", "+00:00")) + timedelta(seconds=1)
    crawl: dict[str, Any] = {"Status": status, "StartTime": began.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    if error:
        crawl["ErrorMessage"] = error
    return {"result": {"Crawler": {"Name": "retail-raw", "State": "READY", "LastCrawl": crawl}}}


FAILURES = {
    "store-05.csv": lambda time: {"Get_Crawler": [crawled_after(time, "FAILED", "Internal Service Exception while crawling")]},
    "store-11.csv": lambda time: {
        "Run_Clean_Job": [{"error": "States.TaskFailed", "cause": json.dumps({"JobRunState": "FAILED", "ErrorMessage": "OOM"})}]
    },
    "store-17.csv": lambda time: {"Get_Load_Query": [query("FAILED", "TABLE_NOT_FOUND: Table 'retail_sales' does not exist")]},
}
FAILED_STEPS = {"store-05.csv": "crawl", "store-11.csv": "clean", "store-17.csv": "load"}
LOST = "store-19.csv"


def ops(deployment: FakeDeployment, *argv: str, now: datetime) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = main(["--env", deployment.env, "--json", *argv], session=FakeSession(deployment), out=out, now=now)
    return code, json.loads(out.getvalue())


def execute(
    machines: tuple[dict[str, Any], dict[str, Any]],
    deployment: FakeDeployment,
    event: dict[str, Any],
    name: str,
    arn: str,
    **overrides: Any,
) -> ExecutionResult:
    """One execution in the interpreter, its ledger writes replayed on the deployment's ledger table; a failed one is
    then reported by the failure reporter (also in the interpreter), whose write is replayed too."""
    definition, reporter = machines
    result = run_state_machine(
        definition, event, scripts(**overrides), context={"Execution": {"Name": name, "Id": arn}}, validation_options={"checkArn": False}
    )
    client = boto3.client("dynamodb")
    table = deployment.output("Stateful", "LedgerTableName")
    replay_ledger_writes(result, client, table, clean_counts=COUNTS)
    if result.status != "SUCCEEDED":
        report = run_failure_report(reporter, result, event, name=name, execution_arn=arn)
        assert report.status == "SUCCEEDED" and len(report.calls_to("Notify Failure")) == 1, report
        replay_ledger_writes(report, client, table)
    return result


def event_of(item: Upload, time: str) -> dict[str, Any]:
    detail = {"bucket": {"name": item.bucket}, "object": {"key": item.key, "etag": item.etag, "version-id": item.version_id}}
    return {"version": "0", "detail-type": "Object Created", "source": "aws.s3", "time": time, "detail": detail}


def loads(results: list[tuple[str, ExecutionResult]]) -> dict[str, int]:
    """Per object key: how many executions succeeded after starting a load query."""
    counted: dict[str, int] = {}
    for key, result in results:
        if result.status == "SUCCEEDED" and result.calls_to("Start Load Query"):
            counted[key] = counted.get(key, 0) + 1
    return counted


def test_twenty_uploads_three_failures_one_lost_event_all_recovered_with_pipeline_ops(
    fake_aws: None, templates: dict[tuple[str, str], dict[str, Any]]
) -> None:
    dev = FakeDeployment(templates, "dev")
    template = templates[("dev", "StepFunctions")]
    definition = (definition_from_template(template), definition_from_template(template, "FailureReporter"))
    time = "2026-12-04T10:00:00Z"
    results: list[tuple[str, ExecutionResult]] = []
    items = {}
    for number in range(20):
        name = f"store-{number:02d}.csv"
        items[name] = upload(dev, f"{SFN_PREFIX}2026-12-04/{name}")
        if name == LOST:
            continue
        run_name = f"run-{number:02d}"
        overrides = {"Get_Crawler": [crawled_after(time)], **FAILURES.get(name, lambda _: {})(time)}
        result = execute(definition, dev, event_of(items[name], time), run_name, execution_arn(dev, run_name), **overrides)
        assert result.status == ("FAILED" if name in FAILURES else "SUCCEEDED"), (name, result)
        results.append((name, result))

    later = datetime.now(UTC) + timedelta(hours=5)  # past the form's run timeout: the lost upload is no longer in flight
    code, status = ops(dev, "status", now=later)
    assert code == 1
    assert status["counts"]["loaded"] == 16 and status["counts"]["failed"] == 3
    assert {record["key"].rsplit("/", 1)[-1]: record["step"] for record in status["failed"]} == FAILED_STEPS

    code, reconciled = ops(dev, "reconcile", now=later)
    assert code == 1
    assert {finding["object"] for finding in reconciled["findings"]} == {items[name].uri for name in (*FAILED_STEPS, LOST)}
    (lost,) = [finding for finding in reconciled["findings"] if finding["object"] == items[LOST].uri]
    assert lost["problem"].startswith("no ledger record")

    # The cause is fixed: rerun the three, start the lost one.
    for name in FAILED_STEPS:
        code, action = ops(dev, "rerun", items[name].uri, now=later)
        assert (code, action["how"]) == (0, "started"), action
    code, started = ops(dev, "reconcile", "--start", now=later)
    assert [entry["object"] for entry in started["started"]] == [items[LOST].uri] and code == 1  # the three still failed

    # Each execution pipeline-ops started, run in the interpreter from the input it was given.
    sfn = boto3.client("stepfunctions")
    executions = sfn.list_executions(stateMachineArn=dev.output("StepFunctions", "StateMachineArn"))["executions"]
    assert len(executions) == 4
    for execution in executions:
        given = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
        key = given["detail"]["object"]["key"].rsplit("/", 1)[-1]
        result = execute(definition, dev, given, execution["name"], execution["executionArn"], Get_Crawler=[crawled_after(given["time"])])
        assert result.status == "SUCCEEDED", (key, result)
        results.append((key, result))

    code, status = ops(dev, "status", now=later)
    assert code == 0 and status["counts"]["loaded"] == 20 and status["counts"]["failed"] == 0
    code, reconciled = ops(dev, "reconcile", now=later)
    assert code == 0 and reconciled["accounted"] == 20 and not reconciled["findings"]
    assert loads(results) == dict.fromkeys(items, 1)  # every upload loaded exactly once
    code, shown = ops(dev, "show", items["store-17.csv"].uri, now=later)
    (record,) = shown["records"]
    assert [run["outcome"] for run in record["runs"]] == ["failed", "loaded"]
