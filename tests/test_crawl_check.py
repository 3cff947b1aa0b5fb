"""`runtime/crawl_check.py` against moto's Glue and S3: crawl only when the uploads can change the raw table, and the
header read the way the clean job reads it (`clean_transform.inspect_header`)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import boto3
import pytest

from pipeline_constructs.contract import DatasetContract
from pipeline_constructs.runtime.clean_transform import inspect_header
from pipeline_constructs.runtime.crawl_check import (
    HEAD_BYTES,
    NO_TABLE,
    UNCHANGED,
    HeaderUnreadable,
    check,
    crawl_needed,
    header_names,
    raw_table_name,
)
from pipeline_constructs.runtime.upload_ledger import Upload, UploadLedger
from stacks.stateful_stack import CONTRACT_PATH
from tests.fake_aws import FAKE_AWS_REGION
from tests.ledger_table import create_ledger_table

pytestmark = [pytest.mark.usefixtures("fake_aws"), pytest.mark.timeout(120)]
CONTRACT = DatasetContract.from_file(CONTRACT_PATH)
COLUMNS = [column.name for column in CONTRACT.columns]
HEADER = ",".join(COLUMNS)
ROW = ",".join("1" for _ in COLUMNS)
BUCKET, DATABASE, TABLE = "landing-bucket", "retail", "raw_incoming"


@pytest.fixture
def clients() -> dict[str, Any]:
    s3 = boto3.client("s3", region_name=FAKE_AWS_REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": FAKE_AWS_REGION})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    glue = boto3.client("glue", region_name=FAKE_AWS_REGION)
    glue.create_database(DatabaseInput={"Name": DATABASE})
    return {"s3": s3, "glue": glue, "dynamodb": boto3.client("dynamodb", region_name=FAKE_AWS_REGION)}


def create_table(glue: Any, columns: list[str]) -> None:
    """The raw table as the crawler writes it: lower-case names in the header's order, the folders as partition keys."""
    glue.create_table(
        DatabaseName=DATABASE,
        TableInput={
            "Name": TABLE,
            "StorageDescriptor": {"Columns": [{"Name": name, "Type": "string"} for name in columns]},
            "PartitionKeys": [{"Name": "partition_0", "Type": "string"}],
        },
    )


def put(s3: Any, key: str, body: bytes) -> Upload:
    answer = s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return Upload(BUCKET, key, version_id=answer["VersionId"])


def needed(clients: dict[str, Any], uploads: list[Upload]) -> tuple[bool, str]:
    return crawl_needed(clients["glue"], clients["s3"], database=DATABASE, table=TABLE, uploads=uploads, columns=COLUMNS)


def test_no_raw_table_yet_crawls(clients: dict[str, Any]) -> None:
    upload = put(clients["s3"], "incoming/step_functions/a.csv", f"{HEADER}\n{ROW}\n".encode())
    assert needed(clients, [upload]) == (True, NO_TABLE)


def test_the_same_header_again_skips_the_crawl(clients: dict[str, Any]) -> None:
    create_table(clients["glue"], COLUMNS)
    uploads = [put(clients["s3"], f"incoming/step_functions/{n}.csv", f"{HEADER}\n{ROW}\n".encode()) for n in "abc"]
    assert needed(clients, uploads) == (False, UNCHANGED)


def test_bom_crlf_quotes_and_case_read_as_the_same_header(clients: dict[str, Any]) -> None:
    create_table(clients["glue"], COLUMNS)
    quoted = ",".join(f'" {name.upper()} "' for name in COLUMNS)
    upload = put(clients["s3"], "incoming/step_functions/excel.csv", b"\xef\xbb\xbf" + f"{quoted}\r\n{ROW}\r\n".encode())
    assert needed(clients, [upload]) == (False, UNCHANGED)


def test_a_gzip_upload_is_read_decompressed(clients: dict[str, Any]) -> None:
    create_table(clients["glue"], COLUMNS)
    upload = put(clients["s3"], "incoming/step_functions/a.csv.gz", gzip.compress(f"{HEADER}\n{ROW}\n".encode()))
    assert needed(clients, [upload]) == (False, UNCHANGED)


def test_a_header_that_differs_crawls_naming_the_file(clients: dict[str, Any]) -> None:
    create_table(clients["glue"], COLUMNS)
    good = put(clients["s3"], "incoming/step_functions/good.csv", f"{HEADER}\n".encode())
    bad = put(clients["s3"], "incoming/step_functions/bad.csv", f"{HEADER},loyalty_tier\n".encode())
    crawl, reason = needed(clients, [good, bad])
    assert crawl and reason.startswith(f"{bad.uri}: header (") and "loyalty_tier" in reason and "differs from the raw table" in reason


