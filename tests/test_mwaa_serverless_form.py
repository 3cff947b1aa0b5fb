"""The MWAA Serverless form (MwaaServerlessPipeline) as synthesized in the dev environment (with cdk-nag: an open
finding fails the session's synth): the workflow and its definition bucket, the role's scope, the log group, the
upload trigger and the failure path."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from aws_cdk.assertions import Match, Template

from pipeline_constructs.runtime.mwaa_serverless.workflow_yaml import WorkflowLimitError, workflow_definition

ENV = "dev"
STACK = "MwaaServerless"


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


def one(template: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    (item,) = resources(template, kind).items()
    return item


@pytest.fixture(scope="module")
def template(templates: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return templates[(ENV, STACK)]


def statements_of(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    found = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found


def test_workflow_reads_its_yaml_from_a_versioned_encrypted_logged_ssl_only_bucket(template: dict[str, Any]) -> None:
    _, workflow = one(template, "AWS::MWAAServerless::Workflow")
    props = workflow["Properties"]
    bucket_id = props["DefinitionS3Location"]["Bucket"]["Ref"]
    assert props["DefinitionS3Location"]["ObjectKey"] == "workflow/pipeline.yaml"
    assert props["Name"] == "retail-dev-pipeline"
    assert props["EncryptionConfiguration"]["Type"] == "CUSTOMER_MANAGED_KEY"
    bucket = template["Resources"][bucket_id]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == props["EncryptionConfiguration"]["KmsKeyId"]
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "mwaa-serverless-definitions/"
    assert bucket["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    ssl = [
        s
        for p in resources(template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in ssl)
    # The definition is deployed before the workflow snapshots it.
    deployment_ids = [lid for lid, r in template["Resources"].items() if r["Type"] == "Custom::CDKBucketDeployment"]
    assert set(deployment_ids) <= set(workflow["DependsOn"])


def test_log_group_is_under_the_pipeline_key_with_retention(template: dict[str, Any]) -> None:
    _, workflow = one(template, "AWS::MWAAServerless::Workflow")
    group_id = workflow["Properties"]["LoggingConfiguration"]["LogGroupName"]["Ref"]
    group = template["Resources"][group_id]["Properties"]
    assert group["KmsKeyId"] == workflow["Properties"]["EncryptionConfiguration"]["KmsKeyId"]
    assert group["RetentionInDays"] == 14


def test_role_is_scoped_to_the_crawler_clean_job_load_target_topic_and_key(template: dict[str, Any]) -> None:
    _, workflow = one(template, "AWS::MWAAServerless::Workflow")
    role_id = workflow["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    role = template["Resources"][role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "airflow-serverless.amazonaws.com"}
    statements = statements_of(template, role_id)
    by_action: dict[str, list[Any]] = {}
    for s in statements:
        assert s["Effect"] == "Allow"
        for action in s["Action"] if isinstance(s["Action"], list) else [s["Action"]]:
            by_action.setdefault(action, []).append(s["Resource"])
    text = json.dumps(by_action)
    assert "crawler/" in json.dumps(by_action["glue:StartCrawler"]) and "job/" in json.dumps(by_action["glue:StartJobRun"])
    assert by_action["glue:GetCrawlerMetrics"] == ["*"]  # no resource-level permission (acknowledged with its action)
    # The Athena target's grant_load attaches its load policy (Athena, the catalog, the curated prefixes) as a managed policy.
    (load_policy,) = role["ManagedPolicyArns"]
    assert "AthenaLoadPolicy" in json.dumps(load_policy) or "Load" in json.dumps(load_policy), load_policy
    assert "sns:Publish" in by_action and "kms:Decrypt" in by_action
    wildcard = sorted(a for a, rs in by_action.items() if "*" in rs)
    assert wildcard == ["glue:GetCrawlerMetrics"], wildcard
    assert "airflow-serverless:StartWorkflowRun" not in text  # the workflow cannot start itself


def test_uploads_under_the_form_prefix_reach_a_queue_with_an_alarmed_dead_letter_queue(template: dict[str, Any]) -> None:
    t = Template.from_json(template)
    t.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": Match.object_like(
                {
                    "source": ["aws.s3"],
                    "detail": Match.object_like({"object": Match.object_like({"key": [{"wildcard": "incoming/mwaa_serverless/*.csv"}]})}),
                }
            ),
            "Targets": [Match.object_like({"Arn": Match.any_value(), "DeadLetterConfig": Match.any_value()})],
        },
    )
    t.has_resource_properties("AWS::SQS::Queue", {"RedrivePolicy": Match.object_like({"maxReceiveCount": 5})})
    t.has_resource_properties("AWS::Lambda::EventSourceMapping", {"FunctionResponseTypes": ["ReportBatchItemFailures"], "BatchSize": 5})
    t.has_resource_properties("AWS::Lambda::Function", {"Handler": "mwaa_serverless.start", "Runtime": "python3.12"})
    # StartWorkflowRun on this workflow only.
    t.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        {
                            "Action": "airflow-serverless:StartWorkflowRun",
                            "Effect": "Allow",
                            "Resource": {"Fn::GetAtt": [Match.any_value(), "WorkflowArn"]},
                        }
                    ]
                )
            }
        },
    )


def _serverless_rules(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The rules on the service's events, by the detail types they match."""
    return {
        ",".join(r["Properties"]["EventPattern"]["detail-type"]): r["Properties"]
        for r in resources(template, "AWS::Events::Rule").values()
        if r["Properties"]["EventPattern"].get("source") == ["aws.airflow-serverless"]
    }


