"""The MWAA Serverless form's ledger writes: the trigger, the progress and the failure-report Lambdas against the
ledger table in moto (and the alert topic in moto), the service through botocore's Stubber (moto has no MWAA
Serverless), with the events the service sends. The clean job's write is `UploadLedger.counts`, as
`glue_clean_job.record_counts_in_ledger` makes it. Every kind of upload ends with the transitions the step
description names (`pipeline_plan.LEDGER_TRANSITIONS`), the same as the other forms'."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from pipeline_constructs.runtime.pipeline_plan import LEDGER_TRANSITIONS
from pipeline_constructs.runtime.upload_ledger import Upload, UploadLedger
from tests.ledger_table import LEDGER_TABLE, create_ledger_table

REGION = "eu-west-1"
WORKFLOW_ARN = f"arn:aws:airflow-serverless:{REGION}:123456789012:workflow/sales-pipeline-AbCdEf1234"
BUCKET = "landing"
COUNTS = {"rows_in": 12, "rows_out": 10, "rows_quarantined": 2, "duplicates_dropped": 0, "lines_read": 13, "lines_quarantined": 2}
TASKS = ("crawl", "clean", "find_curated_rows", "load")

pytestmark = pytest.mark.timeout(60)


@dataclass
class Serverless:
    """The Lambdas' module with moto's ledger table and topic, the service stubbed, and every ledger write seen."""

    handler: Any
    service: Stubber
    dynamodb: Any
    sns: Any
    sqs: Any
    topic_queue: str
    seen: list[tuple[str, str]] = field(default_factory=list)
    writing: Any = None

    def transitions(self) -> tuple[tuple[str, str], ...]:
        """(state, step) after each write that changed either (the counts and the execution writes change neither)."""
        collapsed: list[tuple[str, str]] = []
        for pair in self.seen:
            if not collapsed or collapsed[-1] != pair:
                collapsed.append(pair)
        return tuple(collapsed)

    def record(self, key: str, version: str = "v1") -> dict[str, Any]:
        record = self.clean_job().get(Upload(BUCKET, key, version_id=version))
        assert record is not None
        return record

    def clean_job(self) -> UploadLedger:
        return UploadLedger(self.dynamodb, LEDGER_TABLE, form="mwaa_serverless", ttl_days=30)

    def messages(self) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(QueueUrl=self.topic_queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return [json.loads(json.loads(m["Body"])["Message"]) for m in answer.get("Messages", [])]


@pytest.fixture
def serverless(monkeypatch: pytest.MonkeyPatch) -> Iterator[Serverless]:
    for name, value in {"AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_ledger_table(dynamodb)
        sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="alerts-copy")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        for name, value in {
            "WORKFLOW_ARN": WORKFLOW_ARN,
            "TOPIC_ARN": topic,
            "DATASET": "sales",
            "LEDGER_TABLE": LEDGER_TABLE,
            "LEDGER_TTL_DAYS": "30",
        }.items():
            monkeypatch.setenv(name, value)
        from pipeline_constructs.runtime.upload_lambdas import mwaa_serverless as handler

        monkeypatch.setattr(handler, "dynamodb", dynamodb)
        monkeypatch.setattr(handler, "sns", sns)
        with Stubber(handler.mwaa_serverless) as service:
            world = Serverless(handler, service, dynamodb, sns, sqs, queue)

            def before_write(params: dict[str, Any], **_: Any) -> None:
                world.writing = params["Key"]

            def after_write(parsed: dict[str, Any], **_: Any) -> None:
                if "Error" in parsed:  # a refused write changed nothing
                    return
                item = dynamodb.get_item(TableName=LEDGER_TABLE, Key=world.writing, ConsistentRead=True)["Item"]
                world.seen.append((item["state"]["S"], item["step"]["S"]))

            dynamodb.meta.events.register("provide-client-params.dynamodb.UpdateItem", before_write)
            dynamodb.meta.events.register("after-call.dynamodb.UpdateItem", after_write)
            yield world
            service.assert_no_pending_responses()


# --- the service's side: what the trigger sends, what the events say, what the lookups answer --------------------
def s3_message(key: str, version: str | None = "v1") -> str:
    obj: dict[str, Any] = {"key": key, "size": 120, **({"version-id": version} if version else {})}
    return json.dumps({"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": BUCKET}, "object": obj}})


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {"Records": [{"messageId": f"m{i}", "body": body} for i, body in enumerate(bodies)]}


def obj_of(key: str, version: str | None = "v1") -> dict[str, Any]:
    return {"bucket": BUCKET, "key": key, "version_id": version}


def expect_start(world: Serverless, key: str, service_run: str, version: str | None = "v1") -> str:
    """StartWorkflowRun as the trigger sends it; returns the ledger's run id."""
    obj = obj_of(key, version)
    run_id = world.handler.dag_run_id(obj)
    world.service.add_response(
        "start_workflow_run",
        {"RunId": service_run, "Status": "STARTING"},
        {
            "WorkflowArn": WORKFLOW_ARN,
            "ClientToken": world.handler.client_token(obj),
            "OverrideParameters": {"bucket": BUCKET, "key": key, "version_id": version or "", "run_id": run_id},
        },
    )
    return run_id


