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
snapshot) loses runs at the crawler and at the load: that run keeps the world honest.
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

from tests.asl_runner import BurstResult, definition_from_template, run_burst

BEFORE = Path(__file__).parent / "asl" / "fixtures" / "dev_state_machine_before_issue_12.json"
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
        "simulated_seconds": result.simulated_seconds,
    }


# What each seed does with today's definition: scripts/burst_scenario.py prints the same figures (README, "How failure
# is reported").
TODAY = {
    1: {"succeeded": 20, "failed": 0, "crawls_started": 2, "loads_committed": 20, "load_conflicts": 73, "simulated_seconds": 877},
    2: {"succeeded": 20, "failed": 0, "crawls_started": 2, "loads_committed": 20, "load_conflicts": 62, "simulated_seconds": 873},
    3: {"succeeded": 20, "failed": 0, "crawls_started": 2, "loads_committed": 20, "load_conflicts": 68, "simulated_seconds": 864},
}


@pytest.mark.parametrize("seed", sorted(TODAY))
def test_a_burst_of_twenty_uploads_all_load_with_at_most_two_crawls(definition: dict[str, Any], seed: int) -> None:
    result = run_burst(definition, uploads=UPLOADS, seed=seed)

    assert (result.succeeded, result.failed) == (UPLOADS, 0), result.failures_by_step()
    assert 1 <= result.crawls_started <= 2, result
    assert result.loads_committed == UPLOADS
    assert result.load_conflicts > 0  # the MERGEs did collide, and were retried
    assert outcome(result) == TODAY[seed]


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
        "load_conflicts": 24,
        "simulated_seconds": 599,
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
