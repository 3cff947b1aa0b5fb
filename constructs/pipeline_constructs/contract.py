"""The dataset contract: one description of a dataset that the clean job, the catalog tables, the load SQL and the
docs all read.

A contract names the source CSV columns (type, nullability, checks), the derived columns (Spark SQL expressions),
the natural key used to de-duplicate, the rule that decides which duplicate wins, and the partition column of the
curated output. Users write it as YAML or JSON; `DatasetContract.from_file` validates it and raises
`ContractError` naming the field path and the bad value.

This module is standard library only at import time (PyYAML is imported lazily to read a .yaml file), because it
is also shipped to Glue as the top-level module `contract`, next to the job script.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "RESERVED_NAMES",
    "SUPPORTED_TYPES",
    "ColumnCheck",
    "ContractColumn",
    "ContractError",
    "DatasetContract",
    "DerivedColumn",
    "OrderBy",
    "normalize_type",
]

#: Spark/Hive type names, which are also the Glue Data Catalog type names. `decimal(p,s)` stands for any
#: precision 1..38 and scale 0..p, e.g. `decimal(12,2)`.
SUPPORTED_TYPES: tuple[str, ...] = (
    "string",
    "int",
    "bigint",
    "double",
    "boolean",
    "date",
    "timestamp",
    "decimal(p,s)",
)

#: Names a column may not take: `run_id` is the first level of the curated output layout, and names starting with
#: `_` are kept for the transform's internal columns.
RESERVED_NAMES: frozenset[str] = frozenset({"run_id"})

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,126}$")
_DECIMAL_RE = re.compile(r"^decimal\((\d+),(\d+)\)$")
_SIMPLE_TYPES = frozenset(SUPPORTED_TYPES[:-1])
_NUMERIC_TYPES = frozenset({"int", "bigint", "double"})
_INT_RANGES = {"int": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}


class ContractError(ValueError):
    """A contract is invalid. The message starts with the field path, e.g. `columns[3].type: ...`."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


def normalize_type(type_name: str, path: str = "type") -> str:
    """Return the canonical spelling of a supported type (lower case, no spaces), or raise ContractError."""
    if not isinstance(type_name, str):
        raise ContractError(path, f"type must be a string, got {type_name!r}")
    canonical = re.sub(r"\s+", "", type_name).lower()
    if canonical in _SIMPLE_TYPES:
        return canonical
    match = _DECIMAL_RE.match(canonical)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if not 1 <= precision <= 38 or not 0 <= scale <= precision:
            raise ContractError(path, f"decimal precision must be 1..38 and scale 0..precision, got {type_name!r}")
        return f"decimal({precision},{scale})"
    raise ContractError(path, f"unsupported type {type_name!r}; use one of {', '.join(SUPPORTED_TYPES)}")


