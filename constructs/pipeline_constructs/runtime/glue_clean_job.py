"""Glue 5.0 entrypoint of the clean job: read the job arguments, run the clean transform, publish the counts to
CloudWatch, print the JSON summary, and raise (failing the job run, which fires the alarm) when the run failed.

Deployed as the job script; `contract.py` and `clean_transform.py` come with --extra-py-files as top-level modules
and the contract JSON with --extra-files (so `contract.json` is in the working directory). Pure PySpark + boto3:
GlueContext/Job are not used, so the same main() runs locally and in tests.

Job arguments:
  --contract_path          the contract JSON: a file name in the working dir (or SparkFiles), a local path, or s3://
  --source_uris            comma-separated CSV object URIs (s3://bucket/key); a URI ending in '/' means every file
                           under that prefix (names starting with '_' or '.' skipped)
  --run_id                 the run's id (output dirs run_id=<id>); default: --WORKFLOW_RUN_ID, then --JOB_RUN_ID
  --curated_root           s3://bucket/prefix of the curated output
  --quarantine_root        s3://bucket/prefix of the quarantine output
  --max_quarantine_ratio   optional, default 0.05: above it the run fails, below it QuarantineRatioWarning = 1
  --metrics_namespace      optional, default RetailPipeline; empty string: publish nothing
  --dataset                optional, default the contract's name: value of the Dataset metric dimension
  --JOB_NAME               set by Glue: adds a second copy of each metric with dimensions Dataset + JobName

Glue Workflow form (all set by the form's own job definition, Glue adds --WORKFLOW_NAME and --WORKFLOW_RUN_ID):
  --source_listing_prefix  s3:// landing prefix of the form: the run cleans the uploads it claims under it through
                           the ledger (runtime/workflow_inputs.py), instead of --source_uris
  --inbox_queue_url        the form's inbox queue (the upload events); with --ledger_table, required
  --alert_topic_arn        optional: SNS topic told once about files rejected as a whole
  --pipeline_form          optional, default glue_workflow: the `pipeline` field of that message and the ledger's form
Scheduled runs (Step Functions, MWAA): the run claims its uploads in the ledger and names them here:
  --settle_uploads         "true": --source_uris (a JSON array) and --source_versions (one ledger version each: a
                           version id, 'etag:<etag>' or 'null') are uploads the run holds in --ledger_table; each is
                           settled as in the Glue Workflow form below (rejected, skipped_empty, quarantined end here,
                           the rest stay running at step clean for the run's load), and any other error is recorded
                           `failed` on them
In this form a file rejected as a whole does not fail the run: it is quarantined by the transform, ends `rejected` in
the ledger (no later run takes it), is alerted once, and the run's other files go on to the load. Uploads with
nothing to load end `skipped_empty` or `quarantined` here; the rest are handed to the load job (run property
`LOADING_PROPERTY`). Any other error fails the run and is recorded `failed` at step clean on its uploads.

Upload ledger (every form that passes them): --ledger_table, --source_versions (a JSON array, one version per
--source_uris entry), --ledger_ttl_days; the counts of a run of one upload go into its record (`record_counts_in_ledger`).

Metrics (namespace as above, dimension Dataset, and Dataset + JobName when the job name is known): RowsIn, RowsOut,
RowsQuarantined, LinesRead, LinesQuarantined (physical lines: the quarantine ratio counts these), DuplicatesDropped,
FilesRejected, QuarantineRatio, QuarantineRatioWarning (1 when some lines were quarantined but the ratio is within
the limit), ConservationFailed, RunFailed (each 0 or 1), and RowsQuarantinedByReason with dimensions Dataset + Reason.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pyspark.sql import SparkSession

try:
    from pipeline_constructs.contract import DatasetContract
    from pipeline_constructs.runtime.clean_transform import PER_FILE_COUNTS, CleanResult, CleanRunFailed, run_clean
except ImportError:  # on Glue: top-level modules shipped with --extra-py-files
    from clean_transform import PER_FILE_COUNTS, CleanResult, CleanRunFailed, run_clean  # type: ignore[no-redef]
    from contract import DatasetContract  # type: ignore[no-redef]

LOG = logging.getLogger("glue_clean_job")

REQUIRED_ARGS = ("contract_path", "source_uris", "curated_root", "quarantine_root")
OPTIONAL_ARGS: dict[str, str | None] = {
    "run_id": None,
    "max_quarantine_ratio": "0.05",
    "metrics_namespace": "RetailPipeline",
    "dataset": None,
    "JOB_NAME": None,
    "JOB_RUN_ID": None,
    "WORKFLOW_RUN_ID": None,
    # Glue Workflow form: list the form's landing prefix and claim the files no earlier run has loaded.
    "source_listing_prefix": None,
    "inbox_queue_url": None,
    "WORKFLOW_NAME": None,
    "alert_topic_arn": None,
    "pipeline_form": "glue_workflow",
    # Upload ledger (runtime/upload_ledger.py): the table, and the version of each --source_uris entry (JSON array).
    "ledger_table": None,
    "source_versions": None,
    "ledger_ttl_days": "400",
    # Scheduled runs: --source_uris are uploads the run claimed in the ledger; settle each one.
    "settle_uploads": None,
}
# The `failed_step` of a rejection alert: the step names of the Glue Workflow form's messages are Crawl, Clean, Load.
CLEAN_STEP = "Clean"
FILE_REJECTED_ERROR = "FileRejected"
METRIC_NAMES = (
    "RowsIn",
    "RowsOut",
    "RowsQuarantined",
    "LinesRead",
    "LinesQuarantined",
    "DuplicatesDropped",
    "FilesRejected",
    "QuarantineRatio",
    "QuarantineRatioWarning",
    "ConservationFailed",
    "RunFailed",
    "RowsQuarantinedByReason",
)


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
    missing = [n for n in names if n not in values]
    if missing:
        raise SystemExit(f"the following arguments are required: {', '.join('--' + n for n in missing)}")
    return {n: values[n] for n in names}


def _get_resolved_options() -> Callable[[Sequence[str], Sequence[str]], dict[str, str]]:
    try:
        from awsglue.utils import getResolvedOptions  # type: ignore[import-not-found]
    except ImportError:
        return _fallback_resolved_options
    return getResolvedOptions  # type: ignore[no-any-return]


def parse_source_uris(value: str) -> list[str]:
    """A JSON array of URIs (what the Step Functions form passes, so a key may contain a comma) or a comma list."""
    text = value.strip()
    if text.startswith("["):
        try:
            uris = json.loads(text)
        except json.JSONDecodeError as error:
            raise SystemExit(f"--source_uris: not a JSON array of strings: {value!r} ({error})") from None
        if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
            raise SystemExit(f"--source_uris: not a JSON array of strings: {value!r}")
        return [u for u in uris if u.strip()]
    return [u.strip() for u in text.split(",") if u.strip()]


def resolve_args(argv: Sequence[str]) -> dict[str, Any]:
    """The job's arguments, with defaults for the optional ones, typed (max_quarantine_ratio float, source_uris
    list). Uses awsglue's getResolvedOptions when installed; optional names are only asked for when present."""
    present = [n for n in OPTIONAL_ARGS if any(a == f"--{n}" or a.startswith(f"--{n}=") for a in argv)]
    raw = _get_resolved_options()(list(argv), [*REQUIRED_ARGS, *present])
    args: dict[str, Any] = {**OPTIONAL_ARGS, **raw}
    run_id = args["run_id"] or args["WORKFLOW_RUN_ID"] or args["JOB_RUN_ID"]
    if not run_id:
        raise SystemExit("--run_id is required (or Glue's --WORKFLOW_RUN_ID / --JOB_RUN_ID)")
    args["run_id"] = run_id
    args["source_uris"] = parse_source_uris(str(args["source_uris"]))
    if not args["source_uris"]:
        raise SystemExit("--source_uris: no URI given")
    try:
        args["max_quarantine_ratio"] = float(args["max_quarantine_ratio"])
    except ValueError:
        raise SystemExit(f"--max_quarantine_ratio: not a number: {args['max_quarantine_ratio']!r}") from None
    return args


