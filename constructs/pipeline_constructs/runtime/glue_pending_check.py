"""Glue Python shell entrypoint of a scheduled Glue workflow run's first step: is anything pending?

A scheduled run starts on the clock, not on an upload, so it may find nothing to do. Its crawl would still cost the
crawler's minimum billed time (10 minutes of DPU time per crawl), the clean job's Spark start and the load job: at
one run an hour, about 720 empty runs a month. This check runs first instead (a Python shell job of 0.0625 DPU for
its 1-minute minimum: $0.00046 at $0.44 per DPU-hour), counting what the run's clean job would take
(`workflow_inputs.pending_uploads`: requested by `pipeline-ops`, failed uploads to retry, the inbox). Something
pending: the job succeeds and the workflow's conditional trigger starts the crawl. Nothing: it records why in the run
property `pipeline_empty_run`, logs it, and stops its own workflow run, so nothing is crawled, cleaned or loaded
(`workflow_inputs.end_empty_run`; the stop may end this job STOPPED, which the form does not report as a failure).

Deployed as the script of the Glue Workflow form's pending-check job (Python 3.9, boto3 only) when the form starts on
a schedule; `workflow_inputs.py`, `upload_ledger.py` and `pipeline_plan.py` come with --extra-py-files.

Job arguments:
  --source_listing_prefix  s3:// landing prefix of the form (the failed uploads under it count)
  --inbox_queue_url        the form's inbox queue
  --ledger_table           the upload ledger
  --ledger_ttl_days        optional, default 400
  --pipeline_form          optional, default glue_workflow
  (Glue adds --WORKFLOW_NAME and --WORKFLOW_RUN_ID)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

LOG = logging.getLogger("glue_pending_check")
REQUIRED = ("source_listing_prefix", "inbox_queue_url", "ledger_table", "WORKFLOW_NAME", "WORKFLOW_RUN_ID")
OPTIONAL = {"ledger_ttl_days": "400", "pipeline_form": "glue_workflow"}


def _workflow_inputs() -> Any:
    try:
        from pipeline_constructs.runtime import workflow_inputs
    except ImportError:  # on Glue: a top-level module shipped with --extra-py-files
        import workflow_inputs  # type: ignore[import-not-found,no-redef]
    return workflow_inputs


def resolve_args(argv: Sequence[str]) -> dict[str, str]:
    """The job's arguments (`--name value`; Glue's getResolvedOptions when present); SystemExit naming a missing one."""
    try:
        from awsglue.utils import getResolvedOptions  # type: ignore[import-not-found]
    except ImportError:
        getResolvedOptions = None
    present = [name for name in OPTIONAL if f"--{name}" in argv]
    if getResolvedOptions is not None:
        return {**OPTIONAL, **getResolvedOptions(list(argv), [*REQUIRED, *present])}
    values: dict[str, str] = dict(OPTIONAL)
    for index, arg in enumerate(argv):
        if arg.startswith("--") and index + 1 < len(argv):
            values[arg[2:]] = argv[index + 1]
    missing = [f"--{name}" for name in REQUIRED if not values.get(name)]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run the job from its Glue workflow")
    return values


def check(args: dict[str, str], clients: dict[str, Any]) -> dict[str, Any]:
    """Count what is pending; end the run when nothing is. Returns {pending: {...}, empty: bool, message?}."""
    inputs = _workflow_inputs()
    bucket, prefix = inputs.parse_s3_uri(args["source_listing_prefix"])
    ledger = inputs.UploadLedger(
        clients["dynamodb"], args["ledger_table"], form=args["pipeline_form"], ttl_days=int(args["ledger_ttl_days"])
    )
    where = {"workflow_name": args["WORKFLOW_NAME"], "run_id": args["WORKFLOW_RUN_ID"]}
    pending = inputs.pending_uploads(
        ledger,
        sqs=clients["sqs"],
        glue=clients["glue"],
        inbox_url=args["inbox_queue_url"],
        landing_bucket=bucket,
        landing_prefix=prefix,
        **where,
    )
    if any(pending.values()):
        LOG.info("run %s: pending %s: crawl, clean and load follow", args["WORKFLOW_RUN_ID"], pending)
        return {"pending": pending, "empty": False}
    message = inputs.end_empty_run(clients["glue"], pending=pending, **where)
    return {"pending": pending, "empty": True, "message": message}


def main(argv: Sequence[str] | None = None, clients: dict[str, Any] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = resolve_args(sys.argv[1:] if argv is None else argv)
    if clients is None:
        import boto3

        clients = {name: boto3.client(name) for name in ("dynamodb", "sqs", "glue")}
    return check(args, clients)


if __name__ == "__main__":
    main()
