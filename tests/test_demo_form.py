"""`make demo FORM=...` (scripts/demo_form.py), run in-process on a small generated upload: each form's synthesized
definition (for MWAA its deployed DAG folder, for MWAA Serverless its workflow YAML, on Airflow in .venv-airflow) ends
with the upload loaded exactly once in the ledger and the loaded table holding exactly the rows its clean job curated,
with and without a failed first load recovered by `pipeline-ops rerun`."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts import demo_form

pytestmark = [pytest.mark.spark, pytest.mark.timeout(300)]
ROWS = 300
AIRFLOW_PYTHON = Path(__file__).resolve().parents[1] / ".venv-airflow" / "bin" / "python"


@pytest.fixture(scope="module")
def demo_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-synth") / "cdk.out"


@pytest.fixture(scope="module")
def demo_templates(demo_assembly: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The app as the demo synthesizes it (cdk-nag off); its cloud assembly stays in `demo_assembly`."""
    return demo_form.synthesize(demo_assembly)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pipeline_constructs.runtime.spark_settings import local_session

    session = local_session(app_name="demo-form-tests", cores=2)
    yield session
    session.stop()


@pytest.mark.parametrize("fail_at", [None, "load"], ids=["loads", "fails-at-load-then-rerun"])
@pytest.mark.parametrize("form", ["step_functions", "glue_workflow"])
def test_the_form_loads_the_upload_once_with_exactly_its_curated_rows(
    form: str, fail_at: str | None, demo_templates: dict[tuple[str, str], dict[str, Any]], spark: Any, tmp_path: Path
) -> None:
    out = io.StringIO()
    summary = demo_form.run_demo(form, fail_at=fail_at, rows=ROWS, workdir=tmp_path / form, templates=demo_templates, spark=spark, out=out)
    text = out.getvalue()
    assert summary["record"]["state"] == "loaded", text
    assert summary["record"]["runs"] == (["failed", "loaded"] if fail_at else ["loaded"]), text
    assert summary["merges_succeeded"] == 1, "the upload was loaded exactly once"
    assert summary["rows_match"] and summary["table_rows"] == summary["curated_rows"] > 0, text
    assert summary["query_rows"] > 0 and "daily_revenue_by_store.sql" in text
    if fail_at is None:
        assert summary["executions"] == ["SUCCEEDED"] and summary["failure_message"] is None
        return
    assert summary["executions"] == ["FAILED", "SUCCEEDED"]
    message = summary["failure_message"]["message"]
    assert message["pipeline"] == form and "retail_sales does not exist" in message["cause"]
    assert f"$ pipeline-ops --env dev rerun {summary['upload']}" in text
    how = "started" if form == "step_functions" else "resumed"
    assert f'"how": "{how}"' in text


@pytest.mark.airflow
@pytest.mark.timeout(600)
# Only the failing run: it goes through every task once and its rerun loads (about 3 minutes); the plain run is the
# same path without the failure (`make demo FORM=mwaa`), left out of `make test` for its time.
@pytest.mark.parametrize("fail_at", ["load"], ids=["fails-at-load-then-rerun"])
def test_the_mwaa_dag_on_airflow_loads_the_upload_once_with_exactly_its_curated_rows(
    fail_at: str | None, demo_templates: dict[tuple[str, str], dict[str, Any]], demo_assembly: Path, spark: Any, tmp_path: Path
) -> None:
    """The Mwaa stack's deployed DAG folder on Airflow 3.3.1 (.venv-airflow), its Glue job run the clean job on Spark,
    its two loads (staging loads Athena and Redshift in parallel) on DuckDB, its ledger in the demo's moto; the
    Redshift load fails, the Athena load still loads, and clearing the failed task loads Redshift only."""
    if not AIRFLOW_PYTHON.exists():
        pytest.fail(f"{AIRFLOW_PYTHON} is missing: run `make airflow-venv` (make test does it)")
    out = io.StringIO()
    summary = demo_form.run_demo(
        "mwaa",
        fail_at=fail_at,
        rows=ROWS,
        workdir=tmp_path / "mwaa",
        templates=demo_templates,
        assembly=demo_assembly,
        spark=spark,
        out=out,
    )
    text = out.getvalue()
    assert summary["record"]["state"] == "loaded", text
    # Clearing the failed task re-runs it in the same DAG run, under the same run id: the record's one run ends loaded.
    assert summary["record"]["runs"] == ["loaded"], text
    assert summary["loads_succeeded"] == {"athena": 1, "redshift": 1}, "each target loaded the upload exactly once"
    assert summary["clean_job_runs"] == 1, "clearing the failed load does not clean again"
    assert summary["rows_match"] and set(summary["targets"]) == {"athena", "redshift"}, text
    for target, result in summary["targets"].items():
        assert result["rows_match"] and result["table_rows"] == result["curated_rows"] > 0, (target, text)
        assert result["query_rows"] > 0, target
    assert "daily_revenue_by_store.sql" in text
    tasks = ["crawl", "clean", "find_curated_rows", "load_athena", "load_redshift"]
    assert sorted(t["state"] for t in summary["steps"][-1]) == sorted(tasks)
    assert all(t["outcome"] == "success" for t in summary["steps"][-1]), text
    assert summary["executions"] == ["FAILED", "SUCCEEDED"]
    first = {t["state"]: t["outcome"] for t in summary["steps"][0]}
    assert first["load_athena"] == "success" and first["load_redshift"] == "failed", first
    message = summary["failure_message"]["message"]
    assert message["pipeline"] == "mwaa" and message["failed_step"] == "load_redshift", message
    assert "DuckDB CatalogException" in message["cause"] and "Schema with name public" in message["cause"]
    assert summary["failure_message"]["subject"].endswith("failed at load_redshift")
    assert f"$ pipeline-ops --env staging rerun {summary['upload']}" in text
    assert '"how": "cleared"' in text and "tasks cleared: load_redshift" in text
    assert '"state": "failed"' in text, "the ledger recorded the failure before the rerun"
    tries = {t["state"]: t["try"] for t in summary["steps"][-1]}
    assert tries == {"crawl": 1, "clean": 1, "find_curated_rows": 1, "load_athena": 1, "load_redshift": 2}, tries


