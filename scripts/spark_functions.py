"""Print Spark's built-in function names by kind, as the literal that `pipeline_constructs/contract.py` commits.

The contract check knows which functions exist without starting Spark at synth; this script is how the committed
list was made, and `tests/runtime/test_contract_on_spark.py` compares the list with a real local Spark each run.

    python scripts/spark_functions.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "constructs"))

#: Spark's function groups that are not row-level: a derived column is computed row by row, so these fail analysis.
NOT_ROW_LEVEL = {"agg_funcs": "aggregate", "window_funcs": "window", "generator_funcs": "generator", "table_funcs": "table"}


def spark_functions(spark) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    """{'row': names, 'aggregate': names, ...} of the session's built-in functions whose names are identifiers
    (operators such as `+` or `||` are listed by Spark too, and are syntax here)."""
    jvm = spark._jvm
    catalog = spark._jsparkSession.sessionState().catalog()
    out: dict[str, set[str]] = {"row": set(), **{kind: set() for kind in NOT_ROW_LEVEL.values()}}
    for row in spark.sql("SHOW SYSTEM FUNCTIONS").collect():
        name = row[0]
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            continue
        info = catalog.lookupFunctionInfo(jvm.org.apache.spark.sql.catalyst.FunctionIdentifier.apply(name))
        out[NOT_ROW_LEVEL.get(info.getGroup(), "row")].add(name)
    return out


def main() -> None:
    from pipeline_constructs.runtime.local_runner import build_session

    spark = build_session(app_name="spark-functions", cores="1")
    found = spark_functions(spark)
    print(f"# Spark {spark.version}: SHOW SYSTEM FUNCTIONS, by ExpressionInfo group")
    for kind, names in found.items():
        words = sorted(names)
        lines = [" ".join(words[i : i + 8]) for i in range(0, len(words), 8)]
        body = "\n".join(f"    {line}" for line in lines)
        print(f'_SPARK_FUNCTIONS_{kind.upper()} = """\n{body}\n"""')
    spark.stop()


if __name__ == "__main__":
    main()
