"""Loads into one target table run one at a time across DAG runs, on both Airflow forms; crawl and clean do not.

In upload mode a burst of uploads starts one run each, and their loads MERGE into the same Iceberg table: run at once,
they conflict. The plan marks the load `one_at_a_time` (runtime/pipeline_plan.py); both Airflow forms render it as the
load task's `max_active_tis_per_dag=1` (a pool would have to exist first: Airflow 3.3.1's scheduler leaves a task
whose pool does not exist unscheduled, logging "Tasks using non-existent pool ... will not be scheduled", and MWAA
Serverless has no API to create a pool).

What is executed: the parsed MWAA DAG and the dag-factory-parsed MWAA Serverless YAML carry the limit on the load task
only; and Airflow's own scheduler check (`SchedulerJobRunner._executable_task_instances_to_queued`, the query and the
concurrency map that decide which scheduled task instances are queued) refuses a second run's load while the first
run's load is running, queues it once that one has ended, and queues two runs' crawls together.
"""

# ruff: noqa: F811  (tests take the imported `yaml_dagbag` fixture as a parameter)
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from conftest import DAGS_FOLDER, deployed_config
from test_mwaa_serverless_yaml import (
    TARGETS,
    serverless_config,
    yaml_dagbag,  # noqa: F401  (the dag-factory fixture, registered here)
)

LOAD, OTHERS = "load", ("crawl", "clean", "find_curated_rows")


@pytest.mark.parametrize("target", TARGETS)
def test_the_mwaa_dag_limits_the_load_and_only_the_load_to_one_running_instance(dagbag: Any, target: str) -> None:
    dag = dagbag.dags[f"sales_{target}_pipeline"]
    assert dag.get_task(LOAD).max_active_tis_per_dag == 1
    for task_id in OTHERS:
        assert dag.get_task(task_id).max_active_tis_per_dag is None, task_id
    assert dag.max_active_runs == deployed_config(target)["max_active_runs"] > 1  # runs themselves still overlap


@pytest.mark.parametrize("target", TARGETS)
def test_the_serverless_yaml_limits_the_load_and_only_the_load_as_dag_factory_parses_it(yaml_dagbag: Any, target: str) -> None:
    import yaml

    from pipeline_constructs.runtime.mwaa_serverless.workflow_yaml import workflow_yaml

    (written,) = yaml.safe_load(workflow_yaml(serverless_config(target))).values()
    assert written["tasks"][LOAD]["max_active_tis_per_dag"] == 1
    assert [name for name, task in written["tasks"].items() if "max_active_tis_per_dag" in task] == [LOAD]
    assert not any("pool" in task for task in written["tasks"].values())  # no pool: nothing to create first
    dag = yaml_dagbag.dags[f"sales_{target}_serverless"]
    assert dag.get_task(LOAD).max_active_tis_per_dag == 1
    for task_id in OTHERS:
        assert dag.get_task(task_id).max_active_tis_per_dag is None, task_id


@pytest.fixture
def scheduler_dag(dagbag: Any) -> Iterator[Any]:
    """The athena DAG as the scheduler holds it: the dags-folder bundle synced to the metadata database (as the DAG
    processor does), and the serialized DAG read back. Its runs are removed afterwards."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dagrun import DagRun
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    dag_id = "sales_athena_pipeline"

    def remove_runs() -> None:
        with create_session() as session:
            session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id).delete()
            session.query(DagRun).filter(DagRun.dag_id == dag_id).delete()

    remove_runs()  # the runs other tests' dag.test() left
    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    bag = BundleDagBag(dag_folder=str(DAGS_FOLDER), bundle_path=DAGS_FOLDER, bundle_name="dags-folder")
    sync_bag_to_db(bag, "dags-folder", None)
    with create_session() as session:
        serialized = SerializedDagModel.get_dag(dag_id, session=session)
    assert serialized is not None
    yield serialized
    remove_runs()


def _start_runs(dag: Any, count: int, session: Any) -> list[Any]:
    """`count` running runs, one per upload, as the trigger Lambda starts them (manual runs, no logical date)."""
    from airflow.sdk import timezone
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    now = timezone.utcnow()
    runs = [
        dag.create_dagrun(
            run_id=f"upload-{index}",
            run_after=now + timedelta(seconds=index),
            start_date=now,
            conf={"bucket": "landing-bucket", "key": f"incoming/mwaa/{index}.csv", "version_id": "v1"},
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.TEST,
            triggering_user_name="test",
            state=DagRunState.RUNNING,
            session=session,
        )
        for index in range(count)
    ]
    session.flush()
    return runs


def _set(run: Any, states: dict[str, Any], session: Any) -> None:
    for ti in run.get_task_instances(session=session):
        if ti.task_id in states:
            ti.state = states[ti.task_id]
    session.flush()


def _queued_now(session: Any) -> set[tuple[str, str]]:
    """What Airflow's scheduler queues from the scheduled task instances in one pass: (run id, task id)."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    runner = SchedulerJobRunner(job=Job(), num_runs=1)
    queued = runner._executable_task_instances_to_queued(max_tis=32, session=session)
    return {(ti.run_id, ti.task_id) for ti in queued}


def test_the_scheduler_queues_a_second_runs_load_only_after_the_first_runs_load_has_ended(scheduler_dag: Any) -> None:
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState as State

    with create_session() as session:
        first, second, third = _start_runs(scheduler_dag, 3, session)
        # Two runs' crawls scheduled together are queued together: no limit before the load.
        _set(first, {"crawl": State.SCHEDULED}, session)
        _set(second, {"crawl": State.SCHEDULED}, session)
        assert _queued_now(session) == {("upload-0", "crawl"), ("upload-1", "crawl")}

        # The first run loads; the second reaches its load: it stays scheduled, while a third run's clean is queued.
        _set(first, {"crawl": State.SUCCESS, "clean": State.SUCCESS, "find_curated_rows": State.SUCCESS, LOAD: State.RUNNING}, session)
        _set(second, {"crawl": State.SUCCESS, "clean": State.SUCCESS, "find_curated_rows": State.SUCCESS, LOAD: State.SCHEDULED}, session)
        _set(third, {"crawl": State.SUCCESS, "clean": State.SCHEDULED}, session)
        assert _queued_now(session) == {("upload-2", "clean")}
        assert {ti.task_id: ti.state for ti in second.get_task_instances(session=session)}[LOAD] == State.SCHEDULED

        # A queued or deferred load counts as running too (the scheduler counts every active state).
        _set(first, {LOAD: State.QUEUED}, session)
        assert _queued_now(session) == set()

        # The first load ends (failed or succeeded alike): the second run's load is queued in the next pass.
        _set(first, {LOAD: State.FAILED}, session)
        assert _queued_now(session) == {("upload-1", LOAD)}
