"""The Step Functions form (StepFunctionsPipeline): its synthesized state machine executed locally, and its template.

The app is synthesized once for this module (without cdk-nag: the nag test lives elsewhere). The state machine is the
real synthesized definition run in aws-local-stepfunctions (tests/asl_runner.py): Task states get scripted outcomes, Pass,
Choice and Wait states run for real (Wait states take 0 ms).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import aws_cdk as cdk
import pytest
import sqlglot
from aws_cdk.assertions import Match, Template
from sqlglot import exp

from pipeline_constructs.contract import DatasetContract
from pipeline_constructs.forms.step_functions import StepFunctionsPipeline
from pipeline_constructs.runtime.pipeline_plan import CRAWL, DEFAULT_TIMINGS
from pipeline_constructs.validation import PipelinePropsError
from stacks.config import parse_app_config
from stacks.stateful_stack import CONTRACT_PATH, StatefulStack
from tests.asl_runner import (
    ExecutionResult,
    definition_from_template,
    ledger_answers,
    published_message,
    run_failure_report,
    run_state_machine,
)
from tests.cdk_app import cdk_context

BUCKET = "landing-bucket"
KEY = "incoming/step_functions/2026/11/sales.csv"
OBJECT_URI = f"s3://{BUCKET}/{KEY}"
RUN_ID = "run-42"
EXECUTION_ARN = f"arn:aws:states:eu-west-1:123456789012:execution:retail-pipeline:{RUN_ID}"
CONTEXT = {"Execution": {"Name": RUN_ID, "Id": EXECUTION_ARN}}

UPLOAD_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "2d4eba74-fd51-3966-4bfa-b013c9da8ff1",
    "detail-type": "Object Created",
    "source": "aws.s3",
    "account": "123456789012",
    "time": "2026-11-25T09:12:44Z",
    "region": "eu-west-1",
    "resources": [f"arn:aws:s3:::{BUCKET}"],
    "detail": {
        "version": "0",
        "bucket": {"name": BUCKET},
        "object": {
            "key": KEY,
            "size": 1234,
            "etag": "b1946ac92492d2347c6235b4d2611184",
            "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
            "sequencer": "00617F08299329D189",
        },
        "request-id": "N4N7GDK58NMKJ12R",
        "requester": "123456789012",
        "source-ip-address": "203.0.113.15",
        "reason": "PutObject",
    },
}

# --- scripted AWS answers ---------------------------------------------------------------------------------------------
STARTED: dict[str, Any] = {"result": {}}
CRAWLED_BEFORE_UPLOAD = {
    "result": {
        "Crawler": {
            "Name": "retail-raw",
            "State": "READY",
            "LastCrawl": {"Status": "SUCCEEDED", "StartTime": "2026-11-24T22:00:00.000Z"},
        }
    }
}
CRAWLER_RUNNING = {
    "result": {
        "Crawler": {
            "Name": "retail-raw",
            "State": "RUNNING",
            "LastCrawl": {"Status": "SUCCEEDED", "StartTime": "2026-11-24T22:00:00.000Z"},
        }
    }
}
CRAWLER_DONE = {
    "result": {
        "Crawler": {
            "Name": "retail-raw",
            "State": "READY",
            "LastCrawl": {
                "Status": "SUCCEEDED",
                "LogGroup": "/aws-glue/crawlers",
                "StartTime": "2026-11-25T09:13:00.512Z",
            },
        }
    }
}
JOB_SUCCEEDED = {
    "result": {
        "Id": "jr_0123456789abcdef",
        "JobName": "retail-clean",
        "JobRunState": "SUCCEEDED",
        "Attempt": 0,
    }
}
CURATED_ROWS = {"result": {"KeyCount": 1, "MaxKeys": 1, "IsTruncated": True, "Name": "curated-bucket"}}
NO_CURATED_ROWS = {"result": {"KeyCount": 0, "MaxKeys": 1, "IsTruncated": False, "Name": "curated-bucket"}}
QUERY_ID = "4c5b4ab5-0dd9-4c3c-9d7a-8a1c1d0b8a7e"
QUERY_STARTED = {"result": {"QueryExecutionId": QUERY_ID}}


def query(state: str, reason: str | None = None) -> dict[str, Any]:
    """GetQueryExecution's answer for the load's query."""
    status: dict[str, Any] = {"State": state, "SubmissionDateTime": "2026-11-25T09:20:00.000Z"}
    if reason is not None:
        status["StateChangeReason"] = reason
    return {"result": {"QueryExecution": {"QueryExecutionId": QUERY_ID, "Status": status}}}


QUERY_RUNNING = query("RUNNING")
QUERY_SUCCEEDED = query("SUCCEEDED")
COMMIT_CONFLICT = query("FAILED", "ICEBERG_COMMIT_ERROR: Failed to commit Iceberg update to table: retail_sales")
NOTIFIED = {"result": {"MessageId": "5b6c9a8e-1f1e-5d4e-9a3b-1a2b3c4d5e6f"}}

HAPPY_SCRIPTS: dict[str, list[dict[str, Any]]] = {
    "Start Crawler": [STARTED],
    "Get Crawler": [CRAWLED_BEFORE_UPLOAD, CRAWLER_RUNNING, CRAWLER_DONE],
    "Run Clean Job": [JOB_SUCCEEDED],
    "Find Curated Rows": [CURATED_ROWS],
    "Start Load Query": [QUERY_STARTED],
    "Get Load Query": [QUERY_RUNNING, QUERY_SUCCEEDED],
}


def scripts(**overrides: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The happy path's scripts with some states' outcomes replaced (keyword = state name with '_' for ' ')."""
    out = {**ledger_answers(), **HAPPY_SCRIPTS}
    out.update({name.replace("_", " "): outcomes for name, outcomes in overrides.items()})
    return out


