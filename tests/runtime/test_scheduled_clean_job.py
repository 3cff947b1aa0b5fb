"""The clean job as a scheduled MWAA run calls it (`--settle_uploads`), on a local SparkSession against moto: the DAG's
claim holds the uploads in the ledger, the clean task names them (--source_uris, --source_versions), and the job
settles each one with the Glue Workflow form's own settlement (`settle_workflow_run`, handing the rest over through the
ledger instead of a Glue run property): the issue's 12 uploads, 2 with a header that is not the contract's, 1 empty,
9 good, in one job run.
"""

# ruff: noqa: F811  (the tests name the imported `world` fixture's value `world`)
from __future__ import annotations

import json

import pytest

from pipeline_constructs.runtime import glue_clean_job as job
from pipeline_constructs.runtime.clean_transform import CleanRunFailed
from tests.runtime.test_glue_entrypoint import WorkflowWorld, world  # noqa: F401  (the moto fixture, registered here)

RUN_ID = "scheduled__2026-12-07T05-30-00-00-00"


def claim(world: WorkflowWorld, uploads: list) -> None:
    """What the DAG's claim task leaves: each upload started by the run at step crawl, the clean task moves it on."""
    for upload in uploads:
        world.ledger.start(upload, run_id=RUN_ID, execution=f"retail_sales_pipeline/{RUN_ID}", step="crawl")
        world.ledger.step(upload, run_id=RUN_ID, step="clean")


def settle(world: WorkflowWorld, spark, uploads: list, *more: str):
    """The clean task's job run: the uploads the run holds, each with its ledger version, and the MWAA form's name."""
    argv = [
        "--contract_path", "contract.json",
        "--source_uris", json.dumps([u.uri for u in uploads]),
        "--source_versions", json.dumps([u.version for u in uploads]),
        "--run_id", RUN_ID,
        "--settle_uploads", "true",
        "--alert_topic_arn", world.topic,
        "--ledger_table", world.table,
        "--pipeline_form", "mwaa",
        "--curated_root", str(world.tmp_path / "curated"),
        "--quarantine_root", str(world.tmp_path / "quarantine"),
        "--metrics_namespace", "",
        *more,
    ]  # fmt: skip
    clients = {"sns": world.sns, "sqs": world.sqs}
    return job.main(argv, spark=spark, read_from=world.read_from, dynamodb=world.dynamodb, clients=clients)


@pytest.fixture
def mwaa_world(world: WorkflowWorld) -> WorkflowWorld:  # noqa: F811
    from pipeline_constructs.runtime.upload_ledger import UploadLedger

    world.ledger = UploadLedger(world.dynamodb.client, world.table, form="mwaa")
    return world


@pytest.mark.spark
def test_one_job_run_settles_each_of_12_uploads_by_its_own_counts(spark, mwaa_world: WorkflowWorld, header, make_row) -> None:
    world = mwaa_world
    bad = [world.upload(f"bad-{n}.csv", "store_id,sku\nS009,SKU-1\n") for n in range(2)]
    empty = world.upload("empty.csv", header + "\n")
    good = [world.upload(f"store-{n}.csv", f"{header}\n{make_row(n)}\n") for n in range(9)]
    uploads = [*bad, empty, *good]
    claim(world, uploads)

    result = settle(world, spark, uploads)

    assert result.ok, result.errors
    assert (result.files_in, result.rows_out, len(result.rejected_files)) == (12, 9, 2)
    assert [(world.record(u)["state"], world.record(u)["step"]) for u in bad] == [("rejected", "clean")] * 2
    assert all(world.record(u)["quarantine_uri"] for u in bad)
    assert world.record(empty)["state"] == "skipped_empty"
    for upload in good:
        record = world.record(upload)
        assert (record["state"], record["step"], record["owner"]) == ("running", "clean", RUN_ID), "left for the DAG's load"
        assert (record["rows_in"], record["rows_out"]) == (1, 1)
    [alert] = world.alerts()  # once, for both rejected files
    message = json.loads(alert["Message"])
    assert (
        message["pipeline"] == "mwaa"
        and message["run_id"] == RUN_ID
        and sorted(message["object"].split(", ")) == sorted(u.uri for u in bad)
    )
    assert world.glue.get_workflow_runs(Name="retail-sales-workflow")["Runs"] == [], "no Glue run property is involved"


@pytest.mark.spark
def test_a_failing_settled_run_records_the_failure_on_every_upload_it_holds(spark, mwaa_world: WorkflowWorld, header, make_row) -> None:
    world = mwaa_world
    uploads = [
        world.upload("mostly-bad.csv", f"{header}\n{make_row(1)}\n{make_row(2, quantity='x')}\n"),
        world.upload("ok.csv", f"{header}\n{make_row(3)}\n"),
    ]
    claim(world, uploads)
    with pytest.raises(CleanRunFailed):
        settle(world, spark, uploads)  # a quarter of the lines quarantined: above the 5 % limit
    assert {(world.record(u)["state"], world.record(u)["step"], world.record(u)["error"]) for u in uploads} == {
        ("failed", "clean", "CleanRunFailed")
    }


def test_settled_uploads_need_one_ledger_version_each_and_the_ledger(mwaa_world: WorkflowWorld) -> None:
    world = mwaa_world
    base = ["--contract_path", "c.json", "--curated_root", "/c", "--quarantine_root", "/q", "--run_id", RUN_ID, "--settle_uploads", "true"]
    with pytest.raises(SystemExit, match="--settle_uploads needs --ledger_table"):
        job.main([*base, "--source_uris", '["s3://landing/a.csv"]', "--source_versions", '["v1"]'])
    two = ["--source_uris", '["s3://landing/a.csv", "s3://landing/b.csv"]', "--source_versions", '["v1"]', "--ledger_table", world.table]
    with pytest.raises(SystemExit, match=r"--source_uris has 2 URIs \(2 distinct\) and --source_versions 1 versions"):
        job.main([*base, *two], dynamodb=world.dynamodb)
