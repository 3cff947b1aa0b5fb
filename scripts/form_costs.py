"""The cost arithmetic of `make compare`: list prices and assumptions from docs/prices.yaml, each form's shape from
its synthesized templates (scripts/compare_forms.py reads them), and nothing typed here but the formulas.

A day of uploads becomes runs: in upload mode one run per upload (the Glue Workflow batches up to its trigger's batch
size, or what arrives within its batch window); on an hourly schedule 24 runs, the hour's uploads in each (a run that
finds none still starts its first step, `assumptions.empty_run`). Each run costs the shared work (a crawl, the clean
job, the load's Athena scan, S3 requests, ledger writes: the same formula in every form) plus its form's
orchestration. Idle cost is what a form's stack bills with no upload: alarms, its own KMS keys, and for MWAA the
environment, its metadata database and the interface endpoints of the network it needs.

Standard library only (PyYAML to read the file), so the tests can feed it small hand-made prices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECONDS_PER_DAY = 86_400
MB_PER_TB = 1024 * 1024
PRICES_FILE = Path(__file__).resolve().parents[1] / "docs" / "prices.yaml"


@dataclass(frozen=True)
class Prices:
    """docs/prices.yaml: `price(name)` is a number, or a mapping (e.g. per MWAA class); `minimum(name)` its billing
    minimum in seconds (0 when the file names none); `assume(name)` one of the assumptions."""

    raw: Mapping[str, Any]

    def price(self, name: str, key: str | None = None) -> float:
        entry = self.raw["prices"][name]
        value = entry["value"]
        if key is not None:
            if key not in value:
                raise KeyError(f"docs/prices.yaml: prices.{name} has no price for {key!r} (it lists {', '.join(value)})")
            return float(value[key])
        return float(value)

    def minimum(self, name: str) -> float:
        return float(self.raw["prices"][name].get("minimum_seconds", 0))

    def assume(self, name: str) -> Any:
        return self.raw["assumptions"][name]

    @property
    def hours_per_month(self) -> float:
        return float(self.raw["hours_per_month"])


def load_prices(path: Path = PRICES_FILE) -> Prices:
    import yaml

    return Prices(yaml.safe_load(path.read_text()))


@dataclass(frozen=True)
class PollLoop:
    """A Wait/Describe/Choice loop of a state machine: `wait_seconds` per poll, `cycle` transitions per extra poll."""

    wait_seconds: int
    cycle: int


@dataclass(frozen=True)
class StateMachineShape:
    """Transitions of one run: `base` with one poll of each loop, plus `cycle` per further poll."""

    base: int
    crawl_loop: PollLoop
    load_loop: PollLoop
    crawls: bool = True
    """False when the run skips the crawl (its uploads cannot change the raw table): no crawl polls."""


@dataclass(frozen=True)
class FormShape:
    """What a form's templates say that the cost depends on."""

    form: str
    alarms: int
    kms_keys: int
    clean_dpus: float
    clean_concurrency: int
    """Runs of the clean job at once (its MaxConcurrentRuns)."""
    run_concurrency: int | None = None
    """Runs of the whole pipeline at once (Glue Workflow MaxConcurrentRuns, Airflow max_active_runs); None: no limit."""
    load_one_at_a_time: bool = True
    interface_endpoint_azs: int = 0
    mwaa_class: str | None = None
    mwaa_extra_workers: int = 0
    state_machine: StateMachineShape | None = None
    python_shell_dpus: float = 0.0
    serverless_tasks: tuple[str, ...] = ()
    batch_size: int = 1
    batch_window_seconds: int = 0
    sqs_queues_per_upload: int = 0
    lambda_invocations_per_upload: int = 0
    lambda_invocations_per_run: int = 0
    lambda_memory_mb: int = 0
    empty_run_kind: str = "none"
    """What an hourly run without uploads starts: 'transitions', 'task', 'pending_check' (a Python shell job of
    `pending_check_dpus`, billed its minimum) or 'none'."""
    pending_check_dpus: float = 0.0
    shared_crawl: bool = False
    """Runs that find a crawl under way wait for it instead of starting their own (read from each form's crawl step)."""
    skips_unchanged_crawl: bool = False
    """A run whose uploads cannot change the raw table skips the crawl: costed as never crawling (the schema is fixed)."""
    empty_run_transitions: int = 0
    """State transitions of an empty scheduled run, read from the definition (0: the assumption's)."""
    empty_run_lambda_invocations: int = 0


