"""`pipeline-ops` against the synthesized app's outputs "deployed" into moto (tests/deployed_environment.py): every
subcommand's output and exit status, and the usage errors (no credentials, no region, a stack not deployed, a key
under no form's prefix). Where moto does not implement an API (Step Functions redrive, Glue's resume, MWAA's REST
API, MWAA Serverless, SQS's message-move task) the client is botocore's Stubber, with the exact request asserted."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from pipeline_constructs.operations.cli import main
from pipeline_constructs.operations.environment import load_environment
from pipeline_constructs.runtime.upload_lambdas.upload_events import dag_run_id
from pipeline_constructs.runtime.upload_ledger import Upload, UploadLedger
from pipeline_constructs.runtime.workflow_inputs import REQUESTED_PROPERTY, uploads_to_json
from tests.deployed_environment import FakeDeployment, FakeSession
from tests.fake_aws import FAKE_AWS_REGION

pytestmark = pytest.mark.timeout(120)
SFN_PREFIX = "incoming/step_functions/"
HEADER = b"transaction_id,store_id,sku,quantity,unit_price,discount,currency,sold_at,channel"


@pytest.fixture
def dev(fake_aws: None, templates: dict[tuple[str, str], dict[str, Any]]) -> FakeDeployment:
    """dev (Step Functions, Glue Workflow, MWAA Serverless) in moto."""
    return FakeDeployment(templates, "dev")


@pytest.fixture
def staging(fake_aws: None, templates: dict[tuple[str, str], dict[str, Any]]) -> FakeDeployment:
    """staging (Step Functions, MWAA) in moto."""
    return FakeDeployment(templates, "staging")


def run(deployment: FakeDeployment | None, *argv: str, now: datetime | None = None, **clients: Any) -> tuple[int, str]:
    out = io.StringIO()
    env = deployment.env if deployment is not None else "dev"
    code = main(["--env", env, *argv], session=FakeSession(deployment, **clients), out=out, now=now)
    return code, out.getvalue()


def run_json(deployment: FakeDeployment, *argv: str, now: datetime | None = None, **clients: Any) -> tuple[int, dict[str, Any]]:
    code, text = run(deployment, "--json", *argv, now=now, **clients)
    document = json.loads(text)
    assert document["exit_status"] == code
    return code, document


def upload(
    deployment: FakeDeployment, key: str, body: bytes = HEADER + b"\nT1,17,SKU-1,2,4.50,0,EUR,2026-12-04T10:00:00Z,store\n"
) -> Upload:
    bucket = deployment.output("Stateful", "LandingBucketName")
    answer = boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    return Upload(bucket, key, answer.get("VersionId"), answer["ETag"].strip('"'))


def ledger(deployment: FakeDeployment, form: str = "step_functions") -> UploadLedger:
    return UploadLedger(boto3.client("dynamodb"), deployment.output("Stateful", "LedgerTableName"), form=form)


def execution_arn(deployment: FakeDeployment, name: str) -> str:
    return deployment.output("StepFunctions", "StateMachineArn").replace(":stateMachine:", ":execution:") + f":{name}"


def loaded(deployment: FakeDeployment, item: Upload, run_id: str) -> None:
    book = ledger(deployment)
    book.start(item, run_id=run_id, execution=execution_arn(deployment, run_id), step="crawl")
    book.counts(item, run_id=run_id, counts={"rows_in": 1, "rows_out": 1, "rows_quarantined": 0, "duplicates_dropped": 0})
    book.finish(item, run_id=run_id, outcome="loaded")


def failed_at_load(deployment: FakeDeployment, item: Upload, run_id: str) -> None:
    book = ledger(deployment)
    book.start(item, run_id=run_id, execution=execution_arn(deployment, run_id), step="crawl")
    book.step(item, run_id=run_id, step="load")
    book.fail(item, run_id=run_id, error="Athena.ICEBERG_COMMIT_ERROR", cause="the warehouse refused the MERGE")


# --- the environment ----------------------------------------------------------------------------------------------
def test_the_environment_is_read_from_the_outputs_the_app_publishes(dev: FakeDeployment) -> None:
    environment = load_environment(FakeSession(dev).client("cloudformation"), "dev", FAKE_AWS_REGION)
    assert set(environment.forms) == {"step_functions", "glue_workflow", "mwaa_serverless"}
    assert environment.ledger_table == dev.output("Stateful", "LedgerTableName")
    assert {form: stack.writes_ledger for form, stack in environment.forms.items()} == {
        "step_functions": True,
        "glue_workflow": True,
        "mwaa_serverless": True,
    }
    kinds = {(queue.form, queue.kind) for queue in environment.dead_letter_queues()}
    assert kinds == {
        ("step_functions", "eventbridge"),
        ("step_functions", "failure_report"),
        ("glue_workflow", "eventbridge"),
        ("mwaa_serverless", "sqs"),
        ("mwaa_serverless", "eventbridge"),
        ("mwaa_serverless", "lambda"),
        (None, "notification"),
    }
    serverless = {queue.kind: queue for queue in environment.forms["mwaa_serverless"].dead_letter_queues}
    sqs = boto3.client("sqs")
    # Each queue the outputs name exists; the rule's dead-letter queue names the queue the rule delivers to.
    for queue in environment.dead_letter_queues():
        sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["QueueArn"])
    assert serverless["eventbridge"].target_url and serverless["sqs"].source_arn
    target_arn = sqs.get_queue_attributes(QueueUrl=serverless["eventbridge"].target_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    assert target_arn == serverless["sqs"].source_arn


def test_a_stack_that_is_not_deployed_exits_2_saying_how_to_deploy_it(fake_aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(None, "status")
    assert code == 2
    assert "no stack dev-Stateful in region eu-west-1. Deploy it (make deploy ENV=dev), or name the region" in capsys.readouterr().err


def test_no_credentials_and_no_region_exit_2_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["--env", "dev", "status"], out=io.StringIO()) == 2
    assert "no AWS region: pass --region" in capsys.readouterr().err
    assert main(["--env", "dev", "--region", "eu-west-1", "status"], out=io.StringIO()) == 2
    assert "no AWS credentials: set AWS_PROFILE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status"], "the following arguments are required: --env"),
        (["--env", "dev", "status", "--since", "yesterday"], "'yesterday' is not a duration: give a number and m, h or d"),
        (["--env", "dev", "status", "--state", "lost"], "invalid choice: 'lost'"),
        (["--env", "dev", "explain"], "invalid choice: 'explain'"),
    ],
)
def test_usage_errors_exit_2_naming_the_bad_value(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv, out=io.StringIO()) == 2
    assert message in capsys.readouterr().err


def test_a_key_under_no_form_prefix_exits_2_naming_the_prefixes(dev: FakeDeployment, capsys: pytest.CaptureFixture[str]) -> None:
    landing = dev.output("Stateful", "LandingBucketName")
    code, _ = run(dev, "show", f"s3://{landing}/elsewhere/store-1.csv")
    assert code == 2
    error = capsys.readouterr().err
    assert f"s3://{landing}/elsewhere/store-1.csv is under no landing prefix of environment 'dev'" in error
    assert f"s3://{landing}/{SFN_PREFIX}" in error and f"s3://{landing}/incoming/glue_workflow/" in error
    assert run(dev, "show", "store-1.csv")[0] == 2
    assert "'store-1.csv' is not an s3://bucket/key URI" in capsys.readouterr().err


# --- status and show ----------------------------------------------------------------------------------------------
def test_status_counts_by_state_and_lists_the_failed_and_stuck_uploads(dev: FakeDeployment) -> None:
    for number in range(3):
        loaded(dev, upload(dev, f"{SFN_PREFIX}2026-12-04/store-{number}.csv"), f"run-ok-{number}")
    failed_at_load(dev, upload(dev, f"{SFN_PREFIX}2026-12-04/store-17.csv"), "run-bad")
    stuck = upload(dev, f"{SFN_PREFIX}2026-12-04/store-18.csv")
    ledger(dev).start(stuck, run_id="run-stuck", execution=execution_arn(dev, "run-stuck"), step="crawl")
    fresh = upload(dev, f"{SFN_PREFIX}2026-12-04/store-19.csv")

    code, text = run(dev, "status")
    assert code == 1
    assert "  loaded             3\n" in text and "  failed             1\n" in text and "  running            1\n" in text
    assert f"s3://{fresh.bucket}/{SFN_PREFIX}2026-12-04/store-17.csv  [step_functions]  step load  Athena.ICEBERG_COMMIT_ERROR" in text
    assert "stuck" not in text  # the running upload is younger than the form's run timeout (14400 s)

    later = datetime.now(UTC) + timedelta(hours=5)
    code, document = run_json(dev, "status", "--since", "6h", now=later)
    assert code == 1
    assert [record["object"] for record in document["stuck"]] == [stuck.uri]
    assert "past the run timeout of 14400 s" in document["stuck"][0]["stuck"]
    assert document["counts"]["loaded"] == 3


def test_status_of_a_quiet_environment_exits_0(dev: FakeDeployment) -> None:
    loaded(dev, upload(dev, f"{SFN_PREFIX}a.csv"), "run-a")
    code, document = run_json(dev, "status", "--state", "loaded")
    assert code == 0 and document["counts"] == {"loaded": 1} and not document["failed"]


def test_show_gives_every_run_its_step_error_counts_and_console_link(dev: FakeDeployment) -> None:
    item = upload(dev, f"{SFN_PREFIX}2026-12-04/store-17.csv")
    failed_at_load(dev, item, "run-1")
    code, text = run(dev, "show", item.uri)
    assert code == 1
    assert f"{item.uri}  version {item.version}  [step_functions]" in text
    assert "state failed at step load" in text
    assert "error Athena.ICEBERG_COMMIT_ERROR: the warehouse refused the MERGE" in text
    link = f"https://{FAKE_AWS_REGION}.console.aws.amazon.com/states/home?region={FAKE_AWS_REGION}#/v2/executions/details/"
    assert link + execution_arn(dev, "run-1") in text

    other = upload(dev, f"{SFN_PREFIX}2026-12-04/store-3.csv")
    loaded(dev, other, "run-2")
    code, document = run_json(dev, "show", other.uri)
    assert code == 0
    (record,) = document["records"]
    assert record["state"] == "loaded" and record["rows_out"] == 1 and [run["run_id"] for run in record["runs"]] == ["run-2"]


def test_show_of_an_upload_the_ledger_does_not_hold_exits_1_and_says_why(dev: FakeDeployment) -> None:
    landing = dev.output("Stateful", "LandingBucketName")
    code, text = run(dev, "show", f"s3://{landing}/{SFN_PREFIX}never.csv")
    assert code == 1 and "not in the ledger; no run recorded it: `pipeline-ops --env dev reconcile`" in text
    code, text = run(dev, "show", f"s3://{landing}/incoming/mwaa_serverless/x.csv")
    assert code == 1 and "x.csv: not in the ledger; no run recorded it" in text  # the serverless form writes it too


# --- rerun --------------------------------------------------------------------------------------------------------
@pytest.fixture
def state_machine() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("stepfunctions", region_name=FAKE_AWS_REGION)
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


class JsonEqual:
    """Equal to a JSON text that holds at least these fields (for a Stubber's expected parameters)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and _contains(json.loads(other), self.fields)

    def __repr__(self) -> str:
        return f"JsonEqual({self.fields!r})"


def _contains(value: Any, fields: Any) -> bool:
    if isinstance(fields, dict):
        return isinstance(value, dict) and all(name in value and _contains(value[name], inner) for name, inner in fields.items())
    return bool(value == fields)


def _described(arn: str, status: str, redrive: str) -> dict[str, Any]:
    return {
        "executionArn": arn,
        "stateMachineArn": arn.rsplit(":", 1)[0].replace(":execution:", ":stateMachine:"),
        "status": status,
        "startDate": datetime(2026, 12, 4, tzinfo=UTC),
        "redriveStatus": redrive,
    }


def _failed_execution(dev: FakeDeployment, stubber: Stubber, *, last_event: str) -> tuple[Upload, str]:
    """An upload failed at the load whose execution the service describes as FAILED and REDRIVABLE, its history
    ending with `last_event`."""
    item = upload(dev, f"{SFN_PREFIX}store-17.csv")
    failed_at_load(dev, item, "run-1")
    arn = execution_arn(dev, "run-1")
    stubber.add_response("describe_execution", _described(arn, "FAILED", "REDRIVABLE"), {"executionArn": arn})
    history = {"events": [{"timestamp": datetime(2026, 12, 4, tzinfo=UTC), "type": last_event, "id": 40}]}
    stubber.add_response("get_execution_history", history, {"executionArn": arn, "reverseOrder": True, "maxResults": 25})
    return item, arn


def test_rerun_redrives_an_execution_that_failed_at_its_step_and_gives_it_the_upload_back(
    dev: FakeDeployment, state_machine: tuple[Any, Stubber]
) -> None:
    client, stubber = state_machine
    item, arn = _failed_execution(dev, stubber, last_event="ExecutionFailed")
    stubber.add_response("redrive_execution", {"redriveDate": datetime(2026, 12, 5, tzinfo=UTC)}, {"executionArn": arn})
    code, text = run(dev, "rerun", item.uri, stepfunctions=client)
    assert code == 0, text
    assert f"[step_functions]: redriven {arn} (resumes at the step that failed (load))" in text
    record = ledger(dev).get(item)
    assert record is not None and record["state"] == "running" and record["owner"] == "run-1" and record["step"] == "load"


def test_rerun_starts_a_new_execution_with_the_event_the_state_machine_reads_when_the_last_ended_in_a_fail_state(
    dev: FakeDeployment, state_machine: tuple[Any, Stubber]
) -> None:
    client, stubber = state_machine
    item, arn = _failed_execution(dev, stubber, last_event="FailStateEntered")
    started = {"executionArn": execution_arn(dev, "ops-1"), "startDate": datetime(2026, 12, 5, tzinfo=UTC)}
    expected_input = JsonEqual(
        {"detail": {"bucket": {"name": item.bucket}, "object": {"key": item.key, "etag": item.etag, "version-id": item.version_id}}}
    )
    stubber.add_response(
        "start_execution",
        started,
        {"stateMachineArn": dev.output("StepFunctions", "StateMachineArn"), "name": ANY, "input": expected_input},
    )
    code, text = run(dev, "rerun", item.uri, stepfunctions=client)
    assert code == 0 and f"started {started['executionArn']}" in text and "cannot be resumed at the failed step" in text


def test_rerun_refuses_a_loaded_upload_and_explains_force(dev: FakeDeployment) -> None:
    item = upload(dev, f"{SFN_PREFIX}store-3.csv")
    loaded(dev, item, "run-1")
    code, text = run(dev, "rerun", item.uri)
    assert code == 1 and f"not rerun: {item.uri} is loaded" in text and "With --force it runs again" in text
    code, text = run(dev, "rerun", item.uri, "--force")
    assert code == 1 and "takes an upload again only as a new object version" in text


def test_rerun_of_a_missing_object_exits_2(dev: FakeDeployment, capsys: pytest.CaptureFixture[str]) -> None:
    landing = dev.output("Stateful", "LandingBucketName")
    assert run(dev, "rerun", f"s3://{landing}/{SFN_PREFIX}gone.csv")[0] == 2
    assert f"s3://{landing}/{SFN_PREFIX}gone.csv: no such object" in capsys.readouterr().err


def test_rerun_on_mwaa_clears_the_failed_tasks_without_a_dry_run(staging: FakeDeployment) -> None:
    item = upload(staging, "incoming/mwaa/store-9.csv")
    run_id = dag_run_id({"bucket": item.bucket, "key": item.key, "version_id": item.version_id})
    client = boto3.client("mwaa", region_name=FAKE_AWS_REGION)
    environment, dag = staging.output("Mwaa", "MwaaEnvironmentName"), staging.output("Mwaa", "DagId")
    with Stubber(client) as stubber:
        stubber.add_response(
            "invoke_rest_api",
            {"RestApiStatusCode": 200, "RestApiResponse": {"dag_run_id": run_id, "state": "failed"}},
            {"Name": environment, "Path": f"/dags/{dag}/dagRuns/{run_id}", "Method": "GET"},
        )
        # Airflow's clearTaskInstances defaults to dry_run=true: the request must say false, or nothing is cleared.
        stubber.add_response(
            "invoke_rest_api",
            {"RestApiStatusCode": 200, "RestApiResponse": {"task_instances": [{"task_id": "load"}], "total_entries": 1}},
            {
                "Name": environment,
                "Path": f"/dags/{dag}/clearTaskInstances",
                "Method": "POST",
                "Body": {"dag_run_id": run_id, "dry_run": False, "only_failed": True, "reset_dag_runs": True},
            },
        )
        code, text = run(staging, "rerun", item.uri, mwaa=client)
        stubber.assert_no_pending_responses()
    assert code == 0 and f"[mwaa]: cleared {run_id} (tasks cleared: load)" in text


def test_rerun_on_mwaa_starts_the_dag_run_the_event_never_started(staging: FakeDeployment) -> None:
    item = upload(staging, "incoming/mwaa/store-10.csv")
    obj = {"bucket": item.bucket, "key": item.key, "version_id": item.version_id}
    run_id = dag_run_id(obj)  # type: ignore[arg-type]
    client = boto3.client("mwaa", region_name=FAKE_AWS_REGION)
    environment, dag = staging.output("Mwaa", "MwaaEnvironmentName"), staging.output("Mwaa", "DagId")
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "invoke_rest_api",
            "RestApiClientException",
            "not found",
            http_status_code=400,
            response_meta={},
            modeled_fields={"RestApiStatusCode": 404},
        )
        stubber.add_response(
            "invoke_rest_api",
            {"RestApiStatusCode": 200, "RestApiResponse": {"dag_run_id": run_id}},
            {
                "Name": environment,
                "Path": f"/dags/{dag}/dagRuns",
                "Method": "POST",
                "Body": {"dag_run_id": run_id, "logical_date": None, "conf": obj},
            },
        )
        code, text = run(staging, "rerun", item.uri, mwaa=client)
        stubber.assert_no_pending_responses()
    assert code == 0 and f"[mwaa]: started {run_id}" in text


