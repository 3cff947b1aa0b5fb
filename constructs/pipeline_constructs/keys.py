"""Key policies the pipeline's customer-managed KMS keys share."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack, aws_iam as iam, aws_kms as kms


def allow_cloudwatch_logs(key: kms.IKey, log_group_name: str = "*", *, sid: str | None = None) -> None:
    """Let CloudWatch Logs of this region use `key` for log groups named like `log_group_name` (a wildcard pattern).

    A log group encrypted with a customer key needs this grant in the key policy; the encryption-context condition
    keeps the logs service from using the key for any other log group.
    """
    stack = Stack.of(key)
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid=sid,
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                        service="logs", resource="log-group", resource_name=log_group_name, arn_format=ArnFormat.COLON_RESOURCE_NAME
                    )
                }
            },
        )
    )
