"""The dashboard of every environment: every metric it names is one something in the pipeline publishes (the custom
namespace: gathered from the code that publishes it, run here; AWS namespaces: a reviewed table of the services'
metrics), it stays within CloudWatch's limits, and it shows every alarm and every dead-letter queue of its environment."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from pipeline_constructs.contract import DatasetContract
from pipeline_constructs.dashboard import (
    GRID_WIDTH,
    MAX_ALARMS_PER_WIDGET,
    MAX_METRICS_PER_DASHBOARD,
    MAX_METRICS_PER_WIDGET,
    MAX_WIDGETS,
)
from pipeline_constructs.operations.environment import FORM_STACKS
from pipeline_constructs.operations.ledger_metrics import STEPS
from pipeline_constructs.operations.scheduled_check import run_check
from pipeline_constructs.runtime import glue_clean_job, glue_load_job
from pipeline_constructs.runtime.clean_transform import CleanResult
from pipeline_constructs.runtime.upload_ledger import STATES
from stacks.stateful_stack import CONTRACT_PATH, METRICS_NAMESPACE
from tests.cdk_app import SynthesizedApp
from tests.deployed_environment import FakeDeployment, FakeSession
from tests.fake_aws import FAKE_AWS_REGION
from tests.test_pipeline_ops import SFN_PREFIX, failed_at_load, ledger, loaded, upload

pytestmark = pytest.mark.timeout(300)
Templates = dict[tuple[str, str], dict[str, Any]]
DATASET = DatasetContract.from_file(CONTRACT_PATH).name

# AWS namespaces: each metric a widget may name, with its dimensions and what the dimension's value must resolve to
# (resource type, attribute). Reviewed against the service's page of CloudWatch metrics:
AWS_METRICS: dict[tuple[str, str], dict[str, tuple[str, str]]] = {
    # Amazon SQS Developer Guide, "Available CloudWatch metrics for Amazon SQS" (sqs-available-cloudwatch-metrics.html):
    # ApproximateNumberOfMessagesVisible, dimension QueueName (the queue's name).
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): {"QueueName": ("AWS::SQS::Queue", "QueueName")},
    # AWS Lambda Developer Guide, "Types of metrics for Lambda functions" (monitoring-metrics-types.html): Errors,
    # dimension FunctionName (the function's name). The reconcile check's CheckFailed alarm watches it.
    ("AWS/Lambda", "Errors"): {"FunctionName": ("AWS::Lambda::Function", "Ref")},
}
# CloudFormation quotas (cloudformation-limits.html): a template uploaded through S3, as cdk deploy does, is at most 1 MB.
# CloudWatch documents no limit of its own on the DashboardBody string (PutDashboard, botocore's model has no max), and
# the body is a property of the dashboard stack's template, so the template's quota bounds it.
MAX_TEMPLATE_BYTES = 1024 * 1024


# --- reading the synthesized dashboard --------------------------------------------------------------------------------
def parse_tokens(value: Any) -> tuple[Any, dict[str, Any]]:
    """A string built with Fn::Join, parsed as JSON, each intrinsic replaced by a placeholder string (returned with it)."""
    if isinstance(value, str):
        return json.loads(value), {}
    ((function, (separator, parts)),) = value.items()
    assert function == "Fn::Join"
    tokens: dict[str, Any] = {}
    text = []
    for part in parts:
        if isinstance(part, str):
            text.append(part)
        else:
            key = f"@@token{len(tokens)}@@"
            tokens[key] = part
            text.append(key)
    return json.loads(separator.join(text)), tokens


def resolve(templates: Templates, env: str, value: Any) -> tuple[str, str, str] | None:
    """(stack, logical id, attribute or 'Ref') a cross-stack reference points at, or None for anything else."""
    if isinstance(value, dict) and "Fn::GetStackOutput" in value:
        reference = value["Fn::GetStackOutput"]
        stack = reference["StackName"].split("-", 1)[1]
        assert reference["StackName"] == f"{env}-{stack}"
        value = templates[(env, stack)]["Outputs"][reference["OutputName"]]["Value"]
        if "Ref" in value:
            return stack, value["Ref"], "Ref"
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            return stack, logical_id, attribute
    return None


def resource_type(templates: Templates, env: str, target: tuple[str, str, str]) -> str:
    stack, logical_id, _ = target
    return str(templates[(env, stack)]["Resources"][logical_id]["Type"])


def dashboards(templates: Templates) -> dict[str, tuple[Any, dict[str, Any]]]:
    out = {}
    for (env, stack), template in templates.items():
        if stack != "Dashboard":
            continue
        [body] = [r["Properties"]["DashboardBody"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
        out[env] = parse_tokens(body)
    return out


def metric_rows(widget: dict[str, Any]) -> list[list[Any]]:
    """A metric widget's rows, CloudWatch's '.' (same as the row above) expanded."""
    rows, previous = [], []
    for row in widget.get("properties", {}).get("metrics", []):
        expanded = [previous[i] if item == "." and i < len(previous) else item for i, item in enumerate(row)]
        rows.append(expanded)
        previous = expanded
    return rows


def named_metrics(templates: Templates, env: str, body: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric, {dimension: value}) of every metric the dashboard names: in its metric widgets' rows, and
    the metric of every alarm an alarm widget draws."""
    out = []
    for widget in body["widgets"]:
        for row in metric_rows(widget):
            if isinstance(row[0], dict):
                continue  # a math expression: its inputs are rows of their own
            fields = row[:-1] if isinstance(row[-1], dict) else row
            namespace, name, *pairs = fields
            out.append((namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return out


@pytest.fixture(scope="module")
def published(fake_aws_module: None, templates: Templates) -> dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]]:
    """{env: {(metric, ((dimension, value), ...))}} of the custom namespace, as the pipeline's code publishes it: the
    scheduled check run against each environment "deployed" into moto, with uploads loaded and failed."""
    out = {}
    cloudwatch = boto3.client("cloudwatch", region_name=FAKE_AWS_REGION)
    for env in sorted({env for env, _ in templates}):
        deployment = FakeDeployment(templates, env)
        loaded(deployment, upload(deployment, f"{SFN_PREFIX}done.csv"), f"{env}-run-1")
        failed_at_load(deployment, upload(deployment, f"{SFN_PREFIX}broken.csv"), f"{env}-run-2")
        for form, stack in FORM_STACKS.items():  # a run of every other form too: durations exist once a run ended
            if form != "step_functions" and stack in deployment.outputs:
                item = upload(deployment, f"{deployment.output(stack, 'LandingPrefix')}done.csv")
                book = ledger(deployment, form)
                book.start(item, run_id=f"{env}-{form}-run", execution=f"{form}-run", step="crawl")
                book.finish(item, run_id=f"{env}-{form}-run", outcome="loaded")
        session = FakeSession(deployment)
        clients = {name: session.client(name) for name in ("cloudformation", "s3", "dynamodb")}
        clients["cloudwatch"] = cloudwatch
        run_check(
            clients,
            environment_name=env,
            region=FAKE_AWS_REGION,
            namespace=METRICS_NAMESPACE,
            window=timedelta(hours=24),
            now=datetime.now(UTC) + timedelta(hours=1),
        )
        metrics = [
            m
            for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace=METRICS_NAMESPACE)
            for m in page["Metrics"]
            if {"Name": "Environment", "Value": env} in m["Dimensions"]
        ]
        out[env] = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in metrics}
        out[env] |= serverless_run_counts(templates, env)
    return out