def run_event(detail_type: str, service_run: str, **detail: str) -> dict[str, Any]:
    return {
        "version": "0",
        "source": "aws.airflow-serverless",
        "detail-type": detail_type,
        "resources": [WORKFLOW_ARN],
        "detail": {"workflowArn": WORKFLOW_ARN, "runId": service_run, **detail},
    }


def task_running(service_run: str, task: str) -> dict[str, Any]:
    return run_event("MWAA Serverless Task Running", service_run, taskId=task, taskInstanceId=f"ti-{task}", status="RUNNING")


def expect_run(world: Serverless, key: str, service_run: str, run_id: str, error: str | None = None) -> None:
    detail: dict[str, Any] = {
        "RunId": service_run,
        "RunState": "FAILED" if error else "SUCCESS",
        **({"ErrorMessage": error} if error else {}),
    }
    world.service.add_response(
        "get_workflow_run",
        {
            "WorkflowArn": WORKFLOW_ARN,
            "RunId": service_run,
            "OverrideParameters": {"bucket": BUCKET, "key": key, "version_id": "v1", "run_id": run_id},
            "RunDetail": detail,
        },
        {"WorkflowArn": WORKFLOW_ARN, "RunId": service_run},
    )


def expect_tasks(world: Serverless, service_run: str, statuses: dict[str, str], errors: dict[str, str] | None = None) -> None:
    """ListTaskInstances (no task ids in the listing), then GetTaskInstance for each."""
    run = {"WorkflowArn": WORKFLOW_ARN, "RunId": service_run}
    summaries = [{"TaskInstanceId": f"ti-{task}", "Status": status, **run} for task, status in statuses.items()]
    world.service.add_response("list_task_instances", {"TaskInstances": summaries}, run)
    for task, status in statuses.items():
        answer = {**run, "TaskInstanceId": f"ti-{task}", "TaskId": task, "Status": status}
        if errors and task in errors:
            answer["ErrorMessage"] = errors[task]
        world.service.add_response("get_task_instance", answer, {**run, "TaskInstanceId": f"ti-{task}"})


def start_upload(world: Serverless, key: str, service_run: str) -> str:
    run_id = expect_start(world, key, service_run)
    assert world.handler.start(sqs_event(s3_message(key)), None) == {"batchItemFailures": []}
    return run_id


def reach(world: Serverless, key: str, service_run: str, run_id: str, task: str) -> None:
    expect_run(world, key, service_run, run_id)
    answer = world.handler.record_progress(task_running(service_run, task), None)
    assert answer["recorded"] == task


def succeed(world: Serverless, key: str, service_run: str, run_id: str, statuses: dict[str, str]) -> dict[str, Any]:
    expect_run(world, key, service_run, run_id)
    expect_tasks(world, service_run, statuses)
    return dict(world.handler.record_progress(run_event("MWAA Serverless Workflow Run Succeeded", service_run, status="SUCCESS"), None))


ALL_RAN = dict.fromkeys(TASKS, "SUCCESS")
LOAD_SKIPPED = {"crawl": "SUCCESS", "clean": "SUCCESS", "find_curated_rows": "NONE", "load": "NONE"}


# --- the four kinds of upload ---------------------------------------------------------------------------------------
def test_a_good_upload_is_taken_by_the_trigger_stepped_by_its_events_and_loaded(serverless: Serverless) -> None:
    key = "incoming/mwaa_serverless/2026-12-04/store-1.csv"
    run_id = start_upload(serverless, key, "sr-1")
    record = serverless.record(key)
    assert record["owner"] == run_id and record["form"] == "mwaa_serverless"
    assert [(run["run_id"], run["execution"]) for run in record["runs"]] == [(run_id, "sr-1")]  # the service's run id
    reach(serverless, key, "sr-1", run_id, "clean")
    serverless.clean_job().counts(Upload(BUCKET, key, version_id="v1"), run_id=run_id, counts=COUNTS)
    reach(serverless, key, "sr-1", run_id, "load")
    assert succeed(serverless, key, "sr-1", run_id, ALL_RAN)["recorded"] == "loaded"
    assert serverless.transitions() == LEDGER_TRANSITIONS["good"]
    record = serverless.record(key)
    assert record["rows_out"] == 10 and "owner" not in record and record["runs"][0]["outcome"] == "loaded"
    assert serverless.messages() == []


