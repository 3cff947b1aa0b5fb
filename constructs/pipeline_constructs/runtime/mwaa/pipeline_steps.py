"""The pipeline's steps for Airflow: `pipeline_plan.describe_pipeline()` rendered as operators. The Python DAG builds
its operators from this list, and the MWAA Serverless YAML is written from the same list.

Each step of the plan becomes one task with the same name; a step that runs only when rows were curated (the load)
gets a guard task before it (`find_curated_rows`), which skips it, and only it, when the clean job curated no row.
A step the plan runs one at a time (the load) gets `max_active_tis_per_dag=1`: the task-level limit across all runs
of the DAG, which needs nothing created in the environment (a pool must exist first: Airflow leaves a task whose
pool does not exist unscheduled, and MWAA Serverless offers no way to create one).

With two load targets (the configuration's `load` is a list) the load is one task per target after the rows check,
`load_athena` and `load_redshift`, each with its own limit of one: the two targets load in parallel, two loads into
one target never do.

Standard library only: Airflow's DAG processor imports this module beside the DAG file (the DAG folder is on
`sys.path`, with pipeline_plan.py and upload_ledger.py beside it), and the construct library imports it without
Airflow installed. Everything deployment-specific (resource names, the load SQL, timeouts) comes from the JSON
configuration the construct deploys beside the DAG (`CONFIG_FILE_NAME`); nothing here names a resource.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

try:
    from pipeline_constructs.runtime.pipeline_plan import CLEAN, CRAWL, LOAD, ROWS_CURATED, PipelineStep, describe_pipeline
except ImportError:  # beside the DAG, shipped as a top-level module
    from pipeline_plan import CLEAN, CRAWL, LOAD, ROWS_CURATED, PipelineStep, describe_pipeline  # type: ignore[import-not-found,no-redef]

CONFIG_FILE_NAME = "pipeline_dag_config.json"
FORM_NAME = "mwaa"

# Airflow run ids allow [A-Za-z0-9_.~:+-]; the clean job writes the run id into S3 partition paths and the load SQL
# quotes it, which allow [A-Za-z0-9_.-] (see targets.load_sql.RUN_ID_PATTERN): '~', ':' and '+' become '-'.
RUN_ID_TEMPLATE = "{{ dag_run.run_id | replace('~', '-') | replace(':', '-') | replace('+', '-') }}"
# The uploaded object, from the run's conf (set by the trigger Lambda: bucket, key, version_id).
OBJECT_TEMPLATE = "s3://{{ dag_run.conf['bucket'] }}/{{ dag_run.conf['key'] }}"
# A JSON array of one URI, as the other forms pass it, so an object key holding a comma stays one URI.
SOURCE_URIS_TEMPLATE = "{{ ['s3://' ~ dag_run.conf['bucket'] ~ '/' ~ dag_run.conf['key']] | tojson }}"
# The object's version as the ledger keys it (`upload_ledger.version_of`), one per URI: the trigger's version id, or
# 'null' when it names none (an empty entry would be dropped by the clean job's parser).
SOURCE_VERSIONS_TEMPLATE = "{{ [dag_run.conf.get('version_id') or 'null'] | tojson }}"
# Placeholder the construct writes into the load SQL; the DAG replaces it with RUN_ID_TEMPLATE.
RUN_ID_MARKER = "__pipeline_run_id__"

_UNSAFE_RUN_ID_CHARS = re.compile(r"[~:+]")

CLAIM_TASK_ID = "claim_uploads"
"""A scheduled run's first task: takes what is pending (dag_ledger.ScheduledLedger.claim); nothing -> the run ends."""
CLAIM_XCOM_KEY = "claimed_uploads"
"""The claim task's XCom: the uploads the run took, [{bucket, key, version_id, etag, uri, version}], pushed before the
inbox messages are deleted, so every later task (and each of its retries) reads the same claim."""
SETTLED_SOURCES = "(the uploads this run holds, set by the task's pre_execute)"
"""--source_uris and --source_versions of a scheduled run's clean task until its pre_execute names the uploads."""

