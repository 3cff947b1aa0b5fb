"""The MWAA Serverless workflow: the YAML the construct deploys, loaded by dag-factory into Airflow 3.3.1 and run with
`dag.test()` against moto, and compared with the MWAA Python DAG built from the same configuration.

MWAA Serverless itself cannot run here: what is tested is that the YAML is valid dag-factory input, that Airflow runs
it end to end with the object given as run parameters (as StartWorkflowRun's OverrideParameters are), and that it
holds the same tasks, order, operators, arguments, retries and timeouts as the MWAA DAG. The moto gaps are those of
test_pipeline_dag.py (its `fake_aws` fixture is reused): GetCrawlerMetrics added, job runs marked FAILED in the failure test.
"""

# ruff: noqa: F811  (tests take the imported `fake_aws` fixture as a parameter)
from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from typing import Any

import pytest
from conftest import DAGS_FOLDER, LEDGER_TABLE, REPO, both_config, deployed_config
from test_pipeline_dag import (
    CONF,
    KEY,
    LANDING,
    UPLOAD,
    FakeAws,
    fake_aws,  # noqa: F401  (the moto fixture, registered here; tests take it as a parameter)
    task_states,
)
from upload_ledger import UploadLedger

# dag-factory reports usage unless told not to; tests send nothing anywhere.
os.environ.setdefault("SCARF_NO_ANALYTICS", "True")
os.environ.setdefault("DO_NOT_TRACK", "True")

SERVERLESS_FOLDER = DAGS_FOLDER.parent / "serverless_dags"
TARGETS = ("athena", "redshift")


# The clean job's ledger arguments; both forms pass them, each under its own form name.
LEDGER_ARGS = ("--ledger_table", "--ledger_ttl_days", "--pipeline_form", "--source_versions")
RUN_ID = "upload-sales-store-7-0123456789abcdef0123456789abcdef"
"""The run id the trigger chooses (upload_events.dag_run_id) and passes as the run's `run_id` parameter."""


def taken(fake_aws: FakeAws) -> dict[str, str]:
    """Take the upload in the ledger for RUN_ID at crawl, as the trigger does before StartWorkflowRun; returns the
    run's parameters (the object and RUN_ID)."""
    UploadLedger(fake_aws.dynamodb, LEDGER_TABLE, form="mwaa_serverless", ttl_days=30).start(
        UPLOAD, run_id=RUN_ID, execution="service-run-1", step="crawl"
    )
    return {**CONF, "run_id": RUN_ID}


def serverless_config(target: str) -> dict[str, Any]:
    """The MWAA DAG's test configuration (retries and timeouts within MWAA Serverless's limits, the ledger) and its
    own dag id."""
    return {**deployed_config(target), "dag_id": f"sales_{target}_serverless"}


@pytest.fixture(scope="module")
def yaml_dagbag() -> Any:
    """The workflow YAML files written by the library, loaded the way dag-factory loads a DAG folder."""
    import sys

    sys.path.insert(0, str(REPO / "constructs"))
    from pipeline_constructs.runtime.mwaa_serverless.workflow_yaml import workflow_yaml

    shutil.rmtree(SERVERLESS_FOLDER, ignore_errors=True)
    SERVERLESS_FOLDER.mkdir(parents=True)
    for target in TARGETS:
        (SERVERLESS_FOLDER / f"{target}.yaml").write_text(workflow_yaml(serverless_config(target)), encoding="utf-8")
    (SERVERLESS_FOLDER / "both.yaml").write_text(workflow_yaml({**both_config(), "dag_id": "sales_both_serverless"}), encoding="utf-8")
    (SERVERLESS_FOLDER / "load_workflows.py").write_text(
        "# dag-factory's entry point: builds every YAML workflow in this folder (airflow dag)\n"
        "from pathlib import Path\n"
        "from dagfactory import load_yaml_dags\n"
        "load_yaml_dags(globals_dict=globals(), dags_folder=str(Path(__file__).parent))\n",
        encoding="utf-8",
    )
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag

    # dag.test() stores a DAG through the DAG bundle that holds its file: the YAML folder is a second local bundle,
    # beside (not inside) the MWAA DAG's folder, whose DagBag test expects exactly its own two DAGs.
    bundles = conf.get("dag_processor", "dag_bundle_config_list")
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    conf.set(
        "dag_processor",
        "dag_bundle_config_list",
        json.dumps(
            [
                {"name": "dags-folder", "classpath": local, "kwargs": {}},
                {"name": "serverless-workflows", "classpath": local, "kwargs": {"path": str(SERVERLESS_FOLDER)}},
            ]
        ),
    )
    yield DagBag(dag_folder=str(SERVERLESS_FOLDER))
    conf.set("dag_processor", "dag_bundle_config_list", bundles)


