"""EventBridge rule targets of the Glue Workflow form: one that notifies a Glue workflow (its EVENT trigger), which
aws-cdk-lib does not offer, and one that sends to an encrypted queue from this rule only (aws-cdk-lib's SqsQueue
target drops the rule condition when the queue is encrypted)."""

from __future__ import annotations

from typing import cast

import jsii
from aws_cdk import Duration, aws_events as events, aws_glue as glue, aws_iam as iam, aws_sqs as sqs
from aws_cdk.interfaces.aws_events import IRuleRef

from constructs import Construct

from ..validation import PipelinePropsError


@jsii.implements(events.IRuleTarget)
class GlueWorkflowTarget:
    """Send matched events to a Glue workflow: EventBridge calls `glue:notifyEvent` on it with a role of its own.

    The role may call `glue:notifyEvent` on this workflow only. Delivery is retried (`retry_attempts`, up to
    `max_event_age`); what still cannot be delivered goes to `dead_letter_queue` (EventBridge is allowed to send to
    it from this rule only). The workflow needs an EVENT trigger (`Workflow.add_event_trigger`) to start runs.
    """

    def __init__(
        self,
        workflow: glue.IWorkflow,
        *,
        dead_letter_queue: sqs.IQueue,
        retry_attempts: int = 8,
        max_event_age: Duration | None = None,
        role: iam.IRole | None = None,
    ) -> None:
        """
        :param workflow: the workflow to notify.
        :param dead_letter_queue: where undeliverable events go (encrypt it with a key EventBridge may use).
        :param retry_attempts: delivery retries, 0 to 185. Default: 8.
        :param max_event_age: how long EventBridge keeps retrying, 1 minute to 24 hours. Default: 6 hours.
        :param role: the role EventBridge assumes. Default: a new role allowed only `glue:notifyEvent` on the workflow.
        """
        age = _check_delivery(retry_attempts, max_event_age)
        self.workflow = workflow
        self.dead_letter_queue = dead_letter_queue
        self.retry_attempts = retry_attempts
        self.max_event_age = age
        self.role = role

    def bind(self, rule: IRuleRef, id: str | None = None) -> events.RuleTargetConfig:
        """Called by `Rule.add_target`: create the role (once per rule), allow the rule to use the queue."""
        role = self.role
        if role is None:
            role_id = "GlueWorkflowTargetRole"
            existing = rule.node.try_find_child(role_id)
            role = (
                existing
                if isinstance(existing, iam.Role)
                else iam.Role(
                    cast(Construct, rule),
                    role_id,
                    assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                    description="EventBridge: notify the Glue workflow of matched events",
                )
            )
            self.role = role
        iam.Grant.add_to_principal(grantee=role, actions=["glue:notifyEvent"], resource_arns=[self.workflow.workflow_arn])
        allow_rule_to_send(rule, self.dead_letter_queue)
        return events.RuleTargetConfig(
            arn=self.workflow.workflow_arn,
            role=role,
            dead_letter_config=events.CfnRule.DeadLetterConfigProperty(arn=self.dead_letter_queue.queue_arn),
            retry_policy=_retry_policy(self.retry_attempts, self.max_event_age),
        )


def _retry_policy(retry_attempts: int, max_event_age: Duration) -> events.CfnRule.RetryPolicyProperty:
    return events.CfnRule.RetryPolicyProperty(
        maximum_retry_attempts=retry_attempts, maximum_event_age_in_seconds=int(max_event_age.to_seconds())
    )


def _check_delivery(retry_attempts: int, max_event_age: Duration | None) -> Duration:
    if isinstance(retry_attempts, bool) or not 0 <= retry_attempts <= 185:
        raise PipelinePropsError(f"retry_attempts={retry_attempts!r}: must be between 0 and 185")
    age = max_event_age if max_event_age is not None else Duration.hours(6)
    if not 60 <= age.to_seconds() <= 86400:
        raise PipelinePropsError(f"max_event_age={age.to_seconds()} s: must be between 60 s and 24 hours")
    return age


def allow_rule_to_send(rule: IRuleRef, queue: sqs.IQueue) -> None:
    """Let EventBridge send to `queue` for this rule only (aws:SourceArn)."""
    queue.add_to_resource_policy(
        iam.PolicyStatement(
            sid=f"AllowEventRule{rule.node.addr[:16]}",
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            actions=["sqs:SendMessage"],
            resources=[queue.queue_arn],
            conditions={"ArnEquals": {"aws:SourceArn": rule.rule_ref.rule_arn}},
        )
    )


@jsii.implements(events.IRuleTarget)
class RuleQueueTarget:
    """Send matched events to `queue` (encrypted with a key EventBridge may use), allowed for this rule only;
    delivery is retried (`retry_attempts`, up to `max_event_age`) and what cannot be delivered goes to
    `dead_letter_queue`."""

    def __init__(
        self, queue: sqs.IQueue, *, dead_letter_queue: sqs.IQueue, retry_attempts: int = 8, max_event_age: Duration | None = None
    ) -> None:
        self.max_event_age = _check_delivery(retry_attempts, max_event_age)
        self.queue = queue
        self.dead_letter_queue = dead_letter_queue
        self.retry_attempts = retry_attempts

    def bind(self, rule: IRuleRef, id: str | None = None) -> events.RuleTargetConfig:
        allow_rule_to_send(rule, self.queue)
        allow_rule_to_send(rule, self.dead_letter_queue)
        return events.RuleTargetConfig(
            arn=self.queue.queue_arn,
            dead_letter_config=events.CfnRule.DeadLetterConfigProperty(arn=self.dead_letter_queue.queue_arn),
            retry_policy=_retry_policy(self.retry_attempts, self.max_event_age),
        )
