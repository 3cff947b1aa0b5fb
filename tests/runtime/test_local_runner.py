"""The `pipeline-local` command: its last stdout line is the JSON summary; exit status says how the run went."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_constructs.runtime import local_runner

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.spark
def test_clean_prints_the_summary_as_its_last_line(spark, retail_contract_path, tmp_path, header, make_row, capsys):
    src = tmp_path / "sales.csv"
    src.write_text("\n".join([header, make_row(1), make_row(2), make_row(2), make_row(3, currency="XXX")]) + "\n")
    out = tmp_path / "out"
    argv = [
        "clean",
        "--contract",
        str(retail_contract_path),
        "--input",
        str(src),
        "--output",
        str(out),
        "--max-quarantine-ratio",
        "0.5",
    ]
    assert local_runner.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {k: summary[k] for k in ("rows_in", "rows_out", "rows_quarantined", "duplicates_dropped")} == {
        "rows_in": 4,
        "rows_out": 2,
        "rows_quarantined": 1,
        "duplicates_dropped": 1,
    }
    assert summary["reasons"] == {"check_allowed_values:currency": 1}
    assert list((out / "curated" / "run_id=local").glob("sale_date=*/*.parquet"))
    assert list((out / "quarantine" / "run_id=local" / "rows").glob("part-*.json"))


@pytest.mark.spark
def test_clean_exits_1_when_the_run_fails(spark, retail_contract_path, tmp_path, header, make_row, capsys):
    src = tmp_path / "sales.csv"
    src.write_text("\n".join([header, make_row(1, quantity="x"), make_row(2)]) + "\n")
    argv = ["clean", "--contract", str(retail_contract_path), "--input", str(src), "--output", str(tmp_path / "o")]
    assert local_runner.main(argv) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["status"] == "failed"
    assert "above the limit" in captured.err


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "constructs"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "pipeline_constructs.runtime.local_runner", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def test_validate_prints_the_canonical_json(retail_contract_path):
    done = _cli("validate", "--contract", str(retail_contract_path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["name"] == "retail_sales"


def test_a_bad_contract_exits_2_naming_the_field(tmp_path, header):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\ncolumns: [{name: a, type: varchar}]\nnatural_key: [a]\npartition: {name: d, type: date, expression: current_date()}\n"
    )
    done = _cli("clean", "--contract", str(bad), "--input", str(bad), "--output", str(tmp_path))
    assert done.returncode == 2 and "columns[0].type: unsupported type 'varchar'" in done.stderr


def _retail_with(tmp_path: Path, old: str, new: str) -> Path:
    text = (ROOT / "contracts" / "retail_sales.yaml").read_text()
    assert old in text
    path = tmp_path / "contract.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("expression: quantity * unit_price - discount", "expression: quantity * * unit_price", "derived[0].expression: does not parse"),
        (
            "expression: quantity * unit_price - discount",
            "expression: quantity * unit_prise",
            "derived[0].expression: unknown column 'unit_prise'",
        ),
        ("expression: to_date(sold_at)", "expression: to_datum(sold_at)", "partition.expression: unknown function 'to_datum'"),
        ('pattern: "^TX-[0-9]{10}$"', 'pattern: "^(?P<tx>TX)-[0-9]{10}$"', "columns[0].checks.pattern: (?P<name>...) is Python-only"),
        ("name: retail_sales", "name: [retail_sales]", "name: expected a string"),
    ],
    ids=["not-parsing", "unknown-column", "unknown-function", "python-regex", "wrong-type"],
)
def test_validate_exits_2_with_the_field_path_and_no_traceback(tmp_path, old, new, message):
    done = _cli("validate", "--contract", str(_retail_with(tmp_path, old, new)))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_validate_accepts_unquoted_yaml_dates(tmp_path):
    contract = _retail_with(tmp_path, 'min: "2000-01-01T00:00:00"', "min: 2000-01-01T00:00:00")
    done = _cli("validate", "--contract", str(contract))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["columns"][7]["checks"] == {"min": "2000-01-01T00:00:00"}


def test_validate_of_a_missing_file_exits_2(tmp_path):
    done = _cli("validate", "--contract", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2 and "cannot read contract file" in done.stderr and "Traceback" not in done.stderr
