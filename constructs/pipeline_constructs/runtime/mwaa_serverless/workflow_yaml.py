"""The MWAA Serverless workflow definition (dag-factory YAML), written from the same step description as the MWAA DAG.

`describe_steps` (runtime/mwaa/pipeline_steps.py) is the one description of crawl -> clean -> load: the Python DAG
builds its operators from it, and this module writes the same steps, operators, arguments, retries and timeouts as a
dag-factory YAML file, so the two cannot drift apart. Only what the service does differently is translated:

- MWAA Serverless renders only a few template variables (`params`, `ti`, `ds`, `ts`, `macros`); `dag_run` is not
  one of them. The object comes from the run's parameters (`StartWorkflowRun` OverrideParameters -> `params`), and
  so does the run id (`params.run_id`): the trigger chooses it before the run starts, so the upload ledger holds the
  upload for it first (runtime/upload_lambdas/serverless_runs.py). A run started without one (by hand, in the
  console) uses its task instance's run id (`ti.run_id`, the same value as `dag_run.run_id`).
- With a ledger, the clean job writes its counts into the upload's record under this form's name.
- The service validates retries (0 to 3), retry_delay (at most 300 s) and execution_timeout (at most 3600 s) per
  task; a configuration outside them fails here, naming the setting, instead of at deploy time.
- DAG callbacks are ignored by the service: failures are reported from its EventBridge events instead.
- The load runs one at a time across runs through the task's own `max_active_tis_per_dag: 1`, as in the MWAA DAG:
  a pool would have to exist in the environment first, and MWAA Serverless has no API to create one.

Standard library and PyYAML only: the construct library imports this module at synth time without Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from typing import Any

import yaml

from ..mwaa.pipeline_steps import Step, describe_steps

FORM_NAME = "mwaa_serverless"
# The run's parameters: StartWorkflowRun's OverrideParameters override these defaults.
RUN_PARAMETERS = ("bucket", "key", "version_id", "run_id")
MAX_RETRIES = 3
MAX_RETRY_DELAY_SECONDS = 300
MAX_EXECUTION_TIMEOUT_SECONDS = 3600
START_DATE = date(2026, 1, 1)

# Template expressions of the MWAA DAG -> the ones MWAA Serverless renders.
_TEMPLATE_TRANSLATIONS = (
    ("dag_run.conf['bucket']", "params.bucket"),
    ("dag_run.conf['key']", "params.key"),
    ("dag_run.conf['version_id']", "params.version_id"),
    ("dag_run.conf.get('version_id')", "params.version_id"),
    ("dag_run.run_id", "(params.run_id or ti.run_id)"),
)
LEDGER_FORM_ARGUMENT = "--pipeline_form"


class WorkflowLimitError(ValueError):
    """A step's retries or timeouts are outside what MWAA Serverless accepts; the message names the setting."""


def translate_template(value: Any) -> Any:
    """`value` with the MWAA DAG's template expressions replaced by those MWAA Serverless renders (recursively)."""
    if isinstance(value, str):
        for old, new in _TEMPLATE_TRANSLATIONS:
            value = value.replace(old, new)
        return value
    if isinstance(value, list | tuple):
        return [translate_template(item) for item in value]
    if isinstance(value, Mapping):
        return {key: translate_template(item) for key, item in value.items()}
    return value


def check_limits(step: Step) -> None:
    """Raise WorkflowLimitError when the step is outside the service's task limits."""
    if not 0 <= step.retries <= MAX_RETRIES:
        raise WorkflowLimitError(f"{step.task_id}.retries={step.retries!r}: MWAA Serverless accepts 0 to {MAX_RETRIES}")
    for name, seconds, limit in (
        ("retry_delay_seconds", step.retry_delay_seconds, MAX_RETRY_DELAY_SECONDS),
        ("max_retry_delay_seconds", step.max_retry_delay_seconds, MAX_RETRY_DELAY_SECONDS),
        ("execution_timeout_seconds", step.execution_timeout_seconds, MAX_EXECUTION_TIMEOUT_SECONDS),
    ):
        if not 0 <= seconds <= limit:
            raise WorkflowLimitError(f"{step.task_id}.{name}={seconds!r}: MWAA Serverless accepts 0 to {limit} seconds")


def _serverless_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A step's arguments with the templates MWAA Serverless renders, and this form's name where the clean job is told
    which form's ledger record it writes."""
    translated: dict[str, Any] = translate_template(arguments)
    script_args = translated.get("script_args")
    if isinstance(script_args, dict) and LEDGER_FORM_ARGUMENT in script_args:
        translated["script_args"] = {**script_args, LEDGER_FORM_ARGUMENT: FORM_NAME}
    return translated


def serverless_steps(config: Mapping[str, Any]) -> list[Step]:
    """The MWAA DAG's steps for the same configuration, with the templates and the form name MWAA Serverless uses."""
    steps = [replace(step, arguments=_serverless_arguments(step.arguments)) for step in describe_steps(config)]
    for step in steps:
        check_limits(step)
    return steps


def _timedelta(seconds: int) -> dict[str, Any]:
    # dag-factory builds typed values from `__type__` (here datetime.timedelta(seconds=...)).
    return {"__type__": "datetime.timedelta", "seconds": seconds}


def _task(step: Step) -> dict[str, Any]:
    task: dict[str, Any] = {"operator": step.operator}
    if step.upstream:
        task["dependencies"] = list(step.upstream)
    task.update(
        {
            "retries": step.retries,
            "retry_delay": _timedelta(step.retry_delay_seconds),
            "retry_exponential_backoff": True,
            "max_retry_delay": _timedelta(step.max_retry_delay_seconds),
            "execution_timeout": _timedelta(step.execution_timeout_seconds),
            "doc_md": step.doc,
        }
    )
    if step.max_active_tis_per_dag is not None:  # the load: one run's at a time (a BaseOperator argument, no pool)
        task["max_active_tis_per_dag"] = step.max_active_tis_per_dag
    task.update(step.arguments)
    return task


def workflow_definition(config: Mapping[str, Any]) -> dict[str, Any]:
    """The dag-factory document: {dag_id: {schedule, params, tasks...}}. Raises KeyError naming a missing setting."""
    dag_id = config["dag_id"]
    return {
        dag_id: {
            "description": f"{config['dataset']}: crawl, clean and load one uploaded object (started per upload)",
            # No schedule: every run is started by the trigger Lambda (StartWorkflowRun) with the object as parameters.
            "schedule": None,
            "start_date": START_DATE.isoformat(),
            "catchup": False,
            "max_active_runs": int(config["max_active_runs"]),
            "params": {name: "" for name in RUN_PARAMETERS},
            "tags": [FORM_NAME, config["dataset"]],
            "tasks": {step.task_id: _task(step) for step in serverless_steps(config)},
        }
    }


def workflow_yaml(config: Mapping[str, Any]) -> str:
    """The workflow definition as YAML text (block style, keys in the order written, long SQL kept on one line)."""
    return yaml.safe_dump(workflow_definition(config), sort_keys=False, default_flow_style=False, width=100_000, allow_unicode=True)
