"""A burst of uploads in the Step Functions form (issue 12): 20 executions of the synthesized state machine started
within seconds, in aws-local-stepfunctions, against one shared scripted world on a simulated clock
(tests/asl/burst_scenario.mjs): one crawler (a crawl takes 90-150 s; StartCrawler while one runs raises
CrawlerRunningException), a clean job (60-120 s) and an Iceberg table whose MERGEs (15-30 s) fail with
ICEBERG_COMMIT_ERROR when another MERGE committed after they began.

The same world run with the definition from before issue 12 (tests/asl/fixtures/, taken from the base commit's
snapshot) loses runs at the crawler and at the load: that run keeps the world honest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.asl_runner import definition_from_template, run_burst

BEFORE = Path(__file__).parent / "asl" / "fixtures" / "dev_state_machine_before_issue_12.json"
UPLOADS = 20


@pytest.fixture(scope="module")
def definition(templates: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return definition_from_template(templates[("dev", "StepFunctions")])


@pytest.mark.parametrize("seed", [1, 2])
def test_a_burst_of_twenty_uploads_all_load_with_at_most_two_crawls(definition: dict[str, Any], seed: int) -> None:
    result = run_burst(definition, uploads=UPLOADS, seed=seed)

    assert (result.succeeded, result.failed) == (UPLOADS, 0), result.failures_by_step()
    assert 1 <= result.crawls_started <= 2, result
    assert result.loads_committed == UPLOADS
    assert result.load_conflicts > 0  # the MERGEs did collide, and were retried


def test_the_same_burst_broke_the_definition_before_issue_12() -> None:
    result = run_burst(json.loads(BEFORE.read_text()), uploads=UPLOADS, seed=1, scale=400)

    assert result.failed > 0
    assert result.crawls_started > 2
    failed_at = result.failures_by_step()
    assert any(step.startswith("Start Crawler (Glue.CrawlerRunningException)") for step in failed_at), failed_at


def test_uploads_that_all_arrive_before_the_first_crawl_share_one_crawl(definition: dict[str, Any]) -> None:
    result = run_burst(definition, uploads=10, spread_seconds=0, seed=3)

    assert result.succeeded == 10
    assert result.crawls_started == 1
