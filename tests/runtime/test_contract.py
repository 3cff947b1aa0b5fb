"""The dataset contract: the shipped retail contract loads, round-trips, and every bad field is named."""

from __future__ import annotations

import copy
import json

import pytest

from pipeline_constructs.contract import (
    ColumnCheck,
    ContractColumn,
    ContractError,
    DatasetContract,
    DerivedColumn,
    OrderBy,
)


def base() -> dict:
    return {
        "name": "sales",
        "columns": [
            {"name": "id", "type": "string", "nullable": False},
            {"name": "qty", "type": "int", "nullable": False, "checks": {"min": 1, "max": 10}},
            {"name": "price", "type": "decimal(10,2)", "nullable": True},
            {"name": "at", "type": "timestamp", "nullable": False},
        ],
        "derived": [{"name": "total", "type": "decimal(12,2)", "expression": "qty * price"}],
        "natural_key": ["id"],
        "partition": {"name": "day", "type": "date", "expression": "to_date(at)"},
        "dedup_order_by": ["at desc"],
    }


def with_change(path: str, value) -> dict:
    """A copy of base() with one value replaced (path like 'columns.1.checks.min'); value None deletes."""
    data = copy.deepcopy(base())
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is None:
        del node[last]
    else:
        node[last] = value
    return data


def test_shipped_retail_contract_loads_with_its_schema(retail_contract_path):
    contract = DatasetContract.from_file(retail_contract_path)
    assert contract.name == "retail_sales"
    assert contract.natural_key == ("transaction_id",)
    assert contract.partition_column() == ("sale_date", "date")
    names = [n for n, _ in contract.output_columns()]
    assert names[:3] == ["transaction_id", "store_id", "sku"] and names[-1] == "revenue"
    assert "sale_date" not in names
    assert dict(contract.output_columns())["unit_price"] == "decimal(10,2)"
    assert contract.dedup_order_by == (OrderBy("sold_at", descending=True),)


def test_to_json_is_canonical_and_round_trips(tmp_path):
    contract = DatasetContract.from_dict(base())
    text = contract.to_json()
    assert text == DatasetContract.from_dict(json.loads(text)).to_json()
    assert json.loads(text) == json.loads(json.dumps(json.loads(text), sort_keys=True))
    assert list(json.loads(text)) == sorted(json.loads(text))
    path = tmp_path / "c.json"
    path.write_text(text)
    assert DatasetContract.from_file(path) == contract


def test_yaml_and_json_files_give_the_same_contract(tmp_path, retail_contract_path):
    yaml_contract = DatasetContract.from_file(retail_contract_path)
    path = tmp_path / "retail.json"
    path.write_text(yaml_contract.to_json())
    assert DatasetContract.from_file(path) == yaml_contract


def test_types_are_normalised():
    data = with_change("columns.2.type", "DECIMAL(10, 2)")
    assert DatasetContract.from_dict(data).columns[2].type == "decimal(10,2)"


def test_constructor_validates_too():
    with pytest.raises(ContractError, match=r"^natural_key\[0\]: unknown column 'nope'"):
        DatasetContract(
            name="x",
            columns=(ContractColumn("a", "string", False),),
            derived=(),
            natural_key=("nope",),
            partition=DerivedColumn("d", "date", "current_date()"),
        )
    assert ColumnCheck().is_empty()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("name", "Bad-Name", r"^name: invalid name 'Bad-Name'"),
        ("columns", [], r"^columns: a contract needs at least one column"),
        ("columns.1.type", "varchar", r"^columns\[1\]\.type: unsupported type 'varchar'; use one of string, int"),
        ("columns.2.type", "decimal(40,2)", r"^columns\[2\]\.type: decimal precision"),
        ("columns.1.name", "id", r"^columns\[1\]\.name: duplicate column name 'id'"),
        ("columns.1.name", "run_id", r"^columns\[1\]\.name: name 'run_id' is reserved"),
        ("columns.0.colour", "red", r"^columns\[0\]\.colour: unknown key 'colour'"),
        ("columns.0.nullable", "no", r"^columns\[0\]\.nullable: expected true or false, got 'no'"),
        ("natural_key", ["nope"], r"^natural_key\[0\]: unknown column 'nope'"),
        ("natural_key", ["price"], r"^natural_key\[0\]: column 'price' is nullable"),
        ("natural_key", [], r"^natural_key: a natural key needs at least one column"),
        ("partition.expression", "to_date(sold)", r"^partition\.expression: unknown column 'sold'"),
        ("partition.type", "varchar", r"^partition\.type: unsupported type 'varchar'"),
        ("partition.name", "qty", r"^partition\.name: duplicate column name 'qty'"),
        ("derived.0.expression", "qty * prise", r"^derived\[0\]\.expression: unknown column 'prise'"),
        ("derived.0.expression", "(qty * price", r"^derived\[0\]\.expression: does not parse: expected '\)', found the end"),
        ("dedup_order_by", ["at sideways"], r"^dedup_order_by\[0\]: expected '<column> asc\|desc'"),
        ("dedup_order_by", ["when desc"], r"^dedup_order_by\[0\]: unknown column 'when'"),
        ("columns.1.checks.min", 20, r"^columns\[1\]\.checks\.min: min 20 is greater than max 10"),
        ("columns.1.checks.min", "one", r"^columns\[1\]\.checks\.min: expected a finite number"),
        ("columns.1.checks.pattern", "([a-z", r"^columns\[1\]\.checks\.pattern: invalid regular expression"),
        ("columns.1.checks.colour", 1, r"^columns\[1\]\.checks\.colour: unknown key 'colour'"),
        ("columns.1.checks.allowed_values", [], r"^columns\[1\]\.checks\.allowed_values: expected a non-empty"),
        ("columns.1.checks.allowed_values", ["x"], r"^columns\[1\]\.checks\.allowed_values\[0\]: value 'x'"),
        ("columns.1.checks.max_length", 3, r"^columns\[1\]\.checks\.max_length: max_length applies to string"),
        ("columns.3.checks", {"min": "yesterday"}, r"^columns\[3\]\.checks\.min: expected an ISO timestamp"),
        ("colour", "red", r"^colour: unknown key 'colour'"),
        ("partition", None, r"^partition: required key is missing"),
    ],
)
def test_bad_contract_names_the_field_and_value(path, value, message):
    with pytest.raises(ContractError, match=message):
        DatasetContract.from_dict(with_change(path, value))


