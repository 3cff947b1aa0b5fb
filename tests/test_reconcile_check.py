"""The scheduled reconcile check: its handler against the synthesized app "deployed" into moto (the metric it
publishes lands in moto's CloudWatch), its code importable from the Lambda asset with only boto3, and its resources
in the stateful stack (schedule, role, alarms) and settings."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline_constructs.operations.scheduled_check import DIMENSION, METRIC_NAME, CheckCountsError, _checked_counts, run_check
from pipeline_constructs.operations.uploads import ReconcileReport
from stacks.config import ConfigError, parse_app_config
from stacks.reconcile_check import HANDLER, stage_check_code
from tests.deployed_environment import FakeDeployment, FakeSession
from tests.fake_aws import FAKE_AWS_REGION
from tests.test_pipeline_ops import SFN_PREFIX, failed_at_load, loaded, upload

pytestmark = pytest.mark.timeout(120)
NAMESPACE = "RetailPipeline"


def check(deployment: FakeDeployment, now: datetime) -> dict[str, Any]:
    session = FakeSession(deployment)
    clients = {name: session.client(name) for name in ("cloudformation", "s3", "dynamodb")}
    clients["cloudwatch"] = boto3.client("cloudwatch", region_name=FAKE_AWS_REGION)
    return run_check(
        clients, environment_name=deployment.env, region=FAKE_AWS_REGION, namespace=NAMESPACE, window=timedelta(hours=24), now=now
    )


def published(environment: str) -> list[tuple[float, float]]:
    """(SampleCount, Maximum) of the metric over the last day, in one period."""
    answer = boto3.client("cloudwatch", region_name=FAKE_AWS_REGION).get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=METRIC_NAME,
        Dimensions=[{"Name": DIMENSION, "Value": environment}],
        StartTime=datetime.now(UTC) - timedelta(days=1),
        EndTime=datetime.now(UTC) + timedelta(days=1),
        Period=86400,
        Statistics=["Maximum", "SampleCount"],
    )
    return [(point["SampleCount"], point["Maximum"]) for point in answer["Datapoints"]]


def test_the_check_publishes_the_uploads_not_accounted_for(fake_aws: None, templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    dev = FakeDeployment(templates, "dev")
    loaded(dev, upload(dev, f"{SFN_PREFIX}done.csv"), "run-1")
    failed_at_load(dev, upload(dev, f"{SFN_PREFIX}broken.csv"), "run-2")
    upload(dev, f"{SFN_PREFIX}lost.csv")

    counts = check(dev, now=datetime.now(UTC))  # the lost one is younger than the run timeout: in flight
    assert (counts["checked"], counts["accounted"], counts["in_flight"], counts["not_accounted"]) == (3, 1, 1, 1)

    later = check(dev, now=datetime.now(UTC) + timedelta(hours=5))  # now it is lost
    assert (later["accounted"], later["in_flight"], later["not_accounted"]) == (1, 0, 2)
    assert published("dev") == [(2.0, 2.0)]  # two checks; the worse said 2


def test_a_check_whose_counts_do_not_add_up_fails_naming_them() -> None:
    report = ReconcileReport(since="2026-12-06T00:00:00Z", checked=5, accounted=3, in_flight=1)
    with pytest.raises(CheckCountsError, match="checked 5 uploads but counted 3 accounted, 1 in flight and 0 not accounted for"):
        _checked_counts(report)


def test_the_lambda_code_imports_with_only_the_standard_library_and_boto3(tmp_path: Path) -> None:
    """The asset holds the check's modules only; aws_cdk (not on Lambda) is blocked in the child interpreter."""
    stage_check_code(tmp_path)
    module, _, function = HANDLER.rpartition(".")
    script = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('aws_cdk', 'constructs', 'jsii', 'yaml', 'pyspark'):\n"
        "            raise ImportError(f'{name} is not on the Lambda runtime')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        f"import importlib; handler = getattr(importlib.import_module({module!r}), {function!r})\n"
        "print(handler.__module__, sys.modules['pipeline_constructs'].__file__)\n"
    )
    answer = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split() == [module, str(tmp_path / "pipeline_constructs" / "__init__.py")]


