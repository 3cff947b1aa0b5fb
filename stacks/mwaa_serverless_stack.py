"""The MWAA Serverless orchestration form of one environment."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack

from constructs import Construct
from pipeline_constructs.forms.mwaa_serverless import MwaaServerlessPipeline

from .config import EnvironmentConfig
from .operations_outputs import publish_form_outputs, queue_trigger_dead_letters
from .stateful_stack import StatefulStack
from .step_functions_stack import _retention


class MwaaServerlessStack(Stack):
    """Upload -> EventBridge -> SQS -> Lambda -> a run of the pipeline's MWAA Serverless workflow, kept in the upload
    ledger; failure reports and alarms."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, stateful: StatefulStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.pipeline = MwaaServerlessPipeline(
            self,
            "Pipeline",
            storage=stateful.storage,
            catalog=stateful.catalog,
            clean_job=stateful.clean_job,
            target=stateful.target,
            alerting=stateful.alerting,
            ledger=stateful.ledger,
            workflow_name=f"retail-{config.name}-pipeline",
            log_retention=_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY if config.destroy_on_removal else RemovalPolicy.RETAIN,
            schedule=config.schedule_for("mwaa_serverless"),
        )
        pipeline = self.pipeline
        publish_form_outputs(
            self,
            form="mwaa_serverless",
            landing_prefix=pipeline.landing_prefix,
            run_timeout_seconds=int(pipeline.workflow_config["dagrun_timeout_seconds"]),
            writes_ledger=True,
            dead_letter_queues=[
                *queue_trigger_dead_letters(pipeline.trigger),
                (pipeline.report_dead_letter_queue, "lambda", pipeline.report_function),
                *(
                    [(pipeline.progress_dead_letter_queue, "lambda", pipeline.progress_function)]
                    if pipeline.progress_dead_letter_queue is not None and pipeline.progress_function is not None
                    else []
                ),
            ],
            WorkflowArn=pipeline.workflow_arn,
        )
