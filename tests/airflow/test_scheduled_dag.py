"""The MWAA DAG on a schedule, on a real Airflow 3.3.1 against moto: the DAG's own timetable, the claim of every pending
upload (runtime/workflow_inputs.claim_pending, through dag_ledger.ScheduledLedger), one crawl, one clean job run over
all of them, one load, and each upload's own outcome in the ledger.

The fakes are test_pipeline_dag.py's (`fake_aws`: moto, and Glue job runs that stand in for the clean job), with what a
scheduled form adds: the inbox queue the upload rule feeds (EventBridge S3 events, as the rule delivers them), and the
ledger table's `by_state` index, which the claim queries for failed uploads to retry. The clean job's stand-in does
what the real job does with `--settle_uploads` (runtime/glue_clean_job.py: per-file counts, `settle_workflow_run`),
read from the uploaded objects: a header that differs from the contract's is rejected, a header-only file ends
skipped_empty, the rest get their counts and stay for the load. (The job imports PySpark, which this virtualenv
does not have; tests/runtime/test_scheduled_clean_job.py runs the real job's settlement on a local Spark.)
"""

# ruff: noqa: F811  (tests take the imported `fake_aws` fixture as a parameter)
from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import INBOX_URL, LEDGER_TABLE, SCHEDULE, SCHEDULED_PREFIX, scheduled_config
from test_dag_ledger import fail_athena_queries
from test_pipeline_dag import (
    CURATED,
    GOOD_COUNTS,
    LANDING,
    FakeAws,
    fake_aws,  # noqa: F401  (the moto fixture, registered here; tests take it as a parameter)
    task_states,
)
from upload_ledger import FAILED, LOADED, REJECTED, RUNNING, SKIPPED_EMPTY, Upload, UploadLedger

DAG_ID = "sales_scheduled_pipeline"
CONTRACT_HEADER = "id,amount"
TASKS = ("claim_uploads", "crawl", "clean", "find_curated_rows", "load")


