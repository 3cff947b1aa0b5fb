"""The pipeline DAG on a real Airflow 3.3.1 (the version the MWAA construct deploys by default) against moto.

What moto cannot do, and what each test patches for it (nothing else is patched; every AWS call the operators make
goes through boto3 into moto):
- Glue `GetCrawlerMetrics` is not implemented in moto 5.2.5; the crawler operator calls it after its wait only to
  log timings. `fake_aws` adds it to moto's Glue responses (returns one metrics entry).
- Redshift Data `BatchExecuteStatement` is not implemented, and statements never leave STARTED. For the Redshift
  load, `fake_aws` adds BatchExecuteStatement to moto's responses: it records the statements and stores a FINISHED
  statement in moto's backend, which moto's own DescribeStatement then returns.
- Glue job runs in moto always succeed and run nothing. `fake_aws` stands in for the clean job's output: each job
  run writes one curated Parquet object under its run's partition folder (`FakeAws.curated_rows`), or nothing, as the
  clean job does for a header-only upload, and writes its counts (`FakeAws.clean_counts`) into the upload's ledger
  record from its job arguments, as the clean job's `record_counts_in_ledger` does (that module imports PySpark,
  which this virtualenv does not have: the same `UploadLedger.counts` call, with the same fields). The failure test
  marks moto's job run FAILED, as Glue does when the script raises.

The ledger is moto's DynamoDB table; `FakeAws.ledger_writes` is the item as moto's table holds it after each write.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import ACCOUNT, LEDGER_TABLE, REGION, deployed_config
from moto import mock_aws
from moto.moto_api import state_manager
from upload_ledger import Upload, UploadLedger, from_item

LANDING = "landing-bucket"
CURATED = "curated-bucket"
KEY = "incoming/mwaa/2026/sales, store 7.csv"
CONF = {"bucket": LANDING, "key": KEY, "version_id": "v1"}
UPLOAD = Upload(LANDING, KEY, version_id="v1")
GOOD_COUNTS = {"rows_in": 1, "rows_out": 1, "rows_quarantined": 0, "duplicates_dropped": 0, "lines_read": 2, "lines_quarantined": 0}


class FakeAws:
    """moto with the pipeline's resources, and the SQS queue subscribed to the alert topic."""

    def __init__(self) -> None:
        self.glue = boto3.client("glue", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.redshift_batches: list[dict[str, Any]] = []
        self.redshift_fails = False
        """True: every Redshift batch ends FAILED (as a COPY or MERGE that cannot run)."""
        self.curated_rows = True
        self.clean_counts: dict[str, Any] = dict(GOOD_COUNTS)
        self.ledger_writes: list[tuple[str, dict[str, Any]]] = []  # (update expression, the item after it)
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        self.dynamodb.create_table(  # the UploadLedger construct's keys
            TableName=LEDGER_TABLE,
            KeySchema=[{"AttributeName": "object", "KeyType": "HASH"}, {"AttributeName": "version", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "object", "AttributeType": "S"}, {"AttributeName": "version", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        config = deployed_config("athena")
        s3 = boto3.client("s3", region_name=REGION)
        self.s3 = s3
        s3.create_bucket(Bucket=LANDING, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.create_bucket(Bucket=CURATED, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_object(Bucket=LANDING, Key=KEY, Body=b"id,amount\n1,2.50\n")
        self.glue.create_database(DatabaseInput={"Name": "sales_db"})
        self.glue.create_crawler(
            Name=config["crawler_name"],
            Role=f"arn:aws:iam::{ACCOUNT}:role/crawler",
            DatabaseName="sales_db",
            Targets={"S3Targets": [{"Path": f"s3://{LANDING}/incoming/"}]},
        )
        self.glue.create_job(
            Name=config["clean_job_name"],
            Role=f"arn:aws:iam::{ACCOUNT}:role/clean",
            Command={"Name": "glueetl", "ScriptLocation": "s3://scripts/clean.py"},
        )
        boto3.client("athena", region_name=REGION).create_work_group(
            Name="sales-load", Configuration={"ResultConfiguration": {"OutputLocation": "s3://results/results/"}}
        )
        topic = boto3.client("sns", region_name=REGION).create_topic(Name="alerts")["TopicArn"]
        assert topic == config["topic_arn"]
        self.queue_url = self.sqs.create_queue(QueueName="alerts-copy")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        boto3.client("sns", region_name=REGION).subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    def alert_messages(self) -> list[dict[str, Any]]:
        """The failure messages published to the topic, read back from the subscribed queue."""
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        return [json.loads(json.loads(m["Body"])["Message"]) for m in messages]

    def run_clean_job(self, arguments: dict[str, str]) -> None:
        """What a clean job run leaves: Parquet under its run's partition folder when it curated rows, and its counts
        in the upload's ledger record (`record_counts_in_ledger`: one upload, its version from --source_versions)."""
        run_id = arguments["--run_id"]
        if self.curated_rows:
            key = f"sales/runs/run_id={run_id}/sale_date=2026-12-04/part-00000.snappy.parquet"
            self.s3.put_object(Bucket=CURATED, Key=key, Body=b"PAR1")
        if "--ledger_table" in arguments:
            ((uri,), (version,)) = json.loads(arguments["--source_uris"]), json.loads(arguments["--source_versions"])
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            ledger = UploadLedger(
                self.dynamodb, arguments["--ledger_table"], form=arguments["--pipeline_form"], ttl_days=int(arguments["--ledger_ttl_days"])
            )
            ledger.counts(Upload(bucket, key, version_id=version or None), run_id=run_id, counts=self.clean_counts)

    def ledger_record(self) -> dict[str, Any] | None:
        return UploadLedger(self.dynamodb, LEDGER_TABLE, form="mwaa").get(UPLOAD)

    def ledger_states(self) -> list[tuple[str, str]]:
        """(state, step) after each write of the run's state or step, in order (every write but the clean job's counts)."""
        return [(record["state"], record["step"]) for expression, record in self.ledger_writes if not _counts_write(expression)]

    def counts_writes(self) -> int:
        return sum(1 for expression, _ in self.ledger_writes if _counts_write(expression))

    def job_runs(self) -> list[dict[str, Any]]:
        return self.glue.get_job_runs(JobName="sales-clean")["JobRuns"]

    def athena_queries(self) -> list[str]:
        from moto.athena.models import athena_backends

        return [execution.query for execution in athena_backends[ACCOUNT][REGION].executions.values()]


def _counts_write(expression: str) -> bool:
    """The clean job's counts write: it sets neither the state nor the step (upload_ledger.counts_expression)."""
    return "#state" not in expression and "#step" not in expression and "#rows_out" in expression


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAws]:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.glue.responses import GlueResponse
    from moto.redshiftdata.models import Statement, redshiftdata_backends
    from moto.redshiftdata.responses import RedshiftDataAPIServiceResponse

    def get_crawler_metrics(self: GlueResponse) -> str:  # moto lacks GetCrawlerMetrics
        names = self._get_param("CrawlerNameList") or []
        metrics = [
            {
                "CrawlerName": n,
                "LastRuntimeSeconds": 1.0,
                "MedianRuntimeSeconds": 1.0,
                "TablesCreated": 0,
                "TablesUpdated": 0,
                "TablesDeleted": 0,
            }
            for n in names
        ]
        return json.dumps({"CrawlerMetricsList": metrics})

    fake: FakeAws
    moto_start_job_run = GlueResponse.start_job_run

    def start_job_run(self: GlueResponse) -> Any:  # the clean job's output, written when the run starts
        result = moto_start_job_run(self)
        fake.run_clean_job(self._get_param("Arguments"))
        return result

    moto_update_item = DynamoDBBackend.update_item

    def update_item(self: DynamoDBBackend, table_name: str, key: dict[str, Any], update_expression: str, *args: Any, **kwargs: Any) -> Any:
        item = moto_update_item(self, table_name, key, update_expression, *args, **kwargs)  # raises when refused
        stored = self.get_item(table_name, key)
        fake.ledger_writes.append((update_expression, from_item(copy.deepcopy(stored.to_json()["Attributes"]))))
        return item

    def batch_execute_statement(self: RedshiftDataAPIServiceResponse) -> tuple[int, dict, str]:  # moto lacks it
        params = {name: self._get_param(name) for name in ("WorkgroupName", "Database", "Sqls", "StatementName")}
        fake.redshift_batches.append(params)
        statement = Statement("", params["Database"], "", [], "; ".join(params["Sqls"]), "")
        statement.status = "FAILED" if fake.redshift_fails else "FINISHED"
        redshiftdata_backends[ACCOUNT][REGION].statements[statement.id] = statement
        return 200, {}, json.dumps({"Id": statement.id, "Database": params["Database"], "WorkgroupName": params["WorkgroupName"]})

    monkeypatch.setattr(GlueResponse, "get_crawler_metrics", get_crawler_metrics, raising=False)
    monkeypatch.setattr(GlueResponse, "start_job_run", start_job_run)
    monkeypatch.setattr(DynamoDBBackend, "update_item", update_item)
    monkeypatch.setattr(RedshiftDataAPIServiceResponse, "batch_execute_statement", batch_execute_statement, raising=False)
    # moto keeps a crawl RUNNING until told otherwise; here a crawl completes when it is first looked at.
    state_manager.set_transition("glue::crawl", {"progression": "immediate"})
    with mock_aws():
        fake = FakeAws()
        yield fake
    state_manager.unset_transition("glue::crawl")


def run_dag(dagbag: Any, target: str) -> Any:
    dag = dagbag.dags[f"sales_{target}_pipeline"]
    return dag.test(run_conf=CONF)


def task_states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def test_dagbag_has_both_dags_without_import_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dags) == ["sales_athena_pipeline", "sales_both_pipeline", "sales_redshift_pipeline", "sales_scheduled_pipeline"]


@pytest.mark.parametrize("target, load_operator", [("athena", "AthenaOperator"), ("redshift", "RedshiftDataOperator")])
def test_dag_chains_crawl_clean_rows_check_load_with_retries_timeouts_and_callbacks(dagbag: Any, target: str, load_operator: str) -> None:
    dag = dagbag.dags[f"sales_{target}_pipeline"]
    config = deployed_config(target)
    assert [t.task_id for t in dag.topological_sort()] == ["crawl", "clean", "find_curated_rows", "load"]
    assert dag.get_task("crawl").downstream_task_ids == {"clean"}
    assert dag.get_task("clean").downstream_task_ids == {"find_curated_rows"}
    assert dag.get_task("find_curated_rows").downstream_task_ids == {"load"}
    assert [type(t).__name__ for t in dag.topological_sort()] == ["GlueCrawlerRunOperator", "GlueJobOperator", "S3KeySensor", load_operator]
    assert dag.catchup is False
    assert dag.is_paused_upon_creation is False
    assert dag.max_active_runs == config["max_active_runs"]
    assert dag.dagrun_timeout == timedelta(seconds=config["dagrun_timeout_seconds"])
    for task in dag.tasks:
        assert task.retries == config["retries"]
        assert task.retry_exponential_backoff
        assert task.max_retry_delay == timedelta(seconds=config["max_retry_delay_seconds"])
        assert [cb.__name__ for cb in task.on_failure_callback] == ["notify_failure"]
        assert task.deferrable is False  # moto does not intercept aiobotocore; MWAA runs them on workers either way
    for step in ("crawl", "clean", "load"):
        assert dag.get_task(step).execution_timeout == timedelta(seconds=config["timeouts_seconds"][step])
    crawl = dag.get_task("crawl")
    assert crawl.crawler_name == config["crawler_name"] and crawl.fail_on_already_running is False
    assert dag.get_task("clean").job_name == config["clean_job_name"]
    rows_check = dag.get_task("find_curated_rows")
    # It skips (never fails) only when its one listing finds nothing; an S3 error still fails it.
    assert rows_check.soft_fail is True and rows_check.timeout == 0 and rows_check.mode == "poke"
    assert rows_check.bucket_name == "curated-bucket" and rows_check.wildcard_match is True


def test_dag_file_parses_quickly(dagbag: Any) -> None:
    """The DAG processor re-parses the file often: the parse (JSON config + operator imports) stays well under a second."""
    stats = {Path(s.file).name if hasattr(s, "file") else "": s.duration for s in dagbag.dagbag_stats}
    assert stats, dagbag.dagbag_stats
    for duration in stats.values():
        assert duration < timedelta(seconds=2), stats


def test_athena_run_crawls_cleans_the_object_and_merges_its_run(dagbag: Any, fake_aws: FakeAws) -> None:
    dag_run = run_dag(dagbag, "athena")

    assert str(dag_run.state) == "success", task_states(dag_run)
    (job_run,) = fake_aws.job_runs()
    assert json.loads(job_run["Arguments"]["--source_uris"]) == [f"s3://{LANDING}/{KEY}"]
    run_id = job_run["Arguments"]["--run_id"]
    assert run_id == dag_run.run_id.replace(":", "-").replace("+", "-")
    assert all(c.isalnum() or c in "_.-" for c in run_id)
    (query,) = fake_aws.athena_queries()
    assert f"WHERE run_id = '{run_id}')" in query and "{{" not in query
    assert len(fake_aws.glue.get_crawler(Name="sales-raw-crawler")["Crawler"]["LastCrawl"]) > 0
    assert fake_aws.alert_messages() == []


def test_redshift_run_sends_the_load_statements_as_one_batch(dagbag: Any, fake_aws: FakeAws) -> None:
    dag_run = run_dag(dagbag, "redshift")

    assert str(dag_run.state) == "success", task_states(dag_run)
    (job_run,) = fake_aws.job_runs()
    run_id = job_run["Arguments"]["--run_id"]
    (batch,) = fake_aws.redshift_batches
    assert batch["WorkgroupName"] == "sales-wg" and batch["Database"] == "sales"
    assert len(batch["Sqls"]) == 3
    assert f"s3://curated-bucket/sales/runs/run_id={run_id}/" in batch["Sqls"][1]
    assert batch["StatementName"] == f"load-{run_id}"
    assert fake_aws.alert_messages() == []


@pytest.mark.parametrize("target", ["athena", "redshift"])
def test_header_only_upload_skips_the_load_and_the_run_succeeds_without_an_alert(dagbag: Any, fake_aws: FakeAws, target: str) -> None:
    """The clean job curated no row (a header-only file): nothing to load. On Redshift a COPY of the empty run
    prefix fails ("no files found"), so running the load would fail, retry and alert for an upload that is fine."""
    fake_aws.curated_rows = False

    dag_run = run_dag(dagbag, target)

    assert str(dag_run.state) == "success", task_states(dag_run)
    assert task_states(dag_run)["find_curated_rows"] == task_states(dag_run)["load"] == "skipped"
    assert fake_aws.redshift_batches == []
    assert fake_aws.athena_queries() == []
    assert len(fake_aws.job_runs()) == 1
    assert fake_aws.alert_messages() == []


def test_rows_check_that_cannot_list_fails_the_run_instead_of_skipping_the_load(dagbag: Any, fake_aws: FakeAws) -> None:
    """Only "no partition folder found" skips the load; an S3 error (here the curated bucket is gone) fails and alerts."""
    fake_aws.curated_rows = False
    fake_aws.s3.delete_bucket(Bucket=CURATED)

    dag_run = run_dag(dagbag, "redshift")

    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["find_curated_rows"] == "failed" and task_states(dag_run)["load"] == "upstream_failed"
    (message,) = fake_aws.alert_messages()
    assert message["failed_step"] == "find_curated_rows" and "NoSuchBucket" in message["cause"]


def test_failed_clean_job_publishes_one_message_and_stops_the_run(dagbag: Any, fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.glue.models import FakeJobRun

    # moto's job runs always succeed: report this one FAILED, as Glue does when the clean script raises.
    monkeypatch.setattr(FakeJobRun, "status", property(lambda self: "FAILED", lambda self, value: None))

    dag_run = run_dag(dagbag, "athena")

    assert str(dag_run.state) == "failed"
    assert task_states(dag_run) == {
        "crawl": "success",
        "clean": "failed",
        "find_curated_rows": "upstream_failed",
        "load": "upstream_failed",
    }
    (message,) = fake_aws.alert_messages()
    assert message["pipeline"] == "mwaa"
    assert message["object"] == f"s3://{LANDING}/{KEY}"
    assert message["version_id"] == "v1"
    assert message["run_id"] == dag_run.run_id.replace(":", "-").replace("+", "-")
    assert message["failed_step"] == "clean"
    assert message["error"] == "AirflowException"
    assert "FAILED" in message["cause"]
    assert fake_aws.athena_queries() == []


def test_crawl_started_by_another_upload_is_waited_for_not_failed(dagbag: Any, fake_aws: FakeAws) -> None:
    # Another upload's run started the crawler; moto keeps that crawl RUNNING for 3 seconds.
    state_manager.set_transition("glue::crawl", {"progression": "time", "seconds": 3})
    fake_aws.glue.start_crawler(Name="sales-raw-crawler")
    assert fake_aws.glue.get_crawler(Name="sales-raw-crawler")["Crawler"]["State"] == "RUNNING"

    dag_run = run_dag(dagbag, "athena")

    assert str(dag_run.state) == "success", task_states(dag_run)
    crawler = fake_aws.glue.get_crawler(Name="sales-raw-crawler")["Crawler"]
    assert crawler["State"] == "READY"
    assert len(fake_aws.job_runs()) == 1
    assert fake_aws.alert_messages() == []
