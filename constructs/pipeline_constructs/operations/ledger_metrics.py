"""What the ledger says, as CloudWatch metrics: the scheduled reconcile check (`scheduled_check.py`) publishes these
every time it runs, so the dashboard counts runs and uploads from the pipeline's own records, the same for every form,
and not from EventBridge rule matches (which its monitoring guide calls best-effort).

Published in the check's namespace, dimension `Environment` on every metric (standard library and boto3 only: this
module runs in the check's Lambda):

  Uploads               [Environment, Form, State]  uploads of the form in each ledger state among those updated within
                                                    the check's window: the figures `pipeline-ops status --since
                                                    <window>` prints, per form (a gauge, Maximum)
  RunsStarted           [Environment, Form]         runs that started in the interval the check closes
  RunsSucceeded         [Environment, Form]         runs that ended in that interval with no upload failed
  RunsFailed            [Environment, Form]         runs that ended in that interval with an upload failed
  RunDuration           [Environment, Form]         seconds from a run's start to its end, one value per run ended in
                                                    the interval (published as values, so p50 and p90 exist)
  StepFailures          [Environment, Form, Step]   failed runs of the interval by the step their upload failed at
  MinutesSinceLastLoad  [Environment]               minutes since the newest `loaded` record (the `by_state` index,
                                                    newest first); not published while the ledger holds none

The interval is the check's period (`every`), aligned to multiples of it since the epoch, so consecutive checks count
each run once: a check at 10:17 with an hourly period counts 09:00 to 10:00 and stamps its counts 09:00. Every form of
the environment gets every count, zeros included, so a graph shows a quiet hour as 0 rather than as a gap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..runtime.pipeline_plan import CLEAN, CRAWL, LOAD
from ..runtime.upload_ledger import FAILED, LOADED, STATE_INDEX, STATES, iso_utc
from .environment import Environment
from .uploads import _query_state, parse_time

ENVIRONMENT_DIMENSION, FORM_DIMENSION, STATE_DIMENSION, STEP_DIMENSION = "Environment", "Form", "State", "Step"
UPLOADS = "Uploads"
RUNS_STARTED, RUNS_SUCCEEDED, RUNS_FAILED = "RunsStarted", "RunsSucceeded", "RunsFailed"
RUN_DURATION = "RunDuration"
STEP_FAILURES = "StepFailures"
MINUTES_SINCE_LAST_LOAD = "MinutesSinceLastLoad"
STEPS = (CRAWL, CLEAN, LOAD)
"""The steps a failure is counted at (the ledger's `step` of a failed upload)."""
MAX_VALUES_PER_DATUM = 150
"""PutMetricData takes up to 150 distinct values in one datum's Values array (botocore's MetricDatum.Values)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def interval_closed_by(now: datetime, every: timedelta) -> tuple[datetime, datetime]:
    """The interval a check at `now` counts: [end - every, end), end being `now` rounded down to a multiple of `every`."""
    seconds = int(every.total_seconds())
    if seconds <= 0:
        raise ValueError(f"every={every!r}: the check's period must be positive")
    end = _EPOCH + timedelta(seconds=(int((now - _EPOCH).total_seconds()) // seconds) * seconds)
    return end - every, end


@dataclass
class _Run:
    form: str
    started: list[datetime] = field(default_factory=list)
    ended: list[datetime] = field(default_factory=list)
    open_uploads: int = 0
    failed_steps: list[str] = field(default_factory=list)
    failed: bool = False


def _runs(records: Iterable[Mapping[str, Any]], forms: Iterable[str]) -> dict[tuple[str, str], _Run]:
    """Every run the records name, by (form, run id): a batched run (the Glue workflow's) holds several uploads."""
    known = set(forms)
    runs: dict[tuple[str, str], _Run] = {}
    for record in records:
        runs_of_record = record.get("runs", [])
        latest = runs_of_record[-1]["run_id"] if runs_of_record else None
        for entry in runs_of_record:
            form = str(entry.get("form") or record.get("form") or "")
            if form not in known:
                continue
            run = runs.setdefault((form, str(entry["run_id"])), _Run(form=form))
            if entry.get("started_at"):
                run.started.append(parse_time(str(entry["started_at"])))
            if entry.get("ended_at"):
                run.ended.append(parse_time(str(entry["ended_at"])))
            else:
                run.open_uploads += 1
            if entry.get("outcome") == FAILED:
                run.failed = True
                # The record's step is this run's only while the run is the record's latest (a re-run moves it on).
                if entry["run_id"] == latest and record.get("state") == FAILED and record.get("step") in STEPS:
                    run.failed_steps.append(str(record["step"]))
    return runs


def _datum(name: str, dimensions: Mapping[str, str], timestamp: datetime, unit: str, **value: Any) -> dict[str, Any]:
    return {
        "MetricName": name,
        "Dimensions": [{"Name": key, "Value": item} for key, item in dimensions.items()],
        "Timestamp": timestamp,
        "Unit": unit,
        **value,
    }


def ledger_metric_data(
    dynamodb: Any, environment: Environment, *, now: datetime, every: timedelta, window: timedelta
) -> list[dict[str, Any]]:
    """The MetricData of one check (see the module docstring): one query of the state index per state, plus one for
    the newest loaded record."""
    start, end = interval_closed_by(now, every)
    since = min(start, now - window)
    records = [record for state in STATES for record in _query_state(dynamodb, environment.ledger_table, state, iso_utc(since))]
    forms = sorted(environment.forms)
    env = {ENVIRONMENT_DIMENSION: environment.name}
    data: list[dict[str, Any]] = []

    window_start = iso_utc(now - window)
    counted = {(form, state): 0 for form in forms for state in STATES}
    for record in records:
        key = (str(record.get("form", "")), str(record.get("state", "")))
        if key in counted and str(record.get("updated_at", "")) >= window_start:
            counted[key] += 1
    for (form, state), count in counted.items():
        data.append(_datum(UPLOADS, {**env, FORM_DIMENSION: form, STATE_DIMENSION: state}, now, "Count", Value=float(count)))

    runs = _runs(records, forms)
    for form in forms:
        mine = [run for (run_form, _), run in runs.items() if run_form == form]
        started = sum(1 for run in mine if run.started and start <= min(run.started) < end)
        ended = [run for run in mine if run.ended and not run.open_uploads and start <= max(run.ended) < end]
        dims = {**env, FORM_DIMENSION: form}
        data.append(_datum(RUNS_STARTED, dims, start, "Count", Value=float(started)))
        data.append(_datum(RUNS_SUCCEEDED, dims, start, "Count", Value=float(sum(1 for run in ended if not run.failed))))
        data.append(_datum(RUNS_FAILED, dims, start, "Count", Value=float(sum(1 for run in ended if run.failed))))
        steps = dict.fromkeys(STEPS, 0)
        for run in ended:
            if run.failed and run.failed_steps:
                steps[max(set(run.failed_steps), key=run.failed_steps.count)] += 1
        for step, count in steps.items():
            data.append(_datum(STEP_FAILURES, {**dims, STEP_DIMENSION: step}, start, "Count", Value=float(count)))
        durations: dict[float, int] = {}
        for run in ended:
            if run.started:
                seconds = round(max(0.0, (max(run.ended) - min(run.started)).total_seconds()), 3)
                durations[seconds] = durations.get(seconds, 0) + 1
        values = sorted(durations)
        for first in range(0, len(values), MAX_VALUES_PER_DATUM):
            chunk = values[first : first + MAX_VALUES_PER_DATUM]
            data.append(_datum(RUN_DURATION, dims, start, "Seconds", Values=chunk, Counts=[float(durations[value]) for value in chunk]))

    last = last_load(dynamodb, environment.ledger_table)
    if last is not None:
        minutes = max(0.0, (now - last).total_seconds() / 60)
        data.append(_datum(MINUTES_SINCE_LAST_LOAD, env, now, "None", Value=round(minutes, 1)))
    return data


def last_load(dynamodb: Any, table: str) -> datetime | None:
    """When the newest `loaded` record was written (its `updated_at`), or None when the ledger holds none."""
    answer = dynamodb.query(
        TableName=table,
        IndexName=STATE_INDEX,
        KeyConditionExpression="#state = :loaded",
        ExpressionAttributeNames={"#state": "state"},
        ExpressionAttributeValues={":loaded": {"S": LOADED}},
        ScanIndexForward=False,
        Limit=1,
    )
    items = answer.get("Items", [])
    if not items or "updated_at" not in items[0]:
        return None
    return parse_time(items[0]["updated_at"]["S"])
