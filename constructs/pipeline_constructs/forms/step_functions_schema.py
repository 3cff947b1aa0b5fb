"""The Step Functions form's Check Schema step: crawl only when the run's uploads can change the raw table (issue 24).

Check Schema is a small Lambda (`runtime/crawl_check.py`, standard library and boto3) called with the uploads the
run cleans (upload mode: the one object version; scheduled: every claimed upload). It answers {crawl, reason}:
Crawl Needed? then runs the crawl as before, or goes straight to the clean job. The decision lands in the ledger's
`crawl` field: in upload mode through a native UpdateItem (Record Crawl Decision), in a scheduled run from the
function itself, for each claimed upload.

The function may read the raw table (glue:GetTable on it alone), the uploads under the form's landing prefix
(s3:GetObject, s3:GetObjectVersion) and decrypt them through S3; in a scheduled run it also updates ledger records.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aws_cdk import (
    Duration,
    RemovalPolicy,
    Stack,
    aws_iam as iam,
    aws_kms as kms,
    aws_lambda as lambda_,
    aws_logs as logs,
    aws_stepfunctions as sfn,
    aws_stepfunctions_tasks as tasks,
)

from constructs import Construct

from ..acknowledgements import acknowledge, acknowledge_findings
from ..catalog import PipelineCatalog, review_object_prefix
from ..lambda_code import stage_modules
from ..ledger import KEY_WRITE_ACTIONS, UploadLedger
from ..runtime.crawl_check import raw_table_name
from ..storage import PipelineStorage
from .step_functions_ledger import FORM_NAME
from .step_functions_states import acknowledge_tracing_and_log_delivery, retry_transient

CODE_MODULES = ("__init__.py", "runtime/__init__.py", "runtime/crawl_check.py", "runtime/upload_ledger.py")
"""What the function imports, staged as pipeline_constructs/... in its code folder."""
HANDLER = "pipeline_constructs.runtime.crawl_check.handler"
_LAMBDA_TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "States.Timeout",
]


def stage_code(target: Path) -> Path:
    """Copy the function's modules into `target` (its code folder); returns `target`."""
    return stage_modules(target, CODE_MODULES, purpose="the schema check function")


