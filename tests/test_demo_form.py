"""`make demo FORM=...` (scripts/demo_form.py), run in-process on a small generated upload: each implemented form's
synthesized definition ends with the upload loaded exactly once in the ledger and the loaded table holding exactly
the rows its clean job curated, with and without a failed first load recovered by `pipeline-ops rerun`."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts import demo_form

pytestmark = [pytest.mark.spark, pytest.mark.timeout(300)]
ROWS = 300


@pytest.fixture(scope="module")
def demo_templates() -> dict[tuple[str, str], dict[str, Any]]:
    """The app as the demo synthesizes it (cdk-nag off)."""
    return demo_form.synthesize()


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


def test_the_airflow_forms_say_what_covers_them_instead(capsys: pytest.CaptureFixture[str]) -> None:
    for form in ("mwaa", "mwaa_serverless"):
        assert demo_form.main(["--form", form]) == 2
        assert "tests/airflow/" in capsys.readouterr().err
