"""Run the project's Athena SQL on DuckDB over the clean job's curated Parquet, with no AWS account.

sqlglot translates the Athena (Trino) SQL to DuckDB; the curated table is a DuckDB view over the run's
hive-partitioned Parquet (`<curated>/run_id=<id>/<partition>=<value>/*.parquet`), so the partition column is a real
column, as in the Glue table.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import sqlglot


def translate(athena_sql: str) -> str:
    """The Athena SQL text as DuckDB SQL (one statement)."""
    statements = sqlglot.transpile(athena_sql, read="athena", write="duckdb", pretty=True)
    if len(statements) != 1:
        raise ValueError(f"expected one SQL statement, got {len(statements)}")
    return statements[0]


def run_query(sql_path: str | Path, table: str, parquet_dir: str | Path) -> tuple[list[str], list[tuple]]:
    """Run the Athena query in `sql_path` with `table` bound to the Parquet under `parquet_dir`."""
    con = duckdb.connect()
    glob = str(Path(parquet_dir) / "**" / "*.parquet")
    con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")
    cursor = con.execute(translate(Path(sql_path).read_text(encoding="utf-8")))
    columns = [d[0] for d in cursor.description]
    return columns, cursor.fetchall()


def format_table(columns: list[str], rows: list[tuple], limit: int = 20) -> str:
    """A plain-text table of the first `limit` rows, and how many there are in all."""
    shown = [[("" if v is None else str(v)) for v in row] for row in rows[:limit]]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(columns)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), line]
    out += [" | ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in shown]
    if len(rows) > limit:
        out.append(f"... {len(rows)} rows in all ({limit} shown)")
    return "\n".join(out)
