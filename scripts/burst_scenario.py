"""A burst of uploads, executed: 20 Step Functions executions started within 10 seconds against one scripted crawler
and one Iceberg table, in the local ASL interpreter, for the definition before issue 12 and today's.

    python scripts/burst_scenario.py [--uploads 20] [--seeds 1 2 3]

Today's definition is synthesized from this checkout (the dev stage, which loads into Athena); the one before issue 12
is tests/asl/fixtures/dev_state_machine_before_issue_12.json (the base commit's synthesized dev state machine). The
world (tests/asl/burst_scenario.mjs): a crawl takes 90-150 s, StartCrawler while one runs raises
CrawlerRunningException; the clean job takes 60-120 s; a MERGE takes 15-30 s and fails with ICEBERG_COMMIT_ERROR when
another MERGE committed after it began. Time is virtual (the definitions' own Wait and Retry durations, on a clock
that only the harness advances, with seeded randomness): the same seeds print the same table on any machine under any
load. `trace` is the start of a digest of every call the run made, with its simulated time and input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "constructs"), str(ROOT)]

from tests.asl_runner import definition_from_template, run_burst  # noqa: E402
from tests.cdk_app import pinned_context, synth_app  # noqa: E402

BEFORE = ROOT / "tests" / "asl" / "fixtures" / "dev_state_machine_before_issue_12.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)

    app = synth_app(pinned_context(**{"pipeline:env": "dev"}), nag=False)
    today = definition_from_template(app.template("dev", "StepFunctions"))
    definitions = {"before issue 12": json.loads(BEFORE.read_text()), "today": today}

    print(f"{args.uploads} uploads within 10 s, one shared crawler and Iceberg table (virtual clock)")
    print(
        f"{'definition':<16} {'seed':>4} {'crawls started':>14} {'succeeded':>9} {'failed':>6} {'MERGE conflicts':>15}"
        f" {'sim. s':>7} {'trace':>12}  failed at"
    )
    for label, definition in definitions.items():
        for seed in args.seeds:
            r = run_burst(definition, uploads=args.uploads, seed=seed, timeout=300)
            failed_at = ", ".join(f"{step}: {n}" for step, n in sorted(r.failures_by_step().items())) or "-"
            print(
                f"{label:<16} {seed:>4} {r.crawls_started:>14} {r.succeeded:>9} {r.failed:>6} {r.load_conflicts:>15}"
                f" {r.simulated_seconds:>7} {r.trace[:12]:>12}  {failed_at}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