ROWS_CHECK_TASK_ID = "find_curated_rows"
# The guard skips the load when its one listing finds no partition folder (sensor timeout 0, soft_fail). soft_fail
# also skips on the task's own execution timeout, so that timeout sits far above botocore's connect and read timeouts
# and retries (a few minutes at worst): an S3 call that hangs fails the task, it never passes for "no rows".
ROWS_CHECK_TIMEOUT_SECONDS = 1_800


@dataclass(frozen=True)
class Step:
    """One task: the operator (dotted path) and its arguments, with the retry and timeout settings every step has."""

    task_id: str
    operator: str
    arguments: dict[str, Any]
    retries: int
    retry_delay_seconds: int
    max_retry_delay_seconds: int
    execution_timeout_seconds: int
    doc: str = ""
    upstream: tuple[str, ...] = field(default_factory=tuple)
    max_active_tis_per_dag: int | None = None
    """1 for a step the plan runs one at a time (the load): Airflow's scheduler queues this task of one run only
    while no other run's instance of it is active; None: no limit of its own."""
    target: str | None = None
    """The load target of a per-target load task (two targets: 'athena' or 'redshift'); None otherwise."""


def is_scheduled(config: Mapping[str, Any]) -> bool:
    """True when the deployed configuration has a `schedule` (the DAG starts on the clock and claims its uploads)."""
    return config.get("schedule") is not None