@dataclass(frozen=True)
class Durations:
    """Seconds of work of one run that takes `uploads` uploads (from the assumptions)."""

    crawl: float
    clean: float
    load: float
    rows_check: float

    def of(self, step: str) -> float:
        return {"crawl": self.crawl, "clean": self.clean, "load": self.load, "find_curated_rows": self.rows_check}[step]


def durations(prices: Prices, uploads: float) -> Durations:
    more = max(uploads - 1, 0)
    return Durations(
        crawl=float(prices.assume("crawl_seconds")),
        clean=prices.assume("clean_seconds_base") + prices.assume("clean_seconds_per_upload") * more,
        load=prices.assume("load_seconds_base") + prices.assume("load_seconds_per_upload") * more,
        rows_check=float(prices.assume("rows_check_seconds")),
    )


def billed_hours(seconds: float, minimum_seconds: float) -> float:
    return max(seconds, minimum_seconds) / 3600


def polls(seconds: float, wait_seconds: int) -> int:
    """Polls of a loop that waits `wait_seconds` before each check, for work taking `seconds` (at least one)."""
    return max(1, math.ceil(seconds / wait_seconds))


def transitions(shape: StateMachineShape, d: Durations) -> int:
    return (
        shape.base
        + ((polls(d.crawl, shape.crawl_loop.wait_seconds) - 1) * shape.crawl_loop.cycle if shape.crawls else 0)
        + (polls(d.load, shape.load_loop.wait_seconds) - 1) * shape.load_loop.cycle
    )


def lambda_cost(prices: Prices, invocations: float, memory_mb: int) -> float:
    gb_seconds = invocations * memory_mb / 1024 * prices.assume("lambda_seconds")
    return invocations * prices.price("lambda_per_million_requests") / 1e6 + gb_seconds * prices.price("lambda_per_gb_second")


def crawl_seconds(shape: FormShape, d: Durations) -> float:
    """The crawl's part of a run: none in a form that skips a crawl that cannot change the raw table."""
    return 0.0 if shape.skips_unchanged_crawl else d.crawl


def crawl_cost(prices: Prices, seconds: float) -> float:
    if seconds <= 0:
        return 0.0
    name = "glue_crawler_per_dpu_hour"
    return prices.assume("crawler_dpus") * billed_hours(seconds, prices.minimum(name)) * prices.price(name)


def shared_run_cost(prices: Prices, shape: FormShape, uploads: float) -> float:
    """The crawl, the clean job, the load's scan and the per-upload S3 and ledger requests of one run."""
    d = durations(prices, uploads)
    spark = "glue_spark_per_dpu_hour"
    clean = shape.clean_dpus * billed_hours(d.clean, prices.minimum(spark)) * prices.price(spark)
    scanned_mb = max(
        float(prices.raw["prices"]["athena_per_tb_scanned"].get("minimum_mb", 0)),
        prices.assume("athena_scan_mb_base") + prices.assume("athena_scan_mb_per_upload") * uploads,
    )
    athena = scanned_mb / MB_PER_TB * prices.price("athena_per_tb_scanned")
    s3 = uploads * (
        prices.assume("s3_puts_per_upload") * prices.price("s3_put_per_1000") / 1000
        + prices.assume("s3_gets_per_upload") * prices.price("s3_get_per_1000") / 1000
    )
    ledger = uploads * (
        prices.assume("ledger_writes_per_upload") * prices.price("dynamodb_on_demand_per_million_writes") / 1e6
        + prices.assume("ledger_reads_per_upload") * prices.price("dynamodb_on_demand_per_million_reads") / 1e6
    )
    return crawl_cost(prices, crawl_seconds(shape, d)) + clean + athena + s3 + ledger


