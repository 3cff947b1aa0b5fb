"""Airflow for the DAG tests: a throw-away AIRFLOW_HOME with a SQLite metadata database migrated once per session,
and a DAG folder holding the library's DAG files with one deployed configuration per load target.

Airflow reads its configuration when it is first imported, so the environment is set here, before any import of
airflow. Everything runs against moto (fake credentials): no test can reach an AWS account.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_SOURCE = REPO / "constructs" / "pipeline_constructs" / "runtime" / "mwaa"
SHARED_STEP_MODULES = [REPO / "constructs" / "pipeline_constructs" / "runtime" / name for name in ("pipeline_plan.py", "upload_ledger.py")]
REGION = "eu-west-1"
ACCOUNT = "123456789012"
LEDGER_TABLE = "upload-ledger"
SCHEDULED = "scheduled"
"""The DAG folder whose configuration has a schedule (athena target): DAG id `sales_scheduled_pipeline`."""
SCHEDULE = {"cron": "30 6 * * 1-5", "time_zone": "Europe/Paris", "expression": "cron(30 6 ? * 2-6 *)"}
INBOX_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/sales-mwaa-inbox"
SCHEDULED_PREFIX = "incoming/mwaa/"

_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
DAGS_FOLDER = _HOME / "dags"
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": ".*",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
)


def deployed_config(target: str) -> dict[str, Any]:
    """What the construct writes beside the DAG (pipeline_dag_config.json), with test resource names."""
    load: dict[str, Any]
    if target == "athena":
        load = {
            "target": "athena",
            "database": "sales_db",
            "workgroup": "sales-load",
            "sql": 'MERGE INTO "sales_db"."sales" t USING (SELECT * FROM "sales_db"."sales_runs" '
            "WHERE run_id = '__pipeline_run_id__') s ON t.id = s.id WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)",
        }
    else:
        load = {
            "target": "redshift",
            "database": "sales",
            "workgroup": "sales-wg",
            "sqls": [
                "CREATE TEMP TABLE sales_staging (LIKE public.sales)",
                "COPY sales_staging FROM 's3://curated-bucket/sales/runs/run_id=__pipeline_run_id__/' "
                "IAM_ROLE 'arn:aws:iam::123456789012:role/copy' FORMAT AS PARQUET",
                "MERGE INTO public.sales USING sales_staging s ON public.sales.id = s.id REMOVE DUPLICATES",
            ],
        }
    return {
        "dag_id": f"sales_{target}_pipeline",
        "dataset": "sales",
        "airflow_version": "3.3.1",
        "region": REGION,
        "crawler_name": "sales-raw-crawler",
        "clean_job_name": "sales-clean",
        "topic_arn": f"arn:aws:sns:{REGION}:{ACCOUNT}:alerts",
        "load": load,
        "curated_rows": {"bucket": "curated-bucket", "prefix": "sales/runs/run_id=", "partition": "sale_date"},
        "max_active_runs": 3,
        "retries": 0,
        "retry_delay_seconds": 1,
        "max_retry_delay_seconds": 4,
        "poll_interval_seconds": 1,
        "timeouts_seconds": {"crawl": 60, "clean": 60, "load": 60},
        "dagrun_timeout_seconds": 600,
        "ledger_table": LEDGER_TABLE,
        "ledger_ttl_days": 400,
    }


BOTH = "both"
"""The DAG folder whose configuration loads both targets in parallel: DAG id `sales_both_pipeline`."""


def both_config() -> dict[str, Any]:
    """What the construct writes beside the DAG of a form given both targets (`load` is a list: athena, redshift)."""
    return {
        **deployed_config("athena"),
        "dag_id": "sales_both_pipeline",
        "load": [deployed_config(t)["load"] for t in ("athena", "redshift")],
    }


def scheduled_config() -> dict[str, Any]:
    """What the construct writes beside the DAG of a form with `schedule` (MwaaPipeline(schedule=...)): the athena
    configuration plus the timetable, the inbox and the landing prefix the claim takes uploads from."""
    return {
        **deployed_config("athena"),
        "dag_id": "sales_scheduled_pipeline",
        "schedule": dict(SCHEDULE),
        "inbox_queue_url": INBOX_URL,
        "landing_bucket": "landing-bucket",
        "landing_prefix": SCHEDULED_PREFIX,
    }


def _write_dag_folder() -> None:
    shutil.rmtree(DAGS_FOLDER, ignore_errors=True)
    for target in ("athena", "redshift", SCHEDULED, BOTH):
        folder = DAGS_FOLDER / target
        folder.mkdir(parents=True)
        for module in DAG_SOURCE.glob("*.py"):  # the DAG and its modules, as the construct deploys the folder
            if module.name != "__init__.py":
                shutil.copy(module, folder / module.name)
        for module in SHARED_STEP_MODULES:  # what the construct ships beside the DAG
            shutil.copy(module, folder / module.name)
        if target == SCHEDULED:  # the claim's module, shipped beside a scheduled DAG only
            shutil.copy(REPO / "constructs" / "pipeline_constructs" / "runtime" / "workflow_inputs.py", folder / "workflow_inputs.py")
        config = scheduled_config() if target == SCHEDULED else both_config() if target == BOTH else deployed_config(target)
        (folder / "pipeline_dag_config.json").write_text(json.dumps(config), encoding="utf-8")
    # Airflow puts the DAG folder on sys.path; the DAG imports its sibling pipeline_steps from there.
    sys.path.insert(0, str(DAGS_FOLDER / "athena"))
    sys.path.append(str(DAGS_FOLDER / SCHEDULED))  # and workflow_inputs, which only a scheduled DAG's folder ships


_write_dag_folder()


@pytest.fixture(scope="session", autouse=True)
def airflow_db() -> Iterator[None]:
    """The metadata database, migrated once for the session."""
    from airflow.utils import db

    db.resetdb()
    yield
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def dagbag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))