class ScheduledAws:
    """fake_aws plus the scheduled form's inbox and the ledger's state index; the clean job settles each upload."""

    def __init__(self, fake: FakeAws) -> None:
        self.fake = fake
        self.s3, self.sqs, self.dynamodb = fake.s3, fake.sqs, fake.dynamodb
        self.dynamodb.delete_table(TableName=LEDGER_TABLE)
        self.dynamodb.create_table(  # the UploadLedger construct's keys and its by_state index
            TableName=LEDGER_TABLE,
            KeySchema=[{"AttributeName": "object", "KeyType": "HASH"}, {"AttributeName": "version", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "object", "AttributeType": "S"},
                {"AttributeName": "version", "AttributeType": "S"},
                {"AttributeName": "state", "AttributeType": "S"},
                {"AttributeName": "updated_at", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by_state",
                    "KeySchema": [{"AttributeName": "state", "KeyType": "HASH"}, {"AttributeName": "updated_at", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        self.s3.put_bucket_versioning(Bucket=LANDING, VersioningConfiguration={"Status": "Enabled"})
        assert self.sqs.create_queue(QueueName="sales-mwaa-inbox")["QueueUrl"] == INBOX_URL
        self.ledger = UploadLedger(self.dynamodb, LEDGER_TABLE, form="mwaa")
        self.clean_runs: list[dict[str, str]] = []
        fake.run_clean_job = self.settle  # type: ignore[method-assign]  # the patched StartJobRun calls it

    def upload(self, name: str, text: str) -> Upload:
        """Upload a file and deliver its event to the inbox, as the upload rule does."""
        key = SCHEDULED_PREFIX + name
        answer = self.s3.put_object(Bucket=LANDING, Key=key, Body=text.encode())
        obj = {"key": key, "size": len(text), "etag": answer["ETag"].strip('"'), "version-id": answer["VersionId"]}
        self.sqs.send_message(QueueUrl=INBOX_URL, MessageBody=json.dumps({"detail": {"bucket": {"name": LANDING}, "object": obj}}))
        return Upload(LANDING, key, answer["VersionId"], obj["etag"])

    def settle(self, arguments: dict[str, str]) -> None:
        """The clean job with --settle_uploads: each named upload ends rejected (header not the contract's) or
        skipped_empty (no row), or gets its counts and stays running for the load; Parquet when any row is curated."""
        self.clean_runs.append(arguments)
        assert arguments["--settle_uploads"] == "true"
        run_id = arguments["--run_id"]
        uris, versions = json.loads(arguments["--source_uris"]), json.loads(arguments["--source_versions"])
        ledger = UploadLedger(self.dynamodb, arguments["--ledger_table"], form=arguments["--pipeline_form"], ttl_days=400)
        curated = 0
        for uri, version in zip(uris, versions, strict=True):
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            upload = Upload(bucket, key, version_id=version)
            lines = self.s3.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read().decode().splitlines()
            if lines[0] != CONTRACT_HEADER:
                ledger.counts(upload, run_id=run_id, counts={"rows_out": 0, "quarantine_uri": f"s3://quarantine/{run_id}/{key}"})
                ledger.finish(upload, run_id=run_id, outcome=REJECTED)
            elif len(lines) == 1:
                ledger.counts(upload, run_id=run_id, counts={**GOOD_COUNTS, "rows_in": 0, "rows_out": 0, "lines_read": 1})
                ledger.finish(upload, run_id=run_id, outcome=SKIPPED_EMPTY)
            else:
                ledger.counts(upload, run_id=run_id, counts=GOOD_COUNTS)
                curated += 1
        if curated:
            key = f"sales/runs/run_id={run_id}/sale_date=2026-12-04/part-00000.snappy.parquet"
            self.s3.put_object(Bucket=CURATED, Key=key, Body=b"PAR1")

    def waiting(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=INBOX_URL, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def record(self, upload: Upload) -> dict[str, Any]:
        record = self.ledger.get(upload)
        assert record is not None, upload
        return record


@pytest.fixture
def scheduled_aws(fake_aws: FakeAws) -> Iterator[ScheduledAws]:
    yield ScheduledAws(fake_aws)


_TICKS = itertools.count()


def scheduled_run(dagbag: Any, hour: int) -> Any:
    """One run of the scheduled DAG at `hour` (UTC) of its own day: `dag.test()` runs the DAG's tasks as the
    scheduler's run would (the claim needs no conf). Each call gets a day of its own, so no two runs share an id."""
    tick = datetime(2026, 1, 1, hour, 30, tzinfo=UTC) + timedelta(days=next(_TICKS))
    return dagbag.dags[DAG_ID].test(logical_date=tick, run_after=tick)


def twelve_uploads(aws: ScheduledAws) -> tuple[list[Upload], list[Upload], list[Upload]]:
    """The issue's burst: 2 bad files (a header that is not the contract's), 1 empty (header only), 9 good ones."""
    bad = [aws.upload(f"bad-{n}.csv", "store,sku\nS1,K1\n") for n in range(2)]
    empty = [aws.upload("empty.csv", CONTRACT_HEADER + "\n")]
    good = [aws.upload(f"store-{n}.csv", f"{CONTRACT_HEADER}\n{n},2.50\n") for n in range(9)]
    return bad, empty, good


def test_the_scheduled_dag_runs_on_the_configured_cron_in_its_zone_without_catchup_one_run_at_a_time(dagbag: Any) -> None:
    from airflow.sdk import CronTriggerTimetable
    from airflow.serialization.serialized_objects import DagSerialization

    dag = dagbag.dags[DAG_ID]
    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert (
        (dag.timetable.expression, str(dag.timetable.timezone))
        == (SCHEDULE["cron"], SCHEDULE["time_zone"])
        == ("30 6 * * 1-5", "Europe/Paris")
    )
    assert dag.catchup is False and dag.max_active_runs == 1
    assert scheduled_config()["max_active_runs"] > 1, "upload mode's setting does not apply on a schedule"
    assert [t.task_id for t in dag.topological_sort()] == list(TASKS)
    assert type(dag.get_task("claim_uploads")).__name__ == "ShortCircuitOperator"
    assert dag.get_task("load").max_active_tis_per_dag == 1
    # The timetable as the scheduler holds it (the serialized DAG): 06:30 on weekdays in Paris, i.e. 05:30 UTC in
    # winter (CET) and 04:30 UTC in summer (CEST); nothing on Saturday and Sunday.
    timetable = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable
    after_friday = timetable.next_dagrun_info(
        last_automated_data_interval=None, restriction=_restriction(datetime(2026, 12, 4, 6, tzinfo=UTC))
    )
    assert after_friday.run_after == datetime(2026, 12, 7, 5, 30, tzinfo=UTC)
    in_summer = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=_restriction(datetime(2026, 7, 1, 0, tzinfo=UTC)))
    assert in_summer.run_after == datetime(2026, 7, 1, 4, 30, tzinfo=UTC)


def _restriction(earliest: datetime) -> Any:
    """The first tick at or after `earliest` (catchup here only lets the question be asked about another date)."""
    from airflow.timetables.base import TimeRestriction

    return TimeRestriction(earliest=earliest, latest=None, catchup=True)


def test_a_scheduled_run_takes_all_12_pending_uploads_cleans_once_loads_once_and_records_each_outcome(
    dagbag: Any, scheduled_aws: ScheduledAws
) -> None:
    bad, empty, good = twelve_uploads(scheduled_aws)

    dag_run = scheduled_run(dagbag, 5)

    assert str(dag_run.state) == "success", task_states(dag_run)
    assert set(task_states(dag_run).values()) == {"success"}
    (job_run,) = scheduled_aws.fake.job_runs()
    arguments = job_run["Arguments"]
    assert sorted(json.loads(arguments["--source_uris"])) == sorted(u.uri for u in bad + empty + good), "one clean job run for all 12"
    assert arguments["--alert_topic_arn"] == scheduled_config()["topic_arn"], "the job alerts about the rejected files once"
    (query,) = scheduled_aws.fake.athena_queries()
    assert f"run_id = '{arguments['--run_id']}'" in query, "one load of the run"
    assert [scheduled_aws.record(u)["state"] for u in bad] == [REJECTED, REJECTED]
    assert scheduled_aws.record(empty[0])["state"] == SKIPPED_EMPTY
    for upload in good:
        record = scheduled_aws.record(upload)
        assert (record["state"], record["step"], record["rows_out"]) == (LOADED, "load", 1)
        (run,) = record["runs"]
        assert run["run_id"] == arguments["--run_id"] and run["execution"] == f"{DAG_ID}/{dag_run.run_id}"
    assert scheduled_aws.waiting() == 0, "every inbox message was deleted after the claim"
    assert scheduled_aws.fake.alert_messages() == []


def test_a_scheduled_run_with_nothing_pending_ends_at_once_and_crawls_cleans_and_loads_nothing(
    dagbag: Any, scheduled_aws: ScheduledAws, caplog: pytest.LogCaptureFixture
) -> None:
    _bad, _empty, good = twelve_uploads(scheduled_aws)
    assert str(scheduled_run(dagbag, 5).state) == "success"
    crawls_before = scheduled_aws.fake.glue.get_crawler(Name="sales-raw-crawler")["Crawler"].get("LastCrawl")

    dag_run = scheduled_run(dagbag, 6)

    assert str(dag_run.state) == "success", task_states(dag_run)
    states = task_states(dag_run)
    assert states.pop("claim_uploads") == "success"
    assert set(states.values()) == {"skipped"}, states
    assert len(scheduled_aws.fake.job_runs()) == 1 and len(scheduled_aws.fake.athena_queries()) == 1, "nothing more cleaned or loaded"
    assert scheduled_aws.fake.glue.get_crawler(Name="sales-raw-crawler")["Crawler"].get("LastCrawl") == crawls_before, "no crawl"
    assert {scheduled_aws.record(u)["state"] for u in good} == {LOADED}
    assert any("nothing pending" in record.getMessage() for record in caplog.records), "the run says why it ended"
    assert scheduled_aws.fake.alert_messages() == []


def test_a_scheduled_run_whose_load_fails_leaves_its_uploads_for_the_next_run_which_loads_them_once(
    dagbag: Any, scheduled_aws: ScheduledAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad, empty, good = twelve_uploads(scheduled_aws)
    with monkeypatch.context() as failing:
        fail_athena_queries(failing)
        first = scheduled_run(dagbag, 5)
    assert str(first.state) == "failed"
    assert task_states(first)["load"] == "failed"
    for upload in good:
        record = scheduled_aws.record(upload)
        assert (record["state"], record["step"]) == (FAILED, "load")
    assert [scheduled_aws.record(u)["state"] for u in bad + empty] == [REJECTED, REJECTED, SKIPPED_EMPTY], "ended by the clean job"
    (message,) = scheduled_aws.fake.alert_messages()
    assert message["failed_step"] == "load" and message["object"].startswith("12 uploads of a scheduled run: ")

    second = scheduled_run(dagbag, 6)

    assert str(second.state) == "success", task_states(second)
    first_job, second_job = sorted(scheduled_aws.fake.job_runs(), key=lambda run: run["StartedOn"])
    assert sorted(json.loads(second_job["Arguments"]["--source_uris"])) == sorted(u.uri for u in good), "the failed ones, only those"
    for upload in good:
        record = scheduled_aws.record(upload)
        assert record["state"] == LOADED and [r["outcome"] for r in record["runs"]] == [FAILED, LOADED], "loaded once"
    assert [scheduled_aws.record(u)["state"] for u in bad + empty] == [REJECTED, REJECTED, SKIPPED_EMPTY], "never taken again"
    third = scheduled_run(dagbag, 7)
    assert set(task_states(third).values()) == {"success", "skipped"} and len(scheduled_aws.fake.job_runs()) == 2


def test_a_run_naming_an_upload_in_its_conf_takes_it_first_with_whatever_else_is_pending(dagbag: Any, scheduled_aws: ScheduledAws) -> None:
    """`pipeline-ops rerun` and `reconcile --start` start a DAG run whose conf names the upload (its event never
    reached the inbox, or its run failed): the claim takes it, and the inbox's uploads with it."""
    requested = Upload(LANDING, SCHEDULED_PREFIX + "missed.csv", version_id=None)
    answer = scheduled_aws.s3.put_object(Bucket=LANDING, Key=requested.key, Body=f"{CONTRACT_HEADER}\n1,2.00\n".encode())
    requested = Upload(LANDING, requested.key, version_id=answer["VersionId"])
    queued = scheduled_aws.upload("store-1.csv", f"{CONTRACT_HEADER}\n2,3.00\n")

    tick = datetime(2027, 1, 1, tzinfo=UTC) + timedelta(days=next(_TICKS))
    dag_run = dagbag.dags[DAG_ID].test(
        logical_date=tick, run_after=tick, run_conf={"bucket": LANDING, "key": requested.key, "version_id": requested.version_id}
    )

    assert str(dag_run.state) == "success", task_states(dag_run)
    assert [scheduled_aws.record(u)["state"] for u in (requested, queued)] == [LOADED, LOADED]
    (job_run,) = scheduled_aws.fake.job_runs()
    assert json.loads(job_run["Arguments"]["--source_uris"])[0] == requested.uri


def test_a_claim_that_fails_half_way_records_what_it_took_failed_for_the_next_run(
    dagbag: Any, scheduled_aws: ScheduledAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim deletes the inbox messages only after recording the claim; if anything fails before, what it took
    is recorded failed (the messages come back too), and the run crawls, cleans and loads nothing."""
    import workflow_inputs

    uploads = [scheduled_aws.upload(f"store-{n}.csv", f"{CONTRACT_HEADER}\n{n},1.00\n") for n in range(3)]

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("SQS is unavailable")

    for module in _claim_modules(workflow_inputs):
        monkeypatch.setattr(module, "delete_messages", refuse)
    dag_run = scheduled_run(dagbag, 5)

    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["claim_uploads"] == "failed" and task_states(dag_run)["crawl"] == "upstream_failed"
    assert {scheduled_aws.record(u)["state"] for u in uploads} == {FAILED}
    assert all(scheduled_aws.record(u)["error"] == "RuntimeError" for u in uploads)
    assert scheduled_aws.fake.job_runs() == []
    assert RUNNING not in {scheduled_aws.record(u)["state"] for u in uploads}


def _claim_modules(top_level: Any) -> list[Any]:
    """workflow_inputs as the DAG may import it: the top-level copy beside it, and the library's module when importable."""
    modules = [top_level]
    try:
        from pipeline_constructs.runtime import workflow_inputs

        modules.append(workflow_inputs)
    except ImportError:
        pass
    return modules


def test_two_versions_of_one_object_in_one_run_clean_the_newer_and_leave_the_older_for_a_later_run(
    dagbag: Any, scheduled_aws: ScheduledAws
) -> None:
    """Spark reads an object's current version only, so one run cannot clean two versions of a key apart: it cleans
    the newer, records the older failed (VersionSuperseded, not taken back by the run), and the next run takes it."""
    older = scheduled_aws.upload("store-1.csv", f"{CONTRACT_HEADER}\n1,1.00\n")
    newer = scheduled_aws.upload("store-1.csv", f"{CONTRACT_HEADER}\n1,1.50\n")
    other = scheduled_aws.upload("store-2.csv", f"{CONTRACT_HEADER}\n2,2.00\n")

    first = scheduled_run(dagbag, 5)

    assert str(first.state) == "success", task_states(first)
    (job_run,) = scheduled_aws.fake.job_runs()
    assert json.loads(job_run["Arguments"]["--source_uris"]) == [newer.uri, other.uri]
    assert json.loads(job_run["Arguments"]["--source_versions"]) == [newer.version, other.version]
    assert [scheduled_aws.record(u)["state"] for u in (newer, other)] == [LOADED, LOADED]
    superseded = scheduled_aws.record(older)
    assert (superseded["state"], superseded["error"]) == (FAILED, "VersionSuperseded")

    second = scheduled_run(dagbag, 6)

    assert str(second.state) == "success", task_states(second)
    assert scheduled_aws.record(older)["state"] == LOADED
