"""The clean transform: contract-driven CSV -> curated Parquet + quarantine, in pure PySpark (no Python UDFs).

Used by the Glue job (`glue_clean_job.py`), the local runner and the tests, on any SparkSession. On Glue this file
and `contract.py` are shipped as top-level modules with --extra-py-files, hence the import fallback below.

Rules (the README documents them from here):

- Files. The header is read by us (first line, up to 64 KiB): a UTF-8 BOM is stripped, names are trimmed and
  matched to the contract case-insensitively, in any order. Unknown header columns are ignored; a missing nullable
  column is null; a missing non-nullable column, a duplicated contract column, no header line, NUL bytes or
  non-UTF-8 bytes in the header reject the whole file: it is copied to `<quarantine>/run_id=<id>/files/` with a
  line in `rejected_files.jsonl`, and the run fails. A header-only file gives zero rows and succeeds. `.gz`
  files are read decompressed, like Spark does.
- Rows. Lines are split on commas; a line holding a double quote is parsed as CSV instead (quotes, quoted commas,
  doubled quotes; spaces or tabs around a quoted value are ignored; a quote inside an unquoted value or text after
  a closing quote makes the line malformed). A quoted value may hold line breaks (RFC 4180): the lines from one
  with an odd number of quotes to the next such line, within MAX_RECORD_LINES, are one record (its line breaks read
  as \n) only when together they parse as exactly one well-formed record of the header's width; otherwise the
  opening line is one malformed line and the lines after it are read on their own. Blank lines (empty or spaces
  only) outside quoted values are not rows.
  Unquoted values are trimmed of spaces; quoted values are kept as they are (the quotes say the spaces are data);
  an empty value is null. A row goes to quarantine with every reason that applies:
  `malformed_row` (wrong field count, unterminated or stray quote), `invalid_utf8` (a value holds U+FFFD, which is what
  undecodable bytes become, so a literal U+FFFD is quarantined too), `null_in_required:<col>`, `cast_failed:<col>`
  (strict text forms: integers are an optional sign and digits, decimals plain ASCII numbers without exponent and
  with no more fraction digits than the scale (no silent rounding), dates are YYYY-MM-DD,
  timestamps ISO-8601 with an optional offset, UTC otherwise), `check_<min|max|allowed_values|pattern|min_length|
  max_length>:<col>`, and `partition_null:<col>` when nothing else explains a null partition value.
- Duplicates. Among the valid rows of one run sharing the natural key, the first by the contract's
  `dedup_order_by` wins, ties going to the row last in the input (last file in the order given, last line).
- Output. Curated: `<curated_root>/run_id=<id>/<partition>=<value>/part-*.snappy.parquet`, columns in
  `contract.output_columns()` order, timestamps as INT64 micros; quarantine:
  `<quarantine_root>/run_id=<id>/rows/part-*.json` (JSON lines: run_id, source_uri, line_number (the record's
  first line, the header is line 1), line_count (its physical lines), reasons, raw_line (the record as read), raw_line_base64 (its exact bytes,
  only when they are not valid UTF-8), raw_values). The curated rows are repartitioned by the partition value
  below ONE_FILE_PER_VALUE_MAX_ROWS rows, so each value is one file.
  Both run directories are replaced on a re-run, so running the same input again does not duplicate anything.
- Conservation. rows_in = rows_out + rows_quarantined + duplicates_dropped, and lines_read = lines_skipped +
  lines_out + lines_quarantined + lines_deduplicated (physical lines), where rows_in and lines_read are counted on
  the parsed lines, the others observed on the plans while they are written (no read-back). A failed equation, a
  rejected file, a quarantine ratio (of lines) above the limit, or a step past its bound (`_Steps`) fail the run.

Cost: the lines are split (or parsed) and checked once into a cache (reasons as bits, and a stage boundary
between reading and checking, so the generated code stays under the JVM's JIT limit). The first action builds the
cache and counts rows per 64-bit hash of the natural key (a shuffle of one long per row); when lines open quoted
values that span lines, only their lines are read again and stitched; the second action counts the rows, writes
the quarantine and counts its reasons; the third writes the curated rows: only the rows of hashes that repeat are
ranked, and the ids of the rows that lose are broadcast to the write, which drops them.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window, functions as F

try:
    from pipeline_constructs.contract import ContractColumn, DatasetContract, decimal_precision_scale
    from pipeline_constructs.runtime.spark_settings import apply_job_settings
except ImportError:  # on Glue, contract.py and spark_settings.py are top-level modules next to this one
    from contract import ContractColumn, DatasetContract, decimal_precision_scale  # type: ignore[no-redef]
    from spark_settings import apply_job_settings  # type: ignore[import-not-found,no-redef]

__all__ = [
    "CleanResult",
    "CleanRunFailed",
    "CleanStepTimedOut",
    "FileHeader",
    "RepeatedKeys",
    "classify",
    "configure_session",
    "deduplicate",
    "deduplicate_valid",
    "inspect_header",
    "is_valid",
    "one_file_per_value",
    "possible_reasons",
    "quarantine_records",
    "read_head",
    "read_source",
    "reason_flags",
    "repeated_key_hashes",
    "run_clean",
]

LOG = logging.getLogger(__name__)

HEAD_BYTES = 64 * 1024
MALFORMED = "_malformed"
KEY_HASH = "_key_hash"
FILE_INDEX = "_file_index"
ROW_ID = "_row_id"
RAW = "_raw"
RAW_LINE = "_raw_line"
LINES = "_lines"
SKIP = "_skip"
ODD = "_odd"
_RAW_PREFIX = "_raw__"
_INVALID_UTF8 = "\ufffd"
_ROW_IN_PARTITION = (1 << 33) - 1  # monotonically_increasing_id: the low 33 bits count rows within a partition

# Strict text forms, checked before the (lenient, non-ANSI) cast: Spark would otherwise accept '1.5' as int 1,
# '2024' as a date, or round '12.345' into decimal(10,2).
_DOUBLE_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_TIMESTAMP_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$"
_BOOLEAN_VALUES = ("true", "false", "t", "f", "yes", "no", "y", "n", "1", "0")

# Quoted CSV (RFC 4180): a field is either "..." with "" for a quote inside, spaces or tabs around it ignored, or
# text without a comma or quote. The loops are written unrolled and possessive so that a very long field does not
# deepen Java's regex recursion. A line holding a quote must be a comma-separated list of such fields.
_QUOTED_VALUE = r'[ \t]*+"[^"]*+(?:""[^"]*+)*+"[ \t]*+'
_QUOTED_FIELD = rf'{_QUOTED_VALUE}|[^,"]*+'
_QUOTED_LINE_RE = rf"^(?:{_QUOTED_FIELD})(?:,(?:{_QUOTED_FIELD}))*+$"
#: A record stitched from several lines: the same, except that an unquoted value holds no line break (RFC 4180:
#: a line break belongs to a quoted value, or ends the record).
_STITCHED_FIELD = rf'{_QUOTED_VALUE}|[^,"\n]*+'
_STITCHED_RECORD_RE = rf"^(?:{_STITCHED_FIELD})(?:,(?:{_STITCHED_FIELD}))*+$"
#: The two ends of a record that spans lines, checked on the driver before anything is read again: the first line
#: is complete fields and then an opened quoted value; the last one closes a quoted value, then complete fields.
_FIELD_PY = rf"(?>{_QUOTED_FIELD})"
_OPENS_RECORD = re.compile(rf'(?:{_FIELD_PY},)*+[ \t]*+"[^"]*+(?:""[^"]*+)*+')
_CLOSES_RECORD = re.compile(rf'[^"]*+(?:""[^"]*+)*+"[ \t]*+(?:,{_FIELD_PY})*+')


class CleanRunFailed(RuntimeError):
    """The run finished its writes but must fail (alarm): see `result.errors`."""

    def __init__(self, result: CleanResult) -> None:
        self.result = result
        super().__init__("; ".join(result.errors))


class CleanStepTimedOut(RuntimeError):
    """A step of the run did not end (or its counts did not arrive) within its bound: the run fails naming it."""

    def __init__(self, step: str, seconds: float, what: str) -> None:
        self.step = step
        self.seconds = seconds
        super().__init__(f"step {step}: {what} within {seconds:.0f} s; the run fails instead of waiting longer")


@dataclass
class FileHeader:
    """What the first line of one source file says: its column names, or why the whole file is rejected."""

    uri: str
    columns: list[str] = field(default_factory=list)
    rejection: str | None = None
    header_line: str = ""


PER_FILE_COUNTS = ("rows_in", "rows_out", "rows_quarantined", "duplicates_dropped", "lines_read", "lines_quarantined")
"""The counts a run of several files keeps per file (`CleanResult.per_file`); each sums to the run's own."""


