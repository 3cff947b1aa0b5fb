"""The MWAA Serverless form counts its runs from what its Lambdas record, not from EventBridge rule matches (issue 24:
EventBridge's monitoring guide calls its metrics best-effort): the failure reporter and the progress Lambda print one
embedded-metric-format (EMF) line per run outcome, and `metric_runs_failed()` / `metric_runs_succeeded()` (so the
form's alarms) name exactly those metrics. The lines are read here as CloudWatch Logs reads them (the `_aws` block);
the Lambdas run against moto's ledger table with the service stubbed (test_mwaa_serverless_ledger.py's world)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from botocore.stub import Stubber

from pipeline_constructs.runtime.upload_lambdas.serverless_runs import RUNS_FAILED, RUNS_SUCCEEDED
from pipeline_constructs.runtime.upload_ledger import Upload
from tests.test_mwaa_serverless_ledger import (  # noqa: F401 (the `serverless` fixture)
    ALL_RAN,
    BUCKET,
    COUNTS,
    LOAD_SKIPPED,
    WORKFLOW_ARN,
    Serverless,
    expect_run,
    expect_tasks,
    run_event,
    serverless,
    start_upload,
    succeed,
)

ENV = "dev"
STACK = "MwaaServerless"
NAMESPACE = "RetailPipeline"
METRICS_ENVIRONMENT = {"METRICS_NAMESPACE": NAMESPACE, "DATASET": "sales", "WORKFLOW_NAME": "sales-pipeline"}
FAILED_EVENTS = ("MWAA Serverless Workflow Run Failed", "MWAA Serverless Workflow Run Timeout", "MWAA Serverless Workflow Run Stopped")

pytestmark = pytest.mark.timeout(300)


# --- reading EMF as CloudWatch Logs does ------------------------------------------------------------------------------
def emf_metrics(line: str) -> list[tuple[str, str, dict[str, str], float]]:
    """(namespace, metric, {dimension: value}, value) of every metric one EMF log line defines."""
    document = json.loads(line)
    out = []
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for metric in directive["Metrics"]:
                dims = {name: document[name] for name in dimension_set}
                out.append((directive["Namespace"], metric["Name"], dims, float(document[metric["Name"]])))
    return out


def emf_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The EMF documents printed since the last call."""
    found = []
    for line in capsys.readouterr().out.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            assert isinstance(document["_aws"]["Timestamp"], int)
            found.append(document)
    return found


def counted(capsys: pytest.CaptureFixture[str]) -> list[tuple[str, str, dict[str, str], float]]:
    return [metric for document in emf_lines(capsys) for metric in emf_metrics(json.dumps(document))]


def expected(metric: str) -> tuple[str, str, dict[str, str], float]:
    return (NAMESPACE, metric, {"Dataset": "sales", "WorkflowName": "sales-pipeline"}, 1.0)