def test_the_stateful_stack_schedules_the_check_hourly_and_alarms_on_its_metric(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    resources = templates[("dev", "Stateful")]["Resources"]
    [schedule] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Scheduler::Schedule"]
    assert schedule["ScheduleExpression"] == "rate(1 hour)"
    [function_id] = [k for k, r in resources.items() if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler") == HANDLER]
    assert schedule["Target"]["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    variables = resources[function_id]["Properties"]["Environment"]["Variables"]
    assert variables == {"PIPELINE_ENVIRONMENT": "dev", "METRIC_NAMESPACE": NAMESPACE, "WINDOW_HOURS": "24", "EVERY_HOURS": "1"}
    [alarm] = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("MetricName") == METRIC_NAME
    ]
    assert (alarm["Namespace"], alarm["Dimensions"]) == (NAMESPACE, [{"Name": DIMENSION, "Value": "dev"}])
    assert alarm["Threshold"] == 1 and alarm["AlarmActions"]
    statements = [
        s
        for r in resources.values()
        if r["Type"] == "AWS::IAM::Policy" and function_id.startswith("ReconcileCheck")
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if "cloudformation:DescribeStacks" in str(s["Action"])
    ]
    assert statements and all(":stack/dev-*/*" in str(s["Resource"]) for s in statements)  # this environment's stacks only


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"reconcile_every_hours": 0}, "environments.dev.reconcile_every_hours=0"),
        ({"reconcile_every_hours": 25}, "environments.dev.reconcile_every_hours=25"),
        ({"reconcile_every_hours": 6, "reconcile_window_hours": 3}, "environments.dev.reconcile_window_hours=3"),
        ({"max_minutes_without_load": 0}, "environments.dev.max_minutes_without_load=0"),
        ({"max_minutes_without_load": "1h"}, "environments.dev.max_minutes_without_load='1h'"),
        ({"reconcile_every_hours": 2, "max_minutes_without_load": 90}, "environments.dev.max_minutes_without_load=90: must be at least"),
        ({"ledger_retention_days": 1, "max_minutes_without_load": 1440}, "environments.dev.max_minutes_without_load=1440: must be below"),
    ],
)
def test_bad_check_settings_fail_naming_the_setting_and_value(settings: dict[str, Any], named: str) -> None:
    raw = {"dev": {"region": "eu-west-1", "forms": ["step_functions"], "alarm_emails": ["oncall@example.com"], **settings}}
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        parse_app_config(raw, only="dev", default_region="eu-west-1")


def _statistics(name: str, dimensions: dict[str, str], statistic: str) -> float | None:
    answer = boto3.client("cloudwatch", region_name=FAKE_AWS_REGION).get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Dimensions=[{"Name": key, "Value": value} for key, value in dimensions.items()],
        StartTime=datetime.now(UTC) - timedelta(days=1),
        EndTime=datetime.now(UTC) + timedelta(days=1),
        Period=86400 * 2,
        Statistics=[statistic],
    )
    points = answer["Datapoints"]
    return points[0][statistic] if points else None


def test_the_check_publishes_runs_uploads_and_the_last_load_from_the_ledger(
    fake_aws: None, templates: dict[tuple[str, str], dict[str, Any]]
) -> None:
    """Counted from the ledger's records, per form, for the interval the check closes; zeros for a quiet form."""
    dev = FakeDeployment(templates, "dev")
    loaded(dev, upload(dev, f"{SFN_PREFIX}one.csv"), "run-1")
    loaded(dev, upload(dev, f"{SFN_PREFIX}two.csv"), "run-2")
    failed_at_load(dev, upload(dev, f"{SFN_PREFIX}three.csv"), "run-3")
    counts = check(dev, now=datetime.now(UTC) + timedelta(hours=1))  # the hour that holds the runs is closed
    sfn = {"Environment": "dev", "Form": "step_functions"}
    assert counts["metrics_published"] > 3 * (7 + 3 + 3)
    assert _statistics("RunsStarted", sfn, "Sum") == 3
    assert (_statistics("RunsSucceeded", sfn, "Sum"), _statistics("RunsFailed", sfn, "Sum")) == (2, 1)
    assert _statistics("StepFailures", {**sfn, "Step": "load"}, "Sum") == 1
    assert _statistics("StepFailures", {**sfn, "Step": "crawl"}, "Sum") == 0
    assert _statistics("RunDuration", sfn, "SampleCount") == 3
    assert _statistics("Uploads", {**sfn, "State": "loaded"}, "Maximum") == 2
    assert _statistics("Uploads", {**sfn, "State": "failed"}, "Maximum") == 1
    assert _statistics("RunsStarted", {"Environment": "dev", "Form": "glue_workflow"}, "Sum") == 0
    minutes = _statistics("MinutesSinceLastLoad", {"Environment": "dev"}, "Maximum")
    assert minutes is not None and 59 <= minutes <= 61


def test_the_interval_a_check_counts_is_aligned_to_its_period() -> None:
    from pipeline_constructs.operations.ledger_metrics import interval_closed_by

    now = datetime(2026, 12, 7, 10, 17, 5, tzinfo=UTC)
    assert interval_closed_by(now, timedelta(hours=1)) == (datetime(2026, 12, 7, 9, tzinfo=UTC), datetime(2026, 12, 7, 10, tzinfo=UTC))
    assert interval_closed_by(now, timedelta(hours=6)) == (datetime(2026, 12, 7, 0, tzinfo=UTC), datetime(2026, 12, 7, 6, tzinfo=UTC))


def test_an_alarm_fires_when_nothing_loaded_for_longer_than_the_setting(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    resources = templates[("prod", "Stateful")]["Resources"]
    [alarm] = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("MetricName") == "MinutesSinceLastLoad"
    ]
    assert (alarm["Threshold"], alarm["ComparisonOperator"], alarm["Period"]) == (1560, "GreaterThanThreshold", 3600)
    assert alarm["Dimensions"] == [{"Name": "Environment", "Value": "prod"}] and alarm["AlarmActions"]
    assert alarm["TreatMissingData"] == "missing"
