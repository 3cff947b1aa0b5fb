"""Key policies the pipeline's customer-managed KMS keys share."""

from __future__ import annotations

import json

from aws_cdk import Annotations, ArnFormat, Stack, aws_iam as iam, aws_kms as kms


def add_key_statement(key: kms.IKey, statement: iam.PolicyStatement, *, purpose: str) -> bool:
    """Add `statement` to `key`'s policy; for an imported key, whose policy CDK cannot change, warn at synth with the
    statement as JSON, so the user can add it by hand. Returns whether the statement was added."""
    if key.add_to_resource_policy(statement).statement_added:
        return True
    rendered = json.dumps(Stack.of(key).resolve(statement.to_statement_json()), sort_keys=True)
    Annotations.of(key).add_warning_v2(
        "pipeline:ImportedKeyPolicy",
        f"{key.node.path} is an imported key: CDK cannot change its key policy, so {purpose} will fail until this "
        f"statement is added to it by hand: {rendered}",
    )
    return False


def allow_cloudwatch_logs(key: kms.IKey, log_group_name: str = "*", *, sid: str | None = None) -> None:
    """Let CloudWatch Logs of this region use `key` for log groups named like `log_group_name` (a wildcard pattern).

    A log group encrypted with a customer key needs this grant in the key policy; the encryption-context condition
    keeps the logs service from using the key for any other log group.
    """
    stack = Stack.of(key)
    add_key_statement(
        key,
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
        ),
        purpose=f"CloudWatch Logs encryption of {log_group_name}",
    )