def test_dag_factory_loads_both_workflows_without_errors(yaml_dagbag: Any) -> None:
    assert yaml_dagbag.import_errors == {}
    assert sorted(yaml_dagbag.dags) == ["sales_athena_serverless", "sales_both_serverless", "sales_redshift_serverless"]
    dag = yaml_dagbag.dags["sales_athena_serverless"]
    assert dag.catchup is False and dag.schedule is None
    assert dag.params.dump() == {"bucket": "", "key": "", "version_id": "", "run_id": ""}


def _normalised(value: Any) -> Any:
    """A Python DAG argument as the YAML holds it: the templates MWAA Serverless renders instead of dag_run."""
    from pipeline_constructs.runtime.mwaa_serverless.workflow_yaml import translate_template

    return translate_template(value)


@pytest.mark.parametrize("target", TARGETS)
def test_yaml_and_python_dag_define_the_same_tasks_order_operators_arguments_retries_and_timeouts(
    yaml_dagbag: Any, dagbag: Any, target: str
) -> None:
    from pipeline_constructs.runtime.mwaa.pipeline_steps import describe_steps

    python_dag = dagbag.dags[f"sales_{target}_pipeline"]
    yaml_dag = yaml_dagbag.dags[f"sales_{target}_serverless"]
    python_tasks, yaml_tasks = python_dag.topological_sort(), yaml_dag.topological_sort()

    assert [t.task_id for t in yaml_tasks] == [t.task_id for t in python_tasks] == ["crawl", "clean", "find_curated_rows", "load"]
    assert [t.downstream_task_ids for t in yaml_tasks] == [t.downstream_task_ids for t in python_tasks]
    assert [type(t) for t in yaml_tasks] == [type(t) for t in python_tasks]
    assert yaml_dag.max_active_runs == python_dag.max_active_runs
    steps = {step.task_id: step for step in describe_steps(deployed_config(target))}
    compared = 0
    for python_task, yaml_task in zip(python_tasks, yaml_tasks, strict=True):
        for setting in ("retries", "retry_delay", "retry_exponential_backoff", "max_retry_delay", "execution_timeout", "doc_md"):
            assert getattr(yaml_task, setting) == getattr(python_task, setting), (yaml_task.task_id, setting)
        # Every argument of the step description that the operator keeps as an attribute, templates translated.
        for name in steps[python_task.task_id].arguments:
            if hasattr(python_task, name):
                python_value = getattr(python_task, name)
                if name == "script_args":  # the same ledger arguments, under each form's name
                    assert set(python_value) == set(getattr(yaml_task, name)) >= set(LEDGER_ARGS)
                    assert (python_value["--pipeline_form"], getattr(yaml_task, name)["--pipeline_form"]) == ("mwaa", "mwaa_serverless")
                    python_value = {**python_value, "--pipeline_form": "mwaa_serverless"}
                assert getattr(yaml_task, name) == _normalised(python_value), (yaml_task.task_id, name)
                compared += 1
    assert compared >= 10
    # The one intended difference: failures are reported from the service's events, not from callbacks.
    assert all(not t.on_failure_callback for t in yaml_tasks)
    assert all(t.on_failure_callback for t in python_tasks)


def test_yaml_templates_use_only_what_mwaa_serverless_renders() -> None:
    from pipeline_constructs.runtime.mwaa_serverless.workflow_yaml import workflow_yaml

    for target in TARGETS:
        text = workflow_yaml(serverless_config(target))
        assert "dag_run" not in text
        assert "params.bucket" in text and "ti.run_id" in text


