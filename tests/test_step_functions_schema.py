"""Crawl only when it can change something, in the Step Functions form's upload mode: the SYNTHESIZED state machine in
the ASL interpreter, its Check Schema answered by the real function code (runtime/crawl_check.py) on moto's Glue and
S3 for the payload the interpreter sent, and its ledger writes replayed on moto's DynamoDB."""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
import pytest

from pipeline_constructs.contract import DatasetContract
from pipeline_constructs.runtime import crawl_check
from pipeline_constructs.runtime.clean_transform import inspect_header
from pipeline_constructs.runtime.upload_ledger import Upload, UploadLedger
from stacks.stateful_stack import CONTRACT_PATH
from tests.asl_runner import ExecutionResult, definition_from_template, replay_ledger_writes, run_state_machine, schema_checked
from tests.fake_aws import FAKE_AWS_REGION
from tests.ledger_table import create_ledger_table
from tests.test_step_functions_form import BUCKET, CONTEXT, UPLOAD_EVENT, scripts

pytestmark = [pytest.mark.usefixtures("fake_aws"), pytest.mark.timeout(900)]
CONTRACT = DatasetContract.from_file(CONTRACT_PATH)
COLUMNS = [column.name for column in CONTRACT.columns]
HEADER = ",".join(COLUMNS)
CRAWL_STATES = ("Crawl", "Get Crawler", "Start Crawler")
CLEAN_JOB_REJECTED = {
    "error": "States.TaskFailed",
    "cause": json.dumps({"JobRunState": "FAILED", "ErrorMessage": "file rejected: missing_required_columns: store_id"}),
}