def glue_run(dev: FakeDeployment, run_id: str, load_state: str) -> dict[str, Any]:
    """A finished workflow run as GetWorkflowRun returns it: crawl and clean succeeded, the load ended `load_state`."""
    return {
        "Name": dev.output("GlueWorkflow", "WorkflowName"),
        "WorkflowRunId": run_id,
        "StartedOn": datetime(2026, 12, 4, tzinfo=UTC),
        "Status": "COMPLETED",
        "Graph": {
            "Nodes": [
                {"UniqueId": "crawl-node", "Type": "CRAWLER", "Name": "crawler", "CrawlerDetails": {"Crawls": [{"State": "SUCCEEDED"}]}},
                {
                    "UniqueId": "clean-node",
                    "Type": "JOB",
                    "Name": dev.output("GlueWorkflow", "CleanJobName"),
                    "JobDetails": {"JobRuns": [{"JobRunState": "SUCCEEDED"}]},
                },
                {"UniqueId": "load-node", "Type": "JOB", "Name": "load", "JobDetails": {"JobRuns": [{"JobRunState": load_state}]}},
            ]
        },
    }


def test_rerun_on_the_glue_workflow_resumes_the_run_the_ledger_names_at_its_clean_job_when_its_load_failed(dev: FakeDeployment) -> None:
    """A resumed run has a new run id: the load alone would MERGE that id's empty output, so the clean job runs again,
    told to take the upload (a failed record is startable)."""
    item = upload(dev, "incoming/glue_workflow/store-4.csv")
    book = ledger(dev, "glue_workflow")
    name = dev.output("GlueWorkflow", "WorkflowName")
    book.start(item, run_id="wr_2", execution=f"{name}/wr_2", step="crawl")
    book.step(item, run_id="wr_2", step="load")
    book.fail(item, run_id="wr_2", error="LoadFailed", cause="the warehouse refused the MERGE")
    client = boto3.client("glue", region_name=FAKE_AWS_REGION)
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_workflow_run", {"Run": glue_run(dev, "wr_2", "FAILED")}, {"Name": name, "RunId": "wr_2", "IncludeGraph": True}
        )
        stubber.add_response(
            "resume_workflow_run", {"RunId": "wr_3", "NodeIds": ["clean-node"]}, {"Name": name, "RunId": "wr_2", "NodeIds": ["clean-node"]}
        )
        stubber.add_response(
            "put_workflow_run_properties",
            {},
            {"Name": name, "RunId": "wr_3", "RunProperties": {REQUESTED_PROPERTY: uploads_to_json([item])}},
        )
        code, text = run(dev, "rerun", item.uri, glue=client)
        stubber.assert_no_pending_responses()
    assert code == 0 and "[glue_workflow]: resumed wr_3 (run wr_2 again from clean-node)" in text