def test_athena_workflow_run_crawls_cleans_the_object_and_merges_its_run(yaml_dagbag: Any, fake_aws: FakeAws) -> None:
    dag = yaml_dagbag.dags["sales_athena_serverless"]

    dag_run = dag.test(run_conf=taken(fake_aws))  # the parameters StartWorkflowRun gets from the trigger

    assert str(dag_run.state) == "success", task_states(dag_run)
    (job_run,) = fake_aws.job_runs()
    arguments = job_run["Arguments"]
    assert json.loads(arguments["--source_uris"]) == [f"s3://{LANDING}/{KEY}"]
    # The run id the trigger took the upload for in the ledger: the clean job's counts and the MERGE use it.
    assert arguments["--run_id"] == RUN_ID
    assert json.loads(arguments["--source_versions"]) == ["v1"]
    assert (arguments["--ledger_table"], arguments["--pipeline_form"]) == (deployed_config("athena")["ledger_table"], "mwaa_serverless")
    assert arguments["--ledger_ttl_days"] == str(deployed_config("athena")["ledger_ttl_days"])
    (query,) = fake_aws.athena_queries()
    assert f"WHERE run_id = '{RUN_ID}')" in query and "{{" not in query
    assert fake_aws.alert_messages() == []
    # The clean job's counts went into the record the trigger took (the events record the rest: Lambda tests).
    record = fake_aws.ledger_record()
    assert record is not None and (record["state"], record["step"], record["owner"]) == ("running", "crawl", RUN_ID)
    assert record["rows_out"] == fake_aws.clean_counts["rows_out"]


def test_a_run_started_by_hand_without_a_run_id_is_refused_by_the_ledger_at_clean(yaml_dagbag: Any, fake_aws: FakeAws) -> None:
    """A console run, not taken by the trigger: its own run id, which holds no record, so the clean job's counts write
    is refused and the clean step fails naming it (pipeline-ops rerun starts a run the ledger holds)."""
    # The parameter's default, given explicitly: dag.test() keeps an earlier test's params on the shared DAG object.
    dag_run = yaml_dagbag.dags["sales_athena_serverless"].test(run_conf={**CONF, "run_id": ""})

    assert task_states(dag_run)["clean"] == "failed"
    (job_run,) = fake_aws.job_runs()
    assert job_run["Arguments"]["--run_id"] == dag_run.run_id.replace(":", "-").replace("+", "-")
    assert json.loads(job_run["Arguments"]["--source_versions"]) == ["v1"]
    assert fake_aws.ledger_record() is None and fake_aws.athena_queries() == []


def test_redshift_workflow_run_sends_the_load_as_one_batch(yaml_dagbag: Any, fake_aws: FakeAws) -> None:
    dag_run = yaml_dagbag.dags["sales_redshift_serverless"].test(run_conf=taken(fake_aws))

    assert str(dag_run.state) == "success", task_states(dag_run)
    run_id = fake_aws.job_runs()[0]["Arguments"]["--run_id"]
    assert run_id == RUN_ID
    (batch,) = fake_aws.redshift_batches
    assert f"s3://curated-bucket/sales/runs/run_id={run_id}/" in batch["Sqls"][1]
    assert batch["StatementName"] == f"load-{run_id}"


def test_header_only_upload_skips_the_redshift_load_and_the_run_succeeds(yaml_dagbag: Any, fake_aws: FakeAws) -> None:
    fake_aws.curated_rows = False  # the clean job curated no row

    dag_run = yaml_dagbag.dags["sales_redshift_serverless"].test(run_conf=taken(fake_aws))

    assert str(dag_run.state) == "success", task_states(dag_run)
    assert task_states(dag_run)["find_curated_rows"] == task_states(dag_run)["load"] == "skipped"
    assert fake_aws.redshift_batches == []


