"""Where failures go: an SNS topic under a customer-managed key that CloudWatch and EventBridge may use."""

from __future__ import annotations

import re
from collections.abc import Sequence

from aws_cdk import (
    Duration,
    RemovalPolicy,
    aws_cloudwatch as cloudwatch,
    aws_cloudwatch_actions as cw_actions,
    aws_iam as iam,
    aws_kms as kms,
    aws_sns as sns,
    aws_sns_subscriptions as subs,
    aws_sqs as sqs,
)

from constructs import Construct

from .acknowledgements import acknowledge
from .validation import PipelinePropsError

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class PipelineAlerting(Construct):
    """An encrypted SNS topic with e-mail subscriptions, and helpers to wire alarms and rules to it.

    An SNS topic under the AWS-managed `alias/aws/sns` key cannot receive messages from CloudWatch alarms or
    EventBridge rules (their service principals cannot use that key), so the topic gets its own key whose policy
    lets exactly those two services encrypt with it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        emails: Sequence[str] = (),
        topic_display_name: str = "Retail pipeline alerts",
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        """
        :param emails: addresses subscribed to the topic (each must confirm). Default: none.
        :param topic_display_name: the e-mail sender name. Default: 'Retail pipeline alerts'.
        :param removal_policy: for the key. Default: RETAIN.
        """
        super().__init__(scope, construct_id)
        for i, email in enumerate(emails):
            if not isinstance(email, str) or not _EMAIL.match(email):
                raise PipelinePropsError(f"emails[{i}]={email!r}: is not an e-mail address")

        self.key = kms.Key(
            self,
            "Key",
            description="Retail pipeline alert topic",
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
        # Undeliverable notifications are kept (and alarmed on by callers) instead of lost.
        self.dead_letter_queue = self.new_dead_letter_queue(self, "UndeliveredNotifications")
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowSnsToDeadLetterQueue",
                principals=[iam.ServicePrincipal("sns.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        for email in emails:
            self.topic.add_subscription(subs.EmailSubscription(email, dead_letter_queue=self.dead_letter_queue))
        self.alarm_action = cw_actions.SnsAction(self.topic)

    def alarm_on(self, alarm: cloudwatch.Alarm) -> cloudwatch.Alarm:
        """Send the alarm's ALARM transitions to the topic; returns the alarm."""
        alarm.add_alarm_action(self.alarm_action)
        return alarm

    def alarm_when_any(self, scope: Construct, alarm_id: str, metric: cloudwatch.IMetric, description: str) -> cloudwatch.Alarm:
        """An alarm in `scope` that fires when `metric` is at least 1 in a period (no data is not a breach), sent to the topic."""
        return self.alarm_on(
            cloudwatch.Alarm(
                scope,
                alarm_id,
                metric=metric,
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
        )

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


def acknowledge_dead_letter_queue(queue: sqs.IQueue) -> None:
    """A dead-letter queue has no dead-letter queue of its own: its messages are the end of the line, alarmed on."""
    for finding in ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"):
        acknowledge(
            queue,
            finding,
            "This queue is itself a dead-letter queue; a queue behind it would only move the problem, and an alarm watches its depth.",
        )
