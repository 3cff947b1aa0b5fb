"""The DAG tests (tests/airflow) run in their own virtualenv, so that `make test` and CI fail when they fail.

Airflow cannot share `.venv`: its constraints pin boto3, moto and other packages the rest of the suite needs at other
versions. `make test` creates `.venv-airflow` from tests/airflow/requirements.txt and the committed constraints
file before it runs pytest. The suite starts in the background as soon as collection selects this test
(tests/conftest.py), so it runs beside the other tests; this test waits for it and shows its output when it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
AIRFLOW_PYTHON = REPO / ".venv-airflow" / "bin" / "python"
_running: dict[str, tuple[subprocess.Popen, object]] = {}


def start_dag_suite() -> None:
    """Start the DAG suite in .venv-airflow (once per session); its output goes to a temporary file."""
    if "suite" in _running or not AIRFLOW_PYTHON.exists():
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AIRFLOW", "AWS_"))}
    output = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(
        [str(AIRFLOW_PYTHON), "-m", "pytest", "-q", "-c", "tests/airflow/pytest.ini", "--rootdir", "tests/airflow", "tests/airflow"],
        cwd=REPO,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _running["suite"] = (process, output)


@pytest.mark.airflow
def test_dag_suite_passes_on_airflow_in_its_own_virtualenv() -> None:
    assert AIRFLOW_PYTHON.exists(), f"{AIRFLOW_PYTHON.relative_to(REPO)} is missing: run `make airflow-venv` (make test does it)"
    start_dag_suite()
    process, output = _running.pop("suite")
    try:
        returncode = process.wait(timeout=600)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    output.seek(0)  # type: ignore[attr-defined]
    text = output.read()  # type: ignore[attr-defined]
    output.close()  # type: ignore[attr-defined]
    summary = text.strip().splitlines()[-1] if text.strip() else ""
    sys.stdout.write(f"DAG suite: {summary}\n")
    assert returncode == 0, f"DAG tests failed (exit {returncode}):\n{text[-25000:]}"
    assert " passed" in summary and "skipped" not in summary, summary
