"""Every log group the pipeline causes to exist is a CloudFormation resource with the environment's retention and a
customer-managed key: the ones Glue and Redshift would otherwise create themselves (kept forever, outside the key)
are created first, under the names those services write to."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cdk_app import SynthesizedApp, cdk_context

Templates = dict[tuple[str, str], dict[str, Any]]


def _configured_retention(env: str) -> int:
    return int(cdk_context()["pipeline:environments"][env]["log_retention_days"])


def _of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == resource_type}


def _only(template: dict[str, Any], resource_type: str) -> str:
    (logical_id,) = _of_type(template, resource_type)
    return logical_id


def _name_parts(log_group: dict[str, Any]) -> list[Any]:
    """The log group's name as a list of literal strings and intrinsics (a plain string is one part)."""
    name = log_group["Properties"]["LogGroupName"]
    if isinstance(name, str):
        return [name]
    assert set(name) == {"Fn::Join"} and name["Fn::Join"][0] == "", name
    return name["Fn::Join"][1]


def _log_groups_named(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{name with intrinsics written as {Ref:X} / {X.Attr}: log group} for the template's named log groups."""
    out = {}
    for group in _of_type(template, "AWS::Logs::LogGroup").values():
        if "LogGroupName" not in group["Properties"]:
            continue
        text = ""
        for part in _name_parts(group):
            if isinstance(part, str):
                text += part
            elif "Ref" in part:
                text += "{Ref:" + part["Ref"] + "}"
            else:
                text += "{" + json.dumps(part, sort_keys=True) + "}"
        out[text] = group
    return out


def test_every_log_group_has_the_environments_retention_and_a_key(templates: Templates) -> None:
    seen = 0
    for (env, stack), template in templates.items():
        for logical_id, group in _of_type(template, "AWS::Logs::LogGroup").items():
            seen += 1
            props = group["Properties"]
            assert props.get("RetentionInDays") == _configured_retention(env), f"{env}/{stack}/{logical_id}: {props}"
            assert "KmsKeyId" in props, f"{env}/{stack}/{logical_id} is not encrypted with a customer-managed key"
    assert seen >= 10


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_glue_log_groups_exist_before_glue_writes_under_the_pipeline_key(templates: Templates, env: str) -> None:
    template = templates[(env, "Stateful")]
    sc_id = _only(template, "AWS::Glue::SecurityConfiguration")
    security_configuration = template["Resources"][sc_id]
    sc_name = "{Ref:" + sc_id + "}"  # the configuration's name, as CloudFormation resolves it
    key = security_configuration["Properties"]["EncryptionConfiguration"]["CloudWatchEncryption"]["KmsKeyArn"]
    crawler = template["Resources"][_only(template, "AWS::Glue::Crawler")]["Properties"]
    crawler_role = crawler["Role"]["Fn::GetAtt"][0]
    (job,) = [j for j in _of_type(template, "AWS::Glue::Job").values() if j["Properties"]["Command"]["Name"] == "glueetl"]
    job_role = job["Properties"]["Role"]["Fn::GetAtt"][0]
    named = _log_groups_named(template)

    expected = [f"/aws-glue/crawlers-role/{{Ref:{crawler_role}}}-{sc_name}"] + [
        f"/aws-glue/jobs/{sc_name}-role/{{Ref:{job_role}}}/{stream}" for stream in ("output", "error", "logs-v2")
    ]
    for name in expected:
        assert name in named, f"{env}: no log group {name}; named log groups: {sorted(named)}"
        assert named[name]["Properties"]["KmsKeyId"] == key, f"{env}: {name} is not under the security configuration's key"
        assert named[name]["Properties"]["RetentionInDays"] == _configured_retention(env)


def test_redshift_audit_log_groups_exist_before_the_namespace(synthesized: SynthesizedApp, templates: Templates) -> None:
    template = templates[("staging", "Stateful")]
    named = _log_groups_named(template)
    namespace_id = _only(template, "AWS::RedshiftServerless::Namespace")
    namespace = template["Resources"][namespace_id]
    depends_on = set(namespace.get("DependsOn", []))
    storage_key = template["Resources"][_only(template, "AWS::Glue::SecurityConfiguration")]["Properties"]["EncryptionConfiguration"][
        "CloudWatchEncryption"
    ]["KmsKeyArn"]
    for log_type in namespace["Properties"]["LogExports"]:
        name = f"/aws/redshift/serverless/{log_type}"
        assert name in named, f"no log group {name}; named log groups: {sorted(named)}"
        group_id = next(k for k, r in template["Resources"].items() if r is named[name])
        assert group_id in depends_on, f"the namespace must wait for {name}"
        assert named[name]["Properties"]["KmsKeyId"] == storage_key
        assert named[name]["Properties"]["RetentionInDays"] == _configured_retention("staging")
