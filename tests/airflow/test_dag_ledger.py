"""The MWAA DAG keeps the upload ledger (runtime/mwaa/dag_ledger.py): run on Airflow 3.3.1 with `dag.test()` against
moto's DynamoDB, each kind of upload leaves exactly the writes `pipeline_plan.LEDGER_TRANSITIONS` names, with the
fields the Step Functions form writes. The fakes are test_pipeline_dag.py's (`fake_aws`): every write is read back
from moto's table as it lands (`FakeAws.ledger_writes`).
"""

# ruff: noqa: F811  (tests take the imported `fake_aws` fixture as a parameter)
from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import LEDGER_TABLE
from pipeline_plan import LEDGER_TRANSITIONS
from test_pipeline_dag import (
    KEY,
    LANDING,
    UPLOAD,
    FakeAws,
    fake_aws,  # noqa: F401  (the moto fixture, registered here; tests take it as a parameter)
    run_dag,
    task_states,
)
from upload_ledger import FAILED, LOADED, QUARANTINED, SKIPPED_EMPTY, UploadLedger

EMPTY_COUNTS = {"rows_in": 0, "rows_out": 0, "rows_quarantined": 0, "duplicates_dropped": 0, "lines_read": 1, "lines_quarantined": 0}
QUARANTINED_COUNTS = {
    "rows_in": 3,
    "rows_out": 0,
    "rows_quarantined": 3,
    "duplicates_dropped": 0,
    "lines_read": 4,
    "lines_quarantined": 3,
    "quarantine_uri": "s3://quarantine-bucket/sales/run_id=x/",
}
ALL_TASKS = ("crawl", "clean", "find_curated_rows", "load")


def ledger_run_id(dag_run: Any) -> str:
    """The run id the clean job and the load see (pipeline_steps.RUN_ID_TEMPLATE)."""
    return dag_run.run_id.replace("~", "-").replace(":", "-").replace("+", "-")


def fail_athena_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's Athena queries always succeed: report them FAILED, as Athena does for a MERGE that cannot run."""
    from moto.athena.models import Execution

    monkeypatch.setattr(Execution, "status", property(lambda self: "FAILED", lambda self, value: None))


def assert_finished_record(record: dict[str, Any], dag_run: Any, outcome: str) -> None:
    """The fields every form writes when a run ends an upload."""
    assert record["state"] == outcome
    assert "owner" not in record and "error" not in record and "cause" not in record
    assert (record["form"], record["bucket"], record["key"], record["version"]) == ("mwaa", LANDING, KEY, "v1")
    assert record["object"] == f"s3://{LANDING}/{KEY}"
    (run,) = record["runs"]
    assert run["run_id"] == ledger_run_id(dag_run)
    assert run["execution"] == f"{dag_run.dag_id}/{dag_run.run_id}"
    assert run["form"] == "mwaa" and run["outcome"] == outcome
    assert run["started_at"] <= run["ended_at"] == record["finished_at"]
    # The table's TTL: the ledger construct's retention (400 days in the deployed configuration) from now.
    assert abs(record["expires_at"] - (time.time() + 400 * 86_400)) < 600


def test_a_good_upload_is_taken_recorded_at_each_step_and_ends_loaded_with_the_clean_jobs_counts(dagbag: Any, fake_aws: FakeAws) -> None:
    dag_run = run_dag(dagbag, "athena")

    assert str(dag_run.state) == "success", task_states(dag_run)
    assert tuple(fake_aws.ledger_states()) == LEDGER_TRANSITIONS["good"]
    assert fake_aws.counts_writes() == 1
    record = fake_aws.ledger_record()
    assert record is not None
    assert_finished_record(record, dag_run, LOADED)
    assert record["step"] == "load"
    assert {name: record[name] for name in fake_aws.clean_counts} == fake_aws.clean_counts
    # The clean job was given the ledger's arguments (the Step Functions form's set).
    (job_run,) = fake_aws.job_runs()
    arguments = job_run["Arguments"]
    assert (arguments["--ledger_table"], arguments["--pipeline_form"], arguments["--ledger_ttl_days"]) == (LEDGER_TABLE, "mwaa", "400")
    assert arguments["--source_versions"] == '["v1"]'
    assert fake_aws.alert_messages() == []


