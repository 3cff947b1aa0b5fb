"""Glue Python shell entrypoint of the load step: run the load SQL of one run and fail loudly with the query's error.

Deployed as the script of the Glue workflow form's load job (Python 3.9, boto3 only); `workflow_inputs.py`,
`upload_ledger.py` and `pipeline_plan.py` come with --extra-py-files. The SQL is rendered at synth from the target with the run id `RUN_ID_TOKEN` (a valid run id, so the
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
  --ledger_table           optional: the upload ledger; in a workflow run (--WORKFLOW_NAME, set by Glue) the
                           uploads the clean job handed over (run property LOADING_PROPERTY) are recorded at step
                           load, then `loaded` after the load, or `failed` with the error. None handed over: the
                           load is skipped (the clean job ended them: rejected, empty, quarantined)
  --ledger_ttl_days        optional, default 400: days a finished record is kept
  --pipeline_form          optional, default glue_workflow: the ledger's form
  --run_id                 optional: the run id; default --WORKFLOW_RUN_ID (set by Glue), then --JOB_RUN_ID
  --poll_seconds           optional, default 5: wait between status checks
  --max_wait_seconds       optional, default 1500: a query still running after this is stopped and the job fails
  --metrics_namespace      optional: with --dataset, a run that ends here (loaded, or nothing to load) publishes
                           WORKFLOW_RUNS_SUCCEEDED = 1 in this namespace, dimensions Dataset and WorkflowName (Glue's
                           --WORKFLOW_NAME): the Glue Workflow form counts its successful runs from what they record
  --dataset                optional: the dataset name of that metric
  --load_target            optional: athena | redshift: parallel loads (the form's two targets). This job loads
                           that one target (give only its SQL arguments), records `load_<target>` on each upload
                           (loaded or failed), skips uploads the ledger already has loaded into it (a re-run loads
                           only the target that failed), and leaves the uploads running for the finish job.
                           A failure is recorded in the run property `pipeline_load_<target>`; the failed job waits
                           (up to --max_wait_seconds) for the other targets' properties, then fails the run's
                           uploads: error LoadFailed, cause `load into <target> failed: ...`
  --parallel_targets       with --load_target or --finish_targets: the run's targets, comma-separated
  --finish_targets         optional: the finish job after the parallel loads (the join): each upload the clean job
                           handed over ends `loaded` when the ledger has it loaded into every target; no SQL
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
WORKFLOW_RUNS_SUCCEEDED = "WorkflowRunsSucceeded"
"""The metric a successful run publishes once (see --metrics_namespace)."""
OPTIONAL_ARGS: dict[str, str | None] = {
    "athena_sql_template": None,
    "athena_workgroup": None,
    "athena_database": None,
    "redshift_sql_templates": None,
    "redshift_workgroup": None,
    "redshift_database": None,
    "redshift_secret_arn": None,
    "ledger_table": None,
    "ledger_ttl_days": "400",
    "pipeline_form": "glue_workflow",
    "run_id": None,
    "WORKFLOW_NAME": None,
    "WORKFLOW_RUN_ID": None,
    "JOB_RUN_ID": None,
    "poll_seconds": "5",
    "max_wait_seconds": "1500",
    "metrics_namespace": None,
    "dataset": None,
    "load_target": None,
    "parallel_targets": None,
    "finish_targets": None,
}
TARGET_ARGS = {
    "athena": ("athena_sql_template", "athena_workgroup", "athena_database"),
    "redshift": ("redshift_sql_templates", "redshift_workgroup", "redshift_database"),
}
LOAD_OUTCOME_PROPERTY = "pipeline_load_"
"""Prefix of the run property each parallel load writes when it ends: `pipeline_load_<target>`, a JSON object
{run_id, outcome: loaded | failed, cause?}."""


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
    athena = [n for n in TARGET_ARGS["athena"] if args[n]]
    redshift = [n for n in TARGET_ARGS["redshift"] if args[n]]
    _resolve_parallel(args, athena, redshift)
    if args["finish_targets"]:
        return args
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


def _names(value: str | None, what: str) -> list[str]:
    names = [name.strip() for name in (value or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in TARGET_ARGS]
    if unknown or not names:
        raise SystemExit(f"--{what}={value!r}: give load targets among {', '.join(TARGET_ARGS)}, comma-separated")
    return names


def _resolve_parallel(args: dict[str, Any], athena: list[str], redshift: list[str]) -> None:
    """Check the parallel-load arguments (--load_target, --finish_targets, --parallel_targets); lists in place."""
    if args["load_target"] and args["finish_targets"]:
        raise SystemExit("--load_target and --finish_targets exclude each other: a job loads one target or finishes the run")
    if args["finish_targets"]:
        if athena or redshift:
            raise SystemExit("--finish_targets runs no SQL: leave out the target arguments")
        args["finish_targets"] = _names(args["finish_targets"], "finish_targets")
        return
    if not args["load_target"]:
        return
    target = args["load_target"]
    if target not in TARGET_ARGS:
        raise SystemExit(f"--load_target={target!r}: one of {', '.join(TARGET_ARGS)}")
    other = redshift if target == "athena" else athena
    if other:
        raise SystemExit(f"--load_target={target}: give only that target's arguments, not {', '.join('--' + n for n in other)}")
    args["parallel_targets"] = _names(args["parallel_targets"] or target, "parallel_targets")
    if target not in args["parallel_targets"]:
        raise SystemExit(f"--parallel_targets={','.join(args['parallel_targets'])}: must include --load_target={target}")


def _workflow_inputs() -> Any:
    try:
        from pipeline_constructs.runtime import workflow_inputs
    except ImportError:  # on Glue: a top-level module shipped with --extra-py-files
        import workflow_inputs  # type: ignore[import-not-found,no-redef]
    return workflow_inputs


def run_load(args: dict[str, Any], clients: dict[str, Any], sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Load one run into every configured target; returns a summary.

    In a workflow with the ledger (`--ledger_table`), the uploads the clean job handed over are moved to step load
    first and end `loaded` after the load; a failure is recorded `failed` at step load on each (error, cause) and
    raised. A run that handed over none (nothing claimed, or nothing curated) loads nothing: Redshift's COPY would
    fail on the empty prefix.
    """
    run_id = args["run_id"]
    summary: dict[str, Any] = {"run_id": run_id}
    if not args["ledger_table"]:
        _load(args, clients, summary, sleep)
        return summary
    if not args["WORKFLOW_NAME"]:
        raise SystemExit("--ledger_table needs Glue's --WORKFLOW_NAME: run the job from its workflow")
    inputs = _workflow_inputs()
    uploads = _handed_over(inputs, args, clients)
    if not uploads:
        LOG.info("run %s handed over no upload to load: the load is skipped", run_id)
        summary.update(loaded_uploads=0, load_skipped="no upload with curated rows")
        if args["load_target"]:
            _put_outcome(clients["glue"], args, "loaded")
        return summary
    ledger = inputs.UploadLedger(
        clients["dynamodb"], args["ledger_table"], form=args["pipeline_form"], ttl_days=int(args["ledger_ttl_days"])
    )
    if args["finish_targets"]:
        return _finish(inputs, ledger, uploads, args, summary)
    if args["load_target"]:
        return _load_one_target(inputs, ledger, uploads, args, clients, summary, sleep)
    held = []
    for upload in uploads:
        try:
            ledger.step(upload, run_id=run_id, step=inputs.LOAD)
            held.append(upload)
        except inputs.LedgerConflict as refused:
            LOG.warning("not loaded as this run's: %s", refused)
    try:
        _load(args, clients, summary, sleep)
    except BaseException as error:
        inputs.fail_uploads(ledger, held, run_id=run_id, error=type(error).__name__, cause=str(error) or repr(error))
        raise
    for upload in held:
        ledger.finish(upload, run_id=run_id, outcome=inputs.LOADED)
    summary["loaded_uploads"] = len(held)
    return summary


