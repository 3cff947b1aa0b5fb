"""The upload ledger's table as synthesized, and the outputs `pipeline-ops` reads from every stack."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App, Duration, RemovalPolicy, Stack, aws_kms as kms
from aws_cdk.assertions import Match, Template

from pipeline_constructs.ledger import UploadLedger
from pipeline_constructs.runtime.upload_ledger import PARTITION_KEY, SORT_KEY, STATE_INDEX
from pipeline_constructs.validation import PipelinePropsError

FORM_OUTPUTS = {"PipelineForm", "LandingPrefix", "RunTimeoutSeconds", "WritesLedger", "DeadLetterQueues"}
FORM_SPECIFIC = {
    "StepFunctions": {"StateMachineArn"},
    "GlueWorkflow": {"WorkflowName"},
    "Mwaa": {"MwaaEnvironmentName", "DagId"},
    "MwaaServerless": {"WorkflowArn"},
}


def _joined(value: Any) -> str:
    """An Fn::Join of strings and references, each reference as 'REF' (enough to parse the JSON it builds)."""
    _, parts = value["Fn::Join"]
    return "".join(part if isinstance(part, str) else "REF" for part in parts)


def _ledger_template(removal_policy: RemovalPolicy) -> Template:
    stack = Stack(App(), "Ledger")
    UploadLedger(stack, "Ledger", encryption_key=kms.Key(stack, "Key"), removal_policy=removal_policy)
    return Template.from_stack(stack)


def test_the_table_is_on_demand_encrypted_with_the_pipeline_key_recoverable_and_expiring() -> None:
    table = _ledger_template(RemovalPolicy.RETAIN)
    table.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "BillingMode": "PAY_PER_REQUEST",
                    "KeySchema": [{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}, {"AttributeName": SORT_KEY, "KeyType": "RANGE"}],
                    "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                    "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": Match.any_value()},
                    "GlobalSecondaryIndexes": [Match.object_like({"IndexName": STATE_INDEX})],
                    "DeletionProtectionEnabled": True,
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                }
            ),
        },
    )


def test_a_destroyable_ledger_has_no_deletion_protection() -> None:
    (table,) = _ledger_template(RemovalPolicy.DESTROY).find_resources("AWS::DynamoDB::Table").values()
    assert table["Properties"].get("DeletionProtectionEnabled") in (None, False)
    assert table["DeletionPolicy"] == "Delete"


def test_a_retention_below_a_day_is_refused_with_its_name() -> None:
    stack = Stack(App(), "Bad")
    with pytest.raises(PipelinePropsError, match="finished_record_retention"):
        UploadLedger(stack, "Ledger", encryption_key=kms.Key(stack, "Key"), finished_record_retention=Duration.hours(1))


def test_every_stack_publishes_what_pipeline_ops_reads(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    seen_forms = set()
    for (stage, stack), template in templates.items():
        outputs = template.get("Outputs", {})
        if stack == "Stateful":
            assert {
                "LedgerTableName",
                "LandingBucketName",
                "CuratedBucketName",
                "QuarantineBucketName",
                "AlertTopicArn",
                "DatasetName",
            } <= set(outputs), stage
        elif stack in FORM_SPECIFIC:
            assert FORM_OUTPUTS | FORM_SPECIFIC[stack] <= set(outputs), (stage, stack)
            assert outputs["LandingPrefix"]["Value"].endswith("/")
            assert int(outputs["RunTimeoutSeconds"]["Value"]) > 0
            seen_forms.add(outputs["PipelineForm"]["Value"])
            queues = json.loads(_joined(outputs["DeadLetterQueues"]["Value"]))
            assert queues and {queue["kind"] for queue in queues} <= {"eventbridge", "sqs", "lambda", "failure_report"}
            assert all(queue["url"] and queue["arn"] for queue in queues)
            assert all("source_arn" in queue for queue in queues if queue["kind"] == "sqs")
    assert seen_forms == {"step_functions", "glue_workflow", "mwaa", "mwaa_serverless"}