def load_settings(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The configuration's load targets: `load` is one target's settings, or a list of them (parallel loads)."""
    load = config["load"]
    return list(load) if isinstance(load, list) else [load]


def parallel_loads(config: Mapping[str, Any]) -> bool:
    """True when the configuration loads more than one target (one load task per target)."""
    return len(load_settings(config)) > 1


def load_task_id(target: str) -> str:
    """The task of one target's load when there are several: load_athena, load_redshift."""
    return f"{LOAD}_{target}"


def pipeline_run_id(airflow_run_id: str) -> str:
    """The run id the clean job and the load see, the same value RUN_ID_TEMPLATE renders."""
    return _UNSAFE_RUN_ID_CHARS.sub("-", airflow_run_id)


def describe_steps(config: Mapping[str, Any]) -> list[Step]:
    """The plan's steps (crawl -> clean -> [find_curated_rows] -> load) as operators, from the deployed configuration.
    Raises KeyError naming a missing setting."""
    common = {"aws_conn_id": None, "region_name": config["region"]}
    poll = int(config["poll_interval_seconds"])
    steps: list[Step] = []
    for planned in describe_pipeline():
        upstream = (steps[-1].task_id,) if steps else ()
        if planned.runs_when == ROWS_CURATED:
            guard = _rows_check(config, planned, common, upstream)
            steps.append(guard)
            upstream = (guard.task_id,)
        timeout = int(config["timeouts_seconds"][planned.name])
        if planned.name == LOAD and parallel_loads(config):  # one task per target, side by side after the guard
            for settings in load_settings(config):
                target = str(settings["target"])
                operator, arguments = _load_target(settings, common, poll)
                doc = f"{planned.doc} Into {target}; skipped when the ledger says {target} is loaded (a re-run loads only the rest)."
                task = _task(config, load_task_id(target), operator, arguments, timeout, doc, upstream)
                steps.append(replace(task, max_active_tis_per_dag=1 if planned.one_at_a_time else None, target=target))
            continue
        operator, arguments = _OPERATORS[planned.name](config, common, poll)
        task = _task(config, planned.name, operator, arguments, timeout, planned.doc, upstream)
        steps.append(replace(task, max_active_tis_per_dag=1) if planned.one_at_a_time else task)
    return steps


def _task(
    config: Mapping[str, Any], task_id: str, operator: str, arguments: dict[str, Any], timeout: int, doc: str, upstream: tuple[str, ...]
) -> Step:
    return Step(
        task_id=task_id,
        operator=operator,
        arguments=arguments,
        retries=int(config["retries"]),
        retry_delay_seconds=int(config["retry_delay_seconds"]),
        max_retry_delay_seconds=int(config["max_retry_delay_seconds"]),
        execution_timeout_seconds=timeout,
        doc=doc,
        upstream=upstream,
    )


def _crawl(config: Mapping[str, Any], common: dict[str, Any], poll: int) -> tuple[str, dict[str, Any]]:
    # Airflow 3.3.1 ships provider 9.34, whose GlueCrawlerRunOperator waits for a crawl another upload started
    # (fail_on_already_running=False); 3.2.1's provider lacks it: the deprecated GlueCrawlerOperator fails on a
    # running crawler there, and the task's retries (with backoff) start a crawl once it has finished.
    if str(config["airflow_version"]).startswith("3.2."):
        operator = "airflow.providers.amazon.aws.operators.glue_crawler.GlueCrawlerOperator"
        arguments: dict[str, Any] = {"config": {"Name": config["crawler_name"]}, "poll_interval": poll, **common}
    else:
        operator = "airflow.providers.amazon.aws.operators.glue_crawler.GlueCrawlerRunOperator"
        arguments = {"crawler_name": config["crawler_name"], "fail_on_already_running": False, "poll_interval": poll, **common}
    return operator, {**arguments, "deferrable": False, "wait_for_completion": True}


def _clean(config: Mapping[str, Any], common: dict[str, Any], poll: int) -> tuple[str, dict[str, Any]]:
    # The same arguments the Step Functions form passes: the object as a JSON array of one URI, the run id, and with a
    # ledger (`ledger_table` in the configuration) where the job writes the upload's counts. A scheduled run names
    # the uploads it holds (its pre_execute fills them in) and has the job settle each one (rejected, empty and
    # quarantined end there, the rest stay for the load; a rejected file is alerted once and fails nothing).
    script_args = {"--source_uris": SOURCE_URIS_TEMPLATE, "--run_id": RUN_ID_TEMPLATE}
    if is_scheduled(config):
        script_args = {
            "--source_uris": SETTLED_SOURCES,
            "--source_versions": SETTLED_SOURCES,
            "--run_id": RUN_ID_TEMPLATE,
            "--settle_uploads": "true",
            "--alert_topic_arn": str(config["topic_arn"]),
            "--ledger_table": str(config["ledger_table"]),
            "--ledger_ttl_days": str(config["ledger_ttl_days"]),
            "--pipeline_form": FORM_NAME,
        }
    elif config.get("ledger_table") is not None:
        script_args.update(
            {
                "--ledger_table": str(config["ledger_table"]),
                "--ledger_ttl_days": str(config["ledger_ttl_days"]),
                "--pipeline_form": FORM_NAME,
                "--source_versions": SOURCE_VERSIONS_TEMPLATE,
            }
        )
    return "airflow.providers.amazon.aws.operators.glue.GlueJobOperator", {
        "job_name": config["clean_job_name"],
        "script_args": script_args,
        "wait_for_completion": True,
        "deferrable": False,
        "job_poll_interval": poll,
        "stop_job_run_on_kill": True,
        **common,
    }


def _load(config: Mapping[str, Any], common: dict[str, Any], poll: int) -> tuple[str, dict[str, Any]]:
    return _load_target(config["load"], common, poll)


def _load_target(load_config: Mapping[str, Any], common: dict[str, Any], poll: int) -> tuple[str, dict[str, Any]]:
    if load_config["target"] == "athena":
        return "airflow.providers.amazon.aws.operators.athena.AthenaOperator", {
            "query": load_config["sql"].replace(RUN_ID_MARKER, RUN_ID_TEMPLATE),
            "database": load_config["database"],
            "workgroup": load_config["workgroup"],
            "sleep_time": poll,
            "deferrable": False,
            **common,
        }
    if load_config["target"] == "redshift":
        return "airflow.providers.amazon.aws.operators.redshift_data.RedshiftDataOperator", {
            # A list is sent as one BatchExecuteStatement: one transaction (COPY into staging, then MERGE).
            "sql": [statement.replace(RUN_ID_MARKER, RUN_ID_TEMPLATE) for statement in load_config["sqls"]],
            "database": load_config["database"],
            "workgroup_name": load_config["workgroup"],
            "statement_name": "load-" + RUN_ID_TEMPLATE,
            "poll_interval": poll,
            "wait_for_completion": True,
            "deferrable": False,
            **common,
        }
    raise ValueError(f"load.target={load_config['target']!r}: use 'athena' or 'redshift'")


_OPERATORS = {CRAWL: _crawl, CLEAN: _clean, LOAD: _load}


def _rows_check(config: Mapping[str, Any], guarded: PipelineStep, common: dict[str, Any], upstream: tuple[str, ...]) -> Step:
    """The guard before a step that runs only when rows were curated: one listing of the run's partition folders.
    None found -> the guard and the guarded step end `skipped`, the run succeeds. The same check as the Step
    Functions form's Find Curated Rows (a Redshift COPY of an empty prefix fails with "no files found")."""
    rows = config["curated_rows"]
    return _task(
        config,
        ROWS_CHECK_TASK_ID,
        "airflow.providers.amazon.aws.sensors.s3.S3KeySensor",
        {
            "bucket_name": rows["bucket"],
            "bucket_key": f"{rows['prefix']}{RUN_ID_TEMPLATE}/{rows['partition']}=*",
            "wildcard_match": True,
            "mode": "poke",
            "timeout": 0,
            "poke_interval": 1,
            "soft_fail": True,
            "deferrable": False,
            **common,
        },
        ROWS_CHECK_TIMEOUT_SECONDS,
        f"Did the clean job curate any row? If not, skip {guarded.name} (nothing to load, nothing failed).",
        upstream,
    )


LOAD_FAILED = "LoadFailed"
"""The error of a failed per-target load (two targets), in its message and the ledger."""
MESSAGE_URIS = 20
"""A scheduled run's failure message names at most this many of its uploads (and how many there are)."""


def failure_message(
    *,
    conf: Mapping[str, Any] | None,
    airflow_run_id: str,
    failed_step: str,
    error: BaseException | str | None,
    uploads: list[str] | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    """The SNS message of a failed run: the same fields the other forms send. `uploads`: the URIs a scheduled run
    claimed (its `object` names them instead of the conf's object). `target`: the failed step is that target's load
    (two targets): error LoadFailed, the cause starting "load into <target> failed: "."""
    conf = conf or {}
    bucket, key = conf.get("bucket"), conf.get("key")
    exception_name = type(error).__name__ if isinstance(error, BaseException) else "TaskFailed"
    named = f"s3://{bucket}/{key}" if bucket and key else None
    if uploads:
        more = f" and {len(uploads) - MESSAGE_URIS} more" if len(uploads) > MESSAGE_URIS else ""
        named = f"{len(uploads)} uploads of a scheduled run: " + ", ".join(uploads[:MESSAGE_URIS]) + more
    cause = str(error) if error is not None else "the task failed without an exception (killed, or timed out outside the task)"
    if target is not None:
        exception_name, cause = LOAD_FAILED, f"load into {target} failed: {exception_name}: {cause}"
    return {
        "pipeline": FORM_NAME,
        "object": named,
        "version_id": conf.get("version_id"),
        "run_id": pipeline_run_id(airflow_run_id),
        "failed_step": failed_step,
        "error": exception_name,
        "cause": cause,
    }
