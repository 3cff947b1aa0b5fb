"""The Airflow forms' DAG on Airflow for `make demo FORM=mwaa|mwaa_serverless` (scripts/demo_form.py runs this with the
Airflow virtualenv).

    .venv-airflow/bin/python scripts/demo_airflow.py HOME DAG_FOLDER OUT.json COMMAND [ARGUMENT]

HOME is the Airflow home the demo keeps for its runs (a SQLite metadata database, migrated on first use), DAG_FOLDER
the folder the Mwaa stack deploys (the DAG, its modules, its configuration with the deploy-time values filled in).
Every AWS call the operators make goes through boto3 to AWS_ENDPOINT_URL: the demo's moto, whose Glue job runs are
the real clean job on Spark and whose Redshift Data statements run on DuckDB (scripts/demo_airflow_stand_ins.py).

Commands, each what the MWAA REST API (or the scheduler) does in an environment:
- `post_dag_run REQUEST_JSON`: POST /dags/{dag_id}/dagRuns (the trigger's request: dag_run_id, conf), and the run
  driven to its end with `dag.test()`, the run given the request's id. dag.test() first deletes the DAG's run of
  the same logical date (the REST API's runs have none): the demo's Airflow holds the one upload's run at a time.
- `get_dag_run RUN_ID`: GET /dags/{dag_id}/dagRuns/{run_id} ({"state": ...}; {"status": 404} when there is none).
- `clear BODY_JSON`: POST /dags/{dag_id}/clearTaskInstances (dag_run_id, dry_run, only_failed, reset_dag_runs), the
  same Airflow calls as the API's handler (tests/airflow/test_dag_ledger.py `rerun_cleared`).
- `run_queued RUN_ID`: what the scheduler does with a run whose tasks were cleared: its tasks run again, in order,
  until the run ends.

The answer goes to OUT.json (Airflow logs to standard output): the run's state and each task instance's state, try
number, start, end and, for a failed try, its error (recorded by a task listener: what MWAA Serverless's
GetTaskInstance answers as ErrorMessage). DAG_FOLDER may instead hold a MWAA Serverless workflow YAML and the
dag-factory loader beside it (scripts/demo_form.py writes both): the DAG is dag-factory's, the commands the same.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any
from unittest import mock

ROUNDS = 30
"""Scheduling rounds `run_queued` drives a run for: five tasks need a handful; never forever."""


def configure(home: str, folder: str) -> None:
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__DAGS_FOLDER": folder,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": ".*",
            # dag-factory reports usage unless told not to; the demo sends nothing anywhere.
            "SCARF_NO_ANALYTICS": "True",
            "DO_NOT_TRACK": "True",
        }
    )
    sys.path.insert(0, folder)  # as Airflow and MWAA do: the DAG imports its modules from beside it


def the_dag(folder: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=folder)
    if bag.import_errors or len(bag.dags) != 1:
        raise SystemExit(f"the DAG folder did not parse into one DAG: {bag.import_errors or sorted(bag.dags)}")
    return next(iter(bag.dags.values()))


class TaskErrors:
    """An Airflow listener (on_task_instance_failed, which the task runner calls in dag.test()'s process too): the
    error of each failed try, {(task_id, try_number): "Type: message"}."""

    errors: dict[tuple[str, int], str] = {}

    def __init__(self) -> None:
        from airflow.listeners import hookimpl
        from airflow.sdk.listener import get_listener_manager

        def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
            text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error or "")
            TaskErrors.errors[(task_instance.task_id, task_instance.try_number)] = text

        self.on_task_instance_failed = hookimpl(on_task_instance_failed)
        get_listener_manager().add_listener(self)


def migrated(home: str) -> None:
    marker = Path(home) / "migrated"
    if not marker.exists():
        from airflow.utils import db

        db.resetdb()
        marker.write_text("1")


def described(dag_run: Any) -> dict[str, Any]:
    def when(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    tasks = sorted(dag_run.get_task_instances(), key=lambda ti: (ti.start_date is None, ti.start_date or 0, ti.task_id))
    return {
        "dag_run_id": dag_run.run_id,
        "state": str(dag_run.state),
        "conf": dict(dag_run.conf or {}),
        "tasks": [
            {
                "task_id": ti.task_id,
                "operator": ti.operator,
                "state": str(ti.state),
                "try_number": ti.try_number,
                "start": when(ti.start_date),
                "end": when(ti.end_date),
                **({"error": TaskErrors.errors[(ti.task_id, ti.try_number)]} if (ti.task_id, ti.try_number) in TaskErrors.errors else {}),
            }
            for ti in tasks
        ],
    }


def post_dag_run(dag: Any, request: dict[str, Any]) -> dict[str, Any]:
    from airflow.models.dagrun import DagRun

    # dag.test() names its run itself; the REST API's run is named by the request (the trigger's dag_run_id).
    with mock.patch.object(DagRun, "generate_run_id", return_value=request["dag_run_id"]):
        dag_run = dag.test(logical_date=request.get("logical_date"), run_conf=request["conf"])
    return described(dag_run)


def find_run(dag: Any, run_id: str) -> Any:
    from airflow import settings
    from airflow.models.dagrun import DagRun

    session = settings.Session()
    return session, session.query(DagRun).filter(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id).one_or_none()


def get_dag_run(dag: Any, run_id: str) -> dict[str, Any]:
    _, dag_run = find_run(dag, run_id)
    return {"status": 404} if dag_run is None else {"status": 200, **described(dag_run)}


def clear(dag: Any, body: dict[str, Any]) -> dict[str, Any]:
    from airflow.models.taskinstance import clear_task_instances
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.state import DagRunState

    session, dag_run = find_run(dag, body["dag_run_id"])
    if dag_run is None:
        return {"status": 404}
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    instances = list(scheduler_dag.clear(dry_run=True, run_id=dag_run.run_id, only_failed=bool(body.get("only_failed")), session=session))
    if not body.get("dry_run", True):
        clear_task_instances(instances, session, DagRunState.QUEUED if body.get("reset_dag_runs") else False)
        session.commit()
    return {"status": 200, "task_instances": [{"task_id": ti.task_id, "dag_run_id": ti.run_id, "state": str(ti.state)} for ti in instances]}


def run_queued(dag: Any, run_id: str) -> dict[str, Any]:
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.state import DagRunState, TaskInstanceState

    session, dag_run = find_run(dag, run_id)
    if dag_run is None:
        raise SystemExit(f"no DAG run {run_id}")
    dag_run.dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    dag_run.state = DagRunState.RUNNING  # what the scheduler does with a queued run
    session.commit()
    for _ in range(ROUNDS):
        if dag_run.state != DagRunState.RUNNING:
            return described(dag_run)
        session.expire_all()
        schedulable, _ = dag_run.update_state(session=session)
        for ti in schedulable:
            ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        for ti in [ti for ti in dag_run.get_task_instances(session=session) if ti.state == TaskInstanceState.SCHEDULED]:
            try:
                _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
            except Exception as error:  # dag.test() logs a task's failure and goes on; its state says it failed
                print(f"task {ti.task_id} failed: {error}", file=sys.stderr)
    raise SystemExit(f"run {run_id} still {dag_run.state} after {ROUNDS} rounds")


def main(argv: list[str]) -> int:
    home, folder, out_path, command, *rest = argv
    configure(home, folder)
    migrated(home)
    dag = the_dag(folder)
    TaskErrors()
    argument = rest[0] if rest else ""
    if command == "post_dag_run":
        answer = post_dag_run(dag, json.loads(argument))
    elif command == "get_dag_run":
        answer = get_dag_run(dag, argument)
    elif command == "clear":
        answer = clear(dag, json.loads(argument))
    elif command == "run_queued":
        answer = run_queued(dag, argument)
    else:
        raise SystemExit(f"unknown command {command!r}")
    Path(out_path).write_text(json.dumps({"dag_id": dag.dag_id, **answer}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
