"""The environment's scheduled reconcile check: EventBridge Scheduler starts a Lambda that runs `pipeline-ops
reconcile` (pipeline_constructs/operations/scheduled_check.py) and publishes the uploads not accounted for; an alarm
on that metric reaches the alert topic. A lost event is found without anyone asking. The same run publishes what the
ledger says (`operations/ledger_metrics.py`: uploads by state, runs, durations and failed steps per form, minutes
since the last load), which `metrics` (a LedgerMetrics) names for the dashboard; an alarm fires when no upload has
loaded for longer than `max_minutes_without_load`.

App-level (not in the library): it reads the environment from the app's stack outputs (`<env>-Stateful`,
`<env>-<Form>`), as `pipeline-ops --env NAME` does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from aws_cdk import (
    Duration,
    RemovalPolicy,
    Stack,
    aws_cloudwatch as cloudwatch,
    aws_iam as iam,
    aws_kms as kms,
    aws_lambda as lambda_,
    aws_logs as logs,
    aws_scheduler as scheduler,
    aws_scheduler_targets as scheduler_targets,
)

from constructs import Construct
from pipeline_constructs.acknowledgements import acknowledge, acknowledge_findings
from pipeline_constructs.alerting import PipelineAlerting
from pipeline_constructs.keys import allow_cloudwatch_logs
from pipeline_constructs.lambda_code import stage_modules
from pipeline_constructs.ledger import LedgerMetrics, UploadLedger
from pipeline_constructs.operations.scheduled_check import METRIC_NAME
from pipeline_constructs.storage import PipelineStorage

# What the check imports: the operations package and the runtime modules it uses (standard library and boto3 only).
CHECK_MODULES = (
    "__init__.py",
    "operations/*.py",
    "runtime/__init__.py",
    "runtime/upload_ledger.py",
    "runtime/pipeline_plan.py",
    "runtime/workflow_inputs.py",
    "runtime/upload_lambdas/__init__.py",
    "runtime/upload_lambdas/upload_events.py",
)
HANDLER = "pipeline_constructs.operations.scheduled_check.handler"


def stage_check_code(target: Path) -> Path:
    """Copy the check's modules into `target`/pipeline_constructs (the Lambda's code folder); returns `target`."""
    return stage_modules(target, CHECK_MODULES, purpose="the reconcile check")


class ReconcileCheck(Construct):
    """Every `every` hours, reconcile the last `window` hours of uploads; alarm when any is not accounted for."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment_name: str,
        storage: PipelineStorage,
        ledger: UploadLedger,
        alerting: PipelineAlerting,
        metrics_namespace: str,
        every: Duration,
        window: Duration,
        max_minutes_without_load: int,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.metrics = LedgerMetrics(namespace=metrics_namespace, environment_name=environment_name, period=every)
        """What the check publishes from the ledger, as metrics the dashboard and the alarms use."""
        stack = Stack.of(self)
        self.log_key = kms.Key(
            self, "LogKey", description="Logs of the reconcile check", enable_key_rotation=True, removal_policy=removal_policy
        )
        allow_cloudwatch_logs(self.log_key)
        self.log_group = logs.LogGroup(self, "Logs", encryption_key=self.log_key, retention=log_retention, removal_policy=removal_policy)
        self.role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=f"Reconcile check of {environment_name}"
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[self.log_group.log_group_arn])
        )
        stacks_arn = stack.format_arn(service="cloudformation", resource="stack", resource_name=f"{environment_name}-*/*")
        self.role.add_to_principal_policy(iam.PolicyStatement(actions=["cloudformation:DescribeStacks"], resources=[stacks_arn]))
        self.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:ListBucketVersions"], resources=[storage.landing_bucket.bucket_arn])
        )
        ledger.grant_read(self.role)
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],  # PutMetricData has no resource type; the namespace condition scopes it.
                conditions={"StringEquals": {"cloudwatch:namespace": metrics_namespace}},
            )
        )
        acknowledge_findings(
            self.role,
            "AwsSolutions-IAM5",
            "DescribeStacks on this environment's stacks only (a stack ARN ends with its id); PutMetricData has no resource "
            "type and is scoped by its namespace condition; the ledger's index ARN is its table's followed by /index/*.",
            matching=r"Resource::(\*|arn:.*:stack/.*-\*/\*|.*/index/\*)",
            actions=[
                "cloudformation:DescribeStacks",
                "cloudwatch:PutMetricData",
                "dynamodb:GetItem",
                "dynamodb:Query",
                "dynamodb:Scan",
                "dynamodb:BatchGetItem",
            ],
        )
        with tempfile.TemporaryDirectory(prefix="reconcile-check-") as staging:
            self.function = lambda_.Function(
                self,
                "Function",
                runtime=lambda_.Runtime.PYTHON_3_12,
                code=lambda_.Code.from_asset(str(stage_check_code(Path(staging)))),
                handler=HANDLER,
                description=f"Reconcile the uploads of {environment_name} with the ledger; publish {METRIC_NAME}",
                role=self.role,
                timeout=Duration.minutes(5),
                memory_size=512,
                environment={
                    "PIPELINE_ENVIRONMENT": environment_name,
                    "METRIC_NAMESPACE": metrics_namespace,
                    "WINDOW_HOURS": str(int(window.to_hours())),
                    "EVERY_HOURS": str(int(every.to_hours())),
                },
                environment_encryption=self.log_key,
                log_group=self.log_group,
                retry_attempts=0,
                reserved_concurrent_executions=1,  # two checks never overlap
            )
        for finding, reason in {
            "AwsSolutions-L1": "Python 3.12, the runtime the project's Lambdas are tested on.",
            "Serverless-LambdaLatestVersion": "Python 3.12, the runtime the project's Lambdas are tested on.",
            "Serverless-LambdaTracing": "One scheduled call per hour whose log holds its counts and findings; tracing adds nothing.",
            "Serverless-LambdaDLQ": "A failed check is not replayed (the next one checks the same window); its errors are alarmed.",
            "Serverless-LambdaAsyncFailureDestination": "A failed check is not replayed (the next one checks the same window); "
            "its errors are alarmed (CheckFailed).",
        }.items():
            acknowledge(self.function, finding, reason)
        self.scheduler_role = iam.Role(
            self, "SchedulerRole", assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"), description="Start the reconcile check"
        )
        acknowledge_findings(
            self.scheduler_role,
            "AwsSolutions-IAM5",
            "Lambda's invoke grant names the check function and its versions (the function's ARN followed by :*), nothing else.",
            matching=r"Resource::<ReconcileCheckFunction[A-Za-z0-9]*\.Arn>:\*",
            actions=["lambda:InvokeFunction"],
        )
        self.schedule = scheduler.Schedule(
            self,
            "Schedule",
            schedule=scheduler.ScheduleExpression.rate(every),
            description=f"Reconcile the uploads of {environment_name} with the ledger",
            target=scheduler_targets.LambdaInvoke(
                self.function, role=self.scheduler_role, retry_attempts=2, max_event_age=Duration.hours(1)
            ),
        )
        period = Duration.hours(1)
        self.metric_not_accounted = self.metrics.metric_uploads_not_accounted_for(period=period)
        self.no_recent_load_alarm = alerting.alarm_on(
            cloudwatch.Alarm(
                self,
                "NoRecentLoad",
                metric=self.metrics.metric_minutes_since_last_load(),
                threshold=max_minutes_without_load,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                # No figure: the ledger has never held a loaded record, or the check did not run (CheckFailed alarms).
                treat_missing_data=cloudwatch.TreatMissingData.MISSING,
                alarm_description=alerting.alarm_description(
                    "NoRecentLoad",
                    f"No upload of {environment_name} has loaded for more than {max_minutes_without_load} minutes "
                    "(max_minutes_without_load): uploads stopped arriving, or every run since failed or hangs",
                ),
            )
        )
        self.alarms = [
            alerting.alarm_when_any(
                self,
                "UploadsNotAccountedFor",
                self.metric_not_accounted,
                f"Uploads of {environment_name} that no run accounts for",
            ),
            alerting.alarm_when_any(
                self,
                "CheckFailed",
                self.function.metric_errors(period=period, statistic="Sum"),
                f"The reconcile check of {environment_name} failed (see its log)",
            ),
            self.no_recent_load_alarm,
        ]
