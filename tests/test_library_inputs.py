"""The library in other people's apps: names, prefixes, imported keys, existing buckets and inputs to refuse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms, aws_s3 as s3
from aws_cdk.assertions import Annotations, Match, Template

from pipeline_constructs import AthenaTarget, CleanJob, DatasetContract, PipelineCatalog, PipelineNetwork, PipelineStorage, RedshiftTarget
from pipeline_constructs.validation import PipelinePropsError
from tests.test_constructs import feature_flags

ROOT = Path(__file__).resolve().parent.parent
RETAIL = DatasetContract.from_file(ROOT / "contracts" / "retail_sales.yaml")
ORDERS = DatasetContract.from_file(ROOT / "tests" / "consumer_app" / "web_orders.yaml")
ENV = cdk.Environment(account="123456789012", region="eu-west-1")


def _pipeline(stack: cdk.Stack, **storage_props: Any) -> tuple[PipelineStorage, PipelineCatalog]:
    storage = PipelineStorage(stack, "Storage", **storage_props)
    return storage, PipelineCatalog(stack, "Catalog", storage=storage, database_name="sales_db")


def test_two_copies_of_a_pipeline_get_different_default_names() -> None:
    app = cdk.App(context=feature_flags())
    names = []
    for stack_id in ("TeamA", "TeamB"):
        stack = cdk.Stack(app, stack_id, env=ENV)
        storage, catalog = _pipeline(stack)
        job = CleanJob(stack, "Clean", storage=storage, catalog=catalog, contract=RETAIL)
        athena = AthenaTarget(stack, "Athena", storage=storage, catalog=catalog, clean_job=job)
        network = PipelineNetwork(stack, "Network", availability_zones=["eu-west-1a", "eu-west-1b", "eu-west-1c"], min_availability_zones=3)
        redshift = RedshiftTarget(stack, "Redshift", storage=storage, clean_job=job, vpc=network.vpc)
        names.append((athena.workgroup_name, redshift.namespace_name, redshift.workgroup_name))
        assert athena.workgroup_name.startswith("retail-sales-") and redshift.database_name == "retail_sales"
    assert set(names[0]).isdisjoint(names[1])


def test_two_clean_jobs_of_one_dataset_on_one_storage_are_refused_naming_both() -> None:
    stack = cdk.Stack(cdk.App(context=feature_flags()), "S", env=ENV)
    storage, catalog = _pipeline(stack)
    CleanJob(stack, "First", storage=storage, catalog=catalog, contract=RETAIL)
    with pytest.raises(PipelinePropsError, match=r"'retail_sales/runs/' of S/Second overlaps .*'retail_sales/runs/' of S/First"):
        CleanJob(stack, "Second", storage=storage, catalog=catalog, contract=RETAIL)
    CleanJob(stack, "Orders", storage=storage, catalog=catalog, contract=ORDERS)  # another dataset: its own prefix


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ("incoming/step_functions/", "incoming/step_functions/", "overlaps"),
        ("incoming/", "incoming/glue_workflow/", "overlaps"),
        ("incoming/a/", "drop/b/", r"landing_prefix='drop/b/' of S/B: must lie under the storage's landing prefix 'incoming/'"),
    ],
)
def test_landing_prefix_claims_must_be_inside_the_storage_and_apart(first: str, second: str, message: str) -> None:
    stack = cdk.Stack(cdk.App(context=feature_flags()), "S", env=ENV)
    storage = PipelineStorage(stack, "Storage")
    a, b = cdk.Stack(stack, "A"), cdk.Stack(stack, "B")
    storage.claim_prefix(a, "landing", first)
    with pytest.raises(PipelinePropsError, match=message):
        storage.claim_prefix(b, "landing", second)


def test_an_imported_key_gets_a_warning_with_the_statement_to_add() -> None:
    stack = cdk.Stack(cdk.App(context=feature_flags()), "S", env=ENV)
    key = kms.Key.from_key_arn(stack, "Imported", "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    _pipeline(stack, encryption_key=key)
    warnings = Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp("imported key"))
    assert warnings, "expected a warning naming the key-policy statement"
    text = json.dumps([w.entry.data for w in warnings])
    assert "logs.eu-west-1.amazonaws.com" in text and "/aws-glue/*" in text


def test_an_existing_landing_bucket_is_adopted_with_a_warning_and_its_own_key() -> None:
    stack = cdk.Stack(cdk.App(context=feature_flags()), "S", env=ENV)
    bucket = s3.Bucket.from_bucket_name(stack, "Existing", "sales-drop-zone")
    bucket_key = kms.Key.from_key_arn(stack, "ExistingKey", "arn:aws:kms:eu-west-1:123456789012:key/0000abcd-12ab-34cd-56ef-1234567890ab")
    storage, catalog = _pipeline(stack, landing_bucket=bucket, landing_bucket_key=bucket_key)
    CleanJob(stack, "Clean", storage=storage, catalog=catalog, contract=RETAIL)
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::S3::Bucket", 3)  # curated, quarantine, access logs: the landing bucket is not ours
    template.has_resource_properties(
        "Custom::S3BucketNotifications",
        {"BucketName": "sales-drop-zone", "NotificationConfiguration": {"EventBridgeConfiguration": {}}, "Managed": False},
    )
    policies = json.dumps(template.find_resources("AWS::IAM::Policy"))
    assert "arn:aws:kms:eu-west-1:123456789012:key/0000abcd" in policies and "sales-drop-zone/incoming/*" in policies
    assert Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp("did not create this bucket"))
    with pytest.raises(PipelinePropsError, match="landing_bucket_key: give it only with landing_bucket"):
        PipelineStorage(stack, "Other", landing_bucket_key=bucket_key)


@pytest.mark.parametrize(
    ("value", "message"), [("4", r"worker_count='4': must be a number, not str"), (1, r"worker_count=1: must be >= 2")]
)
def test_clean_job_sizes_are_checked_with_the_argument_name(value: Any, message: str) -> None:
    stack = cdk.Stack(cdk.App(context=feature_flags()), "S", env=ENV)
    storage, catalog = _pipeline(stack)
    with pytest.raises(PipelinePropsError, match=message):
        CleanJob(stack, "Clean", storage=storage, catalog=catalog, contract=RETAIL, worker_count=value)


def test_nothing_the_user_did_not_name_says_retail() -> None:
    stack = cdk.Stack(cdk.App(context=feature_flags()), "S", env=ENV)
    storage, catalog = _pipeline(stack)
    job = CleanJob(stack, "Clean", storage=storage, catalog=catalog, contract=ORDERS)
    AthenaTarget(stack, "Athena", storage=storage, catalog=catalog, clean_job=job)
    text = json.dumps(Template.from_stack(stack).to_json())
    assert "retail" not in text.lower()
    assert job.metrics_namespace == "DataPipeline/web_orders"