def _actions(template: dict[str, Any], role_id: str) -> set[str]:
    return {a for s in statements_of(template, role_id) for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}


def _target_function(template: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    (target,) = rule["Targets"]
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 8
    (workflow_arn,) = rule["EventPattern"]["resources"]
    assert workflow_arn["Fn::GetAtt"][1] == "WorkflowArn"  # this workflow's runs only
    return dict(template["Resources"][target["Arn"]["Fn::GetAtt"][0]]["Properties"])


LEDGER_WRITES = {"dynamodb:UpdateItem", "dynamodb:GetItem"}
RUN_LOOKUPS = {"airflow-serverless:GetWorkflowRun", "airflow-serverless:ListTaskInstances", "airflow-serverless:GetTaskInstance"}
METRICS_VARIABLES = ("METRICS_NAMESPACE", "DATASET", "WORKFLOW_NAME")
"""Where the event functions count runs (embedded metric format: no cloudwatch:PutMetricData permission)."""


def test_failed_timed_out_and_stopped_runs_go_to_the_report_function_and_are_alarmed(template: dict[str, Any]) -> None:
    t = Template.from_json(template)
    rules = _serverless_rules(template)
    rule = rules["MWAA Serverless Workflow Run Failed,MWAA Serverless Workflow Run Timeout,MWAA Serverless Workflow Run Stopped"]
    function = _target_function(template, rule)
    assert function["Handler"] == "mwaa_serverless.report_failure"
    assert set(function["Environment"]["Variables"]) == {"WORKFLOW_ARN", "TOPIC_ARN", *METRICS_VARIABLES, "LEDGER_TABLE", "LEDGER_TTL_DAYS"}
    assert RUN_LOOKUPS | LEDGER_WRITES | {"sns:Publish"} <= _actions(template, function["Role"]["Fn::GetAtt"][0])
    # Alarms: runs failed (the RunsFailed lines the report function prints: test_mwaa_serverless_metrics.py),
    # unreported failures, unrecorded progress, and the trigger's two dead-letter queues.
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 5
    t.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "RunsFailed",
            "Namespace": "RetailPipeline",
            "Dimensions": Match.array_equals(
                [{"Name": "Dataset", "Value": "retail_sales"}, {"Name": "WorkflowName", "Value": "retail-dev-pipeline"}]
            ),
            "Threshold": 1,
        },
    )
    assert all(a["Properties"]["AlarmActions"] for a in alarms.values())


def test_task_running_and_run_succeeded_events_reach_the_ledger_through_one_function(template: dict[str, Any]) -> None:
    rules = _serverless_rules(template)
    success = _target_function(template, rules["MWAA Serverless Workflow Run Succeeded"])
    task = _target_function(template, rules["MWAA Serverless Task Running"])
    assert success == task and success["Handler"] == "mwaa_serverless.record_progress"
    assert set(success["Environment"]["Variables"]) == {"WORKFLOW_ARN", *METRICS_VARIABLES, "LEDGER_TABLE", "LEDGER_TTL_DAYS"}
    actions = _actions(template, success["Role"]["Fn::GetAtt"][0])
    assert RUN_LOOKUPS | LEDGER_WRITES <= actions and "sns:Publish" not in actions
    assert not {action for action in actions if action.startswith("cloudwatch:")}  # EMF: the log is the metric
    # Its dead-letter queue is published for pipeline-ops, as a Lambda's (replayed by invoking the function again).
    queues = json.dumps(template["Outputs"]["DeadLetterQueues"])
    assert queues.count('\\"kind\\":\\"lambda\\"') == 2, queues
    assert template["Outputs"]["WritesLedger"]["Value"] == "true"


