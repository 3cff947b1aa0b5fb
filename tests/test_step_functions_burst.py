"""A burst of uploads in the Step Functions form (issue 12): 20 executions of the synthesized state machine started
within seconds, in aws-local-stepfunctions, against one shared scripted world (tests/asl/burst_scenario.mjs): one
crawler (a crawl takes 90-150 s; StartCrawler while one runs raises CrawlerRunningException), a clean job (60-120 s)
and an Iceberg table whose MERGEs (15-30 s) fail with ICEBERG_COMMIT_ERROR when another MERGE committed after they
began.

Time there is virtual (issue 21): every wait of the interpreter and of the world is a timer on one clock that only the
harness advances, when the event loop is idle, and all randomness comes from the seeded PRNG. A seed's outcome is
therefore one exact result on any machine under any load, and the tests assert it (a change to the definition, the
world or the interpreter that moves these numbers shows here, and the README's figures are updated with it).

The same world run with the definition from before issue 12 (tests/asl/fixtures/, taken from the base commit's
snapshot) loses runs at the crawler and at the load: that run keeps the world honest. The definition from before
issue 24 (no load lock) loads all 20, but its MERGEs collide 62 to 73 times, and of 200 uploads it loses 148 to
conflicts after their retries. Today each load takes the table's load lock (forms/step_functions_lock.py; the world
simulates the lock function's conditional write on its virtual clock): no MERGE ever runs beside another, and every
upload of 20 or 200 loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.asl_runner import BurstResult, definition_from_template, run_burst, run_scheduled_burst
from tests.cdk_app import pinned_context, synth_app

FIXTURES = Path(__file__).parent / "asl" / "fixtures"
BEFORE = FIXTURES / "dev_state_machine_before_issue_12.json"
BEFORE_LOCK = FIXTURES / "dev_state_machine_before_issue_24.json"
"""dev's definition at the commit before the load lock (synthesized there, placeholders as definition_from_template gives)."""
UPLOADS = 20


