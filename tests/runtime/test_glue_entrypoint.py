"""The Glue entrypoint: argument handling, contract loading, CloudWatch metrics (moto) and failing the job run."""

from __future__ import annotations

import json

import boto3
import pytest

from pipeline_constructs.runtime import glue_clean_job as job
from pipeline_constructs.runtime.clean_transform import CleanRunFailed
from tests.fake_aws import FAKE_AWS_REGION


def test_resolve_args_applies_defaults_and_types():
    args = job.resolve_args(
        [
            "--contract_path",
            "contract.json",
            "--source_uris",
            "s3://b/k1.csv, s3://b/k2.csv",
            "--run_id",
            "r1",
            "--curated_root",
            "s3://c/p",
            "--quarantine_root=s3://q/p",
        ]
    )
    assert args["source_uris"] == ["s3://b/k1.csv", "s3://b/k2.csv"]
    assert args["quarantine_root"] == "s3://q/p"
    assert args["max_quarantine_ratio"] == 0.05 and args["metrics_namespace"] == "RetailPipeline"
    assert args["dataset"] is None and args["JOB_NAME"] is None


def test_resolve_args_falls_back_to_glue_run_ids():
    base = ["--contract_path", "c.json", "--source_uris", "a.csv", "--curated_root", "c", "--quarantine_root", "q"]
    assert job.resolve_args([*base, "--JOB_RUN_ID", "jr_1"])["run_id"] == "jr_1"
    assert job.resolve_args([*base, "--JOB_RUN_ID", "jr_1", "--WORKFLOW_RUN_ID", "wr_1"])["run_id"] == "wr_1"
    with pytest.raises(SystemExit, match="run_id"):
        job.resolve_args(base)


@pytest.mark.parametrize(
    ("drop", "extra", "message"),
    [
        ("--curated_root", [], "--curated_root"),
        (None, ["--max_quarantine_ratio", "lots"], "not a number"),
        ("--source_uris", ["--source_uris", " , "], "no URI"),
    ],
)
def test_resolve_args_rejects_missing_or_bad_values(drop, extra, message):
    argv = [
        "--contract_path",
        "c.json",
        "--source_uris",
        "a.csv",
        "--run_id",
        "r",
        "--curated_root",
        "c",
        "--quarantine_root",
        "q",
    ]
    if drop:
        i = argv.index(drop)
        del argv[i : i + 2]
    with pytest.raises(SystemExit, match=message):
        job.resolve_args(argv + extra)


@pytest.fixture
def cloudwatch(fake_aws: None):
    return boto3.client("cloudwatch", region_name=FAKE_AWS_REGION)


def _metrics(client) -> dict[tuple[str, tuple], float]:
    out = {}
    for metric in client.list_metrics(Namespace="RetailPipeline")["Metrics"]:
        dims = tuple(sorted((d["Name"], d["Value"]) for d in metric["Dimensions"]))
        stats = client.get_metric_statistics(
            Namespace="RetailPipeline",
            MetricName=metric["MetricName"],
            Dimensions=metric["Dimensions"],
            StartTime="2000-01-01",
            EndTime="2100-01-01",
            Period=60,
            Statistics=["Maximum"],
        )
        out[(metric["MetricName"], dims)] = max(p["Maximum"] for p in stats["Datapoints"])
    return out


def _argv(tmp_path, contract_path, sources, ratio="0.5"):
    return [
        "glue_clean_job.py",
        "--JOB_NAME",
        "retail-clean",
        "--JOB_RUN_ID",
        "jr_1",
        "--contract_path",
        str(contract_path),
        "--source_uris",
        ",".join(str(s) for s in sources),
        "--run_id",
        "run-1",
        "--curated_root",
        str(tmp_path / "curated"),
        "--quarantine_root",
        str(tmp_path / "quarantine"),
        "--max_quarantine_ratio",
        ratio,
        "--metrics_namespace",
        "RetailPipeline",
        "--dataset",
        "retail_sales",
    ]


