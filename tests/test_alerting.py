"""Every alarm in every stage can reach a person: its topic lets CloudWatch publish and its key lets CloudWatch encrypt."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from pipeline_constructs import PipelineAlerting
from pipeline_constructs.validation import PipelinePropsError


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resolve_topic(templates: dict[tuple[str, str], dict[str, Any]], env: str, stack: str, ref: Any) -> tuple[str, str]:
    """(stack, logical id) of the topic an alarm action points at, following cross-stack outputs."""
    if "Ref" in ref:
        return stack, ref["Ref"]
    for kind in ("Fn::GetStackOutput", "Fn::ImportValue"):
        if kind in ref:
            spec = ref[kind]
            name = spec["OutputName"] if kind == "Fn::GetStackOutput" else spec
            owner = spec["StackName"].split("-", 1)[1] if kind == "Fn::GetStackOutput" else None
            for (e, s), template in templates.items():
                if e != env or (owner is not None and s != owner):
                    continue
                for output_id, output in template.get("Outputs", {}).items():
                    export = output.get("Export", {}).get("Name")
                    if output_id == name or export == name:
                        return s, output["Value"]["Ref"]
    raise AssertionError(f"cannot follow alarm action {ref} in {env}-{stack}")


def _principal_statements(document: dict[str, Any], service: str) -> list[dict[str, Any]]:
    return [
        s
        for s in _as_list(document["Statement"])
        if s.get("Effect") == "Allow" and service in _as_list(s.get("Principal", {}).get("Service", []))
    ]


def test_every_alarm_notifies_a_topic_that_cloudwatch_may_publish_to_and_encrypt_for(
    templates: dict[tuple[str, str], dict[str, Any]],
) -> None:
    alarms = 0
    for (env, stack), template in templates.items():
        for alarm_id, alarm in template["Resources"].items():
            if alarm["Type"] != "AWS::CloudWatch::Alarm":
                continue
            actions = alarm["Properties"].get("AlarmActions", [])
            assert actions, f"{env}-{stack}/{alarm_id} notifies nobody"
            for action in actions:
                alarms += 1
                topic_stack, topic_id = _resolve_topic(templates, env, stack, action)
                resources = templates[(env, topic_stack)]["Resources"]
                policies = [
                    r["Properties"]["PolicyDocument"]
                    for r in resources.values()
                    if r["Type"] == "AWS::SNS::TopicPolicy" and {"Ref": topic_id} in r["Properties"]["Topics"]
                ]
                publish = [
                    s
                    for p in policies
                    for s in _principal_statements(p, "cloudwatch.amazonaws.com")
                    if "sns:Publish" in _as_list(s["Action"])
                ]
                assert publish, f"{env}-{stack}/{alarm_id}: topic {topic_id} does not let CloudWatch publish"
                assert all("aws:SourceAccount" in str(s.get("Condition")) for s in publish), publish
                key_id = resources[topic_id]["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
                key_policy = resources[key_id]["Properties"]["KeyPolicy"]
                encrypt = {a for s in _principal_statements(key_policy, "cloudwatch.amazonaws.com") for a in _as_list(s["Action"])}
                assert {"kms:GenerateDataKey*", "kms:Decrypt"} <= encrypt, f"{env}: key {key_id} of {topic_id} is closed to CloudWatch"
    assert alarms >= 10


def test_undelivered_notifications_are_alarmed_and_follow_the_removal_policy() -> None:
    for removal, deletion in ((cdk.RemovalPolicy.RETAIN, "Retain"), (cdk.RemovalPolicy.DESTROY, "Delete")):
        stack = cdk.Stack(cdk.App(), "Alerts")
        alerting = PipelineAlerting(stack, "Alerting", emails=["oncall@example.com"], removal_policy=removal)
        template = Template.from_stack(stack)
        queue_id = stack.resolve(alerting.dead_letter_queue.node.default_child.logical_id)
        assert template.to_json()["Resources"][queue_id]["DeletionPolicy"] == deletion
        template.has_resource_properties(
            "AWS::CloudWatch::Alarm",
            {
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}],
                "AlarmActions": [{"Ref": Match.string_like_regexp("AlertingTopic")}],
            },
        )
        assert alerting.undelivered_alarm in alerting.alarms


@pytest.mark.parametrize(
    ("emails", "message"),
    [
        ([], r"emails=\[\]: give at least one address"),
        ("oncall@example.com", r"emails='oncall@example.com': give a list of addresses"),
        (["a@example.com", "A@example.com"], r"emails\[1\]='A@example.com': listed twice"),
        (["not-an-address"], r"emails\[0\]='not-an-address': is not an e-mail address"),
    ],
)
def test_bad_email_lists_are_refused_with_the_value(emails: Any, message: str) -> None:
    with pytest.raises(PipelinePropsError, match=message):
        PipelineAlerting(cdk.Stack(cdk.App(), "Alerts"), "Alerting", emails=emails)


# --- what every alarm says -----------------------------------------------------------------------------------------
def _readme_headings() -> set[str]:
    from pathlib import Path

    readme = Path(__file__).resolve().parent.parent / "README.md"
    return {line.lstrip("#").strip() for line in readme.read_text().splitlines() if line.startswith("#")}


def _pipeline_ops_commands() -> set[str]:
    import argparse

    from pipeline_constructs.operations.cli import _parser

    [commands] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return set(commands.choices)


def test_every_alarm_names_its_failure_readme_section_and_recovery_command(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Every AWS::CloudWatch::Alarm of every stack of every stage: line 1 the failure, line 2 `README: "<a heading of
    README.md>"`, line 3 `Recover: pipeline-ops --env <env> <a pipeline-ops command> ...`, 1,024 characters at most."""
    import re

    headings, commands = _readme_headings(), _pipeline_ops_commands()
    checked = 0
    for (env, stack), template in templates.items():
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::CloudWatch::Alarm":
                continue
            where = f"{env}-{stack}/{logical_id}"
            description = resource["Properties"].get("AlarmDescription")
            assert isinstance(description, str) and len(description) <= 1024, where
            failure, section, recover = description.split("\n")
            assert len(failure) > 20 and failure.endswith("."), (where, failure)
            match = re.fullmatch(r'README: "(.+)"\.', section)
            assert match and match.group(1) in headings, (where, section)
            match = re.match(rf"Recover: pipeline-ops --env {env} ([a-z-]+)", recover)
            assert match and match.group(1) in commands, (where, recover)
            checked += 1
    assert checked >= 40  # dev, staging and prod together


def test_an_alarm_without_a_runbook_is_refused_naming_it() -> None:
    from aws_cdk import aws_cloudwatch as cloudwatch

    from pipeline_constructs.alerting import Runbook

    stack = cdk.Stack(cdk.App(), "Alarms")
    alerting = PipelineAlerting(stack, "Alerting", emails=["oncall@example.com"], environment_name="qa")
    metric = cloudwatch.Metric(namespace="X", metric_name="Y")
    with pytest.raises(PipelinePropsError, match=r"alarm_id='SomethingNew': no runbook"):
        alerting.alarm_when_any(stack, "SomethingNew", metric, "Something new broke")
    alarm = alerting.alarm_when_any(stack, "SomethingElse", metric, "Something else broke", runbook=Runbook("Security", "status"))
    assert stack.resolve(alarm.node.default_child.alarm_description) == (  # type: ignore[union-attr]
        'Something else broke.\nREADME: "Security".\nRecover: pipeline-ops --env qa status'
    )