def serverless_run_counts(templates: Templates, env: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """(metric, ((dimension, value), ...)) of the custom namespace that the MWAA Serverless form's event functions
    print (one embedded-metric-format line per run outcome: runtime/upload_lambdas/mwaa_serverless.count_run), run with
    each function's synthesized environment; CloudWatch Logs makes the metric from the line."""
    template = templates.get((env, FORM_STACKS["mwaa_serverless"]))
    if template is None:
        return set()
    from pipeline_constructs.runtime.upload_lambdas import mwaa_serverless as handler
    from pipeline_constructs.runtime.upload_lambdas.serverless_runs import RUNS_FAILED, RUNS_SUCCEEDED

    metrics = {"mwaa_serverless.report_failure": RUNS_FAILED, "mwaa_serverless.record_progress": RUNS_SUCCEEDED}
    out = set()
    for resource in template["Resources"].values():
        props = resource["Properties"]
        if resource["Type"] != "AWS::Lambda::Function" or props.get("Handler") not in metrics:
            continue
        printed = io.StringIO()
        with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
            for name in handler.METRICS_ENVIRONMENT:
                patch.setenv(name, props["Environment"]["Variables"][name])
            assert handler.count_run(metrics[props["Handler"]], f"{env}-service-run", outcome="test")
        (line,) = printed.getvalue().splitlines()
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            if directive["Namespace"] != METRICS_NAMESPACE:
                continue
            for dimensions in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    out.add((metric["Name"], tuple(sorted((name, document[name]) for name in dimensions))))
    return out


@pytest.fixture(scope="module")
def fake_aws_module() -> Any:
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": FAKE_AWS_REGION,
        }.items():
            patch.setenv(name, value)
        with mock_aws():
            yield