def test_failed_clean_job_fails_the_run_without_loading_and_without_a_callback(
    yaml_dagbag: Any, fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.glue.models import FakeJobRun

    # moto's job runs always succeed: report this one FAILED, as Glue does when the clean script raises.
    monkeypatch.setattr(FakeJobRun, "status", property(lambda self: "FAILED", lambda self, value: None))

    dag_run = yaml_dagbag.dags["sales_athena_serverless"].test(run_conf=taken(fake_aws))

    assert str(dag_run.state) == "failed"
    assert task_states(dag_run) == {
        "crawl": "success",
        "clean": "failed",
        "find_curated_rows": "upstream_failed",
        "load": "upstream_failed",
    }
    assert fake_aws.athena_queries() == []
    # No DAG callback (the service ignores them): the run-failed event and the report Lambda send the message.
    assert fake_aws.alert_messages() == []


def test_retries_and_timeouts_are_within_the_service_limits(yaml_dagbag: Any) -> None:
    for dag in yaml_dagbag.dags.values():
        for task in dag.tasks:
            assert 0 <= task.retries <= 3
            assert task.retry_delay <= timedelta(seconds=300) and task.max_retry_delay <= timedelta(seconds=300)
            assert task.execution_timeout <= timedelta(seconds=3600)


class _Service:
    """StartWorkflowRun as pipeline-ops and the trigger call it: the parameters it was given."""

    def __init__(self) -> None:
        self.parameters: list[dict[str, str]] = []

    def start_workflow_run(self, **request: Any) -> dict[str, str]:
        self.parameters.append(dict(request["OverrideParameters"]))
        return {"RunId": f"service-run-{len(self.parameters)}", "Status": "STARTING"}


def test_two_targets_one_failing_and_the_new_run_loads_only_the_failed_one(yaml_dagbag: Any, fake_aws: FakeAws) -> None:
    """The trigger takes the upload and starts the run; the run loads athena and fails at redshift; the failure
    Lambda's ledger writes (from the run's task states) record both outcomes; the re-run (a new workflow run, as
    `pipeline-ops rerun` starts it) is told athena is loaded and loads only redshift."""
    import sys

    sys.path.insert(0, str(REPO / "constructs"))
    from pipeline_constructs.runtime.upload_lambdas import serverless_runs

    dag = yaml_dagbag.dags["sales_both_serverless"]
    assert dag.task_dict["find_curated_rows"].downstream_task_ids == {"to_load_athena", "to_load_redshift"}
    assert dag.task_dict["to_load_athena"].downstream_task_ids == {"load_athena"}
    assert dag.task_dict["load_athena"].max_active_tis_per_dag == dag.task_dict["load_redshift"].max_active_tis_per_dag == 1
    ledger = UploadLedger(fake_aws.dynamodb, LEDGER_TABLE, form="mwaa_serverless", ttl_days=30)
    service = _Service()
    obj = {"bucket": LANDING, "key": KEY, "version_id": "v1"}

    serverless_runs.start_upload_run(service, "arn:workflow", obj, run_id=RUN_ID, client_token="t1", ledger=ledger)  # type: ignore[arg-type]
    assert "loaded_targets" not in service.parameters[0]
    fake_aws.redshift_fails = True
    failed = dag.test(run_conf={"loaded_targets": "", **service.parameters[0]})

    states = task_states(failed)
    assert str(failed.state) == "failed" and states["load_athena"] == "success" and states["load_redshift"] == "failed", states
    assert len(fake_aws.athena_queries()) == 1 and len(fake_aws.redshift_batches) == 1
    # What the failure Lambda writes from the run's task states (mwaa_serverless.record_target_outcomes, then fail).
    for task_id, target in (("load_athena", "athena"), ("load_redshift", "redshift")):
        ledger.target(UPLOAD, run_id=RUN_ID, target=target, outcome="loaded" if states[task_id] == "success" else "failed")
    ledger.fail(UPLOAD, run_id=RUN_ID, error="LoadFailed", cause="load into redshift failed: FAILED")

    fake_aws.redshift_fails = False
    serverless_runs.start_upload_run(service, "arn:workflow", obj, run_id="ops-rerun", client_token="t2", ledger=ledger)  # type: ignore[arg-type]
    assert service.parameters[1]["loaded_targets"] == "athena"
    rerun = dag.test(run_conf=service.parameters[1])

    states = task_states(rerun)
    assert str(rerun.state) == "success", states
    assert states["to_load_athena"] == states["load_athena"] == "skipped" and states["load_redshift"] == "success"
    assert len(fake_aws.athena_queries()) == 1  # no second MERGE into athena
    assert len(fake_aws.redshift_batches) == 2  # redshift loaded by the new run