def load_contract(spark: SparkSession, path: str) -> DatasetContract:
    """Read the contract from the working dir (Glue --extra-files), SparkFiles, a local path or any Hadoop URI."""
    if os.path.exists(path):
        return DatasetContract.from_file(path)
    if "://" not in path:
        from pyspark import SparkFiles

        shipped = SparkFiles.get(os.path.basename(path))
        if os.path.exists(shipped):
            return DatasetContract.from_file(shipped)
        raise FileNotFoundError(f"--contract_path {path!r}: not in the working directory nor in SparkFiles")
    text = "\n".join(r.value for r in spark.read.text(path, wholetext=True).collect())
    return DatasetContract.from_json(text)


def expand_sources(spark: SparkSession, uris: Sequence[str]) -> list[str]:
    """Replace each URI ending in '/' by the files under it (sorted; names starting with '_' or '.' skipped)."""
    out: list[str] = []
    for uri in uris:
        if not uri.endswith("/"):
            out.append(uri)
            continue
        jvm: Any = spark.sparkContext._jvm
        path = jvm.org.apache.hadoop.fs.Path(uri)
        fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        found: list[str] = []
        files = fs.listFiles(path, True)
        while files.hasNext():
            status = files.next()
            name = status.getPath().getName()
            if not name.startswith(("_", ".")):
                found.append(status.getPath().toString())
        out.extend(sorted(found))
    return out