def decimal_precision_scale(type_name: str) -> tuple[int, int] | None:
    """(precision, scale) of a canonical decimal type, None for any other type."""
    match = _DECIMAL_RE.match(type_name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _canonical_type(column: Any) -> None:
    # Spell types canonically ("DECIMAL(12, 2)" -> "decimal(12,2)"); unsupported ones are reported by the contract's
    # validation, which knows the field path.
    if isinstance(column.type, str):
        object.__setattr__(column, "type", re.sub(r"\s+", "", column.type).lower())


def _iso_text(value: Any) -> Any:
    """A date or datetime as ISO-8601 text (`datetime` first: it is a subclass of `date`); anything else as is."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class ColumnCheck:
    r"""Value checks of one column; a row failing any of them goes to quarantine with reason `check_<kind>:<column>`.

    - `min` / `max`: inclusive bounds. Numbers for int, bigint, double and decimal columns; ISO-8601 strings for
      date and timestamp columns.
    - `allowed_values`: the value must be one of these (compared after the cast to the column type).
    - `pattern`: a regular expression searched in the value (Java `rlike` semantics: anchor it with ^ and $ to
      match the whole value). It runs in Spark, so Java's syntax applies: Python-only forms such as `(?P<name>...)`,
      `(?P=name)`, `(?#...)`, conditional groups and `{,n}` are rejected; Java's `\p{Lu}`, `(?<name>...)`,
      `\k<name>`, `\Q...\E` and `\z` are accepted.
    - Dates and timestamps may be given as ISO text or, in YAML, unquoted (`min: 1992-01-01`); either way the
      contract keeps the ISO text.
    - `min_length` / `max_length`: length in characters of string values (also sizes Redshift VARCHARs).
    """

    min: int | float | str | None = None
    max: int | float | str | None = None
    allowed_values: tuple[Any, ...] | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        # YAML reads an unquoted 1992-01-01 as a date and 2000-01-01T00:00:00 as a datetime: keep them as the ISO
        # text they stand for, so the contract serialises to JSON (the deployed form) and compares as written.
        for key in ("min", "max"):
            object.__setattr__(self, key, _iso_text(getattr(self, key)))
        if isinstance(self.allowed_values, (list, tuple)):
            object.__setattr__(self, "allowed_values", tuple(_iso_text(v) for v in self.allowed_values))

    def is_empty(self) -> bool:
        """True when no check is set."""
        return self == ColumnCheck()

    def to_dict(self) -> dict[str, Any]:
        """The checks that are set, as plain JSON values."""
        out: dict[str, Any] = {}
        for key in ("min", "max", "pattern", "min_length", "max_length"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.allowed_values is not None:
            out["allowed_values"] = list(self.allowed_values)
        return out


@dataclass(frozen=True)
class ContractColumn:
    """A source CSV column: matched by header name (case-insensitive), cast to `type`, checked."""

    name: str
    type: str
    nullable: bool
    checks: ColumnCheck = field(default_factory=ColumnCheck)
    description: str = ""

    def __post_init__(self) -> None:
        _canonical_type(self)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if not self.checks.is_empty():
            out["checks"] = self.checks.to_dict()
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class DerivedColumn:
    """A column computed by a Spark SQL expression over the source columns (and the derived columns before it),
    cast to `type`.

    A value the clean job cannot compute quarantines its row, unless `nullable` is true (then it is NULL): the
    expression gives a value that does not fit the type (`cast_failed:<name>`), or gives NULL on a row whose source
    values are all valid (`null_in_required:<name>`). `nullable` defaults to false; the partition column ignores
    it (a NULL partition value is always `partition_null:<name>`)."""

    name: str
    type: str
    expression: str
    description: str = ""
    nullable: bool = False

    def __post_init__(self) -> None:
        _canonical_type(self)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "expression": self.expression}
        if self.nullable:
            out["nullable"] = True
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class OrderBy:
    """One key of the de-duplication order; written `"<column> asc"` or `"<column> desc"` in a contract."""

    column: str
    descending: bool = True

    def to_str(self) -> str:
        return f"{self.column} {'desc' if self.descending else 'asc'}"

    @classmethod
    def parse(cls, text: Any, path: str) -> OrderBy:
        if not isinstance(text, str) or not text.strip():
            raise ContractError(path, f"expected '<column> asc|desc', got {text!r}")
        parts = text.split()
        if len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
            raise ContractError(path, f"expected '<column> asc|desc', got {text!r}")
        return cls(column=parts[0], descending=len(parts) == 1 or parts[1].lower() == "desc")


@dataclass(frozen=True)
class DatasetContract:
    """A validated dataset contract.

    De-duplication rule (documented behaviour of the clean job): among the valid rows of one run that share the
    natural key, the row that sorts first by `dedup_order_by` wins (e.g. `sold_at desc`: the latest sale record);
    ties, and contracts without `dedup_order_by`, go to the row that appears last in the input: the last file in
    the order the run was given its files, then the last line in that file ("last write wins"). Across runs the
    loads MERGE on the natural key, so a later run's row replaces an earlier one.
    """

    name: str
    columns: tuple[ContractColumn, ...]
    derived: tuple[DerivedColumn, ...]
    natural_key: tuple[str, ...]
    partition: DerivedColumn
    dedup_order_by: tuple[OrderBy, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        _validate(self)

    # ----------------------------------------------------------------------------------------------- reading
    @classmethod
    def from_file(cls, path: str | Path) -> DatasetContract:
        """Read and validate a contract from a .yaml, .yml or .json file."""
        path = Path(path)
        suffix = path.suffix.lower()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ContractError("", f"cannot read contract file {str(path)!r}: {exc}") from exc
        if suffix in (".yaml", ".yml"):
            import yaml  # lazy: the Glue side only ever reads JSON

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ContractError("", f"{str(path)!r} is not valid YAML: {exc}") from exc
        elif suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ContractError("", f"{str(path)!r} is not valid JSON: {exc}") from exc
        else:
            raise ContractError("", f"contract file must end in .yaml, .yml or .json, got {str(path)!r}")
        return cls.from_dict(data)

    @classmethod
    def from_json(cls, text: str) -> DatasetContract:
        """Read and validate a contract from JSON text (the form deployed to Glue)."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetContract:
        """Validate a contract given as plain data (the parsed YAML or JSON)."""
        _expect_mapping(data, "")
        _check_keys(
            data,
            "",
            required={"name", "columns", "natural_key", "partition"},
            optional={"derived", "dedup_order_by", "description"},
        )
        columns_raw = data["columns"]
        if not isinstance(columns_raw, list):
            raise ContractError("columns", f"expected a list of columns, got {columns_raw!r}")
        columns = tuple(_column_from_dict(item, f"columns[{i}]") for i, item in enumerate(columns_raw))
        derived_raw = data.get("derived", [])
        if derived_raw is None:
            derived_raw = []
        if not isinstance(derived_raw, list):
            raise ContractError("derived", f"expected a list of derived columns, got {derived_raw!r}")
        derived = tuple(_derived_from_dict(item, f"derived[{i}]") for i, item in enumerate(derived_raw))
        natural_key = _string_list(data["natural_key"], "natural_key")
        order_raw = data.get("dedup_order_by", [])
        if order_raw is None:
            order_raw = []
        if isinstance(order_raw, str):
            order_raw = [order_raw]
        if not isinstance(order_raw, list):
            raise ContractError("dedup_order_by", f"expected a list like ['sold_at desc'], got {order_raw!r}")
        order = tuple(OrderBy.parse(item, f"dedup_order_by[{i}]") for i, item in enumerate(order_raw))
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ContractError("description", f"expected a string, got {description!r}")
        return cls(
            name=_string(data["name"], "name"),
            columns=columns,
            derived=derived,
            natural_key=natural_key,
            partition=_derived_from_dict(data["partition"], "partition"),
            dedup_order_by=order,
            description=description,
        )

    # ----------------------------------------------------------------------------------------------- writing
    def to_dict(self) -> dict[str, Any]:
        """Plain data that `from_dict` reads back to an equal contract."""
        out: dict[str, Any] = {
            "name": self.name,
            "columns": [c.to_dict() for c in self.columns],
            "derived": [d.to_dict() for d in self.derived],
            "natural_key": list(self.natural_key),
            "partition": self.partition.to_dict(),
            "dedup_order_by": [o.to_str() for o in self.dedup_order_by],
        }
        if self.description:
            out["description"] = self.description
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, fixed separators): the same contract always gives the same bytes, so the
        deployed asset hash only changes when the contract does."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"

    # ----------------------------------------------------------------------------------------------- schema
    def output_columns(self) -> list[tuple[str, str]]:
        """(name, type) of the curated Parquet columns in file order: source columns, then derived columns. The
        partition column is not in the files (it is the `<name>=<value>` directory); see `partition_column`."""
        return [(c.name, c.type) for c in self.columns] + [(d.name, d.type) for d in self.derived]

    def partition_column(self) -> tuple[str, str]:
        """(name, type) of the partition column of the curated output."""
        return (self.partition.name, self.partition.type)

    def column(self, name: str) -> ContractColumn:
        """The source column called `name` (KeyError if none)."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def required_columns(self) -> list[str]:
        """Source columns a file's header must have (the non-nullable ones); nullable ones may be absent."""
        return [c.name for c in self.columns if not c.nullable]