def test_rerun_on_the_glue_workflow_starts_a_run_naming_the_upload_when_its_run_is_gone_or_had_no_failure(dev: FakeDeployment) -> None:
    item = upload(dev, "incoming/glue_workflow/store-5.csv")
    book = ledger(dev, "glue_workflow")
    name = dev.output("GlueWorkflow", "WorkflowName")
    book.start(item, run_id="wr_7", execution=f"{name}/wr_7", step="crawl")  # the run timed out holding it
    later = datetime.now(UTC) + timedelta(hours=5)
    client = boto3.client("glue", region_name=FAKE_AWS_REGION)
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_workflow_run", {"Run": glue_run(dev, "wr_7", "SUCCEEDED")}, {"Name": name, "RunId": "wr_7", "IncludeGraph": True}
        )
        stubber.add_response(
            "start_workflow_run", {"RunId": "wr_8"}, {"Name": name, "RunProperties": {REQUESTED_PROPERTY: uploads_to_json([item])}}
        )
        code, text = run(dev, "rerun", item.uri, glue=client, now=later)
        stubber.assert_no_pending_responses()
    assert code == 0 and "[glue_workflow]: started wr_8" in text
    record = book.get(item)
    assert record is not None and record["state"] == "failed" and record["error"] == "RunTimedOut", "startable by wr_8"
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "get_workflow_run", "EntityNotFoundException", expected_params={"Name": name, "RunId": "wr_7", "IncludeGraph": True}
        )
        stubber.add_response(
            "start_workflow_run", {"RunId": "wr_9"}, {"Name": name, "RunProperties": {REQUESTED_PROPERTY: uploads_to_json([item])}}
        )
        code, text = run(dev, "rerun", item.uri, glue=client, now=later)
        stubber.assert_no_pending_responses()
    assert code == 0 and "[glue_workflow]: started wr_9" in text


