"""Which uploads a Glue workflow run takes (runtime/workflow_inputs.py), through the upload ledger, against moto's
SQS (the inbox), Glue (the run properties) and DynamoDB (the ledger, with DynamoDB's own conditions).

What the form must get right: a batch of uploads is taken by one run, once; a run cannot take what another run
holds; a rejected file is never taken again; a new version of a key is; a failed run's uploads go to the next run.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from pipeline_constructs.runtime.upload_ledger import LOADED, REJECTED, RUNNING, Upload, UploadLedger
from pipeline_constructs.runtime.workflow_inputs import (
    CLAIMED_PROPERTY,
    MAX_AUTOMATIC_ATTEMPTS,
    REQUESTED_PROPERTY,
    WorkflowInputsError,
    claim_uploads,
    fail_uploads,
    parse_s3_uri,
    read_uploads,
    upload_of_event,
    uploads_from_json,
    uploads_to_json,
)
from tests.fake_aws import FAKE_AWS_REGION
from tests.ledger_table import create_ledger_table

LANDING = "landing"
PREFIX = "incoming/glue_workflow/"
WORKFLOW = "retail-pipeline"


class Form:
    """The inbox, the workflow and the ledger of one form in moto."""

    def __init__(self) -> None:
        self.sqs = boto3.client("sqs", region_name=FAKE_AWS_REGION)
        self.glue = boto3.client("glue", region_name=FAKE_AWS_REGION)
        dynamodb = boto3.client("dynamodb", region_name=FAKE_AWS_REGION)
        self.ledger = UploadLedger(dynamodb, create_ledger_table(dynamodb), form="glue_workflow", ttl_days=30)
        self.inbox = self.sqs.create_queue(QueueName="inbox")["QueueUrl"]
        self.glue.create_workflow(Name=WORKFLOW)

    def upload(self, name: str, version: str = "v1") -> Upload:
        """An upload whose event reaches the inbox, as the upload rule sends it."""
        upload = Upload(LANDING, PREFIX + name, version, f"etag-{name}-{version}")
        self.sqs.send_message(QueueUrl=self.inbox, MessageBody=event(upload))
        return upload

    def new_run(self) -> str:
        return str(self.glue.start_workflow_run(Name=WORKFLOW)["RunId"])

    def claim(self, run_id: str) -> list[Upload]:
        return claim_uploads(
            self.ledger,
            sqs=self.sqs,
            glue=self.glue,
            inbox_url=self.inbox,
            workflow_name=WORKFLOW,
            run_id=run_id,
            landing_bucket=LANDING,
            landing_prefix=PREFIX,
        )

    def waiting(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.inbox, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def record(self, upload: Upload) -> dict[str, Any]:
        record = self.ledger.get(upload)
        assert record is not None, upload
        return record


def event(upload: Upload) -> str:
    obj = {"key": upload.key, "size": 20, "etag": upload.etag, "version-id": upload.version_id}
    return json.dumps({"detail-type": "Object Created", "source": "aws.s3", "detail": {"bucket": {"name": upload.bucket}, "object": obj}})


@pytest.fixture
def form(fake_aws: None) -> Form:
    return Form()


def test_a_batch_of_uploads_is_taken_by_one_run_at_step_clean_and_the_inbox_is_emptied(form: Form) -> None:
    batch = [form.upload(f"2026/11/25/sales-{i}.csv") for i in range(12)]  # more than one receive of 10
    run = form.new_run()
    assert sorted(u.key for u in form.claim(run)) == sorted(u.key for u in batch)
    assert form.waiting() == 0
    record = form.record(batch[0])
    assert (record["state"], record["step"], record["owner"], record["version"]) == (RUNNING, "clean", run, "v1")
    [taken] = record["runs"]
    assert taken["run_id"] == run and taken["execution"] == f"{WORKFLOW}/{run}" and taken["form"] == "glue_workflow"
    claimed = read_uploads(form.glue, workflow_name=WORKFLOW, run_id=run, name=CLAIMED_PROPERTY)
    assert claimed is not None and sorted(claimed, key=lambda u: u.key) == sorted(batch, key=lambda u: u.key)
    assert form.claim(form.new_run()) == [], "the next run finds nothing new"


def test_an_upload_another_run_holds_is_not_taken(form: Form) -> None:
    upload = form.upload("sales.csv")
    first, second = form.new_run(), form.new_run()
    assert form.claim(first) == [upload]
    form.sqs.send_message(QueueUrl=form.inbox, MessageBody=event(upload))  # EventBridge delivers at least once
    form.glue.put_workflow_run_properties(Name=WORKFLOW, RunId=second, RunProperties={REQUESTED_PROPERTY: uploads_to_json([upload])})
    assert form.claim(second) == []
    assert form.record(upload)["owner"] == first and form.waiting() == 0


def test_a_rejected_file_is_never_taken_again(form: Form) -> None:
    upload = form.upload("bad.csv")
    run = form.new_run()
    form.claim(run)
    form.ledger.finish(upload, run_id=run, outcome=REJECTED)
    form.sqs.send_message(QueueUrl=form.inbox, MessageBody=event(upload))
    later = form.new_run()
    form.glue.put_workflow_run_properties(Name=WORKFLOW, RunId=later, RunProperties={REQUESTED_PROPERTY: uploads_to_json([upload])})
    assert form.claim(later) == []
    assert form.record(upload)["state"] == REJECTED


def test_a_new_version_of_a_loaded_key_is_taken_again(form: Form) -> None:
    first = form.upload("sales.csv", "v1")
    run = form.new_run()
    form.claim(run)
    form.ledger.finish(first, run_id=run, outcome=LOADED)
    second = form.upload("sales.csv", "v2")
    assert form.claim(form.new_run()) == [second]
    assert form.record(first)["state"] == LOADED and form.record(second)["state"] == RUNNING


def test_a_failed_runs_uploads_are_taken_by_the_next_run_until_they_failed_three_times(form: Form) -> None:
    uploads = [form.upload(f"sales-{i}.csv") for i in range(2)]
    for attempt in range(MAX_AUTOMATIC_ATTEMPTS):
        run = form.new_run()
        assert sorted(u.key for u in form.claim(run)) == sorted(u.key for u in uploads), f"attempt {attempt + 1}"
        assert fail_uploads(form.ledger, uploads, run_id=run, error="LoadFailed", cause="the warehouse is down") == 2
    assert form.record(uploads[0])["error"] == "LoadFailed"
    assert form.claim(form.new_run()) == [], "a file that failed three runs no longer fails every run"
    requested = form.new_run()
    form.glue.put_workflow_run_properties(Name=WORKFLOW, RunId=requested, RunProperties={REQUESTED_PROPERTY: uploads_to_json(uploads[:1])})
    assert form.claim(requested) == uploads[:1], "pipeline-ops rerun still takes it"


def test_a_retried_attempt_of_the_run_takes_back_what_it_claimed(form: Form) -> None:
    upload = form.upload("sales.csv")
    run = form.new_run()
    assert form.claim(run) == [upload]
    assert form.waiting() == 0
    assert form.claim(run) == [upload], "the inbox message is gone: the run's own claim brings it back"
    fail_uploads(form.ledger, [upload], run_id=run, error="Timeout", cause="the job timed out")
    assert form.claim(run) == [upload]


def test_messages_that_name_no_upload_of_this_form_are_deleted_not_taken(form: Form) -> None:
    form.sqs.send_message(QueueUrl=form.inbox, MessageBody="not json")
    form.sqs.send_message(QueueUrl=form.inbox, MessageBody=event(Upload(LANDING, "incoming/step_functions/x.csv", "v1", "e")))
    form.sqs.send_message(QueueUrl=form.inbox, MessageBody=event(Upload(LANDING, PREFIX + "_SUCCESS.csv", "v1", "e")))
    assert form.claim(form.new_run()) == []
    assert form.waiting() == 0


def test_an_unversioned_upload_is_keyed_by_its_etag_as_on_every_form() -> None:
    upload = upload_of_event(event(Upload(LANDING, PREFIX + "a.csv", None, '"abc"')))
    assert upload is not None and upload.version == "etag:abc"
    assert upload_of_event('{"detail": {}}') is None


def test_a_run_property_that_is_not_a_list_of_uploads_is_named() -> None:
    with pytest.raises(WorkflowInputsError, match="run property x: expected a JSON list"):
        uploads_from_json('{"a": 1}', "run property x")
    assert uploads_from_json(uploads_to_json([Upload("b", "k", "v", "e")]), "x") == [Upload("b", "k", "v", "e")]


@pytest.mark.parametrize("uri", ["", "bucket/prefix", "s3://", "s3:///prefix", None])
def test_parse_s3_uri_rejects_what_is_not_an_s3_uri(uri: Any) -> None:
    with pytest.raises(ValueError, match="expected s3://bucket/prefix/"):
        parse_s3_uri(uri)
