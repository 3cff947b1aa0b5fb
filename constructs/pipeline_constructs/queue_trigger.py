"""Upload -> EventBridge rule -> SQS (dead-letter queue, alarmed) -> a small Lambda: how the Airflow forms start runs.

Shared by the MWAA form (the Lambda calls InvokeRestApi) and, later, MWAA Serverless (StartWorkflowRun): the piece
owns delivery and retries; the Lambda code decides what one message starts. The Lambda reports failed messages
individually (partial batch responses), so one bad message never makes SQS redeliver the whole batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import (
    Duration,
    RemovalPolicy,
    aws_cloudwatch as cloudwatch,
    aws_ec2 as ec2,
    aws_events as events,
    aws_events_targets as targets,
    aws_iam as iam,
    aws_kms as kms,
    aws_lambda as lambda_,
    aws_lambda_event_sources as sources,
    aws_logs as logs,
    aws_sqs as sqs,
)

from constructs import Construct

from .acknowledgements import acknowledge, acknowledge_findings
from .alerting import PipelineAlerting
from .keys import allow_cloudwatch_logs
from .storage import PipelineStorage
from .validation import PipelinePropsError, check_positive, check_prefix

_ENI_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]
_XRAY_ACTIONS = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]


class QueueTrigger(Construct):
    """EventBridge rule on `<landing_prefix>*.csv` uploads -> encrypted SQS queue -> Lambda (`code_path`, `handler`).

    Undeliverable events (rule -> queue) and messages the Lambda failed `max_receive_count` times end in dead-letter
    queues under the alert key; each has an alarm. The Lambda runs in `vpc` when given (its own security group,
    HTTPS out only), with its own role (logs, X-Ray, network interfaces) and an encrypted log group.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: PipelineStorage,
        alerting: PipelineAlerting,
        landing_prefix: str,
        code_path: str | Path,
        handler: str,
        description: str,
        environment: Mapping[str, str] | None = None,
        vpc: ec2.IVpc | None = None,
        subnets: ec2.SubnetSelection | None = None,
        timeout: Duration | None = None,
        batch_size: int = 5,
        max_receive_count: int = 5,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        """
        :param storage: the landing bucket whose uploads are matched (its size > 0, `*.csv` pattern).
        :param alerting: the key of the queues and the topic of the alarms.
        :param landing_prefix: uploads under this prefix are delivered.
        :param code_path: a plain folder holding the Lambda code (no bundling).
        :param handler: the Lambda handler, e.g. 'handler.handler'.
        :param description: what the Lambda starts (its description).
        :param environment: the Lambda's environment variables. Default: none.
        :param vpc: run the Lambda in this VPC. Default: outside any VPC.
        :param subnets: the Lambda's subnets in `vpc`. Default: the VPC's private subnets.
        :param timeout: the Lambda's timeout (the queue's visibility timeout is six times it). Default: 30 seconds.
        :param batch_size: messages per invocation. Default: 5.
        :param max_receive_count: deliveries of one message before it goes to the dead-letter queue. Default: 5.
        :param log_retention: the Lambda's log retention. Default: one month.
        :param removal_policy: for the queues, the log group and its key. Default: RETAIN.
        """
        super().__init__(scope, construct_id)
        self.landing_prefix = check_prefix("landing_prefix", landing_prefix)
        check_positive("batch_size", batch_size)
        if batch_size > 10:
            raise PipelinePropsError(f"batch_size={batch_size!r}: at most 10 (an SQS batch without a batching window)")
        check_positive("max_receive_count", max_receive_count)
        function_timeout = timeout if timeout is not None else Duration.seconds(30)
        check_positive("timeout (seconds)", function_timeout.to_seconds())
        if subnets is not None and vpc is None:
            raise PipelinePropsError("subnets is given without vpc: give both, or neither to run the Lambda outside a VPC")
        path = Path(code_path)
        if not (path.is_dir() and (path / (handler.rsplit(".", 1)[0] + ".py")).is_file()):
            raise PipelinePropsError(f"code_path={str(code_path)!r}, handler={handler!r}: the folder must hold the handler's module")

        # --- queues and rule -------------------------------------------------------------------------------------
        self.dead_letter_queue = alerting.new_dead_letter_queue(self, "DeadLetterQueue", removal_policy=removal_policy)
        self.undelivered_queue = alerting.new_dead_letter_queue(self, "UndeliveredEvents", removal_policy=removal_policy)
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=alerting.key,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(function_timeout.to_seconds() * 6),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letter_queue, max_receive_count=max_receive_count),
            removal_policy=removal_policy,
        )
        self.rule = events.Rule(
            self,
            "UploadRule",
            description=description + f" (uploads under {self.landing_prefix})",
            event_pattern=storage.upload_event_pattern(self.landing_prefix),
            targets=[
                targets.SqsQueue(self.queue, dead_letter_queue=self.undelivered_queue, retry_attempts=8, max_event_age=Duration.hours(6))
            ],
        )

        # --- the Lambda ------------------------------------------------------------------------------------------
        self.log_key = kms.Key(
            self, "LogKey", description=f"Logs of: {description}", enable_key_rotation=True, removal_policy=removal_policy
        )
        allow_cloudwatch_logs(self.log_key)
        self.log_group = logs.LogGroup(self, "Logs", encryption_key=self.log_key, retention=log_retention, removal_policy=removal_policy)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=f"Lambda: {description}")
        self.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[self.log_group.log_group_arn])
        )
        self.role.add_to_principal_policy(iam.PolicyStatement(actions=_XRAY_ACTIONS, resources=["*"]))
        star_actions = list(_XRAY_ACTIONS)
        self.security_group: ec2.SecurityGroup | None = None
        security_groups: Sequence[ec2.ISecurityGroup] = ()
        if vpc is not None:
            self.security_group = ec2.SecurityGroup(
                self, "SecurityGroup", vpc=vpc, description=f"Lambda: {description}: HTTPS out only", allow_all_outbound=False
            )
            self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs (endpoints or NAT)")
            security_groups = [self.security_group]
            self.role.add_to_principal_policy(iam.PolicyStatement(actions=_ENI_ACTIONS, resources=["*"]))
            star_actions.extend(_ENI_ACTIONS)
        acknowledge_findings(
            self.role,
            "AwsSolutions-IAM5",
            "X-Ray accepts trace segments only on '*'; in a VPC, Lambda manages the function's network interfaces, which "
            "EC2 grants only on '*' (no resource-level permissions for either).",
            matching=r"Resource::\*",
            actions=star_actions,
        )

        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_12,
            code=lambda_.Code.from_asset(str(path), exclude=["__pycache__", "*.pyc"]),
            handler=handler,
            description=description,
            role=self.role,
            timeout=function_timeout,
            memory_size=256,
            environment=dict(environment) if environment is not None else None,
            environment_encryption=self.log_key,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            vpc=vpc,
            vpc_subnets=(subnets if subnets is not None else ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED))
            if vpc
            else None,
            security_groups=list(security_groups) or None,
            reserved_concurrent_executions=None,
        )
        acknowledge(
            self.function,
            "Serverless-LambdaDLQ",
            "The function is invoked by an SQS event source mapping, not asynchronously: failed messages go to the source "
            "queue's dead-letter queue (alarmed), which a function DLQ would never receive.",
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Python 3.12 is the runtime of the Airflow 3 images MWAA runs; the trigger code is tested on it.",
        )
        acknowledge(
            self.function,
            "Serverless-LambdaLatestVersion",
            "Python 3.12 is the runtime of the Airflow 3 images MWAA runs; the trigger code is tested on it.",
        )
        self.function.add_event_source(
            sources.SqsEventSource(self.queue, batch_size=batch_size, report_batch_item_failures=True, max_concurrency=2)
        )
        acknowledge_findings(
            self.function,
            "Serverless-LambdaEventSourceMappingDestination",
            "An SQS event source keeps failed messages in the queue, whose redrive policy moves them to the alarmed dead-letter queue.",
            matching=".*",
        )

        # --- alarms ----------------------------------------------------------------------------------------------
        period = Duration.minutes(5)
        self.dead_letter_alarm = alerting.alarm_when_any(
            self,
            "FailedMessagesAlarm",
            self.dead_letter_queue.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
            f"An upload could not start a run after {max_receive_count} attempts; it waits in the dead-letter queue ({description})",
        )
        self.undelivered_alarm = alerting.alarm_when_any(
            self,
            "UndeliveredEventsAlarm",
            self.undelivered_queue.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
            f"An upload event could not reach the trigger queue; it waits in the dead-letter queue ({description})",
        )
        self.alarms: list[cloudwatch.Alarm] = [self.dead_letter_alarm, self.undelivered_alarm]


def upload_inbox(scope: Construct, key: kms.IKey, removal_policy: RemovalPolicy, *, read_by: str) -> sqs.Queue:
    """`Inbox` in `scope`: the encrypted queue a scheduled form's upload rule feeds and its runs claim from (`read_by`
    names what claims), 14 days' retention. No dead-letter queue: a claimed message is deleted, none fails."""
    inbox = sqs.Queue(
        scope,
        "Inbox",
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=Duration.days(14),
        visibility_timeout=Duration.minutes(5),
        removal_policy=removal_policy,
    )
    for finding in ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"):
        acknowledge(
            inbox,
            finding,
            f"The inbox is read by {read_by}, which deletes a message once its upload is claimed in the ledger: no "
            "message is processed and fails, so none would move to a dead-letter queue; reconcile finds any upload left behind.",
        )
    return inbox