def test_rerun_on_mwaa_serverless_starts_a_run_with_a_new_client_token(dev: FakeDeployment) -> None:
    item = upload(dev, "incoming/mwaa_serverless/store-5.csv")
    client = boto3.client("mwaa-serverless", region_name=FAKE_AWS_REGION)
    with Stubber(client) as stubber:
        stubber.add_response(
            "start_workflow_run",
            {"RunId": "run-77", "Status": "STARTING"},
            {
                "WorkflowArn": dev.output("MwaaServerless", "WorkflowArn"),
                "ClientToken": ANY,
                "OverrideParameters": {"bucket": item.bucket, "key": item.key, "version_id": item.version_id or "", "run_id": ANY},
            },
        )
        code, text = run(dev, "rerun", item.uri, **{"mwaa-serverless": client})
        stubber.assert_no_pending_responses()
    assert code == 0 and "[mwaa_serverless]: started run-77" in text
    # The run was taken in the ledger under the run id it was given, before it started, so its clean job may write.
    record = ledger(dev, "mwaa_serverless").get(item)
    assert record is not None and record["state"] == "running" and record["owner"].startswith("ops-")
    (run_record,) = record["runs"]
    assert run_record["execution"] == "run-77"


# --- replay-dead-letters --------------------------------------------------------------------------------------------
def _event(item: Upload) -> str:
    detail = {"bucket": {"name": item.bucket}, "object": {"key": item.key, "etag": item.etag, "version-id": item.version_id}}
    return json.dumps({"source": "aws.s3", "detail-type": "Object Created", "time": "2026-12-04T10:00:00Z", "detail": detail})


