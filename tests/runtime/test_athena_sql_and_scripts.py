"""The shipped Athena query runs on DuckDB over the clean job's Parquet; the sample generator makes what the
contract expects; the Glue script imports its modules the way Glue ships them (top-level, no package)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline_constructs.runtime.clean_transform import run_clean

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_athena_sql_translates_to_duckdb():
    athena = _load("athena_on_duckdb")
    sql = athena.translate((ROOT / "sql" / "athena" / "daily_revenue_by_store.sql").read_text())
    assert "FROM retail_sales" in sql and "GROUP BY" in sql


@pytest.mark.spark
def test_daily_revenue_by_store_on_the_curated_parquet(spark, contract, tmp_path, header, make_row):
    athena = _load("athena_on_duckdb")
    src = tmp_path / "sales.csv"
    src.write_text(
        "\n".join(
            [
                header,
                make_row(1, store_id="S001", quantity="2", unit_price="10.00", discount="1.00"),
                make_row(2, store_id="S001", quantity="1", unit_price="5.50", discount="0.00"),
                make_row(2, store_id="S001", quantity="1", unit_price="5.50", discount="0.00"),  # duplicate
                make_row(3, store_id="S002", quantity="3", unit_price="2.00", discount="0.50", sold_at="2024-05-02T08:00:00Z"),
                make_row(4, store_id="S002", quantity="-1"),  # quarantined
            ]
        )
        + "\n"
    )
    result = run_clean(spark, contract, [str(src)], "r1", str(tmp_path / "curated"), str(tmp_path / "q"), 0.5)
    columns, rows = athena.run_query(ROOT / "sql" / "athena" / "daily_revenue_by_store.sql", "retail_sales", result.curated_path)
    table = [dict(zip(columns, row, strict=True)) for row in rows]
    assert [(str(r["sale_date"]), r["store_id"], r["sale_lines"], r["units"], r["revenue"]) for r in table] == [
        ("2024-05-01", "S001", 2, 3, Decimal("24.50")),
        ("2024-05-02", "S002", 1, 3, Decimal("5.50")),
    ]
    assert "24.50" in athena.format_table(columns, rows)


def test_sample_generator_writes_the_contract_header_and_bad_rows(tmp_path, header):
    generator = _load("make_sample_sales")
    path = tmp_path / "s.csv"
    counts = generator.generate(path, 5000, seed=1, bad_fraction=0.05)
    lines = path.read_text().splitlines()
    assert lines[0] == header and len(lines) == 5001
    assert counts["good"] + counts["duplicate"] + sum(counts[k] for k in generator.BAD_KINDS) == 5000
    assert all(counts[k] > 0 for k in generator.BAD_KINDS)
    assert generator.generate(tmp_path / "t.csv", 5000, seed=1, bad_fraction=0.05) == counts  # deterministic


def test_glue_script_imports_its_modules_as_top_level_files(tmp_path):
    from pipeline_constructs.clean_job import CLEAN_JOB_MODULES, RUNTIME_DIR

    for path in (RUNTIME_DIR / "glue_clean_job.py", *CLEAN_JOB_MODULES):
        shutil.copy(path, tmp_path / path.name)
    # As on Glue: the script and the modules the job ships beside it, and no pipeline_constructs package (None in
    # sys.modules blocks it).
    code = (
        "import sys; sys.modules['pipeline_constructs'] = None; sys.path.insert(0, sys.argv[1]);"
        "import glue_clean_job, json;"
        "print(json.dumps([glue_clean_job.run_clean.__module__, glue_clean_job.DatasetContract.__module__]))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["clean_transform", "contract"]
