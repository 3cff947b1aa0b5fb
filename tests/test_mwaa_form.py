"""The MWAA form (MwaaPipeline) as synthesized in staging (beside Step Functions, loading Athena and Redshift in parallel).

No cdk-nag pack covers AWS::MWAA::Environment, so what matters for it is asserted here: the private webserver, the
five log types, the key (and its policy for CloudWatch Logs), the DAG bucket's settings, the execution role's
scope, the trigger's IAM, the network endpoints, and the DAG configuration the construct deploys.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from pipeline_constructs.forms.mwaa import ENVIRONMENT_CLASSES, check_mwaa_sizing
from pipeline_constructs.network import mwaa_interface_endpoints
from pipeline_constructs.runtime.mwaa.pipeline_steps import (
    RUN_ID_MARKER,
    RUN_ID_TEMPLATE,
    SOURCE_VERSIONS_TEMPLATE,
    describe_steps,
    load_task_id,
)
from pipeline_constructs.validation import PipelinePropsError
from stacks.config import ConfigError, parse_environment
from stacks.network_stack import NetworkStack
from tests.cdk_app import cdk_context

ENV = "staging"
TARGETS = list(parse_environment(ENV, cdk_context()["pipeline:environments"][ENV]).load_targets)
"""Staging's load targets as cdk.json gives them (both, loaded in parallel)."""
LOAD_OPERATORS = {"athena": "AthenaOperator", "redshift": "RedshiftDataOperator"}


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


@pytest.fixture(scope="module")
def template(templates: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return templates[(ENV, "Mwaa")]


@pytest.fixture(scope="module")
def environment(template: dict[str, Any]) -> dict[str, Any]:
    [env] = resources(template, "AWS::MWAA::Environment").values()
    return env["Properties"]


def test_environment_is_private_versioned_and_logs_everything(environment: dict[str, Any]) -> None:
    assert environment["AirflowVersion"] == "3.3.1"  # always written: MWAA's default drifts
    assert environment["WebserverAccessMode"] == "PRIVATE_ONLY"
    assert environment["EnvironmentClass"] == "mw1.small"
    assert (environment["MinWorkers"], environment["MaxWorkers"]) == (1, 2)
    assert environment["DagS3Path"] == "dags"
    assert "RequirementsS3Path" not in environment and "PluginsS3Path" not in environment
    logging = environment["LoggingConfiguration"]
    assert sorted(logging) == ["DagProcessingLogs", "SchedulerLogs", "TaskLogs", "WebserverLogs", "WorkerLogs"]
    for module in logging.values():
        assert module == {"Enabled": True, "LogLevel": "INFO"}
    assert len(environment["NetworkConfiguration"]["SubnetIds"]) == 2


def test_environment_key_lets_cloudwatch_logs_use_it_for_the_environment_log_groups(
    template: dict[str, Any], environment: dict[str, Any]
) -> None:
    key_id = environment["KmsKey"]["Fn::GetAtt"][0]
    key = template["Resources"][key_id]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    [logs_statement] = [s for s in key["Properties"]["KeyPolicy"]["Statement"] if s.get("Sid") == "AllowMwaaLogGroups"]
    assert logs_statement["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    assert "airflow-retail-staging-*" in json.dumps(logs_statement["Condition"])


def test_dag_bucket_is_versioned_private_ssl_only_encrypted_and_access_logged(
    template: dict[str, Any], environment: dict[str, Any]
) -> None:
    bucket_id = environment["SourceBucketArn"]["Fn::GetAtt"][0]
    bucket = template["Resources"][bucket_id]["Properties"]
    key_id = environment["KmsKey"]["Fn::GetAtt"][0]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    [encryption] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]}}
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "mwaa-dags/"
    [policy] = [p for p in resources(template, "AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": bucket_id}]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    )
    [deployment] = resources(template, "Custom::CDKBucketDeployment").values()
    assert deployment["Properties"]["DestinationBucketKeyPrefix"] == "dags/"


