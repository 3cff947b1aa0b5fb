"""The MWAA orchestration form of one environment."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack

from constructs import Construct
from pipeline_constructs.forms.mwaa import MwaaPipeline
from pipeline_constructs.network import PipelineNetwork

from .config import EnvironmentConfig
from .operations_outputs import publish_form_outputs, queue_trigger_dead_letters
from .stateful_stack import StatefulStack
from .step_functions_stack import _retention


class MwaaStack(Stack):
    """Upload -> EventBridge -> SQS -> Lambda -> a run of the pipeline DAG on a private MWAA environment, with its alarms;
    or, with the config's `trigger` schedule for mwaa, upload -> the inbox queue, claimed by the DAG's scheduled runs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        stateful: StatefulStack,
        network: PipelineNetwork,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        settings = config.mwaa
        self.pipeline = MwaaPipeline(
            self,
            "Pipeline",
            storage=stateful.storage,
            catalog=stateful.catalog,
            clean_job=stateful.clean_job,
            target=stateful.target,
            alerting=stateful.alerting,
            ledger=stateful.ledger,
            vpc=network.vpc,
            subnets=network.private_subnets,
            environment_name=f"retail-{config.name}",
            airflow_version=settings.airflow_version,
            environment_class=settings.environment_class,
            min_workers=settings.min_workers,
            max_workers=settings.max_workers,
            schedulers=settings.schedulers,
            webserver_access=settings.webserver_access,
            max_active_runs=settings.max_active_runs,
            task_retries=settings.task_retries,
            log_retention=_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY if config.destroy_on_removal else RemovalPolicy.RETAIN,
            schedule=config.schedule_for("mwaa"),
        )
        pipeline = self.pipeline
        scheduled = {"DagSchedule": f"{pipeline.schedule_cron} {pipeline.schedule.time_zone}"} if pipeline.schedule is not None else {}
        publish_form_outputs(
            self,
            form="mwaa",
            landing_prefix=pipeline.landing_prefix,
            run_timeout_seconds=int(pipeline.dag_config["dagrun_timeout_seconds"]),
            writes_ledger=True,
            dead_letter_queues=queue_trigger_dead_letters(pipeline.trigger)
            if pipeline.trigger is not None
            else [(pipeline.dead_letter_queue, "eventbridge", pipeline.inbox)],
            MwaaEnvironmentName=pipeline.environment_name,
            DagId=pipeline.dag_id,
            **scheduled,
        )
