"""The Athena load SQL, generated from the contract, executed on DuckDB: loading a run twice changes nothing."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import sqlglot

from pipeline_constructs.contract import DatasetContract
from pipeline_constructs.targets.load_sql import athena_merge_sql, check_run_id, iceberg_type, table_columns

CONTRACT = DatasetContract.from_file(Path(__file__).resolve().parent.parent / "contracts" / "retail_sales.yaml")
DUCK_TYPES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


def duck_type(hive_type: str) -> str:
    return hive_type.upper() if hive_type.startswith("decimal(") else DUCK_TYPES[hive_type]


def merge_on_duckdb(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    sql = athena_merge_sql(CONTRACT, database="db", table="retail_sales", runs_table="retail_sales_runs", run_id=run_id)
    con.execute(sqlglot.transpile(sql, read="athena", write="duckdb")[0])


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("ATTACH ':memory:' AS db")
    columns = table_columns(CONTRACT)
    ddl = ", ".join(f'"{name}" {duck_type(kind)}' for name, kind in columns)
    con.execute(f"CREATE TABLE db.retail_sales ({ddl})")
    con.execute(f'CREATE TABLE db.retail_sales_runs ({ddl}, "run_id" VARCHAR)')
    return con


def add_run_rows(con: duckdb.DuckDBPyConnection, run_id: str, rows: list[tuple]) -> None:
    for tx, store, quantity, price in rows:
        con.execute(
            "INSERT INTO db.retail_sales_runs VALUES (?, ?, 'SKU-1', ?, ?, 0, 'EUR', TIMESTAMP '2026-11-01 10:00:00', 'store', ?, DATE '2026-11-01', ?)",
            [tx, store, quantity, price, quantity * price, run_id],
        )


def table(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute("SELECT * FROM db.retail_sales ORDER BY transaction_id").fetchall()


def test_the_generated_merge_is_valid_athena_sql() -> None:
    sql = athena_merge_sql(CONTRACT, database="db", table="retail_sales", runs_table="retail_sales_runs", run_id="run-1")
    parsed = sqlglot.parse_one(sql, read="athena")
    assert parsed.key == "merge"
    assert "WHERE \"run_id\" = 'run-1'" in sql


def test_loading_the_same_run_twice_leaves_the_table_unchanged(con: duckdb.DuckDBPyConnection) -> None:
    add_run_rows(con, "run-1", [("TX-0000000001", "S001", 2, 5), ("TX-0000000002", "S002", 1, 7)])
    merge_on_duckdb(con, "run-1")
    first = table(con)
    merge_on_duckdb(con, "run-1")
    assert table(con) == first
    assert len(first) == 2


def test_a_later_run_updates_a_transaction_instead_of_duplicating_it(con: duckdb.DuckDBPyConnection) -> None:
    add_run_rows(con, "run-1", [("TX-0000000001", "S001", 2, 5)])
    add_run_rows(con, "run-2", [("TX-0000000001", "S001", 3, 5), ("TX-0000000003", "S003", 1, 9)])
    merge_on_duckdb(con, "run-1")
    merge_on_duckdb(con, "run-2")
    rows = {row[0]: row for row in table(con)}
    assert set(rows) == {"TX-0000000001", "TX-0000000003"}
    assert rows["TX-0000000001"][3] == 3  # quantity from run-2


def test_only_the_named_run_is_loaded(con: duckdb.DuckDBPyConnection) -> None:
    add_run_rows(con, "run-1", [("TX-0000000001", "S001", 2, 5)])
    add_run_rows(con, "run-2", [("TX-0000000002", "S002", 1, 7)])
    merge_on_duckdb(con, "run-2")
    assert [row[0] for row in table(con)] == ["TX-0000000002"]


@pytest.mark.parametrize("run_id", ["x' OR '1'='1", "run 1", "", "a" * 129])
def test_run_ids_that_could_break_out_of_the_literal_are_refused(run_id: str) -> None:
    with pytest.raises(ValueError, match="run_id="):
        check_run_id(run_id)


def test_every_contract_type_has_an_iceberg_type() -> None:
    assert [iceberg_type(t) for _, t in table_columns(CONTRACT)][:4] == ["string", "string", "string", "int"]
    assert iceberg_type("bigint") == "long"
    with pytest.raises(ValueError, match="'varchar'"):
        iceberg_type("varchar")