def _handed_over(inputs: Any, args: dict[str, Any], clients: dict[str, Any]) -> list[Any]:
    """The uploads the run's clean job handed to the load (LOADING_PROPERTY); WorkflowInputsError when it has none."""
    run_id = args["run_id"]
    uploads = inputs.read_uploads(clients["glue"], workflow_name=args["WORKFLOW_NAME"], run_id=run_id, name=inputs.LOADING_PROPERTY)
    if uploads is None:
        raise inputs.WorkflowInputsError(
            f"workflow {args['WORKFLOW_NAME']} run {run_id} has no run property {inputs.LOADING_PROPERTY!r}: its clean job did "
            "not hand over its uploads (a resumed run must resume at the clean job, which writes the run's output)"
        )
    return list(uploads)


def _put_outcome(glue: Any, args: dict[str, Any], outcome: str, cause: str | None = None) -> None:
    """This target's end in the run property `pipeline_load_<target>` (one key per target: no lost update)."""
    value: dict[str, str] = {"run_id": args["run_id"], "outcome": outcome}
    if cause is not None:
        value["cause"] = cause[:2000]
    glue.put_workflow_run_properties(
        Name=args["WORKFLOW_NAME"], RunId=args["run_id"], RunProperties={LOAD_OUTCOME_PROPERTY + args["load_target"]: json.dumps(value)}
    )