class SchemaCheck(Construct):
    """The Check Schema function and its states (see the module docstring): `function`, `table` (the raw table it
    compares with), `columns` (the contract's source columns)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: PipelineStorage,
        catalog: PipelineCatalog,
        columns: list[str],
        landing_prefix: str,
        ledger: UploadLedger | None,
        log_key: kms.IKey,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        """`ledger`: given for a scheduled run, whose function records the decision on each upload itself."""
        super().__init__(scope, construct_id)
        self.database = catalog.database_name
        self.table = raw_table_name(str(catalog.crawler.table_prefix or ""), storage.landing_prefix)
        self.columns = columns
        self.ledger = ledger
        stack = Stack.of(self)
        log_group = logs.LogGroup(self, "Logs", encryption_key=log_key, retention=log_retention, removal_policy=removal_policy)
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Check Schema: read the raw table's columns and the headers of the run's uploads",
        )
        statements = [
            iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]),
            iam.PolicyStatement(
                actions=["glue:GetTable"],
                resources=[
                    stack.format_arn(service="glue", resource="catalog"),
                    catalog.database.database_arn,
                    stack.format_arn(service="glue", resource="table", resource_name=f"{self.database}/{self.table}"),
                ],
            ),
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[storage.landing_bucket.arn_for_objects(f"{landing_prefix}*")],
            ),
        ]
        if storage.landing_key is not None:
            statements.append(
                iam.PolicyStatement(
                    actions=["kms:Decrypt"],
                    resources=[storage.landing_key.key_arn],
                    conditions={"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}},
                )
            )
        if ledger is not None:
            statements += [
                iam.PolicyStatement(actions=["dynamodb:UpdateItem", "dynamodb:GetItem"], resources=[ledger.table_arn]),
                iam.PolicyStatement(actions=list(KEY_WRITE_ACTIONS), resources=[ledger.encryption_key.key_arn]),
            ]
        for statement in statements:
            role.add_to_principal_policy(statement)
        review_object_prefix(role, landing_prefix, "the check reads the first line of each upload of a run", write=False)
        with tempfile.TemporaryDirectory(prefix="schema-check-") as staging:
            self.function = lambda_.Function(
                self,
                "Function",
                runtime=lambda_.Runtime.PYTHON_3_12,
                code=lambda_.Code.from_asset(str(stage_code(Path(staging)))),
                handler=HANDLER,
                description="Check Schema: crawl only when the run's uploads can change the raw table",
                role=role,
                timeout=Duration.seconds(60),
                memory_size=256,
                log_group=log_group,
                tracing=lambda_.Tracing.ACTIVE,
            )
        acknowledge_tracing_and_log_delivery(role)
        for finding, reason in {
            "AwsSolutions-L1": "Python 3.12, the runtime the project's Lambdas are tested on.",
            "Serverless-LambdaLatestVersion": "Python 3.12, the runtime the project's Lambdas are tested on.",
            "Serverless-LambdaDLQ": "Step Functions invokes the function synchronously and retries it; nothing is queued.",
            "Serverless-LambdaAsyncFailureDestination": "Step Functions invokes the function synchronously and retries "
            "it; a call that fails for good fails the run, which the failure reporter reports.",
        }.items():
            acknowledge(self.function, finding, reason)

    def check(self, scope: Construct, *, source_uris: str, source_versions: str | None) -> tasks.LambdaInvoke:
        """Check Schema -> $.schema_check {crawl, reason}; `source_uris` / `source_versions` are JSON-array strings
        (paths or intrinsics), as the clean job takes them."""
        payload: dict[str, Any] = {
            "database": self.database,
            "table": self.table,
            "columns": self.columns,
            "source_uris": source_uris,
        }
        if source_versions is not None:
            payload["source_versions"] = source_versions
        if self.ledger is not None:
            payload["ledger"] = {
                "TableName": self.ledger.table_name,
                "form": FORM_NAME,
                "ttl_days": self.ledger.retention_days,
                "run_id": sfn.JsonPath.string_at("$.upload.run_id"),
            }
        invoke = tasks.LambdaInvoke(
            scope,
            "Check Schema",
            comment="Can the run's uploads change the raw table (no table yet, or a header that differs)? Otherwise skip the crawl.",
            lambda_function=self.function,
            payload=sfn.TaskInput.from_object(payload),
            retry_on_service_exceptions=False,
            result_selector={"crawl.$": "$.Payload.crawl", "reason.$": "$.Payload.reason"},
            result_path="$.schema_check",
            task_timeout=sfn.Timeout.duration(Duration.seconds(90)),
        )
        retry_transient(invoke, _LAMBDA_TRANSIENT, interval=Duration.seconds(2), max_attempts=5)
        return invoke

    @staticmethod
    def choose(scope: Construct, *, crawl: sfn.IChainable, skip: sfn.IChainable) -> sfn.Choice:
        """Crawl Needed? -> `crawl` when the check says so, `skip` otherwise."""
        return sfn.Choice(scope, "Crawl Needed?").when(sfn.Condition.boolean_equals("$.schema_check.crawl", True), crawl).otherwise(skip)

    def acknowledge_invoke(self, role: iam.IRole) -> None:
        """The invoke grant Step Functions adds names the function and its versions (its ARN followed by ':*')."""
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            "lambda:InvokeFunction on the schema check function and its versions only (the function's ARN followed by :*).",
            matching=r"Resource::<[A-Za-z0-9]*SchemaCheckFunction[A-Za-z0-9]*\.Arn>:\*",
            actions=["lambda:InvokeFunction"],
        )