def test_bad_file_names_are_reported(tmp_path):
    bad = tmp_path / "c.txt"
    bad.write_text("{}")
    with pytest.raises(ContractError, match="must end in .yaml, .yml or .json"):
        DatasetContract.from_file(bad)
    broken = tmp_path / "c.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(ContractError, match="not valid YAML"):
        DatasetContract.from_file(broken)


def test_contract_module_imports_only_the_standard_library():
    import ast
    import sys
    from pathlib import Path

    import pipeline_constructs.contract as module

    tree = ast.parse(Path(module.__file__).read_text())
    top_level = {
        alias.name.split(".")[0]
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert top_level <= set(sys.stdlib_module_names) | {"__future__"}, top_level


# ------------------------------------------------------------------------------------ Spark SQL expressions (issue 12)
#: Valid Spark 3.5 SQL over base()'s columns (id string, qty int, price decimal, at timestamp). The Spark-marked test
#: in test_contract_on_spark.py runs each of them on a real SparkSession, so this list cannot drift from Spark.
VALID_EXPRESSIONS = [
    "qty * price",
    "qty div 2",
    "qty % 3 = 0 or qty <> 4",
    "-qty + ~qty",
    "case when qty > 1 then price else 0 end",
    "case qty when 1 then 'one' when 2 then 'two' end",
    "cast(at as date)",
    "try_cast(id AS decimal(12, 2))",
    "cast(qty as varchar(10))",
    "date_format(at, 'yyyy-MM')",
    "coalesce(price, 0BD) * qty",
    "price is not null and qty between 1 and 5",
    "not (qty in (1, 2)) and qty not between 7 and 8",
    "id like 'TX-%' or id rlike '^[0-9]+$' or id not ilike 'x%'",
    "at + interval 1 day",
    "at - INTERVAL '2' HOUR",
    "transform(array(qty, 2), x -> x + 1)[0]",
    "aggregate(array(qty), 0, (acc, x) -> acc + x)",
    "to_date(at)",
    "current_date()",
    "current_timestamp",
    "concat('a', \"b\", id)",
    "extract(year FROM at)",
    "trim(BOTH ' ' FROM id)",
    "substring(id FROM 1 FOR 2)",
    "position('x' IN id)",
    "price <=> null",
    "1.5e3D + 10L + 2S + 1Y + 1.5BD",
    "`qty` * 2",
    "if(qty > 1, true, false) is true",
    "DATE '2024-01-01' < to_date(at)",
    "qty & 1 | 2 ^ 3",
    "named_struct('a', qty).a",
    "upper(id) || lower(id)",
    "xxhash64(id)",
    "!(qty > 1)",
]


@pytest.mark.parametrize("expression", VALID_EXPRESSIONS)
def test_valid_spark_sql_is_accepted(expression):
    contract = DatasetContract.from_dict(with_change("derived.0.expression", expression))
    assert contract.derived[0].expression == expression


#: (expression, message) pairs that Spark rejects at analysis or parsing; the checker rejects them before deploy.
INVALID_EXPRESSIONS = [
    ("qty * * price", r"does not parse: expected a value at position 6, found '\*'"),
    ("qty +", r"does not parse: expected a value at the end"),
    ("qty price", r"does not parse: unexpected 'price' at position 4"),
    ("qty * nosuchfn(price)", r"unknown function 'nosuchfn'"),
    ("sum(qty)", r"aggregate function 'sum' is not allowed in a row-level expression"),
    ("row_number()", r"window function 'row_number' is not allowed"),
    ("explode(array(qty))", r"generator function 'explode' is not allowed"),
    ("cast(qty as varchar2)", r"unknown type 'varchar2'"),
    ("(select 1)", r"does not parse"),
    ("qty::int", r"does not parse"),
    ("qty -- a comment", r"comments are not allowed"),
    ("qty /* a comment */", r"comments are not allowed"),
    ("transform(array(qty), x -> y)", r"unknown column 'y'"),
    ("'unterminated", r"does not parse: unterminated string"),
    ("case when qty > 1 then 1", r"does not parse: expected 'end'"),
    ("qty in ()", r"does not parse"),
    ("qty; drop table t", r"does not parse: unexpected ';'"),
]


@pytest.mark.parametrize(("expression", "message"), INVALID_EXPRESSIONS)
def test_invalid_spark_sql_is_rejected_with_the_field_path(expression, message):
    with pytest.raises(ContractError, match=r"^derived\[0\]\.expression: .*" + message):
        DatasetContract.from_dict(with_change("derived.0.expression", expression))


def test_the_partition_expression_is_checked_too():
    with pytest.raises(ContractError, match=r"^partition\.expression: unknown function 'to_daet'"):
        DatasetContract.from_dict(with_change("partition.expression", "to_daet(at)"))


def test_function_names_are_case_insensitive_and_columns_too():
    contract = DatasetContract.from_dict(with_change("derived.0.expression", "TO_DATE(AT) IS NOT NULL AND QTY > 0"))
    assert contract.derived[0].expression.startswith("TO_DATE")


# ------------------------------------------------------------------------------------ regular expressions (issue 12)
@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"^(?P<code>[A-Z]+)$", r"\(\?P<name>\.\.\.\) is Python-only; Java writes \(\?<name>\.\.\.\)"),
        (r"^(?P<c>a)(?P=c)$", r"Python-only"),
        (r"^(?#comment)a$", r"comment groups \(\?#\.\.\.\) are Python-only"),
        (r"^(a)?(?(1)b|c)$", r"conditional groups .* are Python-only"),
        (r"^a{,3}$", r"\{,n\} is Python-only; Java writes \{0,n\}"),
        (r"^(?a)[a-z]+$", r"flag 'a' is Python-only"),
        (r"^[a-z", r"invalid regular expression"),
    ],
)
def test_python_only_or_broken_regexes_are_rejected(pattern, message):
    with pytest.raises(ContractError, match=r"^columns\[0\]\.checks\.pattern: .*" + message):
        DatasetContract.from_dict(with_change("columns.0.checks", {"pattern": pattern}))


