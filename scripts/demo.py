"""`make demo`: the pipeline on this machine, no AWS account needed (about a minute).

1. generate a retail sales CSV with realistic volume and a few bad rows and duplicates;
2. run the clean job's transform with the local runner (`pipeline-local clean`), exactly as the Glue job would;
3. run the Athena analysis query the project ships (sql/athena/daily_revenue_by_store.sql) on DuckDB over the
   curated Parquet, translated by sqlglot, and print the result.
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
sys.path.insert(0, str(ROOT / "scripts"))

from athena_on_duckdb import format_table, run_query  # noqa: E402
from make_sample_sales import generate  # noqa: E402

CONTRACT = ROOT / "contracts" / "retail_sales.yaml"
QUERY = ROOT / "sql" / "athena" / "daily_revenue_by_store.sql"


def _runner() -> tuple[list[str], dict[str, str]]:
    """The installed `pipeline-local` command, or the module from the source tree."""
    env = dict(os.environ)
    command = shutil.which("pipeline-local")
    if command:
        return [command], env
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "constructs"), env.get("PYTHONPATH")]))
    return [sys.executable, "-m", "pipeline_constructs.runtime.local_runner"], env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows to generate (default: 200000)")
    parser.add_argument("--workdir", default=str(ROOT / ".demo"), help="where the demo writes (default: .demo/)")
    args = parser.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()

    source = work / "landing" / "retail_sales_2024-05.csv"
    counts = generate(source, args.rows)
    bad = sum(v for k, v in counts.items() if k not in ("good", "duplicate"))
    print(
        f"1. generated {source.relative_to(ROOT) if source.is_relative_to(ROOT) else source}: {args.rows} rows "
        f"({bad} bad, {counts['duplicate']} duplicates)"
    )

    command, env = _runner()
    output = work / "output"
    argv = [*command, "clean", "--contract", str(CONTRACT), "--input", str(source), "--output", str(output), "--run-id", "demo"]
    print(f"2. {' '.join(Path(a).name if i == 0 else a for i, a in enumerate(argv))}")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if not done.stdout.strip():
        print(done.stderr[-3000:], file=sys.stderr)
        return done.returncode or 1
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        "   summary:",
        json.dumps(
            {k: summary[k] for k in ("status", "rows_in", "rows_out", "rows_quarantined", "duplicates_dropped", "quarantine_ratio")}
        ),
    )
    print("   quarantined by reason:", json.dumps(summary["reasons"]))
    print(
        f"   conservation: {summary['rows_in']} = {summary['rows_out']} + {summary['rows_quarantined']} + "
        f"{summary['duplicates_dropped']} -> {summary['conservation_ok']}"
    )
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return done.returncode

    columns, rows = run_query(QUERY, "retail_sales", summary["curated_path"])
    print(f"3. {QUERY.relative_to(ROOT)} (Athena SQL -> DuckDB via sqlglot) over {summary['curated_path']}:")
    print(format_table(columns, rows))
    print(f"demo finished in {time.perf_counter() - started:.0f} s; curated Parquet and quarantine are under {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