def metric_data(result: CleanResult, dataset: str, job_name: str | None) -> list[dict[str, Any]]:
    """The CloudWatch MetricData of one run (see the module docstring)."""
    failed = not result.ok
    values = {
        "RowsIn": (result.rows_in, "Count"),
        "RowsOut": (result.rows_out, "Count"),
        "RowsQuarantined": (result.rows_quarantined, "Count"),
        "LinesRead": (result.lines_read, "Count"),
        "LinesQuarantined": (result.lines_quarantined, "Count"),
        "DuplicatesDropped": (result.duplicates_dropped, "Count"),
        "FilesRejected": (len(result.rejected_files), "Count"),
        "QuarantineRatio": (result.quarantine_ratio, "None"),
        "QuarantineRatioWarning": (int(bool(result.lines_quarantined) and not failed), "Count"),
        "ConservationFailed": (int(not result.conservation_ok), "Count"),
        "RunFailed": (int(failed), "Count"),
    }
    dimension_sets = [[{"Name": "Dataset", "Value": dataset}]]
    if job_name:
        dimension_sets.append([{"Name": "Dataset", "Value": dataset}, {"Name": "JobName", "Value": job_name}])
    data = [
        {"MetricName": name, "Dimensions": dims, "Value": float(value), "Unit": unit}
        for dims in dimension_sets
        for name, (value, unit) in values.items()
    ]
    for reason, count in sorted(result.reasons.items()):
        dims = [{"Name": "Dataset", "Value": dataset}, {"Name": "Reason", "Value": reason[:255]}]
        data.append({"MetricName": "RowsQuarantinedByReason", "Dimensions": dims, "Value": float(count), "Unit": "Count"})
    return data


def publish_metrics(client: Any, namespace: str, data: list[dict[str, Any]]) -> None:
    """put_metric_data in batches (CloudWatch takes up to 1000 metrics per call)."""
    for start in range(0, len(data), 1000):
        client.put_metric_data(Namespace=namespace, MetricData=data[start : start + 1000])


def _named_upload(error: str, reading: dict[str, str]) -> str:
    """An error of the transform with the place a file was read from replaced by the upload's URI."""
    for read, uri in reading.items():
        if read != uri:
            error = error.replace(read, uri)
    return error


def _workflow_inputs() -> Any:
    try:
        from pipeline_constructs.runtime import workflow_inputs
    except ImportError:  # on Glue, shipped as a top-level module
        import workflow_inputs  # type: ignore[import-not-found,no-redef]
    return workflow_inputs