def test_the_trigger_takes_the_upload_in_the_ledger_before_it_starts_the_run(template: dict[str, Any]) -> None:
    functions = resources(template, "AWS::Lambda::Function")
    (trigger,) = [f["Properties"] for f in functions.values() if f["Properties"].get("Handler") == "mwaa_serverless.start"]
    assert {"WORKFLOW_ARN", "LEDGER_TABLE", "LEDGER_TTL_DAYS"} == set(trigger["Environment"]["Variables"])
    actions = _actions(template, trigger["Role"]["Fn::GetAtt"][0])
    assert LEDGER_WRITES | {"airflow-serverless:StartWorkflowRun"} <= actions
    # Every Lambda of the form has the ledger modules beside its handler (one asset, staged).
    assert (
        len({json.dumps(f["Properties"]["Code"]) for f in functions.values() if "mwaa_serverless." in f["Properties"].get("Handler", "")})
        == 1
    )


def test_the_lambda_asset_holds_the_handlers_and_the_ledger_modules(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    from pipeline_constructs.forms.mwaa_serverless import stage_lambda_code

    folder = stage_lambda_code(tmp_path)
    assert {"mwaa_serverless.py", "serverless_runs.py", "upload_events.py", "upload_ledger.py", "pipeline_plan.py"} <= {
        p.name for p in folder.iterdir()
    }
    # Imported the way Lambda imports it: the folder alone, without the library.
    script = (
        "import sys; sys.modules['pipeline_constructs'] = None; sys.path.insert(0, sys.argv[1]);"
        "import mwaa_serverless as m; print(m.start.__name__, m.record_progress.__name__, m.report_failure.__name__, m.STEPS)"
    )
    env = {**os.environ, "AWS_DEFAULT_REGION": "eu-west-1"}
    result = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["start", "record_progress", "report_failure", "('crawl',", "'clean',", "'load')"]


def test_deployed_definition_is_the_yaml_the_library_writes(synthesized: Any) -> None:
    stage = synthesized.app.node.find_child(ENV)
    pipeline = stage.node.find_child(STACK).node.find_child("Pipeline")
    document = yaml.safe_load(pipeline.definition_yaml)
    assert document == workflow_definition(pipeline.workflow_config)
    (dag,) = document.values()
    assert list(dag["tasks"]) == ["crawl", "clean", "find_curated_rows", "load"]
    assert dag["tasks"]["clean"]["execution_timeout"] == {"__type__": "datetime.timedelta", "seconds": 3600}
    assert dag["params"] == {"bucket": "", "key": "", "version_id": "", "run_id": ""}
    assert "dag_run" not in pipeline.definition_yaml
    # The clean job writes its counts into the ledger record of the run's upload, under this form's name.
    script_args = dag["tasks"]["clean"]["script_args"]
    assert script_args["--run_id"].startswith("{{ (params.run_id or ti.run_id)")
    assert script_args["--pipeline_form"] == "mwaa_serverless"
    assert script_args["--source_versions"] == "{{ [params.version_id or 'null'] | tojson }}"
    assert set(script_args) == {"--source_uris", "--run_id", "--ledger_table", "--ledger_ttl_days", "--pipeline_form", "--source_versions"}


def test_steps_outside_the_service_limits_are_refused_naming_the_setting(synthesized: Any) -> None:
    stage = synthesized.app.node.find_child(ENV)
    config = stage.node.find_child(STACK).node.find_child("Pipeline").workflow_config
    with pytest.raises(WorkflowLimitError, match=r"clean\.execution_timeout_seconds=4500"):
        workflow_definition({**config, "timeouts_seconds": {**config["timeouts_seconds"], "clean": 4500}})
    with pytest.raises(WorkflowLimitError, match=r"crawl\.retries=4"):
        workflow_definition({**config, "retries": 4})
