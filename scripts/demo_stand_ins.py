"""The local stand-ins `make demo FORM=...` answers the services with (see scripts/demo_form.py).

- `AthenaOnDuckDB`: Athena's StartQueryExecution / GetQueryExecution / StopQueryExecution, each query run on DuckDB as
  sqlglot translates it from Athena SQL (scripts/athena_on_duckdb.py). The Glue table of the runs (`<db>.<runs>`) is
  a DuckDB view over the clean job's curated Parquet on disk, the Iceberg table a DuckDB table with the template's
  Iceberg schema. The query's outcome is DuckDB's: a failed MERGE is a FAILED query with DuckDB's message.
- `LocalMirror`: where an `s3://bucket/key` of moto's S3 sits on disk, for the local Spark (which cannot read moto).
- `StackValues`: CloudFormation values of a synthesized template resolved against a `FakeDeployment` (Ref,
  Fn::GetAtt, Fn::Join, Fn::GetStackOutput), as a deploy would, so the jobs get the arguments the stacks give them.
- `RoutedClient`: a boto3 client whose named operations go to a Stubber-backed client (APIs moto lacks or answers
  unlike the service) and every other one to moto.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from athena_on_duckdb import translate

_ICEBERG_TO_DUCKDB = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "long": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


def duckdb_type(iceberg_type: str) -> str:
    return iceberg_type.upper() if iceberg_type.startswith("decimal(") else _ICEBERG_TO_DUCKDB[iceberg_type]


class AthenaOnDuckDB:
    """Athena's query API on one DuckDB connection. `curated_root` is the local folder of the runs table's location."""

    def __init__(self, curated_root: Path, *, runs_table: str, target_table: str, target_columns: list[tuple[str, str]]) -> None:
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")  # Athena's sessions are UTC: Spark's instants become UTC timestamps
        self.curated_root = curated_root
        self.runs_table = runs_table
        self.target_table = target_table
        self.target_columns = target_columns
        self.queries: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    # --- the catalog ------------------------------------------------------------------------------------------------
    def attach(self, database: str) -> None:
        attached = {row[0] for row in self.con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
        if database not in attached:
            self.con.execute(f"ATTACH ':memory:' AS \"{database}\"")
        glob = str(self.curated_root / "**" / "*.parquet")
        if list(self.curated_root.glob("**/*.parquet")):
            self.con.execute(
                f'CREATE OR REPLACE VIEW "{database}"."{self.runs_table}" AS SELECT * FROM read_parquet(\'{glob}\', '
                "hive_partitioning = true, hive_types = {'run_id': 'VARCHAR', 'sale_date': 'DATE'})"
            )

    def create_target_table(self, database: str) -> None:
        """The Iceberg table as the stateful stack declares it (its schema from the template)."""
        self.attach(database)
        ddl = ", ".join(f'"{name}" {duckdb_type(kind)}' for name, kind in self.target_columns)
        self.con.execute(f'CREATE TABLE IF NOT EXISTS "{database}"."{self.target_table}" ({ddl})')

    # --- the API ----------------------------------------------------------------------------------------------------
    def start_query_execution(self, QueryString: str, QueryExecutionContext: dict[str, str] | None = None, **_: Any) -> dict[str, Any]:  # noqa: N803
        database = (QueryExecutionContext or {}).get("Database", "default")
        query_id = f"duckdb-{next(self._ids):04d}"
        submitted = datetime.now(UTC)
        status: dict[str, Any] = {"SubmissionDateTime": submitted.isoformat()}
        sql = translate(QueryString)
        try:
            self.attach(database)
            self.con.execute(f'USE "{database}"')
            cursor = self.con.execute(sql)
            changed = cursor.fetchall()
            status["State"] = "SUCCEEDED"
        except duckdb.Error as error:
            changed = []
            status.update(State="FAILED", StateChangeReason=f"DuckDB {type(error).__name__}: {error}".splitlines()[0])
        status["CompletionDateTime"] = datetime.now(UTC).isoformat()
        self.queries[query_id] = {
            "QueryExecutionId": query_id,
            "Query": QueryString,
            "Status": status,
            "Statistics": {"EngineExecutionTimeInMillis": int((datetime.now(UTC) - submitted).total_seconds() * 1000)},
            "rows_changed": changed[0][0] if changed and changed[0] else None,
            "duckdb_sql": sql,
        }
        return {"QueryExecutionId": query_id}

    def get_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:  # noqa: N803
        query = self.queries[QueryExecutionId]
        return {"QueryExecution": {k: v for k, v in query.items() if k in ("QueryExecutionId", "Query", "Status", "Statistics")}}

    def stop_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:  # noqa: N803
        return {}

    # --- reading the result -----------------------------------------------------------------------------------------
    def rows(self, sql: str, database: str) -> tuple[list[str], list[tuple]]:
        self.attach(database)
        self.con.execute(f'USE "{database}"')
        cursor = self.con.execute(sql)
        return [d[0] for d in cursor.description], cursor.fetchall()


class LocalMirror:
    """s3://bucket/key <-> <root>/bucket/key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, uri: str) -> Path:
        if not uri.startswith("s3://"):
            raise ValueError(f"not an s3:// URI: {uri}")
        return self.root / uri[len("s3://") :]

    def local(self, uri: str) -> str:
        """The local path of `uri`, keeping a trailing slash (a prefix)."""
        return str(self.path(uri)) + ("/" if uri.endswith("/") else "")

    def keys(self, bucket: str, prefix: str) -> list[str]:
        base = self.root / bucket
        if not base.exists():
            return []
        found = (str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
        return sorted(key for key in found if key.startswith(prefix))


class StackValues:
    """Resolve a template's values against a FakeDeployment of its environment."""

    def __init__(self, deployment: Any, stack: str) -> None:
        self.deployment = deployment
        self.stack = stack

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.deployment._resource(self.stack, arg)["Ref"]
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                resource = self.deployment._resource(self.stack, logical_id)
                return resource.get(attribute) or f"{resource['Ref']}:{attribute}"
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(part)) for part in parts)
            if key == "Fn::GetStackOutput":
                return self.deployment.output(arg["StackName"].split("-", 1)[1], arg["OutputName"])
            if key.startswith("Fn::"):
                raise ValueError(f"{key} is not resolved by the demo")
        return {k: self.resolve(v) for k, v in value.items()}

    def job_arguments(self, job: dict[str, Any]) -> dict[str, str]:
        """A Glue job's DefaultArguments; the asset locations (Fn::Sub of the bootstrap bucket) are left out."""
        out = {}
        for name, value in job["Properties"].get("DefaultArguments", {}).items():
            try:
                out[name] = str(self.resolve(value))
            except ValueError:
                continue
        return out


class RoutedClient:
    """`operations` of the client go to `stubbed` (a client with a Stubber activated), the rest to `moto`."""

    def __init__(self, moto: Any, stubbed: Any, operations: tuple[str, ...]) -> None:
        self._moto = moto
        self._stubbed = stubbed
        self._operations = operations
        self.exceptions = moto.exceptions
        self.meta = moto.meta

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stubbed if name in self._operations else self._moto, name)


def render_input_template(template: str, paths: dict[str, str], event: dict[str, Any]) -> str:
    """An EventBridge InputTransformer: each <name> replaced by the JSON of the event value its path names."""
    import json

    out = template
    for name, path in paths.items():
        value: Any = event
        for part in path.removeprefix("$.").split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out = out.replace(f"<{name}>", json.dumps(value))
    return out