@pytest.mark.spark
def test_main_cleans_local_files_and_publishes_metrics(spark, contract, tmp_path, cloudwatch, header, make_row, monkeypatch, capsys):
    # Glue ships the contract as contract.json in the job's working directory.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "contract.json").write_text(contract.to_json())
    src = tmp_path / "landing" / "sales.csv"
    src.parent.mkdir()
    src.write_text("\n".join([header, make_row(1), make_row(1), make_row(2, quantity="-1"), make_row(3)]) + "\n")
    result = job.main(_argv(tmp_path, "contract.json", [src])[1:], spark=spark, cloudwatch=cloudwatch)
    assert result.ok and (result.rows_in, result.rows_out, result.rows_quarantined, result.duplicates_dropped) == (
        4,
        2,
        1,
        1,
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "succeeded" and summary["reasons"] == {"check_min:quantity": 1}
    assert (tmp_path / "curated" / "run_id=run-1" / "sale_date=2024-05-01").is_dir()
    metrics = _metrics(cloudwatch)
    with_job = (("Dataset", "retail_sales"), ("JobName", "retail-clean"))
    assert metrics[("RowsIn", (("Dataset", "retail_sales"),))] == 4
    assert metrics[("RowsOut", with_job)] == 2
    assert metrics[("DuplicatesDropped", with_job)] == 1
    assert metrics[("QuarantineRatioWarning", (("Dataset", "retail_sales"),))] == 1
    assert metrics[("RunFailed", (("Dataset", "retail_sales"),))] == 0
    assert metrics[("RowsQuarantinedByReason", (("Dataset", "retail_sales"), ("Reason", "check_min:quantity")))] == 1


@pytest.mark.spark
def test_main_raises_after_publishing_when_a_file_is_rejected(spark, contract, tmp_path, cloudwatch, header, make_row, capsys):
    contract_path = tmp_path / "contract.json"
    contract_path.write_text(contract.to_json())
    good = tmp_path / "landing" / "good.csv"
    good.parent.mkdir()
    good.write_text(header + "\n" + make_row(1) + "\n")
    bad = tmp_path / "landing" / "bad.csv"
    bad.write_text("store_id,sku\nS001,SKU-1\n")
    with pytest.raises(CleanRunFailed, match="missing_required_columns"):
        job.main(_argv(tmp_path, contract_path, [good, bad]), spark=spark, cloudwatch=cloudwatch)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "failed" and summary["files_rejected"] == 1 and summary["rows_out"] == 1
    metrics = _metrics(cloudwatch)
    assert metrics[("RunFailed", (("Dataset", "retail_sales"),))] == 1
    assert metrics[("FilesRejected", (("Dataset", "retail_sales"),))] == 1


@pytest.mark.spark
def test_a_source_prefix_expands_to_the_files_under_it(spark, tmp_path):
    folder = tmp_path / "landing"
    folder.mkdir()
    for name in ("b.csv", "a.csv", "_SUCCESS", ".hidden"):
        (folder / name).write_text("x\n")
    found = job.expand_sources(spark, [str(folder) + "/", "s3://bucket/one.csv"])
    assert [f.rsplit("/", 1)[-1] for f in found] == ["a.csv", "b.csv", "one.csv"]


def test_metric_data_has_both_dimension_sets_and_batches():
    from pipeline_constructs.runtime.clean_transform import CleanResult

    result = CleanResult(
        dataset="d", run_id="r", rows_in=10, rows_out=9, rows_quarantined=1, reasons={"x": 1}, lines_read=14, lines_quarantined=3
    )
    data = job.metric_data(result, "d", "job")
    names = {d["MetricName"] for d in data}
    assert names == set(job.METRIC_NAMES)
    values = {d["MetricName"]: d["Value"] for d in data if len(d["Dimensions"]) == 1}
    assert (values["LinesRead"], values["LinesQuarantined"], values["QuarantineRatioWarning"]) == (14, 3, 1)
    sent = []

    class Client:
        def put_metric_data(self, **kwargs):
            sent.append(kwargs)

    job.publish_metrics(Client(), "NS", data * 200)
    assert len(data) == 23 and [len(s["MetricData"]) for s in sent] == [1000, 1000, 1000, 1000, 600]


def test_source_uris_as_a_json_array_keep_commas_inside_keys() -> None:
    from pipeline_constructs.runtime.glue_clean_job import parse_source_uris

    assert parse_source_uris('["s3://b/a,b.csv", "s3://b/c.csv"]') == ["s3://b/a,b.csv", "s3://b/c.csv"]
    assert parse_source_uris("s3://b/a.csv, s3://b/c.csv") == ["s3://b/a.csv", "s3://b/c.csv"]
    with pytest.raises(SystemExit, match="not a JSON array"):
        parse_source_uris('["s3://b/a.csv", 3]')


# --- the Glue Workflow form: a poisoned batch, and a header-only file --------------------------------------------

LANDING = "landing"
PREFIX = "incoming/glue_workflow/"
STATE_URI = "s3://curated/retail_sales/_workflow_state/glue_workflow/processed.json"
WORKFLOW = "retail-sales-workflow"


class WorkflowWorld:
    """moto S3, Glue, SNS (with an SQS queue subscribed, to read what was sent) and a local mirror of the landing
    bucket that Spark reads from (a local Spark cannot read moto's S3)."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.s3, self.glue, self.sns, self.sqs, self.athena = (
            boto3.client(n, region_name=FAKE_AWS_REGION) for n in ("s3", "glue", "sns", "sqs", "athena")
        )
        for bucket in (LANDING, "curated"):
            self.s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": FAKE_AWS_REGION})
        self.glue.create_workflow(Name=WORKFLOW, MaxConcurrentRuns=1)
        self.topic = self.sns.create_topic(Name="alerts")["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=queue_arn)
        self.athena.create_work_group(
            Name="pipeline",
            Configuration={"ResultConfiguration": {"OutputLocation": "s3://curated/athena/"}, "EnforceWorkGroupConfiguration": True},
        )

    def upload(self, name: str, text: str) -> str:
        self.s3.put_object(Bucket=LANDING, Key=PREFIX + name, Body=text.encode())
        local = self.tmp_path / LANDING / PREFIX / name
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(text)
        return f"s3://{LANDING}/{PREFIX}{name}"

    def read_from(self, uri: str) -> str:
        assert uri.startswith(f"s3://{LANDING}/")
        return str(self.tmp_path / LANDING / uri[len(f"s3://{LANDING}/") :])

    def clean(self, spark, contract_path, run_id: str):
        argv = [
            "--contract_path", str(contract_path),
            "--source_uris", f"s3://{LANDING}/{PREFIX}",
            "--source_listing_prefix", f"s3://{LANDING}/{PREFIX}",
            "--workflow_state_uri", STATE_URI,
            "--alert_topic_arn", self.topic,
            "--WORKFLOW_NAME", WORKFLOW,
            "--WORKFLOW_RUN_ID", run_id,
            "--JOB_NAME", "glue-workflow-clean",
            "--curated_root", str(self.tmp_path / "curated"),
            "--quarantine_root", str(self.tmp_path / "quarantine"),
            "--metrics_namespace", "",
        ]  # fmt: skip
        return job.main(argv, spark=spark, read_from=self.read_from)

    def load(self, run_id: str, clients: dict | None = None) -> dict:
        from pipeline_constructs.runtime.glue_load_job import RUN_ID_TOKEN, resolve_args, run_load

        args = resolve_args(
            [
                "--athena_sql_template", f"MERGE INTO t USING (SELECT * FROM r WHERE run_id = '{RUN_ID_TOKEN}') s ON t.k = s.k",
                "--athena_workgroup", "pipeline", "--athena_database", "db",
                "--workflow_state_uri", STATE_URI, "--WORKFLOW_NAME", WORKFLOW, "--WORKFLOW_RUN_ID", run_id,
            ]
        )  # fmt: skip
        return run_load(args, {"athena": self.athena, "s3": self.s3, "glue": self.glue, **(clients or {})}, sleep=lambda _s: None)

    def alerts(self) -> list[dict]:
        received = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        for message in received:
            self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in received]

    def new_run(self) -> str:
        return self.glue.start_workflow_run(Name=WORKFLOW)["RunId"]


@pytest.fixture
def world(fake_aws: None, tmp_path, contract, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "contract.json").write_text(contract.to_json())
    return WorkflowWorld(tmp_path)


@pytest.mark.spark
def test_a_poisoned_file_is_quarantined_alerted_once_and_skipped_while_the_good_files_of_its_batch_load(
    spark, world: WorkflowWorld, header, make_row
) -> None:
    from pipeline_constructs.runtime.workflow_inputs import read_processed, read_rejected

    good = [world.upload(f"store-{n}.csv", f"{header}\n{make_row(n)}\n{make_row(n + 10)}\n") for n in (1, 2)]
    bad = world.upload("store-9.csv", "store_id,sku\nS009,SKU-1\n")  # no transaction_id, quantity, ...

    first = world.new_run()
    result = world.clean(spark, "contract.json", first)
    assert result.ok, result.errors
    assert (result.rows_in, result.rows_out, len(result.rejected_files)) == (4, 4, 1)
    assert [r["source_uri"] for r in result.rejected_files] == [bad]
    assert any("quarantined and skipped from now on" in w for w in result.warnings)
    [copy] = [r["copy"] for r in result.rejected_files]
    assert copy and (world.tmp_path / "quarantine" / f"run_id={first}" / "files" / "rejected_files.jsonl").is_file()

    [alert] = world.alerts()
    assert alert["Subject"] == "retail_sales pipeline: 1 file quarantined (glue_workflow)"
    message = json.loads(alert["Message"])
    assert {k: message[k] for k in ("pipeline", "object", "run_id", "failed_step", "error")} == {
        "pipeline": "glue_workflow",
        "object": bad,
        "run_id": first,
        "failed_step": "Clean",
        "error": "FileRejected",
    }
    assert message["cause"].startswith(f"{bad}: ") and "transaction_id" in message["cause"]

    state_bucket, state_key = "curated", STATE_URI[len("s3://curated/") :]
    [(key, entry)] = read_rejected(world.s3, state_bucket=state_bucket, state_key=state_key).items()
    assert key == PREFIX + "store-9.csv" and entry["run_id"] == first and "transaction_id" in entry["reason"]

    summary = world.load(first)
    assert summary["curated_rows"] == 4 and summary["athena_query_id"] and summary["committed_sources"] == 3
    assert set(read_processed(world.s3, state_bucket=state_bucket, state_key=state_key)[0]) >= {
        PREFIX + "store-1.csv",
        PREFIX + "store-2.csv",
    }

    # The next upload's run takes only the new file: the bad one is neither cleaned nor alerted again.
    later = world.upload("store-3.csv", f"{header}\n{make_row(3)}\n")
    second = world.new_run()
    result = world.clean(spark, "contract.json", second)
    assert result.ok and result.files_in == 1 and result.rejected_files == [] and result.rows_out == 1
    assert world.alerts() == []
    assert world.load(second)["committed_sources"] == 1
    assert later not in good and world.clean(spark, "contract.json", world.new_run()) is None, "nothing left to take"


@pytest.mark.spark
def test_a_failed_load_after_a_rejection_does_not_alert_again_on_the_next_run(spark, world: WorkflowWorld, header, make_row) -> None:
    world.upload("good.csv", f"{header}\n{make_row(1)}\n")
    world.upload("bad.csv", "store_id\nS001\n")
    first = world.new_run()
    world.clean(spark, "contract.json", first)
    assert len(world.alerts()) == 1
    # The load fails (nothing committed): the next run takes the good file again, and only the good file.
    second = world.new_run()
    result = world.clean(spark, "contract.json", second)
    assert result.files_in == 1 and result.rejected_files == [] and result.ok
    assert world.alerts() == []


@pytest.mark.spark
def test_a_header_only_upload_succeeds_and_its_run_skips_the_load(spark, world: WorkflowWorld, header) -> None:
    from botocore.stub import Stubber

    world.upload("header-only.csv", header + "\n")
    run_id = world.new_run()
    result = world.clean(spark, "contract.json", run_id)
    assert result.ok and (result.rows_in, result.rows_out) == (0, 0)
    athena = boto3.client("athena", region_name=FAKE_AWS_REGION)
    with Stubber(athena):  # no response queued: a load query would fail the test
        summary = world.load(run_id, {"athena": athena})
    assert summary["load_skipped"] == "zero curated rows" and summary["committed_sources"] == 1
    assert world.clean(spark, "contract.json", world.new_run()) is None, "the header-only upload is done"


def test_settling_a_run_records_and_alerts_a_rejection_once_and_keeps_other_errors(world: WorkflowWorld) -> None:
    """The fast layer's view of the same rule, without Spark: the transform's result as it returns it."""
    from pipeline_constructs.runtime.clean_transform import CleanResult
    from pipeline_constructs.runtime.workflow_inputs import CURATED_ROWS_PROPERTY, read_rejected

    bad = world.upload("bad.csv", "store_id\nS001\n")
    run_id = world.new_run()
    args = job.resolve_args(
        [
            "--contract_path", "contract.json", "--source_uris", f"s3://{LANDING}/{PREFIX}", "--curated_root", "c", "--quarantine_root", "q",
            "--source_listing_prefix", f"s3://{LANDING}/{PREFIX}", "--workflow_state_uri", STATE_URI,
            "--alert_topic_arn", world.topic, "--WORKFLOW_NAME", WORKFLOW, "--WORKFLOW_RUN_ID", run_id,
        ]
    )  # fmt: skip
    claimed = job.claim_workflow_sources(args)
    assert list(claimed) == [bad]

    def result() -> CleanResult:
        return CleanResult(
            dataset="retail_sales",
            run_id=run_id,
            rows_in=10,
            rows_out=3,
            rows_quarantined=7,
            rejected_files=[{"source_uri": bad, "reason": "missing_required_columns: sku", "header": "store_id", "copy": "q/bad.csv"}],
            errors=[
                f"file rejected: {bad}: missing_required_columns: sku",
                "quarantine ratio 0.7000 is above the limit 0.05 (7 of 10 rows)",
            ],
        )

    first = result()
    assert [r["source_uri"] for r in job.settle_workflow_run(args, first, claimed)] == [bad]
    assert first.errors == ["quarantine ratio 0.7000 is above the limit 0.05 (7 of 10 rows)"], "other errors still fail the run"
    [alert] = world.alerts()
    assert json.loads(alert["Message"])["cause"] == f"{bad}: missing_required_columns: sku"
    assert list(read_rejected(world.s3, state_bucket="curated", state_key=STATE_URI[len("s3://curated/") :])) == [PREFIX + "bad.csv"]
    properties = world.glue.get_workflow_run_properties(Name=WORKFLOW, RunId=run_id)["RunProperties"]
    assert properties[CURATED_ROWS_PROPERTY] == "3"

    # The same job run retried: recorded already, so nobody is told twice.
    assert job.settle_workflow_run(args, result(), claimed) == []
    assert world.alerts() == []
