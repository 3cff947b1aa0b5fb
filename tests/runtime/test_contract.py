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
        ("derived.0.expression", "(qty * price", r"^derived\[0\]\.expression: unbalanced parentheses"),
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
