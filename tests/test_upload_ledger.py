"""The ledger's conditional writes against moto's DynamoDB: one owner per upload, no older state over a newer."""

from __future__ import annotations

import boto3
import pytest

from pipeline_constructs.runtime.upload_ledger import (
    FAILED,
    LOADED,
    QUARANTINED,
    RUNNING,
    LedgerConflict,
    Upload,
    UploadLedger,
    loaded_targets,
    target_attribute,
    targets_to_load,
    version_of,
)
from tests.ledger_table import create_ledger_table

pytestmark = pytest.mark.usefixtures("fake_aws")
UPLOAD = Upload("landing", "incoming/step_functions/2026-12-04/store-17.csv", version_id="v1", etag='"abc"')


@pytest.fixture
def ledger() -> UploadLedger:
    client = boto3.client("dynamodb")
    return UploadLedger(client, create_ledger_table(client), form="step_functions", ttl_days=30)


def test_a_run_takes_an_upload_and_ends_it_loaded_with_its_counts(ledger: UploadLedger) -> None:
    record = ledger.start(UPLOAD, run_id="r1", execution="arn:exec:r1", step="crawl")
    assert (record["state"], record["step"], record["owner"], record["form"]) == (RUNNING, "crawl", "r1", "step_functions")
    ledger.step(UPLOAD, run_id="r1", step="clean")
    ledger.counts(UPLOAD, run_id="r1", counts={"rows_in": 40, "rows_out": 38, "rows_quarantined": 2, "quarantine_uri": "s3://q/x/"})
    record = ledger.finish(UPLOAD, run_id="r1", outcome=LOADED)
    assert record["state"] == LOADED and "owner" not in record
    assert (record["rows_in"], record["rows_out"], record["rows_quarantined"], record["quarantine_uri"]) == (40, 38, 2, "s3://q/x/")
    assert [run["run_id"] for run in record["runs"]] == ["r1"]
    assert record["runs"][0]["outcome"] == LOADED and record["runs"][0]["execution"] == "arn:exec:r1"
    assert record["expires_at"] > 0 and record["step"] == "clean"


def test_a_second_run_cannot_take_an_upload_another_run_holds(ledger: UploadLedger) -> None:
    ledger.start(UPLOAD, run_id="r1", execution="e1", step="crawl")
    with pytest.raises(LedgerConflict, match="'running', owned by run 'r1'"):
        ledger.start(UPLOAD, run_id="r2", execution="e2", step="crawl")
    # The same run asking again (a retried write) keeps it.
    assert ledger.start(UPLOAD, run_id="r1", execution="e1", step="crawl")["owner"] == "r1"


def test_an_older_state_never_overwrites_a_newer(ledger: UploadLedger) -> None:
    ledger.start(UPLOAD, run_id="r1", execution="e1", step="load")
    ledger.finish(UPLOAD, run_id="r1", outcome=LOADED)
    for late_write in (
        lambda: ledger.step(UPLOAD, run_id="r1", step="clean"),
        lambda: ledger.fail(UPLOAD, run_id="r1", error="States.Timeout", cause="late"),
        lambda: ledger.finish(UPLOAD, run_id="r1", outcome=QUARANTINED),
    ):
        with pytest.raises(LedgerConflict, match="'loaded'"):
            late_write()
    assert ledger.get(UPLOAD)["state"] == LOADED


def test_a_failed_upload_is_taken_by_a_new_run_and_a_loaded_one_only_by_force(ledger: UploadLedger) -> None:
    ledger.start(UPLOAD, run_id="r1", execution="e1", step="load")
    record = ledger.fail(UPLOAD, run_id="r1", error="LoadFailed", cause="the warehouse is down")
    assert (record["state"], record["error"], record["step"]) == (FAILED, "LoadFailed", "load")
    record = ledger.start(UPLOAD, run_id="r2", execution="e2", step="crawl")
    assert "error" not in record and [run["run_id"] for run in record["runs"]] == ["r1", "r2"]
    ledger.finish(UPLOAD, run_id="r2", outcome=LOADED)
    with pytest.raises(LedgerConflict):
        ledger.start(UPLOAD, run_id="r3", execution="e3", step="crawl")
    assert ledger.start(UPLOAD, run_id="r3", execution="e3", step="crawl", force=True)["owner"] == "r3"