@pytest.mark.parametrize(
    "kind, counts, outcome", [("empty", EMPTY_COUNTS, SKIPPED_EMPTY), ("quarantined", QUARANTINED_COUNTS, QUARANTINED)]
)
@pytest.mark.parametrize("target", ["athena", "redshift"])
def test_an_upload_with_no_curated_row_ends_as_the_clean_jobs_counts_say_without_a_load(
    dagbag: Any, fake_aws: FakeAws, target: str, kind: str, counts: dict[str, Any], outcome: str
) -> None:
    fake_aws.curated_rows = False
    fake_aws.clean_counts = dict(counts)

    dag_run = run_dag(dagbag, target)

    assert str(dag_run.state) == "success", task_states(dag_run)
    assert task_states(dag_run)["load"] == "skipped"
    assert tuple(fake_aws.ledger_states()) == LEDGER_TRANSITIONS[kind]
    record = fake_aws.ledger_record()
    assert record is not None
    assert_finished_record(record, dag_run, outcome)
    assert record["step"] == "clean" and record["rows_quarantined"] == counts["rows_quarantined"]
    assert record.get("quarantine_uri") == counts.get("quarantine_uri")
    assert fake_aws.alert_messages() == [] and fake_aws.athena_queries() == [] and fake_aws.redshift_batches == []


