"""`pipeline-ops --env NAME COMMAND`: what happened to the uploads of one deployed environment, and their recovery.

Exit status: 0 all is well, 1 something needs attention (a failed or stuck upload, an upload not accounted for, a
waiting dead-letter message, a refused rerun), 2 usage, credentials, or an environment that is not deployed. Every
command takes --json (one JSON document on stdout) for scripts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError, PartialCredentialsError

from ..runtime.upload_ledger import FAILED, STATES, UploadLedger, split_uri
from .dead_letters import replay_dead_letters
from .environment import Environment, OperationsError, load_environment
from .quarantine import count_quarantine, export_quarantine
from .runs import Refused, Runs
from .uploads import latest_upload, reconcile, upload_history, upload_status

OK, ATTENTION, USAGE = 0, 1, 2
SERVICES = ("cloudformation", "dynamodb", "s3", "sqs", "sns", "stepfunctions", "glue", "mwaa", "mwaa-serverless", "lambda")
_DURATION = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    """'30m', '24h', '7d'."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: give a number and m, h or d, e.g. 24h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline-ops", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", required=True, help="the environment's name (its stacks are <env>-Stateful, <env>-StepFunctions, ...)")
    parser.add_argument("--region", help="the environment's region (default: the AWS configuration's)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = commands.add_parser("status", help="uploads by state, then the failed and stuck ones")
    status.add_argument("--since", type=duration, default=timedelta(hours=24), help="window of ledger updates (default 24h)")
    status.add_argument("--state", choices=STATES, help="only this state")
    show = commands.add_parser("show", help="one upload's history: runs, steps, errors, row counts, quarantine")
    show.add_argument("uri", metavar="s3://bucket/key")
    rerun = commands.add_parser("rerun", help="the cheapest correct recovery of a failed upload on its form")
    rerun.add_argument("uri", metavar="s3://bucket/key")
    rerun.add_argument("--version-id", help="the object version (default: the current one)")
    rerun.add_argument("--force", action="store_true", help="run a finished upload again (the load is idempotent)")
    replay = commands.add_parser("replay-dead-letters", help="send every dead-letter queue's messages back")
    replay.add_argument("--dry-run", action="store_true", help="count them only")
    quarantine = commands.add_parser("quarantine", help="a run's quarantined rows by reason; --export them as a CSV")
    quarantine.add_argument("run_id", metavar="RUN_ID")
    quarantine.add_argument("--export", metavar="FILE", help="write the rows' original records, with the header, to FILE")
    reconcile_parser = commands.add_parser("reconcile", help="every object under the landing prefixes against the ledger")
    reconcile_parser.add_argument("--since", type=duration, default=timedelta(days=7), help="objects modified within (default 7d)")
    reconcile_parser.add_argument("--start", action="store_true", help="start runs for the uploads no run took")
    return parser


class Printer:
    """Human lines, or one JSON document at the end with --json."""

    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out, self.as_json = out, as_json

    def line(self, text: str = "") -> None:
        if not self.as_json:
            print(text, file=self.out)

    def finish(self, code: int, **document: Any) -> int:
        if self.as_json:
            json.dump({**document, "exit_status": code}, self.out, indent=2, default=str)
            print(file=self.out)
        return code


def _upload_line(record: dict[str, Any]) -> str:
    text = f"  {record.get('object')}  [{record.get('form', '?')}]  step {record.get('step', '?')}"
    if record.get("error"):
        text += f"  {record['error']}: {str(record.get('cause', ''))[:200]}"
    return text


def cmd_status(args: argparse.Namespace, clients: dict[str, Any], environment: Environment, printer: Printer, now: datetime) -> int:
    report = upload_status(clients["dynamodb"], environment, since=now - args.since, now=now, state=args.state)
    printer.line(f"uploads updated since {report.since} in {environment.name}:")
    for state, count in report.counts.items():
        printer.line(f"  {state:<14}{count:>6}")
    if report.failed:
        printer.line(f"failed ({len(report.failed)}):")
        for record in report.failed:
            printer.line(_upload_line(record))
    if report.stuck:
        printer.line(f"stuck ({len(report.stuck)}):")
        for record in report.stuck:
            printer.line(_upload_line(record) + f"  {record['stuck']}")
    if report.needs_attention:
        printer.line("recover one with: pipeline-ops --env " + environment.name + " rerun s3://bucket/key")
    code = ATTENTION if report.needs_attention else OK
    return printer.finish(code, **asdict(report))


def cmd_show(args: argparse.Namespace, clients: dict[str, Any], environment: Environment, printer: Printer, now: datetime) -> int:
    bucket, key = _uri(args.uri)
    records = upload_history(clients["dynamodb"], environment, bucket, key)
    if not records:
        form = environment.form_of_key(bucket, key)
        hint = (
            f"its form ({form.form}) does not write the ledger yet: look at its runs in the console"
            if not form.writes_ledger
            else f"no run recorded it: `pipeline-ops --env {environment.name} reconcile` says whether it was lost"
        )
        printer.line(f"{args.uri}: not in the ledger; {hint}")
        return printer.finish(ATTENTION, object=args.uri, records=[])
    for record in records:
        printer.line(f"{record['object']}  version {record['version']}  [{record.get('form', '?')}]")
        printer.line(
            f"  state {record.get('state')} at step {record.get('step', '-')}, received {record.get('received_at', '?')}, "
            f"updated {record.get('updated_at', '?')}"
        )
        if record.get("error"):
            printer.line(f"  error {record['error']}: {record.get('cause', '')}")
        counts = [f"{name} {record[name]}" for name in ("rows_in", "rows_out", "rows_quarantined", "duplicates_dropped") if name in record]
        if counts:
            printer.line("  rows: " + ", ".join(counts))
        if record.get("quarantine_uri"):
            printer.line(f"  quarantined rows: {record['quarantine_uri']}")
        for run in record["runs"]:
            printer.line(
                f"  run {run['run_id']}: {run.get('started_at', '?')} -> {run.get('ended_at', '...')} {run.get('outcome', 'running')}"
            )
            printer.line(f"    {run['console']}")
    latest_failed = records[-1].get("state") == FAILED
    return printer.finish(ATTENTION if latest_failed else OK, object=args.uri, records=records)


def cmd_rerun(args: argparse.Namespace, clients: dict[str, Any], environment: Environment, printer: Printer, now: datetime) -> int:
    bucket, key = _uri(args.uri)
    stack = environment.form_of_key(bucket, key)
    try:
        upload = latest_upload(clients["s3"], bucket, key, args.version_id)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NoSuchVersion"):
            raise OperationsError(f"{args.uri}" + (f" version {args.version_id}" if args.version_id else "") + ": no such object") from None
        raise
    record = UploadLedger(clients["dynamodb"], environment.ledger_table, form=stack.form).get(upload)
    try:
        action = Runs(clients, environment).rerun(stack, upload, record, force=args.force, now=now)
    except Refused as refused:
        printer.line(f"not rerun: {refused}")
        return printer.finish(ATTENTION, object=args.uri, refused=str(refused))
    printer.line(f"{args.uri} [{action.form}]: {action.how} {action.run}" + (f" ({action.note})" if action.note else ""))
    printer.line(f"follow it with: pipeline-ops --env {environment.name} show {args.uri}")
    return printer.finish(OK, object=args.uri, **asdict(action))


def cmd_replay(args: argparse.Namespace, clients: dict[str, Any], environment: Environment, printer: Printer, now: datetime) -> int:
    replays = replay_dead_letters(clients, environment, dry_run=args.dry_run, now=now)
    for replay in replays:
        queue = replay.queue
        name = queue.url.rsplit("/", 1)[-1]
        text = f"  {name}  [{queue.form or 'alerts'}, {queue.kind}]  {replay.waiting} waiting"
        if not args.dry_run and replay.waiting:
            text += f", {replay.replayed} sent back" + (f" (message-move task {replay.task})" if replay.task else "")
        printer.line(text)
        for error in replay.errors:
            printer.line(f"    not sent back: {error}")
    waiting = sum(replay.waiting for replay in replays)
    left = waiting if args.dry_run else sum(len(replay.errors) for replay in replays)
    printer.line(f"{waiting} dead-letter message(s) in {environment.name}" + ("" if args.dry_run else f", {left} left in their queues"))
    return printer.finish(ATTENTION if left else OK, queues=[asdict(replay) for replay in replays])


def cmd_quarantine(args: argparse.Namespace, clients: dict[str, Any], environment: Environment, printer: Printer, now: datetime) -> int:
    report = count_quarantine(clients["s3"], environment, args.run_id)
    if not report.rows:
        printer.line(f"run {args.run_id}: no quarantined rows under {report.prefix}")
        return printer.finish(OK, run_id=args.run_id, rows=0, prefix=report.prefix, reasons={})
    printer.line(f"run {args.run_id}: {report.rows} quarantined row(s) under {report.prefix}")
    for reason, count in report.reasons.most_common():
        printer.line(f"  {count:>6}  {reason}")
    exported = None
    if args.export:
        with open(args.export, "wb") as out:
            exported = export_quarantine(clients["s3"], environment, args.run_id, out)
        printer.line(f"wrote {exported} record(s) and the header to {args.export}: fix them and upload the file again")
    document = {"run_id": args.run_id, "rows": report.rows, "prefix": report.prefix, "reasons": dict(report.reasons)}
    return printer.finish(ATTENTION, **document, sources=dict(report.sources), exported=exported)


def cmd_reconcile(args: argparse.Namespace, clients: dict[str, Any], environment: Environment, printer: Printer, now: datetime) -> int:
    report = reconcile(clients["s3"], clients["dynamodb"], environment, since=now - args.since, now=now)
    printer.line(
        f"{report.checked} upload(s) since {report.since}: {report.accounted} accounted for, {report.in_flight} in flight, "
        f"{len(report.findings)} not accounted for"
    )
    for form in report.unchecked_forms:
        printer.line(f"  not checked: {form} (its runs do not write the ledger yet)")
    runs = Runs(clients, environment)
    started = []
    for finding in report.findings:
        printer.line(f"  {finding.upload.uri}  [{finding.form}]  {finding.problem}")
        if args.start and finding.startable:
            action = runs.start_new_run(environment.forms[finding.form], finding.upload, now)
            started.append({"object": finding.upload.uri, **asdict(action)})
            printer.line(f"    {action.how} {action.run}")
    left = sum(1 for finding in report.findings if not (args.start and finding.startable))
    findings = [{"object": f.upload.uri, "version": f.upload.version, "form": f.form, "problem": f.problem} for f in report.findings]
    document = {**{k: v for k, v in asdict(report).items() if k != "findings"}, "findings": findings, "started": started}
    return printer.finish(ATTENTION if left else OK, **document)


COMMANDS: dict[str, Callable[..., int]] = {
    "status": cmd_status,
    "show": cmd_show,
    "rerun": cmd_rerun,
    "replay-dead-letters": cmd_replay,
    "quarantine": cmd_quarantine,
    "reconcile": cmd_reconcile,
}


def _uri(uri: str) -> tuple[str, str]:
    try:
        return split_uri(uri)
    except ValueError as error:
        raise OperationsError(f"{error}: name the upload as s3://bucket/key") from None


def main(argv: Sequence[str] | None = None, *, session: Any = None, out: TextIO | None = None, now: datetime | None = None) -> int:
    out = out or sys.stdout
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return USAGE if exit_.code else OK
    printer = Printer(out, args.json)
    try:
        session = session or boto3.session.Session(region_name=args.region)
        region = session.region_name
        if not region:
            raise NoRegionError()
        clients = {name: session.client(name, region_name=region) for name in SERVICES}
        environment = load_environment(clients["cloudformation"], args.env, region)
        return COMMANDS[args.command](args, clients, environment, printer, now or datetime.now(UTC))
    except OperationsError as error:
        return _fail(printer, str(error))
    except NoRegionError:
        return _fail(printer, "no AWS region: pass --region, or set AWS_REGION or a profile's region")
    except (NoCredentialsError, PartialCredentialsError):
        return _fail(printer, "no AWS credentials: set AWS_PROFILE (then `aws sso login`), or the AWS_ACCESS_KEY_ID variables")
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in (
            "ExpiredToken",
            "ExpiredTokenException",
            "InvalidClientTokenId",
            "UnrecognizedClientException",
            "AccessDenied",
            "AccessDeniedException",
        ):
            return _fail(
                printer, f"AWS refused the credentials ({code}: {error}); refresh them or use a role that may operate the pipeline"
            )
        raise
    except BotoCoreError as error:
        return _fail(printer, f"cannot reach AWS: {error}")


def _fail(printer: Printer, message: str) -> int:
    print(f"pipeline-ops: {message}", file=sys.stderr)
    return printer.finish(USAGE, error=message)
