"""Two load targets in the MWAA DAG (`load` a list: athena, redshift) on Airflow 3.3.1 against moto: one load task
per target after the rows check, each one at a time across runs; one target failing leaves the other's rows loaded
and both outcomes in the ledger, fails the run naming the target, and clearing the failed task (`pipeline-ops rerun`)
loads only that target.
"""

# ruff: noqa: F811  (tests take the imported `fake_aws` fixture as a parameter)
from __future__ import annotations

from typing import Any

import pytest
from test_dag_ledger import fail_athena_queries, rerun_cleared
from test_pipeline_dag import (
    CONF,
    FakeAws,
    fake_aws,  # noqa: F401  (the moto fixture, registered here; tests take it as a parameter)
    task_states,
)
from upload_ledger import FAILED, LOADED

DAG_ID = "sales_both_pipeline"


def test_both_targets_load_side_by_side_after_the_rows_check_each_one_at_a_time(dagbag: Any) -> None:
    dag = dagbag.dags[DAG_ID]
    assert dag.task_dict["find_curated_rows"].downstream_task_ids == {"load_athena", "load_redshift"}
    for task_id in ("load_athena", "load_redshift"):
        assert dag.task_dict[task_id].max_active_tis_per_dag == 1
        assert dag.task_dict[task_id].downstream_task_ids == set()
    assert "load" not in dag.task_dict


def test_both_targets_load_and_the_upload_ends_loaded(dagbag: Any, fake_aws: FakeAws) -> None:
    dag_run = dagbag.dags[DAG_ID].test(run_conf=CONF)

    assert str(dag_run.state) == "success", task_states(dag_run)
    assert len(fake_aws.athena_queries()) == 1 and len(fake_aws.redshift_batches) == 1
    record = fake_aws.ledger_record()
    assert record is not None
    assert (record["state"], record["load_athena"], record["load_redshift"]) == (LOADED, LOADED, LOADED)
    assert fake_aws.alert_messages() == []


def test_a_failed_target_fails_the_run_naming_it_and_the_cleared_run_loads_only_that_target(dagbag: Any, fake_aws: FakeAws) -> None:
    dag = dagbag.dags[DAG_ID]
    fake_aws.redshift_fails = True

    failed = dag.test(run_conf=CONF)

    assert str(failed.state) == "failed"
    assert task_states(failed)["load_athena"] == "success" and task_states(failed)["load_redshift"] == "failed"
    assert len(fake_aws.athena_queries()) == 1 and len(fake_aws.redshift_batches) == 1  # athena's rows are merged
    record = fake_aws.ledger_record()
    assert record is not None
    assert (record["state"], record["load_athena"], record["load_redshift"]) == (FAILED, LOADED, FAILED)
    assert record["error"] == "LoadFailed" and record["cause"].startswith("load into redshift failed: ")
    (message,) = fake_aws.alert_messages()
    assert message["failed_step"] == "load_redshift" and message["cause"] == record["cause"]

    fake_aws.redshift_fails = False
    rerun = rerun_cleared(dag, failed, only_failed=True)

    assert rerun.run_id == failed.run_id and str(rerun.state) == "success", task_states(rerun)
    assert len(fake_aws.job_runs()) == 1  # crawl and clean were not run again
    assert len(fake_aws.athena_queries()) == 1  # athena: no second MERGE
    assert len(fake_aws.redshift_batches) == 2  # redshift: loaded again, once
    record = fake_aws.ledger_record()
    assert record is not None
    assert (record["state"], record["load_athena"], record["load_redshift"]) == (LOADED, LOADED, LOADED)
    assert "error" not in record and "owner" not in record
    assert fake_aws.alert_messages() == []


def test_a_new_run_of_an_upload_loaded_into_one_target_loads_only_the_other(
    dagbag: Any, fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = dagbag.dags[DAG_ID]
    with monkeypatch.context() as failing:
        fail_athena_queries(failing)
        first = dag.test(run_conf=CONF)
    assert str(first.state) == "failed"
    record = fake_aws.ledger_record()
    assert record is not None and (record["load_athena"], record["load_redshift"]) == (FAILED, LOADED)
    assert record["cause"].startswith("load into athena failed: ")

    again = dag.test(run_conf=CONF)  # a new DAG run for the same object version: it takes the failed upload

    assert str(again.state) == "success", task_states(again)
    assert task_states(again)["load_redshift"] == "skipped" and task_states(again)["load_athena"] == "success"
    assert len(fake_aws.redshift_batches) == 1 and len(fake_aws.athena_queries()) == 2
    record = fake_aws.ledger_record()
    assert record is not None and (record["state"], record["load_athena"], record["load_redshift"]) == (LOADED, LOADED, LOADED)
