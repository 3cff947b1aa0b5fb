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


def test_failed_and_timed_out_runs_go_to_the_report_function_and_are_alarmed(template: dict[str, Any]) -> None:
    t = Template.from_json(template)
    rules = [
        r["Properties"]
        for r in resources(template, "AWS::Events::Rule").values()
        if r["Properties"]["EventPattern"].get("source") == ["aws.airflow-serverless"]
    ]
    failed = [r for r in rules if "Targets" in r]
    (rule,) = failed
    assert rule["EventPattern"]["detail-type"] == ["MWAA Serverless Workflow Run Failed", "MWAA Serverless Workflow Run Timeout"]
    (workflow_arn,) = rule["EventPattern"]["resources"]
    assert workflow_arn["Fn::GetAtt"][1] == "WorkflowArn"  # this workflow's runs only
    (target,) = rule["Targets"]
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 8
    function_id = target["Arn"]["Fn::GetAtt"][0]
    function = template["Resources"][function_id]["Properties"]
    assert function["Handler"] == "mwaa_serverless.report_failure"
    assert set(function["Environment"]["Variables"]) == {"WORKFLOW_ARN", "TOPIC_ARN", "DATASET"}
    report_actions = {
        a
        for s in statements_of(template, function["Role"]["Fn::GetAtt"][0])
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    assert {
        "airflow-serverless:GetWorkflowRun",
        "airflow-serverless:ListTaskInstances",
        "airflow-serverless:GetTaskInstance",
        "sns:Publish",
    } <= report_actions
    # Alarms: runs failed (MatchedEvents of the failure rule), unreported failures, and the trigger's two dead-letter queues.
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 4
    t.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": "MatchedEvents", "Namespace": "AWS/Events", "Threshold": 1})
    assert all(a["Properties"]["AlarmActions"] for a in alarms.values())
    (success,) = [r for r in rules if "Targets" not in r]
    assert success["EventPattern"]["detail-type"] == ["MWAA Serverless Workflow Run Succeeded"]


def test_deployed_definition_is_the_yaml_the_library_writes(synthesized: Any) -> None:
    stage = synthesized.app.node.find_child(ENV)
    pipeline = stage.node.find_child(STACK).node.find_child("Pipeline")
    document = yaml.safe_load(pipeline.definition_yaml)
    assert document == workflow_definition(pipeline.workflow_config)
    (dag,) = document.values()
    assert list(dag["tasks"]) == ["crawl", "clean", "find_curated_rows", "load"]
    assert dag["tasks"]["clean"]["execution_timeout"] == {"__type__": "datetime.timedelta", "seconds": 3600}
    assert dag["params"] == {"bucket": "", "key": "", "version_id": ""}
    assert "dag_run" not in pipeline.definition_yaml


def test_steps_outside_the_service_limits_are_refused_naming_the_setting(synthesized: Any) -> None:
    stage = synthesized.app.node.find_child(ENV)
    config = stage.node.find_child(STACK).node.find_child("Pipeline").workflow_config
    with pytest.raises(WorkflowLimitError, match=r"clean\.execution_timeout_seconds=4500"):
        workflow_definition({**config, "timeouts_seconds": {**config["timeouts_seconds"], "clean": 4500}})
    with pytest.raises(WorkflowLimitError, match=r"crawl\.retries=4"):
        workflow_definition({**config, "retries": 4})