@pytest.mark.airflow
@pytest.mark.timeout(300)
# Only the failing run (about a minute): both workflow runs, the failure report and the rerun; the plain run is its
# second half (`make demo FORM=mwaa_serverless`).
def test_the_serverless_workflow_on_airflow_recovers_a_failed_load_with_a_new_run(
    demo_templates: dict[tuple[str, str], dict[str, Any]], demo_assembly: Path, spark: Any, tmp_path: Path
) -> None:
    """The MwaaServerless stack's workflow YAML on Airflow 3.3.1 through dag-factory, its Athena load on DuckDB, its
    trigger and run-event Lambdas' code on the demo's moto with the service's events and API (Stubber): the failed load
    is reported and recorded by the report Lambda, and `pipeline-ops rerun` starts a new workflow run that loads."""
    if not AIRFLOW_PYTHON.exists():
        pytest.fail(f"{AIRFLOW_PYTHON} is missing: run `make airflow-venv` (make test does it)")
    out = io.StringIO()
    summary = demo_form.run_demo(
        "mwaa_serverless",
        fail_at="load",
        rows=ROWS,
        workdir=tmp_path / "mwaa_serverless",
        templates=demo_templates,
        assembly=demo_assembly,
        spark=spark,
        out=out,
    )
    text = out.getvalue()
    assert summary["record"]["state"] == "loaded", text
    # The rerun is a new workflow run with its own run id: the record's runs are the failed one and the loaded one.
    assert summary["record"]["runs"] == ["failed", "loaded"], text
    assert summary["merges_succeeded"] == 1, "the upload was loaded exactly once"
    assert summary["rows_match"] and summary["table_rows"] == summary["curated_rows"] > 0, text
    assert summary["query_rows"] > 0 and "daily_revenue_by_store.sql" in text
    assert summary["executions"] == ["FAILED", "SUCCEEDED"]
    assert [t["state"] for t in summary["steps"][-1]] == ["crawl", "clean", "find_curated_rows", "load"]
    assert all(t["outcome"] == "success" for t in summary["steps"][-1]), text
    assert summary["clean_job_runs"] == 2, "the new run cleans the upload again"
    failure = summary["failure_message"]
    assert failure["subject"].endswith("failed at load")
    message = failure["message"]
    assert message["pipeline"] == "mwaa_serverless" and message["failed_step"] == "load", message
    assert "DuckDB CatalogException" in message["cause"] and "retail_sales does not exist" in message["cause"], message
    assert '"state": "failed", "step": "load"' in text, "the report Lambda recorded the failure before the rerun"
    assert f"$ pipeline-ops --env dev rerun {summary['upload']}" in text and '"how": "started"' in text
    assert "RunsFailed = 1" in text and "RunsSucceeded = 1" in text, "each run counted once by its event's Lambda"