@pytest.mark.parametrize(("kind", "quarantined"), [("empty", 0), ("quarantined", 3)])
def test_an_upload_without_curated_rows_ends_without_a_load(serverless: Serverless, kind: str, quarantined: int) -> None:
    key = f"incoming/mwaa_serverless/2026-12-04/{kind}.csv"
    run_id = start_upload(serverless, key, "sr-2")
    reach(serverless, key, "sr-2", run_id, "clean")
    counts = {"rows_in": quarantined, "rows_out": 0, "rows_quarantined": quarantined, "lines_read": quarantined + 1}
    serverless.clean_job().counts(Upload(BUCKET, key, version_id="v1"), run_id=run_id, counts=counts)
    # The rows check found no curated rows: it and the load were skipped; the run succeeded.
    assert succeed(serverless, key, "sr-2", run_id, LOAD_SKIPPED)["recorded"] == kind.replace("empty", "skipped_empty")
    assert serverless.transitions() == LEDGER_TRANSITIONS[kind]


def test_an_upload_failing_at_load_is_recorded_failed_there_and_reported_once(serverless: Serverless) -> None:
    key = "incoming/mwaa_serverless/2026-12-04/store-9.csv"
    run_id = start_upload(serverless, key, "sr-3")
    reach(serverless, key, "sr-3", run_id, "clean")
    serverless.clean_job().counts(Upload(BUCKET, key, version_id="v1"), run_id=run_id, counts=COUNTS)
    reach(serverless, key, "sr-3", run_id, "load")
    failed = run_event("MWAA Serverless Workflow Run Failed", "sr-3", status="FAILED")
    for _ in range(2):  # EventBridge delivers at least once: the second delivery is a repeat
        expect_run(serverless, key, "sr-3", run_id, error="a task failed")
        expect_tasks(
            serverless,
            "sr-3",
            {**ALL_RAN, "load": "FAILED"},
            {"load": "ICEBERG_COMMIT_ERROR: the warehouse refused the MERGE"},
        )
    first = serverless.handler.report_failure(failed, None)
    second = serverless.handler.report_failure(failed, None)
    assert first["published"] is True and second["published"] is False
    assert serverless.transitions() == LEDGER_TRANSITIONS["failed_at_load"]
    (message,) = serverless.messages()
    assert message == {
        "pipeline": "mwaa_serverless",
        "object": f"s3://{BUCKET}/{key}",
        "version_id": "v1",
        "run_id": run_id,
        "failed_step": "load",
        "error": "WorkflowRunFailed",
        "cause": "ICEBERG_COMMIT_ERROR: the warehouse refused the MERGE",
        "execution": "sr-3",
        "workflow_arn": WORKFLOW_ARN,
    }
    record = serverless.record(key)
    assert (record["state"], record["step"], record["error"]) == ("failed", "load", "WorkflowRunFailed")
    assert record["cause"] == message["cause"] and record["runs"][0]["outcome"] == "failed"


# --- repeats, late and lost events ----------------------------------------------------------------------------------
def test_a_repeated_trigger_message_starts_no_second_run_and_fails_nothing(serverless: Serverless) -> None:
    key = "incoming/mwaa_serverless/2026-12-04/store-2.csv"
    run_id = start_upload(serverless, key, "sr-4")
    # While the run holds it: the same run id and token again (the service answers with the same run).
    expect_start(serverless, key, "sr-4")
    assert serverless.handler.start(sqs_event(s3_message(key)), None) == {"batchItemFailures": []}
    reach(serverless, key, "sr-4", run_id, "clean")
    serverless.clean_job().counts(Upload(BUCKET, key, version_id="v1"), run_id=run_id, counts=COUNTS)
    succeed(serverless, key, "sr-4", run_id, ALL_RAN)
    # Once it is loaded: no StartWorkflowRun at all (none is stubbed; a call would fail the message).
    assert serverless.handler.start(sqs_event(s3_message(key)), None) == {"batchItemFailures": []}
    record = serverless.record(key)
    assert record["state"] == "loaded" and len(record["runs"]) == 1
    # A repeated success event writes nothing.
    before = list(serverless.seen)
    assert succeed(serverless, key, "sr-4", run_id, ALL_RAN)["recorded"] is None
    assert serverless.seen == before