def _queue(deployment: FakeDeployment, form: str, kind: str) -> Any:
    environment = load_environment(FakeSession(deployment).client("cloudformation"), deployment.env, FAKE_AWS_REGION)
    return next(queue for queue in environment.dead_letter_queues() if queue.form == form and queue.kind == kind)


def _waiting(url: str) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_replay_counts_first_and_a_dry_run_sends_nothing(dev: FakeDeployment) -> None:
    queue = _queue(dev, "step_functions", "eventbridge")
    boto3.client("sqs").send_message(QueueUrl=queue.url, MessageBody=_event(upload(dev, f"{SFN_PREFIX}lost.csv")))
    code, text = run(dev, "replay-dead-letters", "--dry-run")
    assert code == 1 and "[step_functions, eventbridge]  1 waiting" in text and "1 dead-letter message(s) in dev" in text
    assert _waiting(queue.url) == 1


def test_replay_starts_runs_resends_events_and_deletes_only_what_went_back(dev: FakeDeployment) -> None:
    sqs = boto3.client("sqs")
    lost = upload(dev, f"{SFN_PREFIX}lost.csv")
    state_machine = _queue(dev, "step_functions", "eventbridge")
    sqs.send_message(QueueUrl=state_machine.url, MessageBody=_event(lost))
    undelivered = _queue(dev, "mwaa_serverless", "eventbridge")
    serverless_event = _event(upload(dev, "incoming/mwaa_serverless/lost.csv"))
    sqs.send_message(QueueUrl=undelivered.url, MessageBody=serverless_event)
    report = _queue(dev, "mwaa_serverless", "lambda")
    missing_function = f"arn:aws:lambda:{FAKE_AWS_REGION}:123456789012:function:report-failure"
    sqs.send_message(
        QueueUrl=report.url, MessageBody=json.dumps({"requestContext": {"functionArn": missing_function}, "requestPayload": {"x": 1}})
    )
    notification = _queue(dev, None, "notification")  # type: ignore[arg-type]
    sqs.send_message(QueueUrl=notification.url, MessageBody=json.dumps({"Type": "Notification", "Subject": "failed", "Message": "{}"}))

    code, document = run_json(dev, "replay-dead-letters")
    assert code == 1  # the report Lambda does not exist here: that message stays in its queue, named
    by_kind = {(queue["queue"]["form"], queue["queue"]["kind"]): queue for queue in document["queues"]}
    assert by_kind[("step_functions", "eventbridge")]["replayed"] == 1
    assert by_kind[("mwaa_serverless", "eventbridge")]["replayed"] == 1
    assert by_kind[(None, "notification")]["replayed"] == 1
    (report_replay,) = [queue for queue in document["queues"] if queue["queue"]["url"] == report.url]
    assert report_replay["replayed"] == 0 and report_replay["errors"]
    assert [_waiting(q.url) for q in (state_machine, undelivered, notification, report)] == [0, 0, 0, 1]
    # The event went back to the queue its rule delivers to, as it was.
    (message,) = sqs.receive_message(QueueUrl=str(undelivered.target_url))["Messages"]
    assert message["Body"] == serverless_event
    # The state machine's lost event started an execution with that object.
    executions = boto3.client("stepfunctions").list_executions(stateMachineArn=dev.output("StepFunctions", "StateMachineArn"))["executions"]
    (execution,) = executions
    given = json.loads(boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])["input"])
    assert given["detail"]["object"] == {"key": lost.key, "etag": lost.etag, "version-id": lost.version_id}