def wait_for_targets(glue: Any, args: dict[str, Any], sleep: Callable[[float], None], budget_seconds: float) -> dict[str, dict[str, str]]:
    """The outcomes this run's parallel loads recorded ({target: {outcome, cause?}}), after waiting (polls of
    --poll_seconds, up to `budget_seconds`) until every target of --parallel_targets has recorded one. A value
    written in another run (a resumed run may carry its original run's properties) does not count."""
    waited = 0.0
    while True:
        properties = glue.get_workflow_run_properties(Name=args["WORKFLOW_NAME"], RunId=args["run_id"]).get("RunProperties", {})
        outcomes: dict[str, dict[str, str]] = {}
        for target in args["parallel_targets"]:
            try:
                value = json.loads(properties.get(LOAD_OUTCOME_PROPERTY + target, ""))
            except ValueError:
                continue
            if isinstance(value, dict) and value.get("run_id") == args["run_id"]:
                outcomes[target] = value
        if len(outcomes) == len(args["parallel_targets"]) or waited >= budget_seconds:
            missing = [t for t in args["parallel_targets"] if t not in outcomes]
            if missing:
                LOG.warning(
                    "run %s: no outcome from %s after %.0f s: failing the run without it", args["run_id"], ", ".join(missing), waited
                )
            return outcomes
        sleep(args["poll_seconds"])
        waited += args["poll_seconds"]