@pytest.fixture(scope="module")
def template(templates: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """The StepFunctions stack of dev (or of the first environment with an Athena-loading Step Functions form), from
    the session's one synth of the app."""
    candidates = [templates[("dev", "StepFunctions")]] if ("dev", "StepFunctions") in templates else []
    candidates += [t for (_, stack), t in templates.items() if stack == "StepFunctions"]
    for candidate in candidates:
        if "Load Into Athena" in definition_from_template(candidate)["States"]:
            return candidate
    pytest.fail(f"no StepFunctions stack loading into Athena among {sorted(templates)}")


@pytest.fixture(scope="module")
def definition(template: dict[str, Any]) -> dict[str, Any]:
    return definition_from_template(template)


def execute(definition: dict[str, Any], task_scripts: dict[str, list[dict[str, Any]]]) -> ExecutionResult:
    return run_state_machine(definition, UPLOAD_EVENT, task_scripts, context=CONTEXT)


def report(reporter: dict[str, Any], result: ExecutionResult, **overrides: list[dict[str, Any]]) -> ExecutionResult:
    """The reporter run on the status-change event of the execution `result` ran (keyword = state, '_' for ' ')."""
    answers = {name.replace("_", " "): outcomes for name, outcomes in overrides.items()}
    return run_failure_report(reporter, result, UPLOAD_EVENT, name=RUN_ID, execution_arn=EXECUTION_ARN, answers=answers)


def failed_at(definition: dict[str, Any], result: ExecutionResult) -> str:
    """The top-level state the execution ended failed at (the last one it entered)."""
    assert result.status == "FAILED", result
    return [name for name in result.states_entered if name in definition["States"]][-1]


def only_notification(reporter: dict[str, Any], result: ExecutionResult) -> tuple[dict[str, Any], str]:
    """The single failure notification the reporter sends for `result`: (message, subject)."""
    return published_message(report(reporter, result))


# --- executions -------------------------------------------------------------------------------------------------------
def test_happy_path_crawls_cleans_and_merges_the_run(
    definition: dict[str, Any],
) -> None:
    result = execute(definition, scripts())

    assert result.status == "SUCCEEDED", result
    assert len(result.calls_to("Start Crawler")) == 1  # the last crawl began before the upload
    assert len(result.calls_to("Get Crawler")) == 3  # before starting, one RUNNING poll, then READY

    [job_input] = result.inputs_to("Run Clean Job")
    assert job_input["Arguments"]["--run_id"] == RUN_ID
    assert json.loads(job_input["Arguments"]["--source_uris"]) == [OBJECT_URI]
    assert job_input["JobName"]

    [listing] = result.inputs_to("Find Curated Rows")
    assert listing["Prefix"] == f"retail_sales/runs/run_id={RUN_ID}/sale_date="
    assert listing["MaxKeys"] == 1

    [load_input] = result.inputs_to("Start Load Query")
    query = load_input["QueryString"]
    assert query.startswith("MERGE INTO ")
    assert f"WHERE \"run_id\" = '{RUN_ID}'" in query
    assert isinstance(sqlglot.parse_one(query, read="athena"), exp.Merge)
    assert load_input["WorkGroup"] and load_input["QueryExecutionContext"]["Database"]
    assert result.inputs_to("Get Load Query") == [{"QueryExecutionId": QUERY_ID}] * 2
    assert result.output["clean_job"] == {
        "JobRunId": "jr_0123456789abcdef",
        "JobRunState": "SUCCEEDED",
    }
    assert result.output["load"] == {"QueryExecutionId": QUERY_ID, "State": "SUCCEEDED"}


def test_a_crawl_that_began_after_the_upload_and_succeeded_is_enough(definition: dict[str, Any]) -> None:
    result = execute(definition, scripts(Get_Crawler=[CRAWLER_DONE]))

    assert result.status == "SUCCEEDED", result
    assert result.calls_to("Start Crawler") == []
    assert len(result.calls_to("Get Crawler")) == 1


def test_a_crawl_running_since_before_the_upload_is_waited_for_then_one_is_started(definition: dict[str, Any]) -> None:
    result = execute(definition, scripts(Get_Crawler=[CRAWLER_RUNNING, CRAWLED_BEFORE_UPLOAD, CRAWLER_RUNNING, CRAWLER_DONE]))

    assert result.status == "SUCCEEDED", result
    assert len(result.calls_to("Start Crawler")) == 1
    names = result.states_entered
    assert names.index("Start Crawler") > names.index("Wait For Crawler")  # not started while the other one ran


def test_crawler_already_running_means_another_run_started_it_so_this_run_waits_for_it(
    definition: dict[str, Any],
) -> None:
    running = {
        "error": "Glue.CrawlerRunningException",
        "cause": "Crawler with name retail-raw has already started",
    }
    result = execute(definition, scripts(Start_Crawler=[running], Get_Crawler=[CRAWLED_BEFORE_UPLOAD, CRAWLER_RUNNING, CRAWLER_DONE]))

    assert result.status == "SUCCEEDED", result
    assert [call["attempt"] for call in result.calls_to("Start Crawler")] == [1]  # not retried: waited for
    assert len(result.calls_to("Run Clean Job")) == 1


def test_failed_crawl_that_began_after_the_upload_fails_at_crawl_before_the_job_and_is_reported(
    definition: dict[str, Any], reporter: dict[str, Any]
) -> None:
    crawl_error = "Internal Service Exception while crawling s3 path"
    failed_crawl = {
        "result": {
            "Crawler": {
                "Name": "retail-raw",
                "State": "READY",
                "LastCrawl": {
                    "Status": "FAILED",
                    "ErrorMessage": crawl_error,
                    "LogGroup": "/aws-glue/crawlers",
                    "StartTime": "2026-11-25T09:13:00.512Z",
                },
            }
        }
    }
    result = execute(definition, scripts(Get_Crawler=[CRAWLED_BEFORE_UPLOAD, CRAWLER_RUNNING, failed_crawl]))

    assert (failed_at(definition, result), result.error) == ("Crawl", "CrawlerFailed"), result
    assert result.calls_to("Run Clean Job") == []
    assert crawl_error in result.cause
    message, subject = only_notification(reporter, result)
    assert message["object"] == OBJECT_URI
    assert message["failed_step"] == "Crawler Failed"
    assert message["error"] == "CrawlerFailed"
    assert crawl_error in message["cause"]
    assert subject == "retail_sales pipeline failed at Crawler Failed"


def test_a_crawler_that_never_ran_is_started(definition: dict[str, Any]) -> None:
    never = {"result": {"Crawler": {"Name": "retail-raw", "State": "READY"}}}
    result = execute(definition, scripts(Get_Crawler=[never, CRAWLER_RUNNING, CRAWLER_DONE]))

    assert result.status == "SUCCEEDED", result
    assert len(result.calls_to("Start Crawler")) == 1


def test_failed_job_ends_the_execution_at_run_clean_job_and_is_reported_with_run_and_execution(
    definition: dict[str, Any], reporter: dict[str, Any]
) -> None:
    job_error = "Quarantine ratio 0.12 above limit 0.05"
    job_run = {
        "Id": "jr_0123456789abcdef",
        "JobName": "retail-clean",
        "JobRunState": "FAILED",
        "ErrorMessage": job_error,
        "Attempt": 0,
        "ExecutionTime": 95,
    }
    failed_job = {"error": "States.TaskFailed", "cause": json.dumps(job_run)}
    result = execute(definition, scripts(Run_Clean_Job=[failed_job]))

    assert (failed_at(definition, result), result.error) == ("Run Clean Job", "States.TaskFailed"), result
    assert result.states_entered[-1] == "Run Clean Job"  # no state after it: a redrive resumes here
    assert result.calls_to("Start Load Query") == []
    assert len(result.calls_to("Run Clean Job")) == 1  # a failed run is not retried
    message, subject = only_notification(reporter, result)
    assert message == {
        "pipeline": "step_functions",
        "object": OBJECT_URI,
        "run_id": RUN_ID,
        "failed_step": "Run Clean Job",
        "error": "States.TaskFailed",
        "cause": message["cause"],
        "execution": EXECUTION_ARN,
    }
    assert job_error in message["cause"]
    assert subject == "retail_sales pipeline failed at Run Clean Job"
    assert "retail" not in subject.lower().replace("retail_sales", "")
    assert job_error in result.cause


def test_a_run_with_no_curated_row_succeeds_without_loading(definition: dict[str, Any]) -> None:
    result = execute(definition, scripts(Find_Curated_Rows=[NO_CURATED_ROWS]))

    assert result.status == "SUCCEEDED", result
    assert result.calls_to("Start Load Query") == []
    assert result.states_entered[-1] == "No Rows To Load"


def test_a_failed_listing_of_the_run_output_is_reported(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    denied = {"error": "S3.AccessDeniedException", "cause": "Access Denied"}
    result = execute(definition, scripts(Find_Curated_Rows=[denied]))

    assert failed_at(definition, result) == "Find Curated Rows"
    message, _ = only_notification(reporter, result)
    assert (message["failed_step"], message["error"]) == ("Find Curated Rows", "S3.AccessDeniedException")


def conflict_retries(definition: dict[str, Any]) -> int:
    [retrier] = definition["States"]["Load Into Athena"]["Retry"]
    return int(retrier["MaxAttempts"])


def test_a_merge_that_lost_a_commit_race_is_retried_then_loads(definition: dict[str, Any]) -> None:
    result = execute(definition, scripts(Get_Load_Query=[COMMIT_CONFLICT, COMMIT_CONFLICT, QUERY_SUCCEEDED]))

    assert result.status == "SUCCEEDED", result
    assert len(result.calls_to("Start Load Query")) == 3


def test_the_conflict_retry_uses_jittered_exponential_backoff_on_the_conflict_only(definition: dict[str, Any]) -> None:
    [retrier] = definition["States"]["Load Into Athena"]["Retry"]
    assert retrier["ErrorEquals"] == ["Load.IcebergCommitConflict"]
    assert retrier["JitterStrategy"] == "FULL"
    assert retrier["BackoffRate"] == 2
    assert retrier["MaxDelaySeconds"] <= 300


def test_a_run_fails_when_the_conflict_retries_are_used_up(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    result = execute(definition, scripts(Get_Load_Query=[COMMIT_CONFLICT]))

    assert (failed_at(definition, result), result.error) == ("Load Into Athena", "Load.IcebergCommitConflict"), result
    assert len(result.calls_to("Start Load Query")) == conflict_retries(definition) + 1
    message, _ = only_notification(reporter, result)
    assert message["failed_step"] == "Load Commit Conflict"
    assert message["error"] == "Load.IcebergCommitConflict"
    assert "ICEBERG_COMMIT_ERROR" in message["cause"]


def test_a_failed_query_that_is_not_a_conflict_is_not_retried(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    syntax = query("FAILED", "COLUMN_NOT_FOUND: line 1:8: Column 'store' cannot be resolved")
    result = execute(definition, scripts(Get_Load_Query=[syntax]))

    assert (failed_at(definition, result), result.error) == ("Load Into Athena", "LoadFailed"), result
    assert len(result.calls_to("Start Load Query")) == 1
    message, _ = only_notification(reporter, result)
    assert message["failed_step"] == "Load Query Failed"
    assert message["error"] == "LoadFailed"
    assert "COLUMN_NOT_FOUND" in message["cause"]


def test_a_query_still_running_at_the_poll_cap_is_stopped_and_the_run_fails(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    [rule] = definition["States"]["Load Into Athena"]["Branches"][0]["States"]["Poll Load Again?"]["Choices"]
    cap = int(rule["NumericGreaterThanEquals"])
    result = execute(definition, scripts(Get_Load_Query=[QUERY_RUNNING], Stop_Load_Query=[STARTED]))

    assert failed_at(definition, result) == "Load Into Athena"
    assert len(result.calls_to("Get Load Query")) == cap
    assert result.inputs_to("Stop Load Query") == [{"QueryExecutionId": QUERY_ID}]
    assert len(result.calls_to("Start Load Query")) == 1  # a stuck query is not a conflict
    message, _ = only_notification(reporter, result)
    assert message["error"] == "LoadTimeout"
    assert message["cause"] == f"query {QUERY_ID} was still running after {cap} checks; stopped"


def test_a_load_submission_error_fails_the_load_and_is_reported(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    refused = {"error": "Athena.InvalidRequestException", "cause": "WorkGroup is disabled"}
    result = execute(definition, scripts(Start_Load_Query=[refused]))

    assert failed_at(definition, result) == "Load Into Athena"
    assert len(result.calls_to("Start Load Query")) == 1
    message, _ = only_notification(reporter, result)
    assert (message["failed_step"], message["error"]) == ("Start Load Query", "Athena.InvalidRequestException")


def test_concurrent_runs_exceeded_is_retried(definition: dict[str, Any]) -> None:
    busy = {
        "error": "Glue.ConcurrentRunsExceededException",
        "cause": "Concurrent runs exceeded for retail-clean",
    }
    result = execute(definition, scripts(Run_Clean_Job=[busy, JOB_SUCCEEDED]))

    assert result.status == "SUCCEEDED", result
    assert [call["attempt"] for call in result.calls_to("Run Clean Job")] == [1, 2]


def crawler_poll_cap(definition: dict[str, Any]) -> int:
    """The threshold of 'Poll Again?' on the poll counter."""
    crawl = definition["States"]["Crawl"]["Branches"][0]["States"]
    [rule] = [rule for rule in crawl["Poll Again?"]["Choices"] if rule.get("Variable") == "$.crawler_poll.iteration"]
    return rule["NumericGreaterThanEquals"]


def test_poll_cap_is_the_step_descriptions_crawl_timeout_over_the_poll_interval(definition: dict[str, Any]) -> None:
    assert inspect.signature(StepFunctionsPipeline.__init__).parameters["crawler_max_polls"].default is None
    wait = definition["States"]["Crawl"]["Branches"][0]["States"]["Wait For Crawler"]
    assert crawler_poll_cap(definition) * wait["Seconds"] == DEFAULT_TIMINGS[CRAWL].timeout_seconds


def test_crawler_that_never_finishes_fails_after_the_poll_cap(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    cap = crawler_poll_cap(definition)
    result = execute(definition, scripts(Get_Crawler=[CRAWLER_RUNNING]))

    assert (failed_at(definition, result), result.error) == ("Crawl", "CrawlerTimeout"), result
    assert len(result.calls_to("Get Crawler")) == cap
    assert result.states_entered.count("Wait For Crawler") == cap - 1
    assert result.calls_to("Run Clean Job") == []
    message, _ = only_notification(reporter, result)
    assert message["error"] == "CrawlerTimeout"
    assert message["failed_step"] == "Crawler Poll Cap Reached"
    assert str(cap) in message["cause"]


def test_crawler_finishing_on_the_last_allowed_poll_still_runs_the_job(
    definition: dict[str, Any],
) -> None:
    cap = crawler_poll_cap(definition)
    result = execute(definition, scripts(Get_Crawler=[CRAWLER_RUNNING] * (cap - 1) + [CRAWLER_DONE]))

    assert result.status == "SUCCEEDED", result
    assert len(result.calls_to("Get Crawler")) == cap


@pytest.mark.parametrize(
    ("publish_error", "expected_attempts"),
    [
        ("SNS.AuthorizationErrorException", 1),  # not transient: fails at once
        ("SNS.ThrottledException", 6),  # transient: 5 retries, then fails
    ],
)
def test_a_report_that_cannot_be_published_fails_the_reporter(
    definition: dict[str, Any], reporter: dict[str, Any], publish_error: str, expected_attempts: int
) -> None:
    job_failed = {"error": "States.TaskFailed", "cause": json.dumps({"JobRunState": "FAILED", "ErrorMessage": "boom"})}
    result = execute(definition, scripts(Run_Clean_Job=[job_failed]))
    reported = report(reporter, result, Notify_Failure=[{"error": publish_error, "cause": "publish failed"}])

    assert (reported.status, reported.error) == ("FAILED", publish_error), reported  # the reporter's alarm tells
    assert len(reported.calls_to("Notify Failure")) == expected_attempts
    assert "boom" in result.cause  # the pipeline's own execution keeps its error


def test_no_step_of_the_state_machine_ends_at_a_fail_state_so_every_failure_can_be_redriven(definition: dict[str, Any]) -> None:
    """Fail states live only inside the Crawl and Load branches; the top level ends at Succeed states or fails at the
    state whose work failed (no Catch takes a step's error anywhere else)."""
    top = definition["States"]
    assert [name for name, state in top.items() if state["Type"] == "Fail"] == []
    for name, state in top.items():
        for catch in state.get("Catch", []):
            assert "States.ALL" not in catch["ErrorEquals"], (name, catch)
    assert {name for name, state in top.items() if state["Type"] == "Parallel"} == {"Crawl", "Load Into Athena"}


@pytest.mark.parametrize(
    ("overrides", "state", "error"),
    [
        ({"Get_Crawler": [{"error": "Glue.AccessDeniedException", "cause": "denied"}]}, "Crawl", "Glue.AccessDeniedException"),
        ({"Record_Clean_Step": [{"error": "DynamoDB.ResourceNotFoundException", "cause": "no table"}]}, "Record Clean Step", None),
        ({"Run_Clean_Job": [{"error": "States.TaskFailed", "cause": "{}"}]}, "Run Clean Job", "States.TaskFailed"),
        (
            {"Read_Clean_Counts": [{"error": "DynamoDB.AccessDeniedException", "cause": "denied"}], "Find_Curated_Rows": [NO_CURATED_ROWS]},
            "Read Clean Counts",
            None,
        ),
        ({"Get_Load_Query": [query("FAILED", "TABLE_NOT_FOUND")]}, "Load Into Athena", "LoadFailed"),
        ({"Record_Loaded": [{"error": "DynamoDB.ConditionalCheckFailedException", "cause": "moved on"}]}, "Record Loaded", None),
    ],
)
def test_each_failing_step_ends_the_execution_at_its_own_state(
    definition: dict[str, Any], overrides: dict[str, list[dict[str, Any]]], state: str, error: str | None
) -> None:
    result = execute(definition, scripts(**overrides))

    assert failed_at(definition, result) == state
    assert definition["States"][state]["Type"] in ("Task", "Parallel")
    assert result.error == (error or next(iter(overrides.values()))[0]["error"])


# --- template ---------------------------------------------------------------------------------------------------------
def is_reference(value: Any) -> bool:
    """A CloudFormation reference to a resource (same stack or another stack), not a literal."""
    return (
        isinstance(value, dict)
        and len(value) == 1
        and next(iter(value))
        in {
            "Ref",
            "Fn::GetAtt",
            "Fn::ImportValue",
            "Fn::GetStackOutput",
        }
    )


def published_topic(template: dict[str, Any]) -> Any:
    """The raw TopicArn reference the failure reporter's definition publishes failures to."""
    [machine] = (
        Template.from_json(template)
        .find_resources("AWS::StepFunctions::StateMachine", {"Properties": {"StateMachineType": "EXPRESS"}})
        .values()
    )
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    [index] = [i for i, part in enumerate(parts) if isinstance(part, str) and part.endswith('"TopicArn":"')]
    return parts[index + 1]


def test_upload_rule_matches_non_empty_csv_uploads_with_dlq_and_retries(
    template: dict[str, Any],
) -> None:
    assertions = Template.from_json(template)
    assertions.resource_count_is("AWS::Events::Rule", 2)  # the uploads', and the failure reporter's
    assertions.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": {"name": [Match.any_value()]},
                    "object": {
                        "key": [{"wildcard": "incoming/step_functions/*.csv"}],
                        "size": [{"numeric": [">", 0]}],
                    },
                },
            },
            "State": "ENABLED",
            "Targets": [
                Match.object_like(
                    {
                        "DeadLetterConfig": {"Arn": Match.any_value()},
                        "RetryPolicy": {
                            "MaximumRetryAttempts": Match.any_value(),
                            "MaximumEventAgeInSeconds": Match.any_value(),
                        },
                    }
                )
            ],
        },
    )
    [rule] = [r for r in assertions.find_resources("AWS::Events::Rule").values() if r["Properties"]["EventPattern"]["source"] == ["aws.s3"]]
    [bucket] = rule["Properties"]["EventPattern"]["detail"]["bucket"]["name"]
    assert is_reference(bucket), bucket  # the landing bucket itself, not a hard-coded name
    [target] = rule["Properties"]["Targets"]
    dlq_arn = target["DeadLetterConfig"]["Arn"]
    assert list(dlq_arn) == ["Fn::GetAtt"]
    [queue_id, attribute] = dlq_arn["Fn::GetAtt"]
    assert attribute == "Arn"
    queues = assertions.find_resources("AWS::SQS::Queue")
    assert queue_id in queues  # the DLQ is an SQS queue of this stack
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0


def test_dead_letter_queue_uses_a_customer_managed_key(
    template: dict[str, Any],
) -> None:
    queues = Template.from_json(template).find_resources("AWS::SQS::Queue")
    assert queues
    for queue in queues.values():
        key = queue["Properties"].get("KmsMasterKeyId")
        assert is_reference(key), key  # not absent, not 'alias/aws/sqs'


@pytest.mark.parametrize("kind", ["STANDARD", "EXPRESS"])
def test_the_pipeline_and_its_failure_reporter_are_traced_and_log_everything_encrypted(template: dict[str, Any], kind: str) -> None:
    assertions = Template.from_json(template)
    assertions.resource_count_is("AWS::StepFunctions::StateMachine", 2)
    assertions.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": kind,
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": {
                "Level": "ALL",
                "IncludeExecutionData": True,
                "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": Match.any_value()}}],
            },
        },
    )
    [machine] = [
        m for m in assertions.find_resources("AWS::StepFunctions::StateMachine").values() if m["Properties"]["StateMachineType"] == kind
    ]
    log_group_arn = machine["Properties"]["LoggingConfiguration"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
    [log_group_id, _] = log_group_arn["Fn::GetAtt"]
    log_group = assertions.find_resources("AWS::Logs::LogGroup")[log_group_id]
    assert is_reference(log_group["Properties"].get("KmsKeyId")), log_group


def test_the_status_change_rule_sends_failed_timed_out_and_aborted_executions_to_the_reporter(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    [rule] = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Events::Rule" and r["Properties"]["EventPattern"]["source"] == ["aws.states"]
    ]
    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    [pipeline_id] = [
        k
        for k, r in resources.items()
        if r["Type"] == "AWS::StepFunctions::StateMachine" and r["Properties"]["StateMachineType"] == "STANDARD"
    ]
    [reporter_id] = [
        k
        for k, r in resources.items()
        if r["Type"] == "AWS::StepFunctions::StateMachine" and r["Properties"]["StateMachineType"] == "EXPRESS"
    ]
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": pipeline_id}]  # only this pipeline's executions
    [target] = rule["Targets"]
    assert target["Arn"] == {"Ref": reporter_id}
    assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0] in {k for k, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0


def test_alarms_on_failed_timed_out_aborted_executions_and_dlq_depth_notify_the_topic(
    template: dict[str, Any],
) -> None:
    assertions = Template.from_json(template)
    topic = published_topic(template)
    assert is_reference(topic), topic
    for metric in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"):  # of the pipeline and of its reporter
        assertions.has_resource_properties(
            "AWS::CloudWatch::Alarm",
            {
                "Namespace": "AWS/States",
                "MetricName": metric,
                "Dimensions": [{"Name": "StateMachineArn", "Value": Match.any_value()}],
                "AlarmActions": [topic],
            },
        )
    assertions.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": Match.any_value()}],
            "AlarmActions": [topic],
        },
    )


