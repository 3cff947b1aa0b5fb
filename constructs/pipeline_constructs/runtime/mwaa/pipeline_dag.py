"""The pipeline's Airflow DAG: crawl -> clean -> load for one uploaded object, started by the trigger Lambda; or, with
a `schedule` in its configuration, on the clock: claim what is pending -> crawl -> clean -> load, all of it at once.

Deployed by `pipeline_constructs.forms.mwaa.MwaaPipeline` into the environment's DAG folder, beside
`pipeline_steps.py` (the step description), `dag_ledger.py` (the upload ledger writes) and `pipeline_dag_config.json`
(resource names, load SQL, timeouts, the ledger table: written at deploy time, never hard-coded here). A run's conf
carries the object: {"bucket", "key", "version_id"}.

On a schedule (`schedule`: {cron, time_zone}): the DAG's own timetable (CronTriggerTimetable in the configured zone,
no catch-up, one active run, so two scheduled runs never overlap). Its first task (`claim_uploads`) takes every
pending upload in the ledger (`dag_ledger.ScheduledLedger`); nothing pending and the run ends at once, the later
tasks skipped. Otherwise one crawl, one clean job run over all of them, one load; each upload ends with its own
outcome, and a failure is recorded on every upload the run still holds, for the next run to retake.

With two load targets (`load` a list in the configuration): one load task per target after the rows check
(`load_athena`, `load_redshift`), in parallel, each one at a time across runs; each records its target's outcome in
the ledger and is skipped when the ledger shows its target loaded, so clearing the failed task of a run (or a new
run) loads only the target that failed (dag_ledger.DagLedger.target_load). A failed load's message names it
(failed_step `load_<target>`, cause "load into <target> failed: ...").

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

from airflow.sdk import DAG, CronTriggerTimetable
from dag_ledger import DagLedger, ScheduledLedger  # type: ignore[import-not-found]  # beside the DAG in its folder
from pipeline_steps import (
    CLAIM_TASK_ID,
    CONFIG_FILE_NAME,
    FORM_NAME,
    ROWS_CHECK_TASK_ID,
    Step,
    describe_steps,
    failure_message,
    is_scheduled,
    parallel_loads,
)

try:
    from pipeline_constructs.runtime.pipeline_plan import CLEAN
except ImportError:  # beside the DAG, shipped as a top-level module
    from pipeline_plan import CLEAN  # type: ignore[import-not-found,no-redef]

log = logging.getLogger(__name__)

CONFIG = json.loads((Path(__file__).resolve().parent / CONFIG_FILE_NAME).read_text(encoding="utf-8"))
DAG_ID = CONFIG["dag_id"]
SCHEDULED = is_scheduled(CONFIG)
if SCHEDULED and parallel_loads(CONFIG):
    raise ValueError(f"{DAG_ID}: a scheduled DAG loads one target (the configuration's `load` is a list of {len(CONFIG['load'])})")
LEDGER: DagLedger | None = ScheduledLedger(CONFIG) if SCHEDULED else DagLedger(CONFIG) if CONFIG.get("ledger_table") is not None else None


TARGET_OF_TASK = {step.task_id: step.target for step in describe_steps(CONFIG) if step.target is not None}
"""The per-target load tasks (two targets) and their target."""


def notify_failure(context: Any) -> None:
    """on_failure_callback of every task: the failure into the ledger, then one SNS message per failed run (only the
    failing task calls it; the tasks after it end as upstream_failed without a callback). A ledger write that fails
    is logged and the message still goes out."""
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    dag_run = context["dag_run"]
    task_id = context["ti"].task_id
    uploads = LEDGER.claimed_uris(context) if isinstance(LEDGER, ScheduledLedger) else None
    target = TARGET_OF_TASK.get(task_id)
    message = failure_message(
        conf=dag_run.conf,
        airflow_run_id=dag_run.run_id,
        failed_step=task_id,
        error=context.get("exception"),
        uploads=uploads,
        target=target,
    )
    if LEDGER is not None:
        try:
            if target is not None:  # one of several targets: its outcome; the last load to end fails the record
                LEDGER.target_failed(context, target, cause=message["cause"])
            else:
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
    if step.target is not None:  # one of several load targets: its own outcome, skipped when already loaded
        return {"pre_execute": LEDGER.target_load(step.target), "post_execute": LEDGER.target_loaded(step.target)}
    hooks: dict[str, Any]
    if isinstance(LEDGER, ScheduledLedger):  # the claim took the uploads; the clean job is told which ones it holds
        hooks = {"pre_execute": LEDGER.clean_sources(step.task_id) if step.task_id == CLEAN else LEDGER.step(step.task_id)}
    else:
        hooks = {"pre_execute": LEDGER.take(step.task_id) if step.task_id == first else LEDGER.step(step.task_id)}
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


def _claim() -> Any:
    """A scheduled run's first task: claim what is pending; nothing -> every later task is skipped (the run ends)."""
    from airflow.providers.standard.operators.python import ShortCircuitOperator

    assert isinstance(LEDGER, ScheduledLedger)
    return ShortCircuitOperator(
        task_id=CLAIM_TASK_ID,
        python_callable=LEDGER.claim,
        do_xcom_push=False,  # the claim pushes its own XCom (CLAIM_XCOM_KEY) before the inbox messages are deleted
        retries=int(CONFIG["retries"]),
        retry_delay=timedelta(seconds=int(CONFIG["retry_delay_seconds"])),
        retry_exponential_backoff=True,
        max_retry_delay=timedelta(seconds=int(CONFIG["max_retry_delay_seconds"])),
        execution_timeout=timedelta(minutes=15),
        on_failure_callback=notify_failure,
        doc_md="Take every pending upload (requested, failed to retry, the inbox) in the ledger; none: the run ends here.",
    )


def _timetable() -> Any:
    """The DAG's schedule: None (runs are started per upload), or the configured cron in its time zone."""
    if not SCHEDULED:
        return None
    return CronTriggerTimetable(CONFIG["schedule"]["cron"], timezone=CONFIG["schedule"]["time_zone"])


with DAG(
    dag_id=DAG_ID,
    description=f"{CONFIG['dataset']}: "
    + (
        f"claim, crawl, clean and load every pending upload ({CONFIG['schedule']['cron']}, {CONFIG['schedule']['time_zone']})"
        if SCHEDULED
        else "crawl, clean and load one uploaded object"
    ),  # fmt: skip
    schedule=_timetable(),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    # On a schedule one run at a time: a tick while a run is still going waits; two runs never overlap.
    max_active_runs=1 if SCHEDULED else int(CONFIG["max_active_runs"]),
    dagrun_timeout=timedelta(seconds=int(CONFIG["dagrun_timeout_seconds"])),
    is_paused_upon_creation=False,
    render_template_as_native_obj=False,
    tags=[FORM_NAME, CONFIG["dataset"]],
    doc_md=__doc__,
) as dag:
    steps = describe_steps(CONFIG)
    planned = [step.task_id for step in steps if step.task_id != ROWS_CHECK_TASK_ID]
    operators = {step.task_id: _operator(step, planned[0], planned[-1]) for step in steps}
    for step in steps:  # crawl -> clean -> rows check -> the load (or one load per target, side by side)
        for upstream in step.upstream:
            operators[upstream] >> operators[step.task_id]
    if SCHEDULED:
        _claim() >> operators[steps[0].task_id]
