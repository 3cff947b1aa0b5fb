"""The MWAA form on a schedule (config `trigger: {mwaa: {schedule, time_zone}}`), as synthesized with cdk-nag: staging's
settings with the DAG on a weekday-morning schedule in Paris, loading into Redshift only (a scheduled DAG takes one target). What changes against upload mode: the upload rule feeds
an encrypted inbox queue instead of a queue + Lambda that starts DAG runs, the DAG's configuration carries the
timetable and the inbox, the execution role may claim (inbox, the ledger's state index), the shared clean job may
alert about the files it rejects; and nothing else (upload mode is tests/test_mwaa_form.py and the snapshots).

The scheduled runs themselves are executed on Airflow 3.3.1 in tests/airflow/test_scheduled_dag.py.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest

from pipeline_constructs.runtime.mwaa.pipeline_steps import CLAIM_TASK_ID, RUN_ID_TEMPLATE, SETTLED_SOURCES, describe_steps
from pipeline_constructs.schedules import Schedule
from pipeline_constructs.validation import PipelinePropsError
from tests.cdk_app import pinned_context, synth_app
from tests.test_mwaa_form import _statements, deployed, resources

ENV = "staging"
SCHEDULE = {"schedule": "cron(30 6 ? * MON-FRI *)", "time_zone": "Europe/Paris"}


@pytest.fixture(scope="module")
def synthesized() -> Any:
    context = pinned_context()
    staging = context["pipeline:environments"][ENV]
    context["pipeline:environments"] = {ENV: {**staging, "load_target": "redshift", "trigger": {"mwaa": SCHEDULE}}}
    return synth_app(context, nag=True)


@pytest.fixture(scope="module")
def template(synthesized: Any) -> dict[str, Any]:
    return synthesized.template(ENV, "Mwaa")


@pytest.fixture(scope="module")
def pipeline(synthesized: Any) -> Any:
    stage = next(s for s in synthesized.stages if s.stage_name == ENV)
    return stage.orchestration["mwaa"].pipeline


def _queues(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources(template, "AWS::SQS::Queue")


def test_the_upload_rule_feeds_an_encrypted_inbox_and_no_lambda_starts_runs(template: dict[str, Any]) -> None:
    assert not resources(template, "AWS::Lambda::EventSourceMapping")
    assert not [
        f for f in resources(template, "AWS::Lambda::Function").values() if f["Properties"].get("Handler") == "mwaa_trigger.handler"
    ]
    assert "airflow:InvokeRestApi" not in json.dumps(resources(template, "AWS::IAM::Policy"))
    [(inbox_id, inbox)] = [(lid, q) for lid, q in _queues(template).items() if lid.startswith("PipelineInbox")]
    assert inbox["Properties"]["KmsMasterKeyId"] and inbox["Properties"]["MessageRetentionPeriod"] == 14 * 86_400
    [rule] = [r for r in resources(template, "AWS::Events::Rule").values() if r["Properties"]["EventPattern"]["source"] == ["aws.s3"]]
    assert rule["Properties"]["EventPattern"]["detail"]["object"]["key"] == [{"wildcard": "incoming/mwaa/*.csv"}]
    [target] = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [inbox_id, "Arn"]}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 8
    assert "next scheduled run" in rule["Properties"]["Description"]
    # Only the rule may send to the inbox (a queue policy with the rule's ARN as its condition).
    [policy] = [p for p in resources(template, "AWS::SQS::QueuePolicy").values() if {"Ref": inbox_id} in p["Properties"]["Queues"]]
    assert "aws:SourceArn" in json.dumps(policy["Properties"]["PolicyDocument"])


def test_alarms_cover_failed_runs_and_the_undelivered_events(template: dict[str, Any]) -> None:
    alarms = [a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()]
    assert sorted(a.get("MetricName", "") for a in alarms) == ["ApproximateNumberOfMessagesVisible", "DAGDurationFailed"]
    assert len(_queues(template)) == 2, "the inbox and its rule's dead-letter queue"


def test_the_dag_configuration_carries_the_timetable_the_inbox_and_one_run_at_a_time(template: dict[str, Any], pipeline: Any) -> None:
    config = deployed(cdk.Stack.of(pipeline).resolve(pipeline.dag_config))
    assert config["schedule"] == {"cron": "30 6 * * MON-FRI", "time_zone": "Europe/Paris", "expression": SCHEDULE["schedule"]}
    assert config["inbox_queue_url"] == "<value>" and config["landing_prefix"] == "incoming/mwaa/"
    steps = describe_steps(config)
    assert [s.task_id for s in steps] == ["crawl", "clean", "find_curated_rows", "load"]  # the DAG puts CLAIM_TASK_ID first
    assert CLAIM_TASK_ID == "claim_uploads"
    script_args = steps[1].arguments["script_args"]
    assert script_args["--settle_uploads"] == "true" and script_args["--run_id"] == RUN_ID_TEMPLATE
    assert script_args["--source_uris"] == script_args["--source_versions"] == SETTLED_SOURCES
    outputs = template["Outputs"]
    assert outputs["DagSchedule"]["Value"] == "30 6 * * MON-FRI Europe/Paris"
    # pipeline-ops replay-dead-letters re-sends an undelivered upload event to the inbox.
    dead_letters = json.dumps(outputs["DeadLetterQueues"]["Value"])
    assert '\\"kind\\":\\"eventbridge\\"' in dead_letters and "target_url" in dead_letters and "PipelineInbox" in dead_letters


def test_the_dag_folder_ships_the_claims_module(template: dict[str, Any]) -> None:
    [deployment] = resources(template, "Custom::CDKBucketDeployment").values()
    assert len(deployment["Properties"]["SourceObjectKeys"]) == 5, (
        "the DAG folder, pipeline_plan, upload_ledger, workflow_inputs, the config"
    )


def test_the_execution_role_may_claim_and_the_clean_job_may_alert(template: dict[str, Any], pipeline: Any) -> None:
    [environment] = resources(template, "AWS::MWAA::Environment").values()
    statements = _statements(template, environment["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"][0])
    text = json.dumps(statements)
    [inbox_id] = [lid for lid in _queues(template) if lid.startswith("PipelineInbox")]
    [claim] = [s for s in statements if s["Resource"] == {"Fn::GetAtt": [inbox_id, "Arn"]}]
    assert sorted(claim["Action"]) == ["sqs:DeleteMessage", "sqs:ReceiveMessage"]
    [query] = [s for s in statements if s["Action"] == "dynamodb:Query"]
    assert json.dumps(query["Resource"]).endswith('/index/by_state"]]}')
    assert "airflow:InvokeRestApi" not in text
    [policy] = resources(template, "AWS::IAM::ManagedPolicy").values()
    actions = sorted(
        a
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )
    assert actions == ["kms:Decrypt", "kms:GenerateDataKey", "sns:Publish"]
    assert "CleanJobRole" in json.dumps(policy["Properties"]["Roles"])


def test_a_schedule_needs_the_ledger_and_a_cron_airflow_can_run(pipeline: Any) -> None:
    from pipeline_constructs.forms.mwaa import _airflow_schedule

    with pytest.raises(PipelinePropsError, match=r"schedule='rate\(1 hour\)' with ledger=None: .* pass ledger=UploadLedger"):
        _airflow_schedule(Schedule("rate(1 hour)"), None)
    with pytest.raises(PipelinePropsError, match=r"schedule='cron\(0 6 L \* \? \*\)' \(time_zone 'UTC'\): .*L, W and #"):
        _airflow_schedule(Schedule("cron(0 6 L * ? *)"), pipeline.ledger)
    with pytest.raises(PipelinePropsError, match=r"schedule='0 \* \* \* \*': give a pipeline_constructs.schedules.Schedule"):
        _airflow_schedule("0 * * * *", pipeline.ledger)  # type: ignore[arg-type]
    assert _airflow_schedule(Schedule("rate(15 minutes)", "America/New_York"), pipeline.ledger) == "*/15 * * * *"
    assert _airflow_schedule(None, None) is None


def test_the_mwaa_serverless_form_refuses_a_schedule_naming_the_setting() -> None:
    """Its scheduled runs cannot claim their uploads yet (see check_serverless_schedule): a schedule given to the
    construct fails, and a configured one fails before synth, naming the setting, instead of being ignored."""
    from pipeline_constructs.forms.mwaa_serverless import check_serverless_schedule
    from stacks.config import ConfigError

    check_serverless_schedule(None)
    with pytest.raises(PipelinePropsError, match=r"schedule='cron\(0 \* \* \* \? \*\)': .* remove trigger.mwaa_serverless"):
        check_serverless_schedule(Schedule("cron(0 * * * ? *)"))
    context = pinned_context()
    dev = context["pipeline:environments"]["dev"]
    context["pipeline:environments"] = {"dev": {**dev, "trigger": {"mwaa_serverless": {"schedule": "cron(0 * * * ? *)"}}}}
    with pytest.raises(ConfigError, match=r"^environments\.dev\.trigger\.mwaa_serverless\.schedule="):
        synth_app(context, nag=False)
