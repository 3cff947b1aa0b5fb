"""Fine-grained template assertions for the shared constructs, built in a stack of their own, and their validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_glue as glue, aws_iam as iam
from aws_cdk.assertions import Match, Template

from pipeline_constructs import AthenaTarget, CleanJob, DatasetContract, PipelineAlerting, PipelineCatalog, PipelineStorage
from pipeline_constructs.validation import PipelinePropsError
from tests.cdk_app import cdk_context

CONTRACT = DatasetContract.from_file(Path(__file__).resolve().parent.parent / "contracts" / "retail_sales.yaml")


def feature_flags() -> dict[str, Any]:
    return {k: v for k, v in cdk_context().items() if not k.startswith("pipeline:")}


def new_stack() -> cdk.Stack:
    return cdk.Stack(cdk.App(context=feature_flags()), "Test", env=cdk.Environment(region="eu-west-1"))


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    stack = new_stack()
    storage = PipelineStorage(stack, "Storage")
    alerting = PipelineAlerting(stack, "Alerting", emails=["ops@example.com"])
    catalog = PipelineCatalog(stack, "Catalog", storage=storage, database_name="sales_db")
    job = CleanJob(stack, "Clean", storage=storage, catalog=catalog, contract=CONTRACT, worker_type=glue.WorkerType.G_2X, worker_count=3)
    target = AthenaTarget(stack, "Athena", storage=storage, catalog=catalog, clean_job=job, bytes_scanned_cutoff=1024**3)
    return {"template": Template.from_stack(stack), "storage": storage, "job": job, "target": target, "alerting": alerting}


def test_data_buckets_are_private_encrypted_versioned_and_tls_only(built: dict[str, Any]) -> None:
    template: Template = built["template"]
    template.resource_count_is("AWS::S3::Bucket", 5)  # landing, curated, quarantine, access logs, Athena results
    template.all_resources_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "LifecycleConfiguration": Match.any_value(),
        },
    )
    kms_buckets = template.find_resources(
        "AWS::S3::Bucket",
        {
            "Properties": {
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        Match.object_like(
                            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": Match.any_value()}}
                        )
                    ]
                }
            }
        },
    )
    assert len(kms_buckets) == 4  # all but the access-log bucket, which S3 requires to use S3-managed keys
    policies = template.find_resources("AWS::S3::BucketPolicy")
    denies_http = [
        p
        for p in policies.values()
        if any(
            s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        )
    ]
    assert len(denies_http) == 5


def test_landing_bucket_sends_events_to_eventbridge(built: dict[str, Any]) -> None:
    built["template"].has_resource_properties(
        "Custom::S3BucketNotifications", {"NotificationConfiguration": {"EventBridgeConfiguration": {}}}
    )


def test_stateful_resources_are_retained_by_default(built: dict[str, Any]) -> None:
    template: Template = built["template"]
    for resource in [*template.find_resources("AWS::S3::Bucket").values(), *template.find_resources("AWS::KMS::Key").values()]:
        assert resource["DeletionPolicy"] == "Retain"


def test_keys_rotate(built: dict[str, Any]) -> None:
    built["template"].all_resources_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_alert_topic_uses_a_customer_key_that_cloudwatch_and_eventbridge_may_use(built: dict[str, Any]) -> None:
    template: Template = built["template"]
    template.has_resource_properties(
        "AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [Match.string_like_regexp("AlertingKey"), "Arn"]}}
    )
    template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": ["kms:Decrypt", "kms:GenerateDataKey*"]}
                        ),
                        Match.object_like(
                            {"Principal": {"Service": "events.amazonaws.com"}, "Action": ["kms:Decrypt", "kms:GenerateDataKey*"]}
                        ),
                    ]
                )
            }
        },
    )
    template.has_resource_properties(
        "AWS::SNS::Subscription",
        {"Protocol": "email", "Endpoint": "ops@example.com", "RedrivePolicy": {"deadLetterTargetArn": Match.any_value()}},
    )


def test_glue_security_configuration_encrypts_s3_logs_and_bookmarks(built: dict[str, Any]) -> None:
    built["template"].has_resource_properties(
        "AWS::Glue::SecurityConfiguration",
        {
            "EncryptionConfiguration": {
                "S3Encryptions": [Match.object_like({"S3EncryptionMode": "SSE-KMS"})],
                "CloudWatchEncryption": Match.object_like({"CloudWatchEncryptionMode": "SSE-KMS"}),
                "JobBookmarksEncryption": Match.object_like({"JobBookmarksEncryptionMode": "CSE-KMS"}),
            }
        },
    )


def test_raw_crawler_logs_schema_changes_instead_of_applying_them(built: dict[str, Any]) -> None:
    built["template"].has_resource_properties(
        "AWS::Glue::Crawler",
        {
            "DatabaseName": "sales_db",
            "SchemaChangePolicy": {"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"},
            "CrawlerSecurityConfiguration": Match.any_value(),
            "Targets": {"S3Targets": [Match.object_like({"Path": {"Fn::Join": ["", ["s3://", Match.any_value(), "/incoming/"]]}})]},
        },
    )


def test_clean_job_is_glue_5_with_its_contract_security_and_arguments(built: dict[str, Any]) -> None:
    built["template"].has_resource_properties(
        "AWS::Glue::Job",
        {
            "GlueVersion": "5.0",
            "WorkerType": "G.2X",
            "NumberOfWorkers": 3,
            "MaxRetries": 0,
            "SecurityConfiguration": Match.any_value(),
            "Command": {"Name": "glueetl", "PythonVersion": "3", "ScriptLocation": Match.any_value()},
            "DefaultArguments": Match.object_like(
                {
                    "--contract_path": "contract.json",
                    "--dataset": "retail_sales",
                    "--max_quarantine_ratio": "0.05",
                    "--metrics_namespace": "DataPipeline/retail_sales",
                    "--extra-py-files": Match.any_value(),
                    "--extra-files": Match.any_value(),
                }
            ),
        },
    )


def test_clean_job_role_may_publish_metrics_only_to_its_namespace(built: dict[str, Any]) -> None:
    built["template"].has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "cloudwatch:PutMetricData",
                                "Condition": {"StringEquals": {"cloudwatch:namespace": "DataPipeline/retail_sales"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_athena_workgroup_enforces_encrypted_results_and_a_scan_cutoff(built: dict[str, Any]) -> None:
    built["template"].has_resource_properties(
        "AWS::Athena::WorkGroup",
        {
            "WorkGroupConfiguration": Match.object_like(
                {
                    "EnforceWorkGroupConfiguration": True,
                    "BytesScannedCutoffPerQuery": 1024**3,
                    "ResultConfiguration": {
                        "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": Match.any_value()},
                        "OutputLocation": Match.any_value(),
                    },
                }
            )
        },
    )


def test_curated_table_is_iceberg_with_the_contract_columns(built: dict[str, Any]) -> None:
    tables = built["template"].find_resources("AWS::Glue::Table", {"Properties": {"OpenTableFormatInput": Match.any_value()}})
    (table,) = tables.values()
    iceberg = table["Properties"]["OpenTableFormatInput"]["IcebergInput"]
    fields = iceberg["IcebergTableInput"]["Schema"]["Fields"]
    names = [f["Name"] for f in fields]
    assert names == [n for n, _ in CONTRACT.output_columns()] + [CONTRACT.partition_column()[0]]
    assert iceberg["IcebergTableInput"]["PartitionSpec"]["Fields"][0]["Transform"] == "identity"


def test_runs_table_reads_run_output_through_partition_projection(built: dict[str, Any]) -> None:
    built["template"].has_resource_properties(
        "AWS::Glue::Table",
        {
            "TableInput": Match.object_like(
                {
                    "Name": "retail_sales_runs",
                    "Parameters": Match.object_like(
                        {"projection.enabled": "true", "projection.run_id.type": "injected", "projection.sale_date.type": "date"}
                    ),
                    "PartitionKeys": [{"Name": "run_id", "Type": "string"}, {"Name": "sale_date", "Type": "date"}],
                }
            )
        },
    )


def test_destroy_removal_policy_is_opt_in_and_empties_buckets() -> None:
    stack = new_stack()
    PipelineStorage(stack, "Storage", removal_policy=cdk.RemovalPolicy.DESTROY)
    template = Template.from_stack(stack)
    for resource in template.find_resources("AWS::S3::Bucket").values():
        assert resource["DeletionPolicy"] == "Delete"
    template.resource_count_is("Custom::S3AutoDeleteObjects", 4)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda s: PipelineStorage(s, "S", landing_prefix="/incoming"), "landing_prefix='/incoming'"),
        (lambda s: PipelineStorage(s, "S", data_retention=cdk.Duration.days(0)), "data_retention (days)=0"),
        (lambda s: PipelineStorage(s, "S", removal_policy=cdk.RemovalPolicy.SNAPSHOT), "removal_policy="),
        (lambda s: PipelineAlerting(s, "A", emails=["nobody"]), "emails[0]='nobody'"),
        (lambda s: PipelineCatalog(s, "C", storage=PipelineStorage(s, "S"), database_name="Sales-DB"), "database_name='Sales-DB'"),
    ],
)
def test_bad_construct_arguments_are_named_with_their_value(build: Any, message: str) -> None:
    with pytest.raises(PipelinePropsError) as error:
        build(new_stack())
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"worker_count": 1}, "worker_count=1"),
        ({"max_quarantine_ratio": 1.5}, "max_quarantine_ratio=1.5"),
        ({"max_concurrent_runs": 0}, "max_concurrent_runs=0"),
    ],
)
def test_bad_clean_job_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    stack = new_stack()
    storage = PipelineStorage(stack, "S")
    catalog = PipelineCatalog(stack, "C", storage=storage, database_name="db")
    with pytest.raises(PipelinePropsError, match=message.replace(".", r"\.")):
        CleanJob(stack, "J", storage=storage, catalog=catalog, contract=CONTRACT, **kwargs)


def test_athena_cutoff_below_ten_megabytes_is_refused() -> None:
    stack = new_stack()
    storage = PipelineStorage(stack, "S")
    catalog = PipelineCatalog(stack, "C", storage=storage, database_name="db")
    job = CleanJob(stack, "J", storage=storage, catalog=catalog, contract=CONTRACT)
    with pytest.raises(PipelinePropsError, match="bytes_scanned_cutoff=1000"):
        AthenaTarget(stack, "A", storage=storage, catalog=catalog, clean_job=job, bytes_scanned_cutoff=1000)


def test_the_load_policy_attaches_only_to_a_role(built: dict[str, Any]) -> None:
    with pytest.raises(PipelinePropsError, match=r"grantee=.*must be a role"):
        built["target"].grant_load(iam.AccountRootPrincipal())


def test_object_lock_retention_locks_the_data_buckets_in_governance_mode_and_refuses_what_cannot_work() -> None:
    stack = cdk.Stack(cdk.App(context=cdk_context()), "Locked")
    storage = PipelineStorage(stack, "Storage", object_lock_retention=cdk.Duration.days(30))
    buckets = Template.from_stack(stack).find_resources("AWS::S3::Bucket")
    locked = {
        logical_id: properties["Properties"].get("ObjectLockConfiguration")
        for logical_id, properties in buckets.items()
        if properties["Properties"].get("ObjectLockEnabled")
    }
    assert len(buckets) == 4 and len(locked) == 3, sorted(buckets)
    assert all(
        rule == {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}}
        for rule in locked.values()
    )
    assert not any("AccessLogs" in logical_id for logical_id in locked)
    with pytest.raises(PipelinePropsError, match="removal_policy=DESTROY"):
        storage.new_bucket(stack, "Scratch", log_prefix="scratch/", removal_policy=cdk.RemovalPolicy.DESTROY)
    with pytest.raises(PipelinePropsError, match="object_lock_retention=30 days with removal_policy=DESTROY"):
        PipelineStorage(stack, "Doomed", object_lock_retention=cdk.Duration.days(30), removal_policy=cdk.RemovalPolicy.DESTROY)
    with pytest.raises(PipelinePropsError, match="longer than data_retention=7 days"):
        PipelineStorage(stack, "Short", object_lock_retention=cdk.Duration.days(30), data_retention=cdk.Duration.days(7))
