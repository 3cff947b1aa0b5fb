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

- Two load targets: one load task per target after the rows check, as in the MWAA DAG, each behind its own guard
  (`to_load_<target>`, the rows check's sensor): the YAML runs no Python, so the ledger check is made by whoever
  starts the run, which passes the targets the ledger shows loaded as the `loaded_targets` run parameter
  (serverless_runs.start_upload_run); the guard of such a target lists a key that cannot exist and soft-fails, so
  its load is skipped and a re-run (a new workflow run) loads only the target that failed.

Standard library and PyYAML only: the construct library imports this module at synth time without Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from typing import Any

import yaml

from ..mwaa.pipeline_steps import ROWS_CHECK_TASK_ID, Step, describe_steps, parallel_loads

FORM_NAME = "mwaa_serverless"
# The run's parameters: StartWorkflowRun's OverrideParameters override these defaults.
RUN_PARAMETERS = ("bucket", "key", "version_id", "run_id")
LOADED_TARGETS_PARAMETER = "loaded_targets"
"""Two targets: the targets the ledger shows loaded, comma-separated (empty: load every target)."""
GUARD_PREFIX = "to_load_"
"""Two targets: the guard task before each target's load (`to_load_athena`), skipped when the target is loaded."""
_RUN_ID_EXPRESSION = "((params.run_id or ti.run_id) | replace('~', '-') | replace(':', '-') | replace('+', '-'))"
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
    """The MWAA DAG's steps for the same configuration, with the templates and the form name MWAA Serverless uses
    (two targets: each load behind its guard)."""
    steps: list[Step] = []
    for step in describe_steps(config):
        step = replace(step, arguments=_serverless_arguments(step.arguments))
        if step.target is not None:
            guard = _target_guard(config, step, steps)
            steps.append(guard)
            step = replace(step, upstream=(guard.task_id,))
        steps.append(step)
    for step in steps:
        check_limits(step)
    return steps


def _target_guard(config: Mapping[str, Any], load: Step, steps: list[Step]) -> Step:
    """The rows check's sensor again, for one target: the same listing when the target is to be loaded, else a key
    under the run's folder that cannot exist, so the guard soft-fails and the target's load is skipped."""
    assert load.target is not None
    rows_check = next(step for step in steps if step.task_id == ROWS_CHECK_TASK_ID)
    rows = config["curated_rows"]
    target = load.target
    key = (
        f"{{{{ '{rows['prefix']}' ~ {_RUN_ID_EXPRESSION} ~ ('/{rows['partition']}=*' if '{target}' not in "
        f"(params.{LOADED_TARGETS_PARAMETER} or '').split(',') else '/already-loaded-into-{target}') }}}}"
    )
    return replace(
        rows_check,
        task_id=f"{GUARD_PREFIX}{target}",
        arguments={**rows_check.arguments, "bucket_key": key},
        doc=f"Load into {target}? Skipped (and its load) when the run's `{LOADED_TARGETS_PARAMETER}` names {target}.",
        upstream=(ROWS_CHECK_TASK_ID,),
    )


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
            "params": {name: "" for name in RUN_PARAMETERS + ((LOADED_TARGETS_PARAMETER,) if parallel_loads(config) else ())},
            "tags": [FORM_NAME, config["dataset"]],
            "tasks": {step.task_id: _task(step) for step in serverless_steps(config)},
        }
    }


def workflow_yaml(config: Mapping[str, Any]) -> str:
    """The workflow definition as YAML text (block style, keys in the order written, long SQL kept on one line)."""
    return yaml.safe_dump(workflow_definition(config), sort_keys=False, default_flow_style=False, width=100_000, allow_unicode=True)
