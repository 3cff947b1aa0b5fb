"""A burst of uploads, executed: 20 (and 200) Step Functions executions started within 10 seconds against one
scripted crawler and one Iceberg table, in the local ASL interpreter, for the definitions before issue 12, before
issue 24 (no load lock) and today's.

    python scripts/burst_scenario.py [--uploads 20 200] [--seeds 1 2 3]

Today's definition is synthesized from this checkout (the dev stage, which loads into Athena); the older ones are
tests/asl/fixtures/dev_state_machine_before_issue_{12,24}.json (the synthesized dev state machines of those commits).
Today each load takes the table's load lock first (the world simulates the lock function's conditional write with
its lease on the virtual clock). "max MERGEs" is the most MERGEs that ran on the table at one moment, "lock wait" the
longest any execution waited for the lock, "last upload" how long the upload loaded last waited from its upload to the
end of its load (seconds). The
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

FIXTURES = ROOT / "tests" / "asl" / "fixtures"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)

    app = synth_app(pinned_context(**{"pipeline:env": "dev"}), nag=False)
    today = definition_from_template(app.template("dev", "StepFunctions"))
    definitions = {
        "before issue 12": json.loads((FIXTURES / "dev_state_machine_before_issue_12.json").read_text()),
        "before issue 24": json.loads((FIXTURES / "dev_state_machine_before_issue_24.json").read_text()),
        "today": today,
    }

    for uploads in args.uploads:
        print(f"\n{uploads} uploads within 10 s, one shared crawler and Iceberg table (virtual clock)")
        print(
            f"{'definition':<16} {'seed':>4} {'crawls':>6} {'succeeded':>9} {'failed':>6} {'MERGE conflicts':>15} {'max MERGEs':>10}"
            f" {'lock wait':>9} {'last upload':>11} {'sim. s':>7} {'trace':>12}  failed at"
        )
        for label, definition in definitions.items():
            for seed in args.seeds:
                r = run_burst(definition, uploads=uploads, seed=seed, timeout=600)
                failed_at = ", ".join(f"{step}: {n}" for step, n in sorted(r.failures_by_step().items())) or "-"
                print(
                    f"{label:<16} {seed:>4} {r.crawls_started:>6} {r.succeeded:>9} {r.failed:>6} {r.load_conflicts:>15}"
                    f" {r.max_concurrent_merges:>10} {round(r.longest_lock_wait):>9} {round(r.last_loaded_after):>11}"
                    f" {r.simulated_seconds:>7} {r.trace[:12]:>12}  {failed_at}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
