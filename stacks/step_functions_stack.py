"""The Step Functions orchestration form of one environment."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack, aws_logs as logs

from constructs import Construct
from pipeline_constructs.forms.step_functions import StepFunctionsPipeline

from .config import EnvironmentConfig
from .operations_outputs import DeadLetterQueue, publish_form_outputs
from .stateful_stack import StatefulStack


class StepFunctionsStack(Stack):
    """Upload -> EventBridge -> state machine (crawl, clean, load), or on the config's `trigger` schedule: uploads wait
    in an inbox and EventBridge Scheduler starts a run that takes them all; with its alarms."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, stateful: StatefulStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.pipeline = StepFunctionsPipeline(
            self,
            "Pipeline",
            storage=stateful.storage,
            catalog=stateful.catalog,
            clean_job=stateful.clean_job,
            target=stateful.target,
            alerting=stateful.alerting,
            ledger=stateful.ledger,
            log_retention=_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY if config.destroy_on_removal else RemovalPolicy.RETAIN,
            schedule=config.schedule_for("step_functions"),
        )
        pipeline = self.pipeline
        runs = pipeline.scheduled_runs
        dead_letter_queues: list[DeadLetterQueue] = [
            # On a schedule the upload rule delivers to the inbox: its undelivered events go back there.
            (pipeline.dead_letter_queue, "eventbridge", runs.inbox if runs is not None else None),
            (pipeline.failure_reporter.dead_letter_queue, "failure_report", pipeline.failure_reporter.state_machine),
        ]
        scheduled: dict[str, str] = {}
        if runs is not None and runs.dead_letter_queue is not None and pipeline.schedule is not None:
            dead_letter_queues.append((runs.dead_letter_queue, "schedule", pipeline.state_machine))
            scheduled = {
                "ScheduleExpression": str(pipeline.schedule_expression),
                "ScheduleTimeZone": pipeline.schedule.time_zone,
                "InboxQueueUrl": runs.inbox.queue_url,
            }
        publish_form_outputs(
            self,
            form="step_functions",
            landing_prefix=pipeline.landing_prefix,
            run_timeout_seconds=int(pipeline.state_machine_timeout.to_seconds()),
            writes_ledger=True,
            dead_letter_queues=dead_letter_queues,
            StateMachineArn=pipeline.state_machine.state_machine_arn,
            **scheduled,
        )


def _retention(days: int) -> logs.RetentionDays:
    """The RetentionDays member for a validated number of days (the config allows only CloudWatch's periods)."""
    return logs.RetentionDays[_RETENTION_NAMES[days]]


_RETENTION_NAMES = dict(
    zip(
        (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653),
        [m.name for m in logs.RetentionDays if m.name != "INFINITE"],
        strict=True,
    )
)