def _upload_ledger() -> Any:
    try:
        from pipeline_constructs.runtime import upload_ledger
    except ImportError:  # on Glue, shipped as a top-level module
        import upload_ledger  # type: ignore[import-not-found,no-redef]
    return upload_ledger


def _pipeline_plan() -> Any:
    try:
        from pipeline_constructs.runtime import pipeline_plan
    except ImportError:  # on Glue, shipped as a top-level module
        import pipeline_plan  # type: ignore[import-not-found,no-redef]
    return pipeline_plan


def open_ledger(args: dict[str, Any], dynamodb: Any = None) -> Any:
    """The job's UploadLedger (--ledger_table, --pipeline_form, --ledger_ttl_days)."""
    if dynamodb is None:
        import boto3

        dynamodb = boto3.client("dynamodb")
    return _upload_ledger().UploadLedger(dynamodb, args["ledger_table"], form=args["pipeline_form"], ttl_days=int(args["ledger_ttl_days"]))


def claim_workflow_sources(args: dict[str, Any], ledger: Any, clients: dict[str, Any] | None = None) -> dict[str, Any]:
    """In the Glue Workflow form: {s3 URI: Upload} of the uploads this run takes through the ledger
    (runtime/workflow_inputs.py)."""
    import boto3

    clients = clients or {}
    inputs = _workflow_inputs()
    landing_bucket, landing_prefix = inputs.parse_s3_uri(args["source_listing_prefix"])
    claimed = inputs.claim_uploads(
        ledger,
        sqs=clients.get("sqs") or boto3.client("sqs"),
        glue=clients.get("glue") or boto3.client("glue"),
        inbox_url=args["inbox_queue_url"],
        workflow_name=args["WORKFLOW_NAME"],
        run_id=args["run_id"],
        landing_bucket=landing_bucket,
        landing_prefix=landing_prefix,
    )
    return {upload.uri: upload for upload in claimed}


def rejection_alert(args: dict[str, Any], dataset: str, rejected: list[dict[str, str]]) -> tuple[str, str]:
    """(subject, message) telling about files rejected as a whole; the message has the fields every form's failure
    message has (pipeline, object, run_id, failed_step, error, cause) plus where the quarantined copies are."""
    count = len(rejected)
    subject = f"{dataset} pipeline: {count} file{'s' if count != 1 else ''} quarantined ({args['pipeline_form']})"
    message = {
        "pipeline": args["pipeline_form"],
        "object": ", ".join(r["source_uri"] for r in rejected),
        "run_id": args["run_id"],
        "failed_step": CLEAN_STEP,
        "error": FILE_REJECTED_ERROR,
        "cause": "; ".join(f"{r['source_uri']}: {r['reason']}" for r in rejected),
        "quarantined": [r.get("copy", "") for r in rejected],
    }
    return subject[:100], json.dumps(message, sort_keys=True)


def _counts(result: CleanResult, uri: str | None = None) -> dict[str, Any] | None:
    """The ledger counts of the run, or of its file `uri` in a run of several (`CleanResult.per_file`; None when the
    run stopped before it counted its files)."""
    if uri is not None and uri not in result.per_file:
        return None
    counts: dict[str, Any] = dict(result.per_file[uri]) if uri is not None else {name: getattr(result, name) for name in PER_FILE_COUNTS}
    counts["quarantine_uri"] = result.quarantine_path if counts["lines_quarantined"] else None
    return counts


