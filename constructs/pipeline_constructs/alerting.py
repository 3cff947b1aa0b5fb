"""Where failures go: an SNS topic under a customer-managed key that CloudWatch and EventBridge may use."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import (
    ArnFormat,
    Duration,
    RemovalPolicy,
    Stack,
    Stage,
    aws_cloudwatch as cloudwatch,
    aws_cloudwatch_actions as cw_actions,
    aws_events as events,
    aws_events_targets as targets,
    aws_iam as iam,
    aws_kms as kms,
    aws_sns as sns,
    aws_sns_subscriptions as subs,
    aws_sqs as sqs,
)

from constructs import Construct

from .acknowledgements import acknowledge, acknowledge_findings
from .validation import PipelinePropsError

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_ALARM_DESCRIPTION = 1024
"""CloudWatch's longest AlarmDescription (botocore's PutMetricAlarm model: AlarmDescription max 1024)."""


@dataclass(frozen=True)
class Runbook:
    """What the reader of an alarm does: the README section that explains the failure (its heading text) and the
    `pipeline-ops` command that recovers it (without `pipeline-ops --env NAME`, which the description adds)."""

    readme_section: str
    command: str

    def describe(self, failure: str, environment_name: str) -> str:
        """The alarm description: the failure, the README section, the command (one line each, in that order)."""
        text = f'{failure.rstrip(".")}.\nREADME: "{self.readme_section}".\nRecover: pipeline-ops --env {environment_name} {self.command}'
        if len(text) > MAX_ALARM_DESCRIPTION:
            raise PipelinePropsError(
                f"alarm description of {len(text)} characters (failure={failure[:60]!r}...): CloudWatch takes at most {MAX_ALARM_DESCRIPTION}"
            )
        return text


HOW_FAILURE_IS_REPORTED = "How failure is reported"
ON_CALL = "On call: `pipeline-ops`"
RERUN = "status --state failed, then rerun s3://BUCKET/KEY for each failed upload"
REPLAY = "replay-dead-letters --dry-run, then replay-dead-letters"
RUNBOOKS: Mapping[str, Runbook] = {
    # A run failed (every form): its failed step is in the ledger and in the one message; rerun resumes it.
    "RunsFailed": Runbook(HOW_FAILURE_IS_REPORTED, RERUN),
    "ExecutionsFailed": Runbook(HOW_FAILURE_IS_REPORTED, RERUN),
    "ExecutionsTimedOut": Runbook(HOW_FAILURE_IS_REPORTED, "status (stuck uploads), then rerun s3://BUCKET/KEY for each once it has ended"),
    "ExecutionsAborted": Runbook(HOW_FAILURE_IS_REPORTED, RERUN),
    # The failure path itself failed: find the failures the message did not announce.
    "ReportsFailed": Runbook(HOW_FAILURE_IS_REPORTED, RERUN),
    # Something waits in a dead-letter queue: count it, then send it back.
    "UndeliveredUploads": Runbook(ON_CALL, f"{REPLAY} (or reconcile --start)"),
    "UndeliveredEvents": Runbook(ON_CALL, f"{REPLAY} (or reconcile --start)"),
    "UndeliveredReports": Runbook(ON_CALL, REPLAY),
    "UnreportedFailuresAlarm": Runbook(ON_CALL, REPLAY),
    "UnrecordedProgressAlarm": Runbook(ON_CALL, REPLAY),
    "FailedMessagesAlarm": Runbook(ON_CALL, f"{REPLAY} (or reconcile --start)"),
    "UndeliveredEventsAlarm": Runbook(ON_CALL, f"{REPLAY} (or reconcile --start)"),
    "UndeliveredNotificationsAlarm": Runbook(HOW_FAILURE_IS_REPORTED, REPLAY),
    # The scheduled reconcile check (the app's stacks/reconcile_check.py).
    "UploadsNotAccountedFor": Runbook(ON_CALL, "reconcile, then reconcile --start (a failed upload: rerun s3://BUCKET/KEY)"),
    "CheckFailed": Runbook(ON_CALL, "reconcile (the check by hand; its error is in the check's log)"),
    "NoRecentLoad": Runbook(ON_CALL, "status --since 7d (failed or stuck uploads: rerun s3://BUCKET/KEY), then reconcile --start"),
}
"""The runbook of each alarm id this library and the app create, so that every alarm says what to do."""


class PipelineAlerting(Construct):
    """An encrypted SNS topic with e-mail subscriptions, and helpers to wire alarms and rules to it.

    SNS cannot use the AWS-managed `alias/aws/sns` key for messages from CloudWatch alarms or EventBridge rules, so
    the topic has its own key. Enforcing TLS makes CDK write a topic policy, which replaces SNS's default policy; the
    policy therefore allows CloudWatch alarms of this account to publish (`aws:SourceAccount`, `aws:SourceArn`), and
    the key lets CloudWatch encrypt for the topic. EventBridge rules publish through `notification_target`, with a
    role of this construct that may publish and use the key, so no rule of any account can reach the topic.
    A notification that cannot be delivered waits in the `UndeliveredNotifications` queue, which an alarm watches.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        emails: Sequence[str],
        topic_display_name: str = "Data pipeline alerts",
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        environment_name: str | None = None,
    ) -> None:
        """
        :param emails: at least one address subscribed to the topic (each must confirm the subscription).
        :param topic_display_name: the e-mail sender name. Default: 'Data pipeline alerts'.
        :param removal_policy: for the key and the undelivered-notifications queue. Default: RETAIN.
        :param environment_name: the name `pipeline-ops --env NAME` knows this deployment by, written into every
            alarm's recovery command. Default: the name of the enclosing Stage, else 'NAME'.
        """
        super().__init__(scope, construct_id)
        self.emails = check_emails("emails", emails)
        stage = Stage.of(self)
        self.environment_name: str = environment_name or (stage.stage_name if stage is not None else None) or "NAME"
        stack = Stack.of(self)

        self.key = kms.Key(
            self,
            "Key",
            description=f"Alert topic: {topic_display_name}",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        for service in ("cloudwatch.amazonaws.com", "events.amazonaws.com"):
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"Allow{service.split('.')[0].capitalize()}ToPublish",
                    principals=[iam.ServicePrincipal(service)],
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    resources=["*"],
                )
            )
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name=topic_display_name,
            master_key=self.key,
            enforce_ssl=True,
        )
        # The SSL-only policy replaces SNS's default one: say again who may publish.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="cloudwatch", resource="alarm", resource_name="*", arn_format=ArnFormat.COLON_RESOURCE_NAME
                        )
                    },
                },
            )
        )
        self.events_role = iam.Role(
            self,
            "EventsPublishRole",
            assumed_by=iam.ServicePrincipal("events.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}),
            description="EventBridge rules of this pipeline publish failure messages to the alert topic",
        )
        # The same grant CDK's SnsTopic target makes for its role (it adds it again when a rule uses the target).
        self.topic.grant_publish(self.events_role)
        acknowledge_findings(
            self.events_role,
            "AwsSolutions-IAM5",
            "Publishing to a KMS-encrypted topic needs a data key of the topic's own key: GenerateDataKey* (and Decrypt) "
            "on that one key, as CDK's topic grant writes it.",
            matching=r"Action::kms:GenerateDataKey\*",
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
        )

        # Undeliverable notifications are kept, and alarmed on, instead of lost.
        self.dead_letter_queue = self.new_dead_letter_queue(self, "UndeliveredNotifications", removal_policy=removal_policy)
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowSnsToDeadLetterQueue",
                principals=[iam.ServicePrincipal("sns.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        for email in self.emails:
            self.topic.add_subscription(subs.EmailSubscription(email, dead_letter_queue=self.dead_letter_queue))
        self.alarm_action = cw_actions.SnsAction(self.topic)
        self.undelivered_alarm = self.alarm_when_any(
            self,
            "UndeliveredNotificationsAlarm",
            self.dead_letter_queue.metric_approximate_number_of_messages_visible(period=Duration.minutes(5), statistic="Maximum"),
            "A failure message could not be delivered to a subscriber; it waits in the UndeliveredNotifications queue",
        )
        self.alarms = [self.undelivered_alarm]

    def notification_target(
        self,
        message: events.RuleTargetInput,
        *,
        dead_letter_queue: sqs.IQueue,
        retry_attempts: int = 8,
        max_event_age: Duration | None = None,
    ) -> targets.SnsTopic:
        """An EventBridge target that publishes `message` to the topic through this construct's role.

        :param dead_letter_queue: where an event that cannot be published is kept.
        :param retry_attempts: delivery retries, 0 to 185. Default: 8.
        :param max_event_age: how long EventBridge retries. Default: 6 hours.
        """
        return targets.SnsTopic(
            self.topic,
            message=message,
            role=self.events_role,
            authorize_using_role=True,
            dead_letter_queue=dead_letter_queue,
            retry_attempts=retry_attempts,
            max_event_age=max_event_age if max_event_age is not None else Duration.hours(6),
        )

    def alarm_on(self, alarm: cloudwatch.Alarm) -> cloudwatch.Alarm:
        """Send the alarm's ALARM transitions to the topic; returns the alarm."""
        alarm.add_alarm_action(self.alarm_action)
        return alarm

    def alarm_when_any(
        self, scope: Construct, alarm_id: str, metric: cloudwatch.IMetric, description: str, *, runbook: Runbook | None = None
    ) -> cloudwatch.Alarm:
        """An alarm in `scope` that fires when `metric` is at least 1 in a period (no data is not a breach), sent to the
        topic. Its description is `description` (the failure), the README section and the recovery command of
        `runbook` (default: RUNBOOKS[alarm_id]; an alarm id without one is refused, naming it)."""
        return self.alarm_on(
            cloudwatch.Alarm(
                scope,
                alarm_id,
                metric=metric,
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=self.alarm_description(alarm_id, description, runbook=runbook),
            )
        )

    def alarm_description(self, alarm_id: str, failure: str, *, runbook: Runbook | None = None) -> str:
        """What an alarm says: `failure`, then the README section and the `pipeline-ops` command of `runbook` (default:
        RUNBOOKS[alarm_id]). PipelinePropsError when neither gives a runbook."""
        chosen = runbook if runbook is not None else RUNBOOKS.get(alarm_id)
        if chosen is None:
            raise PipelinePropsError(
                f"alarm_id={alarm_id!r}: no runbook says what to do when it fires; pass runbook=Runbook(readme_section, command) "
                f"or add it to pipeline_constructs.alerting.RUNBOOKS"
            )
        return chosen.describe(failure, self.environment_name)

    def new_dead_letter_queue(self, scope: Construct, queue_id: str, *, removal_policy: RemovalPolicy | None = None) -> sqs.Queue:
        """A TLS-only dead-letter queue in `scope`, encrypted with the alert key (which EventBridge and SNS may use).

        :param removal_policy: Default: the SQS default (the queue is deleted with the stack).
        """
        queue = sqs.Queue(
            scope,
            queue_id,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=removal_policy,
        )
        acknowledge_dead_letter_queue(queue)
        return queue

    def grant_publish(self, grantee: iam.IGrantable) -> iam.Grant:
        """Publish to the (encrypted) topic."""
        return self.topic.grant_publish(grantee)


def metric_rule_matches(rule: events.IRule, period: Duration | None = None) -> cloudwatch.Metric:
    """Events an EventBridge rule matched (AWS/Events MatchedEvents, Sum): how forms that report through rules count
    their failed and succeeded runs. Default period: 5 minutes."""
    return cloudwatch.Metric(
        namespace="AWS/Events",
        metric_name="MatchedEvents",
        dimensions_map={"RuleName": rule.rule_name},
        statistic="Sum",
        period=period if period is not None else Duration.minutes(5),
    )


def check_emails(name: str, emails: Any) -> tuple[str, ...]:
    """At least one address, each an e-mail address, none twice (case-insensitive): the checked tuple."""
    if isinstance(emails, str) or not isinstance(emails, Sequence):
        raise PipelinePropsError(f"{name}={emails!r}: give a list of addresses, e.g. ['data-team@example.com']")
    if not emails:
        raise PipelinePropsError(f"{name}=[]: give at least one address, so that failures reach a person")
    seen: set[str] = set()
    for i, email in enumerate(emails):
        if not isinstance(email, str) or not _EMAIL.match(email):
            raise PipelinePropsError(f"{name}[{i}]={email!r}: is not an e-mail address")
        if email.lower() in seen:
            raise PipelinePropsError(f"{name}[{i}]={email!r}: listed twice; each address gets one subscription")
        seen.add(email.lower())
    return tuple(emails)


def acknowledge_dead_letter_queue(queue: sqs.IQueue) -> None:
    """A dead-letter queue has no dead-letter queue of its own: its messages are the end of the line, alarmed on."""
    for finding in ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"):
        acknowledge(
            queue,
            finding,
            "This queue is itself a dead-letter queue; a queue behind it would only move the problem, and an alarm watches its depth.",
        )
