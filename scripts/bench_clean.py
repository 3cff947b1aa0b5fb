"""Benchmark of the clean transform (prints figures; not a timed test).

For each size (default 1 and 5 million rows) it generates a retail sales CSV (scripts/make_sample_sales.py, ~0.4%
bad rows, ~0.3% duplicates) and times, each in a fresh process with the same cores and memory:

- transform:   the project's clean transform end to end (run_clean: header checks, parse, casts, checks, dedup,
               partitioned Parquet + quarantine writes, counts, conservation check);
- checks, one pass (informative): the transform's own reading and checks, then the partitioned Parquet write of
               the valid rows, in one pass: no cache, no duplicate handling, no quarantine, no counts. The least
               the transform's rules and output layout cost on this engine, whatever else it is built of;
- spark copy:  a plain Spark CSV-to-Parquet copy of the same file with the contract's typed schema and no checks
               (the floor for the same engine; the target ratio is measured against it);
- spark copy, partitioned (informative): the same copy plus the contract's partition column, written partitioned
               like the curated output (`partitionBy`, so Spark sorts each task's rows by it);
- duckdb copy: DuckDB's CSV-to-Parquet copy of the same file (typed columns, bad rows skipped), same thread count.

Timing excludes starting the JVM / SparkSession. Peak memory is the kernel's high-water mark of resident memory
(VmHWM in /proc/<pid>/status) of the JVM plus the driver's Python process (DuckDB: the Python process), read at
the end of each phase: exact, no sampling. Linux only.

    python scripts/bench_clean.py [--rows 1000000 5000000] [--cores 2] [--workdir .bench]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "constructs"))
sys.path.insert(0, str(ROOT / "scripts"))
CONTRACT = ROOT / "contracts" / "retail_sales.yaml"
PHASES = ("transform", "checks_one_pass", "spark_copy", "spark_copy_partitioned", "duckdb_copy")


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _phase(name: str, csv_path: str, out: str, cores: int, memory: str) -> dict:
    """Run one phase in this (fresh) process; returns seconds, rows and peak memory."""
    from pipeline_constructs.contract import DatasetContract

    contract = DatasetContract.from_file(CONTRACT)
    shutil.rmtree(out, ignore_errors=True)
    if name == "duckdb_copy":
        import duckdb

        con = duckdb.connect()
        con.execute(f"SET threads = {cores}")
        types = {n: t.upper() for n, t in contract.output_columns() if n in {c.name for c in contract.columns}}
        columns = "{" + ", ".join(f"'{n}': '{t}'" for n, t in types.items()) + "}"
        os.makedirs(out, exist_ok=True)
        start = time.perf_counter()
        con.execute(
            f"COPY (SELECT * FROM read_csv('{csv_path}', header = true, columns = {columns}, ignore_errors = true))"
            f" TO '{out}/data.parquet' (FORMAT parquet, COMPRESSION snappy)"
        )
        seconds = time.perf_counter() - start
        rows = con.execute(f"SELECT count(*) FROM '{out}/data.parquet'").fetchone()[0]
        return {"seconds": seconds, "rows_out": rows, "peak_mb": _hwm_mb(os.getpid())}

    from pipeline_constructs.runtime.local_runner import build_session

    spark = build_session(app_name=f"bench-{name}", driver_memory=memory, cores=str(cores))
    jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
    if name == "transform":
        from pipeline_constructs.runtime.clean_transform import run_clean

        start = time.perf_counter()
        result = run_clean(spark, contract, [csv_path], "bench", f"{out}/curated", f"{out}/quarantine", 0.05)
        seconds = time.perf_counter() - start
        extra = {"rows_out": result.rows_out, "summary": result.summary(), "steps": result.timings}
    elif name == "checks_one_pass":
        from pipeline_constructs.runtime import clean_transform as ct

        ct.configure_session(spark)
        part = contract.partition.name
        start = time.perf_counter()
        header = ct.inspect_header(contract, csv_path, ct.read_head(spark, csv_path))
        valid = ct.classify(ct.read_source(spark, contract, header, 0), contract).filter(ct.is_valid())
        valid.select(*[n for n, _ in contract.output_columns()], part).write.mode("overwrite").partitionBy(part).parquet(out)
        seconds = time.perf_counter() - start
        extra = {"rows_out": spark.read.parquet(out).count()}
    else:
        from pyspark.sql import functions as F
        from pyspark.sql.types import StructField, StructType, _parse_datatype_string

        schema = StructType([StructField(c.name, _parse_datatype_string(c.type)) for c in contract.columns])
        start = time.perf_counter()
        typed = spark.read.csv(csv_path, header=True, schema=schema)
        if name == "spark_copy_partitioned":
            part = contract.partition
            typed.withColumn(part.name, F.expr(part.expression).cast(part.type)).write.mode("overwrite").partitionBy(part.name).parquet(out)
        else:
            typed.write.mode("overwrite").parquet(out)
        seconds = time.perf_counter() - start
        extra = {"rows_out": spark.read.parquet(out).count()}
    peak = _hwm_mb(jvm_pid) + _hwm_mb(os.getpid())
    spark.stop()
    return {"seconds": seconds, "peak_mb": peak, **extra}


def _run_phase(name: str, csv_path: Path, out: Path, cores: int, memory: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--phase",
        name,
        "--input",
        str(csv_path),
        "--out",
        str(out),
        "--cores",
        str(cores),
        "--driver-memory",
        memory,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--workdir", default=str(ROOT / ".bench"))
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(_phase(args.phase, args.input, args.out, args.cores, args.driver_memory)))
        return

    from make_sample_sales import generate

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(f"clean transform benchmark: {args.cores} cores, Spark driver memory {args.driver_memory}, {os.cpu_count()} CPUs on this machine")
    header = f"{'rows':>10} {'phase':<22} {'seconds':>8} {'rows/s':>10} {'peak RSS MB':>12} {'vs spark copy':>14}"
    lines = []
    for rows in args.rows:
        csv_path = work / f"retail_sales_{rows}.csv"
        if not csv_path.exists():
            t = time.perf_counter()
            generate(csv_path, rows, seed=7)
            print(f"generated {csv_path} ({csv_path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s")
        results = {p: _run_phase(p, csv_path, work / f"out_{p}_{rows}", args.cores, args.driver_memory) for p in PHASES}
        floor = results["spark_copy"]["seconds"]
        for p in PHASES:
            r = results[p]
            lines.append(
                f"{rows:>10} {p:<22} {r['seconds']:>8.1f} {rows / r['seconds']:>10,.0f} {r['peak_mb']:>12,.0f}"
                f" {r['seconds'] / floor:>13.2f}x"
            )
        s = results["transform"]["summary"]
        lines.append(
            f"{'':>10} transform counts: rows_in {s['rows_in']}, rows_out {s['rows_out']}, quarantined "
            f"{s['rows_quarantined']}, duplicates {s['duplicates_dropped']}, conservation_ok {s['conservation_ok']}"
        )
        lines.append(f"{'':>10} transform steps (s): {results['transform']['steps']}")
    print(header)
    print("\n".join(lines))
    print("peak RSS = VmHWM of the JVM + the driver's Python process (DuckDB: its Python process)")


if __name__ == "__main__":
    main()
