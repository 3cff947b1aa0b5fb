"""Redshift SQL that loads one run's curated Parquet, generated from the dataset contract (stdlib only).

One load is a list of statements that the Redshift Data API's `BatchExecuteStatement` runs as ONE transaction:

1. `CREATE TABLE IF NOT EXISTS` the target table (the contract's columns, then the partition column; the natural key
   NOT NULL and the primary key, sorted by the partition column), so a fresh namespace needs no setup step;
2. `LOCK` the target table, so two loads running at once queue instead of failing on serializable isolation;
3. `CREATE TEMP TABLE` the staging table (exactly the Parquet files' columns, in file order: Redshift COPY maps
   columnar files by position and needs the same number of columns). It lives for the Data API session only;
4. `COPY` the run's Parquet from `s3://<curated>/<dataset>/runs/run_id=<id>/<partition>=` into it. The prefix
   ends at the partition directory name, so Spark's `_SUCCESS` marker is not read. Redshift COPY has no option that
   turns Hive-style `<partition>=<value>` directories into a column (only Spectrum external tables do), so:
5. `MERGE` into the target on the natural key, recomputing the partition column from its source column
   (`to_date(sold_at)` in Spark is `CAST(sold_at AS DATE)` here; the clean job writes timestamps in UTC).

MERGE on the natural key makes the load idempotent: the same run loaded twice leaves the table as it was.
"""

from __future__ import annotations

import re

from ..contract import DatasetContract, decimal_precision_scale
from .load_sql import RUN_ID_PLACEHOLDER, check_run_id, quote

# Redshift VARCHAR lengths are in bytes; a UTF-8 character takes up to 4.
MAX_VARCHAR_BYTES = 65535
_BYTES_PER_CHAR = 4
_REDSHIFT_TYPES = {
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE PRECISION",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,126}$")
_TO_DATE = re.compile(r"^\s*(?:to_date|date|cast)\s*\(\s*([a-z_][a-z0-9_]*)\s*(?:as\s+date\s*)?\)\s*$", re.IGNORECASE)
_PLAIN_COLUMN = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*$")


def redshift_type(hive_type: str, *, max_chars: int | None = None) -> str:
    """The Redshift type of a contract (Hive/Spark) type.

    Strings become VARCHAR sized for `max_chars` UTF-8 characters (4 bytes each), or the largest VARCHAR (65535
    bytes) when the contract gives no length.
    """
    if hive_type == "string":
        size = MAX_VARCHAR_BYTES if max_chars is None else min(max(max_chars, 1) * _BYTES_PER_CHAR, MAX_VARCHAR_BYTES)
        return f"VARCHAR({size})"
    decimal = decimal_precision_scale(hive_type)
    if decimal is not None:
        return f"DECIMAL({decimal[0]},{decimal[1]})"
    try:
        return _REDSHIFT_TYPES[hive_type]
    except KeyError:
        raise ValueError(
            f"type {hive_type!r} has no Redshift equivalent; use string, decimal(p,s) or one of {sorted(_REDSHIFT_TYPES)}"
        ) from None


def _max_chars(contract: DatasetContract, name: str) -> int | None:
    try:
        checks = contract.column(name).checks
    except KeyError:
        return None
    if checks.max_length is not None:
        return checks.max_length
    if checks.allowed_values:
        return max(len(str(v)) for v in checks.allowed_values)
    return None


def check_identifier(argument: str, value: str) -> str:
    """Schema and table names go into SQL: lower-case snake_case only."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValueError(f"{argument}={value!r}: must match {_IDENTIFIER.pattern}")
    return value


def partition_expression(contract: DatasetContract, source_alias: str = "s") -> str:
    """The Redshift expression that recomputes the partition column from the staging row.

    Supports the partition expressions that are a date of one column (`to_date(c)`, `date(c)`, `cast(c as date)`)
    or one column itself; anything else raises, so that the caller passes its own Redshift expression.
    """
    name, part_type = contract.partition_column()
    expression = contract.partition.expression
    file_columns = {n for n, _ in contract.output_columns()}
    match = _TO_DATE.match(expression)
    if match and part_type == "date" and match.group(1) in file_columns:
        return f"CAST({source_alias}.{quote(match.group(1))} AS DATE)"
    match = _PLAIN_COLUMN.match(expression)
    if match and match.group(1) in file_columns:
        return f"CAST({source_alias}.{quote(match.group(1))} AS {redshift_type(part_type)})"
    raise ValueError(
        f"contract partition {name}={expression!r}: no Redshift translation; pass partition_expression, a Redshift "
        f"expression over the staging row aliased {source_alias!r}"
    )


def column_definitions(contract: DatasetContract, *, with_partition: bool) -> list[str]:
    """`"name" TYPE [NOT NULL]` for each curated column (file order), then the partition column if asked.

    NOT NULL for the natural key and the contract's non-nullable columns (the clean job quarantines rows without them).
    """
    required = set(contract.natural_key) | {c.name for c in contract.columns if not c.nullable}
    out = []
    for name, hive_type in contract.output_columns():
        not_null = " NOT NULL" if name in required else ""
        out.append(f"{quote(name)} {redshift_type(hive_type, max_chars=_max_chars(contract, name))}{not_null}")
    if with_partition:
        name, hive_type = contract.partition_column()
        out.append(f"{quote(name)} {redshift_type(hive_type)}")
    return out


def create_target_table_sql(contract: DatasetContract, *, schema: str, table: str) -> str:
    """`CREATE TABLE IF NOT EXISTS` of the target table: contract columns, partition column, primary key, sort key."""
    target = f"{quote(check_identifier('schema', schema))}.{quote(check_identifier('table', table))}"
    columns = column_definitions(contract, with_partition=True)
    key = ", ".join(quote(k) for k in contract.natural_key)
    partition = quote(contract.partition_column()[0])
    return f"CREATE TABLE IF NOT EXISTS {target} ({', '.join(columns)}, PRIMARY KEY ({key})) DISTSTYLE AUTO SORTKEY ({partition})"


def create_staging_table_sql(contract: DatasetContract, *, staging_table: str) -> str:
    """`CREATE TEMP TABLE` of the staging table: exactly the Parquet files' columns, in file order."""
    columns = column_definitions(contract, with_partition=False)
    return f"CREATE TEMP TABLE {quote(check_identifier('staging_table', staging_table))} ({', '.join(columns)})"


