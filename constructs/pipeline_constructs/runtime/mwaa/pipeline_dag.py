"""The pipeline's Airflow DAG: crawl -> clean -> load for one uploaded object, started by the trigger Lambda.

Deployed by `pipeline_constructs.forms.mwaa.MwaaPipeline` into the environment's DAG folder, beside
`pipeline_steps.py` (the step description), `dag_ledger.py` (the upload ledger writes) and `pipeline_dag_config.json`
(resource names, load SQL, timeouts, the ledger table: written at deploy time, never hard-coded here). A run's conf
carries the object: {"bucket", "key", "version_id"}.

Parse time stays small: the top level reads one JSON file and imports the operator classes; AWS clients are created
only when a task runs.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, chain
from dag_ledger import DagLedger  # type: ignore[import-not-found]  # beside the DAG in its folder
from pipeline_steps import CONFIG_FILE_NAME, FORM_NAME, ROWS_CHECK_TASK_ID, Step, describe_steps, failure_message

log = logging.getLogger(__name__)

CONFIG = json.loads((Path(__file__).resolve().parent / CONFIG_FILE_NAME).read_text(encoding="utf-8"))
DAG_ID = CONFIG["dag_id"]
LEDGER = DagLedger(CONFIG) if CONFIG.get("ledger_table") is not None else None


def notify_failure(context: Any) -> None:
    """on_failure_callback of every task: the failure into the ledger, then one SNS message per failed run (only the
    failing task calls it; the tasks after it end as upstream_failed without a callback). A ledger write that fails
    is logged and the message still goes out."""
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    dag_run = context["dag_run"]
    task_id = context["ti"].task_id
    message = failure_message(conf=dag_run.conf, airflow_run_id=dag_run.run_id, failed_step=task_id, error=context.get("exception"))
    if LEDGER is not None:
        try:
            LEDGER.fail(context, error=message["error"], cause=message["cause"])
        except Exception:
            log.exception("the ledger did not record the failure of %s at %s; the alert goes out all the same", message["object"], task_id)
    SnsHook(aws_conn_id=None, region_name=CONFIG["region"]).publish_to_target(
        target_arn=CONFIG["topic_arn"],
        message=json.dumps(message),
        subject=f"{CONFIG['dataset']} pipeline (mwaa) failed at {task_id}"[:100],
    )
    log.info("failure of %s reported to %s", task_id, CONFIG["topic_arn"])


def _ledger_hooks(step: Step, first: str, last: str) -> dict[str, Any]:
    """The ledger writes of a task (dag_ledger): the first step takes the upload, each later one records itself, the
    last one's success ends it loaded, the rows check's skip ends it without a load."""
    if LEDGER is None:
        return {}
    if step.task_id == ROWS_CHECK_TASK_ID:
        return {"on_skipped_callback": LEDGER.outcome_without_load}
    hooks: dict[str, Any] = {"pre_execute": LEDGER.take(step.task_id) if step.task_id == first else LEDGER.step(step.task_id)}
    if step.task_id == last:
        hooks["post_execute"] = LEDGER.loaded(step.task_id)
    return hooks


def _operator(step: Step, first: str, last: str) -> Any:
    module, _, name = step.operator.rpartition(".")
    operator_class = getattr(import_module(module), name)
    # The load runs one at a time across runs (max_active_tis_per_dag=1): a later run's load waits, scheduled, until
    # the running one ends; crawl and clean have no limit of their own.
    limits = {} if step.max_active_tis_per_dag is None else {"max_active_tis_per_dag": step.max_active_tis_per_dag}
    return operator_class(
        task_id=step.task_id,
        retries=step.retries,
        retry_delay=timedelta(seconds=step.retry_delay_seconds),
        retry_exponential_backoff=True,
        max_retry_delay=timedelta(seconds=step.max_retry_delay_seconds),
        execution_timeout=timedelta(seconds=step.execution_timeout_seconds),
        on_failure_callback=notify_failure,
        doc_md=step.doc,
        **_ledger_hooks(step, first, last),
        **limits,
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
    steps = describe_steps(CONFIG)
    planned = [step.task_id for step in steps if step.task_id != ROWS_CHECK_TASK_ID]
    chain(*[_operator(step, planned[0], planned[-1]) for step in steps])
