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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class ColumnCheck:
    """Value checks of one column; a row failing any of them goes to quarantine with reason `check_<kind>:<column>`.

    - `min` / `max`: inclusive bounds. Numbers for int, bigint, double and decimal columns; ISO-8601 strings for
      date and timestamp columns.
    - `allowed_values`: the value must be one of these (compared after the cast to the column type).
    - `pattern`: a regular expression searched in the trimmed text (Java `rlike` semantics: anchor it with ^ and $
      to match the whole value). Keep to the syntax Python and Java share.
    - `min_length` / `max_length`: length in characters of string values (also sizes Redshift VARCHARs).
    """

    min: int | float | str | None = None
    max: int | float | str | None = None
    allowed_values: tuple[Any, ...] | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.allowed_values, list):
            object.__setattr__(self, "allowed_values", tuple(self.allowed_values))

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
    """A column computed by a Spark SQL expression over the source columns, cast to `type`."""

    name: str
    type: str
    expression: str
    description: str = ""

    def __post_init__(self) -> None:
        _canonical_type(self)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "expression": self.expression}
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
    _check_keys(data, path, required={"name", "type", "expression"}, optional={"description"})
    return DerivedColumn(
        name=_string(data["name"], f"{path}.name"),
        type=_string(data["type"], f"{path}.type"),
        expression=_string(data["expression"], f"{path}.expression"),
        description=_string(data.get("description", ""), f"{path}.description"),
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
        return parsed.replace(tzinfo=None) if parsed.tzinfo is None else parsed.timestamp()
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
        try:
            re.compile(checks.pattern)
        except re.error as exc:
            raise ContractError(f"{path}.pattern", f"invalid regular expression {checks.pattern!r}: {exc}") from exc
    for key in ("min_length", "max_length"):
        value = getattr(checks, key)
        if value is not None:
            if col.type != "string":
                raise ContractError(f"{path}.{key}", f"{key} applies to string columns, not {col.type}")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ContractError(f"{path}.{key}", f"expected a non-negative integer, got {value!r}")
    if checks.min_length is not None and checks.max_length is not None and checks.min_length > checks.max_length:
        raise ContractError(f"{path}.min_length", f"min_length {checks.min_length!r} is greater than max_length {checks.max_length!r}")


def _check_expression(expression: Any, path: str) -> None:
    if not isinstance(expression, str) or not expression.strip():
        raise ContractError(path, f"expected a Spark SQL expression, got {expression!r}")
    depth = 0
    quote: str | None = None
    for ch in expression:
        if quote:
            if ch == quote:
                quote = None
        elif ch in ("'", '"', "`"):
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                break
    if depth != 0 or quote:
        raise ContractError(path, f"unbalanced parentheses or quotes in expression {expression!r}")
    if ";" in expression:
        raise ContractError(path, f"an expression may not contain ';', got {expression!r}")


# Words of Spark SQL that are not column names; an identifier outside this set, outside quotes and not called as a
# function must name a known column. A light check that catches typos early; Spark analyses the real thing.
_SQL_WORDS = frozenset(
    (
        "and",
        "or",
        "not",
        "null",
        "true",
        "false",
        "is",
        "in",
        "like",
        "rlike",
        "ilike",
        "between",
        "case",
        "when",
        "then",
        "else",
        "end",
        "cast",
        "try_cast",
        "as",
        "distinct",
        "interval",
        "year",
        "years",
        "month",
        "months",
        "week",
        "weeks",
        "day",
        "days",
        "hour",
        "hours",
        "minute",
        "minutes",
        "second",
        "seconds",
        "string",
        "int",
        "integer",
        "bigint",
        "long",
        "smallint",
        "tinyint",
        "double",
        "float",
        "real",
        "boolean",
        "date",
        "timestamp",
        "timestamp_ntz",
        "decimal",
        "numeric",
        "varchar",
        "char",
        "binary",
    )
)
_IDENT_RE = re.compile(
    r"`([^`]*)`|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|([A-Za-z_][A-Za-z0-9_]*)(\s*\()?|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?[A-Za-z]*"
)


def expression_columns(expression: str) -> set[str]:
    """Identifiers in a Spark SQL expression that look like column references (lower-cased)."""
    names: set[str] = set()
    for match in _IDENT_RE.finditer(expression):
        quoted, word, call = match.group(1), match.group(2), match.group(3)
        if quoted is not None:
            names.add(quoted.lower())
        elif word is not None and call is None and word.lower() not in _SQL_WORDS:
            names.add(word.lower())
    return names


def _check_references(expression: str, known: set[str], path: str) -> None:
    unknown = sorted(expression_columns(expression) - known)
    if unknown:
        raise ContractError(path, f"unknown column {unknown[0]!r} in expression {expression!r}")


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
        _check_expression(der.expression, f"{path}.expression")
    part = contract.partition
    if not isinstance(part, DerivedColumn):
        raise ContractError("partition", f"expected a DerivedColumn, got {part!r}")
    _check_name(part.name, "partition.name")
    claim(part.name, "partition.name")
    normalize_type(part.type, "partition.type")
    if part.type in ("double", "timestamp"):
        raise ContractError("partition.type", f"partitioning by a {part.type} makes one directory per value")
    _check_expression(part.expression, "partition.expression")

    source = {c.name: c for c in contract.columns}
    derived_names = {d.name for d in contract.derived}
    known = set(source)
    for i, der in enumerate(contract.derived):
        _check_references(der.expression, known, f"derived[{i}].expression")
        known.add(der.name)  # a derived column may use the ones before it
    _check_references(part.expression, known, "partition.expression")
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