# --------------------------------------------------------------------------------------------- parsing helpers
def _expect_mapping(data: Any, path: str) -> None:
    if not isinstance(data, Mapping):
        raise ContractError(path, f"expected a mapping, got {type(data).__name__} {data!r}"[:300])


def _check_keys(data: Mapping[str, Any], path: str, *, required: set[str], optional: set[str]) -> None:
    prefix = f"{path}." if path else ""
    for key in data:
        if key not in required and key not in optional:
            allowed = ", ".join(sorted(required | optional))
            raise ContractError(f"{prefix}{key}", f"unknown key {key!r}; allowed keys are {allowed}")
    for key in sorted(required):
        if key not in data:
            raise ContractError(f"{prefix}{key}", "required key is missing")


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ContractError(path, f"expected a string, got {value!r}")
    return value


def _string_list(value: Any, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ContractError(path, f"expected a list of column names, got {value!r}")
    return tuple(_string(v, f"{path}[{i}]") for i, v in enumerate(value))


def _column_from_dict(data: Any, path: str) -> ContractColumn:
    _expect_mapping(data, path)
    _check_keys(data, path, required={"name", "type"}, optional={"nullable", "checks", "description"})
    nullable = data.get("nullable", True)
    if not isinstance(nullable, bool):
        raise ContractError(f"{path}.nullable", f"expected true or false, got {nullable!r}")
    checks_raw = data.get("checks") or {}
    _expect_mapping(checks_raw, f"{path}.checks")
    _check_keys(
        checks_raw,
        f"{path}.checks",
        required=set(),
        optional={"min", "max", "allowed_values", "pattern", "min_length", "max_length"},
    )
    allowed = checks_raw.get("allowed_values")
    if allowed is not None:
        if not isinstance(allowed, list) or not allowed:
            raise ContractError(f"{path}.checks.allowed_values", f"expected a non-empty list, got {allowed!r}")
        allowed = tuple(allowed)
    checks = ColumnCheck(
        min=checks_raw.get("min"),
        max=checks_raw.get("max"),
        allowed_values=allowed,
        pattern=checks_raw.get("pattern"),
        min_length=checks_raw.get("min_length"),
        max_length=checks_raw.get("max_length"),
    )
    return ContractColumn(
        name=_string(data["name"], f"{path}.name"),
        type=_string(data["type"], f"{path}.type"),
        nullable=nullable,
        checks=checks,
        description=_string(data.get("description", ""), f"{path}.description"),
    )


def _derived_from_dict(data: Any, path: str) -> DerivedColumn:
    _expect_mapping(data, path)
    _check_keys(data, path, required={"name", "type", "expression"}, optional={"description", "nullable"})
    nullable = data.get("nullable", False)
    if not isinstance(nullable, bool):
        raise ContractError(f"{path}.nullable", f"expected true or false, got {nullable!r}")
    return DerivedColumn(
        name=_string(data["name"], f"{path}.name"),
        type=_string(data["type"], f"{path}.type"),
        expression=_string(data["expression"], f"{path}.expression"),
        description=_string(data.get("description", ""), f"{path}.description"),
        nullable=nullable,
    )


# --------------------------------------------------------------------------------------------- validation
def _check_name(name: Any, path: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ContractError(path, f"invalid name {name!r}; use snake_case: a lower-case letter, then lower-case letters, digits or _")
    if name in RESERVED_NAMES:
        raise ContractError(path, f"name {name!r} is reserved by the pipeline's output layout")


def _check_bound(value: Any, col_type: str, path: str) -> None:
    if col_type in _NUMERIC_TYPES or col_type.startswith("decimal"):
        if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
            raise ContractError(path, f"expected a finite number for a {col_type} column, got {value!r}")
        if col_type in _INT_RANGES:
            low, high = _INT_RANGES[col_type]
            if not low <= value <= high:
                raise ContractError(path, f"{value!r} is outside the range of {col_type}")
    elif col_type == "date":
        if not isinstance(value, (str, date)):
            raise ContractError(path, f"expected an ISO date 'YYYY-MM-DD', got {value!r}")
        try:
            date.fromisoformat(str(value))
        except ValueError as exc:
            raise ContractError(path, f"expected an ISO date 'YYYY-MM-DD', got {value!r}") from exc
    elif col_type == "timestamp":
        try:
            datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise ContractError(path, f"expected an ISO timestamp, got {value!r}") from exc
    else:
        raise ContractError(path, f"min/max apply to numeric, date and timestamp columns, not {col_type}")


def _bound_key(value: Any, col_type: str) -> Any:
    if col_type == "date":
        return date.fromisoformat(str(value))
    if col_type == "timestamp":
        parsed = datetime.fromisoformat(str(value))
        return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).timestamp()  # naive = UTC, as the job reads it
    return value


def _check_allowed_value(value: Any, col_type: str, path: str) -> None:
    if col_type == "string":
        ok = isinstance(value, str)
    elif col_type in _INT_RANGES:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif col_type == "double" or col_type.startswith("decimal"):
        ok = _is_number(value)
    elif col_type == "boolean":
        ok = isinstance(value, bool)
    elif col_type == "date":
        ok = isinstance(value, (str, date))
        if ok:
            try:
                date.fromisoformat(str(value))
            except ValueError:
                ok = False
    else:
        ok = False
    if not ok:
        raise ContractError(path, f"value {value!r} is not a valid {col_type} for allowed_values")


def _check_column_checks(col: ContractColumn, path: str) -> None:
    checks = col.checks
    if not isinstance(checks, ColumnCheck):
        raise ContractError(path, f"expected a ColumnCheck, got {checks!r}")
    for key in ("min", "max"):
        value = getattr(checks, key)
        if value is not None:
            _check_bound(value, col.type, f"{path}.{key}")
    if checks.min is not None and checks.max is not None and _bound_key(checks.min, col.type) > _bound_key(checks.max, col.type):
        raise ContractError(f"{path}.min", f"min {checks.min!r} is greater than max {checks.max!r}")
    if checks.allowed_values is not None:
        if not checks.allowed_values:
            raise ContractError(f"{path}.allowed_values", "expected a non-empty list")
        for i, value in enumerate(checks.allowed_values):
            _check_allowed_value(value, col.type, f"{path}.allowed_values[{i}]")
    if checks.pattern is not None:
        if not isinstance(checks.pattern, str) or not checks.pattern:
            raise ContractError(f"{path}.pattern", f"expected a regular expression, got {checks.pattern!r}")
        _check_pattern(checks.pattern, f"{path}.pattern")
    for key in ("min_length", "max_length"):
        value = getattr(checks, key)
        if value is not None:
            if col.type != "string":
                raise ContractError(f"{path}.{key}", f"{key} applies to string columns, not {col.type}")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ContractError(f"{path}.{key}", f"expected a non-negative integer, got {value!r}")
    if checks.min_length is not None and checks.max_length is not None and checks.min_length > checks.max_length:
        raise ContractError(f"{path}.min_length", f"min_length {checks.min_length!r} is greater than max_length {checks.max_length!r}")


# --------------------------------------------------------------------------------------------- Spark SQL expressions
# A derived or partition expression is checked before deploy the way Spark 3.5 would read it: a tokenizer and a
# recursive-descent parser for Spark's expression grammar (operators, predicates, CASE, CAST, INTERVAL, lambdas and
# the special call forms), every called function looked up in Spark's own function list below, every column
# reference in the contract. No Spark at synth; `tests/runtime/test_contract_on_spark.py` compares this list with a
# real local Spark 3.5.4 (the Glue 5.0 version) and runs every shipped contract's expressions there.
# Generated by scripts/spark_functions.py:
# Spark 3.5.4: SHOW SYSTEM FUNCTIONS, by ExpressionInfo group
_SPARK_FUNCTIONS_ROW = """
    abs acos acosh add_months aes_decrypt aes_encrypt aggregate and
    array array_append array_compact array_contains array_distinct array_except array_insert array_intersect
    array_join array_max array_min array_position array_prepend array_remove array_repeat array_size
    array_sort array_union arrays_overlap arrays_zip ascii asin asinh assert_true
    atan atan2 atanh base64 between bigint bin binary
    bit_count bit_get bit_length bitmap_bit_position bitmap_bucket_number bitmap_count boolean bround
    btrim cardinality case cast cbrt ceil ceiling char
    char_length character_length chr coalesce concat concat_ws contains conv
    convert_timezone cos cosh cot crc32 csc curdate current_catalog
    current_database current_date current_schema current_timestamp current_timezone current_user date date_add
    date_diff date_format date_from_unix_date date_part date_sub date_trunc dateadd datediff
    datepart day dayofmonth dayofweek dayofyear decimal decode degrees
    div double e element_at elt encode endswith equal_null
    exists exp expm1 extract factorial filter find_in_set flatten
    float floor forall format_number format_string from_csv from_json from_unixtime
    from_utc_timestamp get get_json_object getbit greatest hash hex hll_sketch_estimate
    hll_union hour hypot if ifnull ilike in initcap
    input_file_block_length input_file_block_start input_file_name instr int isnan isnotnull isnull
    java_method json_array_length json_object_keys json_tuple last_day lcase least left
    len length levenshtein like ln localtimestamp locate log
    log10 log1p log2 lower lpad ltrim luhn_check make_date
    make_dt_interval make_interval make_timestamp make_timestamp_ltz make_timestamp_ntz make_ym_interval map map_concat
    map_contains_key map_entries map_filter map_from_arrays map_from_entries map_keys map_values map_zip_with
    mask md5 minute mod monotonically_increasing_id month months_between named_struct
    nanvl negative next_day not now nullif nvl nvl2
    octet_length or overlay parse_url pi pmod position positive
    pow power printf quarter radians raise_error rand randn
    random reduce reflect regexp regexp_count regexp_extract regexp_extract_all regexp_instr
    regexp_like regexp_replace regexp_substr repeat replace reverse right rint
    rlike round rpad rtrim schema_of_csv schema_of_json sec second
    sentences sequence session_window sha sha1 sha2 shiftleft shiftright
    shiftrightunsigned shuffle sign signum sin sinh size slice
    smallint sort_array soundex space spark_partition_id split split_part sqrt
    startswith str_to_map string struct substr substring substring_index tan
    tanh timestamp timestamp_micros timestamp_millis timestamp_seconds tinyint to_binary to_char
    to_csv to_date to_json to_number to_timestamp to_timestamp_ltz to_timestamp_ntz to_unix_timestamp
    to_utc_timestamp to_varchar transform transform_keys transform_values translate trim trunc
    try_add try_aes_decrypt try_divide try_element_at try_multiply try_subtract try_to_binary try_to_number
    try_to_timestamp typeof ucase unbase64 unhex unix_date unix_micros unix_millis
    unix_seconds unix_timestamp upper url_decode url_encode user uuid version
    weekday weekofyear when width_bucket window window_time xpath xpath_boolean
    xpath_double xpath_float xpath_int xpath_long xpath_number xpath_short xpath_string xxhash64
    year zip_with
"""
_SPARK_FUNCTIONS_AGGREGATE = """
    any any_value approx_count_distinct approx_percentile array_agg avg bit_and bit_or
    bit_xor bitmap_construct_agg bitmap_or_agg bool_and bool_or collect_list collect_set corr
    count count_if count_min_sketch covar_pop covar_samp every first first_value
    grouping grouping_id histogram_numeric hll_sketch_agg hll_union_agg kurtosis last last_value
    max max_by mean median min min_by mode percentile
    percentile_approx regr_avgx regr_avgy regr_count regr_intercept regr_r2 regr_slope regr_sxx
    regr_sxy regr_syy skewness some std stddev stddev_pop stddev_samp
    sum try_avg try_sum var_pop var_samp variance
"""
_SPARK_FUNCTIONS_WINDOW = """
    cume_dist dense_rank lag lead nth_value ntile percent_rank rank
    row_number
"""
_SPARK_FUNCTIONS_GENERATOR = """
    explode explode_outer inline inline_outer posexplode posexplode_outer sql_keywords stack
"""
_SPARK_FUNCTIONS_TABLE = """
    range
"""

SPARK_FUNCTIONS: dict[str, frozenset[str]] = {
    kind: frozenset(text.split())
    for kind, text in (
        ("row", _SPARK_FUNCTIONS_ROW),
        ("aggregate", _SPARK_FUNCTIONS_AGGREGATE),
        ("window", _SPARK_FUNCTIONS_WINDOW),
        ("generator", _SPARK_FUNCTIONS_GENERATOR),
        ("table", _SPARK_FUNCTIONS_TABLE),
    )
}
#: Keywords Spark reads as values without parentheses.
_NILADIC = frozenset({"current_date", "current_timestamp", "current_user"})
_SIMPLE_SQL_TYPES = frozenset(
    "boolean tinyint byte smallint short int integer bigint long float real double date timestamp timestamp_ntz"
    " timestamp_ltz string binary void".split()
)
_SIZED_SQL_TYPES = frozenset({"char", "character", "varchar"})
_DECIMAL_SQL_TYPES = frozenset({"decimal", "dec", "numeric"})
_INTERVAL_UNITS = frozenset(
    "year years month months week weeks day days hour hours minute minutes second seconds millisecond milliseconds"
    " microsecond microseconds".split()
)
_EXTRACT_FIELDS = frozenset(
    "year years y yr yrs yearofweek month months mon mons week weeks w day days d dayofweek dow dayofweek_iso dow_iso"
    " doy dayofyear hour hours h hr hrs minute minutes m min mins second seconds s sec secs quarter qtr epoch"
    " millennium millennia century centuries decade decades millisecond milliseconds ms msec msecs microsecond"
    " microseconds us usec usecs".split()
)
_COMPARISONS = frozenset({"=", "==", "<>", "!=", "<", "<=", ">", ">=", "<=>"})
# value operators by binding strength, weakest first (Spark's valueExpression)
_BINARY_LEVELS: tuple[frozenset[str], ...] = (
    _COMPARISONS,
    frozenset({"|"}),
    frozenset({"^"}),
    frozenset({"&"}),
    frozenset({"+", "-", "||"}),
    frozenset({"*", "/", "%", "div"}),
)
_TOKEN_RE = re.compile(
    r"""(?P<space>\s+)
    |(?P<comment>--|/\*)
    |(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:bd|BD|Bd|bD|[lLsSyYdDfF])?(?![A-Za-z0-9_]))
    |(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<quoted>`(?:[^`]|``)*`)
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*|\d+[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op><=>|<>|!=|<=|>=|==|\|\||->|::|[=<>+\-*/%&|^~!(),.\[\]:;])""",
    re.VERBOSE,
)


class _ParseError(Exception):
    pass


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, quoted, word, op, end
    text: str
    pos: int

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "word" else ""

    def describe(self) -> str:
        return "the end" if self.kind == "end" else f"{self.text!r} at position {self.pos}"


def _tokens(expression: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(expression):
        match = _TOKEN_RE.match(expression, pos)
        if match is None:
            rest = expression[pos]
            if rest in "'\"`":
                raise _ParseError(f"unterminated string or quoted name starting at position {pos}")
            raise _ParseError(f"unexpected {rest!r} at position {pos}")
        kind = match.lastgroup or ""
        if kind == "comment":
            raise _ParseError(f"comments are not allowed in an expression (position {pos})")
        if kind != "space":
            out.append(_Token(kind, match.group(), pos))
        pos = match.end()
    out.append(_Token("end", "", len(expression)))
    return out


class _ExpressionChecker:
    """Parses one expression; collects the column names it references (lower case) and rejects unknown functions
    and types. Grammar after Spark 3.5's SqlBaseParser (booleanExpression, predicate, valueExpression,
    primaryExpression), without subqueries, aggregates, windows and generators."""

    def __init__(self, expression: str) -> None:
        self.tokens = _tokens(expression)
        self.i = 0
        self.columns: set[str] = set()
        self.lambda_vars: list[set[str]] = []

    # -- helpers
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def peek(self, ahead: int = 1) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        tok = self.tok
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def at(self, *texts: str) -> bool:
        return self.tok.word in texts or (self.tok.kind == "op" and self.tok.text in texts)

    def accept(self, *texts: str) -> bool:
        if self.at(*texts):
            self.take()
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise _ParseError(f"expected {text!r}, found {self.tok.describe()}")

    def check(self) -> set[str]:
        self.expression()
        if self.tok.kind != "end":
            raise _ParseError(f"unexpected {self.tok.describe()}")
        return self.columns

    # -- booleanExpression
    def expression(self) -> None:
        self.and_expression()
        while self.accept("or"):
            self.and_expression()

    def and_expression(self) -> None:
        self.not_expression()
        while self.accept("and"):
            self.not_expression()

    def not_expression(self) -> None:
        if self.accept("not", "!"):
            self.not_expression()
            return
        self.value(0)
        self.predicate()

    def predicate(self) -> None:
        if self.accept("is"):
            self.accept("not")
            if self.accept("distinct"):
                self.expect("from")
                self.value(0)
            elif not self.accept("null", "true", "false", "unknown"):
                raise _ParseError(f"expected NULL, TRUE, FALSE, UNKNOWN or DISTINCT FROM after IS, found {self.tok.describe()}")
            return
        negated = self.accept("not")
        if self.accept("between"):
            self.value(0)
            self.expect("and")
            self.value(0)
        elif self.accept("in"):
            self.expect("(")
            self.list_of(self.expression, ")")
        elif self.accept("like", "ilike"):
            if self.accept("any", "some", "all"):
                self.expect("(")
                self.list_of(self.expression, ")")
            else:
                self.value(0)
                if self.accept("escape") and self.take().kind != "string":
                    raise _ParseError("ESCAPE takes a string")
        elif self.accept("rlike", "regexp"):
            self.value(0)
        elif negated:
            raise _ParseError(f"expected BETWEEN, IN, LIKE or RLIKE after NOT, found {self.tok.describe()}")

    def list_of(self, item: Any, close: str) -> None:
        if self.at(close):
            raise _ParseError(f"expected a value, found {self.tok.describe()}")
        item()
        while self.accept(","):
            item()
        self.expect(close)

    # -- valueExpression
    def value(self, level: int) -> None:
        if level == len(_BINARY_LEVELS):
            self.unary()
            return
        self.value(level + 1)
        while self.at(*_BINARY_LEVELS[level]):
            self.take()
            self.value(level + 1)

    def unary(self) -> None:
        if self.accept("-", "+", "~"):
            self.unary()
            return
        self.primary()
        while True:
            if self.accept("["):
                self.expression()
                self.expect("]")
            elif self.at(".") and self.peek().kind in ("word", "quoted"):
                self.take()
                self.take()
            else:
                return

    # -- primaryExpression
    def primary(self) -> None:
        tok = self.tok
        if tok.kind == "end":
            raise _ParseError("expected a value at the end of the expression")
        if tok.kind == "number":
            self.take()
            return
        if tok.kind == "string":
            while self.tok.kind == "string":
                self.take()
            return
        if tok.kind == "op" and tok.text == "(":
            if self.lambda_ahead():
                return
            self.take()
            if self.at("select", "with", "from"):
                raise _ParseError(f"subqueries are not allowed (position {tok.pos})")
            self.expression()
            while self.accept(","):  # a struct literal (a, b) is valid Spark
                self.expression()
            self.expect(")")
            return
        if tok.kind == "quoted":
            self.take()
            self.reference(tok.text[1:-1].replace("``", "`"))
            return
        if tok.kind != "word":
            raise _ParseError(f"expected a value at position {tok.pos}, found {tok.text!r}")
        word = tok.word
        nxt = self.peek()
        if word in ("null", "true", "false"):
            self.take()
        elif word == "case":
            self.case()
        elif word in ("date", "timestamp", "timestamp_ntz", "timestamp_ltz", "x") and nxt.kind == "string":
            self.take()
            self.take()
        elif word == "interval":
            self.interval()
        elif self.lambda_ahead():
            pass
        elif nxt.kind == "op" and nxt.text == "(":
            self.call()
        elif word in _NILADIC:
            self.take()
        else:
            self.take()
            self.reference(tok.text)

    def reference(self, name: str) -> None:
        lowered = name.lower()
        if not any(lowered in scope for scope in self.lambda_vars):
            self.columns.add(lowered)

    def lambda_ahead(self) -> bool:
        """A lambda `x -> ...` or `(x, y) -> ...` at the cursor: parse it and return True."""
        names: list[str] = []
        j = self.i
        if self.tokens[j].kind == "word":
            names, j = [self.tokens[j].word], j + 1
        elif self.tokens[j].text == "(" and self.tokens[j].kind == "op":
            j += 1
            while self.tokens[j].kind == "word":
                names.append(self.tokens[j].word)
                j += 1
                if self.tokens[j].text != ",":
                    break
                j += 1
            if self.tokens[j].text != ")" or not names:
                return False
            j += 1
        if not names or self.tokens[j].text != "->":
            return False
        self.i = j + 1
        self.lambda_vars.append(set(names))
        self.expression()
        self.lambda_vars.pop()
        return True

    def case(self) -> None:
        self.take()
        if not self.at("when"):
            self.expression()
        if not self.at("when"):
            raise _ParseError(f"expected 'when', found {self.tok.describe()}")
        while self.accept("when"):
            self.expression()
            self.expect("then")
            self.expression()
        if self.accept("else"):
            self.expression()
        self.expect("end")

    def interval(self) -> None:
        self.take()
        if self.tok.kind == "string" and self.peek().word not in _INTERVAL_UNITS:
            self.take()  # INTERVAL '1 day 2 hours'
            return
        units = 0
        while self.tok.kind in ("number", "string") or (self.at("-") and self.peek().kind == "number"):
            self.accept("-")
            self.take()
            if self.tok.word not in _INTERVAL_UNITS:
                raise _ParseError(f"expected an interval unit (day, hour, ...), found {self.tok.describe()}")
            self.take()
            units += 1
            if self.accept("to"):
                if self.tok.word not in _INTERVAL_UNITS:
                    raise _ParseError(f"expected an interval unit after TO, found {self.tok.describe()}")
                self.take()
        if not units:
            raise _ParseError(f"expected an interval value and unit, found {self.tok.describe()}")

    def call(self) -> None:
        name_tok = self.take()
        name = name_tok.word
        self.take()  # (
        if name in ("cast", "try_cast"):
            self.expression()
            self.expect("as")
            self.data_type()
            self.expect(")")
            return
        if name in ("extract", "date_part") and self.tok.kind == "word" and self.peek().word == "from":
            if self.tok.word not in _EXTRACT_FIELDS:
                raise _ParseError(f"unknown field {self.tok.text!r} to extract")
            self.take()
            self.take()
            self.expression()
            self.expect(")")
            return
        if name == "position" and self.special_args(("in",)):
            return
        if name in ("substring", "substr") and self.special_args(("from", "for")):
            return
        if name == "overlay" and self.special_args(("placing", "from", "for")):
            return
        if name == "trim" and (self.at("both", "leading", "trailing") or self.trim_from_ahead()):
            self.accept("both", "leading", "trailing")
            if not self.at("from"):
                self.value(0)
            self.expect("from")
            self.value(0)
            self.expect(")")
            return
        for kind in ("aggregate", "window", "generator", "table"):
            if name in SPARK_FUNCTIONS[kind]:
                raise _ParseError(f"{kind} function {name!r} is not allowed in a row-level expression")
        if name not in SPARK_FUNCTIONS["row"]:
            raise _ParseError(f"unknown function {name_tok.text!r} (not a Spark 3.5 built-in function)")
        if self.accept(")"):
            return
        self.accept("distinct", "all")
        self.list_of(self.expression, ")")
        if self.at("over", "filter", "within") or (self.at("ignore", "respect") and self.peek().word == "nulls"):
            raise _ParseError(f"window and aggregate clauses are not allowed in a row-level expression ({self.tok.describe()})")

    def trim_from_ahead(self) -> bool:
        depth, j = 0, self.i
        while self.tokens[j].kind != "end":
            text = self.tokens[j].text
            if text == "(":
                depth += 1
            elif text == ")":
                if depth == 0:
                    return False
                depth -= 1
            elif depth == 0 and self.tokens[j].word == "from":
                return True
            j += 1
        return False

    def special_args(self, words: tuple[str, ...]) -> bool:
        """`f(a IN b)`, `f(a FROM b FOR c)`...: parse when the first argument is followed by words[0]."""
        start = self.i
        self.value(0)
        if not self.at(words[0]):
            self.i = start
            return False
        for word in words:
            if self.accept(word):
                self.value(0)
        self.expect(")")
        return True

    def data_type(self) -> None:
        tok = self.take()
        name = tok.word
        if name in ("array", "map", "struct") and self.accept("<"):
            if name == "struct":
                while True:
                    if self.take().kind not in ("word", "quoted"):
                        raise _ParseError("expected a field name in struct<...>")
                    self.accept(":")
                    self.data_type()
                    if not self.accept(","):
                        break
            else:
                self.data_type()
                if name == "map":
                    self.expect(",")
                    self.data_type()
            self.expect(">")
            return
        if name == "interval":
            while self.tok.word in _INTERVAL_UNITS or self.at("to"):
                self.take()
            return
        if name in _SIMPLE_SQL_TYPES:
            return
        if name in _SIZED_SQL_TYPES or name in _DECIMAL_SQL_TYPES:
            if self.accept("("):
                self.list_of(self.integer, ")")
            elif name in _SIZED_SQL_TYPES:
                raise _ParseError(f"{name} needs a length, e.g. {name}(10)")
            return
        raise _ParseError(f"unknown type {tok.text!r} in CAST")

    def integer(self) -> None:
        if not (self.tok.kind == "number" and self.tok.text.isdigit()):
            raise _ParseError(f"expected a whole number, found {self.tok.describe()}")
        self.take()


def expression_columns(expression: str) -> set[str]:
    """The column names a Spark SQL expression references (lower case); raises ValueError when it does not parse,
    calls an unknown function or one that is not row-level."""
    try:
        return _ExpressionChecker(expression).check()
    except _ParseError as exc:
        raise ValueError(str(exc)) from None


def _check_expression(expression: Any, known: set[str], path: str) -> None:
    if not isinstance(expression, str) or not expression.strip():
        raise ContractError(path, f"expected a Spark SQL expression, got {expression!r}")
    try:
        columns = _ExpressionChecker(expression).check()
    except _ParseError as exc:
        message = str(exc)
        if not message.startswith(("unknown function", "unknown type", "aggregate", "window", "generator", "table", "comments")):
            message = f"does not parse: {message}"
        raise ContractError(path, f"{message}, in {expression!r}") from None
    unknown = sorted(columns - known)
    if unknown:
        raise ContractError(path, f"unknown column {unknown[0]!r} in expression {expression!r}")


# --------------------------------------------------------------------------------------------- regular expressions
_PYTHON_ONLY_REGEX: tuple[tuple[str, str], ...] = (
    (r"\(\?P<", "(?P<name>...) is Python-only; Java writes (?<name>...)"),
    (r"\(\?P=", "(?P=name) is Python-only; Java writes \\k<name>"),
    (r"\(\?P>", "(?P>name) is not understood by Java"),
    (r"\(\?#", "comment groups (?#...) are Python-only"),
    (r"\(\?\(", "conditional groups (?(id)yes|no) are Python-only"),
    (r"(?<!\\)\{,\d", "{,n} is Python-only; Java writes {0,n}"),
)
_JAVA_FLAGS = frozenset("idmsuxU")
# Java-only escapes, replaced by something Python reads the same way structurally before Python compiles the rest.
_JAVA_ONLY_ESCAPES = re.compile(
    r"\\[pP]\{[A-Za-z0-9_=]+\}|\\[pP][A-Za-z]|\\[hHvRXzGe]|\\x\{[0-9a-fA-F]+\}|\\c[A-Za-z]|\\k<([A-Za-z][A-Za-z0-9]*)>"
)
_JAVA_QUOTE = re.compile(r"\\Q(.*?)(?:\\E|$)", re.DOTALL)


def _check_pattern(pattern: str, path: str) -> None:
    """A check's pattern runs in Spark as Java `rlike`: reject what Java does not read the same way as Python, then
    check the structure with Python's compiler (after mapping Java-only escapes such as \\p{Lu} and \\k<name>)."""
    for needle, message in _PYTHON_ONLY_REGEX:
        found = re.search(needle, pattern)
        if found and not _escaped(pattern, found.start()):
            raise ContractError(path, f"{message}; the pattern runs in Spark with Java's rules, got {pattern!r}")
    for flags in re.finditer(r"\(\?([a-zA-Z]+)(?:-[a-zA-Z]+)?[:)]", pattern):
        bad = sorted(set(flags.group(1)) - _JAVA_FLAGS)
        if bad and not _escaped(pattern, flags.start()):
            raise ContractError(path, f"flag {bad[0]!r} is Python-only (Java knows {''.join(sorted(_JAVA_FLAGS))}), got {pattern!r}")
    translated = _JAVA_QUOTE.sub(lambda m: re.escape(m.group(1)), pattern)
    translated = _JAVA_ONLY_ESCAPES.sub(lambda m: f"(?P={m.group(1)})" if m.group(1) else "x", translated)
    translated = re.sub(r"\(\?<([A-Za-z][A-Za-z0-9]*)>", r"(?P<\1>", translated)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nested sets and set operations: valid Java, a FutureWarning in Python
            re.compile(translated)
    except re.error as exc:
        raise ContractError(path, f"invalid regular expression {pattern!r}: {exc}") from exc


def _escaped(text: str, index: int) -> bool:
    backslashes = 0
    while index - backslashes - 1 >= 0 and text[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _validate(contract: DatasetContract) -> None:
    _check_name(contract.name, "name")
    if not isinstance(contract.columns, tuple) or not contract.columns:
        raise ContractError("columns", "a contract needs at least one column")
    seen: dict[str, str] = {}

    def claim(name: str, path: str) -> None:
        if name in seen:
            raise ContractError(path, f"duplicate column name {name!r} (already used by {seen[name]})")
        seen[name] = path

    for i, col in enumerate(contract.columns):
        path = f"columns[{i}]"
        if not isinstance(col, ContractColumn):
            raise ContractError(path, f"expected a ContractColumn, got {col!r}")
        _check_name(col.name, f"{path}.name")
        claim(col.name, f"{path}.name")
        normalize_type(col.type, f"{path}.type")
        if not isinstance(col.nullable, bool):
            raise ContractError(f"{path}.nullable", f"expected true or false, got {col.nullable!r}")
        _check_column_checks(col, f"{path}.checks")
    for i, der in enumerate(contract.derived):
        path = f"derived[{i}]"
        if not isinstance(der, DerivedColumn):
            raise ContractError(path, f"expected a DerivedColumn, got {der!r}")
        _check_name(der.name, f"{path}.name")
        claim(der.name, f"{path}.name")
        normalize_type(der.type, f"{path}.type")
        if not isinstance(der.nullable, bool):
            raise ContractError(f"{path}.nullable", f"expected true or false, got {der.nullable!r}")
    part = contract.partition
    if not isinstance(part, DerivedColumn):
        raise ContractError("partition", f"expected a DerivedColumn, got {part!r}")
    _check_name(part.name, "partition.name")
    claim(part.name, "partition.name")
    normalize_type(part.type, "partition.type")
    if part.type in ("double", "timestamp"):
        raise ContractError("partition.type", f"partitioning by a {part.type} makes one directory per value")

    source = {c.name: c for c in contract.columns}
    derived_names = {d.name for d in contract.derived}
    known = set(source)
    for i, der in enumerate(contract.derived):
        _check_expression(der.expression, known, f"derived[{i}].expression")
        known.add(der.name)  # a derived column may use the ones before it
    _check_expression(part.expression, known, "partition.expression")
    if not contract.natural_key:
        raise ContractError("natural_key", "a natural key needs at least one column")
    if len(set(contract.natural_key)) != len(contract.natural_key):
        raise ContractError("natural_key", f"repeated column in {list(contract.natural_key)!r}")
    for i, key in enumerate(contract.natural_key):
        path = f"natural_key[{i}]"
        if key not in source:
            raise ContractError(path, f"unknown column {key!r}; natural key columns must be source columns")
        if source[key].nullable:
            raise ContractError(path, f"column {key!r} is nullable; natural key columns must be nullable: false")
    for i, order in enumerate(contract.dedup_order_by):
        path = f"dedup_order_by[{i}]"
        if not isinstance(order, OrderBy):
            raise ContractError(path, f"expected an OrderBy, got {order!r}")
        if order.column not in source and order.column not in derived_names:
            raise ContractError(path, f"unknown column {order.column!r}")
    if not isinstance(contract.description, str):
        raise ContractError("description", f"expected a string, got {contract.description!r}")
