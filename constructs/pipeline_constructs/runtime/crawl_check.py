"""Crawl only when it can change something: does a run's set of uploads need the raw crawler? (issue 24)

The contract fixes the columns, so a crawl that finds the same header again changes nothing and costs its minimum
billed time. `crawl_needed` decides, the same way for every form:

- no raw table yet -> crawl ("no raw table yet");
- the raw table's columns (names, in order, lower-case as the crawler writes them) differ from the contract's -> crawl;
- an upload whose header (its first line, from a ranged GET of the first 64 KiB) differs from the table's columns
  -> crawl, naming the file;
- otherwise no crawl: "schema unchanged".

A doubt costs one crawl, never a skipped change: a table or an object that cannot be read, or a header that does not
parse, means crawl. The header is read the way the clean job reads it (`runtime/clean_transform.inspect_header`):
a UTF-8 BOM stripped, the line ending at the first LF (a CR before it dropped), parsed as one CSV record, each name
trimmed and lower-cased. A header that differs from the contract is still the clean job's to reject as a whole file.

`handler` is the Step Functions form's Check Schema Lambda; with a `ledger` in its event (a scheduled run) it also
records the decision on every upload (the ledger's `crawl` field).

Standard library and boto3 only, Python 3.9 compatible.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from pipeline_constructs.runtime.upload_ledger import LedgerConflict, Upload, UploadLedger, split_uri

LOG = logging.getLogger("crawl_check")
HEAD_BYTES = 64 * 1024
"""The bytes read of each upload: the clean job reads the same prefix for its header."""
NO_TABLE = "no raw table yet"
UNCHANGED = "schema unchanged"
"""The reason (and the ledger's `crawl` value) when the crawl is skipped."""
NAMED_COLUMNS = 12
"""Columns a reason lists before it counts the rest."""


class HeaderUnreadable(ValueError):
    """The first line is not a CSV header the clean job could read (its message says why)."""


def raw_table_name(table_prefix: str, landing_prefix: str) -> str:
    """The raw crawler's table for the uploads under `landing_prefix` (its S3 target): the crawler combines compatible
    files into one table named after the target's last folder, after its table prefix, in Glue's spelling (lower case,
    anything but letters, digits and '_' as '_')."""
    folder = [part for part in landing_prefix.split("/") if part][-1] if landing_prefix.strip("/") else ""
    return re.sub(r"[^a-z0-9_]", "_", f"{table_prefix}{folder}".lower())


def header_names(head: bytes, *, compressed: bool = False) -> list[str]:
    """The column names of a file's first line, as the clean job reads them; HeaderUnreadable otherwise.

    `compressed`: `head` is the start of a gzip file (the clean job reads `.gz` uploads decompressed)."""
    if compressed:
        try:
            head = zlib.decompressobj(wbits=31).decompress(head, HEAD_BYTES)
        except zlib.error as error:
            raise HeaderUnreadable(f"not gzip ({error})") from None
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    end = head.find(b"\n")
    if end < 0 and len(head) >= HEAD_BYTES - 3:
        raise HeaderUnreadable(f"no line break in the first {HEAD_BYTES} bytes")
    line_bytes = (head if end < 0 else head[:end]).rstrip(b"\r")
    if b"\x00" in head:
        raise HeaderUnreadable("NUL bytes (binary file)")
    try:
        line = line_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise HeaderUnreadable("the header is not UTF-8") from None
    if not line.strip():
        raise HeaderUnreadable("the first line is empty")
    try:
        return [name.strip().lower() for name in next(csv.reader([line]))]
    except csv.Error as error:
        raise HeaderUnreadable(f"bad header ({error})") from None


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMED_COLUMNS])
    return f"({shown}{f' and {len(names) - NAMED_COLUMNS} more' if len(names) > NAMED_COLUMNS else ''})"


def table_columns(glue: Any, *, database: str, table: str) -> list[str] | None:
    """The raw table's column names in order, lower-case; None when the table does not exist. Partition keys are not
    columns of the files, so they are left out."""
    try:
        answer = glue.get_table(DatabaseName=database, Name=table)
    except glue.exceptions.EntityNotFoundException:
        return None
    columns = answer["Table"].get("StorageDescriptor", {}).get("Columns", [])
    return [str(column["Name"]).lower() for column in columns]


