"""The Glue Workflow orchestration form of one environment."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack

from constructs import Construct
from pipeline_constructs.forms.glue_workflow import GlueWorkflowPipeline

from .config import EnvironmentConfig
from .operations_outputs import publish_form_outputs
from .stateful_stack import StatefulStack


class GlueWorkflowStack(Stack):
    """Upload -> EventBridge -> Glue workflow (batched EVENT trigger, or the config's `trigger` schedule: crawl, clean,
    load), failure rules and alarms."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, stateful: StatefulStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.pipeline = GlueWorkflowPipeline(
            self,
            "Pipeline",
            storage=stateful.storage,
            catalog=stateful.catalog,
            clean_job=stateful.clean_job,
            target=stateful.target,
            alerting=stateful.alerting,
            ledger=stateful.ledger,
            batch_size=config.workflow_batch_size,
            batch_window=Duration.seconds(config.workflow_batch_window_seconds),
            removal_policy=RemovalPolicy.DESTROY if config.destroy_on_removal else RemovalPolicy.RETAIN,
            schedule=config.schedule_for("glue_workflow"),
        )
        pipeline = self.pipeline
        publish_form_outputs(
            self,
            form="glue_workflow",
            landing_prefix=pipeline.landing_prefix,
            run_timeout_seconds=pipeline.run_timeout_seconds,
            writes_ledger=True,
            dead_letter_queues=[(pipeline.dead_letter_queue, "eventbridge", None)],
            WorkflowName=pipeline.workflow.workflow_name,
            CleanJobName=pipeline.clean_job_name,
        )