def test_the_version_the_run_cleans_is_the_one_read(clients: dict[str, Any]) -> None:
    create_table(clients["glue"], COLUMNS)
    old = put(clients["s3"], "incoming/step_functions/a.csv", f"{HEADER}\n".encode())
    put(clients["s3"], "incoming/step_functions/a.csv", b"other,header\n")
    assert needed(clients, [old]) == (False, UNCHANGED)


def test_a_table_whose_columns_differ_from_the_contract_crawls(clients: dict[str, Any]) -> None:
    create_table(clients["glue"], [*COLUMNS[1:], COLUMNS[0]])
    upload = put(clients["s3"], "incoming/step_functions/a.csv", f"{HEADER}\n".encode())
    crawl, reason = needed(clients, [upload])
    assert crawl and reason.startswith("the raw table's columns (") and "differ from the contract's" in reason


@pytest.mark.parametrize(
    ("body", "why"),
    [(b"\x00\x01binary", "NUL"), (b"\xff\xfe,a\n", "not UTF-8"), (b"\n" + HEADER.encode(), "empty"), (b"x" * HEAD_BYTES, "no line break")],
)
def test_an_unreadable_header_crawls(clients: dict[str, Any], body: bytes, why: str) -> None:
    create_table(clients["glue"], COLUMNS)
    upload = put(clients["s3"], "incoming/step_functions/odd.csv", body)
    crawl, reason = needed(clients, [upload])
    assert crawl and reason.startswith(f"{upload.uri}: header unreadable") and why in reason


def test_an_object_that_cannot_be_read_crawls(clients: dict[str, Any]) -> None:
    create_table(clients["glue"], COLUMNS)
    missing = Upload(BUCKET, "incoming/step_functions/gone.csv", version_id="no-such-version")
    crawl, reason = needed(clients, [missing])
    assert crawl and reason.startswith(f"{missing.uri} could not be read (")


def test_a_table_that_cannot_be_read_crawls(clients: dict[str, Any]) -> None:
    crawl, reason = crawl_needed(clients["glue"], clients["s3"], database="no_such_database", table=TABLE, uploads=[], columns=COLUMNS)
    assert crawl and (reason == NO_TABLE or "could not be read" in reason), reason


@pytest.mark.parametrize(
    "head",
    [
        f"{HEADER}\n".encode(),
        b"\xef\xbb\xbf" + f"{HEADER}\r\n".encode(),
        ",".join(f'"{name}"' for name in COLUMNS).encode() + b"\n",
        f" {HEADER.upper()} ,extra\n".encode(),
        f"{HEADER}".encode(),
    ],
)
def test_headers_are_read_as_the_clean_job_reads_them(head: bytes) -> None:
    assert header_names(head) == inspect_header(CONTRACT, "s3://b/k.csv", head).columns


@pytest.mark.parametrize("head", [b"", b"\n", b"a,b\x00\n", b"\xc3(\n"])
def test_a_header_the_clean_job_rejects_as_unreadable_is_a_doubt(head: bytes) -> None:
    """What the clean job rejects before it looks at the columns, the check cannot read either: it crawls."""
    assert inspect_header(CONTRACT, "s3://b/k.csv", head).rejection is not None
    with pytest.raises(HeaderUnreadable):
        header_names(head)


def test_the_raw_table_is_named_after_the_crawlers_target_folder() -> None:
    assert raw_table_name("raw_", "incoming/") == "raw_incoming"
    assert raw_table_name("raw_", "data/retail-sales/") == "raw_retail_sales"


def test_a_scheduled_check_records_the_decision_on_every_claimed_upload(clients: dict[str, Any]) -> None:
    create_table(clients["glue"], COLUMNS)
    table = create_ledger_table(clients["dynamodb"])
    ledger = UploadLedger(clients["dynamodb"], table, form="step_functions")
    uploads = [put(clients["s3"], f"incoming/step_functions/{n}.csv", f"{HEADER}\n".encode()) for n in "ab"]
    for upload in uploads:
        ledger.start(upload, run_id="run-1", execution="arn:run-1", step="crawl")
    event = {
        "database": DATABASE,
        "table": TABLE,
        "columns": COLUMNS,
        "source_uris": json.dumps([upload.uri for upload in uploads]),
        "source_versions": json.dumps([upload.version for upload in uploads]),
        "ledger": {"TableName": table, "form": "step_functions", "ttl_days": 30, "run_id": "run-1"},
    }
    assert check(event, clients) == {"crawl": False, "reason": UNCHANGED, "recorded": 2}
    assert [ledger.get(upload)["crawl"] for upload in uploads] == [UNCHANGED, UNCHANGED]  # type: ignore[index]
    other = check({**event, "ledger": {**event["ledger"], "run_id": "run-2"}}, clients)
    assert other["recorded"] == 0, "a run that does not hold the uploads records nothing"
