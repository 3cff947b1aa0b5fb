"""Fixtures of the runtime tests: one local SparkSession for the whole session, and small-file helpers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONSTRUCTS = ROOT / "constructs"
if str(CONSTRUCTS) not in sys.path:  # the library may not be pip-installed in a bare checkout
    sys.path.insert(0, str(CONSTRUCTS))

RETAIL_CONTRACT = ROOT / "contracts" / "retail_sales.yaml"
HEADER = "transaction_id,store_id,sku,quantity,unit_price,discount,currency,sold_at,channel"


#: Every Spark test ends within this many seconds (a hang fails its test, not the suite); a test that needs
#: longer says so with its own `@pytest.mark.timeout`.
SPARK_TEST_SECONDS = 300


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spark: needs a local SparkSession (Java 17, pyspark)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("spark") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SPARK_TEST_SECONDS))


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for every Spark test, with the settings the Glue job runs with
    (`spark_settings.session_settings()`: adaptive execution on, Glue's shuffle and file split sizes, the job's
    own settings) on two cores."""
    from pipeline_constructs.runtime.spark_settings import local_session

    session = local_session(app_name="runtime-tests", cores=2)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def retail_contract_path() -> Path:
    return RETAIL_CONTRACT


@pytest.fixture(scope="session")
def contract():
    from pipeline_constructs.contract import DatasetContract

    return DatasetContract.from_file(RETAIL_CONTRACT)


@pytest.fixture(scope="session")
def header() -> str:
    """The retail CSV header in contract order."""
    return HEADER


@pytest.fixture(scope="session")
def make_row():
    """make_row(n, **overrides) -> one valid retail CSV line, transaction id TX-<n>."""
    return _row


@pytest.fixture(scope="session")
def read_outputs(spark):
    """read_outputs(result) -> (curated rows as dicts, quarantine records)."""
    return lambda result: _read_outputs(spark, result)


@pytest.fixture(scope="session")
def conserved(spark):
    """conserved(result) asserts the conservation equation against the files on disk; returns the outputs."""
    return lambda result: _assert_conserved(spark, result)


def _row(n: int = 1, **overrides: str) -> str:
    """One valid retail CSV line in HEADER order; keyword arguments replace single values."""
    values = {
        "transaction_id": f"TX-{n:010d}",
        "store_id": "S001",
        "sku": "SKU-1",
        "quantity": "2",
        "unit_price": "10.00",
        "discount": "1.00",
        "currency": "EUR",
        "sold_at": "2024-05-01T10:00:00Z",
        "channel": "store",
    }
    values.update(overrides)
    return ",".join(values[name] for name in HEADER.split(","))


def _read_outputs(spark, result) -> tuple[list[dict], list[dict]]:
    """The curated rows (as dicts, sorted by transaction_id, or else by the first column) and the quarantine records, read back from disk."""
    curated_dir = Path(result.curated_path)
    curated: list[dict] = []
    if any(curated_dir.rglob("*.parquet")):
        frame = spark.read.parquet(str(curated_dir))
        key = "transaction_id" if "transaction_id" in frame.columns else frame.columns[0]
        curated = [r.asDict() for r in frame.orderBy(key).collect()]
    quarantine = []
    for part in sorted(Path(result.quarantine_path).glob("rows/part-*")):
        quarantine += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines() if line]
    return curated, quarantine


def _assert_conserved(spark, result) -> tuple[list[dict], list[dict]]:
    """rows_in = rows_out + rows_quarantined + duplicates_dropped, and the same of the physical lines, with the
    counts matching what is on disk."""
    curated, quarantine = _read_outputs(spark, result)
    assert result.conservation_ok, result.summary()
    assert result.rows_in == result.rows_out + result.rows_quarantined + result.duplicates_dropped
    lines = result.lines_skipped + result.lines_out + result.lines_quarantined + result.lines_deduplicated
    assert result.lines_read == lines, result.conservation_errors()
    assert result.lines_quarantined == sum(q["line_count"] for q in quarantine)
    assert result.rows_out == len(curated)
    assert result.rows_quarantined == len(quarantine)
    assert sum(result.reasons.values()) >= result.rows_quarantined
    return curated, quarantine