@pytest.fixture(scope="module")
def definition(templates: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """dev's StepFunctions stack (upload mode, Athena, with a ledger)."""
    return definition_from_template(templates[("dev", "StepFunctions")])


class World:
    """moto's landing bucket, Glue database and ledger table, named as the definition's Check Schema names them."""

    def __init__(self, definition: dict[str, Any]) -> None:
        self.definition = definition
        payload = definition["States"]["Check Schema"]["Parameters"]["Payload"]
        self.database, self.table = payload["database"], payload["table"]
        self.glue = boto3.client("glue", region_name=FAKE_AWS_REGION)
        self.s3 = boto3.client("s3", region_name=FAKE_AWS_REGION)
        self.dynamodb = boto3.client("dynamodb", region_name=FAKE_AWS_REGION)
        self.glue.create_database(DatabaseInput={"Name": self.database})
        self.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": FAKE_AWS_REGION})
        self.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        self.ledger_table = create_ledger_table(self.dynamodb)
        self.ledger = UploadLedger(self.dynamodb, self.ledger_table, form="step_functions")

    def crawled(self) -> None:
        """What the first crawl leaves: the raw table, the contract's columns lower-case in the header's order."""
        self.glue.create_table(
            DatabaseName=self.database,
            TableInput={"Name": self.table, "StorageDescriptor": {"Columns": [{"Name": name, "Type": "string"} for name in COLUMNS]}},
        )

    def upload(self, name: str, header: str) -> tuple[dict[str, Any], Upload]:
        key = f"incoming/step_functions/{name}"
        answer = self.s3.put_object(Bucket=BUCKET, Key=key, Body=f"{header}\n".encode())
        event = copy.deepcopy(UPLOAD_EVENT)
        event["detail"]["object"].update({"key": key, "version-id": answer["VersionId"], "etag": answer["ETag"].strip('"')})
        return event, Upload(BUCKET, key, version_id=answer["VersionId"])

    def run(self, event: dict[str, Any], run_id: str, **overrides: list[dict[str, Any]]) -> tuple[ExecutionResult, dict[str, Any]]:
        """Run the upload: the interpreter's Check Schema payload answered by `crawl_check.check` on moto; returns the
        result and the upload's ledger record after its writes."""
        context = {"Execution": {**CONTEXT["Execution"], "Name": run_id, "Id": f"{CONTEXT['Execution']['Id']}-{run_id}"}}
        probe = run_state_machine(self.definition, event, scripts(Check_Schema=[schema_checked()], **overrides), context=context)
        [payload] = [call["Payload"] for call in probe.inputs_to("Check Schema")]
        answer = crawl_check.check(payload, {"glue": self.glue, "s3": self.s3})
        answered = {"result": {"Payload": answer, "StatusCode": 200}}
        result = run_state_machine(self.definition, event, scripts(Check_Schema=[answered], **overrides), context=context)
        assert [call["Payload"] for call in result.inputs_to("Check Schema")] == [payload]
        replay_ledger_writes(result, self.dynamodb, self.ledger_table)
        version = event["detail"]["object"]["version-id"]
        record = self.ledger.get(Upload(BUCKET, event["detail"]["object"]["key"], version_id=version))
        assert record is not None
        return result, record


@pytest.fixture
def world(definition: dict[str, Any]) -> World:
    return World(definition)


def crawled(result: ExecutionResult) -> bool:
    return any(state in result.states_entered for state in CRAWL_STATES)


def test_the_check_reads_the_version_the_run_cleans_against_the_crawlers_table(world: World) -> None:
    event, upload = world.upload("first.csv", HEADER)
    probe = run_state_machine(world.definition, event, scripts(), context=CONTEXT)
    [payload] = [call["Payload"] for call in probe.inputs_to("Check Schema")]
    assert (payload["table"], payload["columns"]) == ("raw_incoming", COLUMNS)
    assert crawl_check.uploads_of(payload["source_uris"], payload["source_versions"]) == [upload]
    [job] = probe.inputs_to("Run Clean Job")
    assert (job["Arguments"]["--source_uris"], job["Arguments"]["--source_versions"]) == (
        payload["source_uris"],
        payload["source_versions"],
    )
    entered = probe.states_entered
    assert entered.index("Record Start") < entered.index("Check Schema") < entered.index("Record Crawl Decision") < entered.index("Crawl")


def test_a_first_upload_crawls_and_a_second_with_the_same_header_skips_the_crawl(world: World) -> None:
    event, _ = world.upload("monday.csv", HEADER)
    first, record = world.run(event, "run-1")
    assert first.status == "SUCCEEDED", first
    assert crawled(first) and len(first.calls_to("Start Crawler")) == 1
    assert record["crawl"] == crawl_check.NO_TABLE and record["state"] == "loaded"

    world.crawled()
    event, _ = world.upload("tuesday.csv", HEADER)
    second, record = world.run(event, "run-2")
    assert second.status == "SUCCEEDED", second
    assert not crawled(second), "the same header again: nothing for a crawl to change"
    assert second.states_entered.index("Crawl Needed?") < second.states_entered.index("Run Clean Job")
    assert second.calls_to("Start Load Query"), "the run still cleans and loads"
    assert record["crawl"] == "schema unchanged" and record["state"] == "loaded"


def test_an_upload_with_a_different_header_crawls_and_is_still_rejected_by_the_clean_job(world: World) -> None:
    world.crawled()
    header = HEADER.replace("store_id", "store_code")
    event, upload = world.upload("renamed.csv", header)
    result, record = world.run(event, "run-3", Run_Clean_Job=[CLEAN_JOB_REJECTED])
    assert crawled(result) and len(result.calls_to("Start Crawler")) == 1
    assert record["crawl"].startswith(f"{upload.uri}: header (") and "store_code" in record["crawl"]
    rejection = inspect_header(CONTRACT, upload.uri, f"{header}\n".encode()).rejection
    assert rejection == "missing_required_columns: store_id", "the clean job's own header check rejects the file as a whole"
    assert result.status == "FAILED" and result.states_entered[-1] == "Run Clean Job"
    assert record["state"] == "running" and record["step"] == "clean"  # the failure reporter records the rest
