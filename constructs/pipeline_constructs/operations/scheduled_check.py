"""The scheduled reconcile check: `pipeline-ops reconcile`, run inside the environment by EventBridge Scheduler
(hourly by default, `stacks/reconcile_check.py`), so a lost event is found without anyone asking.

It reads the environment from its stacks' outputs as the command does, checks every upload of the window
(`WINDOW_HOURS`) against the ledger and publishes the number not accounted for as the metric
`UploadsNotAccountedFor` (dimension `Environment`), which an alarm watches. With it, it publishes what the ledger
says about the interval it closes (`EVERY_HOURS`, its schedule's period): uploads by state, runs started, succeeded
and failed, their durations and failed steps per form, and the minutes since the last load (`ledger_metrics.py`). The findings themselves go to the
function's log, one JSON line each, and `pipeline-ops reconcile --env NAME` lists them again. A check whose counts do
not add up (checked != accounted + in flight + findings) fails rather than publish a wrong figure.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from .environment import load_environment
from .ledger_metrics import ledger_metric_data
from .uploads import ReconcileReport, reconcile

METRIC_NAME = "UploadsNotAccountedFor"
DIMENSION = "Environment"
MAX_DATA_PER_CALL = 1000
"""PutMetricData takes up to 1,000 metrics in one call."""
LOGGED_FINDINGS = 100
"""Findings written to the log per check (all are counted; `pipeline-ops reconcile` lists every one)."""

LOG = logging.getLogger(__name__)


class CheckCountsError(RuntimeError):
    """The check's counts do not add up; the message names them."""


def run_check(
    clients: dict[str, Any],
    *,
    environment_name: str,
    region: str,
    namespace: str,
    window: timedelta,
    now: datetime,
    every: timedelta = timedelta(hours=1),
) -> dict[str, Any]:
    """Reconcile the last `window` of uploads and publish the number not accounted for, with the ledger's metrics of
    the interval of length `every` that `now` closes. Returns the counts."""
    environment = load_environment(clients["cloudformation"], environment_name, region)
    report = reconcile(clients["s3"], clients["dynamodb"], environment, since=now - window, now=now)
    counts = _checked_counts(report)
    for finding in report.findings[:LOGGED_FINDINGS]:
        LOG.warning(
            json.dumps({"object": finding.upload.uri, "version": finding.upload.version, "form": finding.form, "problem": finding.problem})
        )
    data = [
        {
            "MetricName": METRIC_NAME,
            "Dimensions": [{"Name": DIMENSION, "Value": environment_name}],
            "Timestamp": now,
            "Value": counts["not_accounted"],
            "Unit": "Count",
        },
        *ledger_metric_data(clients["dynamodb"], environment, now=now, every=every, window=window),
    ]
    for first in range(0, len(data), MAX_DATA_PER_CALL):
        clients["cloudwatch"].put_metric_data(Namespace=namespace, MetricData=data[first : first + MAX_DATA_PER_CALL])
    counts["metrics_published"] = len(data)
    LOG.info(json.dumps(counts))
    return counts


def _checked_counts(report: ReconcileReport) -> dict[str, Any]:
    counts = {
        "checked": report.checked,
        "accounted": report.accounted,
        "in_flight": report.in_flight,
        "not_accounted": len(report.findings),
        "unchecked_forms": report.unchecked_forms,
        "since": report.since,
    }
    if report.checked != report.accounted + report.in_flight + len(report.findings):
        raise CheckCountsError(
            f"reconcile checked {report.checked} uploads but counted {report.accounted} accounted, {report.in_flight} in flight "
            f"and {len(report.findings)} not accounted for"
        )
    return counts


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point. Environment: PIPELINE_ENVIRONMENT, METRIC_NAMESPACE, WINDOW_HOURS, EVERY_HOURS (default 1;
    AWS_REGION is Lambda's)."""
    import boto3

    logging.getLogger().setLevel(logging.INFO)
    session = boto3.session.Session()
    clients = {name: session.client(name) for name in ("cloudformation", "s3", "dynamodb", "cloudwatch")}
    return run_check(
        clients,
        environment_name=os.environ["PIPELINE_ENVIRONMENT"],
        region=session.region_name,
        namespace=os.environ["METRIC_NAMESPACE"],
        window=timedelta(hours=int(os.environ["WINDOW_HOURS"])),
        now=datetime.now(UTC),
        every=timedelta(hours=int(os.environ.get("EVERY_HOURS", "1"))),
    )
