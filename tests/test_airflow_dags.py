"""The DAG tests (tests/airflow) run in their own virtualenv, so that `make test` and CI fail when they fail.

Airflow cannot share `.venv`: its constraints pin boto3, moto and other packages the rest of the suite needs at other
versions. `make test` creates `.venv-airflow` from tests/airflow/requirements.txt and the committed constraints
file before it runs pytest; this test runs the DAG suite there and shows its output when it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
AIRFLOW_PYTHON = REPO / ".venv-airflow" / "bin" / "python"


@pytest.mark.airflow
def test_dag_suite_passes_on_airflow_in_its_own_virtualenv() -> None:
    assert AIRFLOW_PYTHON.exists(), f"{AIRFLOW_PYTHON.relative_to(REPO)} is missing: run `make airflow-venv` (make test does it)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AIRFLOW", "AWS_"))}
    result = subprocess.run(
        [str(AIRFLOW_PYTHON), "-m", "pytest", "-q", "-c", "tests/airflow/pytest.ini", "--rootdir", "tests/airflow", "tests/airflow"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    sys.stdout.write(f"DAG suite: {summary}\n")
    assert result.returncode == 0, f"DAG tests failed (exit {result.returncode}):\n{result.stdout[-20000:]}\n{result.stderr[-5000:]}"
    assert " passed" in summary and "skipped" not in summary, summary