def test_replay_invokes_the_function_again_with_an_event_its_rule_could_not_deliver(dev: FakeDeployment) -> None:
    """A Lambda's dead-letter queue holds two shapes: failed asynchronous invocations (requestContext and
    requestPayload) and the raw events its EventBridge rule could not deliver (the rule target's dead-letter queue).
    The second is invoked again on the function the queue's output names, with the event as it was."""
    queue = _queue(dev, "mwaa_serverless", "lambda")
    assert queue.target_arn, f"the DeadLetterQueues output names no function for {queue.url}"
    event = json.dumps(
        {"source": "aws.airflow-serverless", "detail-type": "MWAA Serverless Workflow Run Failed", "detail": {"runId": "r-1"}}
    )
    boto3.client("sqs").send_message(QueueUrl=queue.url, MessageBody=event)
    function = boto3.client("lambda", region_name=FAKE_AWS_REGION)
    with Stubber(function) as stubber:
        stubber.add_response(
            "invoke", {"StatusCode": 202}, {"FunctionName": queue.target_arn, "InvocationType": "Event", "Payload": event.encode()}
        )
        code, document = run_json(dev, "replay-dead-letters", **{"lambda": function})
        stubber.assert_no_pending_responses()
    (replay,) = [q for q in document["queues"] if q["queue"]["url"] == queue.url]
    assert (code, replay["replayed"], replay["errors"]) == (0, 1, []) and _waiting(queue.url) == 0