@dataclass
class CleanResult:
    """Counts and verdict of one run; `summary()` is the JSON summary line."""

    dataset: str
    run_id: str
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    duplicates_dropped: int = 0
    #: physical lines of the accepted files, as Spark's text reader splits them (headers and blank lines included)
    lines_read: int = 0
    #: header lines and blank lines outside quoted values: not rows
    lines_skipped: int = 0
    #: lines of the curated rows, of the quarantine records and of the duplicates dropped (a record that spans
    #: lines counts each of them)
    lines_out: int = 0
    lines_quarantined: int = 0
    lines_deduplicated: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    files_in: int = 0
    rejected_files: list[dict[str, str]] = field(default_factory=list)
    #: in a run of several accepted files, each one's PER_FILE_COUNTS by its source URI (a run of one file has the
    #: run's own counts: empty here)
    per_file: dict[str, dict[str, int]] = field(default_factory=dict)
    max_quarantine_ratio: float = 0.0
    curated_path: str = ""
    quarantine_path: str = ""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: seconds per step (parse_check_and_key_count, quarantine, curated, recount), logged; not part of the summary
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def data_lines(self) -> int:
        """The lines that hold rows: every line read but the header and blank lines."""
        return self.lines_read - self.lines_skipped

    @property
    def quarantine_ratio(self) -> float:
        """Quarantined lines over data lines: a few records spanning many lines cannot hide them."""
        return self.lines_quarantined / self.data_lines if self.data_lines > 0 else 0.0

    @property
    def rows_conserved(self) -> bool:
        return self.rows_in == self.rows_out + self.rows_quarantined + self.duplicates_dropped

    @property
    def lines_conserved(self) -> bool:
        return self.lines_read == self.lines_skipped + self.lines_out + self.lines_quarantined + self.lines_deduplicated

    @property
    def conservation_ok(self) -> bool:
        """Every record and every physical line is in exactly one place."""
        return self.rows_conserved and self.lines_conserved

    def conservation_errors(self) -> list[str]:
        """One message per equation that does not hold, naming its counts."""
        out = []
        if not self.rows_conserved:
            out.append(
                f"conservation failed: rows_in {self.rows_in} != rows_out {self.rows_out} + rows_quarantined "
                f"{self.rows_quarantined} + duplicates_dropped {self.duplicates_dropped}"
            )
        if not self.lines_conserved:
            out.append(
                f"conservation failed: lines_read {self.lines_read} != lines_skipped {self.lines_skipped} + lines_out "
                f"{self.lines_out} + lines_quarantined {self.lines_quarantined} + lines_deduplicated {self.lines_deduplicated}"
            )
        if self.per_file:
            for name in PER_FILE_COUNTS:
                total = sum(counts[name] for counts in self.per_file.values())
                if total != getattr(self, name):
                    out.append(
                        f"per-file counts do not add up: {name} of the {len(self.per_file)} files sum to {total}, the run's is {getattr(self, name)}"
                    )
        return out

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "run_id": self.run_id,
            "status": "succeeded" if self.ok else "failed",
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_quarantined": self.rows_quarantined,
            "duplicates_dropped": self.duplicates_dropped,
            "lines_read": self.lines_read,
            "lines_skipped": self.lines_skipped,
            "lines_out": self.lines_out,
            "lines_quarantined": self.lines_quarantined,
            "lines_deduplicated": self.lines_deduplicated,
            "reasons": dict(sorted(self.reasons.items())),
            "quarantine_ratio": round(self.quarantine_ratio, 6),
            "max_quarantine_ratio": self.max_quarantine_ratio,
            "conservation_ok": self.conservation_ok,
            "files_in": self.files_in,
            "files_rejected": len(self.rejected_files),
            "rejected_files": self.rejected_files,
            "curated_path": self.curated_path,
            "quarantine_path": self.quarantine_path,
            "errors": self.errors,
            "warnings": self.warnings,
        }

    def summary_json(self) -> str:
        return json.dumps(self.summary(), sort_keys=False, separators=(",", ":"))


# ------------------------------------------------------------------------------------------------------ session
def configure_session(spark: SparkSession) -> None:
    """The session settings the transform relies on (`spark_settings.JOB_SETTINGS`, and adaptive execution's
    empty-relation rule excluded): set on the running session, as on Glue, where it exists before the script."""
    apply_job_settings(spark)


# ------------------------------------------------------------------------------------------------------ files
def _jvm(spark: SparkSession) -> Any:
    """The py4j view of the JVM (set once the session runs)."""
    jvm = spark.sparkContext._jvm
    if jvm is None:  # pragma: no cover - a live session always has one
        raise RuntimeError("the SparkContext has no JVM gateway")
    return jvm


def _fs(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    jvm = _jvm(spark)
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def read_head(spark: SparkSession, uri: str, max_bytes: int = HEAD_BYTES) -> bytes:
    """The first `max_bytes` of a file, through Hadoop's FileSystem (s3:// on Glue, local paths elsewhere)."""
    jvm = _jvm(spark)
    fs, path = _fs(spark, uri)
    stream = fs.open(path)
    try:
        if uri.lower().endswith(".gz"):  # Spark reads gzip CSV by extension; read its header the same way
            stream = jvm.java.util.zip.GZIPInputStream(stream)
        bounded = jvm.org.apache.commons.io.input.BoundedInputStream(stream, max_bytes)
        return bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(bounded))
    finally:
        stream.close()


def inspect_header(contract: DatasetContract, uri: str, head: bytes) -> FileHeader:
    """Parse a file's first line and decide whether the file can be read against the contract."""
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    end = head.find(b"\n")
    if end < 0 and len(head) >= HEAD_BYTES - 3:
        return FileHeader(uri, rejection=f"not_csv_text: no line break in the first {HEAD_BYTES} bytes")
    line_bytes = (head if end < 0 else head[:end]).rstrip(b"\r")
    if b"\x00" in head:
        return FileHeader(uri, rejection="not_csv_text: NUL bytes (binary file)")
    try:
        line = line_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return FileHeader(uri, rejection="not_csv_text: header is not UTF-8")
    if not line.strip():
        return FileHeader(uri, rejection="missing_header: the first line is empty", header_line=line)
    try:
        names = [n.strip().lower() for n in next(csv.reader([line]))]
    except csv.Error as exc:
        return FileHeader(uri, rejection=f"not_csv_text: bad header ({exc})", header_line=line)
    known = {c.name for c in contract.columns}
    repeated = sorted({n for n in names if n in known and names.count(n) > 1})
    if repeated:
        return FileHeader(uri, rejection=f"duplicate_header_column: {','.join(repeated)}", header_line=line)
    missing = [n for n in contract.required_columns() if n not in names]
    if missing:
        return FileHeader(uri, rejection=f"missing_required_columns: {','.join(missing)}", header_line=line)
    return FileHeader(uri, columns=names, header_line=line)


def read_source(spark: SparkSession, contract: DatasetContract, header: FileHeader, file_index: int) -> DataFrame:
    """Read one accepted file's lines as strings: one `_raw__<col>` per contract column ('' -> null), `_malformed`
    (wrong field count, unterminated or stray quote), the line itself, the file's index in the run, a row id in
    file order, `_skip` (the header line and blank lines: not rows) and `_odd` (the line holds an odd number of
    quotes: it opens or closes a quoted value that spans lines, see `_stitch_records`).

    Every physical line is a row here (skipped ones flagged), so that the row id's low bits count the lines of its
    split, which gives line numbers and the lines of a record that spans splits.

    Lines are read as text and split on commas; only lines holding a quote character are parsed as quoted CSV,
    with regular expressions (`_QUOTED_LINE_RE`). Both stay inside Spark's generated code: Spark's own CSV
    expression (`from_csv`) has none, and merely having it in the projection took the whole projection out of
    the generated stage, even though it ran on no line of the benchmark: reading and checking 5 million lines
    took 13.0 s with it and 11.9 s without."""
    return _parse_lines(_read_lines(spark, header.uri), contract, header, file_index)