def read_head(s3: Any, upload: Upload) -> bytes:
    """The first HEAD_BYTES of the upload's version (the version the run cleans), by one ranged GET."""
    request: dict[str, Any] = {"Bucket": upload.bucket, "Key": upload.key, "Range": f"bytes=0-{HEAD_BYTES - 1}"}
    if upload.version_id and upload.version_id != "null" and not upload.version_id.startswith("etag:"):
        request["VersionId"] = upload.version_id
    body = s3.get_object(**request)["Body"]
    try:
        return bytes(body.read())
    finally:
        body.close()


def crawl_needed(glue: Any, s3: Any, *, database: str, table: str, uploads: Iterable[Upload], columns: Sequence[str]) -> tuple[bool, str]:
    """(crawl?, why): see the module docstring. `columns` are the contract's source columns, in order."""
    try:
        existing = table_columns(glue, database=database, table=table)
    except Exception as error:  # noqa: BLE001 - a doubt costs one crawl
        return True, f"the raw table {database}.{table} could not be read ({_short(error)})"
    if existing is None:
        return True, NO_TABLE
    contract = [name.lower() for name in columns]
    if existing != contract:
        return True, f"the raw table's columns {_listed(existing)} differ from the contract's {_listed(contract)}"
    for upload in uploads:
        try:
            names = header_names(read_head(s3, upload), compressed=upload.key.lower().endswith(".gz"))
        except HeaderUnreadable as error:
            return True, f"{upload.uri}: header unreadable ({error})"
        except Exception as error:  # noqa: BLE001 - a doubt costs one crawl
            return True, f"{upload.uri} could not be read ({_short(error)})"
        if names != existing:
            return True, f"{upload.uri}: header {_listed(names)} differs from the raw table's columns {_listed(existing)}"
    return False, UNCHANGED


def _short(error: Exception) -> str:
    code = getattr(error, "response", {}).get("Error", {}).get("Code") if hasattr(error, "response") else None
    return str(code) if code else f"{type(error).__name__}: {str(error)[:200]}"


def uploads_of(source_uris: str, source_versions: str | None) -> list[Upload]:
    """The uploads of a run as the clean job takes them (JSON arrays of URIs and, optionally, one version each)."""
    uris = json.loads(source_uris)
    versions = json.loads(source_versions) if source_versions else [None] * len(uris)
    if not isinstance(uris, list) or not isinstance(versions, list) or len(uris) != len(versions):
        raise ValueError(f"source_uris={source_uris[:200]!r}, source_versions={str(source_versions)[:200]!r}: give one version per URI")
    uploads = []
    for index, uri in enumerate(uris):  # not zip(strict=...): Python 3.9
        bucket, key = split_uri(uri)
        uploads.append(Upload(bucket, key, version_id=versions[index]))
    return uploads


def record_decision(ledger: UploadLedger, uploads: Iterable[Upload], *, run_id: str, reason: str) -> int:
    """Write the decision to each upload the run holds (the others moved on: skipped); returns how many were written."""
    written = 0
    for upload in uploads:
        try:
            ledger.crawl(upload, run_id=run_id, decision=reason)
            written += 1
        except LedgerConflict as refused:
            LOG.info("crawl decision not recorded: %s", refused)
    return written


def check(event: dict[str, Any], clients: dict[str, Any]) -> dict[str, Any]:
    """The check of one run. Event: database, table, columns, source_uris, source_versions (optional), and ledger
    {TableName, form, ttl_days, run_id} to record the decision on each upload. Answer: {crawl, reason} (and
    `recorded`, with a ledger). `clients`: boto3 clients glue, s3 (and dynamodb, with a ledger)."""
    uploads = uploads_of(event["source_uris"], event.get("source_versions"))
    crawl, reason = crawl_needed(
        clients["glue"], clients["s3"], database=event["database"], table=event["table"], uploads=uploads, columns=event["columns"]
    )
    LOG.info("%d uploads: %s (%s)", len(uploads), "crawl" if crawl else "no crawl", reason)
    answer: dict[str, Any] = {"crawl": crawl, "reason": reason}
    settings = event.get("ledger")
    if settings:
        ledger = UploadLedger(clients["dynamodb"], settings["TableName"], form=settings["form"], ttl_days=int(settings.get("ttl_days", 0)))
        answer["recorded"] = record_decision(ledger, uploads, run_id=settings["run_id"], reason=reason)
    return answer


_CLIENTS: dict[str, Any] = {}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: `check` with the function's clients."""
    import boto3

    logging.getLogger().setLevel(logging.INFO)
    for name in ("glue", "s3", "dynamodb"):
        if name not in _CLIENTS:
            _CLIENTS[name] = boto3.client(name)
    return check(event, _CLIENTS)