def clean_job_published() -> set[tuple[str, frozenset[str]]]:
    """(metric, dimension names) the clean job publishes for a run (runtime/glue_clean_job.metric_data, as Glue runs it
    with JOB_NAME set), and what the Glue Workflow's load job publishes at the end of a run."""
    result = CleanResult(dataset=DATASET, run_id="r", rows_in=3, rows_out=2, rows_quarantined=1, reasons={"cast_failed:x": 1})
    data = glue_clean_job.metric_data(result, DATASET, "the-job")
    data += glue_load_job.run_metric_data({"metrics_namespace": METRICS_NAMESPACE, "dataset": DATASET, "WORKFLOW_NAME": "wf"})
    return {(d["MetricName"], frozenset(x["Name"] for x in d["Dimensions"])) for d in data}


# --- the tests ------------------------------------------------------------------------------------------------------
def test_every_environment_has_its_dashboard(synthesized: SynthesizedApp, templates: Templates) -> None:
    found = dashboards(templates)
    assert set(found) == {stage.stage_name for stage in synthesized.stages}
    for stage in synthesized.stages:
        body, _ = found[stage.stage_name]
        forms = {dims.get("Form") for _, _, dims in named_metrics(templates, stage.stage_name, body)} - {None}
        assert forms == set(stage.config.forms), stage.stage_name  # every enabled form feeds it, no other


def test_every_metric_it_names_is_published_by_the_pipeline(
    templates: Templates, published: dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]]
) -> None:
    clean = clean_job_published()
    for env, (body, tokens) in dashboards(templates).items():
        metrics = named_metrics(templates, env, body)
        for widget in body["widgets"]:
            for alarm_arn in widget["properties"].get("annotations", {}).get("alarms", []):
                target = resolve(templates, env, tokens[alarm_arn])
                assert target is not None and resource_type(templates, env, target) == "AWS::CloudWatch::Alarm"
                alarm = templates[(env, target[0])]["Resources"][target[1]]["Properties"]
                for metric in [alarm, *(m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m)]:
                    if "MetricName" in metric:
                        dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                        metrics.append((metric["Namespace"], metric["MetricName"], dims))
        assert metrics
        for namespace, name, dims in metrics:
            where = f"{env}: {namespace} {name} {dims}"
            values = {key: tokens.get(value, value) if isinstance(value, str) else value for key, value in dims.items()}
            if namespace == METRICS_NAMESPACE:
                literal = {key: value for key, value in values.items() if isinstance(value, str)}
                if literal == values:
                    assert (name, tuple(sorted(literal.items()))) in published[env], f"{where}: nothing publishes it"
                else:
                    assert (name, frozenset(values)) in clean, f"{where}: the clean job publishes no such metric"
                    assert values["Dataset"] == DATASET, where
                    target = resolve(templates, env, values["JobName"])
                    assert target is not None and resource_type(templates, env, target) == "AWS::Glue::Job", where
            else:
                assert (namespace, name) in AWS_METRICS, f"{where}: not in the reviewed table of service metrics"
                expected = AWS_METRICS[(namespace, name)]
                assert set(values) == set(expected), f"{where}: the service publishes it with {sorted(expected)}"
                for key, (kind, attribute) in expected.items():
                    target = resolve(templates, env, values[key])
                    assert target is not None and resource_type(templates, env, target) == kind, where
                    assert target[2] == attribute, where


