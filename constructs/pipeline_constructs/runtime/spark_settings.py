"""The Spark settings the clean job runs with, in one place: the Glue job, `pipeline-local`, the benchmark and the
tests' SparkSession all take them from here, so a plan that only Glue's settings produce is seen locally too.

Three groups:

- `GLUE_DEFAULTS`: what Glue 5.0 (Spark 3.5.4) runs with and that changes plans. Glue keeps Spark's defaults for
  these; they are written out so that no local session can drift from them (the suite once ran with adaptive
  execution off, and missed a hang that only adaptive execution produces).
- `JOB_SETTINGS`: the job's own SQL settings, set on the running session by `apply_job_settings` (on Glue the
  session exists before the script runs; these are all runtime-settable).
- `LOCAL_ONLY`: a local session's quiet and time-zone settings, which change no plan.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: Settings of Glue 5.0 that change plans (Spark 3.5.4 defaults, which Glue keeps).
GLUE_DEFAULTS: dict[str, str] = {
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.sql.adaptive.skewJoin.enabled": "true",
    "spark.sql.adaptive.localShuffleReader.enabled": "true",
    "spark.sql.shuffle.partitions": "200",
    "spark.sql.files.maxPartitionBytes": str(128 * 1024 * 1024),
    "spark.sql.autoBroadcastJoinThreshold": str(10 * 1024 * 1024),
}

#: Adaptive execution's rule that replaces a stage it finds empty by an empty relation. Spark 3.5.4 (Glue 5.0)
#: then drops the observed metrics of the operators it removed, and `Observation.get` waits for them forever
#: (apache/spark SPARK-54620, fixed after 3.5.4): a two-line file with a quoted line break hung the job this way.
EMPTY_RELATION_RULE = "org.apache.spark.sql.execution.adaptive.AQEPropagateEmptyRelation"
EXCLUDED_RULES_KEY = "spark.sql.adaptive.optimizer.excludedRules"

#: The clean job's own settings (see `apply_job_settings`).
JOB_SETTINGS: dict[str, str] = {
    # Non-ANSI casts: a failed cast is a null that the checks detect and name.
    "spark.sql.ansi.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    # Timestamps as INT64 micros, read the same by Athena, Redshift COPY and DuckDB.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.compression.codec": "snappy",
    # A re-run replaces its own run directory only.
    "spark.sql.sources.partitionOverwriteMode": "static",
    # The checks compile to one large method per row; the JVM never JIT-compiles methods above 8000 bytes of
    # bytecode (DontCompileHugeMethods), which made the transform ~3x slower. At 8000 Spark gives up whole-stage
    # codegen for just that part of the plan and uses its split, JIT-friendly expression code instead.
    "spark.sql.codegen.hugeMethodLimit": "8000",
    # The parsed rows are cached once and read three times; compressing the cache cost more than it saved.
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
}

#: A local session's settings that change no plan.
LOCAL_ONLY: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
}


def excluded_rules(current: str | None) -> str:
    """`current` (a comma-separated list of optimizer rules, maybe empty) with `EMPTY_RELATION_RULE` added once."""
    rules = [r.strip() for r in (current or "").split(",") if r.strip()]
    if EMPTY_RELATION_RULE not in rules:
        rules.append(EMPTY_RELATION_RULE)
    return ",".join(rules)


def apply_job_settings(spark: Any) -> None:
    """Set the job's own settings on a running session, and exclude the empty-relation rule (keeping any rule that
    is already excluded). Glue's defaults are left as the session has them."""
    for key, value in JOB_SETTINGS.items():
        spark.conf.set(key, value)
    spark.conf.set(EXCLUDED_RULES_KEY, excluded_rules(spark.conf.get(EXCLUDED_RULES_KEY, "")))


def session_settings() -> dict[str, str]:
    """Every setting a local session starts with: Glue's, the job's (with the rule exclusion) and the local ones."""
    return {**GLUE_DEFAULTS, **JOB_SETTINGS, EXCLUDED_RULES_KEY: excluded_rules(None), **LOCAL_ONLY}


def use_this_python() -> None:
    """Make a local Spark start its Python workers with this interpreter (the venv's), not the first `python3` on
    PATH; call before the SparkSession starts. Values already set in the environment win."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def local_session(app_name: str = "pipeline-local", cores: int | str = "*", driver_memory: str = "2g") -> Any:
    """A quiet local SparkSession with the settings the Glue job runs with (`session_settings()`). A test that
    needs another setting for speed sets it on the session for its run, and shows the result does not change."""
    use_this_python()
    os.environ.setdefault("TZ", "UTC")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(f"local[{cores}]").appName(app_name).config("spark.driver.memory", driver_memory)
    for key, value in session_settings().items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