def test_a_failed_load_is_recorded_failed_at_load_with_the_error_of_its_one_message(
    dagbag: Any, fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_athena_queries(monkeypatch)

    dag_run = run_dag(dagbag, "athena")

    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["load"] == "failed"
    assert tuple(fake_aws.ledger_states()) == LEDGER_TRANSITIONS["failed_at_load"]
    (message,) = fake_aws.alert_messages()
    assert message["failed_step"] == "load"
    record = fake_aws.ledger_record()
    assert record is not None
    assert (record["state"], record["step"]) == (FAILED, "load")
    assert (record["error"], record["cause"]) == (message["error"], message["cause"])
    assert record["error"] == "AirflowException" and "FAILED" in record["cause"]
    assert "owner" not in record and "finished_at" not in record and "expires_at" not in record
    (run,) = record["runs"]
    assert run["outcome"] == FAILED and run["ended_at"] and run["run_id"] == message["run_id"] == ledger_run_id(dag_run)


def test_a_repeated_run_for_a_loaded_upload_runs_no_step_and_sends_no_alert(dagbag: Any, fake_aws: FakeAws) -> None:
    first = run_dag(dagbag, "athena")
    assert str(first.state) == "success", task_states(first)
    writes, before = len(fake_aws.ledger_writes), fake_aws.ledger_record()

    again = run_dag(dagbag, "athena")  # another DAG run (a new run id) for the same object version

    assert str(again.state) == "success"
    assert task_states(again) == dict.fromkeys(ALL_TASKS, "skipped")
    assert len(fake_aws.job_runs()) == 1 and len(fake_aws.athena_queries()) == 1
    assert fake_aws.alert_messages() == []
    assert len(fake_aws.ledger_writes) == writes and fake_aws.ledger_record() == before


def test_a_run_for_an_upload_another_run_holds_runs_no_step_and_leaves_the_record_alone(dagbag: Any, fake_aws: FakeAws) -> None:
    ledger = UploadLedger(fake_aws.dynamodb, LEDGER_TABLE, form="mwaa")
    held = ledger.start(UPLOAD, run_id="upload-other-run", execution="sales_athena_pipeline/upload-other-run", step="clean")

    dag_run = run_dag(dagbag, "athena")

    assert str(dag_run.state) == "success"
    assert task_states(dag_run) == dict.fromkeys(ALL_TASKS, "skipped")
    assert fake_aws.job_runs() == [] and fake_aws.alert_messages() == []
    assert fake_aws.ledger_record() == held


def test_a_failure_the_ledger_refuses_to_record_still_sends_its_one_message(
    dagbag: Any, fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.glue.models import FakeJobRun

    monkeypatch.setattr(FakeJobRun, "status", property(lambda self: "FAILED", lambda self, value: None))
    run_clean_job = fake_aws.run_clean_job

    def clean_then_lose_the_upload(arguments: dict[str, str]) -> None:  # pipeline-ops hands it to another run meanwhile
        run_clean_job(arguments)
        fake_aws.dynamodb.update_item(
            TableName=LEDGER_TABLE,
            Key=UPLOAD.item_key(),
            UpdateExpression="SET #owner = :other",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":other": {"S": "upload-other-run"}},
        )

    fake_aws.run_clean_job = clean_then_lose_the_upload  # type: ignore[method-assign]

    dag_run = run_dag(dagbag, "athena")

    assert str(dag_run.state) == "failed"
    (message,) = fake_aws.alert_messages()
    assert message["failed_step"] == "clean"
    record = fake_aws.ledger_record()
    assert record is not None and (record["state"], record["owner"]) == ("running", "upload-other-run")


def rerun_cleared(dag: Any, dag_run: Any, *, only_failed: bool) -> Any:
    """What `pipeline-ops rerun` asks of the REST API (clearTaskInstances with dry_run false, reset_dag_runs, and
    only_failed unless --force): the same Airflow calls as the API's handler, then the run driven to its end as
    dag.test() drives one (dag.test() itself would delete the run and start it anew). Returns the run."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import clear_task_instances
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.state import DagRunState, TaskInstanceState

    session = settings.Session()
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    instances = scheduler_dag.clear(dry_run=True, run_id=dag_run.run_id, only_failed=only_failed, session=session)
    clear_task_instances(list(instances), session, DagRunState.QUEUED)
    session.commit()
    run = session.query(DagRun).filter(DagRun.dag_id == dag.dag_id, DagRun.run_id == dag_run.run_id).one()
    run.dag = scheduler_dag
    run.state = DagRunState.RUNNING  # what the scheduler does with a queued run
    session.commit()
    for _ in range(20):  # four tasks: a handful of rounds; never forever
        if run.state != DagRunState.RUNNING:
            return run
        session.expire_all()
        schedulable, _ = run.update_state(session=session)
        for ti in schedulable:
            ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        for ti in [ti for ti in run.get_task_instances(session=session) if ti.state == TaskInstanceState.SCHEDULED]:
            _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
    raise AssertionError(f"run {run.run_id} still {run.state} after 20 rounds: {task_states(run)}")


def test_clearing_the_failed_load_takes_the_upload_back_and_loads_it_under_the_same_run(
    dagbag: Any, fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = dagbag.dags["sales_athena_pipeline"]
    with monkeypatch.context() as failing:
        fail_athena_queries(failing)
        failed = run_dag(dagbag, "athena")
    assert str(failed.state) == "failed"
    writes = len(fake_aws.ledger_writes)

    rerun = rerun_cleared(dag, failed, only_failed=True)

    assert rerun.run_id == failed.run_id and str(rerun.state) == "success", task_states(rerun)
    assert len(fake_aws.job_runs()) == 1  # crawl and clean were not run again
    assert [state for state in fake_aws.ledger_states()[len(LEDGER_TRANSITIONS["failed_at_load"]) :]] == [
        ("running", "load"),
        (LOADED, "load"),
    ]
    assert len(fake_aws.ledger_writes) == writes + 2
    record = fake_aws.ledger_record()
    assert record is not None
    assert_finished_record(record, rerun, LOADED)
    assert len(fake_aws.alert_messages()) == 1  # the first run's failure only


def test_clearing_every_task_of_a_loaded_run_runs_it_again_as_rerun_force_asks(dagbag: Any, fake_aws: FakeAws) -> None:
    dag = dagbag.dags["sales_athena_pipeline"]
    first = run_dag(dagbag, "athena")
    assert str(first.state) == "success"

    again = rerun_cleared(dag, first, only_failed=False)

    assert again.run_id == first.run_id and str(again.state) == "success", task_states(again)
    assert len(fake_aws.job_runs()) == 2 and len(fake_aws.athena_queries()) == 2
    assert tuple(fake_aws.ledger_states()) == LEDGER_TRANSITIONS["good"] * 2
    record = fake_aws.ledger_record()
    assert record is not None
    assert_finished_record(record, again, LOADED)
