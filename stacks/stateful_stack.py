"""Everything that holds data or state, shared by the orchestration forms of one environment."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack, aws_glue as glue

from constructs import Construct
from pipeline_constructs.alerting import PipelineAlerting
from pipeline_constructs.catalog import PipelineCatalog
from pipeline_constructs.clean_job import CleanJob
from pipeline_constructs.contract import DatasetContract
from pipeline_constructs.ledger import UploadLedger
from pipeline_constructs.network import PipelineNetwork
from pipeline_constructs.storage import PipelineStorage
from pipeline_constructs.targets.athena import AthenaTarget
from pipeline_constructs.targets.load_target import LoadTarget, LoadTargets
from pipeline_constructs.targets.redshift import RedshiftTarget

from .config import EnvironmentConfig
from .reconcile_check import ReconcileCheck

METRICS_NAMESPACE = "RetailPipeline"

CONTRACT_PATH = Path(__file__).resolve().parent.parent / "contracts" / "retail_sales.yaml"
_WORKER_TYPES = {
    "G.1X": glue.WorkerType.G_1X,
    "G.2X": glue.WorkerType.G_2X,
    "G.4X": glue.WorkerType.G_4X,
    "G.8X": glue.WorkerType.G_8X,
}


class StatefulStack(Stack):
    """Storage, catalog, clean job, load target and alerting of one environment."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        contract: DatasetContract,
        network: PipelineNetwork | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        from .step_functions_stack import _retention  # here: step_functions_stack imports this module

        removal = RemovalPolicy.DESTROY if config.destroy_on_removal else RemovalPolicy.RETAIN
        self.storage = PipelineStorage(
            self,
            "Storage",
            removal_policy=removal,
            data_retention=Duration.days(config.data_retention_days),
            object_lock_retention=Duration.days(config.object_lock_days) if config.object_lock_days else None,
        )
        self.alerting = PipelineAlerting(
            self,
            "Alerting",
            emails=config.alarm_emails,
            topic_display_name="Retail pipeline alerts",
            removal_policy=removal,
            environment_name=config.name,
        )
        self.ledger = UploadLedger(
            self,
            "Ledger",
            encryption_key=self.storage.key,
            finished_record_retention=Duration.days(config.ledger_retention_days),
            removal_policy=removal,
        )
        self.catalog = PipelineCatalog(
            self,
            "Catalog",
            storage=self.storage,
            database_name=f"retail_{config.name}",
            log_retention=_retention(config.log_retention_days),
            removal_policy=removal,
        )
        self.clean_job = CleanJob(
            self,
            "CleanJob",
            storage=self.storage,
            catalog=self.catalog,
            contract=contract,
            worker_type=_WORKER_TYPES[config.glue_worker_type],
            worker_count=config.glue_worker_count,
            max_quarantine_ratio=config.max_quarantine_ratio,
            metrics_namespace=METRICS_NAMESPACE,
        )
        self.ledger.grant_write(self.clean_job.role)
        built: list[LoadTarget] = []
        for name in config.load_targets:
            if name == "redshift":
                if network is None:
                    raise ValueError(f"environments.{config.name}.load_target: 'redshift' needs the network (pass network=)")
                built.append(
                    RedshiftTarget(
                        self,
                        "RedshiftTarget",
                        storage=self.storage,
                        clean_job=self.clean_job,
                        vpc=network.vpc,
                        subnets=network.private_subnets,
                        base_capacity=config.redshift_base_capacity,
                        namespace_name=f"retail-{config.name}",
                        workgroup_name=f"retail-{config.name}",
                        database_name=f"retail_{config.name}",
                        log_retention=_retention(config.log_retention_days),
                        removal_policy=removal,
                    )
                )
            else:
                built.append(
                    AthenaTarget(
                        self,
                        "AthenaTarget",
                        storage=self.storage,
                        catalog=self.catalog,
                        clean_job=self.clean_job,
                        bytes_scanned_cutoff=config.athena_bytes_scanned_cutoff,
                        workgroup_name=f"retail-sales-{config.name}",
                        removal_policy=removal,
                    )
                )
        self.targets: tuple[LoadTarget, ...] = tuple(built)
        """Every load target of the environment, in the config's order."""
        self.target: LoadTargets = self.targets[0] if len(self.targets) == 1 else self.targets
        """What the forms' `target=` takes: the one target, or the list loaded in parallel."""
        self.reconcile_check = ReconcileCheck(
            self,
            "ReconcileCheck",
            environment_name=config.name,
            storage=self.storage,
            ledger=self.ledger,
            alerting=self.alerting,
            metrics_namespace=METRICS_NAMESPACE,
            every=Duration.hours(config.reconcile_every_hours),
            window=Duration.hours(config.reconcile_window_hours),
            max_minutes_without_load=config.max_minutes_without_load,
            log_retention=_retention(config.log_retention_days),
            removal_policy=removal,
        )
        self._publish_operations_outputs(contract)

    def _publish_operations_outputs(self, contract: DatasetContract) -> None:
        """What `pipeline-ops --env NAME` reads from this stack (its OutputKeys are the tool's contract)."""
        for key, value in {
            "LedgerTableName": self.ledger.table_name,
            "LandingBucketName": self.storage.landing_bucket.bucket_name,
            "CuratedBucketName": self.storage.curated_bucket.bucket_name,
            "QuarantineBucketName": self.storage.quarantine_bucket.bucket_name,
            "AlertTopicArn": self.alerting.topic.topic_arn,
            "DatasetName": contract.name,
            "NotificationDeadLetterQueueUrl": self.alerting.dead_letter_queue.queue_url,
        }.items():
            CfnOutput(self, key, value=value)
