"""The MWAA Serverless Lambdas without a ledger, with botocore's Stubber: the exact StartWorkflowRun request
(ClientToken from the object, the object and the run id as run parameters), duplicates, service errors (partial batch
failure), malformed events, and the failure report built from the run's lookups. With the ledger:
test_mwaa_serverless_ledger.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

WORKFLOW_ARN = "arn:aws:airflow-serverless:eu-west-1:123456789012:workflow/sales-pipeline-AbCdEf1234"
TOPIC_ARN = "arn:aws:sns:eu-west-1:123456789012:alerts"


@pytest.fixture
def lambdas(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Stubber, Stubber]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("WORKFLOW_ARN", WORKFLOW_ARN)
    monkeypatch.setenv("TOPIC_ARN", TOPIC_ARN)
    monkeypatch.setenv("DATASET", "sales")
    monkeypatch.setenv("METRICS_NAMESPACE", "DataPipeline/sales")
    monkeypatch.setenv("WORKFLOW_NAME", "sales-pipeline")
    from pipeline_constructs.runtime.upload_lambdas import mwaa_serverless as handler

    with Stubber(handler.mwaa_serverless) as service, Stubber(handler.sns) as topic:
        yield handler, service, topic
        service.assert_no_pending_responses()
        topic.assert_no_pending_responses()


def s3_event(key: str = "incoming/mwaa_serverless/2026/sales store 7.csv", version: str | None = "3HL4kqtJlcpXroDTDmJ") -> str:
    obj: dict[str, Any] = {"key": key, "size": 120}
    if version is not None:
        obj["version-id"] = version
    return json.dumps({"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "landing"}, "object": obj}})


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {"Records": [{"messageId": f"m{i}", "body": body} for i, body in enumerate(bodies)]}


def started(run_id: str = "run-1") -> dict[str, Any]:
    return {"RunId": run_id, "Status": "STARTING"}


def parameters(handler: Any, obj: dict[str, Any]) -> dict[str, str]:
    """The run's parameters: the object, and the run id its tasks use, derived from the object version."""
    return {"bucket": obj["bucket"], "key": obj["key"], "version_id": obj["version_id"] or "", "run_id": handler.dag_run_id(obj)}


def test_client_token_is_stable_per_object_version_and_within_the_api_limits(lambdas: tuple[Any, Stubber, Stubber]) -> None:
    handler, _, _ = lambdas
    obj = {"bucket": "landing", "key": "incoming/mwaa_serverless/é x.csv", "version_id": "v1"}
    token = handler.client_token(obj)
    assert token == handler.client_token(dict(obj))
    assert 1 <= len(token) <= 128 and all(0x21 <= ord(c) <= 0x7E for c in token)
    assert handler.client_token({**obj, "version_id": "v2"}) != token
    assert handler.client_token({**obj, "key": "incoming/mwaa_serverless/other.csv"}) != token
    assert handler.client_token({**obj, "bucket": "other"}) != token


def test_upload_starts_a_run_with_the_object_as_parameters_and_a_token_from_the_object(lambdas: tuple[Any, Stubber, Stubber]) -> None:
    handler, service, _ = lambdas
    obj = {"bucket": "landing", "key": "incoming/mwaa_serverless/2026/sales store 7.csv", "version_id": "3HL4kqtJlcpXroDTDmJ"}
    service.add_response(
        "start_workflow_run",
        started(),
        {
            "WorkflowArn": WORKFLOW_ARN,
            "ClientToken": handler.client_token(obj),
            "OverrideParameters": parameters(handler, obj),
        },
    )
    assert handler.start(sqs_event(s3_event()), None) == {"batchItemFailures": []}
    assert parameters(handler, obj)["run_id"].startswith("upload-sales-store-7-")


def test_unversioned_object_gets_an_empty_version_parameter(lambdas: tuple[Any, Stubber, Stubber]) -> None:
    handler, service, _ = lambdas
    obj: dict[str, Any] = {"bucket": "landing", "key": "incoming/mwaa_serverless/x.csv", "version_id": None}
    service.add_response(
        "start_workflow_run",
        started(),
        {
            "WorkflowArn": WORKFLOW_ARN,
            "ClientToken": handler.client_token(obj),
            "OverrideParameters": parameters(handler, obj),
        },
    )
    assert handler.start(sqs_event(s3_event(key=obj["key"], version=None)), None) == {"batchItemFailures": []}


def test_duplicate_in_one_batch_is_sent_once(lambdas: tuple[Any, Stubber, Stubber]) -> None:
    handler, service, _ = lambdas
    service.add_response("start_workflow_run", started())  # a second call would find no stubbed response and fail
    assert handler.start(sqs_event(s3_event(), s3_event()), None) == {"batchItemFailures": []}


def test_redelivered_event_sends_the_same_token_so_the_service_starts_no_second_run(lambdas: tuple[Any, Stubber, Stubber]) -> None:
    handler, service, _ = lambdas
    obj = {"bucket": "landing", "key": "incoming/mwaa_serverless/2026/sales store 7.csv", "version_id": "3HL4kqtJlcpXroDTDmJ"}
    expected = {
        "WorkflowArn": WORKFLOW_ARN,
        "ClientToken": handler.client_token(obj),
        "OverrideParameters": parameters(handler, obj),
    }
    # The service answers a repeated ClientToken with the run it started the first time.
    service.add_response("start_workflow_run", started("run-1"), expected)
    service.add_response("start_workflow_run", started("run-1"), expected)
    assert handler.start(sqs_event(s3_event()), None) == {"batchItemFailures": []}
    assert handler.start(sqs_event(s3_event()), None) == {"batchItemFailures": []}


