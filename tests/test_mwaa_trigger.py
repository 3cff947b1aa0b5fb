"""The MWAA trigger Lambda with botocore's Stubber: the exact InvokeRestApi request, a duplicate (409), an MWAA
error, and malformed events; partial batch responses name only the failed messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

ENVIRONMENT = "sales-staging"
DAG_ID = "sales_pipeline"


@pytest.fixture
def trigger(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Stubber]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("MWAA_ENVIRONMENT_NAME", ENVIRONMENT)
    monkeypatch.setenv("DAG_ID", DAG_ID)
    from pipeline_constructs.runtime.upload_lambdas import mwaa_trigger as handler

    with Stubber(handler.mwaa) as stubber:
        yield handler, stubber
        stubber.assert_no_pending_responses()


def s3_event(key: str = "incoming/mwaa/2026/sales store 7.csv", version: str | None = "3HL4kqtJlcpXroDTDmJ") -> str:
    obj: dict[str, Any] = {"key": key, "size": 120}
    if version is not None:
        obj["version-id"] = version
    return json.dumps({"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "landing"}, "object": obj}})


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {"Records": [{"messageId": f"m{i}", "body": body} for i, body in enumerate(bodies)]}


def test_run_id_is_stable_per_object_version_and_uses_allowed_characters(trigger: tuple[Any, Stubber]) -> None:
    handler, _ = trigger
    obj = {"bucket": "landing", "key": "incoming/mwaa/sales store:7+x~.csv", "version_id": "v1"}
    run_id = handler.dag_run_id(obj)
    assert run_id == handler.dag_run_id(dict(obj))
    assert run_id.startswith("upload-sales-store-7-x-")
    assert all(c.isalnum() or c in "_.-" for c in run_id) and len(run_id) <= 80
    assert handler.dag_run_id({**obj, "version_id": "v2"}) != run_id
    assert handler.dag_run_id({**obj, "key": "incoming/mwaa/other/sales store:7+x~.csv"}) != run_id


def test_upload_creates_a_dag_run_with_the_object_in_conf(trigger: tuple[Any, Stubber]) -> None:
    handler, stubber = trigger
    obj = {"bucket": "landing", "key": "incoming/mwaa/2026/sales store 7.csv", "version_id": "3HL4kqtJlcpXroDTDmJ"}
    stubber.add_response(
        "invoke_rest_api",
        {"RestApiStatusCode": 200, "RestApiResponse": {"dag_run_id": handler.dag_run_id(obj), "state": "queued"}},
        {
            "Name": ENVIRONMENT,
            "Path": f"/dags/{DAG_ID}/dagRuns",
            "Method": "POST",
            "Body": {"dag_run_id": handler.dag_run_id(obj), "logical_date": None, "conf": obj},
        },
    )
    assert handler.handler(sqs_event(s3_event()), None) == {"batchItemFailures": []}


def test_duplicate_event_gets_409_and_counts_as_done(trigger: tuple[Any, Stubber]) -> None:
    handler, stubber = trigger
    stubber.add_client_error(
        "invoke_rest_api",
        service_error_code="RestApiClientException",
        service_message="Conflict",
        http_status_code=400,
        modeled_fields={"RestApiStatusCode": 409, "RestApiResponse": {"detail": "DAG run already exists"}},
    )
    assert handler.handler(sqs_event(s3_event()), None) == {"batchItemFailures": []}


@pytest.mark.parametrize(
    "code, status, fields",
    [
        ("RestApiClientException", 400, {"RestApiStatusCode": 404, "RestApiResponse": {"detail": "DAG not found"}}),
        ("RestApiServerException", 400, {"RestApiStatusCode": 500, "RestApiResponse": {"detail": "boom"}}),
        ("ResourceNotFoundException", 404, {}),
        ("AccessDeniedException", 403, {}),
    ],
)
def test_mwaa_error_fails_only_that_message(trigger: tuple[Any, Stubber], code: str, status: int, fields: dict[str, Any]) -> None:
    handler, stubber = trigger
    stubber.add_response("invoke_rest_api", {"RestApiStatusCode": 200, "RestApiResponse": {}})
    stubber.add_client_error("invoke_rest_api", service_error_code=code, http_status_code=status, modeled_fields=fields or None)
    event = sqs_event(s3_event(key="incoming/mwaa/a.csv"), s3_event(key="incoming/mwaa/b.csv"))
    assert handler.handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}


@pytest.mark.parametrize(
    "body",
    ["not json", json.dumps({"detail": {}}), json.dumps({"detail": {"bucket": {"name": ""}, "object": {"key": "a.csv"}}}), json.dumps([1])],
)
def test_malformed_message_fails_without_calling_mwaa(trigger: tuple[Any, Stubber], body: str) -> None:
    handler, _ = trigger  # no stubbed response: a call to MWAA would raise
    assert handler.handler(sqs_event(body), None) == {"batchItemFailures": [{"itemIdentifier": "m0"}]}


def test_unversioned_object_still_gets_a_run(trigger: tuple[Any, Stubber]) -> None:
    handler, stubber = trigger
    obj = {"bucket": "landing", "key": "incoming/mwaa/x.csv", "version_id": None}
    stubber.add_response(
        "invoke_rest_api",
        {"RestApiStatusCode": 200, "RestApiResponse": {}},
        {
            "Name": ENVIRONMENT,
            "Path": f"/dags/{DAG_ID}/dagRuns",
            "Method": "POST",
            "Body": {"dag_run_id": handler.dag_run_id(obj), "logical_date": None, "conf": obj},
        },
    )
    assert handler.handler(sqs_event(s3_event(key="incoming/mwaa/x.csv", version=None)), None) == {"batchItemFailures": []}


def test_the_asset_folder_imports_as_lambda_loads_it() -> None:
    """In Lambda the asset folder is the top level and the library is absent: each handler module must import from
    its folder alone (the shared upload_events module beside it), with the region Lambda sets."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pipeline_constructs.runtime.upload_lambdas as package

    folder = Path(package.__file__).parent
    script = (
        "import sys; sys.modules['pipeline_constructs'] = None; sys.path.insert(0, sys.argv[1]);"
        "import mwaa_trigger; print(mwaa_trigger.handler.__name__)"
    )  # mwaa_serverless also needs the ledger modules staged beside it: test_mwaa_serverless_form.py imports its asset
    env = {**os.environ, "AWS_DEFAULT_REGION": "eu-west-1"}
    result = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["handler"]
