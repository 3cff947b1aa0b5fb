"""The contract check against a real Spark 3.5.4 (Glue 5.0): the committed function list is Spark's, every shipped
contract's expressions and patterns run, what the check accepts Spark analyses, and a derived value that cannot be
computed quarantines its row."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from test_contract import INVALID_EXPRESSIONS, VALID_EXPRESSIONS, base

from pipeline_constructs.contract import SPARK_FUNCTIONS, DatasetContract
from pipeline_constructs.runtime.clean_transform import run_clean

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "contracts").glob("*.yaml"))


def test_the_committed_function_list_is_this_sparks(spark):
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from spark_functions import spark_functions

    assert spark.version == "3.5.4"
    found = spark_functions(spark)
    assert {kind: set(names) for kind, names in SPARK_FUNCTIONS.items()} == found


def _typed_row(spark, contract: DatasetContract, values: dict | None = None):
    """One row with the contract's source columns, typed (values given as SQL text, NULL by default)."""
    values = values or {}
    exprs = [f"cast({values.get(c.name, 'NULL')} as {c.type}) as {c.name}" for c in contract.columns]
    return spark.range(1).selectExpr(*exprs)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_contract_runs_its_expressions_and_patterns_on_spark(spark, path):
    from pyspark.sql import functions as F

    contract = DatasetContract.from_file(path)
    frame = _typed_row(spark, contract)
    for der in [*contract.derived, contract.partition]:
        frame = frame.withColumn(der.name, F.expr(der.expression).cast(der.type))
    frame.collect()  # analysis and execution
    patterns = [c.checks.pattern for c in contract.columns if c.checks.pattern is not None]
    if patterns:
        spark.range(1).select(*[F.lit("x").rlike(p).alias(f"p{i}") for i, p in enumerate(patterns)]).collect()


def _base_contract() -> DatasetContract:

    return DatasetContract.from_dict(base())


def _derive(spark, expression: str):
    """The expression as the transform uses it: a column added to the typed source row, then collected."""
    from pyspark.sql import functions as F

    contract = _base_contract()
    row = _typed_row(spark, contract, {"id": "'TX-1'", "qty": "2", "price": "1.50", "at": "'2024-05-01 10:00:00'"})
    return row.withColumn("derived", F.expr(expression)).collect()


@pytest.mark.parametrize("expression", VALID_EXPRESSIONS)
def test_what_the_check_accepts_spark_analyses(spark, expression):
    _derive(spark, expression)


#: Rejected by the check on purpose though Spark runs them in a derived column: an alias means nothing there, a
#: generator changes the number of rows (the conservation equation), a subquery runs a query per row, a comment
#: hides the rest of the expression.
STRICTER_THAN_SPARK = {"qty price", "explode(array(qty))", "(select 1)", "qty -- a comment", "qty /* a comment */"}


@pytest.mark.parametrize(("expression", "message"), INVALID_EXPRESSIONS, ids=[e for e, _ in INVALID_EXPRESSIONS])
def test_what_the_check_rejects_spark_rejects_or_is_stricter_on_purpose(spark, expression, message):
    from pyspark.errors import AnalysisException, ParseException

    if expression in STRICTER_THAN_SPARK:
        _derive(spark, expression)
    else:
        with pytest.raises((AnalysisException, ParseException)):
            _derive(spark, expression)


DERIVED_CONTRACT = {
    "name": "derived_demo",
    "columns": [
        {"name": "transaction_id", "type": "string", "nullable": False},
        {"name": "qty", "type": "int", "nullable": False},
        {"name": "price", "type": "decimal(10,2)", "nullable": True},
    ],
    "derived": [
        {"name": "scaled", "type": "decimal(12,2)", "expression": "price * 1000000"},
        {"name": "scaled_or_null", "type": "decimal(12,2)", "expression": "price * 1000000", "nullable": True},
        {"name": "as_date", "type": "date", "expression": "concat('2024-05-0', qty)", "nullable": True},
    ],
    "natural_key": ["transaction_id"],
    "partition": {"name": "day", "type": "date", "expression": "to_date('2024-05-01')"},
}


def test_a_derived_value_that_cannot_be_computed_quarantines_the_row(spark, tmp_path, conserved):
    contract = DatasetContract.from_dict(DERIVED_CONTRACT)
    src = tmp_path / "a.csv"
    src.write_text(
        "transaction_id,qty,price\n"
        "T1,1,1.00\n"  # fits: 1000000.00
        "T2,1,20000.00\n"  # 20000000000.00 does not fit decimal(12,2): cast_failed:scaled
        "T3,1,\n"  # price is NULL (allowed), so scaled is NULL: cannot be computed
        "T4,x,1.00\n"  # qty fails its own cast: that is the reason, not the derived columns
        "T5,13,1.00\n"  # as_date is NULL ('2024-05-013'), which the contract allows
    )
    result = run_clean(spark, contract, [str(src)], "r1", str(tmp_path / "curated"), str(tmp_path / "quarantine"), 1.0)
    curated, quarantine = conserved(result)
    assert [(c["transaction_id"], c["scaled"], c["as_date"]) for c in curated] == [
        ("T1", Decimal("1000000.00"), __import__("datetime").date(2024, 5, 1)),
        ("T5", Decimal("1000000.00"), None),
    ]
    assert sorted((q["raw_values"]["transaction_id"], q["reasons"]) for q in quarantine) == [
        ("T2", ["cast_failed:scaled"]),
        ("T3", ["cast_failed:scaled"]),
        ("T4", ["cast_failed:qty"]),
    ]
    assert result.reasons == {"cast_failed:scaled": 2, "cast_failed:qty": 1}
    assert result.rows_in == 5 == result.rows_out + result.rows_quarantined + result.duplicates_dropped
