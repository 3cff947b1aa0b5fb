"""Which uploads a Glue workflow run processes (runtime/workflow_inputs.py), against moto S3 and Glue.

The scenario the form must get right: several files arrive in one batch and are all processed by one run, once; a
run whose load fails leaves its files for the next run; a re-upload with new content is processed again.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from pipeline_constructs.runtime.workflow_inputs import (
    CLAIMED_PROPERTY,
    WorkflowInputsError,
    claim_sources_from_uris,
    claimed_sources,
    commit_sources,
    commit_sources_from_uri,
    curated_rows,
    list_sources,
    parse_s3_uri,
    read_processed,
    read_rejected,
    record_curated_rows,
    record_rejected_from_uri,
)
from tests.fake_aws import FAKE_AWS_REGION

REGION = FAKE_AWS_REGION
LANDING = "landing"
PREFIX = "incoming/glue_workflow/"
LISTING_URI = f"s3://{LANDING}/{PREFIX}"
STATE_URI = "s3://curated/retail_sales/_workflow_state/glue_workflow/processed.json"
WORKFLOW = "retail-pipeline"


@pytest.fixture
def clients(fake_aws: None):
    s3 = boto3.client("s3", region_name=REGION)
    glue = boto3.client("glue", region_name=REGION)
    for bucket in (LANDING, "curated"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    glue.create_workflow(Name=WORKFLOW)
    return s3, glue


def upload(s3: Any, name: str, body: bytes = b"transaction_id,sku\n1,a\n") -> str:
    s3.put_object(Bucket=LANDING, Key=PREFIX + name, Body=body)
    return f"s3://{LANDING}/{PREFIX}{name}"


def new_run(glue: Any) -> str:
    return glue.start_workflow_run(Name=WORKFLOW)["RunId"]


def claim(s3: Any, glue: Any, run_id: str) -> list[str]:
    return claim_sources_from_uris(s3, glue, listing_uri=LISTING_URI, state_uri=STATE_URI, workflow_name=WORKFLOW, run_id=run_id)


def commit(s3: Any, glue: Any, run_id: str) -> int:
    return commit_sources_from_uri(s3, glue, state_uri=STATE_URI, workflow_name=WORKFLOW, run_id=run_id)


def test_a_batch_of_uploads_is_claimed_by_one_run_and_not_again_after_its_commit(clients: tuple[Any, Any]) -> None:
    s3, glue = clients
    batch = [upload(s3, f"2026/11/25/sales-{i}.csv") for i in range(3)]
    first = new_run(glue)
    assert claim(s3, glue, first) == sorted(batch)
    assert commit(s3, glue, first) == 3

    later = upload(s3, "2026/11/26/sales.csv")
    second = new_run(glue)
    assert claim(s3, glue, second) == [later]


def test_the_claim_is_handed_to_the_load_job_in_the_run_properties(clients: tuple[Any, Any]) -> None:
    s3, glue = clients
    upload(s3, "a.csv")
    run_id = new_run(glue)
    claim(s3, glue, run_id)
    properties = glue.get_workflow_run_properties(Name=WORKFLOW, RunId=run_id)["RunProperties"]
    claimed = json.loads(properties[CLAIMED_PROPERTY])
    assert list(claimed) == [PREFIX + "a.csv"]
    assert claimed == claimed_sources(glue, workflow_name=WORKFLOW, run_id=run_id)


def test_uploads_of_a_run_that_never_committed_are_claimed_by_the_next_run(clients: tuple[Any, Any]) -> None:
    s3, glue = clients
    stuck = upload(s3, "a.csv")
    failed_run = new_run(glue)
    assert claim(s3, glue, failed_run) == [stuck]  # ... and its load fails: no commit
    fresh = upload(s3, "b.csv")
    retry_run = new_run(glue)
    assert claim(s3, glue, retry_run) == [stuck, fresh]


def test_a_reupload_with_new_content_is_processed_again(clients: tuple[Any, Any]) -> None:
    s3, glue = clients
    uri = upload(s3, "a.csv", b"transaction_id\n1\n")
    first = new_run(glue)
    claim(s3, glue, first)
    commit(s3, glue, first)
    upload(s3, "a.csv", b"transaction_id\n1\n2\n")
    assert claim(s3, glue, new_run(glue)) == [uri]


def test_only_non_empty_csv_files_under_the_prefix_are_sources(clients: tuple[Any, Any]) -> None:
    s3, glue = clients
    wanted = upload(s3, "sales.csv")
    upload(s3, "empty.csv", b"")
    upload(s3, "notes.txt")
    upload(s3, "_SUCCESS.csv")
    upload(s3, "sub/.hidden.csv")
    s3.put_object(Bucket=LANDING, Key="incoming/step_functions/other.csv", Body=b"x\n")
    assert [o.key for o in list_sources(s3, bucket=LANDING, prefix=PREFIX)] == [PREFIX + "sales.csv"]
    assert claim(s3, glue, new_run(glue)) == [wanted]


def test_a_run_with_nothing_new_claims_nothing(clients: tuple[Any, Any]) -> None:
    s3, glue = clients
    upload(s3, "a.csv")
    first = new_run(glue)
    claim(s3, glue, first)
    commit(s3, glue, first)
    duplicate_delivery = new_run(glue)
    assert claim(s3, glue, duplicate_delivery) == []
    assert commit(s3, glue, duplicate_delivery) == 0


def test_uploads_that_expired_are_forgotten_by_the_next_claim(clients: tuple[Any, Any]) -> None:
    s3, glue = clients
    upload(s3, "old.csv")
    upload(s3, "kept.csv")
    first = new_run(glue)
    claim(s3, glue, first)
    commit(s3, glue, first)
    s3.delete_object(Bucket=LANDING, Key=PREFIX + "old.csv")  # the landing lifecycle rule expired it
    claim(s3, glue, new_run(glue))
    bucket, key = parse_s3_uri(STATE_URI)
    processed, _ = read_processed(s3, state_bucket=bucket, state_key=key)
    assert list(processed) == [PREFIX + "kept.csv"]


def test_commits_of_two_overlapping_runs_both_survive(clients: tuple[Any, Any]) -> None:
    s3, glue = clients
    upload(s3, "a.csv")
    run_a = new_run(glue)
    claim(s3, glue, run_a)
    upload(s3, "b.csv")
    run_b = new_run(glue)
    claim(s3, glue, run_b)  # claims a.csv too: the idempotent load absorbs the duplicate
    assert commit(s3, glue, run_b) == 2
    assert commit(s3, glue, run_a) == 1
    bucket, key = parse_s3_uri(STATE_URI)
    processed, _ = read_processed(s3, state_bucket=bucket, state_key=key)
    assert sorted(processed) == [PREFIX + "a.csv", PREFIX + "b.csv"]


def test_commit_retries_when_another_run_wrote_the_state_in_between(clients: tuple[Any, Any]) -> None:
    s3, glue = clients
    upload(s3, "a.csv")
    run_id = new_run(glue)
    claim(s3, glue, run_id)
    bucket, key = parse_s3_uri(STATE_URI)
    real_put = s3.put_object
    calls = {"n": 0}

    def put_after_a_concurrent_commit(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:  # another run commits between our read and our write
            real_put(Bucket=bucket, Key=key, Body=json.dumps({"objects": {"incoming/glue_workflow/z.csv": "e"}}).encode())
        return real_put(**kwargs)

    s3.put_object = put_after_a_concurrent_commit  # type: ignore[method-assign]
    try:
        assert commit_sources(s3, glue, state_bucket=bucket, state_key=key, workflow_name=WORKFLOW, run_id=run_id) == 1
    finally:
        s3.put_object = real_put  # type: ignore[method-assign]
    processed, _ = read_processed(s3, state_bucket=bucket, state_key=key)
    assert sorted(processed) == [PREFIX + "a.csv", "incoming/glue_workflow/z.csv"]
    assert calls["n"] == 2


def test_the_state_file_is_written_only_if_unchanged(clients: tuple[Any, Any]) -> None:
    """The conditional write the commit relies on (moto implements S3's If-Match / If-None-Match)."""
    s3, _ = clients
    s3.put_object(Bucket="curated", Key="k", Body=b"{}", IfNoneMatch="*")
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket="curated", Key="k", Body=b"{}", IfNoneMatch="*")
    assert raised.value.response["Error"]["Code"] == "PreconditionFailed"