def orchestration_run_cost(prices: Prices, shape: FormShape, uploads: float) -> float:
    """What the form itself bills for one run of `uploads` uploads (its environment is idle cost, not here)."""
    d = durations(prices, uploads)
    cost = 0.0
    if shape.state_machine is not None:
        cost += transitions(shape.state_machine, d) * prices.price("step_functions_standard_per_1000_transitions") / 1000
    if shape.python_shell_dpus:
        shell = "glue_python_shell_per_dpu_hour"
        cost += shape.python_shell_dpus * billed_hours(d.load, prices.minimum(shell)) * prices.price(shell)
    if shape.serverless_tasks:
        task = "mwaa_serverless_per_task_hour"
        cost += sum(billed_hours(d.of(name), prices.minimum(task)) for name in shape.serverless_tasks) * prices.price(task)
    sqs_requests = uploads * shape.sqs_queues_per_upload * prices.assume("sqs_requests_per_message")
    cost += sqs_requests * prices.price("sqs_standard_per_million_requests") / 1e6
    invocations = uploads * shape.lambda_invocations_per_upload + shape.lambda_invocations_per_run
    cost += lambda_cost(prices, invocations, shape.lambda_memory_mb)
    return cost


def empty_run_cost(prices: Prices, shape: FormShape) -> float:
    """An hourly run that finds no pending upload."""
    empty = prices.assume("empty_run")
    if shape.empty_run_kind == "transitions":
        count = shape.empty_run_transitions or empty["step_functions_transitions"]
        transitions_cost = count * prices.price("step_functions_standard_per_1000_transitions") / 1000
        return transitions_cost + lambda_cost(prices, shape.empty_run_lambda_invocations, shape.lambda_memory_mb)
    if shape.empty_run_kind == "task":
        task = "mwaa_serverless_per_task_hour"
        return billed_hours(empty["serverless_task_seconds"], prices.minimum(task)) * prices.price(task)
    if shape.empty_run_kind == "pending_check":
        shell = "glue_python_shell_per_dpu_hour"
        return shape.pending_check_dpus * billed_hours(empty["glue_pending_check_seconds"], prices.minimum(shell)) * prices.price(shell)
    return 0.0


def idle_per_month(prices: Prices, shape: FormShape) -> float:
    hours = prices.hours_per_month
    cost = shape.alarms * prices.price("cloudwatch_alarm_per_month") + shape.kms_keys * prices.price("kms_key_per_month")
    cost += shape.interface_endpoint_azs * hours * prices.price("vpc_interface_endpoint_per_az_hour")
    if shape.mwaa_class is not None:
        cost += hours * prices.price("mwaa_environment_per_hour", shape.mwaa_class)
        cost += hours * shape.mwaa_extra_workers * prices.price("mwaa_additional_worker_per_hour", shape.mwaa_class)
        cost += prices.assume("mwaa_metadata_db_gb") * prices.price("mwaa_metadata_db_per_gb_month")
    return cost


@dataclass(frozen=True)
class Day:
    """A day of `uploads` in `mode` ('upload' or 'hourly'): its runs and what they cost."""

    uploads: int
    mode: str
    runs: float
    uploads_per_run: float
    empty_runs: float
    total: float
    orchestration: float
    busiest_share: float
    busiest_step: str
    notes: list[str] = field(default_factory=list)


def runs_of_day(shape: FormShape, uploads: int, mode: str) -> tuple[float, float, float]:
    """(runs with uploads, uploads per run, runs without) of a day of `uploads` evenly spread uploads."""
    if mode == "hourly":
        working = min(24, uploads)
        return float(working), uploads / working, float(24 - working)
    if mode != "upload":
        raise ValueError(f"mode={mode!r}: use 'upload' or 'hourly'")
    if shape.batch_size > 1:
        # A batch opens at its first upload and closes at batch_size uploads or after the window.
        per_run = min(float(shape.batch_size), 1 + uploads / SECONDS_PER_DAY * shape.batch_window_seconds)
        return uploads / per_run, per_run, 0.0
    return float(uploads), 1.0, 0.0