def test_received_is_written_once(ledger: UploadLedger) -> None:
    assert ledger.received(UPLOAD) is True
    assert ledger.received(UPLOAD) is False
    assert ledger.start(UPLOAD, run_id="r1", execution="e1", step="crawl")["received_at"]


def test_the_version_is_the_sort_key() -> None:
    assert version_of("v1", '"e"') == "v1"
    assert version_of(None, '"e"') == "etag:e"
    assert version_of("null", None) == "null"


def test_the_clean_job_writes_its_counts_into_the_record_its_run_holds(ledger: UploadLedger) -> None:
    from pipeline_constructs.runtime.clean_transform import CleanResult
    from pipeline_constructs.runtime.glue_clean_job import record_counts_in_ledger, resolve_args

    ledger.start(UPLOAD, run_id="r1", execution="e1", step="clean")
    args = resolve_args(
        [
            *("--contract_path", "contract.json", "--curated_root", "s3://c/", "--quarantine_root", "s3://q/", "--run_id", "r1"),
            *("--source_uris", f'["{UPLOAD.uri}"]', "--source_versions", '["v1"]', "--ledger_table", ledger.table_name),
            *("--pipeline_form", "step_functions"),
        ]
    )
    result = CleanResult(
        dataset="retail_sales", run_id="r1", rows_in=40, rows_out=38, rows_quarantined=2, lines_read=41, lines_quarantined=2
    )
    result.quarantine_path = "s3://q/retail_sales/run_id=r1/"
    record = record_counts_in_ledger(args, result, ledger.client)
    assert record is not None and (record["rows_out"], record["lines_quarantined"], record["quarantine_uri"]) == (
        38,
        2,
        "s3://q/retail_sales/run_id=r1/",
    )
    assert record["expires_at"] > 0 and record["state"] == RUNNING

    # A run that does not hold the upload cannot write into it, and the job fails naming the upload.
    with pytest.raises(LedgerConflict, match="store-17.csv"):
        record_counts_in_ledger({**args, "run_id": "r2"}, result, ledger.client)
    # A file rejected as a whole ends rejected.
    result.rejected_files.append({"source_uri": UPLOAD.uri, "reason": "header differs"})
    assert record_counts_in_ledger(args, result, ledger.client)["state"] == "rejected"


def test_each_load_target_outcome_is_kept_so_a_re_run_loads_only_the_failed_one(ledger: UploadLedger) -> None:
    ledger.start(UPLOAD, run_id="r1", execution="arn:exec:r1", step="load")
    ledger.target(UPLOAD, run_id="r1", target="athena", outcome=LOADED)
    record = ledger.target(UPLOAD, run_id="r1", target="redshift", outcome=FAILED)
    assert (record["state"], record["load_athena"], record["load_redshift"]) == (RUNNING, LOADED, FAILED)
    ledger.fail(UPLOAD, run_id="r1", error="LoadFailed", cause="load into redshift failed")
    record = ledger.start(UPLOAD, run_id="r2", execution="arn:exec:r2", step="load")
    assert loaded_targets(record) == ["athena"]
    assert targets_to_load(record, ("athena", "redshift")) == ["redshift"]
    assert targets_to_load(None, ("athena", "redshift")) == ["athena", "redshift"]
    with pytest.raises(LedgerConflict):
        ledger.target(UPLOAD, run_id="r1", target="redshift", outcome=LOADED)  # r1 no longer owns the upload


def test_a_target_or_outcome_the_ledger_does_not_know_is_refused_by_name(ledger: UploadLedger) -> None:
    with pytest.raises(ValueError, match="target='bigquery'"):
        target_attribute("bigquery")
    with pytest.raises(ValueError, match="outcome='running'"):
        ledger.target(UPLOAD, run_id="r1", target="athena", outcome=RUNNING)