@pytest.mark.parametrize("pattern", [r"^\p{Lu}+$", r"^(?<code>[A-Z]+)-\k<code>$", r"^\QTX-\E[0-9]{10}\z", r"^a++b$", r"^(?>ab)c$"])
def test_java_regex_syntax_is_accepted(pattern):
    DatasetContract.from_dict(with_change("columns.0.checks", {"pattern": pattern}))


# ------------------------------------------------------------------------------------ YAML dates (issue 16)
def test_unquoted_yaml_dates_and_timestamps_are_accepted_and_serialised(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: sales\n"
        "columns:\n"
        "  - {name: id, type: string, nullable: false}\n"
        "  - {name: day, type: date, nullable: false, checks: {min: 1992-01-01, max: 1998-12-31, allowed_values: [1995-03-15, 1996-01-02]}}\n"
        "  - {name: at, type: timestamp, nullable: false, checks: {min: 2000-01-01T00:00:00, max: 2030-01-01 12:00:00Z}}\n"
        "natural_key: [id]\n"
        "partition: {name: part_day, type: date, expression: to_date(at)}\n"
    )
    contract = DatasetContract.from_file(path)
    data = json.loads(contract.to_json())
    assert data["columns"][1]["checks"] == {"min": "1992-01-01", "max": "1998-12-31", "allowed_values": ["1995-03-15", "1996-01-02"]}
    assert data["columns"][2]["checks"] == {"min": "2000-01-01T00:00:00", "max": "2030-01-01T12:00:00+00:00"}
    assert DatasetContract.from_json(contract.to_json()) == contract


def test_a_yaml_date_on_a_number_column_is_rejected_with_the_path():
    with pytest.raises(ContractError, match=r"^columns\[1\]\.checks\.min: expected a finite number for a int column, got '1992-01-01'"):
        DatasetContract.from_dict(with_change("columns.1.checks", {"min": __import__("datetime").date(1992, 1, 1)}))


# ------------------------------------------------------------------------------------ derived nullability (issue 12)
def test_derived_columns_are_not_nullable_unless_declared():
    contract = DatasetContract.from_dict(base())
    assert contract.derived[0].nullable is False
    data = with_change("derived.0.nullable", True)
    nullable = DatasetContract.from_dict(data)
    assert nullable.derived[0].nullable is True
    assert DatasetContract.from_json(nullable.to_json()) == nullable
    with pytest.raises(ContractError, match=r"^derived\[0\]\.nullable: expected true or false, got 'yes'"):
        DatasetContract.from_dict(with_change("derived.0.nullable", "yes"))


def test_shipped_contracts_all_validate():
    from pathlib import Path

    shipped = sorted((Path(__file__).resolve().parents[2] / "contracts").glob("*.yaml"))
    assert shipped
    for path in shipped:
        DatasetContract.from_file(path)