@pytest.mark.parametrize(
    "code, status",
    [
        ("ThrottlingException", 429),
        ("InternalServerException", 500),
        ("ResourceNotFoundException", 404),
        ("AccessDeniedException", 403),
        ("ConflictException", 409),
        ("ServiceQuotaExceededException", 402),
        ("ValidationException", 400),
    ],
)
def test_service_error_fails_only_that_message(lambdas: tuple[Any, Stubber, Stubber], code: str, status: int) -> None:
    handler, service, _ = lambdas
    service.add_response("start_workflow_run", started())
    service.add_client_error("start_workflow_run", service_error_code=code, http_status_code=status)
    event = sqs_event(s3_event(key="incoming/mwaa_serverless/a.csv"), s3_event(key="incoming/mwaa_serverless/b.csv"))
    assert handler.start(event, None) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}


@pytest.mark.parametrize(
    "body",
    ["not json", json.dumps({"detail": {}}), json.dumps({"detail": {"bucket": {"name": ""}, "object": {"key": "a.csv"}}}), json.dumps([1])],
)
def test_malformed_message_fails_without_calling_the_service(lambdas: tuple[Any, Stubber, Stubber], body: str) -> None:
    handler, _, _ = lambdas  # no stubbed response: a call would raise
    assert handler.start(sqs_event(body), None) == {"batchItemFailures": [{"itemIdentifier": "m0"}]}


# --- failure reports -----------------------------------------------------------------------------------------------


def failed_event(detail_type: str = "MWAA Serverless Workflow Run Failed", run_id: str = "run-1") -> dict[str, Any]:
    return {"source": "aws.airflow-serverless", "detail-type": detail_type, "detail": {"workflowArn": WORKFLOW_ARN, "runId": run_id}}


def test_failure_report_names_the_object_the_failed_task_and_its_error(lambdas: tuple[Any, Stubber, Stubber]) -> None:
    handler, service, topic = lambdas
    run = {"WorkflowArn": WORKFLOW_ARN, "RunId": "run-1"}
    service.add_response(
        "get_workflow_run",
        {
            "RunId": "run-1",
            "OverrideParameters": {"bucket": "landing", "key": "incoming/mwaa_serverless/a.csv", "version_id": "v1"},
            "RunDetail": {"RunState": "FAILED", "ErrorMessage": "a task failed"},
        },
        run,
    )
    service.add_response(
        "list_task_instances",
        {"TaskInstances": [{"TaskInstanceId": "ti-crawl", "Status": "SUCCESS"}, {"TaskInstanceId": "ti-clean", "Status": "FAILED"}]},
        run,
    )
    service.add_response(
        "get_task_instance",
        {"WorkflowArn": WORKFLOW_ARN, "RunId": "run-1", "TaskInstanceId": "ti-crawl", "TaskId": "crawl", "Status": "SUCCESS"},
        {**run, "TaskInstanceId": "ti-crawl"},
    )
    service.add_response(
        "get_task_instance",
        {
            "WorkflowArn": WORKFLOW_ARN,
            "RunId": "run-1",
            "TaskInstanceId": "ti-clean",
            "TaskId": "clean",
            "Status": "FAILED",
            "ErrorMessage": "Glue job FAILED",
        },
        {**run, "TaskInstanceId": "ti-clean"},
    )
    expected = {
        "pipeline": "mwaa_serverless",
        "object": "s3://landing/incoming/mwaa_serverless/a.csv",
        "version_id": "v1",
        "run_id": "run-1",
        "failed_step": "clean",
        "error": "WorkflowRunFailed",
        "cause": "Glue job FAILED",
        "execution": "run-1",
        "workflow_arn": WORKFLOW_ARN,
    }
    topic.add_response(
        "publish",
        {"MessageId": "1"},
        {"TopicArn": TOPIC_ARN, "Subject": "sales pipeline (mwaa_serverless) failed at clean", "Message": json.dumps(expected)},
    )
    assert handler.report_failure(failed_event(), None) == {**expected, "published": True, "counted": True}


def test_timed_out_run_is_reported_even_when_the_lookup_fails(lambdas: tuple[Any, Stubber, Stubber]) -> None:
    handler, service, topic = lambdas
    service.add_client_error("get_workflow_run", service_error_code="AccessDeniedException", http_status_code=403)
    topic.add_response("publish", {"MessageId": "1"})
    message = handler.report_failure(failed_event("MWAA Serverless Workflow Run Timeout"), None)
    assert message["error"] == "WorkflowRunTimeout" and message["run_id"] == "run-1" and message["object"] is None
    assert "could not be looked up" in message["cause"] and "AccessDenied" in message["cause"]


def test_failure_report_without_a_run_id_still_publishes(lambdas: tuple[Any, Stubber, Stubber]) -> None:
    handler, _, topic = lambdas
    topic.add_response("publish", {"MessageId": "1"})
    message = handler.report_failure({"detail-type": "MWAA Serverless Workflow Run Failed", "detail": {"other": 1}}, None)
    assert message["run_id"] is None and "names no run" in message["cause"]


def test_failure_report_fails_when_the_topic_refuses(lambdas: tuple[Any, Stubber, Stubber]) -> None:
    handler, service, topic = lambdas
    service.add_response("get_workflow_run", {"RunId": "run-1", "OverrideParameters": {}, "RunDetail": {}})
    service.add_response("list_task_instances", {"TaskInstances": []})
    topic.add_client_error("publish", service_error_code="KMSAccessDenied", http_status_code=400)
    with pytest.raises(Exception, match="KMSAccessDenied"):
        handler.report_failure(failed_event(), None)