@pytest.fixture
def world(serverless: Serverless, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Serverless:  # noqa: F811
    for name, value in METRICS_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    return serverless


# --- the Lambdas' lines -----------------------------------------------------------------------------------------------
def test_a_successful_run_is_counted_once_even_when_its_event_comes_again(world: Serverless, capsys: pytest.CaptureFixture[str]) -> None:
    key = "incoming/mwaa_serverless/2026-12-07/store-1.csv"
    run_id = start_upload(world, key, "sr-1")
    world.clean_job().counts(Upload(BUCKET, key, version_id="v1"), run_id=run_id, counts=COUNTS)
    capsys.readouterr()
    assert succeed(world, key, "sr-1", run_id, ALL_RAN)["counted"] is True
    (document,) = emf_lines(capsys)
    assert emf_metrics(json.dumps(document)) == [expected(RUNS_SUCCEEDED)]
    assert document["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [{"Name": RUNS_SUCCEEDED, "Unit": "Count"}]
    assert (document["ServiceRunId"], document["RunId"], document["Object"]) == ("sr-1", run_id, f"s3://{BUCKET}/{key}")
    assert (document["Outcome"], document["Form"]) == ("Succeeded", "mwaa_serverless")
    assert world.record(key)["runs"][0]["counted"] == "sr-1"  # the ledger's mark
    # EventBridge delivers at least once: the same event again is not counted again.
    answer = succeed(world, key, "sr-1", run_id, ALL_RAN)
    assert answer["counted"] is False and answer["recorded"] is None
    assert emf_lines(capsys) == []


def test_a_run_without_curated_rows_counts_as_succeeded(world: Serverless, capsys: pytest.CaptureFixture[str]) -> None:
    key = "incoming/mwaa_serverless/2026-12-07/empty.csv"
    run_id = start_upload(world, key, "sr-2")
    world.clean_job().counts(
        Upload(BUCKET, key, version_id="v1"), run_id=run_id, counts={"rows_in": 0, "rows_out": 0, "rows_quarantined": 0}
    )
    capsys.readouterr()
    assert succeed(world, key, "sr-2", run_id, LOAD_SKIPPED)["recorded"] == "skipped_empty"
    assert counted(capsys) == [expected(RUNS_SUCCEEDED)]


def test_a_failed_run_is_counted_once_and_reported_once(world: Serverless, capsys: pytest.CaptureFixture[str]) -> None:
    key = "incoming/mwaa_serverless/2026-12-07/store-9.csv"
    run_id = start_upload(world, key, "sr-3")
    capsys.readouterr()
    failed = run_event(FAILED_EVENTS[0], "sr-3", status="FAILED")
    for _ in range(2):
        expect_run(world, key, "sr-3", run_id, error="a task failed")
        expect_tasks(world, "sr-3", {"crawl": "SUCCESS", "clean": "FAILED"}, {"clean": "Glue job FAILED"})
    first = world.handler.report_failure(failed, None)
    (document,) = emf_lines(capsys)
    assert emf_metrics(json.dumps(document)) == [expected(RUNS_FAILED)]
    assert (document["Outcome"], document["RunId"], document["ServiceRunId"]) == ("Failed", run_id, "sr-3")
    second = world.handler.report_failure(failed, None)
    assert (first["published"], first["counted"]) == (True, True)
    assert (second["published"], second["counted"]) == (False, False)
    assert emf_lines(capsys) == [] and len(world.messages()) == 1


@pytest.mark.parametrize("detail_type", FAILED_EVENTS[1:])
def test_timed_out_and_stopped_runs_count_as_failed(world: Serverless, capsys: pytest.CaptureFixture[str], detail_type: str) -> None:
    key = "incoming/mwaa_serverless/2026-12-07/slow.csv"
    run_id = start_upload(world, key, "sr-4")
    capsys.readouterr()
    expect_run(world, key, "sr-4", run_id, error="the run ended")
    expect_tasks(world, "sr-4", {"crawl": "SUCCESS", "clean": "RUNNING"})
    assert world.handler.report_failure(run_event(detail_type, "sr-4"), None)["counted"] is True
    (document,) = emf_lines(capsys)
    assert emf_metrics(json.dumps(document)) == [expected(RUNS_FAILED)]
    assert document["Outcome"] == detail_type.rsplit(" ", 1)[1]


def test_a_failure_the_ledger_cannot_mark_is_counted_anyway(world: Serverless, capsys: pytest.CaptureFixture[str]) -> None:
    """A run started by hand (no record): the report still goes out and the run is counted (at least once)."""
    expect_run(world, "incoming/mwaa_serverless/by-hand.csv", "sr-5", "manual-run", error="crawler failed")
    expect_tasks(world, "sr-5", {"crawl": "FAILED"}, {"crawl": "CrawlerRunningException"})
    assert world.handler.report_failure(run_event(FAILED_EVENTS[0], "sr-5"), None)["counted"] is True
    assert counted(capsys) == [expected(RUNS_FAILED)]


def test_a_success_is_counted_again_after_a_retry_only_if_it_was_not_before(world: Serverless, capsys: pytest.CaptureFixture[str]) -> None:
    """The count is marked before the outcome is written: an invocation that fails after counting (here: the outcome
    cannot be written) is retried, and the retry writes nothing twice and counts nothing twice."""
    key = "incoming/mwaa_serverless/2026-12-07/odd.csv"
    run_id = start_upload(world, key, "sr-6")
    world.clean_job().counts(Upload(BUCKET, key, version_id="v1"), run_id=run_id, counts=COUNTS)
    capsys.readouterr()
    for _ in range(2):
        with pytest.raises(RuntimeError, match="expected 0"):
            succeed(world, key, "sr-6", run_id, LOAD_SKIPPED)
    assert counted(capsys) == [expected(RUNS_SUCCEEDED)]


def test_without_a_ledger_a_success_is_counted_without_calling_the_service(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {"AWS_DEFAULT_REGION": "eu-west-1", "WORKFLOW_ARN": WORKFLOW_ARN, **METRICS_ENVIRONMENT}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LEDGER_TABLE", raising=False)
    from pipeline_constructs.runtime.upload_lambdas import mwaa_serverless as handler

    with Stubber(handler.mwaa_serverless) as service:  # no response stubbed: any call would fail
        capsys.readouterr()
        answer = handler.record_progress(run_event("MWAA Serverless Workflow Run Succeeded", "sr-7", status="SUCCESS"), None)
        assert answer == {"recorded": None, "counted": True}
        (document,) = emf_lines(capsys)
        assert emf_metrics(json.dumps(document)) == [expected(RUNS_SUCCEEDED)] and document["ServiceRunId"] == "sr-7"
        # A task event counts nothing (its rule exists only with a ledger).
        assert handler.record_progress(run_event("MWAA Serverless Task Running", "sr-7", taskId="clean"), None)["counted"] is False
        assert emf_lines(capsys) == []
        service.assert_no_pending_responses()


# --- the construct: its metrics are the Lambdas' lines -----------------------------------------------------------------
def _alarm_metrics(template: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        stats = [props, *(m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m)]
        out += [
            (s["Namespace"], s["MetricName"], {d["Name"]: d["Value"] for d in s.get("Dimensions", [])}) for s in stats if "MetricName" in s
        ]
    return out


def test_no_alarm_of_the_form_counts_eventbridge_rule_matches(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    for (env, stack), template in templates.items():
        if stack != STACK:
            continue
        metrics = _alarm_metrics(template)
        assert metrics, env
        assert not [m for m in metrics if m[0] == "AWS/Events"], f"{env}: an alarm reads AWS/Events (best-effort rule matches)"


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["Handler"]: r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and str(r["Properties"].get("Handler", "")).startswith("mwaa_serverless.")
    }


def _printed_by(handler_name: str, function: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """The metrics the deployed function's `count_run` prints, run with the function's synthesized environment."""
    from pipeline_constructs.runtime.upload_lambdas import mwaa_serverless as handler

    variables = function["Environment"]["Variables"]
    for name in handler.METRICS_ENVIRONMENT:
        assert isinstance(variables[name], str), (handler_name, name, variables[name])  # literal: the metric's dimensions are
        monkeypatch.setenv(name, variables[name])
    metric = RUNS_FAILED if handler_name == "mwaa_serverless.report_failure" else RUNS_SUCCEEDED
    capsys.readouterr()
    assert handler.count_run(metric, "sr-1", outcome="test") is True
    (found,) = counted(capsys)
    return found


def test_the_form_metrics_are_what_its_lambdas_print(
    synthesized: Any, templates: dict[tuple[str, str], dict[str, Any]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    template = templates[(ENV, STACK)]
    functions = _functions(template)
    pipeline = synthesized.app.node.find_child(ENV).node.find_child(STACK).node.find_child("Pipeline")
    stack = cdk.Stack.of(pipeline)
    for handler_name, helper in (
        ("mwaa_serverless.report_failure", pipeline.metric_runs_failed),
        ("mwaa_serverless.record_progress", pipeline.metric_runs_succeeded),
    ):
        metric = helper()
        dims = stack.resolve(metric.dimensions)
        namespace, name, printed_dims, value = _printed_by(handler_name, functions[handler_name], monkeypatch, capsys)
        assert (metric.namespace, metric.metric_name, dims) == (namespace, name, printed_dims), handler_name
        assert value == 1.0 and metric.statistic == "Sum"
    # The RunsFailed alarm reads the reporter's metric.
    assert (NAMESPACE, RUNS_FAILED, stack.resolve(pipeline.metric_runs_failed().dimensions)) in _alarm_metrics(template)
    assert pipeline.metrics_namespace == NAMESPACE


# --- without a ledger --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def without_ledger() -> dict[str, Any]:
    """The form with no ledger, in a stack of its own, synthesized with the app's cdk-nag packs (an open finding
    raises)."""
    from aws_cdk import aws_glue as glue
    from cdk_nag import AwsSolutionsChecks, ServerlessChecks

    from pipeline_constructs import AthenaTarget, CleanJob, DatasetContract, PipelineAlerting, PipelineCatalog, PipelineStorage
    from pipeline_constructs.acknowledgements import AcknowledgementsPlugin
    from pipeline_constructs.forms.mwaa_serverless import MwaaServerlessPipeline
    from tests.test_constructs import feature_flags

    app = cdk.App(context=feature_flags())
    stack = cdk.Stack(app, "NoLedger", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    contract = DatasetContract.from_file(Path(__file__).resolve().parent.parent / "contracts" / "retail_sales.yaml")
    storage = PipelineStorage(stack, "Storage")
    alerting = PipelineAlerting(stack, "Alerting", emails=["ops@example.com"])
    catalog = PipelineCatalog(stack, "Catalog", storage=storage, database_name="sales_db")
    job = CleanJob(stack, "Clean", storage=storage, catalog=catalog, contract=contract, worker_type=glue.WorkerType.G_1X, worker_count=2)
    target = AthenaTarget(stack, "Athena", storage=storage, catalog=catalog, clean_job=job)
    form = MwaaServerlessPipeline(
        stack, "Pipeline", storage=storage, catalog=catalog, clean_job=job, target=target, alerting=alerting, workflow_name="sales-pipeline"
    )
    cdk.Validations.of(app).add_plugins(AcknowledgementsPlugin(), AwsSolutionsChecks(app), ServerlessChecks(app))
    assembly = app.synth()
    return {"form": form, "template": assembly.get_stack_by_name("NoLedger").template}


def test_without_a_ledger_successes_still_reach_the_lambda_that_counts_them(without_ledger: dict[str, Any]) -> None:
    template, form = without_ledger["template"], without_ledger["form"]
    rules = [r for r in template["Resources"].values() if r["Type"] == "AWS::Events::Rule"]
    (success,) = [r for r in rules if r["Properties"]["EventPattern"].get("detail-type") == ["MWAA Serverless Workflow Run Succeeded"]]
    (target,) = success["Properties"]["Targets"]
    function = template["Resources"][target["Arn"]["Fn::GetAtt"][0]]
    assert function["Properties"]["Handler"] == "mwaa_serverless.record_progress"
    assert "LEDGER_TABLE" not in function["Properties"]["Environment"]["Variables"]
    assert "DeadLetterConfig" in target  # undeliverable events are kept: no EventBusDLQ acknowledgement any more
    assert "Serverless-EventBusDLQ" not in json.dumps(success.get("Metadata", {}))
    assert form.task_running_rule is None  # the steps go to a ledger only
    assert not [m for m in _alarm_metrics(template) if m[0] == "AWS/Events"]
    assert form.metric_runs_succeeded().namespace == "DataPipeline/retail_sales"