def test_the_ledger_metrics_name_only_the_states_steps_and_forms_there_are(templates: Templates) -> None:
    for env, (body, _) in dashboards(templates).items():
        for _, name, dims in named_metrics(templates, env, body):
            assert dims.get("State", STATES[0]) in STATES and dims.get("Step", STEPS[0]) in STEPS, (env, name, dims)
            if "Environment" in dims:
                assert dims["Environment"] == env


def test_it_stays_within_cloudwatch_limits(templates: Templates) -> None:
    for env, (body, _) in dashboards(templates).items():
        widgets = body["widgets"]
        assert 0 < len(widgets) <= MAX_WIDGETS, env
        total = 0
        for widget in widgets:
            assert 1 <= widget["width"] <= GRID_WIDTH and widget["x"] + widget["width"] <= GRID_WIDTH, (env, widget)
            assert 1 <= widget["height"] <= 1000, (env, widget)
            rows = widget["properties"].get("metrics", [])
            assert len(rows) <= MAX_METRICS_PER_WIDGET, (env, widget["properties"].get("title"))
            total += len(rows) + len(widget["properties"].get("annotations", {}).get("alarms", []))
            if widget["type"] == "alarm":
                assert 1 <= len(widget["properties"]["alarms"]) <= MAX_ALARMS_PER_WIDGET, env
        assert total <= MAX_METRICS_PER_DASHBOARD, env
        assert len(json.dumps(templates[(env, "Dashboard")]).encode()) <= MAX_TEMPLATE_BYTES, env


def test_it_shows_the_state_of_every_alarm_of_its_environment(templates: Templates) -> None:
    for env, (body, tokens) in dashboards(templates).items():
        shown = [
            resolve(templates, env, tokens[arn])
            for widget in body["widgets"]
            if widget["type"] == "alarm"
            for arn in widget["properties"]["alarms"]
        ]
        every = {
            (stack, logical_id, "Arn")
            for (name, stack), template in templates.items()
            if name == env
            for logical_id, resource in template["Resources"].items()
            if resource["Type"] == "AWS::CloudWatch::Alarm"
        }
        assert len(shown) == len(set(shown)) and set(shown) == every, env


def test_it_shows_the_depth_of_every_dead_letter_queue(templates: Templates) -> None:
    for env, (body, tokens) in dashboards(templates).items():
        queues = {
            resolve(templates, env, tokens[dims["QueueName"]])[:2]  # type: ignore[index]
            for namespace, _, dims in named_metrics(templates, env, body)
            if namespace == "AWS/SQS"
        }
        expected = set()
        for (name, stack), template in templates.items():
            outputs = template.get("Outputs", {})
            if name != env:
                continue
            if "DeadLetterQueues" in outputs:
                entries, refs = parse_tokens(outputs["DeadLetterQueues"]["Value"])
                expected |= {(stack, refs[entry["url"]]["Ref"]) for entry in entries}
            if "NotificationDeadLetterQueueUrl" in outputs:
                expected.add((stack, outputs["NotificationDeadLetterQueueUrl"]["Value"]["Ref"]))
        assert expected and queues == expected, env


def test_the_mwaa_serverless_run_counts_its_alarms_read_are_published(
    templates: Templates, published: dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]]
) -> None:
    """The form's RunsFailed alarm (shown on the dashboard) reads what its failure reporter prints, and the progress
    function's RunsSucceeded is known too, so a widget may name either."""
    for (env, stack), template in templates.items():
        if stack != FORM_STACKS["mwaa_serverless"]:
            continue
        names = {name for name, _ in published[env]}
        assert {"RunsFailed", "RunsSucceeded"} <= names, env
        alarms = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
        custom = [a for a in alarms if a.get("Namespace") == METRICS_NAMESPACE]
        assert custom, env
        for alarm in custom:
            dims = tuple(sorted((d["Name"], d["Value"]) for d in alarm["Dimensions"]))
            assert (alarm["MetricName"], dims) in published[env], f"{env}: {alarm['MetricName']} {dims}: nothing publishes it"
