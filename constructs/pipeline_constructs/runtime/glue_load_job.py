"""Glue Python shell entrypoint of the load step: run the load SQL of one run and fail loudly with the query's error.

Deployed as the script of the Glue workflow form's load job (Python 3.9, boto3 only); `workflow_inputs.py` comes
with --extra-py-files. The SQL is rendered at synth from the target with the run id `RUN_ID_TOKEN` (a valid run id, so the
target's own SQL builders accept it) and passed as job arguments; the script puts the real run id in its place:
the workflow run id Glue passes to every job of a workflow run. (Python shell jobs cannot use --extra-files, so
the SQL travels as arguments, not as a file.)

Job arguments:
  --athena_sql_template    the Athena MERGE of one run, with RUN_ID_TOKEN where the run id goes
  --athena_workgroup       the workgroup the query runs in (its settings are enforced)
  --athena_database        the query's default database
  --redshift_sql_templates optional: a JSON list of SQL statements (RUN_ID_TOKEN for the run id), one transaction
  --redshift_workgroup     with --redshift_sql_templates: the Redshift Serverless workgroup
  --redshift_database      with --redshift_sql_templates: the database
  --redshift_secret_arn    optional: a Secrets Manager secret of the database user; default: IAM authentication
  --workflow_state_uri     optional: s3:// URI of the workflow's state file; after a successful load
                           the uploads the run claimed are committed as processed (see workflow_inputs); needs
                           --WORKFLOW_NAME (set by Glue). A run whose clean job wrote zero curated rows skips the
                           load and commits its uploads.
  --run_id                 optional: the run id; default --WORKFLOW_RUN_ID (set by Glue), then --JOB_RUN_ID
  --poll_seconds           optional, default 5: wait between status checks
  --max_wait_seconds       optional, default 1500: a query still running after this is stopped and the job fails
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

LOG = logging.getLogger("glue_load_job")

# Rendered into the SQL at synth where the run id goes; matches RUN_ID_PATTERN, so SQL builders accept it.
RUN_ID_TOKEN = "__pipeline_run_id__"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
ATHENA_DONE = ("SUCCEEDED", "FAILED", "CANCELLED")
REDSHIFT_DONE = ("FINISHED", "FAILED", "ABORTED")
OPTIONAL_ARGS: dict[str, str | None] = {
    "athena_sql_template": None,
    "athena_workgroup": None,
    "athena_database": None,
    "redshift_sql_templates": None,
    "redshift_workgroup": None,
    "redshift_database": None,
    "redshift_secret_arn": None,
    "workflow_state_uri": None,
    "run_id": None,
    "WORKFLOW_NAME": None,
    "WORKFLOW_RUN_ID": None,
    "JOB_RUN_ID": None,
    "poll_seconds": "5",
    "max_wait_seconds": "1500",
}


class LoadFailed(RuntimeError):
    """A load query failed, was cancelled or did not finish in time; the message carries the engine's reason."""


def render_sql(templates: Sequence[str], run_id: str) -> list[str]:
    """The statements with RUN_ID_TOKEN replaced by a validated run id (run ids go into SQL literals and paths).

    At least one statement must contain the token: a load that does not name its run would load every run.
    """
    if not RUN_ID_PATTERN.match(run_id or ""):
        raise ValueError(f"run_id={run_id!r}: must match {RUN_ID_PATTERN.pattern}")
    if not any(RUN_ID_TOKEN in t for t in templates):
        raise ValueError(f"the load SQL does not contain the run id token {RUN_ID_TOKEN!r}")
    return [t.replace(RUN_ID_TOKEN, run_id) for t in templates]