def settle_workflow_run(
    args: dict[str, Any],
    result: CleanResult,
    claimed: dict[str, Any],
    ledger: Any,
    sns: Any = None,
    glue: Any = None,
    hand_over: Callable[[list[Any]], None] | None = None,
) -> list[dict[str, str]]:
    """After the transform of a run of claimed uploads: end the rejected files `rejected` in the ledger and alert
    about them (once: a later attempt cannot take a rejected upload again), record the other uploads' counts, end
    them `skipped_empty` or `quarantined` when the run curated no row (there is nothing to load), hand the rest to
    the load (`hand_over(uploads)`; default: the Glue workflow run property `LOADING_PROPERTY`, which the Glue load
    job reads), and take the rejections out of `result.errors` (into `warnings`), so they alone do not fail the run.
    Returns the rejections alerted about.

    Per-upload counts: a run of several uploads records each one's own counts (the transform counts each file,
    `CleanResult.per_file`), and each upload that curated no row ends `skipped_empty` or `quarantined` by its own
    counts while the others go to the load; a run of one upload records the run's counts.
    """
    import boto3

    inputs = _workflow_inputs()
    by_uri = {r["source_uri"]: r for r in result.rejected_files}
    unknown = sorted(set(by_uri) - set(claimed))
    if unknown:
        raise RuntimeError(f"rejected files that this run did not claim: {unknown}")
    rejections = tuple(f"file rejected: {uri}: " for uri in by_uri)
    result.warnings.extend(f"quarantined and not taken again: {e}" for e in result.errors if e.startswith(rejections))
    result.errors[:] = [e for e in result.errors if not e.startswith(rejections)]
    alerted = []
    for uri, rejected in by_uri.items():
        ledger.counts(claimed[uri], run_id=args["run_id"], counts={"rows_out": 0, "quarantine_uri": rejected.get("copy") or None})
        ledger.finish(claimed[uri], run_id=args["run_id"], outcome=_upload_ledger().REJECTED)
        alerted.append(rejected)
    kept = {uri: upload for uri, upload in claimed.items() if uri not in by_uri}
    counted = {uri: _counts(result, uri if len(kept) > 1 else None) for uri in kept}
    for uri, upload in kept.items():
        counts = counted[uri]
        ledger.counts(upload, run_id=args["run_id"], counts=counts if counts is not None else {"quarantine_uri": result.quarantine_path})
    loading = []
    if result.ok:
        for uri, upload in kept.items():
            counts = counted[uri]
            if counts is None:
                raise RuntimeError(f"the run succeeded without counting {uri}: its outcome cannot be recorded")
            if counts["rows_out"] == 0:
                outcome = _pipeline_plan().outcome_without_load(counts["rows_quarantined"])
                ledger.finish(upload, run_id=args["run_id"], outcome=outcome)
            else:
                loading.append(upload)
    if hand_over is not None:
        hand_over(loading)
    else:
        glue = glue or boto3.client("glue")
        inputs.put_uploads(glue, workflow_name=args["WORKFLOW_NAME"], run_id=args["run_id"], name=inputs.LOADING_PROPERTY, uploads=loading)
    if alerted and args["alert_topic_arn"]:
        subject, message = rejection_alert(args, result.dataset, alerted)
        (sns or boto3.client("sns")).publish(TopicArn=args["alert_topic_arn"], Subject=subject, Message=message)
    elif alerted:
        LOG.warning("no --alert_topic_arn: nobody was told about %d rejected files", len(alerted))
    return alerted


def record_counts_in_ledger(args: dict[str, Any], result: CleanResult, dynamodb: Any = None) -> dict[str, Any] | None:
    """With --ledger_table, on a run of one upload named by --source_uris (the forms that run one upload per run):
    write its row and line counts (and where its quarantined rows are) into the upload's ledger record, owned by this
    run; a file rejected as a whole ends there as `rejected`. Returns the record, or None when there is nothing to
    write (no table, or several uploads: the Glue Workflow form's runs are settled by `settle_workflow_run`). A
    refused write (the run does not hold the upload) fails the job, naming it."""
    if not args["ledger_table"] or len(args["source_uris"]) != 1:
        return None
    ledger_module = _upload_ledger()
    versions = parse_source_uris(args["source_versions"]) if args["source_versions"] else [""]
    if len(versions) != 1:
        raise SystemExit(f"--source_versions={args['source_versions']!r}: give one version per --source_uris entry")
    bucket, key = ledger_module.split_uri(args["source_uris"][0])
    upload = ledger_module.Upload(bucket, key, version_id=versions[0] or None)
    ledger = open_ledger(args, dynamodb)
    record = ledger.counts(upload, run_id=args["run_id"], counts=_counts(result))
    if result.rejected_files:
        record = ledger.finish(upload, run_id=args["run_id"], outcome=ledger_module.REJECTED)
    return record  # type: ignore[no-any-return]