def test_commit_without_a_claim_fails_naming_the_run(clients: tuple[Any, Any]) -> None:
    s3, glue = clients
    run_id = new_run(glue)
    with pytest.raises(WorkflowInputsError, match=f"run {run_id} has no run property"):
        commit(s3, glue, run_id)


@pytest.mark.parametrize("uri", ["landing/incoming/", "s3://", "s3:///key", "https://landing/x"])
def test_parse_s3_uri_rejects_what_is_not_an_s3_uri(uri: str) -> None:
    with pytest.raises(ValueError, match="uri="):
        parse_s3_uri(uri)


# --- poisoned files: a rejected upload is recorded once and never claimed again ----------------------------------


def _etag(s3: Any, name: str) -> str:
    return s3.head_object(Bucket=LANDING, Key=PREFIX + name)["ETag"].strip('"')


def test_a_rejected_upload_is_recorded_with_its_reason_once_and_later_runs_skip_it(clients: tuple[Any, Any]) -> None:
    s3, glue = clients
    good = upload(s3, "good.csv")
    bad = upload(s3, "bad.csv", b"store_id\nS001\n")
    first = new_run(glue)
    assert claim(s3, glue, first) == [bad, good]
    rejected = {PREFIX + "bad.csv": (_etag(s3, "bad.csv"), "missing_required_columns: transaction_id")}
    newly = record_rejected_from_uri(s3, state_uri=STATE_URI, rejected=rejected, run_id=first)
    assert newly == {PREFIX + "bad.csv": "missing_required_columns: transaction_id"}
    # The same job run retried (or a second call) finds it recorded: nothing new, so nothing is alerted twice.
    assert record_rejected_from_uri(s3, state_uri=STATE_URI, rejected=rejected, run_id=first) == {}

    # The first run's load failed (no commit): the next run takes the good file again, never the bad one.
    second = new_run(glue)
    assert claim(s3, glue, second) == [good]
    assert commit(s3, glue, second) == 1
    assert claim(s3, glue, new_run(glue)) == []

    bucket, key = parse_s3_uri(STATE_URI)
    assert read_rejected(s3, state_bucket=bucket, state_key=key) == {
        PREFIX + "bad.csv": {"etag": _etag(s3, "bad.csv"), "reason": "missing_required_columns: transaction_id", "run_id": first}
    }
    processed, _ = read_processed(s3, state_bucket=bucket, state_key=key)
    assert processed == {PREFIX + "good.csv": _etag(s3, "good.csv")}, "recording a rejection keeps the processed list"