def _load_one_target(
    inputs: Any,
    ledger: Any,
    uploads: list[Any],
    args: dict[str, Any],
    clients: dict[str, Any],
    summary: dict[str, Any],
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    """One target of a parallel load (--load_target): the uploads the ledger does not have loaded into it are moved
    to step load, loaded, and recorded `load_<target>`; the finish job ends them. A failure is recorded on each,
    the other targets are waited for (so their outcomes are recorded before the run ends), and the run's uploads are
    failed naming every target that failed."""
    run_id, target = args["run_id"], args["load_target"]
    pending = []
    for upload in uploads:
        if target in inputs.loaded_targets(ledger.get(upload)):
            LOG.info("%s is loaded into %s already (an earlier run): not loaded again", upload.uri, target)
            continue
        try:
            ledger.step(upload, run_id=run_id, step=inputs.LOAD)
            pending.append(upload)
        except inputs.LedgerConflict as refused:
            LOG.warning("not loaded as this run's: %s", refused)
    summary.update(load_target=target, already_loaded=len(uploads) - len(pending))
    if pending:
        started = time.monotonic()
        try:
            _load(args, clients, summary, sleep)
        except BaseException as error:
            cause = f"load into {target} failed: {error or repr(error)}"
            _record_target(inputs, ledger, pending, run_id, target, inputs.FAILED)
            _put_outcome(clients["glue"], args, inputs.FAILED, cause)
            # The other loads started with this one and end within --max_wait_seconds of it (the job's timeout is longer).
            budget = max(args["max_wait_seconds"] - (time.monotonic() - started), args["poll_seconds"])
            outcomes = wait_for_targets(clients["glue"], args, sleep, budget)
            causes = [o.get("cause") or f"load into {t} failed" for t, o in outcomes.items() if o.get("outcome") == inputs.FAILED]
            inputs.fail_uploads(ledger, uploads, run_id=run_id, error=LoadFailed.__name__, cause="; ".join(causes or [cause]))
            raise LoadFailed(cause) from error
        _record_target(inputs, ledger, pending, run_id, target, inputs.LOADED)
    _put_outcome(clients["glue"], args, inputs.LOADED)
    summary["loaded_uploads"] = len(pending)
    return summary


def _record_target(inputs: Any, ledger: Any, uploads: list[Any], run_id: str, target: str, outcome: str) -> None:
    for upload in uploads:
        try:
            ledger.target(upload, run_id=run_id, target=target, outcome=outcome)
        except inputs.LedgerConflict as refused:  # the run ended it already (another target failed first)
            LOG.warning("load_%s=%s not recorded: %s", target, outcome, refused)


def _finish(inputs: Any, ledger: Any, uploads: list[Any], args: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The join after the parallel loads (--finish_targets): each upload ends `loaded` when the ledger has it loaded
    into every target; an upload that is not is failed naming the targets, and LoadFailed raised."""
    run_id, targets = args["run_id"], args["finish_targets"]
    finished, missing = 0, []
    for upload in uploads:
        record = ledger.get(upload)
        if record is None or record.get("owner") != run_id:
            LOG.warning("%s is not this run's (it ended already): not finished", upload.uri)
            continue
        left = inputs.targets_to_load(record, targets)
        if left:
            missing.append((upload, left))
            continue
        ledger.finish(upload, run_id=run_id, outcome=inputs.LOADED)
        finished += 1
    if missing:
        for upload, left in missing:
            inputs.fail_uploads(ledger, [upload], run_id=run_id, error=LoadFailed.__name__, cause=f"not loaded into {', '.join(left)}")
        raise LoadFailed(f"{len(missing)} upload(s) not loaded into every target: {missing[0][0].uri} misses {', '.join(missing[0][1])}")
    summary.update(loaded_uploads=finished, targets=list(targets))
    return summary


def _load(args: dict[str, Any], clients: dict[str, Any], summary: dict[str, Any], sleep: Callable[[float], None]) -> None:
    run_id = args["run_id"]
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


def run_metric_data(args: dict[str, Any]) -> list[dict[str, Any]]:
    """The MetricData a run that ended here publishes (none without --metrics_namespace and --dataset): one
    WORKFLOW_RUNS_SUCCEEDED datum for the workflow run (dimensions Dataset, WorkflowName; without Glue's
    --WORKFLOW_NAME the run has no workflow to count, so nothing)."""
    if not (args.get("metrics_namespace") and args.get("dataset") and args.get("WORKFLOW_NAME")):
        return []
    dimensions = [{"Name": "Dataset", "Value": args["dataset"]}, {"Name": "WorkflowName", "Value": args["WORKFLOW_NAME"]}]
    return [{"MetricName": WORKFLOW_RUNS_SUCCEEDED, "Dimensions": dimensions, "Value": 1.0, "Unit": "Count"}]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = resolve_args(sys.argv[1:] if argv is None else argv)
    import boto3  # type: ignore[import-untyped]

    clients = {name: boto3.client(name) for name in ("athena", "redshift-data", "glue", "dynamodb")}
    summary = run_load(args, clients)
    data = run_metric_data(args)
    if data:
        boto3.client("cloudwatch").put_metric_data(Namespace=args["metrics_namespace"], MetricData=data)
    print(json.dumps(summary, sort_keys=True))
    return summary


if __name__ == "__main__":
    main()
