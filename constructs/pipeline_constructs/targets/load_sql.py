"""SQL that loads one run's curated output into the query table, generated from the dataset contract.

Stdlib only: the Step Functions form renders it at synth time and the tests run it on DuckDB (through sqlglot),
so the SQL users deploy is the SQL the tests execute. Every load is a MERGE on the contract's natural key, so
loading the same run twice leaves the table as it was after the first load.
"""

from __future__ import annotations

import re

from ..contract import DatasetContract

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# The placeholder the Step Functions form replaces with the execution name (States.Format uses '{}').
RUN_ID_PLACEHOLDER = "{}"

_ICEBERG_TYPES = {
    "string": "string",
    "int": "int",
    "bigint": "long",
    "double": "double",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}


def iceberg_type(hive_type: str) -> str:
    """The Iceberg type of a contract (Hive/Spark) type; decimals keep precision and scale."""
    if hive_type.startswith("decimal("):
        return hive_type
    try:
        return _ICEBERG_TYPES[hive_type]
    except KeyError:
        raise ValueError(f"type {hive_type!r} has no Iceberg equivalent; use one of {sorted(_ICEBERG_TYPES)} or decimal(p,s)") from None


def quote(identifier: str) -> str:
    """A double-quoted SQL identifier (contract names are validated snake_case; quoting keeps keywords safe)."""
    return '"' + identifier.replace('"', '""') + '"'


def check_run_id(run_id: str) -> str:
    """Run ids go into SQL literals: allow only the characters Step Functions and Glue use in their run ids."""
    if run_id != RUN_ID_PLACEHOLDER and not RUN_ID_PATTERN.match(run_id):
        raise ValueError(f"run_id={run_id!r}: must match {RUN_ID_PATTERN.pattern}")
    return run_id


def table_columns(contract: DatasetContract) -> list[tuple[str, str]]:
    """Columns of the query table: the curated columns, then the partition column."""
    return [*contract.output_columns(), contract.partition_column()]


def athena_merge_sql(contract: DatasetContract, *, database: str, table: str, runs_table: str, run_id: str) -> str:
    """Athena (Trino) MERGE of one run's rows from the runs table into the Iceberg query table.

    `run_id` may be RUN_ID_PLACEHOLDER to build a States.Format template.
    """
    check_run_id(run_id)
    columns = [name for name, _ in table_columns(contract)]
    keys = list(contract.natural_key)
    non_keys = [c for c in columns if c not in keys]
    target = f"{quote(database)}.{quote(table)}"
    source = f"{quote(database)}.{quote(runs_table)}"
    select = ", ".join(quote(c) for c in columns)
    on = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in keys)
    update = ", ".join(f"{quote(c)} = s.{quote(c)}" for c in non_keys)
    insert_values = ", ".join(f"s.{quote(c)}" for c in columns)
    return (
        f"MERGE INTO {target} AS t "
        f"USING (SELECT {select} FROM {source} WHERE {quote('run_id')} = '{run_id}') AS s "
        f"ON {on} "
        f"WHEN MATCHED THEN UPDATE SET {update} "
        f"WHEN NOT MATCHED THEN INSERT ({select}) VALUES ({insert_values})"
    )


def states_format_literal(text: str) -> str:
    """Escape text for use as a string literal inside a States.Format intrinsic (', {, } and \\ are special)."""
    out = text.replace("\\", "\\\\").replace("'", "\\'")
    # Keep the one '{}' placeholder; escape any other brace.
    parts = out.split(RUN_ID_PLACEHOLDER)
    parts = [p.replace("{", "\\{").replace("}", "\\}") for p in parts]
    return RUN_ID_PLACEHOLDER.join(parts)
