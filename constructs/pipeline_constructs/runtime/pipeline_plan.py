"""The pipeline's steps, described once for every form: which steps, in which order, when each runs, its timeout and
retries, and what each writes into the upload ledger. Each form renders this description (the Step Functions
builder, the Glue triggers and jobs, the Airflow DAG, the MWAA Serverless YAML), and one test reads it back out of
every synthesized artifact, so the forms cannot drift apart.

Standard library only (and upload_ledger, which is too), Python 3.9 compatible: the DAG folder, the Glue jobs and the
construct library all import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

CRAWL, CLEAN, LOAD = "crawl", "clean", "load"
ALWAYS = "always"
ROWS_CURATED = "rows_curated"
"""`runs_when` of the load: only when the clean job curated at least one row (a header-only upload loads nothing)."""

try:
    from pipeline_constructs.runtime.upload_ledger import FAILED, LOADED, QUARANTINED, REJECTED, RUNNING, SKIPPED_EMPTY
except ImportError:  # beside the DAG or the Glue job, shipped as a top-level module
    from upload_ledger import FAILED, LOADED, QUARANTINED, REJECTED, RUNNING, SKIPPED_EMPTY  # type: ignore[import-not-found,no-redef]

__all__ = ["FAILED", "LOADED", "QUARANTINED", "REJECTED", "RUNNING", "SKIPPED_EMPTY"]


@dataclass(frozen=True)
class StepTiming:
    """How long a step may take and how often it is tried again after a failure that may pass."""

    timeout_seconds: int
    retries: int
    retry_delay_seconds: int
    max_retry_delay_seconds: int


@dataclass(frozen=True)
class PipelineStep:
    """One step: its ledger name, its title (Step Functions state names, failure messages), when it runs."""

    name: str
    title: str
    doc: str
    runs_when: str
    timing: StepTiming
    one_at_a_time: bool = False
    """True: at most one run executes this step at a time (the others' wait, their own steps before it still run in
    parallel). The load: runs that MERGE into one target table at once conflict (Iceberg's optimistic commits), and
    retries only make the loss rarer. Airflow renders it as the task's `max_active_tis_per_dag=1`; the Glue Workflow
    runs one whole run at a time; Step Functions takes a lease in the ledger table."""


DEFAULT_TIMINGS: dict[str, StepTiming] = {
    CRAWL: StepTiming(timeout_seconds=1_800, retries=2, retry_delay_seconds=60, max_retry_delay_seconds=300),
    CLEAN: StepTiming(timeout_seconds=4_500, retries=2, retry_delay_seconds=60, max_retry_delay_seconds=300),
    LOAD: StepTiming(timeout_seconds=1_800, retries=2, retry_delay_seconds=60, max_retry_delay_seconds=300),
}


def describe_pipeline(timings: Mapping[str, StepTiming] = DEFAULT_TIMINGS) -> tuple[PipelineStep, ...]:
    """crawl -> clean -> load, with the given timings (KeyError naming a step without one)."""
    return (
        PipelineStep(
            CRAWL, "Crawl", "Refresh the raw table's schema from the upload (a crawl that began after it counts).", ALWAYS, timings[CRAWL]
        ),
        PipelineStep(
            CLEAN,
            "Clean",
            "Run the Glue clean job: every line to a curated row or to quarantine; counts to the ledger.",
            ALWAYS,
            timings[CLEAN],
        ),
        PipelineStep(
            LOAD,
            "Load",
            "MERGE the run's curated rows into the target on the natural key (idempotent), one run at a time.",
            ROWS_CURATED,
            timings[LOAD],
            one_at_a_time=True,
        ),
    )


def outcome_without_load(rows_quarantined: int) -> str:
    """The ledger state of an upload whose run curated no row: quarantined when its rows went to quarantine, else
    skipped_empty (a header-only file)."""
    return QUARANTINED if rows_quarantined > 0 else SKIPPED_EMPTY


# What the ledger holds after each write of a run, as (state, step), for the four kinds of upload every form's local
# execution shows. The same sequence in every form.
LEDGER_TRANSITIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "good": ((RUNNING, CRAWL), (RUNNING, CLEAN), (RUNNING, LOAD), (LOADED, LOAD)),
    "empty": ((RUNNING, CRAWL), (RUNNING, CLEAN), (SKIPPED_EMPTY, CLEAN)),
    "quarantined": ((RUNNING, CRAWL), (RUNNING, CLEAN), (QUARANTINED, CLEAN)),
    "failed_at_load": ((RUNNING, CRAWL), (RUNNING, CLEAN), (RUNNING, LOAD), (FAILED, LOAD)),
}
