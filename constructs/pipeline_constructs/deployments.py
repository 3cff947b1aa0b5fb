"""CDK's BucketDeployment, as the Airflow forms use it to put their DAG or workflow definition into S3."""

from __future__ import annotations

from aws_cdk import Stack

from .acknowledgements import acknowledge_findings

# The construct id of CDK's singleton BucketDeployment handler in a stack; a memory limit adds '<n>MiB'.
_HANDLER_ID = "Custom::CDKBucketDeployment8693BB64968944B69AAFB0CC9EB8756C"
# The object and key actions CDK grants the handler on the source assets and the destination bucket.
HANDLER_ACTIONS = (
    "s3:GetObject*",
    "s3:GetBucket*",
    "s3:List*",
    "s3:DeleteObject*",
    "s3:Abort*",
    "s3:PutObject",
    "s3:PutObjectLegalHold",
    "s3:PutObjectRetention",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
)


def review_bucket_deployment(stack: Stack, *, what: str, memory_limit: int | None = None) -> None:
    """Accept the findings on CDK's BucketDeployment handler of `stack` (one per stack and memory limit): it runs
    only while the stack deploys `what`, with CDK's own runtime, settings and grants, and is not in the data path."""
    handler = f"{_HANDLER_ID}{memory_limit}MiB" if memory_limit is not None else _HANDLER_ID
    acknowledge_findings(
        stack,
        "AwsSolutions-IAM4",
        "CDK's BucketDeployment handler runs at deploy time with the AWS-managed basic execution policy (CloudWatch Logs only).",
        matching=r"Policy::arn:[^:]+:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        child_path=handler,
    )
    acknowledge_findings(
        stack,
        "AwsSolutions-IAM5",
        f"CDK's BucketDeployment handler reads the asset objects and writes {what} (CDK's own grant).",
        matching=r"(Action::s3:(GetObject|GetBucket|List|DeleteObject|Abort)\*|Action::kms:(ReEncrypt|GenerateDataKey)\*|Resource::.*)",
        actions=HANDLER_ACTIONS,
        child_path=handler,
    )
    for finding in (
        "AwsSolutions-L1",
        "Serverless-LambdaLatestVersion",
        "Serverless-LambdaDLQ",
        "Serverless-LambdaTracing",
        "Serverless-LambdaDefaultMemorySize",
    ):
        acknowledge_findings(
            stack,
            finding,
            f"CDK's BucketDeployment handler: CDK picks its runtime and settings; it runs only while deploying {what}.",
            matching=".*",
            child_path=handler,
        )
