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

The second table runs the same burst (same arrival instants, seeds and world) through the scheduled definition
(the dev stage with its Step Functions form on `rate(5 minutes)`, micro-batch, and on `cron(0 * * * ? *)`, hourly;
tests/asl/scheduled_burst.mjs): each firing starts one execution, whose claim takes the run lock and every upload
that has arrived (the ledger and the scheduled runs function simulated on the virtual clock), cleans them in one
clean job run (60-120 s plus 0.5 s per upload), loads once (one MERGE) and ends them loaded; the next firing takes
what arrived after. The first firing comes 1 ms before the last upload lands: the worst case for that upload, which
then waits a whole interval for the next firing (a firing that finds a run still going ends at once). Upload mode
there is today's definition of the first table: one execution, and one MERGE, per upload.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "constructs"), str(ROOT)]

from tests.asl_runner import definition_from_template, run_burst, run_scheduled_burst  # noqa: E402
from tests.cdk_app import pinned_context, synth_app  # noqa: E402

FIXTURES = ROOT / "tests" / "asl" / "fixtures"
SCHEDULES = {"micro-batch 5 min": ("rate(5 minutes)", 300), "hourly": ("cron(0 * * * ? *)", 3600)}


def scheduled_definition(expression: str) -> dict:
    """dev's Step Functions definition with the form started by `expression` (UTC) instead of by each upload."""
    context = pinned_context()
    dev = {**context["pipeline:environments"]["dev"], "forms": ["step_functions"]}
    dev["trigger"] = {"step_functions": {"schedule": expression, "time_zone": "UTC"}}
    context["pipeline:environments"] = {"dev": dev}
    return definition_from_template(synth_app(context, nag=False).template("dev", "StepFunctions"))


def print_modes(today: dict, uploads_counts: list[int], seeds: list[int]) -> None:
    """Upload mode (today's definition) against the scheduled definition at each schedule, in one table."""
    scheduled = {label: (scheduled_definition(expression), interval) for label, (expression, interval) in SCHEDULES.items()}
    print("\nThe same bursts in each mode: upload (one execution per upload), micro-batch and hourly (one per firing)")
    print(
        f"{'uploads':>7} {'mode':<17} {'seed':>4} {'executions':>10} {'crawls':>6} {'MERGEs':>6} {'MERGE conflicts':>15}"
        f" {'loaded':>6} {'failed':>6} {'last upload s':>13}"
    )
    for uploads in uploads_counts:
        for seed in seeds:
            r = run_burst(today, uploads=uploads, seed=seed, timeout=600)
            merges = r.loads_committed + r.load_conflicts
            print(
                f"{uploads:>7} {'upload':<17} {seed:>4} {len(r.executions):>10} {r.crawls_started:>6} {merges:>6}"
                f" {r.load_conflicts:>15} {r.succeeded:>6} {r.failed:>6} {round(r.last_loaded_after):>13}"
            )
        for label, (definition, interval) in scheduled.items():
            for seed in seeds:
                s = run_scheduled_burst(definition, interval_seconds=interval, uploads=uploads, seed=seed, timeout=600)
                print(
                    f"{uploads:>7} {label:<17} {seed:>4} {len(s.executions):>10} {s.crawls_started:>6} {s.merges_started:>6}"
                    f" {s.load_conflicts:>15} {s.loaded:>6} {uploads - s.loaded:>6} {round(s.last_loaded_after):>13}"
                )


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
    print_modes(today, args.uploads, args.seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
