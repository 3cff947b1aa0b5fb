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

    result = CleanResult(dataset="d", run_id="r", rows_in=10, rows_out=9, rows_quarantined=1, reasons={"x": 1})
    data = job.metric_data(result, "d", "job")
    names = {d["MetricName"] for d in data}
    assert names == set(job.METRIC_NAMES)
    sent = []

    class Client:
        def put_metric_data(self, **kwargs):
            sent.append(kwargs)

    job.publish_metrics(Client(), "NS", data * 200)
    assert len(data) == 19 and [len(s["MetricData"]) for s in sent] == [1000, 1000, 1000, 800]


def test_source_uris_as_a_json_array_keep_commas_inside_keys() -> None:
    from pipeline_constructs.runtime.glue_clean_job import parse_source_uris

    assert parse_source_uris('["s3://b/a,b.csv", "s3://b/c.csv"]') == ["s3://b/a,b.csv", "s3://b/c.csv"]
    assert parse_source_uris("s3://b/a.csv, s3://b/c.csv") == ["s3://b/a.csv", "s3://b/c.csv"]
    with pytest.raises(SystemExit, match="not a JSON array"):
        parse_source_uris('["s3://b/a.csv", 3]')
