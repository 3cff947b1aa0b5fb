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


# --- the Glue Workflow form: claims, counts and outcomes in the upload ledger -------------------------------------

LANDING = "landing"
PREFIX = "incoming/glue_workflow/"
WORKFLOW = "retail-sales-workflow"


class RecordingLedgerClient:
    """A DynamoDB client that notes each upload's (state, step) after every ledger write, as the write returned it."""

    def __init__(self, client) -> None:
        self.client = client
        self.exceptions = client.exceptions
        self.seen: dict[str, list[tuple[str, str]]] = {}

    def update_item(self, **request):
        answer = self.client.update_item(**request)
        item = answer["Attributes"]
        pairs = self.seen.setdefault(item["object"]["S"], [])
        pair = (item["state"]["S"], item["step"]["S"])
        if not pairs or pairs[-1] != pair:  # a counts write changes neither
            pairs.append(pair)
        return answer

    def __getattr__(self, name):
        return getattr(self.client, name)


class WorkflowWorld:
    """moto S3 (versioned landing bucket), Glue, SNS (an SQS queue subscribed, to read what was sent), the form's
    inbox queue, the ledger table, and a local mirror of the landing bucket that Spark reads from (a local Spark
    cannot read moto's S3)."""

    def __init__(self, tmp_path) -> None:
        from pipeline_constructs.runtime.upload_ledger import UploadLedger
        from tests.ledger_table import create_ledger_table

        self.tmp_path = tmp_path
        self.s3, self.glue, self.sns, self.sqs, self.athena = (
            boto3.client(n, region_name=FAKE_AWS_REGION) for n in ("s3", "glue", "sns", "sqs", "athena")
        )
        self.s3.create_bucket(Bucket=LANDING, CreateBucketConfiguration={"LocationConstraint": FAKE_AWS_REGION})
        self.s3.put_bucket_versioning(Bucket=LANDING, VersioningConfiguration={"Status": "Enabled"})
        self.glue.create_workflow(Name=WORKFLOW, MaxConcurrentRuns=1)
        self.topic = self.sns.create_topic(Name="alerts")["TopicArn"]
        self.alert_queue = self.sqs.create_queue(QueueName="alert-reader")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.alert_queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=queue_arn)
        self.inbox = self.sqs.create_queue(QueueName="inbox")["QueueUrl"]
        self.athena.create_work_group(
            Name="pipeline",
            Configuration={"ResultConfiguration": {"OutputLocation": "s3://curated/athena/"}, "EnforceWorkGroupConfiguration": True},
        )
        self.dynamodb = RecordingLedgerClient(boto3.client("dynamodb", region_name=FAKE_AWS_REGION))
        self.table = create_ledger_table(self.dynamodb.client)
        self.ledger = UploadLedger(self.dynamodb.client, self.table, form="glue_workflow")

    def upload(self, name: str, text: str):
        """Upload a file and deliver its event to the inbox, as the upload rule does; returns the Upload."""
        from pipeline_constructs.runtime.upload_ledger import Upload

        answer = self.s3.put_object(Bucket=LANDING, Key=PREFIX + name, Body=text.encode())
        upload = Upload(LANDING, PREFIX + name, answer["VersionId"], answer["ETag"].strip('"'))
        obj = {"key": upload.key, "size": len(text), "etag": upload.etag, "version-id": upload.version_id}
        self.sqs.send_message(QueueUrl=self.inbox, MessageBody=json.dumps({"detail": {"bucket": {"name": LANDING}, "object": obj}}))
        local = self.tmp_path / LANDING / PREFIX / name
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(text)
        return upload

    def read_from(self, uri: str) -> str:
        assert uri.startswith(f"s3://{LANDING}/")
        return str(self.tmp_path / LANDING / uri[len(f"s3://{LANDING}/") :])

    def args(self, run_id: str, *more: str) -> list[str]:
        return [
            "--contract_path", "contract.json",
            "--source_uris", f"s3://{LANDING}/{PREFIX}",
            "--source_listing_prefix", f"s3://{LANDING}/{PREFIX}",
            "--inbox_queue_url", self.inbox,
            "--ledger_table", self.table,
            "--alert_topic_arn", self.topic,
            "--WORKFLOW_NAME", WORKFLOW,
            "--WORKFLOW_RUN_ID", run_id,
            "--JOB_NAME", "glue-workflow-clean",
            "--curated_root", str(self.tmp_path / "curated"),
            "--quarantine_root", str(self.tmp_path / "quarantine"),
            "--metrics_namespace", "",
            *more,
        ]  # fmt: skip

    def clean(self, spark, run_id: str, *more: str):
        clients = {"sqs": self.sqs, "glue": self.glue, "sns": self.sns}
        return job.main(self.args(run_id, *more), spark=spark, read_from=self.read_from, dynamodb=self.dynamodb, clients=clients)

    def load(self, run_id: str, clients: dict | None = None) -> dict:
        from pipeline_constructs.runtime.glue_load_job import RUN_ID_TOKEN, resolve_args, run_load

        args = resolve_args(
            [
                "--athena_sql_template", f"MERGE INTO t USING (SELECT * FROM r WHERE run_id = '{RUN_ID_TOKEN}') s ON t.k = s.k",
                "--athena_workgroup", "pipeline", "--athena_database", "db",
                "--ledger_table", self.table, "--WORKFLOW_NAME", WORKFLOW, "--WORKFLOW_RUN_ID", run_id,
            ]
        )  # fmt: skip
        every = {"athena": self.athena, "glue": self.glue, "dynamodb": self.dynamodb, **(clients or {})}
        return run_load(args, every, sleep=lambda _s: None)

    def alerts(self) -> list[dict]:
        received = self.sqs.receive_message(QueueUrl=self.alert_queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        for message in received:
            self.sqs.delete_message(QueueUrl=self.alert_queue, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in received]

    def new_run(self) -> str:
        return self.glue.start_workflow_run(Name=WORKFLOW)["RunId"]

    def record(self, upload) -> dict:
        record = self.ledger.get(upload)
        assert record is not None, upload
        return record


@pytest.fixture
def world(fake_aws: None, tmp_path, contract, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "contract.json").write_text(contract.to_json())
    return WorkflowWorld(tmp_path)


@pytest.mark.spark
def test_a_poisoned_file_is_rejected_alerted_once_and_never_taken_again_while_its_batch_loads(
    spark, world: WorkflowWorld, header, make_row
) -> None:
    good = [world.upload(f"store-{n}.csv", f"{header}\n{make_row(n)}\n{make_row(n + 10)}\n") for n in (1, 2)]
    bad = world.upload("store-9.csv", "store_id,sku\nS009,SKU-1\n")  # no transaction_id, quantity, ...

    first = world.new_run()
    result = world.clean(spark, first)
    assert result.ok, result.errors
    assert (result.rows_in, result.rows_out, len(result.rejected_files)) == (4, 4, 1)
    assert [r["source_uri"] for r in result.rejected_files] == [bad.uri]
    assert any("quarantined and not taken again" in w for w in result.warnings)
    rejected = world.record(bad)
    assert (rejected["state"], rejected["step"]) == ("rejected", "clean") and rejected["quarantine_uri"].endswith("store-9.csv")
    assert [(world.record(u)["state"], world.record(u)["step"]) for u in good] == [("running", "clean")] * 2

    [alert] = world.alerts()
    assert alert["Subject"] == "retail_sales pipeline: 1 file quarantined (glue_workflow)"
    message = json.loads(alert["Message"])
    assert {k: message[k] for k in ("pipeline", "object", "run_id", "failed_step", "error")} == {
        "pipeline": "glue_workflow",
        "object": bad.uri,
        "run_id": first,
        "failed_step": "Clean",
        "error": "FileRejected",
    }
    assert message["cause"].startswith(f"{bad.uri}: ") and "transaction_id" in message["cause"]

    summary = world.load(first)
    assert summary["loaded_uploads"] == 2 and summary["athena_query_id"]
    assert [world.record(u)["state"] for u in good] == ["loaded", "loaded"]
    assert (world.record(good[0])["rows_in"], world.record(good[0])["rows_out"]) == (2, 2), "each upload of a batch has its counts"

    # The next upload's run takes only the new file: the bad one is neither cleaned nor alerted again.
    later = world.upload("store-3.csv", f"{header}\n{make_row(3)}\n")
    world.sqs.send_message(
        QueueUrl=world.inbox,
        MessageBody=json.dumps({"detail": {"bucket": {"name": LANDING}, "object": {"key": bad.key, "version-id": bad.version_id}}}),
    )
    second = world.new_run()
    result = world.clean(spark, second)
    assert result.ok and result.files_in == 1 and result.rejected_files == [] and result.rows_out == 1
    assert world.alerts() == []
    assert world.load(second)["loaded_uploads"] == 1
    assert (world.record(later)["rows_in"], world.record(later)["rows_out"]) == (1, 1), "a run of one upload records its counts"
    assert world.clean(spark, world.new_run()) is None, "nothing left to take"


@pytest.mark.spark
def test_each_kind_of_upload_goes_through_the_ledger_transitions_of_the_step_description(
    spark, world: WorkflowWorld, header, make_row
) -> None:
    from botocore.stub import Stubber

    from pipeline_constructs.runtime.glue_load_job import LoadFailed
    from pipeline_constructs.runtime.pipeline_plan import LEDGER_TRANSITIONS

    def one_run(upload, *more: str, load: dict | None = None):
        run_id = world.new_run()
        world.clean(spark, run_id, *more)
        return run_id, world.load(run_id, load) if load is not None else None

    good = world.upload("good.csv", f"{header}\n{make_row(1)}\n")
    one_run(good, load={})
    empty = world.upload("empty.csv", header + "\n")
    athena = boto3.client("athena", region_name=FAKE_AWS_REGION)
    with Stubber(athena):  # no response queued: a load query would fail the test
        one_run(empty, load={"athena": athena})
    quarantined = world.upload("quarantined.csv", f"{header}\n{make_row(3, quantity='many')}\n")
    with Stubber(athena):
        one_run(quarantined, "--max_quarantine_ratio", "1.0", load={"athena": athena})
    broken = world.upload("broken.csv", f"{header}\n{make_row(4)}\n")
    failing = boto3.client("athena", region_name=FAKE_AWS_REGION)
    with Stubber(failing) as stub:
        stub.add_response("start_query_execution", {"QueryExecutionId": "q-9"})
        stub.add_response(
            "get_query_execution",
            {"QueryExecution": {"QueryExecutionId": "q-9", "Status": {"State": "FAILED", "StateChangeReason": "ICEBERG_COMMIT_ERROR"}}},
        )
        with pytest.raises(LoadFailed):
            one_run(broken, load={"athena": failing})

    seen = world.dynamodb.seen
    assert tuple(seen[good.uri]) == LEDGER_TRANSITIONS["good"]
    assert tuple(seen[empty.uri]) == LEDGER_TRANSITIONS["empty"]
    assert tuple(seen[quarantined.uri]) == LEDGER_TRANSITIONS["quarantined"]
    assert tuple(seen[broken.uri]) == LEDGER_TRANSITIONS["failed_at_load"]
    record = world.record(quarantined)
    assert (record["rows_in"], record["rows_out"], record["rows_quarantined"]) == (1, 0, 1) and record["quarantine_uri"]
    failed = world.record(broken)
    assert failed["error"] == "LoadFailed" and "ICEBERG_COMMIT_ERROR" in failed["cause"] and "owner" not in failed


@pytest.mark.spark
def test_a_run_of_several_uploads_records_each_ones_own_counts_and_outcome(spark, world: WorkflowWorld, header, make_row) -> None:
    """A batch (or a scheduled run) of a good file, a header-only file, a file whose only row is quarantined and a
    file that repeats a key of the first: each upload's record holds its own counts, which add up per upload and to
    the run's totals; the empty one ends skipped_empty, the quarantined one quarantined, the other two load."""
    good = world.upload("good.csv", f"{header}\n{make_row(1)}\n{make_row(2)}\n")
    empty = world.upload("empty.csv", header + "\n")
    bad = world.upload("bad.csv", f"{header}\n{make_row(3, quantity='many')}\n")
    repeat = world.upload("repeat.csv", f"{header}\n{make_row(2)}\n{make_row(4)}\n")
    run_id = world.new_run()
    result = world.clean(spark, run_id, "--max_quarantine_ratio", "0.5")
    assert result.ok and result.files_in == 4, result.errors
    counts = ("rows_in", "rows_out", "rows_quarantined", "duplicates_dropped")
    records = {u.key.rsplit("/", 1)[-1]: world.record(u) for u in (good, empty, bad, repeat)}
    assert {name: tuple(r[c] for c in counts) for name, r in records.items() if name in ("empty.csv", "bad.csv")} == {
        "empty.csv": (0, 0, 0, 0),
        "bad.csv": (1, 0, 1, 0),
    }
    pair = [records["good.csv"], records["repeat.csv"]]
    assert [r["rows_in"] for r in pair] == [2, 2] and sum(r["duplicates_dropped"] for r in pair) == 1
    for record in records.values():
        assert record["rows_in"] == record["rows_out"] + record["rows_quarantined"] + record["duplicates_dropped"], record
    for field_name in counts:
        assert sum(r[field_name] for r in records.values()) == getattr(result, field_name), field_name
    assert records["bad.csv"]["lines_quarantined"] == 1 and records["bad.csv"]["quarantine_uri"]
    assert "quarantine_uri" not in records["good.csv"] or not records["good.csv"]["quarantine_uri"]
    assert (records["empty.csv"]["state"], records["bad.csv"]["state"]) == ("skipped_empty", "quarantined")
    assert world.load(run_id)["loaded_uploads"] == 2
    assert [world.record(u)["state"] for u in (good, repeat)] == ["loaded", "loaded"]


@pytest.mark.spark
def test_a_run_failing_at_clean_records_it_and_the_next_run_takes_its_uploads_again(spark, world: WorkflowWorld, header, make_row) -> None:
    upload = world.upload("mostly-bad.csv", f"{header}\n{make_row(1)}\n{make_row(2, quantity='x')}\n")
    first = world.new_run()
    with pytest.raises(CleanRunFailed):
        world.clean(spark, first)  # half the lines quarantined: above the 5 % limit
    record = world.record(upload)
    assert (record["state"], record["step"], record["error"]) == ("failed", "clean", "CleanRunFailed")
    assert "quarantine ratio" in record["cause"] and record["rows_quarantined"] == 1, "its counts are recorded too"
    second = world.new_run()
    result = world.clean(spark, second, "--max_quarantine_ratio", "0.6")  # the limit was raised
    assert result.ok and result.files_in == 1
    assert world.record(upload)["owner"] == second and [run["run_id"] for run in world.record(upload)["runs"]] == [first, second]


@pytest.mark.spark
def test_a_re_uploaded_key_is_a_new_version_and_is_processed_again(spark, world: WorkflowWorld, header, make_row) -> None:
    first = world.upload("store.csv", f"{header}\n{make_row(1)}\n")
    run_id = world.new_run()
    world.clean(spark, run_id)
    world.load(run_id)
    second = world.upload("store.csv", f"{header}\n{make_row(1, quantity='3')}\n")
    assert second.version_id != first.version_id
    run_id = world.new_run()
    assert world.clean(spark, run_id).files_in == 1
    world.load(run_id)
    assert world.record(first)["state"] == world.record(second)["state"] == "loaded"


def test_settling_a_run_ends_a_rejection_alerts_it_and_keeps_other_errors(world: WorkflowWorld) -> None:
    """The fast layer's view of the same rule, without Spark: the transform's result as it returns it."""
    from pipeline_constructs.runtime.clean_transform import CleanResult
    from pipeline_constructs.runtime.workflow_inputs import LOADING_PROPERTY

    bad = world.upload("bad.csv", "store_id\nS001\n")
    run_id = world.new_run()
    args = job.resolve_args(world.args(run_id))
    ledger = job.open_ledger(args, world.dynamodb.client)
    claimed = job.claim_workflow_sources(args, ledger, {"sqs": world.sqs, "glue": world.glue})
    assert list(claimed) == [bad.uri]

    result = CleanResult(
        dataset="retail_sales",
        run_id=run_id,
        rows_in=10,
        rows_out=3,
        rows_quarantined=7,
        rejected_files=[{"source_uri": bad.uri, "reason": "missing_required_columns: sku", "header": "store_id", "copy": "q/bad.csv"}],
        errors=[
            f"file rejected: {bad.uri}: missing_required_columns: sku",
            "quarantine ratio 0.7000 is above the limit 0.05 (7 of 10 rows)",
        ],
    )
    assert [r["source_uri"] for r in job.settle_workflow_run(args, result, claimed, ledger, sns=world.sns, glue=world.glue)] == [bad.uri]
    assert result.errors == ["quarantine ratio 0.7000 is above the limit 0.05 (7 of 10 rows)"], "other errors still fail the run"
    [alert] = world.alerts()
    assert json.loads(alert["Message"])["cause"] == f"{bad.uri}: missing_required_columns: sku"
    assert world.record(bad)["state"] == "rejected"
    properties = world.glue.get_workflow_run_properties(Name=WORKFLOW, RunId=run_id)["RunProperties"]
    assert json.loads(properties[LOADING_PROPERTY]) == []


def test_the_workflow_form_needs_the_ledger_and_the_inbox(world: WorkflowWorld) -> None:
    argv = [a for a in world.args("wr_1") if a not in ("--inbox_queue_url", world.inbox)]
    with pytest.raises(SystemExit, match="--source_listing_prefix needs --inbox_queue_url"):
        job.main(argv)
