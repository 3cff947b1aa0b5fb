"""The clean job reads the object version its event named: an upload overwritten after its event fails the run
before anything is read (and again after the output is written), naming both versions (moto's versioned S3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline_constructs.runtime import glue_clean_job as job
from tests.fake_aws import FAKE_AWS_REGION

BUCKET, KEY = "landing", "incoming/step_functions/store-7.csv"


@pytest.fixture
def s3(fake_aws: None) -> Any:
    client = boto3.client("s3", region_name=FAKE_AWS_REGION)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": FAKE_AWS_REGION})
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


def put(s3: Any, body: bytes) -> dict[str, Any]:
    return s3.put_object(Bucket=BUCKET, Key=KEY, Body=body)


def test_the_named_version_passes_and_an_overwritten_one_fails_naming_both(s3: Any) -> None:
    first = put(s3, b"a,b\n1,2\n")
    uri = f"s3://{BUCKET}/{KEY}"
    job.check_source_versions(s3, [uri], [first["VersionId"]])
    second = put(s3, b"a,b\n3,4\n")
    with pytest.raises(job.SourceVersionChanged, match=f"named version {first['VersionId']}, the bucket now holds {second['VersionId']}"):
        job.check_source_versions(s3, [uri], [first["VersionId"]])


def test_an_unversioned_source_is_checked_by_its_etag(s3: Any) -> None:
    first = put(s3, b"a,b\n1,2\n")
    uri = f"s3://{BUCKET}/{KEY}"
    named = "etag:" + first["ETag"].strip('"')
    job.check_source_versions(s3, [uri], [named])
    put(s3, b"a,b\n5,6\n")
    with pytest.raises(job.SourceVersionChanged, match=f"named version {named}"):
        job.check_source_versions(s3, [uri], [named])


def test_local_sources_and_missing_versions_are_not_checked(s3: Any, tmp_path: Path) -> None:
    job.check_source_versions(s3, [str(tmp_path / "x.csv"), f"s3://{BUCKET}/absent.csv"], ["v1", ""])


def test_a_run_of_an_overwritten_upload_fails_before_spark_reads_anything(s3: Any, tmp_path: Path) -> None:
    """Before this check the job read whatever the key held when Spark got to it, and recorded it as the event's
    version."""
    first = put(s3, b"a,b\n1,2\n")
    put(s3, b"a,b\n3,4\n")
    argv = [
        "--JOB_NAME", "retail-clean", "--JOB_RUN_ID", "jr_1", "--contract_path", str(tmp_path / "contract.json"),
        "--source_uris", json.dumps([f"s3://{BUCKET}/{KEY}"]), "--source_versions", json.dumps([first["VersionId"]]),
        "--run_id", "run-1", "--curated_root", str(tmp_path / "curated"), "--quarantine_root", str(tmp_path / "quarantine"),
    ]  # fmt: skip

    class NoSpark:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"Spark was used ({name}) before the version check")

    with pytest.raises(job.SourceVersionChanged):
        job.main(argv, spark=NoSpark(), clients={"s3": s3})  # type: ignore[arg-type]