def _statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    out = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


def test_execution_role_is_mwaa_minimum_plus_the_pipeline(template: dict[str, Any], environment: dict[str, Any]) -> None:
    role_id = environment["ExecutionRoleArn"]["Fn::GetAtt"][0]
    role = template["Resources"][role_id]["Properties"]
    principals = role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
    assert sorted(principals) == ["airflow-env.amazonaws.com", "airflow.amazonaws.com"]
    statements = _statements(template, role_id)
    # Wildcard resources only where the API has no resource-level permission.
    star_actions = sorted(
        a for s in statements if s["Resource"] == "*" for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )
    assert star_actions == [
        "cloudwatch:PutMetricData",
        "glue:GetCrawlerMetrics",
        "logs:DescribeLogGroups",
        "s3:GetAccountPublicAccessBlock",
    ]
    text = json.dumps(statements)
    for needed in ("airflow:PublishMetrics", "glue:StartCrawler", "glue:StartJobRun", "glue:GetJobRun", "sns:Publish", "airflow-celery-*"):
        assert needed in text, needed
    assert "glue:CreateJob" not in text and "glue:UpdateCrawler" not in text
    # One managed policy per load target (Athena's and the Redshift Data API's), each from the stateful stack.
    policies = [json.dumps(arn) for arn in role["ManagedPolicyArns"]]
    assert len(policies) == len(TARGETS)
    for target in TARGETS:
        assert sum(f"PublishOutputRef{target.capitalize()}" in p for p in policies) == 1, (target, policies)


def test_execution_role_writes_the_upload_ledger_and_nothing_else_of_it(template: dict[str, Any], environment: dict[str, Any]) -> None:
    """The DAG's tasks take, step and finish uploads (UpdateItem, GetItem) in the stateful stack's ledger, under its key."""
    statements = _statements(template, environment["ExecutionRoleArn"]["Fn::GetAtt"][0])
    ledger = [s for s in statements if "dynamodb:" in json.dumps(s["Action"])]
    [(actions, resource)] = [(sorted(s["Action"]), s["Resource"]) for s in ledger]
    assert actions == ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    assert (
        resource["Fn::GetStackOutput"]["StackName"] == "staging-Stateful" and "LedgerTable" in resource["Fn::GetStackOutput"]["OutputName"]
    )
    [key] = [s for s in statements if "StorageKey" in json.dumps(s["Resource"])]
    assert sorted(key["Action"]) == ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"]