def main(
    argv: Sequence[str] | None = None,
    *,
    spark: SparkSession | None = None,
    cloudwatch: Any = None,
    read_from: Callable[[str], str] | None = None,
    dynamodb: Any = None,
    clients: dict[str, Any] | None = None,
) -> CleanResult | None:
    """Run the job. Raises CleanRunFailed (the job run fails) after writing and publishing when the run failed.

    In the Glue Workflow form and with --settle_uploads, any failure after the claim is recorded `failed` (step clean,
    with the error and its cause) on every upload the run still holds, then raised: the form reports the failure.

    :param read_from: where Spark reads a claimed upload of the Glue Workflow form. Default: its s3:// URI (tests
        point it at a local copy, since a local Spark cannot read an in-memory S3).
    :param clients: boto3 clients by service name: s3 (the source version check), and sqs, glue, sns for the Glue
        Workflow form. Default: new ones.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = resolve_args(sys.argv[1:] if argv is None else argv)
    if args["settle_uploads"]:
        if not args["ledger_table"]:
            raise SystemExit("--settle_uploads needs --ledger_table: the run's uploads are settled in the upload ledger")
        ledger = open_ledger(args, dynamodb)
        claimed = named_uploads(args)
    elif not args["source_listing_prefix"]:
        return _clean(args, spark=spark, cloudwatch=cloudwatch, dynamodb=dynamodb, clients=clients)
    else:
        missing = [f"--{name}" for name in ("ledger_table", "inbox_queue_url", "WORKFLOW_NAME") if not args[name]]
        if missing:
            raise SystemExit(f"--source_listing_prefix needs {', '.join(missing)}: run the job from its Glue workflow")
        ledger = open_ledger(args, dynamodb)
        claimed = claim_workflow_sources(args, ledger, clients)
    if not claimed:
        LOG.info("no uploads for this run under %s; nothing to clean", args["source_listing_prefix"])
        _workflow_inputs().put_uploads(
            (clients or {}).get("glue") or _boto3_client("glue"),
            workflow_name=args["WORKFLOW_NAME"],
            run_id=args["run_id"],
            name=_workflow_inputs().LOADING_PROPERTY,
            uploads=[],
        )
        return None
    try:
        return _clean(args, spark=spark, cloudwatch=cloudwatch, claimed=claimed, read_from=read_from, ledger=ledger, clients=clients)
    except BaseException as error:
        failed = _workflow_inputs().fail_uploads(
            ledger, claimed.values(), run_id=args["run_id"], error=type(error).__name__, cause=str(error) or repr(error)
        )
        LOG.error("run %s failed at clean: recorded on %d of its %d uploads", args["run_id"], failed, len(claimed))
        raise


def named_uploads(args: dict[str, Any]) -> dict[str, Any]:
    """With --settle_uploads: {s3 URI: Upload} of --source_uris, each with its --source_versions entry (the ledger's
    version: a version id, 'etag:<etag>' or 'null'); SystemExit naming the arguments when they do not pair up."""
    versions = parse_source_uris(args["source_versions"]) if args["source_versions"] else []
    uris = args["source_uris"]
    if len(versions) != len(uris) or len(set(uris)) != len(uris):
        raise SystemExit(
            f"--settle_uploads: --source_uris has {len(uris)} URIs ({len(set(uris))} distinct) and --source_versions "
            f"{len(versions)} versions: give each upload once, with its ledger version"
        )
    named: dict[str, Any] = {}
    for uri, version in zip(uris, versions, strict=True):
        bucket, key = _upload_ledger().split_uri(uri)
        named[uri] = _workflow_inputs().upload_of_record({"bucket": bucket, "key": key, "version": version})
    return named


def _keep_for_load(uploads: list[Any]) -> None:
    """The hand-over of a settled run (--settle_uploads): the uploads to load stay running at step clean in the
    ledger, where the run's load takes them from."""
    LOG.info("%d uploads with curated rows stay running at step clean for the run's load", len(uploads))