def run_athena_query(
    athena: Any,
    *,
    sql: str,
    workgroup: str,
    database: str,
    poll_seconds: float = 5,
    max_wait_seconds: float = 1500,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Start the query and poll it until it ends; returns the execution id, raises LoadFailed with Athena's reason."""
    query_id = athena.start_query_execution(QueryString=sql, WorkGroup=workgroup, QueryExecutionContext={"Database": database})[
        "QueryExecutionId"
    ]
    LOG.info("Athena query %s started in workgroup %s", query_id, workgroup)
    waited = 0.0
    while True:
        status = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
        state = status["State"]
        if state == "SUCCEEDED":
            LOG.info("Athena query %s succeeded", query_id)
            return str(query_id)
        if state in ATHENA_DONE:
            reason = status.get("StateChangeReason") or status.get("AthenaError", {}).get("ErrorMessage") or "no reason given"
            raise LoadFailed(f"Athena query {query_id} {state}: {reason}")
        if waited >= max_wait_seconds:
            athena.stop_query_execution(QueryExecutionId=query_id)
            raise LoadFailed(f"Athena query {query_id} still {state} after {max_wait_seconds:.0f} s; stopped it")
        sleep(poll_seconds)
        waited += poll_seconds


def run_redshift_statements(
    redshift_data: Any,
    *,
    sqls: Sequence[str],
    workgroup: str,
    database: str,
    secret_arn: str | None = None,
    poll_seconds: float = 5,
    max_wait_seconds: float = 1500,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Run the statements as one transaction through the Data API (batch_execute_statement) and poll
    describe_statement until it ends; returns the statement id, raises LoadFailed with Redshift's error.

    Without `secret_arn` the Data API authenticates with IAM (a database user named after the caller's role).
    """
    if not sqls:
        raise ValueError("sqls: give at least one statement")
    request: dict[str, Any] = {"WorkgroupName": workgroup, "Database": database, "Sqls": list(sqls), "WithEvent": False}
    if secret_arn:
        request["SecretArn"] = secret_arn
    statement_id = redshift_data.batch_execute_statement(**request)["Id"]
    LOG.info("Redshift batch %s started (%d statements) in workgroup %s", statement_id, len(sqls), workgroup)
    waited = 0.0
    while True:
        described = redshift_data.describe_statement(Id=statement_id)
        state = described["Status"]
        if state == "FINISHED":
            LOG.info("Redshift batch %s finished", statement_id)
            return str(statement_id)
        if state in REDSHIFT_DONE:
            failed = [s for s in described.get("SubStatements", []) if s.get("Status") == "FAILED"]
            where = f" (statement {failed[0].get('Id')})" if failed else ""
            raise LoadFailed(f"Redshift batch {statement_id} {state}{where}: {described.get('Error') or 'no error given'}")
        if waited >= max_wait_seconds:
            redshift_data.cancel_statement(Id=statement_id)
            raise LoadFailed(f"Redshift batch {statement_id} still {state} after {max_wait_seconds:.0f} s; cancelled it")
        sleep(poll_seconds)
        waited += poll_seconds


def _fallback_resolved_options(argv: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """The subset of awsglue.utils.getResolvedOptions used here: `--name value` or `--name=value`."""
    values: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            if not eq:
                if i + 1 >= len(argv):
                    raise SystemExit(f"argument --{key}: expected a value")
                value = argv[i + 1]
                i += 1
            values[key] = value
        i += 1
    return {n: values[n] for n in names if n in values}


def resolve_args(argv: Sequence[str]) -> dict[str, Any]:
    """The job's arguments with defaults; optional names are only asked of getResolvedOptions when present."""
    present = [n for n in OPTIONAL_ARGS if any(a == f"--{n}" or a.startswith(f"--{n}=") for a in argv)]
    try:
        from awsglue.utils import getResolvedOptions  # type: ignore[import-not-found]
    except ImportError:
        getResolvedOptions = _fallback_resolved_options
    args: dict[str, Any] = {**OPTIONAL_ARGS, **getResolvedOptions(list(argv), present)}
    args["run_id"] = args["run_id"] or args["WORKFLOW_RUN_ID"] or args["JOB_RUN_ID"]
    if not args["run_id"]:
        raise SystemExit("--run_id is required (or Glue's --WORKFLOW_RUN_ID / --JOB_RUN_ID)")
    athena = [n for n in ("athena_sql_template", "athena_workgroup", "athena_database") if args[n]]
    redshift = [n for n in ("redshift_sql_templates", "redshift_workgroup", "redshift_database") if args[n]]
    if not athena and not redshift:
        raise SystemExit("nothing to load: give --athena_sql_template (and workgroup, database) or --redshift_sql_templates")
    if athena and len(athena) != 3:
        raise SystemExit("--athena_sql_template, --athena_workgroup and --athena_database go together")
    if redshift and len(redshift) != 3:
        raise SystemExit("--redshift_sql_templates, --redshift_workgroup and --redshift_database go together")
    if args["redshift_sql_templates"]:
        templates = json.loads(args["redshift_sql_templates"])
        if not isinstance(templates, list) or not all(isinstance(t, str) for t in templates):
            raise SystemExit("--redshift_sql_templates: expected a JSON list of SQL strings")
        args["redshift_sql_templates"] = templates
    for name in ("poll_seconds", "max_wait_seconds"):
        try:
            args[name] = float(args[name])
        except ValueError:
            raise SystemExit(f"--{name}: not a number: {args[name]!r}") from None
    return args


def _workflow_inputs() -> Any:
    try:
        from pipeline_constructs.runtime import workflow_inputs
    except ImportError:  # on Glue: a top-level module shipped with --extra-py-files
        import workflow_inputs  # type: ignore[import-not-found,no-redef]
    return workflow_inputs


def run_load(args: dict[str, Any], clients: dict[str, Any], sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Load one run into every configured target, then commit the run's sources; returns a summary.

    In a workflow (`--workflow_state_uri`), a run whose clean job claimed no new upload (a duplicate event) loads
    nothing, and a run whose clean job wrote zero curated rows (header-only files, or every file rejected) skips the
    load and commits its uploads: there is no run output to load, and Redshift's COPY would fail on the empty prefix.
    """
    run_id = args["run_id"]
    summary: dict[str, Any] = {"run_id": run_id}
    state_uri = args["workflow_state_uri"]
    inputs = _workflow_inputs() if state_uri else None
    if inputs is not None:
        if not args["WORKFLOW_NAME"]:
            raise SystemExit("--workflow_state_uri needs Glue's --WORKFLOW_NAME: run the job from its workflow")
        claimed = inputs.claimed_sources(clients["glue"], workflow_name=args["WORKFLOW_NAME"], run_id=run_id)
        if not claimed:
            LOG.info("run %s claimed no new uploads: nothing to load", run_id)
            summary["committed_sources"] = 0
            return summary
        rows = inputs.curated_rows(clients["glue"], workflow_name=args["WORKFLOW_NAME"], run_id=run_id)
        if rows is not None:
            summary["curated_rows"] = rows
        if rows == 0:
            LOG.info("run %s wrote zero curated rows: the load is skipped, its uploads are committed", run_id)
            summary["load_skipped"] = "zero curated rows"
            summary["committed_sources"] = inputs.commit_sources_from_uri(
                clients["s3"], clients["glue"], state_uri=state_uri, workflow_name=args["WORKFLOW_NAME"], run_id=run_id
            )
            return summary
    polling = {"poll_seconds": args["poll_seconds"], "max_wait_seconds": args["max_wait_seconds"], "sleep": sleep}
    if args["athena_sql_template"]:
        summary["athena_query_id"] = run_athena_query(
            clients["athena"],
            sql=render_sql([args["athena_sql_template"]], run_id)[0],
            workgroup=args["athena_workgroup"],
            database=args["athena_database"],
            **polling,
        )
    if args["redshift_sql_templates"]:
        summary["redshift_statement_id"] = run_redshift_statements(
            clients["redshift-data"],
            sqls=render_sql(args["redshift_sql_templates"], run_id),
            workgroup=args["redshift_workgroup"],
            database=args["redshift_database"],
            secret_arn=args["redshift_secret_arn"],
            **polling,
        )
    if inputs is not None:
        summary["committed_sources"] = inputs.commit_sources_from_uri(
            clients["s3"], clients["glue"], state_uri=state_uri, workflow_name=args["WORKFLOW_NAME"], run_id=run_id
        )
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = resolve_args(sys.argv[1:] if argv is None else argv)
    import boto3  # type: ignore[import-untyped]

    clients = {name: boto3.client(name) for name in ("athena", "redshift-data", "s3", "glue")}
    summary = run_load(args, clients)
    print(json.dumps(summary, sort_keys=True))
    return summary


if __name__ == "__main__":
    main()