def test_a_failed_upload_is_not_taken_again_by_a_repeated_message(serverless: Serverless) -> None:
    key = "incoming/mwaa_serverless/2026-12-04/store-3.csv"
    run_id = start_upload(serverless, key, "sr-5")
    serverless.clean_job().fail(Upload(BUCKET, key, version_id="v1"), run_id=run_id, error="WorkflowRunFailed", cause="crawler")
    assert serverless.handler.start(sqs_event(s3_message(key)), None) == {"batchItemFailures": []}  # nothing started
    assert serverless.record(key)["state"] == "failed"


def test_a_crash_between_the_ledger_write_and_the_start_starts_one_run_when_the_message_returns(serverless: Serverless) -> None:
    key = "incoming/mwaa_serverless/2026-12-04/store-4.csv"
    serverless.service.add_client_error("start_workflow_run", service_error_code="ThrottlingException", http_status_code=429)
    assert serverless.handler.start(sqs_event(s3_message(key)), None) == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    held = serverless.record(key)
    assert held["state"] == "running" and held["runs"][0]["execution"] == "(not started yet)"
    run_id = start_upload(serverless, key, "sr-6")  # SQS delivers the message again
    record = serverless.record(key)
    assert record["owner"] == run_id == held["owner"] and [run["execution"] for run in record["runs"]] == ["sr-6"]


def test_steps_whose_task_events_were_lost_are_recorded_by_the_outcome(serverless: Serverless) -> None:
    key = "incoming/mwaa_serverless/2026-12-04/store-5.csv"
    run_id = start_upload(serverless, key, "sr-7")
    serverless.clean_job().counts(Upload(BUCKET, key, version_id="v1"), run_id=run_id, counts=COUNTS)
    assert succeed(serverless, key, "sr-7", run_id, ALL_RAN)["step"] == "load"
    assert serverless.transitions() == LEDGER_TRANSITIONS["good"]
    # A task event delivered after the run ended writes nothing.
    before = list(serverless.seen)
    expect_run(serverless, key, "sr-7", run_id)
    assert serverless.handler.record_progress(task_running("sr-7", "clean"), None)["recorded"] is None
    assert serverless.seen == before


def test_a_run_that_failed_in_the_rows_check_is_recorded_failed_at_clean(serverless: Serverless) -> None:
    key = "incoming/mwaa_serverless/2026-12-04/store-6.csv"
    run_id = start_upload(serverless, key, "sr-8")
    expect_run(serverless, key, "sr-8", run_id, error="a task failed")
    expect_tasks(
        serverless,
        "sr-8",
        {"crawl": "SUCCESS", "clean": "SUCCESS", "find_curated_rows": "FAILED"},
        {"find_curated_rows": "S3 AccessDenied"},
    )
    assert (
        serverless.handler.report_failure(run_event("MWAA Serverless Workflow Run Failed", "sr-8"), None)["failed_step"]
        == "find_curated_rows"
    )
    record = serverless.record(key)
    assert (record["state"], record["step"], record["cause"]) == ("failed", "clean", "S3 AccessDenied")


def test_a_refused_ledger_write_does_not_stop_the_message(serverless: Serverless) -> None:
    key = "incoming/mwaa_serverless/2026-12-04/by-hand.csv"  # a run started without the trigger: no record
    expect_run(serverless, key, "sr-9", "manual-run", error="crawler failed")
    expect_tasks(serverless, "sr-9", {"crawl": "FAILED"}, {"crawl": "CrawlerRunningException"})
    answer = serverless.handler.report_failure(run_event("MWAA Serverless Workflow Run Timeout", "sr-9"), None)
    assert answer["published"] is True and answer["error"] == "WorkflowRunTimeout"
    (message,) = serverless.messages()
    assert message["failed_step"] == "crawl" and message["run_id"] == "manual-run"
    assert serverless.clean_job().get(Upload(BUCKET, key, version_id="v1")) is None


def test_a_success_whose_load_did_not_run_despite_curated_rows_is_not_recorded_and_raises(serverless: Serverless) -> None:
    key = "incoming/mwaa_serverless/2026-12-04/odd.csv"
    run_id = start_upload(serverless, key, "sr-10")
    serverless.clean_job().counts(Upload(BUCKET, key, version_id="v1"), run_id=run_id, counts=COUNTS)
    with pytest.raises(RuntimeError, match=r"rows_out=10 from the clean job \(expected 0\)"):
        succeed(serverless, key, "sr-10", run_id, LOAD_SKIPPED)
    assert serverless.record(key)["state"] == "running"
