"""`pipeline-local`: run the clean job's transform on a local SparkSession, with no AWS account.

    pipeline-local clean --contract contracts/retail_sales.yaml --input sales.csv [more.csv ...] --output .demo/out
    pipeline-local validate --contract contracts/retail_sales.yaml

`clean` writes `<output>/curated/run_id=<id>/<partition>=<value>/*.parquet` and `<output>/quarantine/run_id=<id>/`
exactly as the Glue job does, and prints the JSON summary as the last line of stdout. Exit status: 0 when the run
succeeded, 1 when it failed (rejected file, quarantine ratio above the limit, conservation), 2 for a bad contract
or bad arguments. `validate` checks a contract and prints its canonical JSON (what the construct deploys); a bad
contract exits 2 with one line on stderr naming the field, e.g. `derived[0].expression: does not parse: ...`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pipeline_constructs.contract import ContractError, DatasetContract


def build_session(app_name: str = "pipeline-local", driver_memory: str = "2g", cores: str = "*") -> object:
    """A quiet local SparkSession with the settings the Glue job runs with (`spark_settings`: adaptive execution on,
    200 shuffle partitions, the job's own settings), so a local run plans what Glue plans."""
    from pipeline_constructs.runtime.spark_settings import local_session

    return local_session(app_name=app_name, cores=cores, driver_memory=driver_memory)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline-local", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    clean = sub.add_parser("clean", help="run the clean transform on local CSV files")
    clean.add_argument("--contract", required=True, help="the dataset contract (.yaml, .yml or .json)")
    clean.add_argument("--input", required=True, nargs="+", help="CSV files, in input order (last wins on ties)")
    clean.add_argument("--output", required=True, help="directory for curated/ and quarantine/")
    clean.add_argument("--run-id", default="local", help="run id, the run_id=<id> directory level (default: local)")
    clean.add_argument("--max-quarantine-ratio", type=float, default=0.05, help="fail above this share of rows (default: 0.05)")
    clean.add_argument("--driver-memory", default="2g", help="local Spark driver memory (default: 2g)")
    validate = sub.add_parser("validate", help="validate a contract and print its canonical JSON")
    validate.add_argument("--contract", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        contract = DatasetContract.from_file(args.contract)
    except ContractError as exc:
        print(f"pipeline-local: bad contract {args.contract}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a contract error the checks missed still gets one line, not a traceback
        print(f"pipeline-local: bad contract {args.contract}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.command == "validate":
        print(contract.to_json(), end="")
        return 0

    from pipeline_constructs.runtime.clean_transform import run_clean

    missing = [p for p in args.input if not os.path.isfile(p)]
    if missing:
        print(f"pipeline-local: no such input file: {', '.join(missing)}", file=sys.stderr)
        return 2
    output = os.path.abspath(args.output)
    spark = build_session(driver_memory=args.driver_memory)
    result = run_clean(
        spark,  # type: ignore[arg-type]
        contract,
        [os.path.abspath(p) for p in args.input],
        run_id=args.run_id,
        curated_root=os.path.join(output, "curated"),
        quarantine_root=os.path.join(output, "quarantine"),
        max_quarantine_ratio=args.max_quarantine_ratio,
    )
    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    for message in result.errors:
        print(f"error: {message}", file=sys.stderr)
    print(result.summary_json(), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
