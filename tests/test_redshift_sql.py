"""Redshift load SQL (pipeline_constructs.targets.redshift_sql) generated from the retail contract: types, statements parsed by
sqlglot in the Redshift dialect, and the load's idempotence shown on DuckDB over Parquet laid out as the clean job writes
it (`run_id=<id>/sale_date=<value>/part-*.parquet`, the partition column only in the directory name).

Redshift itself cannot run here. On DuckDB the CREATE and MERGE statements run as sqlglot translates them; the COPY runs
as its equivalent (insert the files' columns by position from every file under the `.../sale_date=` prefix) and LOCK is
left out (DuckDB has no table locks; it serializes writers itself).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from pipeline_constructs.contract import DatasetContract
from pipeline_constructs.targets.load_sql import RUN_ID_PLACEHOLDER
from pipeline_constructs.targets.redshift_sql import (
    MAX_VARCHAR_BYTES,
    load_statements,
    partition_expression,
    redshift_type,
)
from stacks.stateful_stack import CONTRACT_PATH

ROLE = "arn:aws:iam::123456789012:role/retail-copy"
COLUMNS = ["transaction_id", "store_id", "sku", "quantity", "unit_price", "discount", "currency", "sold_at", "channel", "revenue"]


@pytest.fixture(scope="module")
def contract() -> DatasetContract:
    return DatasetContract.from_file(CONTRACT_PATH)


def statements(contract: DatasetContract, run_id: str = "run-1") -> list[str]:
    return load_statements(contract, schema="public", table="retail_sales", bucket="curated-bucket", iam_role_arn=ROLE, run_id=run_id)


@pytest.mark.parametrize(
    ("hive", "redshift"),
    [
        ("int", "INTEGER"),
        ("bigint", "BIGINT"),
        ("double", "DOUBLE PRECISION"),
        ("boolean", "BOOLEAN"),
        ("date", "DATE"),
        ("timestamp", "TIMESTAMP"),
        ("decimal(12,2)", "DECIMAL(12,2)"),
        ("string", f"VARCHAR({MAX_VARCHAR_BYTES})"),
    ],
)
def test_hive_types_map_to_redshift_types(hive: str, redshift: str) -> None:
    assert redshift_type(hive) == redshift


def test_varchar_is_sized_in_bytes_for_utf8_and_capped() -> None:
    assert redshift_type("string", max_chars=13) == "VARCHAR(52)"
    assert redshift_type("string", max_chars=100_000) == f"VARCHAR({MAX_VARCHAR_BYTES})"
    with pytest.raises(ValueError, match="'map<string,int>'"):
        redshift_type("map<string,int>")


def test_table_columns_follow_the_contract(contract: DatasetContract) -> None:
    create_target, _, create_staging, _, _ = statements(contract)
    target = sqlglot.parse_one(create_target, read="redshift")
    staging = sqlglot.parse_one(create_staging, read="redshift")
    target_columns = {c.name: c for c in target.find_all(exp.ColumnDef)}
    staging_columns = [c.name for c in staging.find_all(exp.ColumnDef)]
    # Staging = the Parquet files' columns in file order (COPY maps columnar files by position); no partition column.
    assert staging_columns == COLUMNS
    assert list(target_columns) == [*COLUMNS, "sale_date"]
    assert target_columns["transaction_id"].args["kind"].sql("redshift") == "VARCHAR(52)"  # max_length 13
    assert target_columns["currency"].args["kind"].sql("redshift") == "VARCHAR(12)"  # longest allowed value
    assert target_columns["unit_price"].args["kind"].sql("redshift") == "DECIMAL(10, 2)"
    not_null = {name for name, c in target_columns.items() if c.find(exp.NotNullColumnConstraint)}
    assert not_null == {"transaction_id", "store_id", "sku", "quantity", "unit_price", "discount", "currency", "sold_at"}
    assert 'PRIMARY KEY ("transaction_id")' in create_target
    assert "IF NOT EXISTS" in create_target and staging.args["properties"].find(exp.TemporaryProperty)


def test_every_statement_parses_in_the_redshift_dialect(contract: DatasetContract) -> None:
    parsed = [sqlglot.parse_one(sql, read="redshift") for sql in statements(contract)]
    assert [type(p).__name__ for p in parsed] == ["Create", "Command", "Create", "Copy", "Merge"]
    # sqlglot has no LOCK expression; it keeps the statement whole.
    assert parsed[1].sql("redshift") == 'LOCK "public"."retail_sales"'


def test_copy_reads_only_the_runs_partition_directories_with_the_copy_role(contract: DatasetContract) -> None:
    copy = sqlglot.parse_one(statements(contract, run_id="2026-11-25T09_12_44Z-1")[3], read="redshift")
    assert isinstance(copy, exp.Copy)
    [source] = copy.args["files"]
    # The prefix ends at the partition directory name: Spark's _SUCCESS marker beside the directories is not read.
    assert source.name == "s3://curated-bucket/retail_sales/runs/run_id=2026-11-25T09_12_44Z-1/sale_date="
    sql = copy.sql("redshift")
    assert f"IAM_ROLE '{ROLE}'" in sql and "PARQUET" in sql.upper()


def test_the_placeholder_template_puts_the_run_id_in_the_copy_only(contract: DatasetContract) -> None:
    sqls = statements(contract, run_id=RUN_ID_PLACEHOLDER)
    assert [RUN_ID_PLACEHOLDER in s for s in sqls] == [False, False, False, True, False]


def test_a_run_id_that_could_break_out_of_the_literal_is_rejected(contract: DatasetContract) -> None:
    with pytest.raises(ValueError, match="run_id=\"x'; DROP TABLE"):
        statements(contract, run_id="x'; DROP TABLE retail_sales; --")


def test_partition_column_is_recomputed_from_its_source(contract: DatasetContract) -> None:
    assert partition_expression(contract) == 'CAST(s."sold_at" AS DATE)'
    merge = sqlglot.parse_one(statements(contract)[4], read="redshift")
    assert isinstance(merge, exp.Merge)
    assert 'CAST(s."sold_at" AS DATE)' in merge.sql("redshift")


def test_an_untranslatable_partition_expression_asks_for_one(contract: DatasetContract) -> None:
    data = contract.to_dict()
    data["partition"] = {"name": "sale_month", "type": "string", "expression": "date_format(sold_at, 'yyyy-MM')"}
    other = DatasetContract.from_dict(data)
    with pytest.raises(ValueError, match="pass partition_expression"):
        partition_expression(other)


# --- idempotence on DuckDB ---------------------------------------------------------------------------------------------
ROWS = [
    (
        "TX-0000000001",
        "S001",
        "SKU-1",
        2,
        Decimal("10.00"),
        Decimal("1.00"),
        "EUR",
        datetime(2026, 11, 1, 9, 30),
        "store",
        Decimal("19.00"),
    ),
    (
        "TX-0000000002",
        "S001",
        "SKU-2",
        1,
        Decimal("5.50"),
        Decimal("0.00"),
        "EUR",
        datetime(2026, 11, 1, 23, 59, 59),
        None,
        Decimal("5.50"),
    ),
    ("TX-0000000003", "WEB", "SKU-3", 3, Decimal("7.25"), Decimal("0.75"), "GBP", datetime(2026, 11, 2, 0, 0), "web", Decimal("21.00")),
]


def write_run(root: Path, run_id: str, rows: list[tuple]) -> Path:
    """Parquet as the clean job writes it: partitioned by sale_date, the partition column not in the files, _SUCCESS."""
    run_dir = root / "retail_sales" / "runs" / f"run_id={run_id}"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE rows (transaction_id VARCHAR, store_id VARCHAR, sku VARCHAR, quantity INTEGER, unit_price DECIMAL(10,2), "
        "discount DECIMAL(10,2), currency VARCHAR, sold_at TIMESTAMP, channel VARCHAR, revenue DECIMAL(12,2))"
    )
    con.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.execute(f"COPY (SELECT *, CAST(sold_at AS DATE) AS sale_date FROM rows) TO '{run_dir}' (FORMAT PARQUET, PARTITION_BY (sale_date))")
    (run_dir / "_SUCCESS").write_bytes(b"")
    in_files = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{run_dir}/*/*.parquet', hive_partitioning = false)").fetchall()
    assert [c[0] for c in in_files] == COLUMNS  # like Spark's output: sale_date only in the directory names
    return run_dir


def to_duckdb(sql: str) -> str:
    return sqlglot.transpile(sql, read="redshift", write="duckdb")[0]


def load(con: duckdb.DuckDBPyConnection, contract: DatasetContract, root: Path, run_id: str) -> None:
    """One load: the generated statements in one transaction (COPY as its DuckDB equivalent, LOCK left out)."""
    create_target, lock, create_staging, copy, merge = statements(contract, run_id=run_id)
    assert lock.startswith("LOCK ")
    prefix = sqlglot.parse_one(copy, read="redshift").args["files"][0].name
    local_prefix = prefix.replace("s3://curated-bucket", str(root))
    con.execute("BEGIN TRANSACTION")
    con.execute(to_duckdb(create_target))
    con.execute(to_duckdb(create_staging))
    # Redshift COPY: every object whose key starts with the prefix, columns by position.
    con.execute(f"INSERT INTO retail_sales_staging SELECT * FROM read_parquet('{local_prefix}*/*.parquet', hive_partitioning = false)")
    con.execute(to_duckdb(merge))
    con.execute("DROP TABLE retail_sales_staging")  # a temp table ends with the Data API session
    con.execute("COMMIT")


def table(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute('SELECT * FROM "public"."retail_sales" ORDER BY transaction_id').fetchall()


@pytest.fixture
def warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA public")
    return con


def test_loading_the_same_run_twice_leaves_the_table_unchanged(contract: DatasetContract, tmp_path: Path, warehouse) -> None:
    write_run(tmp_path, "run-1", ROWS)

    load(warehouse, contract, tmp_path, "run-1")
    first = table(warehouse)
    load(warehouse, contract, tmp_path, "run-1")

    assert table(warehouse) == first
    assert len(first) == 3
    assert first[0] == (*ROWS[0], date(2026, 11, 1))
    # sale_date recomputed from sold_at (the files do not hold it), including the last second of a day.
    assert [row[-1] for row in first] == [date(2026, 11, 1), date(2026, 11, 1), date(2026, 11, 2)]


def test_a_later_run_updates_changed_rows_and_adds_new_ones(contract: DatasetContract, tmp_path: Path, warehouse) -> None:
    write_run(tmp_path, "run-1", ROWS)
    corrected = (
        "TX-0000000002",
        "S001",
        "SKU-2",
        4,
        Decimal("5.50"),
        Decimal("2.00"),
        "EUR",
        datetime(2026, 11, 3, 8, 0),
        "phone",
        Decimal("20.00"),
    )
    new = (
        "TX-0000000004",
        "S042",
        "SKU-9",
        1,
        Decimal("99.99"),
        Decimal("0.00"),
        "USD",
        datetime(2026, 11, 3, 12, 0),
        None,
        Decimal("99.99"),
    )
    write_run(tmp_path, "run-2", [corrected, new])

    load(warehouse, contract, tmp_path, "run-1")
    load(warehouse, contract, tmp_path, "run-2")
    after = table(warehouse)
    load(warehouse, contract, tmp_path, "run-2")

    assert after == [
        (*ROWS[0], date(2026, 11, 1)),
        (*corrected, date(2026, 11, 3)),  # updated in place, its partition column moved with sold_at
        (*ROWS[2], date(2026, 11, 2)),
        (*new, date(2026, 11, 3)),
    ]
    assert table(warehouse) == after