def _read_lines(spark: SparkSession, uri: str) -> DataFrame:
    """A file's physical lines: the text (Spark keeps the bytes as they were, whatever their encoding), the row id,
    `_skip` and `_odd`."""
    numbered = spark.read.text(uri).select(
        F.col("value").alias(RAW_LINE),
        F.monotonically_increasing_id().alias(ROW_ID),
        F.input_file_block_start().alias("_block_start"),
    )
    # The header is the first line of the file's first split. A split that starts the file always opens its own
    # partition (it is the largest split, or the only one), and the row id counts rows within the partition.
    is_header = (F.col("_block_start") == 0) & (F.col(ROW_ID).bitwiseAND(_ROW_IN_PARTITION) == 0)
    line = F.col(RAW_LINE)
    # Counting the quotes builds a copy of the line (translate); most lines have none, and a byte search says so.
    odd = line.contains('"') & (((F.length(line) - F.length(F.translate(line, '"', ""))) % 2) == 1)
    return numbered.select(line, F.col(ROW_ID), (is_header | (F.trim(line) == "")).alias(SKIP), odd.alias(ODD))


def _lines_kept(frame: DataFrame) -> list[Column]:
    """`_lines` (how many physical lines a stitched record holds) where the frame has it; a line read on its own
    has none, and counts as one (see `_with_lines`)."""
    return [F.col(LINES)] if LINES in frame.columns else []


def _line_count(frame: DataFrame) -> Column:
    """How many physical lines each row of `frame` holds: `_lines` where the frame has it, else 1."""
    return F.col(LINES) if LINES in frame.columns else F.lit(1)


def _with_lines(frame: DataFrame) -> DataFrame:
    """`frame` with `_lines`: 1 for every row that has none (a physical line read on its own)."""
    return frame if LINES in frame.columns else frame.withColumn(LINES, F.lit(1))


def _parse_lines(lines: DataFrame, contract: DatasetContract, header: FileHeader, file_index: int, *, stitched: bool = False) -> DataFrame:
    """Split (or parse) `_read_lines`' rows (or, with `stitched`, records stitched from several lines: then an
    unquoted value may not hold a line break) against the file's header."""
    n = len(header.columns)
    quoted = F.col(RAW_LINE).contains('"')
    record_re = _STITCHED_RECORD_RE if stitched else _QUOTED_LINE_RE
    # Split (or parse) in a projection of its own, so each runs once per line (not once per field).
    tokens = lines.select(
        F.col(RAW_LINE),
        F.col(ROW_ID),
        F.col(SKIP),
        F.col(ODD),
        *_lines_kept(lines),
        quoted.alias("_quoted"),
        F.when(quoted, _quoted_fields(F.col(RAW_LINE))).otherwise(F.split(F.col(RAW_LINE), ",")).alias("_fields"),
    )
    fields = F.col("_fields")
    position = {name: i for i, name in enumerate(header.columns)}
    cols = []
    for col in contract.columns:
        if col.name in position:
            value = fields[position[col.name]]
            # Unquoted values are trimmed of spaces; a quoted value is kept as it is (_quoted_fields trims only
            # unquoted fields of a quoted line).
            cols.append(F.when(F.col("_quoted"), value).otherwise(F.trim(value)).alias(_RAW_PREFIX + col.name))
        else:
            cols.append(F.lit(None).cast("string").alias(_RAW_PREFIX + col.name))
    malformed = (F.size(fields) != n) | (F.col("_quoted") & ~F.col(RAW_LINE).rlike(record_re))
    trimmed = tokens.select(
        *cols, malformed.alias(MALFORMED), F.col(RAW_LINE), F.col(ROW_ID), F.col(SKIP), F.col(ODD), *_lines_kept(tokens)
    )
    return trimmed.select(
        *[F.when(F.col(_RAW_PREFIX + c.name) != "", F.col(_RAW_PREFIX + c.name)).alias(_RAW_PREFIX + c.name) for c in contract.columns],
        F.col(MALFORMED),
        F.col(RAW_LINE),
        F.lit(file_index).alias(FILE_INDEX),
        F.col(ROW_ID),
        F.col(SKIP),
        F.col(ODD),
        *_lines_kept(trimmed),
    )


#: One field of a quoted line after the fields were joined with NUL: a quoted value (group 1: its text, quotes and
#: the spaces or tabs around them dropped) or an unquoted one (group 2: its text, the spaces around it dropped).
#: A NUL inside a value adds a field, so the field count catches it.
_JOINED_FIELD_RE = '(?:^|(?<=\u0000))(?:[ \t]*+"([^"]*+(?:""[^"]*+)*+)"[ \t]*+| *+([^"\u0000 ]*+(?: ++[^"\u0000 ]++)*+) *+)(?=\u0000|$)'


def _quoted_fields(line: Column) -> Column:
    """The values of a line holding a quote (meaningful where `_QUOTED_LINE_RE` holds): every field, each after
    a comma put in front of the line, joined with NUL, unquoted (or trimmed when not quoted) and "" read as one
    quote in two replacements, then split again. Quoted values may hold line breaks (a stitched record). One
    array for the whole line keeps the generated code per column as small as for a plain split."""
    fields = F.regexp_extract_all(F.concat(F.lit(","), line), F.lit(f",({_QUOTED_FIELD})"), F.lit(1))
    unquoted = F.regexp_replace(F.array_join(fields, "\u0000"), _JOINED_FIELD_RE, "$1$2")
    return F.split(F.regexp_replace(unquoted, '""', '"'), "\u0000")


# ------------------------------------------------------------------------------------------------------ rows
# Internally a row's reasons are bits of long columns `_reasons_<k>` (62 reasons each, bit i of the list that
# `possible_reasons` returns) and `_ok` says whether none is set. Integer bit operations keep the generated code
# small: string concatenation of ~30 CASE WHENs made a method the JVM refuses to JIT-compile, and ran ~3x slower.
_TYPED_PREFIX = "_typed__"
_BITS = 62
OK = "_ok"


def _shape(col: ContractColumn, raw: Column) -> Column | None:
    """The strict text form a value must have before the (lenient) cast; None for strings."""
    t = col.type
    ps = decimal_precision_scale(t)
    if t == "string":
        return None
    # Integers and decimals are checked with byte searches instead of a regex (the shape regexes were about a
    # quarter of the check cost); the cast then rejects anything else that is not a number.
    if t in ("int", "bigint"):
        # the non-ANSI cast truncates '1.5' to 1; without a '.' it accepts only an optional sign and digits
        return ~raw.contains(".")
    if t == "double":
        return raw.rlike(_DOUBLE_RE)
    if ps is not None:
        # the cast (Java BigDecimal) would round extra fraction digits, read exponents and non-ASCII digits
        scale = ps[1]
        dot = F.instr(raw, ".")
        ascii_only = F.length(raw) == F.octet_length(raw)
        return ascii_only & ~raw.contains("e") & ~raw.contains("E") & ((dot == 0) | (F.length(raw) - dot <= scale))
    if t == "date":
        return raw.rlike(_DATE_RE)
    if t == "timestamp":
        return raw.rlike(_TIMESTAMP_RE)
    if t == "boolean":
        return F.lower(raw).isin(*_BOOLEAN_VALUES)
    raise ValueError(f"unsupported type {t}")  # pragma: no cover - the contract only admits the types above


def _castable(col: ContractColumn, raw: Column) -> Column:
    """The value as it is handed to the cast: a trailing 'Z' on a timestamp is dropped, since a value without an
    offset is read in the session time zone, UTC; Spark would otherwise resolve the zone 'Z' on every row, which
    compiles two regexes each time."""
    if col.type == "timestamp":
        return F.when(raw.endswith("Z"), raw.substr(F.lit(1), F.length(raw) - 1)).otherwise(raw)
    return raw