def test_replay_starts_the_failure_reporter_with_an_undelivered_status_change_event(dev: FakeDeployment) -> None:
    queue = _queue(dev, "step_functions", "failure_report")
    event = json.dumps({"source": "aws.states", "detail-type": "Step Functions Execution Status Change", "detail": {"status": "FAILED"}})
    boto3.client("sqs").send_message(QueueUrl=queue.url, MessageBody=event)

    code, document = run_json(dev, "replay-dead-letters")
    assert code == 0, document
    sfn = boto3.client("stepfunctions")
    (execution,) = sfn.list_executions(stateMachineArn=str(queue.target_arn))["executions"]
    assert sfn.describe_execution(executionArn=execution["executionArn"])["input"] == event
    assert queue.target_arn != dev.output("StepFunctions", "StateMachineArn") and _waiting(queue.url) == 0


def test_replay_moves_an_sqs_dead_letter_queue_back_with_the_message_move_task(dev: FakeDeployment) -> None:
    environment = load_environment(FakeSession(dev).client("cloudformation"), "dev", FAKE_AWS_REGION)
    moved = _queue(dev, "mwaa_serverless", "sqs")
    client = boto3.client("sqs", region_name=FAKE_AWS_REGION)
    with Stubber(client) as stubber:
        for queue in environment.dead_letter_queues():
            count = "3" if queue.url == moved.url else "0"
            stubber.add_response(
                "get_queue_attributes",
                {"Attributes": {"ApproximateNumberOfMessages": count}},
                {"QueueUrl": queue.url, "AttributeNames": ["ApproximateNumberOfMessages"]},
            )
        stubber.add_response(
            "start_message_move_task", {"TaskHandle": "task-1"}, {"SourceArn": moved.arn, "DestinationArn": moved.source_arn}
        )
        code, text = run(dev, "replay-dead-letters", sqs=client)
        stubber.assert_no_pending_responses()
    assert code == 0 and "3 waiting, 3 sent back (message-move task task-1)" in text