def _tasks_within(states: dict[str, Any]) -> dict[str, Any]:
    """Task states of a Parallel's branches (their errors reach the Parallel's own Catch)."""
    out: dict[str, Any] = {}
    for state in states.values():
        for branch in state.get("Branches", []):
            out.update({n: s for n, s in branch["States"].items() if s["Type"] == "Task"})
            out.update(_tasks_within(branch["States"]))
    return out


def test_every_task_retries_with_jitter_and_has_a_timeout(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    states = definition["States"]
    tasks = {name: state for name, state in states.items() if state["Type"] in ("Task", "Parallel")}
    assert {"Crawl", "Run Clean Job", "Find Curated Rows", "Load Into Athena"} <= set(tasks)
    nested = _tasks_within(states)
    assert {"Get Crawler", "Start Crawler", "Take Load Lock", "Start Load Query", "Get Load Query", "Stop Load Query"} <= set(nested)
    assert "Release Load Lock" in tasks
    reporting = {name: state for name, state in reporter["States"].items() if state["Type"] == "Task"}
    assert {"Release Load Lock", "Read Execution History", "Record Failure", "Read Upload State", "Notify Failure"} == set(reporting)
    for name, task in {**tasks, **nested, **reporting}.items():
        if name == "Crawl":
            continue  # its tasks retry; a crawl that failed is not retried within the run
        assert task.get("Retry"), name
        for retrier in task["Retry"]:
            assert retrier.get("JitterStrategy") == "FULL", (name, retrier)
            assert retrier.get("BackoffRate", 0) > 1, (name, retrier)
        if task["Type"] == "Task":
            sync_glue = task["Resource"].endswith(":glue:startJobRun.sync")
            glue_timeout = task["Parameters"].get("Timeout") if sync_glue else None
            assert task.get("TimeoutSeconds") or glue_timeout, f"{name} has no timeout"


# --- construct validation ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stateful() -> StatefulStack:
    """A dev StatefulStack in a fresh App with cdk.json's context (no synth)."""
    context = cdk_context()
    config = parse_app_config(context["pipeline:environments"], only="dev", default_region="eu-west-1")
    app = cdk.App(context=context)
    return StatefulStack(
        app,
        "Stateful",
        config=config.environments[0],
        contract=DatasetContract.from_file(CONTRACT_PATH),
        env=cdk.Environment(region="eu-west-1"),
    )


def pipeline_in(stateful: StatefulStack, construct_id: str, **kwargs: Any) -> StepFunctionsPipeline:
    stack = cdk.Stack(
        stateful.node.scope,
        f"{construct_id}Stack",
        env=cdk.Environment(region="eu-west-1"),
    )
    return StepFunctionsPipeline(
        stack,
        construct_id,
        storage=stateful.storage,
        catalog=stateful.catalog,
        clean_job=stateful.clean_job,
        target=stateful.target,
        alerting=stateful.alerting,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("construct_id", "kwargs", "named"),
    [
        ("ZeroPolls", {"crawler_max_polls": 0}, ["crawler_max_polls", "0"]),
        ("ZeroConflictRetries", {"load_conflict_retries": 0}, ["load_conflict_retries", "0"]),
        ("LeadingSlash", {"landing_prefix": "/bad"}, ["landing_prefix", "/bad"]),
        (
            "DotDot",
            {"landing_prefix": "incoming/../x/"},
            ["landing_prefix", "incoming/../x/"],
        ),
    ],
)
def test_invalid_props_raise_naming_the_argument_and_value(
    stateful: StatefulStack, construct_id: str, kwargs: dict[str, Any], named: list[str]
) -> None:
    with pytest.raises(PipelinePropsError) as raised:
        pipeline_in(stateful, construct_id, **kwargs)
    for fragment in named:
        assert fragment in str(raised.value)


def test_valid_props_build(stateful: StatefulStack) -> None:
    pipeline = pipeline_in(stateful, "Good", crawler_max_polls=3, landing_prefix="incoming/custom/")
    assert pipeline.landing_prefix == "incoming/custom/"
    assert len(pipeline.alarms) == 6  # failed, timed out, aborted, undelivered uploads; reports failed, undelivered
    assert pipeline.trigger_rule.node.id == "UploadRule"
    assert pipeline.dead_letter_queue.node.id == "TriggerDeadLetterQueue"
    assert pipeline.metric_runs_failed().metric_name == "ExecutionsFailed"
    assert pipeline.metric_runs_succeeded(cdk.Duration.minutes(1)).metric_name == "ExecutionsSucceeded"
    assert not hasattr(pipeline, "rule")


def test_a_run_id_with_a_quote_never_reaches_the_load_sql(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    """Execution names may contain a quote; the MERGE splices the run id into a string literal, so such runs fail."""
    result = run_state_machine(definition, UPLOAD_EVENT, scripts(), context={"Execution": {"Name": "x'; DROP TABLE t; --"}})
    assert failed_at(definition, result) == "Load Into Athena"
    assert result.calls_to("Start Load Query") == []
    message, _ = only_notification(reporter, result)
    assert message["error"] == "InvalidRunId"


def test_an_object_key_with_a_comma_reaches_the_job_as_one_uri(definition: dict[str, Any]) -> None:
    """The job receives a JSON array, so a comma in a key does not split it into two URIs."""
    from pipeline_constructs.runtime.glue_clean_job import parse_source_uris

    event = json.loads(json.dumps(UPLOAD_EVENT))
    event["detail"]["object"]["key"] = "incoming/step_functions/sales,north.csv"
    result = run_state_machine(definition, event, scripts(), context=CONTEXT)
    [job_input] = result.inputs_to("Run Clean Job")
    assert parse_source_uris(job_input["Arguments"]["--source_uris"]) == [f"s3://{BUCKET}/incoming/step_functions/sales,north.csv"]


# --- least privilege (issue 11) ---------------------------------------------------------------------------------------
DATA_SERVICES = ("s3:", "glue:", "lakeformation:", "kms:")


def identity_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(logical id, statement) of every identity policy in the template: inline policies, managed policies, role policies."""
    out = []
    for logical_id, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        documents = []
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append(props["PolicyDocument"])
        if resource["Type"] == "AWS::IAM::Role":
            documents += [policy["PolicyDocument"] for policy in props.get("Policies", [])]
        for document in documents:
            out += [(logical_id, statement) for statement in document["Statement"]]
    return out


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_statement_of_a_step_functions_stack_grants_data_actions_on_everything(
    templates: dict[tuple[str, str], dict[str, Any]],
) -> None:
    stacks = {key: template for key, template in templates.items() if key[1] == "StepFunctions"}
    assert stacks
    offending = []
    for (env, stack), template in stacks.items():
        for logical_id, statement in identity_statements(template):
            if statement.get("Effect", "Allow") != "Allow" or "*" not in as_list(statement.get("Resource")):
                continue
            data_actions = [a for a in as_list(statement["Action"]) if a.lower().startswith(DATA_SERVICES)]
            if data_actions:
                offending.append((env, stack, logical_id, data_actions))
    assert offending == []


def test_the_state_machine_role_may_not_create_or_delete_catalog_objects(
    templates: dict[tuple[str, str], dict[str, Any]],
) -> None:
    """Neither the role's own policy nor the Athena load policy it attaches: a MERGE reads and updates tables only."""
    checked = 0
    for (_, stack), template in templates.items():
        if stack not in ("StepFunctions", "Stateful"):
            continue
        for logical_id, statement in identity_statements(template):
            if stack == "Stateful" and "LoadPolicy" not in logical_id:
                continue
            checked += 1
            glue_actions = [a for a in as_list(statement["Action"]) if a.lower().startswith("glue:")]
            assert not [a for a in glue_actions if a.split(":")[1].lower().startswith(("delete", "batchdelete", "create"))], (
                logical_id,
                glue_actions,
            )
    assert checked


def test_the_tracing_acknowledgement_names_exactly_the_actions_on_everything(template: dict[str, Any]) -> None:
    from pipeline_constructs.forms.step_functions_states import TRACING_AND_LOG_DELIVERY_ACTIONS

    on_everything = set()
    for _, statement in identity_statements(template):
        if "*" in as_list(statement.get("Resource")) and statement.get("Effect", "Allow") == "Allow":
            on_everything |= set(as_list(statement["Action"]))
    assert on_everything == set(TRACING_AND_LOG_DELIVERY_ACTIONS)