def busiest(prices: Prices, shape: FormShape, runs: float, per_run: float) -> tuple[float, str]:
    """The largest share of a day that a one-at-a-time or capped step is busy: above 1, runs queue without end."""
    d = durations(prices, per_run)
    whole = crawl_seconds(shape, d) + d.clean + d.load + (d.rows_check if shape.serverless_tasks or shape.mwaa_class else 0)
    shares = {"clean job": runs * d.clean / (shape.clean_concurrency * SECONDS_PER_DAY)}
    if shape.load_one_at_a_time:
        shares["load"] = runs * d.load / SECONDS_PER_DAY
    if shape.run_concurrency is not None:
        shares["whole run"] = runs * whole / (shape.run_concurrency * SECONDS_PER_DAY)
    step = max(shares, key=lambda k: shares[k])
    return shares[step], step


def day_cost(prices: Prices, shape: FormShape, uploads: int, mode: str) -> Day:
    runs, per_run, empty = runs_of_day(shape, uploads, mode)
    idle_day = idle_per_month(prices, shape) * 24 / prices.hours_per_month
    orchestration = runs * orchestration_run_cost(prices, shape, per_run) + empty * empty_run_cost(prices, shape)
    total = idle_day + orchestration + runs * shared_run_cost(prices, shape, per_run)
    share, step = busiest(prices, shape, runs, per_run)
    return Day(uploads, mode, runs, per_run, empty, total, orchestration, share, step)


BURST_MODES = {"upload": 0, "every_5_minutes": 300, "hourly": 3600}
"""A burst's modes, each with the longest an upload waits for its run to start: per upload (none; the Glue Workflow
still fills its event batch), and a 5-minute or hourly schedule (an upload just after a run started waits a whole
interval; 5 minutes is the shortest schedule Glue takes, so every form can run it)."""


@dataclass(frozen=True)
class Burst:
    """`uploads` arriving together, in `mode`: the runs they cause, what those runs bill, and a floor of when the
    last upload is loaded (the serial steps' work added up; retries and queueing only add to it)."""

    uploads: int
    mode: str
    runs: int
    crawls: int
    cost: float
    last_loaded_after: float


def burst_cost(prices: Prices, shape: FormShape, uploads: int, mode: str) -> Burst:
    """A burst of `uploads` in `mode` (BURST_MODES). Per upload, a form that shares a crawl among the runs waiting
    for it (`shared_crawl`) crawls twice: once for the uploads that arrived
    before the first crawl began, once for the rest (twice per wave where runs at once are capped); every other run crawls for itself, one crawl at a time (a
    crawler runs one crawl at once). A scheduled mode takes the whole burst in one run."""
    if mode not in BURST_MODES:
        raise ValueError(f"mode={mode!r}: use one of {', '.join(BURST_MODES)}")
    per_run = float(uploads if mode != "upload" else max(1, shape.batch_size))
    runs = math.ceil(uploads / per_run)
    per_run = uploads / runs
    waves = math.ceil(runs / shape.run_concurrency) if shape.run_concurrency is not None else 1
    crawls = min(runs, 2 * waves) if shape.shared_crawl else runs  # each wave of runs at once shares at most two
    if shape.skips_unchanged_crawl:
        crawls = 0
    d = durations(prices, per_run)
    crawl = crawl_seconds(shape, d)
    cost = runs * (shared_run_cost(prices, shape, per_run) + orchestration_run_cost(prices, shape, per_run))
    cost -= (runs - crawls) * crawl_cost(prices, crawl)
    whole = crawl + d.clean + d.load
    serial = [
        crawls * crawl + d.clean + d.load,
        crawl + math.ceil(runs / shape.clean_concurrency) * d.clean + d.load,
        crawl + d.clean + (runs if shape.load_one_at_a_time else 1) * d.load,
    ]
    if shape.run_concurrency is not None:
        serial.append(math.ceil(runs / shape.run_concurrency) * whole)
    return Burst(uploads, mode, runs, crawls, cost, BURST_MODES[mode] + max(serial))