def test_a_rejected_upload_replaced_with_new_content_is_claimed_again(clients: tuple[Any, Any]) -> None:
    s3, glue = clients
    upload(s3, "bad.csv", b"store_id\nS001\n")
    first = new_run(glue)
    claim(s3, glue, first)
    record_rejected_from_uri(s3, state_uri=STATE_URI, rejected={PREFIX + "bad.csv": (_etag(s3, "bad.csv"), "why")}, run_id=first)
    fixed = upload(s3, "bad.csv", b"transaction_id,sku\n9,z\n")
    second = new_run(glue)
    assert claim(s3, glue, second) == [fixed]
    commit(s3, glue, second)
    bucket, key = parse_s3_uri(STATE_URI)
    assert read_rejected(s3, state_bucket=bucket, state_key=key) == {}, "the fixed upload is no longer rejected"


def test_the_curated_row_count_is_handed_to_the_load_job(clients: tuple[Any, Any]) -> None:
    _, glue = clients
    run_id = new_run(glue)
    assert curated_rows(glue, workflow_name=WORKFLOW, run_id=run_id) is None
    record_curated_rows(glue, workflow_name=WORKFLOW, run_id=run_id, rows=0)
    assert curated_rows(glue, workflow_name=WORKFLOW, run_id=run_id) == 0
    record_curated_rows(glue, workflow_name=WORKFLOW, run_id=run_id, rows=12)
    assert curated_rows(glue, workflow_name=WORKFLOW, run_id=run_id) == 12
