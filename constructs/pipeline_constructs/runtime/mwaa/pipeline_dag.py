"""The pipeline's Airflow DAG: crawl -> clean -> load for one uploaded object, started by the trigger Lambda.

Deployed by `pipeline_constructs.forms.mwaa.MwaaPipeline` into the environment's DAG folder, beside
`pipeline_steps.py` (the step description) and `pipeline_dag_config.json` (resource names, load SQL, timeouts: written
at deploy time, never hard-coded here). A run's conf carries the object: {"bucket", "key", "version_id"}.

Parse time stays small: the top level reads one JSON file and imports the three operator classes; AWS clients are
created only when a task runs.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, chain
from pipeline_steps import CONFIG_FILE_NAME, FORM_NAME, Step, describe_steps, failure_message

log = logging.getLogger(__name__)

CONFIG = json.loads((Path(__file__).resolve().parent / CONFIG_FILE_NAME).read_text(encoding="utf-8"))
DAG_ID = CONFIG["dag_id"]


def notify_failure(context: Any) -> None:
    """on_failure_callback of every task: one SNS message per failed run (only the failing task calls it; the tasks
    after it end as upstream_failed without a callback)."""
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    dag_run = context["dag_run"]
    task_id = context["ti"].task_id
    message = failure_message(conf=dag_run.conf, airflow_run_id=dag_run.run_id, failed_step=task_id, error=context.get("exception"))
    SnsHook(aws_conn_id=None, region_name=CONFIG["region"]).publish_to_target(
        target_arn=CONFIG["topic_arn"],
        message=json.dumps(message),
        subject=f"{CONFIG['dataset']} pipeline (mwaa) failed at {task_id}"[:100],
    )
    log.info("failure of %s reported to %s", task_id, CONFIG["topic_arn"])


def _operator(step: Step) -> Any:
    module, _, name = step.operator.rpartition(".")
    operator_class = getattr(import_module(module), name)
    return operator_class(
        task_id=step.task_id,
        retries=step.retries,
        retry_delay=timedelta(seconds=step.retry_delay_seconds),
        retry_exponential_backoff=True,
        max_retry_delay=timedelta(seconds=step.max_retry_delay_seconds),
        execution_timeout=timedelta(seconds=step.execution_timeout_seconds),
        on_failure_callback=notify_failure,
        doc_md=step.doc,
        **step.arguments,
    )


with DAG(
    dag_id=DAG_ID,
    description=f"{CONFIG['dataset']}: crawl, clean and load one uploaded object",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=int(CONFIG["max_active_runs"]),
    dagrun_timeout=timedelta(seconds=int(CONFIG["dagrun_timeout_seconds"])),
    is_paused_upon_creation=False,
    render_template_as_native_obj=False,
    tags=[FORM_NAME, CONFIG["dataset"]],
    doc_md=__doc__,
) as dag:
    chain(*[_operator(step) for step in describe_steps(CONFIG)])
