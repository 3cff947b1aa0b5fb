"""`quarantine RUN_ID`: a run's quarantined rows counted by reason, and `--export FILE`: their original records with the
file's header, as a CSV that can be fixed and uploaded again.

The clean job writes them as JSON lines under `s3://<quarantine bucket>/<dataset>/run_id=<run id>/rows/`, one per
record: source_uri, line_number, reasons, raw_line (the record as read) and, when its bytes are not valid UTF-8,
raw_line_base64 (the exact bytes), so the export gives back exactly what was uploaded."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from ..runtime.upload_ledger import split_uri
from .environment import Environment, OperationsError

HEADER_BYTES = 65_536
"""How much of a source file is read for its header line."""


@dataclass
class QuarantineReport:
    run_id: str
    prefix: str
    rows: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)


def rows_prefix(environment: Environment, run_id: str) -> str:
    if not run_id or "/" in run_id:
        raise OperationsError(f"RUN_ID {run_id!r}: give the run id the failure message or `pipeline-ops show` names (no '/')")
    return f"{environment.dataset}/run_id={run_id}/rows/"


def quarantined_rows(s3: Any, environment: Environment, run_id: str) -> Iterator[dict[str, Any]]:
    """Every quarantined record of the run, in the order the clean job wrote them."""
    prefix = rows_prefix(environment, run_id)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=environment.quarantine_bucket, Prefix=prefix):
        for entry in sorted(page.get("Contents", []), key=lambda entry: entry["Key"]):
            if not entry["Key"].endswith(".json"):
                continue
            body = s3.get_object(Bucket=environment.quarantine_bucket, Key=entry["Key"])["Body"].read().decode("utf-8")
            for line in body.splitlines():
                if line.strip():
                    yield json.loads(line)


def count_quarantine(s3: Any, environment: Environment, run_id: str) -> QuarantineReport:
    report = QuarantineReport(run_id, f"s3://{environment.quarantine_bucket}/{rows_prefix(environment, run_id)}")
    for row in quarantined_rows(s3, environment, run_id):
        report.rows += 1
        report.reasons.update(row.get("reasons") or ["(none recorded)"])
        report.sources[str(row.get("source_uri", ""))] += 1
    return report


def original_bytes(row: dict[str, Any]) -> bytes:
    """The record exactly as it was uploaded (its line breaks inside quotes included)."""
    if row.get("raw_line_base64"):
        return base64.b64decode(row["raw_line_base64"])
    return str(row.get("raw_line", "")).encode("utf-8")


def header_line(s3: Any, source_uri: str) -> bytes:
    """The first line of the uploaded file (its header), without its line ending."""
    bucket, key = split_uri(source_uri)
    head = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEADER_BYTES - 1}")["Body"].read()
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    return line.removeprefix(b"\xef\xbb\xbf")


def export_quarantine(s3: Any, environment: Environment, run_id: str, out: IO[bytes]) -> int:
    """Write the header and every quarantined record of the run (by file, then line) to `out`; the number of records."""
    rows = sorted(
        quarantined_rows(s3, environment, run_id), key=lambda row: (str(row.get("source_uri", "")), int(row.get("line_number", 0)))
    )
    if not rows:
        return 0
    headers = {}
    for source in dict.fromkeys(str(row.get("source_uri", "")) for row in rows):
        try:
            headers[source] = header_line(s3, source)
        except Exception as error:  # noqa: BLE001 - the message names the file and what to do
            raise OperationsError(f"cannot read the header of {source} ({error}); the export needs the uploaded file") from None
    if len(set(headers.values())) > 1:
        raise OperationsError(f"run {run_id}: its files have different headers ({', '.join(headers)}); export them one run per file")
    out.write(next(iter(headers.values())) + b"\n")
    for row in rows:
        out.write(original_bytes(row) + b"\n")
    return len(rows)