class SourceVersionChanged(RuntimeError):
    """An upload was overwritten after its event: the run would read another version than the one it records."""


def check_source_versions(s3: Any, uris: Sequence[str], versions: Sequence[str]) -> None:
    """Each s3:// source must still be the version its event named (a version id, or 'etag:<etag>' for an
    unversioned bucket), so the run reads, loads and records the same object version. Spark reads an object's
    current version only; checked before the read and again after the output is written, a change in between fails
    the run (it loads nothing; the new version's own event starts its own run)."""
    for index, uri in enumerate(uris):
        version = versions[index] if index < len(versions) else ""
        if not version or not uri.startswith("s3://"):
            continue
        bucket, _, key = uri[len("s3://") :].partition("/")
        head = s3.head_object(Bucket=bucket, Key=key)
        if version.startswith("etag:"):
            current, named = "etag:" + head.get("ETag", "").strip('"'), version
        else:
            current, named = str(head.get("VersionId") or "null"), version
        if current != named:
            raise SourceVersionChanged(
                f"{uri}: its event named version {named}, the bucket now holds {current}. The object was overwritten "
                "after it was uploaded; this run loads nothing, and the new version's own event starts its own run"
            )


def _boto3_client(name: str) -> Any:
    import boto3

    return boto3.client(name)


def _clean(
    args: dict[str, Any],
    *,
    spark: SparkSession | None,
    cloudwatch: Any,
    dynamodb: Any = None,
    claimed: dict[str, Any] | None = None,
    read_from: Callable[[str], str] | None = None,
    ledger: Any = None,
    clients: dict[str, Any] | None = None,
) -> CleanResult:
    reading: dict[str, str] = {}
    versions = parse_source_uris(args["source_versions"]) if claimed is None and args["source_versions"] else []
    s3 = None
    if any(uri.startswith("s3://") for uri in args["source_uris"][: len(versions)]):
        s3 = (clients or {}).get("s3") or _boto3_client("s3")
        check_source_versions(s3, args["source_uris"], versions)
    if claimed is not None:
        reading = {(read_from(uri) if read_from else uri): uri for uri in claimed}
        args["source_uris"] = list(reading)
    spark = spark or SparkSession.builder.getOrCreate()
    contract = load_contract(spark, args["contract_path"])
    dataset = args["dataset"] or contract.name
    result = run_clean(
        spark,
        contract,
        expand_sources(spark, args["source_uris"]),
        run_id=args["run_id"],
        curated_root=args["curated_root"],
        quarantine_root=args["quarantine_root"],
        max_quarantine_ratio=args["max_quarantine_ratio"],
    )
    if claimed is not None:
        for rejected in result.rejected_files:  # name the upload, not where it was read from
            rejected["source_uri"] = reading.get(rejected["source_uri"], rejected["source_uri"])
        result.per_file = {reading.get(uri, uri): counts for uri, counts in result.per_file.items()}
        result.errors[:] = [_named_upload(e, reading) for e in result.errors]
        clients = clients or {}
        hand_over = _keep_for_load if args["settle_uploads"] else None
        settle_workflow_run(args, result, claimed, ledger, sns=clients.get("sns"), glue=clients.get("glue"), hand_over=hand_over)
    else:
        if s3 is not None:
            check_source_versions(s3, args["source_uris"], versions)  # after every read: what was read is what is recorded
        record_counts_in_ledger(args, result, dynamodb)
    if args["metrics_namespace"]:
        publish_metrics(
            cloudwatch or _boto3_client("cloudwatch"), args["metrics_namespace"], metric_data(result, dataset, args["JOB_NAME"])
        )
    for warning in result.warnings:
        LOG.warning("%s", warning)
    print(result.summary_json(), flush=True)
    if not result.ok:
        raise CleanRunFailed(result)
    return result


if __name__ == "__main__":
    main()