def run_prefix_uri(contract: DatasetContract, *, bucket: str, run_id: str, runs_prefix: str | None = None) -> str:
    """`s3://<bucket>/<dataset>/runs/run_id=<id>/<partition>=`: the run's Parquet files and nothing else."""
    check_run_id(run_id)
    prefix = runs_prefix if runs_prefix is not None else f"{contract.name}/runs/"
    return f"s3://{bucket}/{prefix}run_id={run_id}/{contract.partition_column()[0]}="


def copy_sql(
    contract: DatasetContract, *, staging_table: str, bucket: str, run_id: str, iam_role_arn: str, runs_prefix: str | None = None
) -> str:
    """COPY of one run's Parquet into the staging table with the namespace's COPY role."""
    uri = run_prefix_uri(contract, bucket=bucket, run_id=run_id, runs_prefix=runs_prefix)
    return f"COPY {quote(check_identifier('staging_table', staging_table))} FROM '{uri}' IAM_ROLE '{iam_role_arn}' FORMAT AS PARQUET"


def merge_sql(contract: DatasetContract, *, schema: str, table: str, staging_table: str, partition_sql: str | None = None) -> str:
    """MERGE of the staging rows into the target on the natural key; the partition column is recomputed."""
    target = f"{quote(check_identifier('schema', schema))}.{quote(check_identifier('table', table))}"
    staging = quote(check_identifier("staging_table", staging_table))
    partition_name = contract.partition_column()[0]
    partition_value = partition_sql if partition_sql is not None else partition_expression(contract, "s")
    keys = list(contract.natural_key)
    file_columns = [n for n, _ in contract.output_columns()]
    values = {c: f"s.{quote(c)}" for c in file_columns}
    values[partition_name] = partition_value
    columns = [*file_columns, partition_name]
    on = " AND ".join(f"{target}.{quote(k)} = s.{quote(k)}" for k in keys)
    update = ", ".join(f"{quote(c)} = {values[c]}" for c in columns if c not in keys)
    insert_columns = ", ".join(quote(c) for c in columns)
    insert_values = ", ".join(values[c] for c in columns)
    return (
        f"MERGE INTO {target} USING {staging} AS s ON {on} "
        f"WHEN MATCHED THEN UPDATE SET {update} "
        f"WHEN NOT MATCHED THEN INSERT ({insert_columns}) VALUES ({insert_values})"
    )


def load_statements(
    contract: DatasetContract,
    *,
    schema: str,
    table: str,
    bucket: str,
    iam_role_arn: str,
    run_id: str = RUN_ID_PLACEHOLDER,
    staging_table: str | None = None,
    runs_prefix: str | None = None,
    partition_sql: str | None = None,
) -> list[str]:
    """The statements of one load, in order, for one BatchExecuteStatement (one transaction).

    `run_id` may be RUN_ID_PLACEHOLDER ('{}'): only the COPY statement contains it, as a States.Format template.
    """
    staging = staging_table if staging_table is not None else f"{table}_staging"
    target = f"{quote(check_identifier('schema', schema))}.{quote(check_identifier('table', table))}"
    return [
        create_target_table_sql(contract, schema=schema, table=table),
        f"LOCK {target}",
        create_staging_table_sql(contract, staging_table=staging),
        copy_sql(contract, staging_table=staging, bucket=bucket, run_id=run_id, iam_role_arn=iam_role_arn, runs_prefix=runs_prefix),
        merge_sql(contract, schema=schema, table=table, staging_table=staging, partition_sql=partition_sql),
    ]
