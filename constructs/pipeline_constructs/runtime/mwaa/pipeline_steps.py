"""The pipeline's steps for Airflow, described once as data: the Python DAG builds its operators from this description
(and a dag-factory YAML workflow can be written from the same description).

Standard library only: Airflow's DAG processor imports this module beside the DAG file (the DAG folder is on
`sys.path`), and the construct library imports it without Airflow installed. Everything deployment-specific (resource
names, the load SQL, timeouts) comes from the JSON configuration the construct deploys beside the DAG
(`CONFIG_FILE_NAME`); nothing here names a resource.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CONFIG_FILE_NAME = "pipeline_dag_config.json"
FORM_NAME = "mwaa"

# Airflow run ids allow [A-Za-z0-9_.~:+-]; the clean job writes the run id into S3 partition paths and the load SQL
# quotes it, which allow [A-Za-z0-9_.-] (see targets.load_sql.RUN_ID_PATTERN): '~', ':' and '+' become '-'.
RUN_ID_TEMPLATE = "{{ dag_run.run_id | replace('~', '-') | replace(':', '-') | replace('+', '-') }}"
# The uploaded object, from the run's conf (set by the trigger Lambda: bucket, key, version_id).
OBJECT_TEMPLATE = "s3://{{ dag_run.conf['bucket'] }}/{{ dag_run.conf['key'] }}"
# A JSON array of one URI, as the other forms pass it, so an object key holding a comma stays one URI.
SOURCE_URIS_TEMPLATE = "{{ ['s3://' ~ dag_run.conf['bucket'] ~ '/' ~ dag_run.conf['key']] | tojson }}"
# Placeholder the construct writes into the load SQL; the DAG replaces it with RUN_ID_TEMPLATE.
RUN_ID_MARKER = "__pipeline_run_id__"

_UNSAFE_RUN_ID_CHARS = re.compile(r"[~:+]")


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


def pipeline_run_id(airflow_run_id: str) -> str:
    """The run id the clean job and the load see, the same value RUN_ID_TEMPLATE renders."""
    return _UNSAFE_RUN_ID_CHARS.sub("-", airflow_run_id)


def describe_steps(config: Mapping[str, Any]) -> list[Step]:
    """crawl -> clean -> load, from the deployed configuration. Raises KeyError naming a missing setting."""
    region = config["region"]
    retries = int(config["retries"])
    delay = int(config["retry_delay_seconds"])
    max_delay = int(config["max_retry_delay_seconds"])
    timeouts = config["timeouts_seconds"]
    poll = int(config["poll_interval_seconds"])
    common = {"aws_conn_id": None, "region_name": region}

    # Airflow 3.3.1 ships provider 9.34, whose GlueCrawlerRunOperator waits for a crawl another upload started
    # (fail_on_already_running=False); 3.2.1's provider lacks it: the deprecated GlueCrawlerOperator fails on a
    # running crawler there, and the task's retries (with backoff) start a crawl once it has finished.
    if str(config["airflow_version"]).startswith("3.2."):
        crawl_operator = "airflow.providers.amazon.aws.operators.glue_crawler.GlueCrawlerOperator"
        crawl_arguments: dict[str, Any] = {"config": {"Name": config["crawler_name"]}, "poll_interval": poll, **common}
    else:
        crawl_operator = "airflow.providers.amazon.aws.operators.glue_crawler.GlueCrawlerRunOperator"
        crawl_arguments = {"crawler_name": config["crawler_name"], "fail_on_already_running": False, "poll_interval": poll, **common}
    crawl = Step(
        task_id="crawl",
        operator=crawl_operator,
        arguments={**crawl_arguments, "deferrable": False, "wait_for_completion": True},
        retries=retries,
        retry_delay_seconds=delay,
        max_retry_delay_seconds=max_delay,
        execution_timeout_seconds=int(timeouts["crawl"]),
        doc="Refresh the raw table's schema; waits for a crawl another upload started instead of failing.",
    )
    clean = Step(
        task_id="clean",
        operator="airflow.providers.amazon.aws.operators.glue.GlueJobOperator",
        arguments={
            "job_name": config["clean_job_name"],
            # The same arguments the Step Functions form passes: the object as a JSON array of one URI, the run id.
            "script_args": {"--source_uris": SOURCE_URIS_TEMPLATE, "--run_id": RUN_ID_TEMPLATE},
            "wait_for_completion": True,
            "deferrable": False,
            "job_poll_interval": poll,
            "stop_job_run_on_kill": True,
            **common,
        },
        retries=retries,
        retry_delay_seconds=delay,
        max_retry_delay_seconds=max_delay,
        execution_timeout_seconds=int(timeouts["clean"]),
        doc="Run the Glue clean job on the uploaded object.",
        upstream=("crawl",),
    )
    load_config = config["load"]
    if load_config["target"] == "athena":
        load = Step(
            task_id="load",
            operator="airflow.providers.amazon.aws.operators.athena.AthenaOperator",
            arguments={
                "query": load_config["sql"].replace(RUN_ID_MARKER, RUN_ID_TEMPLATE),
                "database": load_config["database"],
                "workgroup": load_config["workgroup"],
                "sleep_time": poll,
                "deferrable": False,
                **common,
            },
            retries=retries,
            retry_delay_seconds=delay,
            max_retry_delay_seconds=max_delay,
            execution_timeout_seconds=int(timeouts["load"]),
            doc="MERGE the run's curated rows into the Iceberg table (idempotent: a retry loads nothing twice).",
            upstream=("clean",),
        )
    elif load_config["target"] == "redshift":
        load = Step(
            task_id="load",
            operator="airflow.providers.amazon.aws.operators.redshift_data.RedshiftDataOperator",
            arguments={
                # A list is sent as one BatchExecuteStatement: one transaction (COPY into staging, then MERGE).
                "sql": [statement.replace(RUN_ID_MARKER, RUN_ID_TEMPLATE) for statement in load_config["sqls"]],
                "database": load_config["database"],
                "workgroup_name": load_config["workgroup"],
                "statement_name": "load-" + RUN_ID_TEMPLATE,
                "poll_interval": poll,
                "wait_for_completion": True,
                "deferrable": False,
                **common,
            },
            retries=retries,
            retry_delay_seconds=delay,
            max_retry_delay_seconds=max_delay,
            execution_timeout_seconds=int(timeouts["load"]),
            doc="COPY the run into staging and MERGE it on the natural key, in one transaction.",
            upstream=("clean",),
        )
    else:
        raise ValueError(f"load.target={load_config['target']!r}: use 'athena' or 'redshift'")
    return [crawl, clean, load]


def failure_message(
    *, conf: Mapping[str, Any] | None, airflow_run_id: str, failed_step: str, error: BaseException | str | None
) -> dict[str, Any]:
    """The SNS message of a failed run: the same fields the other forms send."""
    conf = conf or {}
    bucket, key = conf.get("bucket"), conf.get("key")
    exception_name = type(error).__name__ if isinstance(error, BaseException) else "TaskFailed"
    return {
        "pipeline": FORM_NAME,
        "object": f"s3://{bucket}/{key}" if bucket and key else None,
        "version_id": conf.get("version_id"),
        "run_id": pipeline_run_id(airflow_run_id),
        "failed_step": failed_step,
        "error": exception_name,
        "cause": str(error) if error is not None else "the task failed without an exception (killed, or timed out outside the task)",
    }
