"""Scheduled runs of the Glue Workflow form, executed locally against moto (SQS inbox, Glue run properties, DynamoDB
ledger): the pending check that comes first (runtime/glue_pending_check.py), the clean job's claim
(runtime/workflow_inputs.claim_uploads) and the load job's ledger writes (runtime/glue_load_job.run_load).

What a schedule must get right: a run takes every pending upload in one claim; an empty run ends at once, before its
crawl, loading nothing and saying so; a failed run leaves its uploads for the next, which loads them once; the check
itself takes nothing. (That two runs never overlap is the workflow's MaxConcurrentRuns of 1, checked in the template:
tests/test_glue_workflow_form.py.)
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import ANY

from pipeline_constructs.runtime import glue_pending_check
from pipeline_constructs.runtime.glue_load_job import LoadFailed, resolve_args, run_load
from pipeline_constructs.runtime.upload_ledger import FAILED, LOADED, QUARANTINED, REJECTED, RUNNING, SKIPPED_EMPTY, Upload
from pipeline_constructs.runtime.workflow_inputs import EMPTY_RUN_PROPERTY, LOADING_PROPERTY, put_uploads
from tests.fake_aws import FAKE_AWS_REGION
from tests.test_glue_load_job import MERGE_TEMPLATE, _athena_workgroup, _stubbed
from tests.test_workflow_inputs import LANDING, PREFIX, WORKFLOW, Form


class StopRecordingGlue:
    """moto's Glue client, recording StopWorkflowRun (moto accepts the call but leaves the run's status alone; Glue
    stops the run: "jobs and crawlers that are not yet started never start", Glue developer guide)."""

    def __init__(self, glue: Any) -> None:
        self._glue = glue
        self.stopped: list[str] = []

    def stop_workflow_run(self, *, Name: str, RunId: str) -> None:  # noqa: N803 (boto3's argument names)
        assert self._glue.get_workflow_run(Name=Name, RunId=RunId)["Run"]["Status"] == "RUNNING"
        self._glue.stop_workflow_run(Name=Name, RunId=RunId)
        self.stopped.append(RunId)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._glue, name)


class ScheduledForm(Form):
    """The form's inbox, workflow and ledger, with the scheduled run's steps as its jobs run them."""

    def __init__(self) -> None:
        super().__init__()
        self.check_glue = StopRecordingGlue(self.glue)

    def check(self, run_id: str) -> dict[str, Any]:
        """The pending check job of the run (its main, as Glue runs it, with the form's arguments)."""
        argv = [
            *("--source_listing_prefix", f"s3://{LANDING}/{PREFIX}", "--inbox_queue_url", self.inbox),
            *("--ledger_table", self.ledger.table_name, "--ledger_ttl_days", "30"),
            *("--WORKFLOW_NAME", WORKFLOW, "--WORKFLOW_RUN_ID", run_id),
        ]
        return glue_pending_check.main(argv, clients={"sqs": self.sqs, "glue": self.check_glue, "dynamodb": self.ledger.client})

    def clean(self, run_id: str, *, rejected: list[Upload], empty: list[Upload], quarantined: list[Upload]) -> list[Upload]:
        """The clean job of the run: claims its uploads, ends the ones with nothing to load (as settle_workflow_run
        does) and hands the rest to the load (LOADING_PROPERTY). Returns what it claimed."""
        claimed = self.claim(run_id)
        for uploads, outcome in ((rejected, REJECTED), (empty, SKIPPED_EMPTY), (quarantined, QUARANTINED)):
            for upload in uploads:
                self.ledger.finish(upload, run_id=run_id, outcome=outcome)
        ended = {u.key for u in [*rejected, *empty, *quarantined]}
        put_uploads(
            self.glue, workflow_name=WORKFLOW, run_id=run_id, name=LOADING_PROPERTY, uploads=[u for u in claimed if u.key not in ended]
        )
        return claimed

    def load(self, run_id: str, athena: Any) -> dict[str, Any]:
        argv = [
            *("--athena_sql_template", MERGE_TEMPLATE, "--athena_workgroup", "pipeline", "--athena_database", "db"),
            *("--ledger_table", self.ledger.table_name, "--WORKFLOW_NAME", WORKFLOW, "--WORKFLOW_RUN_ID", run_id),
        ]
        return run_load(resolve_args(argv), {"glue": self.glue, "dynamodb": self.ledger.client, "athena": athena}, sleep=lambda _s: None)

    def stopped(self, run_id: str) -> bool:
        return run_id in self.check_glue.stopped

    def properties(self, run_id: str) -> dict[str, str]:
        return dict(self.glue.get_workflow_run_properties(Name=WORKFLOW, RunId=run_id)["RunProperties"])


@pytest.fixture
def form(fake_aws: None) -> ScheduledForm:
    return ScheduledForm()


def _failing_athena() -> Any:
    athena, stub = _stubbed("athena")
    stub.add_response(
        "start_query_execution", {"QueryExecutionId": "q-1"}, {"QueryString": ANY, "WorkGroup": ANY, "QueryExecutionContext": ANY}
    )
    stub.add_response(
        "get_query_execution",
        {"QueryExecution": {"QueryExecutionId": "q-1", "Status": {"State": "FAILED", "StateChangeReason": "ICEBERG_COMMIT_ERROR"}}},
    )
    stub.activate()
    return athena


def test_a_scheduled_run_with_nothing_pending_ends_at_its_check_says_so_and_loads_nothing(form: ScheduledForm) -> None:
    run = form.new_run()
    result = form.check(run)
    assert result["empty"] is True and result["pending"] == {"requested": 0, "failed": 0, "inbox": 0}
    assert form.stopped(run), "stopped before its crawl: no crawl, clean or load starts"
    assert form.properties(run)[EMPTY_RUN_PROPERTY].startswith("nothing pending (0 requested, 0 failed to retry, 0 in the inbox)")
    assert LOADING_PROPERTY not in form.properties(run)


def test_the_check_counts_what_waits_but_takes_nothing(form: ScheduledForm) -> None:
    uploads = [form.upload(f"2026/12/07/store-{i}.csv") for i in range(3)]
    run = form.new_run()
    result = form.check(run)
    assert result == {"pending": {"requested": 0, "failed": 0, "inbox": 3}, "empty": False}
    assert not form.stopped(run) and EMPTY_RUN_PROPERTY not in form.properties(run)
    assert form.waiting() == 3, "the inbox keeps every message for the clean job"
    assert all(form.ledger.get(u) is None for u in uploads), "no upload is taken by the check"
    assert sorted(u.key for u in form.claim(run)) == sorted(u.key for u in uploads)


def test_a_scheduled_run_takes_every_pending_upload_a_failed_load_leaves_them_for_the_next_which_loads_them_once(
    form: ScheduledForm,
) -> None:
    """The issue's scheduled burst: 12 uploads wait (2 bad files, 1 empty); one run takes all 12 in one claim, its load
    fails; the next run's check finds the 9 failed ones, takes them back and loads them; the third run is empty."""
    uploads = [form.upload(f"2026/12/07/store-{i}.csv") for i in range(12)]
    bad, empty, good = uploads[:2], uploads[2:3], uploads[3:]

    first = form.new_run()
    assert form.check(first)["pending"]["inbox"] == 12
    assert len(form.clean(first, rejected=bad, empty=empty, quarantined=[])) == 12, "one claim takes all of them"
    assert form.waiting() == 0
    with pytest.raises(LoadFailed, match="ICEBERG_COMMIT_ERROR"):
        form.load(first, _failing_athena())
    assert {form.record(u)["state"] for u in good} == {FAILED}
    assert [form.record(u)["state"] for u in bad + empty] == [REJECTED, REJECTED, SKIPPED_EMPTY]

    second = form.new_run()
    assert form.check(second) == {"pending": {"requested": 0, "failed": 9, "inbox": 0}, "empty": False}
    assert not form.stopped(first) and not form.stopped(second)
    retaken = form.clean(second, rejected=[], empty=[], quarantined=[])
    assert sorted(u.key for u in retaken) == sorted(u.key for u in good), "the failed run's uploads, and only those"
    assert {form.record(u)["state"] for u in good} == {RUNNING}
    athena = boto3.client("athena", region_name=FAKE_AWS_REGION)
    _athena_workgroup(athena)
    assert form.load(second, athena)["loaded_uploads"] == 9
    for upload in good:
        record = form.record(upload)
        assert record["state"] == LOADED and [r["outcome"] for r in record["runs"]] == [FAILED, LOADED], "loaded once"
    assert [form.record(u)["state"] for u in bad + empty] == [REJECTED, REJECTED, SKIPPED_EMPTY], "never taken again"

    third = form.new_run()
    assert form.check(third)["empty"] is True and form.stopped(third)