# --- quarantine ---------------------------------------------------------------------------------------------------
def test_quarantine_counts_by_reason_and_exports_the_original_records_with_the_header(dev: FakeDeployment, tmp_path: Path) -> None:
    source = upload(dev, f"{SFN_PREFIX}store-17.csv", HEADER + b"\r\nT1,17,SKU-1,2,4.50,0,EUR,x,store\r\n")
    bucket, dataset = dev.output("Stateful", "QuarantineBucketName"), dev.output("Stateful", "DatasetName")
    undecodable = b"T3,17,SKU-\xff\xfe,1,4.50,0,EUR,2026-12-04T10:00:00Z,store"
    rows = [
        {
            "source_uri": source.uri,
            "line_number": 4,
            "reasons": ["invalid_utf8"],
            "raw_line": "T3,17,SKU-\ufffd\ufffd,1,4.50,0,EUR,2026-12-04T10:00:00Z,store",
            "raw_line_base64": base64.b64encode(undecodable).decode(),
        },
        {
            "source_uri": source.uri,
            "line_number": 2,
            "reasons": ["cast_failed:sold_at", "null_in_required:quantity"],
            "raw_line": "T1,17,SKU-1,,4.50,0,EUR,x,store",
        },
        {
            "source_uri": source.uri,
            "line_number": 5,
            "reasons": ["malformed_row"],
            "raw_line": 'T2,17,"SKU\n2,1,4.50,0,EUR,2026-12-04T10:00:00Z,store',
        },
    ]
    body = "\n".join(json.dumps(row) for row in rows).encode()
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{dataset}/run_id=run-9/rows/part-00000.json", Body=body)
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{dataset}/run_id=run-9/rows/_SUCCESS", Body=b"")
    export = tmp_path / "fix-me.csv"
    code, text = run(dev, "quarantine", "run-9", "--export", str(export))
    assert code == 1
    assert f"run run-9: 3 quarantined row(s) under s3://{bucket}/{dataset}/run_id=run-9/rows/" in text
    assert "       1  cast_failed:sold_at" in text and "       1  malformed_row" in text
    assert (
        export.read_bytes()
        == HEADER + b"\nT1,17,SKU-1,,4.50,0,EUR,x,store\n" + undecodable + b'\nT2,17,"SKU\n2,1,4.50,0,EUR,2026-12-04T10:00:00Z,store\n'
    )
    code, document = run_json(dev, "quarantine", "run-10")
    assert code == 0 and document["rows"] == 0


# --- reconcile ----------------------------------------------------------------------------------------------------
def test_reconcile_finds_the_upload_no_run_took_and_starts_it(dev: FakeDeployment) -> None:
    done = upload(dev, f"{SFN_PREFIX}done.csv")
    loaded(dev, done, "run-1")
    broken = upload(dev, f"{SFN_PREFIX}broken.csv")
    failed_at_load(dev, broken, "run-2")
    lost = upload(dev, f"{SFN_PREFIX}lost.csv")
    upload(dev, f"{SFN_PREFIX}notes.txt")  # not an upload the rule matches

    code, text = run(dev, "reconcile")
    assert code == 1, text  # the failed one; the lost one is younger than the run timeout: in flight
    assert ": 1 accounted for, 1 in flight, 1 not accounted for" in text and text.startswith("3 upload(s) since ")
    assert "not checked" not in text  # every form of dev writes the ledger

    later = datetime.now(UTC) + timedelta(hours=5)
    code, document = run_json(dev, "reconcile", "--since", "7d", now=later)
    assert code == 1
    problems = {finding["object"]: finding["problem"] for finding in document["findings"]}
    assert set(problems) == {broken.uri, lost.uri}
    assert problems[lost.uri].startswith("no ledger record: no run started for it")
    assert problems[broken.uri].startswith("failed at load: Athena.ICEBERG_COMMIT_ERROR (pipeline-ops rerun")

    code, document = run_json(dev, "reconcile", "--start", now=later)
    assert code == 1  # the failed one is left for `rerun`
    assert [started["object"] for started in document["started"]] == [lost.uri]
    executions = boto3.client("stepfunctions").list_executions(stateMachineArn=dev.output("StepFunctions", "StateMachineArn"))["executions"]
    assert len(executions) == 1


def test_rerun_starts_a_new_execution_when_the_last_one_left_the_service_history(dev: FakeDeployment) -> None:
    item = upload(dev, f"{SFN_PREFIX}store-40.csv")
    failed_at_load(dev, item, "run-old")  # moto holds no such execution, as the service after 90 days
    code, text = run(dev, "rerun", item.uri)
    assert code == 0 and "(its last execution is no longer in the service's history)" in text
    (execution,) = boto3.client("stepfunctions").list_executions(stateMachineArn=dev.output("StepFunctions", "StateMachineArn"))[
        "executions"
    ]
    assert execution["name"].startswith("ops-") and execution["executionArn"] in text
