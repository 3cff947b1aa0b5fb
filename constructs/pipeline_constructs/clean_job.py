"""The Glue 5.0 PySpark job that cleans one run's uploads into curated Parquet, with quarantine."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration, Stack, aws_cloudwatch as cloudwatch, aws_glue as glue, aws_iam as iam

from constructs import Construct

from .acknowledgements import acknowledge_findings
from .catalog import GLUE_ASSET_READ_ACTIONS, PipelineCatalog, review_glue_logs, review_object_prefix
from .contract import DatasetContract
from .storage import PipelineStorage
from .validation import PipelinePropsError, check_name, check_positive

RUNTIME_DIR = Path(__file__).parent / "runtime"
CONTRACT_MODULE = Path(__file__).parent / "contract.py"
#: The modules the clean job's script imports, shipped beside it as top-level files (--extra-py-files).
CLEAN_JOB_MODULES = (
    CONTRACT_MODULE,
    RUNTIME_DIR / "clean_transform.py",
    RUNTIME_DIR / "spark_settings.py",
    RUNTIME_DIR / "workflow_inputs.py",
    RUNTIME_DIR / "upload_ledger.py",
    RUNTIME_DIR / "pipeline_plan.py",
)
CONTRACT_FILE_NAME = "contract.json"


def _contract_file(contract: DatasetContract) -> str:
    """Write the contract as canonical JSON into a folder named by its content hash, so the asset hash follows the
    content only and repeated synths reuse one file instead of leaving a new temporary folder each time."""
    text = contract.to_json()
    folder = Path(tempfile.gettempdir()) / "pipeline-contracts" / hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    path = folder / CONTRACT_FILE_NAME
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{CONTRACT_FILE_NAME}.{os.getpid()}"
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)  # atomic: a parallel synth never reads a half-written file
    return str(path)


class CleanJob(Construct):
    """A Glue 5.0 PySpark job running the contract-driven clean transform.

    The script is a thin entrypoint (`runtime/glue_clean_job.py`) over pure PySpark functions
    (`runtime/clean_transform.py`) that the tests run on a local SparkSession; the contract ships with it as
    `contract.json`, so one file changes the job, the tables and the load SQL together. Each run writes
    `<curated_root>run_id=<run id>/<partition>=<value>/` and quarantined rows under `<quarantine_root>run_id=<run id>/`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: PipelineStorage,
        catalog: PipelineCatalog,
        contract: DatasetContract,
        worker_type: glue.WorkerType = glue.WorkerType.G_1X,
        worker_count: int = 2,
        timeout: Duration | None = None,
        max_quarantine_ratio: float = 0.05,
        metrics_namespace: str | None = None,
        max_concurrent_runs: int = 5,
    ) -> None:
        """
        :param storage: landing (read), curated and quarantine (write) buckets.
        :param catalog: the security configuration, log permissions and log groups (its key and retention).
        :param contract: the dataset contract the job enforces.
        :param worker_type: Glue worker type. Default: G.1X.
        :param worker_count: number of workers, at least 2. Default: 2.
        :param timeout: a run longer than this is stopped (and fails). Default: 60 minutes.
        :param max_quarantine_ratio: share of quarantined rows above which the run fails. Default: 0.05.
        :param metrics_namespace: CloudWatch namespace of the row-count metrics. Default: 'DataPipeline/<dataset>'.
        :param max_concurrent_runs: parallel runs (one per upload in the Step Functions form). Default: 5.
        """
        super().__init__(scope, construct_id)
        check_positive("worker_count", worker_count, minimum=2)
        check_positive("max_concurrent_runs", max_concurrent_runs)
        if isinstance(max_quarantine_ratio, bool) or not 0 <= max_quarantine_ratio <= 1:
            raise PipelinePropsError(f"max_quarantine_ratio={max_quarantine_ratio!r}: must be between 0 and 1")
        if metrics_namespace is None:
            metrics_namespace = f"DataPipeline/{contract.name}"
        check_name("metrics_namespace", metrics_namespace, pattern=r"[A-Za-z][A-Za-z0-9/_.-]{0,254}")
        run_timeout = timeout if timeout is not None else Duration.minutes(60)
        check_positive("timeout (minutes)", run_timeout.to_minutes())

        self.contract = contract
        self.metrics_namespace = metrics_namespace
        self.max_quarantine_ratio = float(max_quarantine_ratio)
        """The quarantined share of lines above which a run fails."""
        self.curated_prefix = storage.claim_prefix(
            self, "curated", f"{contract.name}/runs/", argument="contract name (curated runs prefix)"
        )
        self.curated_root = f"s3://{storage.curated_bucket.bucket_name}/{self.curated_prefix}"
        self.quarantine_root = f"s3://{storage.quarantine_bucket.bucket_name}/{contract.name}/"

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"Clean job for {contract.name}: reads uploads, writes curated and quarantine output",
        )
        storage.grant_read_landing(self.role)
        storage.grant_write_curated(self.role, self.curated_prefix)
        storage.grant_write_quarantine(self.role)
        catalog.grant_glue_logs(self.role, "jobs")
        self.log_groups = catalog.create_glue_log_groups(self, self.role, "jobs")
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],  # PutMetricData has no resource type; the namespace condition scopes it.
                conditions={"StringEquals": {"cloudwatch:namespace": metrics_namespace}},
            )
        )

        review_object_prefix(self.role, storage.landing_prefix, "the job reads the uploads of its run", write=False)
        review_object_prefix(self.role, self.curated_prefix, "each run writes its own run_id= folder", write=True)
        review_object_prefix(self.role, "", "quarantine files are named per run and source object", write=True, bucket_hint="Quarantine")
        review_glue_logs(self.role, "jobs")
        acknowledge_findings(
            self.role,
            "AwsSolutions-IAM5",
            "cloudwatch:PutMetricData has no resource type; the statement is limited by the cloudwatch:namespace condition.",
            matching=r"Resource::\*",
            actions=["cloudwatch:PutMetricData"],
        )
        acknowledge_findings(
            self.role,
            "AwsSolutions-IAM5",
            "The Glue L2 grants the job role read access to its script and extra files in the CDK asset bucket.",
            matching=r"Action::s3:(GetBucket|GetObject|List)\*|Resource::arn:[^:]+:s3:::cdk-[a-z0-9]+-assets-.*/\*",
            actions=GLUE_ASSET_READ_ACTIONS,
        )
        self.job = glue.PySparkEtlJob(
            self,
            "Job",
            role=self.role,
            description=f"Cleans {contract.name} CSV uploads into Parquet; bad rows go to quarantine with a reason",
            glue_version=glue.GlueVersion.V5_0,
            script=glue.Code.from_asset(str(RUNTIME_DIR / "glue_clean_job.py")),
            extra_python_files=[glue.Code.from_asset(str(module)) for module in CLEAN_JOB_MODULES],
            extra_files=[glue.Code.from_asset(_contract_file(contract))],
            worker_configuration=glue.WorkerConfiguration(worker_type=worker_type, number_of_workers=worker_count),
            security_configuration=catalog.security_configuration,
            continuous_logging=glue.ContinuousLoggingProps(enabled=True),
            max_concurrent_runs=max_concurrent_runs,
            max_retries=0,  # the orchestrator retries with backoff; a Glue retry would double-count metrics
            timeout=run_timeout,
            default_arguments={
                "--contract_path": CONTRACT_FILE_NAME,
                "--dataset": contract.name,
                "--curated_root": self.curated_root,
                "--quarantine_root": self.quarantine_root,
                "--max_quarantine_ratio": str(max_quarantine_ratio),
                "--metrics_namespace": metrics_namespace,
                "--enable-s3-parquet-optimized-committer": "true",  # EMRFS S3-optimized committer: no rename at commit
            },
        )
        self.job_name: str = self.job.job_name
        self.timeout = run_timeout
        """A run longer than this is stopped (and fails)."""
        self.job_arn = Stack.of(self).format_arn(service="glue", resource="job", resource_name=self.job_name)

    def metric(
        self, metric_name: str, *, statistic: str = "Sum", period: Duration | None = None, job_name: str | None = None
    ) -> cloudwatch.Metric:
        """A metric the job publishes per run (RowsIn, RowsOut, RowsQuarantined, DuplicatesDropped, QuarantineRatio, ...),
        over every job definition of the dataset (dimension Dataset), or of one (`job_name`: Dataset and JobName, e.g. this
        job's `job_name` or a form's own definition from `add_job_definition`)."""
        dimensions = {"Dataset": self.contract.name}
        if job_name is not None:
            dimensions["JobName"] = job_name
        return cloudwatch.Metric(
            namespace=self.metrics_namespace,
            metric_name=metric_name,
            dimensions_map=dimensions,
            statistic=statistic,
            period=period if period is not None else Duration.minutes(5),
        )

    def metric_rows_in(self, *, period: Duration | None = None, job_name: str | None = None) -> cloudwatch.Metric:
        """Rows read from the uploads (Sum)."""
        return self.metric("RowsIn", period=period, job_name=job_name)

    def metric_rows_quarantined(self, *, period: Duration | None = None, job_name: str | None = None) -> cloudwatch.Metric:
        """Rows sent to quarantine (Sum)."""
        return self.metric("RowsQuarantined", period=period, job_name=job_name)

    def metric_rows_out(self, *, period: Duration | None = None, job_name: str | None = None) -> cloudwatch.Metric:
        """Rows written to curated output (Sum)."""
        return self.metric("RowsOut", period=period, job_name=job_name)

    def metric_duplicates_dropped(self, *, period: Duration | None = None, job_name: str | None = None) -> cloudwatch.Metric:
        """Rows dropped as duplicates of the natural key (Sum)."""
        return self.metric("DuplicatesDropped", period=period, job_name=job_name)

    def metric_quarantine_ratio(self, *, period: Duration | None = None, job_name: str | None = None) -> cloudwatch.Metric:
        """The quarantined share of a run's lines, the figure `max_quarantine_ratio` limits (Maximum over the runs)."""
        return self.metric("QuarantineRatio", statistic="Maximum", period=period, job_name=job_name)

    def add_job_definition(
        self,
        scope: Construct,
        construct_id: str,
        *,
        description: str,
        default_arguments: Mapping[str, str] | None = None,
        max_concurrent_runs: int | None = None,
    ) -> glue.CfnJob:
        """A second job definition of this job in `scope`: the same script, extra files, role, worker
        configuration, timeout, security configuration and arguments, under a name of its own.

        Why: Glue's job state-change events name the job but not who started the run, so a form that reports its
        failures through EventBridge runs a job definition of its own, and its rules match only its own runs. A job
        definition costs nothing while it does not run.

        :param description: of the new job definition.
        :param default_arguments: added to (or replacing) this job's default arguments. Default: none.
        :param max_concurrent_runs: Default: this job's.
        """
        if max_concurrent_runs is not None:
            check_positive("max_concurrent_runs", max_concurrent_runs)
        source = self.job.node.default_child
        assert isinstance(source, glue.CfnJob)
        arguments = {**dict(source.default_arguments or {}), **dict(default_arguments or {})}  # type: ignore[arg-type]
        execution = (
            glue.CfnJob.ExecutionPropertyProperty(max_concurrent_runs=max_concurrent_runs)
            if max_concurrent_runs is not None
            else source.execution_property
        )
        return glue.CfnJob(
            scope,
            construct_id,
            role=source.role,
            command=source.command,
            description=description,
            default_arguments=arguments,
            glue_version=source.glue_version,
            worker_type=source.worker_type,
            number_of_workers=source.number_of_workers,
            timeout=source.timeout,
            max_retries=source.max_retries,
            security_configuration=source.security_configuration,
            execution_property=execution,
        )