def _column_conditions(col: ContractColumn, typed: Column, raw: Column) -> list[tuple[str, Column]]:
    """(reason, condition) pairs of one column, in `possible_reasons` order."""
    out: list[tuple[str, Column]] = []
    if not col.nullable:
        out.append((f"null_in_required:{col.name}", raw.isNull()))
    if col.type != "string":
        out.append((f"cast_failed:{col.name}", raw.isNotNull() & typed.isNull()))
    checks = col.checks

    def check(kind: str, cond: Column) -> None:
        # A null value makes `cond` null, which counts as false (checks apply to values that are there).
        out.append((f"check_{kind}:{col.name}", cond))

    if checks.min is not None:
        check("min", typed < F.lit(checks.min).cast(col.type))
    if checks.max is not None:
        check("max", typed > F.lit(checks.max).cast(col.type))
    if checks.allowed_values is not None:
        check("allowed_values", ~typed.isin(*[F.lit(v).cast(col.type) for v in checks.allowed_values]))
    if checks.pattern is not None:
        check("pattern", ~raw.rlike(checks.pattern))
    if checks.min_length is not None:
        check("min_length", F.length(typed) < checks.min_length)
    if checks.max_length is not None:
        check("max_length", F.length(typed) > checks.max_length)
    return out


def possible_reasons(contract: DatasetContract) -> list[str]:
    """Every row-level reason this contract can produce, in bit order (also for documentation and metrics)."""
    out = ["malformed_row", "invalid_utf8", f"partition_null:{contract.partition.name}"]
    for col in contract.columns:
        out += [name for name, _ in _column_conditions(col, F.lit(None), F.lit(None))]
    return out + [f"cast_failed:{der.name}" for der in contract.derived if not der.nullable]


