"""What both Airflow forms (MWAA and MWAA Serverless) deploy beside their steps: the configuration
`runtime/mwaa/pipeline_steps.py` renders the plan from, and the access its one extra task (the rows check) needs.

One builder for both forms, so the DAG and the serverless YAML take the same names, SQL, timings and rows check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Stack, aws_iam as iam

from ..catalog import PipelineCatalog
from ..clean_job import CleanJob
from ..runtime.mwaa.pipeline_steps import RUN_ID_MARKER
from ..runtime.pipeline_plan import describe_pipeline
from ..storage import PipelineStorage
from ..targets.load_target import LoadTarget, LoadTargets, load_targets
from ..targets.redshift import RedshiftTarget

RUNTIME = Path(__file__).resolve().parent.parent / "runtime"
SHARED_STEP_MODULES = (RUNTIME / "pipeline_plan.py", RUNTIME / "upload_ledger.py")
"""Imported by pipeline_steps.py beside the DAG: every DAG folder ships them."""
SCHEDULED_STEP_MODULES = (RUNTIME / "workflow_inputs.py",)
"""Imported by dag_ledger.py beside a DAG that starts on a schedule (the claim): only such a DAG folder ships them."""
DAGRUN_TIMEOUT_SECONDS = 4 * 3600
"""A whole run: the three steps' timeouts (8,100 s) and room for a retry."""


def airflow_step_settings(
    construct: Any,
    *,
    dag_id: str,
    airflow_version: str,
    storage: PipelineStorage,
    catalog: PipelineCatalog,
    clean_job: CleanJob,
    target: LoadTargets,
    topic_arn: str,
    max_active_runs: int,
    task_retries: int,
    max_timeout_seconds: int | None = None,
) -> dict[str, Any]:
    """The step configuration: resource names, the load, the rows check, and each step's timeout, retry delay and
    backoff cap from the pipeline plan (a timeout above `max_timeout_seconds`, the service's task limit, is capped).
    `load` is one target's settings, or a list of them for several targets (one load task each)."""
    steps = describe_pipeline()
    timeouts = {step.name: step.timing.timeout_seconds for step in steps}
    if max_timeout_seconds is not None:
        timeouts = {name: min(seconds, max_timeout_seconds) for name, seconds in timeouts.items()}
    delays = {step.timing.retry_delay_seconds for step in steps}
    max_delays = {step.timing.max_retry_delay_seconds for step in steps}
    if len(delays) != 1 or len(max_delays) != 1:  # the Airflow config holds one delay for every task
        raise ValueError(f"the plan's retry delays differ between steps ({sorted(delays)}, {sorted(max_delays)}): Airflow takes one")
    partition_name, _ = clean_job.contract.partition_column()
    return {
        "dag_id": dag_id,
        "dataset": clean_job.contract.name,
        "airflow_version": airflow_version,
        "region": Stack.of(construct).region,
        "crawler_name": catalog.crawler_name,
        "clean_job_name": clean_job.job_name,
        "topic_arn": topic_arn,
        "load": _load_configuration(target),
        "curated_rows": {
            "bucket": storage.curated_bucket.bucket_name,
            "prefix": rows_prefix(clean_job),
            "partition": partition_name,
        },
        "max_active_runs": max_active_runs,
        "retries": task_retries,
        "retry_delay_seconds": delays.pop(),
        "max_retry_delay_seconds": max_delays.pop(),
        "poll_interval_seconds": 30,
        "timeouts_seconds": timeouts,
        "dagrun_timeout_seconds": DAGRUN_TIMEOUT_SECONDS,
    }


def _load_configuration(target: LoadTargets) -> dict[str, Any] | list[dict[str, Any]]:
    """One target: its settings, as before; several: a list of them, in the given order."""
    targets = load_targets(target)
    if len(targets) == 1:
        return airflow_load_settings(targets[0])
    return [airflow_load_settings(each) for each in targets]


def rows_prefix(clean_job: CleanJob) -> str:
    """Where a run's curated rows go: `<prefix>run_id=<run id>/<partition>=<value>/`."""
    return f"{clean_job.curated_prefix}run_id="


def grant_rows_check(role: iam.IGrantable, storage: PipelineStorage, clean_job: CleanJob) -> None:
    """The rows check lists the run's own folder of the curated bucket, nothing else (no object is read)."""
    role.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[storage.curated_bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{rows_prefix(clean_job)}*"]}},
        )
    )


def airflow_load_settings(target: LoadTarget) -> dict[str, Any]:
    """The `load` part of the step configuration: the target's kind, workgroup, database and its SQL with the run id
    left as RUN_ID_MARKER."""
    if isinstance(target, RedshiftTarget):
        return {
            "target": "redshift",
            "workgroup": target.workgroup_name,
            "database": target.database_name,
            "sqls": target.load_statements(RUN_ID_MARKER),
        }
    return {
        "target": "athena",
        "workgroup": target.workgroup_name,
        "database": target.database_name,
        "sql": target.merge_sql(RUN_ID_MARKER),
    }