def test_trigger_lambda_may_invoke_the_rest_api_as_the_user_role_only(template: dict[str, Any]) -> None:
    [function] = [
        f for f in resources(template, "AWS::Lambda::Function").values() if f["Properties"].get("Handler") == "mwaa_trigger.handler"
    ]
    props = function["Properties"]
    assert props["Runtime"] == "python3.12"
    assert props["Environment"]["Variables"] == {"MWAA_ENVIRONMENT_NAME": "retail-staging", "DAG_ID": "retail_sales_pipeline"}
    assert len(props["VpcConfig"]["SubnetIds"]) >= 2
    role_id = props["Role"]["Fn::GetAtt"][0]
    [invoke] = [s for s in _statements(template, role_id) if s["Action"] == "airflow:InvokeRestApi"]
    assert json.dumps(invoke["Resource"]).endswith(':role/retail-staging/User"]]}')
    [mapping] = resources(template, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_each_form_listens_on_its_own_prefix(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    prefixes = {}
    for stack in ("Mwaa", "StepFunctions"):
        [rule] = [
            r
            for r in resources(templates[(ENV, stack)], "AWS::Events::Rule").values()
            if r["Properties"]["EventPattern"]["source"] == ["aws.s3"]
        ]
        prefixes[stack] = rule["Properties"]["EventPattern"]["detail"]["object"]["key"]
    assert prefixes == {"Mwaa": [{"wildcard": "incoming/mwaa/*.csv"}], "StepFunctions": [{"wildcard": "incoming/step_functions/*.csv"}]}


def test_alarms_cover_failed_runs_and_both_dead_letter_queues(template: dict[str, Any]) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 3
    [runs] = [a["Properties"] for a in alarms.values() if a["Properties"].get("Namespace") == "AmazonMWAA"]
    assert runs["MetricName"] == "DAGDurationFailed" and runs["Statistic"] == "SampleCount"
    assert sorted((d["Name"], d["Value"]) for d in runs["Dimensions"]) == [
        ("DAG", "retail_sales_pipeline"),
        ("Environment", "retail-staging"),
        ("Function", "DAG"),
    ]
    Template.from_json(template).resource_count_is("AWS::SQS::Queue", 3)


def test_network_has_the_endpoints_mwaa_and_the_dag_need_without_nat(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    endpoints = resources(templates[(ENV, "Network")], "AWS::EC2::VPCEndpoint")
    services = sorted(json.dumps(e["Properties"]["ServiceName"]).split(".amazonaws.com.")[-1].strip('"]}') for e in endpoints.values())
    names = [s.rsplit(".", 1)[-1] if "com.amazonaws" in s else s for s in services]
    assert len(endpoints) == 2 + len(mwaa_interface_endpoints(TARGETS))  # the S3 and DynamoDB gateways
    needed = {"sts", "sqs", "logs", "kms", "glue", "sns", "dynamodb"} | {
        {"athena": "athena", "redshift": "redshift-data"}[t] for t in TARGETS
    }
    assert needed <= {n.split(".")[-1] for n in names} | set(names)


def test_no_interface_endpoints_with_nat() -> None:
    config = parse_environment(
        "staging",
        {
            "region": "eu-west-1",
            "forms": ["mwaa"],
            "alarm_emails": ["a@example.com"],
            "nat_gateways": 1,
            "availability_zones": ["eu-west-1a", "eu-west-1b"],
        },
    )
    app = cdk.App()
    stack = NetworkStack(app, "Net", config=config, env=cdk.Environment(region="eu-west-1"))
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::EC2::VPCEndpoint", 2)  # the S3 and DynamoDB gateways only
    template.resource_count_is("AWS::EC2::NatGateway", 1)


def deployed(value: Any) -> Any:
    """A resolved value as the deployed JSON holds it: Fn::Join joined, other intrinsics (deploy-time values) as '<value>'."""
    if isinstance(value, list):
        return [deployed(v) for v in value]
    if isinstance(value, dict):
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(deployed(p) for p in parts)
        if len(value) == 1 and next(iter(value)).startswith(("Fn::", "Ref")):
            return "<value>"
        return {k: deployed(v) for k, v in value.items()}
    return value


def test_deployed_dag_config_drives_the_step_description(synthesized: Any) -> None:
    """The construct's DAG configuration, resolved as CloudFormation would see it, is what the DAG's steps read."""
    stage = next(s for s in synthesized.stages if s.stage_name == ENV)
    pipeline = stage.orchestration["mwaa"].pipeline
    config = deployed(cdk.Stack.of(pipeline).resolve(pipeline.dag_config))
    steps = describe_steps(config)
    loads = [load_task_id(t) for t in TARGETS] if len(TARGETS) > 1 else ["load"]
    assert [s.task_id for s in steps] == ["crawl", "clean", "find_curated_rows", *loads]
    assert steps[0].operator.endswith("GlueCrawlerRunOperator") and steps[0].arguments["fail_on_already_running"] is False
    assert steps[1].arguments["script_args"]["--run_id"] == RUN_ID_TEMPLATE
    # The ledger's table and retention reach the DAG and its clean job (the Step Functions form's arguments).
    assert config["ledger_table"] == "<value>" and config["ledger_ttl_days"] == pipeline.ledger.retention_days
    assert {name: value for name, value in steps[1].arguments["script_args"].items() if name not in ("--source_uris", "--run_id")} == {
        "--ledger_table": "<value>",
        "--ledger_ttl_days": str(pipeline.ledger.retention_days),
        "--pipeline_form": "mwaa",
        "--source_versions": SOURCE_VERSIONS_TEMPLATE,
    }
    for target, step in zip(TARGETS, steps[3:], strict=True):
        assert step.operator.endswith(LOAD_OPERATORS[target]), (target, step.operator)
        statements = step.arguments["sql"] if target == "redshift" else [step.arguments["query"]]
        assert isinstance(statements, list) and statements, target
        assert any(RUN_ID_TEMPLATE in sql for sql in statements) and not any(RUN_ID_MARKER in sql for sql in statements), target
    assert config["airflow_version"] == "3.3.1" and config["max_active_runs"] == 4
    assert all(step.retries == 3 and step.execution_timeout_seconds > 0 for step in steps)


@pytest.mark.parametrize(
    "args, message",
    [
        (("mw1.tiny", 1, 1, None), r"environment_class='mw1.tiny'"),
        (("mw1.micro", 1, 2, None), r"max_workers=2: mw1.micro runs exactly 1 worker"),
        (("mw1.small", 3, 2, None), r"min_workers=3: must not exceed max_workers=2"),
        (("mw1.small", 1, 26, None), r"max_workers=26"),
        (("mw1.small", 1, 2, 1), r"schedulers=1: mw1.small runs 2 to 5"),
    ],
)
def test_sizing_errors_name_the_argument_and_value(args: tuple, message: str) -> None:
    with pytest.raises(PipelinePropsError, match=message):
        check_mwaa_sizing(*args)
    assert "mw1.2xlarge" in ENVIRONMENT_CLASSES


@pytest.mark.parametrize(
    "env, settings, message",
    [
        ("prod", {"mwaa_webserver_access": "public"}, r"environments\.prod\.mwaa_webserver_access='public': prod keeps"),
        ("dev", {"mwaa_airflow_version": "2.10.3"}, r"environments\.dev\.mwaa_airflow_version='2.10.3'"),
        ("dev", {"mwaa_environment_class": "mw1.micro", "mwaa_max_workers": 3}, r"environments\.dev\.mwaa_max_workers=3"),
        ("dev", {"mwaa_min_workers": 4, "mwaa_max_workers": 2}, r"environments\.dev\.mwaa_min_workers=4"),
        ("dev", {"mwaa_schedulers": 9}, r"environments\.dev\.mwaa_schedulers=9"),
        ("dev", {"mwaa_webserver_access": "open"}, r"environments\.dev\.mwaa_webserver_access='open'"),
    ],
)
def test_mwaa_settings_are_validated_before_synth(env: str, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_environment(env, {"region": "eu-west-1", "forms": ["mwaa"], "alarm_emails": ["a@example.com"], **settings})


def test_mwaa_settings_defaults_and_public_outside_prod() -> None:
    config = parse_environment("dev", {"region": "eu-west-1", "alarm_emails": ["a@example.com"], "mwaa_webserver_access": "public"})
    assert config.mwaa.webserver_access == "public" and config.mwaa.airflow_version == "3.3.1"
    micro = parse_environment("dev", {"region": "eu-west-1", "alarm_emails": ["a@example.com"], "mwaa_environment_class": "mw1.micro"})
    assert (micro.mwaa.min_workers, micro.mwaa.max_workers) == (1, 1)


def test_every_wildcard_statement_of_the_form_is_declared_with_its_actions(synthesized: Any, template: dict[str, Any]) -> None:
    """Each policy statement on '*' in the MWAA stack holds only actions a reviewed declaration names."""
    from pipeline_constructs.acknowledgements import reviewed_findings

    declared = {a for d in reviewed_findings(synthesized.app) if d.rule == "AwsSolutions-IAM5" and "/Mwaa/" in d.path for a in d.actions}
    for policy in resources(template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Resource"] == "*":
                actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
                assert set(actions) <= declared, actions