@pytest.fixture(scope="module")
def definition(templates: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return definition_from_template(templates[("dev", "StepFunctions")])


def outcome(result: BurstResult) -> dict[str, int]:
    return {
        "succeeded": result.succeeded,
        "failed": result.failed,
        "crawls_started": result.crawls_started,
        "loads_committed": result.loads_committed,
        "load_conflicts": result.load_conflicts,
        "max_concurrent_merges": result.max_concurrent_merges,
        "simulated_seconds": result.simulated_seconds,
    }


# What each seed does with today's definition, and how long the upload that waited longest for the load lock waited
# and the last upload waited from its upload to its load (seconds): scripts/burst_scenario.py prints the same figures
# (README, "How failure is reported").
TODAY = {
    1: {
        "succeeded": 20,
        "failed": 0,
        "crawls_started": 2,
        "loads_committed": 20,
        "load_conflicts": 0,
        "max_concurrent_merges": 1,
        "simulated_seconds": 1008,
    },
    2: {
        "succeeded": 20,
        "failed": 0,
        "crawls_started": 2,
        "loads_committed": 20,
        "load_conflicts": 0,
        "max_concurrent_merges": 1,
        "simulated_seconds": 936,
    },
    3: {
        "succeeded": 20,
        "failed": 0,
        "crawls_started": 2,
        "loads_committed": 20,
        "load_conflicts": 0,
        "max_concurrent_merges": 1,
        "simulated_seconds": 901,
    },
}
TODAY_WAITS = {1: (649, 1006), 2: (545, 931), 3: (508, 897)}
# The same seeds with the definition before the load lock (the figures this test asserted for it then).
BEFORE_LOCK_CONFLICTS = {1: (73, 877), 2: (62, 873), 3: (68, 864)}


@pytest.mark.parametrize("seed", sorted(TODAY))
def test_a_burst_of_twenty_uploads_all_load_one_merge_at_a_time_with_at_most_two_crawls(definition: dict[str, Any], seed: int) -> None:
    result = run_burst(definition, uploads=UPLOADS, seed=seed)

    assert (result.succeeded, result.failed) == (UPLOADS, 0), result.failures_by_step()
    assert 1 <= result.crawls_started <= 2, result
    assert result.loads_committed == UPLOADS
    assert result.load_conflicts == 0 and result.max_concurrent_merges == 1  # the loads waited for the lock instead
    assert result.lock_refusals > 0
    assert outcome(result) == TODAY[seed]
    assert (round(result.longest_lock_wait), round(result.last_loaded_after)) == TODAY_WAITS[seed]


@pytest.mark.parametrize("seed", sorted(BEFORE_LOCK_CONFLICTS))
def test_the_same_burst_made_merges_collide_before_the_load_lock(seed: int) -> None:
    result = run_burst(json.loads(BEFORE_LOCK.read_text()), uploads=UPLOADS, seed=seed)

    assert result.succeeded == UPLOADS and result.max_concurrent_merges > 1
    assert (result.load_conflicts, result.simulated_seconds) == BEFORE_LOCK_CONFLICTS[seed]


def test_a_burst_of_two_hundred_uploads_all_load_without_a_conflict(definition: dict[str, Any]) -> None:
    """200 uploads within 10 s: the last one is loaded 107 minutes after its upload (one MERGE at a time, each found
    finished by the 15 s polls); the longest wait for the lock (101 minutes) is longer than one lease (90), which is
    why a load waits for about two leases before its run fails (forms/step_functions_lock.py)."""
    result = run_burst(definition, uploads=200, seed=1, timeout=300)

    assert (result.succeeded, result.failed, result.loads_committed) == (200, 0, 200), result.failures_by_step()
    assert (result.load_conflicts, result.max_concurrent_merges, result.crawls_started) == (0, 1, 2)
    assert (result.simulated_seconds, round(result.longest_lock_wait), round(result.last_loaded_after)) == (6419, 6075, 6412)


def test_two_hundred_uploads_lost_three_quarters_of_their_loads_before_the_load_lock() -> None:
    result = run_burst(json.loads(BEFORE_LOCK.read_text()), uploads=200, seed=1, timeout=300)

    assert (result.succeeded, result.failed, result.load_conflicts) == (52, 148, 1946)
    # The failing state, as the failure reporter reads it from the history (the branch's conflict verdict).
    assert result.failures_by_step() == {"Load Commit Conflict (Load.IcebergCommitConflict)": 148}


def test_the_same_burst_broke_the_definition_before_issue_12() -> None:
    result = run_burst(json.loads(BEFORE.read_text()), uploads=UPLOADS, seed=1)

    assert result.failed > 0
    assert result.crawls_started > 2
    failed_at = result.failures_by_step()
    assert any(step.startswith("Start Crawler (Glue.CrawlerRunningException)") for step in failed_at), failed_at
    assert outcome(result) == {
        "succeeded": 7,
        "failed": 13,
        "crawls_started": 11,
        "loads_committed": 7,
        "load_conflicts": 4,
        "max_concurrent_merges": 3,
        "simulated_seconds": 1713,
    }
    assert failed_at == {"Start Crawler (Glue.CrawlerRunningException)": 9, "Load (States.TaskFailed)": 4}


def test_uploads_that_all_arrive_before_the_first_crawl_share_one_crawl(definition: dict[str, Any]) -> None:
    result = run_burst(definition, uploads=10, spread_seconds=0, seed=3)

    assert result.succeeded == 10
    assert result.crawls_started == 1
    assert outcome(result) == {
        "succeeded": 10,
        "failed": 0,
        "crawls_started": 1,
        "loads_committed": 10,
        "load_conflicts": 0,
        "max_concurrent_merges": 1,
        "simulated_seconds": 545,
    }


@contextmanager
def busy_cpus(count: int, seconds: float = 120) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` processes that spin on a CPU each, for at most `seconds` even if nothing stops them."""
    spin = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(count)]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait(timeout=30)


def test_the_same_seed_gives_the_same_burst_on_a_loaded_machine(definition: dict[str, Any]) -> None:
    quiet = run_burst(definition, uploads=UPLOADS, seed=1)
    # Every CPU busy with another process, and every call of the world 2 ms slower in real time: with the clock
    # following the wall clock (before issue 21) either changed the interleaving, and with it the number of conflicts.
    with busy_cpus(min(os.cpu_count() or 2, 16)) as hogs:
        loaded = run_burst(definition, uploads=UPLOADS, seed=1, handler_busy_ms=2, timeout=300)
        assert all(hog.poll() is None for hog in hogs), "a CPU hog ended before the loaded run did"

    assert loaded.calls > 0 and len(loaded.trace) == 64
    assert loaded == quiet  # every field, the digest of every call at its simulated time and of every outcome included


# --- the same burst on a schedule (issue 24) ------------------------------------------------------------------------------
SCHEDULES = {"micro-batch": ("rate(5 minutes)", 300), "hourly": ("cron(0 * * * ? *)", 3600)}
STAGE_OF = {"micro-batch": "dev", "hourly": "staging"}
"""Both definitions come from one synth: dev's settings as the dev stage (micro-batch) and as the staging stage (hourly)."""


@pytest.fixture(scope="module")
def scheduled_definitions() -> dict[str, dict[str, Any]]:
    """dev's Step Functions definition on each schedule (UTC), synthesized in one app (STAGE_OF)."""
    context = pinned_context()
    dev = {**context["pipeline:environments"]["dev"], "forms": ["step_functions"]}
    context["pipeline:environments"] = {
        STAGE_OF[mode]: {**dev, "trigger": {"step_functions": {"schedule": expression, "time_zone": "UTC"}}}
        for mode, (expression, _) in SCHEDULES.items()
    }
    app = synth_app(context, nag=False)
    return {mode: definition_from_template(app.template(STAGE_OF[mode], "StepFunctions")) for mode in SCHEDULES}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("uploads", [20, 200])
@pytest.mark.parametrize("mode", sorted(SCHEDULES))
def test_on_a_schedule_a_burst_loads_every_upload_with_one_merge_per_firing_that_took_uploads(
    scheduled_definitions: dict[str, dict[str, Any]], mode: str, uploads: int
) -> None:
    """The burst's uploads land within 10 s; the schedule first fires 1 ms before the last one lands (its worst case),
    so that one waits a whole interval. Each firing with uploads cleans them in one job run and loads once."""
    _, interval = SCHEDULES[mode]
    for seed in (1, 2, 3):
        result = run_scheduled_burst(scheduled_definitions[mode], interval_seconds=interval, uploads=uploads, seed=seed)
        print(
            f"{mode} {uploads} uploads seed {seed}: {len(result.executions)} executions, {result.crawls_started} crawls, "
            f"{result.merges_started} MERGEs, {result.load_conflicts} conflicts, {result.loaded} loaded, "
            f"clean runs {result.clean_runs}, last upload {round(result.last_loaded_after)} s"
        )
        assert result.loaded == uploads and result.failed_runs == 0, result.executions
        assert result.load_conflicts == 0 and result.max_concurrent_merges == 1
        with_uploads = result.runs_with_uploads
        assert result.merges_started == result.loads_committed == len(with_uploads)
        assert result.clean_runs == [run["claimed"] for run in with_uploads] and sum(result.clean_runs) == uploads
        assert {run["ending"] for run in result.executions if run["claimed"] == 0} <= {"Run Already Going", "Nothing To Run"}
        assert interval < result.last_loaded_after < 2 * interval + 600, "the last upload waits for the next firing"