def _reason_columns(contract: DatasetContract) -> list[str]:
    return [f"_reasons_{k}" for k in range((len(possible_reasons(contract)) + _BITS - 1) // _BITS)]


def _bit(cond: Column, index: int) -> Column:
    return F.shiftleft(F.coalesce(cond, F.lit(False)).cast("long"), index % _BITS)


def _any_bit(bits: list[Column]) -> Column:
    out = F.lit(0).cast("long")
    for b in bits:
        out = out.bitwiseOR(b)
    return out


def classify(raw: DataFrame, contract: DatasetContract) -> DataFrame:
    """`_classify` (below) behind a barrier for filters. A filter on `_ok` (or on any reason) must stay above the
    checks: pushed down through their projections, it would inline every check into its condition, each as often
    as it is referenced (the plan grew 35x, and a one-pass write of the valid rows took 183 s instead of 21 s at
    5M rows). The optimizer pushes no filter through a sample, and a sample of every row passes every row.
    `run_clean` caches `_classify` instead, which is a barrier too (a sample above the cache made reading it
    slower)."""
    return _classify(raw, contract).sample(withReplacement=False, fraction=1.0, seed=0)


def _classify(raw: DataFrame, contract: DatasetContract) -> DataFrame:
    """Typed columns, derived columns, the partition column, `_ok` (no reason applies) and the reason bits; the raw
    values are kept, as `_raw` (an array in contract column order), only on rows with reasons; `_raw_line` is the
    line of a malformed row.

    Built as successive projections so that each cast and regex runs once per value (Spark keeps a projection
    apart when collapsing it would repeat an expensive expression)."""
    # A stage boundary between reading and checking: fused into one, the generated method passed the JVM's
    # 8000-byte JIT limit and Spark fell back to row-by-row projections, half as fast. coalesce() to the same
    # number of partitions moves no data.
    raw = raw.coalesce(max(1, raw.rdd.getNumPartitions()))
    raws = {c.name: F.col(_RAW_PREFIX + c.name) for c in contract.columns}
    meta = [F.col(MALFORMED), F.col(RAW_LINE), F.col(FILE_INDEX), F.col(ROW_ID), F.col(SKIP), F.col(ODD), *_lines_kept(raw)]
    chunks = _reason_columns(contract)

    # 1. cast each value once, null when the text form is wrong or the cast fails
    typed_exprs = []
    for col in contract.columns:
        shape = _shape(col, raws[col.name])
        if shape is not None:
            typed_exprs.append(F.when(shape, _castable(col, raws[col.name]).cast(col.type)).alias(_TYPED_PREFIX + col.name))
    # Values were decoded from UTF-8 when split or parsed, which made undecodable bytes U+FFFD; a malformed
    # line's values may not cover the line, so it is decoded whole.
    line_bad = F.decode(F.col(RAW_LINE).cast("binary"), "UTF-8").contains(_INVALID_UTF8)
    bad_bytes = F.col(MALFORMED) & line_bad
    for r in raws.values():
        bad_bytes = bad_bytes | r.contains(_INVALID_UTF8)
    stage1 = raw.select(*raws.values(), *meta, *typed_exprs, bad_bytes.alias("_bad_bytes"))
    bad_bytes = F.col("_bad_bytes")

    # 2. the reasons, from raw and typed values, as bits
    out_cols: list[Column] = []
    bits: list[list[Column]] = [[] for _ in chunks]
    index = 3  # after malformed_row, invalid_utf8, partition_null
    for col in contract.columns:
        typed = raws[col.name] if col.type == "string" else F.col(_TYPED_PREFIX + col.name)
        out_cols.append(typed.alias(col.name))
        for _, cond in _column_conditions(col, typed, raws[col.name]):
            bits[index // _BITS].append(_bit(cond, index))
            index += 1
    malformed = F.col(MALFORMED)
    # A malformed row's values are misaligned: report only that (and bad bytes), not the checks they then fail.
    chunk_exprs = [
        F.when(malformed, F.lit(1 if k == 0 else 0).cast("long") + (_bit(bad_bytes, 1) if k == 0 else F.lit(0)))
        .otherwise(_any_bit([_bit(bad_bytes, 1), *bits[0]] if k == 0 else bits[k]))
        .alias(name)
        for k, name in enumerate(chunks)
    ]
    stage2 = stage1.select(*out_cols, *chunk_exprs, *raws.values(), *meta)

    # 3. derived columns (in order: each may use the ones before it), then the partition column
    for der in contract.derived:
        stage2 = stage2.withColumn(der.name, F.expr(der.expression).cast(der.type))
    part = contract.partition
    stage3 = stage2.withColumn(part.name, F.expr(part.expression).cast(part.type))

    # 4. on a row with no other reason, a derived column the contract does not let be null that is null (the
    # expression gave NULL, or a value its type cannot hold) is `cast_failed:<derived>`, and a null partition value
    # is `partition_null:<partition>`; keep raw values of bad rows only
    none = F.lit(True)
    for name in chunks:
        none = none & (F.col(name) == 0)
    extra: list[tuple[int, Column]] = []
    index = len(possible_reasons(contract)) - sum(1 for der in contract.derived if not der.nullable)
    derived_ok: Column = F.lit(True)
    for der in contract.derived:
        if not der.nullable:
            extra.append((index, none & F.col(der.name).isNull()))
            derived_ok = derived_ok & F.col(der.name).isNotNull()
            index += 1
    extra.append((2, none & derived_ok & F.col(part.name).isNull()))
    fixed: list[Column | str] = [
        _any_bit([F.col(name), *[_bit(cond, i) for i, cond in extra if i // _BITS == k]]).alias(name) for k, name in enumerate(chunks)
    ]
    names = [n for n, _ in contract.output_columns()] + [part.name]
    stage4 = stage3.select(*names, *fixed, *raws.values(), *meta)
    ok = F.lit(True)
    for name in chunks:
        ok = ok & (F.col(name) == 0)
    # The header and blank lines are not rows: `_ok` is NULL, so neither filter on it (valid, not valid) keeps them.
    ok = F.when(~F.col(SKIP), ok)
    stage5 = stage4.select(*names, ok.alias(OK), *chunks, *raws.values(), *meta)
    # (an array, not a map: the map's code would push the method above the JIT limit; names are added later)
    raw_values = F.when(~is_valid(), F.array(*raws.values()))
    key_hash = F.xxhash64(*[F.col(k) for k in contract.natural_key])
    return stage5.select(
        *names,
        OK,
        *chunks,
        F.when(~is_valid(), F.col(RAW_LINE)).alias(RAW_LINE),
        raw_values.alias(RAW),
        key_hash.alias(KEY_HASH),
        FILE_INDEX,
        ROW_ID,
        ODD,
        *_lines_kept(stage5),
    )


def is_valid() -> Column:
    """True for a classified row without reasons (NULL for the header and blank lines, which are not rows: filter
    on `is_valid()` or `~is_valid()`, never on `is_valid().isNull()`-blind conditions such as a count of all)."""
    return F.col(OK)


def reason_flags(contract: DatasetContract) -> list[tuple[str, Column]]:
    """(reason, 0/1 long column) for every possible reason of a classified row."""
    chunks = _reason_columns(contract)
    return [(name, F.shiftright(F.col(chunks[i // _BITS]), i % _BITS).bitwiseAND(1)) for i, name in enumerate(possible_reasons(contract))]


def quarantine_records(
    classified: DataFrame,
    run_id: str,
    contract: DatasetContract,
    source_uris: list[str],
    line_offsets: dict[tuple[int, int], int] | None = None,
) -> DataFrame:
    """The quarantined rows as they are written: run_id, source_uri, line_number (the record's first line in the
    file, the header being line 1), line_count (the physical lines it holds: more than 1 only for a record whose
    quoted values hold line breaks), reasons, raw_line (the record as text; undecodable bytes read as U+FFFD),
    raw_line_base64 (the record's exact bytes, set only when they are not valid UTF-8), raw_values.

    `line_offsets` maps (file index, split index) to the number of lines in that file's earlier splits (see
    `line_offsets`); without it every file is taken as read in one split."""
    reasons = F.array_compact(F.array(*[F.when(flag == 1, F.lit(name)) for name, flag in reason_flags(contract)]))
    source_uri = F.element_at(F.array(*[F.lit(u) for u in source_uris]), F.col(FILE_INDEX) + 1)
    line_in_split = F.col(ROW_ID).bitwiseAND(_ROW_IN_PARTITION) + 1
    offsets = {k: v for k, v in (line_offsets or {}).items() if v}
    if offsets:
        split_key = F.col(FILE_INDEX).cast("long") * (1 << 31) + F.shiftright(F.col(ROW_ID), 33)
        lookup = F.create_map(*[F.lit(part) for (f, p), v in sorted(offsets.items()) for part in (f * (1 << 31) + p, v)])
        line_in_split = line_in_split + F.coalesce(F.element_at(lookup, split_key), F.lit(0))
    raw_bytes = F.col(RAW_LINE).cast("binary")
    not_utf8 = F.decode(raw_bytes, "UTF-8").contains(_INVALID_UTF8)
    line_count = _line_count(classified)
    return classified.filter(~is_valid()).select(
        F.lit(run_id).alias("run_id"),
        source_uri.alias("source_uri"),
        line_in_split.alias("line_number"),
        line_count.cast("int").alias("line_count"),
        reasons.alias("reasons"),
        F.col(RAW_LINE).alias("raw_line"),
        F.when(not_utf8, F.base64(raw_bytes)).alias("raw_line_base64"),
        F.map_from_arrays(F.array(*[F.lit(c.name) for c in contract.columns]), F.col(RAW)).alias("raw_values"),
    )


def split_line_counts(classified: DataFrame) -> dict[tuple[int, int], int]:
    """{(file index, split index): physical lines in that split}, from the row ids of the classified lines (each
    physical line has one; its low 33 bits count the lines of its split)."""
    rows = (
        classified.groupBy(F.col(FILE_INDEX).alias("f"), F.shiftright(F.col(ROW_ID), 33).alias("p"))
        .agg((F.max(F.col(ROW_ID).bitwiseAND(_ROW_IN_PARTITION)) + 1).alias("n"))
        .collect()
    )
    return {(int(r["f"]), int(r["p"])): int(r["n"]) for r in rows}


def line_offsets(counts: dict[tuple[int, int], int]) -> dict[tuple[int, int], int]:
    """{(file index, split index): lines of that file before the split}, from `split_line_counts`."""
    out: dict[tuple[int, int], int] = {}
    seen: dict[int, int] = {}
    for (f, p), n in sorted(counts.items()):
        out[(f, p)] = seen.get(f, 0)
        seen[f] = seen.get(f, 0) + n
    return out


#: A quoted value may span at most this many lines; an opening quote not closed within them is a stray quote, and
#: its line is malformed on its own (so one bad line cannot swallow the rest of a file).
MAX_RECORD_LINES = 1000


def _record_spans(odd_lines: list[tuple[int, str]], offsets: dict[int, int]) -> list[tuple[int, int]]:
    """The candidate records that span lines in one file: each pair of consecutive lines with an odd number of
    quotes (row id, text; in file order) whose first line opens a quoted value after complete fields, whose last
    line closes one before complete fields, within MAX_RECORD_LINES lines. A record that spans lines always runs
    from one such line to the next (the lines between start and end inside a quoted value: an even number of
    quotes each). Whether a candidate is one valid record is decided on its stitched text (`_choose_records`).
    `offsets` maps a split index to its first line number."""

    def line(row_id: int) -> int:
        return offsets.get(row_id >> 33, 0) + (row_id & _ROW_IN_PARTITION)

    return [
        (first, last)
        for (first, opening), (last, closing) in zip(odd_lines, odd_lines[1:], strict=False)
        if line(last) - line(first) < MAX_RECORD_LINES and _OPENS_RECORD.fullmatch(opening) and _CLOSES_RECORD.fullmatch(closing)
    ]


def _choose_records(odd_ids: list[int], well_formed: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """The records that span lines, in one file: walking its odd lines in order, a line and the next one are one
    record when their stitched text is one well-formed record of the header's width (`well_formed`); otherwise the
    line is one malformed line on its own and the walk goes on from the next line, as if it were not there."""
    chosen: list[tuple[int, int]] = []
    i = 0
    while i < len(odd_ids) - 1:
        if (odd_ids[i], odd_ids[i + 1]) in well_formed:
            chosen.append((odd_ids[i], odd_ids[i + 1]))
            i += 2
        else:
            i += 1
    return chosen


def _span_members(span: tuple[int, int], offsets: dict[int, int], split_lines: dict[int, int]) -> list[int]:
    """The row ids of every line from span[0] to span[1], across splits (ids are contiguous within a split)."""
    first, last = span
    out: list[int] = []
    split = first >> 33
    index = first & _ROW_IN_PARTITION
    while True:
        end = (last & _ROW_IN_PARTITION) if split == last >> 33 else split_lines.get(split, 0) - 1
        out += [(split << 33) + k for k in range(index, end + 1)]
        if split >= last >> 33:
            return out
        split, index = split + 1, 0


def _ranked(valid: DataFrame, contract: DatasetContract, observation: Observation | None) -> DataFrame:
    """`valid` with `_rank`: 1 for the row each natural key keeps (the contract's rule), 2.. for the others; when
    `observation` is given it counts the others as `dups` during the action that consumes the result."""
    order: list[Column] = []
    for o in contract.dedup_order_by:
        order.append(F.col(o.column).desc_nulls_last() if o.descending else F.col(o.column).asc_nulls_last())
    order += [F.col(FILE_INDEX).desc(), F.col(ROW_ID).desc()]
    window = Window.partitionBy(*[F.col(k) for k in contract.natural_key]).orderBy(*order)
    ranked = valid.withColumn("_rank", F.row_number().over(window))
    if observation is not None:
        dropped = F.col("_rank") > 1
        ranked = ranked.observe(
            observation,
            F.coalesce(F.sum(dropped.cast("long")), F.lit(0)).alias("dups"),
            F.coalesce(F.sum(F.when(dropped, _line_count(valid))), F.lit(0)).alias("dup_lines"),
        )
    return ranked


def deduplicate(valid: DataFrame, contract: DatasetContract, observation: Observation | None = None) -> DataFrame:
    """Keep one row per natural key (the contract's rule); when `observation` is given it counts, during the
    action that consumes the result, the rows dropped as `duplicates_dropped`."""
    return _ranked(valid, contract, observation).filter(F.col("_rank") == 1).drop("_rank")


#: Up to this many repeated key hashes, only the rows of those hashes are ranked (the hashes are broadcast, the
#: other rows pass through without a shuffle); above it every valid row is ranked.
DUPLICATE_KEYS_BROADCAST_LIMIT = 200_000
#: Up to this many rows carrying repeated key hashes, the rows to drop are broadcast (two ids each) to the write;
#: above it (one key repeated a million times, say) every valid row is ranked.
DUPLICATE_ROWS_BROADCAST_LIMIT = 1_000_000


@dataclass(frozen=True)
class RepeatedKeys:
    """The 64-bit natural-key hashes that occur more than once among a run's valid rows, and how many rows carry
    them (the rows that are ranked)."""

    hashes: list[int]
    rows: int


def repeated_key_hashes(valid: DataFrame) -> RepeatedKeys | None:
    """The natural-key hashes (the `_key_hash` column) that occur more than once among `valid`: a count per hash,
    which shuffles one long per row instead of the key itself. Two distinct keys may share a hash; that only sends
    their rows through the exact ranking. None when more than DUPLICATE_KEYS_BROADCAST_LIMIT hashes repeat."""
    counted = valid.groupBy(KEY_HASH).count().filter(F.col("count") > 1)
    found = counted.limit(DUPLICATE_KEYS_BROADCAST_LIMIT + 1).collect()
    if len(found) > DUPLICATE_KEYS_BROADCAST_LIMIT:
        return None
    return RepeatedKeys([int(r[KEY_HASH]) for r in found], sum(int(r["count"]) for r in found))


def deduplicate_valid(valid: DataFrame, contract: DatasetContract, repeated: RepeatedKeys | None) -> tuple[DataFrame, Observation | None]:
    """De-duplicate a run's valid rows given `repeated_key_hashes`: with no repeated hash, the rows pass as they
    are; with few, only the rows of those hashes are ranked (by the real key), and the rows that lose are dropped
    from the others by a broadcast anti-join on their file index and row id, so the written rows come from one
    scan and no shuffle; with many (None, or more than DUPLICATE_ROWS_BROADCAST_LIMIT rows), every row is ranked.

    Returns (rows to write, observation counting `dups` while they are written, or None when none can be)."""
    if repeated is not None and not repeated.hashes:
        return valid, None
    observation = Observation("dedup")
    if repeated is None or repeated.rows > DUPLICATE_ROWS_BROADCAST_LIMIT:
        return deduplicate(valid, contract, observation), observation
    losers = _losers(_ranked(_rows_of_repeated_keys(valid, repeated), contract, observation))
    return valid.join(F.broadcast(losers), [FILE_INDEX, ROW_ID], "left_anti"), observation


def _rows_of_repeated_keys(valid: DataFrame, repeated: RepeatedKeys) -> DataFrame:
    """The rows of `valid` whose key hash repeats (the hashes broadcast): the only rows a ranking can drop."""
    hashes = F.broadcast(valid.sparkSession.createDataFrame([(h,) for h in repeated.hashes], f"`{KEY_HASH}` BIGINT"))
    return valid.join(hashes, KEY_HASH, "left_semi")


def _losers(ranked: DataFrame) -> DataFrame:
    """(file index, row id) of the ranked rows that de-duplication drops."""
    return ranked.filter(F.col("_rank") > 1).select(FILE_INDEX, ROW_ID)


def per_file_counts(
    rows: DataFrame, contract: DatasetContract, repeated: RepeatedKeys | None, files: dict[int, str]
) -> dict[str, dict[str, int]]:
    """Each accepted file's counts (PER_FILE_COUNTS) by its URI, from the run's classified rows (`_lines` each):
    one grouped pass over the cached rows, and the rows de-duplication drops, chosen by the same ranking as
    `deduplicate_valid` (a duplicate counts in the file whose row was dropped). rows_out is a file's valid rows less
    its dropped ones; `CleanResult.conservation_errors` checks that the files' sums equal the run's written counts."""
    bad = ~is_valid()
    grouped = {
        int(r[FILE_INDEX]): r
        for r in rows.groupBy(FILE_INDEX)
        .agg(
            F.count(F.col(OK)).alias("rows_in"),
            F.coalesce(F.sum(bad.cast("long")), F.lit(0)).alias("rows_quarantined"),
            F.coalesce(F.sum(F.col(LINES)), F.lit(0)).alias("lines_read"),
            F.coalesce(F.sum(F.when(bad, F.col(LINES))), F.lit(0)).alias("lines_quarantined"),
        )
        .collect()
    }
    dropped: dict[int, int] = {}
    if repeated is None or repeated.hashes:
        valid = rows.filter(is_valid())
        candidates = (
            valid if repeated is None or repeated.rows > DUPLICATE_ROWS_BROADCAST_LIMIT else _rows_of_repeated_keys(valid, repeated)
        )
        losers = _losers(_ranked(candidates, contract, None)).groupBy(FILE_INDEX).count().collect()
        dropped = {int(r[FILE_INDEX]): int(r["count"]) for r in losers}
    out: dict[str, dict[str, int]] = {}
    for index, uri in files.items():
        found = grouped.get(index)
        rows_in, quarantined = (int(found["rows_in"]), int(found["rows_quarantined"])) if found else (0, 0)
        lines_read, lines_quarantined = (int(found["lines_read"]), int(found["lines_quarantined"])) if found else (0, 0)
        duplicates = dropped.get(index, 0)
        out[uri] = {
            "rows_in": rows_in,
            "rows_out": rows_in - quarantined - duplicates,
            "rows_quarantined": quarantined,
            "duplicates_dropped": duplicates,
            "lines_read": lines_read,
            "lines_quarantined": lines_quarantined,
        }
    return out


# ------------------------------------------------------------------------------------------------------ run
def _short_error(exc: Exception) -> str:
    """One line for an exception, the Java one when it comes through py4j."""
    java = getattr(exc, "java_exception", None)
    text = str(java.toString()) if java is not None else f"{type(exc).__name__}: {exc}"
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _write_text(spark: SparkSession, uri: str, text: str) -> None:
    fs, path = _fs(spark, uri)
    out = fs.create(path, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def _run_dir(root: str, run_id: str) -> str:
    return f"{root.rstrip('/')}/run_id={run_id}"


def run_clean(
    spark: SparkSession,
    contract: DatasetContract,
    source_uris: list[str],
    run_id: str,
    curated_root: str,
    quarantine_root: str,
    max_quarantine_ratio: float = 0.05,
    step_bound_seconds: float | None = None,
) -> CleanResult:
    """Clean one run's files: write curated Parquet and quarantine, count records and lines, check conservation
    and the quarantine ratio (of lines). Returns the result (its `errors` say why the run must fail); never raises
    for bad data.

    :param step_bound_seconds: the most one step may take before the run fails naming it. Default:
        `default_step_bound(input bytes)`, proportional to the input.
    """
    if not source_uris:
        raise ValueError("source_uris is empty")
    if not 0.0 <= max_quarantine_ratio <= 1.0:
        raise ValueError(f"max_quarantine_ratio must be within 0..1, got {max_quarantine_ratio!r}")
    if step_bound_seconds is not None and not step_bound_seconds > 0:
        raise ValueError(f"step_bound_seconds must be above 0, got {step_bound_seconds!r}")
    configure_session(spark)
    curated_dir = _run_dir(curated_root, run_id)
    quarantine_dir = _run_dir(quarantine_root, run_id)
    result = CleanResult(
        dataset=contract.name,
        run_id=run_id,
        files_in=len(source_uris),
        max_quarantine_ratio=max_quarantine_ratio,
        curated_path=curated_dir,
        quarantine_path=quarantine_dir,
    )

    # Start the run's quarantine afresh (the curated run dir is replaced by the overwrite below).
    q_fs, q_path = _fs(spark, quarantine_dir)
    if q_fs.exists(q_path):
        q_fs.delete(q_path, True)

    frames: list[DataFrame] = []
    headers: dict[int, FileHeader] = {}
    input_bytes = 0
    for index, uri in enumerate(source_uris):
        try:
            header = inspect_header(contract, uri, read_head(spark, uri))
            input_bytes += _input_size(spark, uri)
        except Exception as exc:  # noqa: BLE001 - unreadable object: reject it, keep going, fail the run
            header = FileHeader(uri, rejection=f"unreadable: {_short_error(exc)}")
        if header.rejection is None:
            frames.append(read_source(spark, contract, header, index))
            headers[index] = header
            continue
        target = f"{quarantine_dir}/files/{index:05d}_{uri.rstrip('/').rsplit('/', 1)[-1]}"
        try:
            if header.rejection.startswith("unreadable"):
                raise OSError("the object could not be read")
            jvm = _jvm(spark)
            src_fs, src_path = _fs(spark, uri)
            dst_fs, dst_path = _fs(spark, target)
            conf = spark.sparkContext._jsc.hadoopConfiguration()
            jvm.org.apache.hadoop.fs.FileUtil.copy(src_fs, src_path, dst_fs, dst_path, False, conf)
        except Exception as exc:  # noqa: BLE001 - best effort: the rejection line still records the file
            LOG.warning("could not copy rejected file %s to quarantine: %s", uri, _short_error(exc))
            target = ""
        result.rejected_files.append({"source_uri": uri, "reason": header.rejection, "header": header.header_line[:1000], "copy": target})
        result.errors.append(f"file rejected: {uri}: {header.rejection}")
    if result.rejected_files:
        lines = [json.dumps({"run_id": run_id, **r}, sort_keys=True) for r in result.rejected_files]
        _write_text(spark, f"{quarantine_dir}/files/rejected_files.jsonl", "\n".join(lines) + "\n")

    if frames:
        raw = frames[0]
        for frame in frames[1:]:
            raw = raw.unionByName(frame)
        bound = step_bound_seconds if step_bound_seconds is not None else default_step_bound(input_bytes)
        try:
            _clean_rows(
                spark,
                contract,
                raw,
                headers,
                source_uris,
                run_id,
                curated_dir,
                quarantine_dir,
                result,
                _Steps(spark, bound, result.timings),
            )
        except CleanStepTimedOut as exc:
            result.errors.append(str(exc))
            return result
    else:
        _empty_curated(spark, contract, curated_dir)

    result.errors.extend(result.conservation_errors())
    counted = (
        f"{result.lines_quarantined} of {result.data_lines} data lines quarantined ({result.rows_quarantined} of {result.rows_in} records)"
    )
    if result.quarantine_ratio > max_quarantine_ratio:
        result.errors.append(
            f"quarantine ratio {result.quarantine_ratio:.4f} is above the limit {max_quarantine_ratio}: {counted};"
            " fix the export, or raise max_quarantine_ratio if this share is expected"
        )
    elif result.lines_quarantined:
        result.warnings.append(f"{counted}; ratio {result.quarantine_ratio:.4f}, limit {max_quarantine_ratio}")
    return result


def _input_size(spark: SparkSession, uri: str) -> int:
    """A file's size in bytes for the step bound (a gzip file counts ten times its size)."""
    fs, path = _fs(spark, uri)
    size = int(fs.getFileStatus(path).getLen())
    return size * 10 if uri.lower().endswith(".gz") else size


#: Up to this many rows in a run, the curated rows are repartitioned by the partition value before the write, so
#: each value is one file (instead of one per input split); above it each task writes its own files.
ONE_FILE_PER_VALUE_MAX_ROWS = 20_000_000


def one_file_per_value(rows: DataFrame, partition: str) -> DataFrame:
    """`rows` laid out so that a write partitioned by `partition` writes one file per value: each value's rows
    in one task (a shuffle by the value)."""
    return rows.repartition(F.col(partition))


def _clean_rows(
    spark: SparkSession,
    contract: DatasetContract,
    raw: DataFrame,
    headers: dict[int, FileHeader],
    source_uris: list[str],
    run_id: str,
    curated_dir: str,
    quarantine_dir: str,
    result: CleanResult,
    steps: _Steps,
) -> None:
    classified = _classify(raw, contract).persist()
    cached: list[DataFrame] = [classified]
    try:
        # The first action builds the cache, finds the key hashes that repeat among the valid rows and counts the
        # physical lines and those that open or close a quoted value spanning lines.
        with steps.step("parse_check_and_key_count"):
            first = Observation("lines")
            counted = classified.observe(
                first,
                F.count(F.lit(1)).alias("lines"),
                F.coalesce(F.sum(F.col(ODD).cast("long")), F.lit(0)).alias("odd"),
                F.coalesce(F.max(F.shiftright(F.col(ROW_ID), 33)), F.lit(0)).alias("max_split"),
            )
            repeated = repeated_key_hashes(counted.filter(is_valid()))
        read = steps.metrics(first, "parse_check_and_key_count")
        result.lines_read = int(read["lines"])
        odd, max_split = int(read["odd"]), int(read["max_split"])

        rows = classified
        offsets: dict[tuple[int, int], int] = {}
        if max_split > 0 or odd > 1:
            with steps.step("stitch_records"):
                counts = split_line_counts(classified)
                offsets = line_offsets(counts)
                found = _stitch_records(spark, contract, classified, headers, counts, offsets) if odd > 1 else None
                if found is not None:
                    cached += found.cached
                    rows = _with_lines(found.rest).unionByName(found.records)
                    if repeated is not None:
                        # a stitched record may repeat any key: send its hash (and the rows that share it) to the ranking
                        hashes = [int(r[KEY_HASH]) for r in found.records.filter(is_valid()).select(KEY_HASH).collect()]
                        repeated = RepeatedKeys(sorted(set(repeated.hashes) | set(hashes)), repeated.rows + len(hashes))
        rows = _with_lines(rows)

        # The second action counts the rows and the lines that are not rows, writes the quarantine and counts its
        # records, lines and reasons.
        flags = reason_flags(contract)
        in_obs, q_obs = Observation("parsed"), Observation("quarantine")
        with steps.step("quarantine"):
            observed = rows.observe(
                in_obs,
                F.count(F.col(OK)).alias("rows_in"),
                F.coalesce(F.sum(F.when(F.col(OK).isNull(), F.col(LINES))), F.lit(0)).alias("skipped"),
                F.coalesce(F.sum((~is_valid()).cast("long")), F.lit(0)).alias("bad"),
            )
            bad = observed.filter(~is_valid())
            bad = bad.observe(
                q_obs,
                F.count(F.lit(1)).alias("n"),
                F.coalesce(F.sum(F.col(LINES)), F.lit(0)).alias("lines"),
                *[F.sum(flag).alias(f"r{i}") for i, (_, flag) in enumerate(flags)],
            )
            quarantine_records(bad, run_id, contract, source_uris, offsets).write.mode("overwrite").option("ignoreNullFields", False).json(
                f"{quarantine_dir}/rows"
            )
        parsed = steps.metrics(in_obs, "quarantine")
        quarantined = steps.metrics(q_obs, "quarantine")
        result.rows_in = int(parsed["rows_in"])
        result.lines_skipped = int(parsed["skipped"])
        result.rows_quarantined = int(quarantined.get("n", 0))
        result.lines_quarantined = int(quarantined.get("lines", 0))
        result.reasons = {r: int(quarantined[f"r{i}"]) for i, (r, _) in enumerate(flags) if quarantined.get(f"r{i}")}
        if result.rows_quarantined != int(parsed["bad"]):
            result.errors.append(f"quarantine wrote {result.rows_quarantined} rows, {int(parsed['bad'])} were counted")

        # The third writes the curated rows and counts them, and their lines, as they are written (no read-back).
        with steps.step("curated"):
            deduplicated, d_obs = deduplicate_valid(rows.filter(is_valid()), contract, repeated)
            part = contract.partition.name
            w_obs = Observation("written")
            curated = deduplicated.select(*[n for n, _ in contract.output_columns()], part, LINES)
            curated = curated.observe(w_obs, F.count(F.lit(1)).alias("n"), F.coalesce(F.sum(F.col(LINES)), F.lit(0)).alias("lines"))
            curated = curated.drop(LINES)
            if result.rows_in <= ONE_FILE_PER_VALUE_MAX_ROWS:
                curated = one_file_per_value(curated, part)
            curated.write.mode("overwrite").partitionBy(part).parquet(curated_dir)
        written = steps.metrics(w_obs, "curated")
        result.rows_out = int(written.get("n", 0))
        result.lines_out = int(written.get("lines", 0) or 0)
        if d_obs is not None:
            dropped = steps.metrics(d_obs, "curated")
            result.duplicates_dropped = int(dropped.get("dups", 0) or 0)
            result.lines_deduplicated = int(dropped.get("dup_lines", 0) or 0)
        if len(headers) > 1:
            # Several uploads in one run: the ledger records each one's own counts and outcome.
            with steps.step("per_file_counts"):
                result.per_file = per_file_counts(rows, contract, repeated, {i: source_uris[i] for i in headers})
        LOG.info("clean run %s step seconds: %s", run_id, result.timings)
    finally:
        for frame in cached:
            frame.unpersist()


@dataclass
class _Stitched:
    """What `_stitch_records` found: the classified lines outside records that span lines, the records classified
    (`_lines` each), and the frames to unpersist at the end of the run."""

    rest: DataFrame
    records: DataFrame
    cached: list[DataFrame]


def _stitch_records(
    spark: SparkSession,
    contract: DatasetContract,
    classified: DataFrame,
    headers: dict[int, FileHeader],
    counts: dict[tuple[int, int], int],
    offsets: dict[tuple[int, int], int],
) -> _Stitched | None:
    """Records whose quoted values hold line breaks (RFC 4180). The lines with an odd number of quotes are
    collected (few: one opens such a value, the next closes it) and paired by `_record_spans`; only the lines of
    those candidates are read again and stitched, and a candidate is a record only when its text is exactly one
    well-formed record of the header's width (`_choose_records`). A line that opens a quote nobody closes is then
    one malformed line, and the good lines after it stay rows of their own. None when no record spans lines."""
    odd_rows = classified.filter(F.col(ODD)).select(FILE_INDEX, ROW_ID, RAW_LINE).collect()
    by_file: dict[int, list[tuple[int, str]]] = {}
    for row in odd_rows:
        by_file.setdefault(int(row[FILE_INDEX]), []).append((int(row[ROW_ID]), str(row[RAW_LINE] or "")))
    candidates: dict[int, list[tuple[int, int]]] = {}
    members: list[tuple[int, int, int, int]] = []
    for f, lines in by_file.items():
        lines.sort()
        file_offsets = {p: n for (ff, p), n in offsets.items() if ff == f}
        file_counts = {p: n for (ff, p), n in counts.items() if ff == f}
        candidates[f] = _record_spans(lines, file_offsets)
        for span in candidates[f]:
            members += [(f, rid, span[0], seq) for seq, rid in enumerate(_span_members(span, file_offsets, file_counts))]
    if not members:
        return None
    member_df = F.broadcast(spark.createDataFrame(members, "f INT, id BIGINT, record BIGINT, seq INT"))
    records: list[DataFrame] = []
    for f in sorted({m[0] for m in members}):
        read = _read_lines(spark, headers[f].uri)
        mine = member_df.filter(F.col("f") == f)
        joined = read.join(mine, read[ROW_ID] == mine["id"])
        grouped = joined.groupBy("record").agg(F.sort_array(F.collect_list(F.struct("seq", RAW_LINE))).alias("parts"))
        text = grouped.select(
            F.concat_ws("\n", F.col("parts").getField(RAW_LINE)).alias(RAW_LINE),
            F.col("record").alias(ROW_ID),
            F.lit(False).alias(SKIP),
            F.lit(False).alias(ODD),
            F.size("parts").alias(LINES),
        )
        records.append(_parse_lines(text, contract, headers[f], f, stitched=True))
    candidate_records = records[0]
    for frame in records[1:]:
        candidate_records = candidate_records.unionByName(frame)
    candidate_records = candidate_records.persist()
    verdicts = candidate_records.select(FILE_INDEX, ROW_ID, MALFORMED).collect()
    well_formed = {(int(r[FILE_INDEX]), int(r[ROW_ID])) for r in verdicts if not r[MALFORMED]}
    spans = {(f, first): last for f, pairs in candidates.items() for first, last in pairs}
    chosen = []
    for f, lines in by_file.items():
        ids = [rid for rid, _ in lines]
        chosen += [(f, first) for first, _ in _choose_records(ids, {(a, spans[(f, a)]) for ff, a in well_formed if ff == f})]
    if not chosen:
        candidate_records.unpersist()
        return None
    chosen_df = F.broadcast(spark.createDataFrame(chosen, f"`{FILE_INDEX}` INT, `{ROW_ID}` BIGINT"))
    kept = set(chosen)
    member_keys = F.broadcast(
        spark.createDataFrame([(f, rid) for f, rid, first, _ in members if (f, first) in kept], f"`{FILE_INDEX}` INT, `{ROW_ID}` BIGINT")
    )
    rest = classified.join(member_keys, [FILE_INDEX, ROW_ID], "left_anti")
    stitched = _classify(candidate_records.join(chosen_df, [FILE_INDEX, ROW_ID], "left_semi"), contract).persist()
    return _Stitched(rest, stitched, [stitched, candidate_records])


#: A step's bound: this many seconds, plus one second per STEP_BOUND_BYTES_PER_SECOND bytes of input.
STEP_BOUND_BASE_SECONDS = 600.0
STEP_BOUND_BYTES_PER_SECOND = 1024 * 1024
#: How long a step's counts may take to arrive after its action ended (they are posted right after it).
METRICS_WAIT_SECONDS = 120.0


def default_step_bound(input_bytes: int) -> float:
    """The most one step of a run may take: proportional to the input, never less than STEP_BOUND_BASE_SECONDS
    (a gzip file counts ten times its size)."""
    return STEP_BOUND_BASE_SECONDS + input_bytes / STEP_BOUND_BYTES_PER_SECOND


class _Steps:
    """Runs each step of a run under a bound: its Spark jobs in a job group of their own, cancelled when the step
    passes `bound_seconds`; its observed counts waited for at most METRICS_WAIT_SECONDS. Either way the run
    fails with `CleanStepTimedOut` naming the step, instead of holding its workers until the job's timeout.
    Records each step's seconds in `timings`."""

    def __init__(self, spark: SparkSession, bound_seconds: float, timings: dict[str, float]) -> None:
        self.spark = spark
        self.bound_seconds = bound_seconds
        self.timings = timings
        self.run = uuid.uuid4().hex[:12]

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        sc = self.spark.sparkContext
        group = f"clean-{self.run}-{name}"
        sc.setJobGroup(group, f"clean step {name}", interruptOnCancel=True)
        expired = threading.Event()

        def cancel() -> None:
            expired.set()
            sc.cancelJobGroup(group)

        timer = threading.Timer(self.bound_seconds, cancel)
        timer.daemon = True
        started = time.perf_counter()
        timer.start()
        try:
            yield
        except Exception as exc:
            if expired.is_set():
                raise CleanStepTimedOut(name, self.bound_seconds, "its Spark jobs did not end") from exc
            raise
        finally:
            timer.cancel()
            sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - started, 3)
        if expired.is_set():  # the step's last job ended as the bound passed
            raise CleanStepTimedOut(name, self.bound_seconds, "its Spark jobs did not end")

    def metrics(self, observation: Observation, name: str) -> dict[str, Any]:
        """`observation.get`, waited for at most METRICS_WAIT_SECONDS (Spark's own wait has no bound)."""
        box: dict[str, Any] = {}

        def wait() -> None:
            try:
                box["value"] = observation.get
            except Exception as exc:  # noqa: BLE001 - handed to the caller's thread below
                box["error"] = exc

        waiter = threading.Thread(target=wait, name=f"observation-{name}", daemon=True)
        waiter.start()
        waiter.join(METRICS_WAIT_SECONDS)
        if waiter.is_alive():
            raise CleanStepTimedOut(name, METRICS_WAIT_SECONDS, f"the counts of observation {observation._name!r} did not arrive")
        if "error" in box:
            raise box["error"]
        return dict(box["value"])


def _has_parquet(spark: SparkSession, uri: str) -> bool:
    fs, path = _fs(spark, uri)
    if not fs.exists(path):
        return False
    files = fs.listFiles(path, True)
    while files.hasNext():
        if files.next().getPath().getName().endswith(".parquet"):
            return True
    return False


def _empty_curated(spark: SparkSession, contract: DatasetContract, curated_dir: str) -> None:
    """No readable file: still replace the run's curated dir, so a re-run never leaves stale rows behind."""
    fs, path = _fs(spark, curated_dir)
    if fs.exists(path):
        fs.delete(path, True)
