"""Tests of the local Step Functions harness itself (tests/asl_runner.py + tests/asl/run_state_machine.mjs)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.asl_runner import (
    AslHarnessError,
    MissingScriptError,
    definition_from_template,
    run_state_machine,
)

GLUE_SYNC = "arn:aws:states:::glue:startJobRun.sync"
SNS_PUBLISH = "arn:aws:states:::sns:publish"


def test_task_returns_scripted_result_and_sees_processed_parameters() -> None:
    definition = {
        "StartAt": "StartClean",
        "States": {
            "StartClean": {
                "Type": "Task",
                "Resource": GLUE_SYNC,
                "Parameters": {
                    "JobName": "retail-clean",
                    "Arguments": {
                        "--source_uris.$": "States.JsonToString($.detail.uris)",
                        "--run_id.$": "$$.Execution.Name",
                        "--query.$": "States.Format('SELECT \\'{}\\'', $$.Execution.Name)",
                    },
                },
                "ResultSelector": {"state.$": "$.JobRunState"},
                "ResultPath": "$.glue",
                "End": True,
            }
        },
    }
    result = run_state_machine(
        definition,
        {"detail": {"uris": ["s3://landing/a.csv", "s3://landing/b.csv"]}},
        {"StartClean": [{"result": {"JobRunState": "SUCCEEDED", "Id": "jr_1"}}]},
        context={"Execution": {"Name": "run-1"}},
    )
    assert result.status == "SUCCEEDED", result
    assert result.output == {
        "detail": {"uris": ["s3://landing/a.csv", "s3://landing/b.csv"]},
        "glue": {"state": "SUCCEEDED"},
    }
    assert result.error is None and result.cause is None
    assert result.states_entered == ["StartClean"]
    [call] = result.calls_to("StartClean")
    assert call["attempt"] == 1
    assert call["input"] == {
        "JobName": "retail-clean",
        "Arguments": {
            "--source_uris": '["s3://landing/a.csv","s3://landing/b.csv"]',
            "--run_id": "run-1",
            "--query": "SELECT 'run-1'",
        },
    }


def test_retry_on_scripted_error_then_success_does_not_sleep() -> None:
    definition = {
        "StartAt": "StartClean",
        "States": {
            "StartClean": {
                "Type": "Task",
                "Resource": GLUE_SYNC,
                "Parameters": {"JobName": "retail-clean"},
                "TimeoutSeconds": 3600,
                "Retry": [
                    {
                        "ErrorEquals": ["Glue.ConcurrentRunsExceededException"],
                        "IntervalSeconds": 30,
                        "MaxAttempts": 3,
                        "BackoffRate": 2,
                        "MaxDelaySeconds": 300,
                        "JitterStrategy": "FULL",
                    }
                ],
                "End": True,
            }
        },
    }
    started = time.monotonic()
    result = run_state_machine(
        definition,
        {},
        {
            "StartClean": [
                {
                    "error": "Glue.ConcurrentRunsExceededException",
                    "cause": "Concurrent runs exceeded for retail-clean",
                },
                {"result": {"JobRunState": "SUCCEEDED"}},
            ]
        },
    )
    elapsed = time.monotonic() - started
    assert result.status == "SUCCEEDED", result
    assert result.output == {"JobRunState": "SUCCEEDED"}
    assert [c["attempt"] for c in result.calls_to("StartClean")] == [1, 2]
    assert result.states_entered == ["StartClean"]  # a retry is not a new entry
    assert elapsed < 20  # 30 s IntervalSeconds would otherwise really be slept


def test_retry_gives_up_after_max_attempts_and_the_last_outcome_repeats() -> None:
    definition = {
        "StartAt": "StartClean",
        "States": {
            "StartClean": {
                "Type": "Task",
                "Resource": GLUE_SYNC,
                "Retry": [
                    {
                        "ErrorEquals": ["States.TaskFailed"],
                        "IntervalSeconds": 10,
                        "MaxAttempts": 2,
                    }
                ],
                "End": True,
            }
        },
    }
    result = run_state_machine(
        definition,
        {},
        {"StartClean": [{"error": "Glue.InternalServiceException", "cause": "down"}]},
    )
    assert result.status == "FAILED"
    assert (result.error, result.cause) == ("Glue.InternalServiceException", "down")
    assert [c["attempt"] for c in result.calls_to("StartClean")] == [1, 2, 3]


def test_catch_all_routes_error_and_cause_to_notification_then_fail() -> None:
    definition = {
        "StartAt": "StartClean",
        "States": {
            "StartClean": {
                "Type": "Task",
                "Resource": GLUE_SYNC,
                "Parameters": {"JobName": "retail-clean"},
                "Catch": [
                    {
                        "ErrorEquals": ["States.ALL"],
                        "ResultPath": "$.error",
                        "Next": "DescribeFailure",
                    }
                ],
                "Next": "Done",
            },
            "DescribeFailure": {
                "Type": "Pass",
                "Parameters": {
                    "step": "StartClean",
                    "error.$": "$.error.Error",
                    "cause.$": "$.error.Cause",
                },
                "ResultPath": "$.failure",
                "Next": "Notify",
            },
            "Notify": {
                "Type": "Task",
                "Resource": SNS_PUBLISH,
                "Parameters": {
                    "TopicArn": "arn:aws:sns:eu-west-1:123456789012:alerts",
                    "Message.$": "States.Format('Step {} failed: {}', $.failure.step, $.failure.cause)",
                },
                "ResultPath": None,
                "Next": "Failed",
            },
            "Failed": {
                "Type": "Fail",
                "Error": "PipelineFailed",
                "Cause": "the clean job failed",
            },
            "Done": {"Type": "Succeed"},
        },
    }
    result = run_state_machine(
        definition,
        {"bucket": "landing"},
        {
            "StartClean": [
                {
                    "error": "States.TaskFailed",
                    "cause": '{"JobRunState": "FAILED", "ErrorMessage": "bad row"}',
                }
            ],
            "Notify": [{"result": {"MessageId": "m-1"}}],
        },
    )
    assert result.status == "FAILED"
    assert (result.error, result.cause) == ("PipelineFailed", "the clean job failed")
    assert result.states_entered == [
        "StartClean",
        "DescribeFailure",
        "Notify",
        "Failed",
    ]
    [publish] = result.inputs_to("Notify")
    assert publish["Message"] == 'Step StartClean failed: {"JobRunState": "FAILED", "ErrorMessage": "bad row"}'


def test_catch_result_path_holds_error_and_cause_exactly() -> None:
    definition = {
        "StartAt": "Crawl",
        "States": {
            "Crawl": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:glue:startCrawler",
                "Parameters": {"Name": "retail-crawler"},
                "Catch": [
                    {
                        "ErrorEquals": ["Glue.CrawlerRunningException"],
                        "ResultPath": "$.error",
                        "Next": "Caught",
                    }
                ],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        },
    }
    result = run_state_machine(
        definition,
        {"k": 1},
        {"Crawl": [{"error": "Glue.CrawlerRunningException", "cause": "Crawler is running"}]},
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {
        "k": 1,
        "error": {
            "Error": "Glue.CrawlerRunningException",
            "Cause": "Crawler is running",
        },
    }


def test_task_without_script_fails_loudly_naming_the_state() -> None:
    definition = {
        "StartAt": "StartClean",
        "States": {
            "StartClean": {
                "Type": "Task",
                "Resource": GLUE_SYNC,
                # Even a catch-all must not hide the missing script.
                "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Swallow"}],
                "End": True,
            },
            "Swallow": {"Type": "Succeed"},
        },
    }
    with pytest.raises(MissingScriptError, match="StartClean") as raised:
        run_state_machine(definition, {}, {})
    assert raised.value.result.status == "FAILED"
    assert raised.value.result.states_entered == ["StartClean"]
    assert len(raised.value.result.calls_to("StartClean")) == 1


def test_script_for_unknown_state_is_rejected() -> None:
    definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    with pytest.raises(AslHarnessError, match="StartClen"):
        run_state_machine(definition, {}, {"StartClen": [{"result": {}}]})


def test_wait_choice_loop_with_counter() -> None:
    definition = {
        "StartAt": "Init",
        "States": {
            "Init": {
                # Not {"Result": 0}: aws-local-stepfunctions 3.0.0 ignores a falsy Pass Result (0, false, "", null).
                "Type": "Pass",
                "Parameters": {"queryId.$": "$.queryId", "polls": 0},
                "Next": "Poll",
            },
            "Poll": {
                "Type": "Task",
                "Resource": "arn:aws:states:::athena:getQueryExecution",
                "Parameters": {"QueryExecutionId.$": "$.queryId"},
                "ResultSelector": {"state.$": "$.QueryExecution.Status.State"},
                "ResultPath": "$.status",
                "Next": "Count",
            },
            "Count": {
                "Type": "Pass",
                "Parameters": {
                    "queryId.$": "$.queryId",
                    "polls.$": "States.MathAdd($.polls, 1)",
                    "status.$": "$.status",
                },
                "Next": "IsDone",
            },
            "IsDone": {
                "Type": "Choice",
                "Choices": [
                    {
                        "Variable": "$.status.state",
                        "StringEquals": "SUCCEEDED",
                        "Next": "Done",
                    },
                    {
                        "Variable": "$.polls",
                        "NumericGreaterThanEquals": 10,
                        "Next": "GaveUp",
                    },
                ],
                "Default": "Sleep",
            },
            "Sleep": {"Type": "Wait", "Seconds": 30, "Next": "Poll"},
            "GaveUp": {"Type": "Fail", "Error": "TooManyPolls"},
            "Done": {"Type": "Succeed"},
        },
    }
    running = {"result": {"QueryExecution": {"Status": {"State": "RUNNING"}}}}
    succeeded = {"result": {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}}}
    result = run_state_machine(definition, {"queryId": "q-1"}, {"Poll": [running, running, succeeded]})
    assert result.status == "SUCCEEDED", result
    assert result.output == {
        "queryId": "q-1",
        "polls": 3,
        "status": {"state": "SUCCEEDED"},
    }
    assert result.states_entered.count("Sleep") == 2
    assert result.states_entered[-2:] == ["IsDone", "Done"]
    assert result.inputs_to("Poll") == [{"QueryExecutionId": "q-1"}] * 3
    assert [c["attempt"] for c in result.calls_to("Poll")] == [
        1,
        1,
        1,
    ]  # re-entries, not retries

    gave_up = run_state_machine(definition, {"queryId": "q-1"}, {"Poll": [running]})
    assert (gave_up.status, gave_up.error, gave_up.cause) == (
        "FAILED",
        "TooManyPolls",
        None,
    )
    assert len(gave_up.calls_to("Poll")) == 10


def test_scripted_states_timeout_is_not_matched_by_task_failed() -> None:
    definition = {
        "StartAt": "StartClean",
        "States": {
            "StartClean": {
                "Type": "Task",
                "Resource": GLUE_SYNC,
                "TimeoutSeconds": 7200,
                "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 5}],
                "Catch": [
                    {
                        "ErrorEquals": ["States.Timeout"],
                        "ResultPath": "$.error",
                        "Next": "TimedOut",
                    }
                ],
                "End": True,
            },
            "TimedOut": {"Type": "Pass", "End": True},
        },
    }
    result = run_state_machine(
        definition,
        {},
        {"StartClean": [{"error": "States.Timeout", "cause": "job ran too long"}]},
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {"error": {"Error": "States.Timeout", "Cause": "job ran too long"}}
    assert len(result.calls) == 1


def test_parallel_and_map_states_are_recorded() -> None:
    definition = {
        "StartAt": "PerFile",
        "States": {
            "PerFile": {
                "Type": "Map",
                "ItemsPath": "$.files",
                "ItemSelector": {
                    "uri.$": "$$.Map.Item.Value",
                    "run.$": "$$.Execution.Name",
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Copy",
                    "States": {
                        "Copy": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::aws-sdk:s3:copyObject",
                            "End": True,
                        }
                    },
                },
                "ResultPath": "$.copied",
                "Next": "Both",
            },
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "A",
                        "States": {"A": {"Type": "Pass", "Result": "a", "End": True}},
                    },
                    {
                        "StartAt": "B",
                        "States": {"B": {"Type": "Task", "Resource": SNS_PUBLISH, "End": True}},
                    },
                ],
                "End": True,
            },
        },
    }
    result = run_state_machine(
        definition,
        {"files": ["s3://x/1", "s3://x/2"]},
        {"Copy": [{"result": "c1"}, {"result": "c2"}], "B": [{"result": "b"}]},
        context={"Execution": {"Name": "run-7"}},
    )
    assert result.status == "SUCCEEDED", result
    assert result.output == ["a", "b"]
    assert sorted(c["input"]["uri"] for c in result.calls_to("Copy")) == [
        "s3://x/1",
        "s3://x/2",
    ]
    assert {c["input"]["run"] for c in result.calls_to("Copy")} == {"run-7"}
    assert result.states_entered[0] == "PerFile"
    assert sorted(result.states_entered) == sorted(["PerFile", "Copy", "Copy", "Both", "A", "B"])


def _fake_template() -> dict[str, Any]:
    parts: list[Any] = [
        '{"StartAt":"StartClean","States":{"StartClean":{"Type":"Task","Resource":"arn:',
        {"Ref": "AWS::Partition"},
        ':states:::glue:startJobRun.sync","Parameters":{"JobName":"',
        {"Ref": "CleanJob1A2B3C"},
        '","Arguments":{"--output":"s3://',
        {"Ref": "CuratedBucketABC123"},
        '/curated/","--region":"',
        {"Ref": "AWS::Region"},
        '"}},"Catch":[{"ErrorEquals":["States.ALL"],"ResultPath":"$.error","Next":"Notify"}],"Next":"Done"},',
        '"Notify":{"Type":"Task","Resource":"arn:',
        {"Ref": "AWS::Partition"},
        ':states:::sns:publish","Parameters":{"TopicArn":"',
        {"Ref": "AlertsTopic99"},
        '","Message.$":"States.Format(\'Step {} failed\', $.error.Error)","Subject":"',
        {"Fn::GetAtt": ["CleanJob1A2B3C", "Name"]},
        '","Role":"arn:aws:iam::',
        {"Ref": "AWS::AccountId"},
        ':role/x","Endpoint":"sns.',
        {"Ref": "AWS::URLSuffix"},
        '"},"Next":"Failed"},"Failed":{"Type":"Fail","Error":"PipelineFailed"},"Done":{"Type":"Succeed"}}}',
    ]
    return {
        "Resources": {
            "CleanJob1A2B3C": {"Type": "AWS::Glue::Job", "Properties": {}},
            "Role1": {"Type": "AWS::IAM::Role", "Properties": {}},
            "PipelineStateMachine5B1D8F": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "DefinitionString": {"Fn::Join": ["", parts]},
                    "RoleArn": {"Fn::GetAtt": ["Role1", "Arn"]},
                },
            },
        }
    }


def test_definition_from_template_substitutes_intrinsics() -> None:
    definition = definition_from_template(_fake_template())
    clean = definition["States"]["StartClean"]
    assert clean["Resource"] == GLUE_SYNC
    assert clean["Parameters"] == {
        "JobName": "arn:aws:ref:CleanJob1A2B3C",
        "Arguments": {
            "--output": "s3://arn:aws:ref:CuratedBucketABC123/curated/",
            "--region": "eu-west-1",
        },
    }
    notify = definition["States"]["Notify"]["Parameters"]
    assert notify["TopicArn"] == "arn:aws:ref:AlertsTopic99"
    assert notify["Subject"] == "CleanJob1A2B3C.Name"
    assert notify["Role"] == "arn:aws:iam::123456789012:role/x"
    assert notify["Endpoint"] == "sns.amazonaws.com"
    assert definition_from_template(_fake_template(), "pipeline") == definition
    overridden = definition_from_template(_fake_template(), overrides={"CleanJob1A2B3C": 'retail-"clean"'})
    assert overridden["States"]["StartClean"]["Parameters"]["JobName"] == 'retail-"clean"'

    # ...and the result runs.
    result = run_state_machine(
        definition,
        {},
        {
            "StartClean": [{"error": "States.TaskFailed", "cause": "boom"}],
            "Notify": [{"result": {"MessageId": "1"}}],
        },
    )
    assert (result.status, result.error) == ("FAILED", "PipelineFailed")
    assert result.inputs_to("Notify")[0]["Message"] == "Step States.TaskFailed failed"


def test_definition_from_template_sub_plain_definition_and_hints() -> None:
    asl = {
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "Result": {"arn": "${TopicArn}"}, "End": True}},
    }
    sub_text = json.dumps(asl).replace(
        "${TopicArn}",
        "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:${Topic.TopicName}",
    )
    template = {
        "Resources": {
            "SubMachine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {"DefinitionString": {"Fn::Sub": sub_text}},
            },
            "ObjectMachine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "Definition": asl,
                    "DefinitionSubstitutions": {"TopicArn": {"Ref": "Topic"}},
                },
            },
        }
    }
    with pytest.raises(ValueError, match="exactly one"):
        definition_from_template(template)
    sub = definition_from_template(template, "SubMachine")
    assert sub["States"]["P"]["Result"] == {"arn": "arn:aws:sns:eu-west-1:123456789012:Topic.TopicName"}
    plain = definition_from_template(template, "ObjectMachine")
    assert plain["States"]["P"]["Result"] == {"arn": "arn:aws:ref:Topic"}
