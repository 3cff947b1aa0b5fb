"""Every encrypted log group's key lets CloudWatch Logs use it for that group: otherwise the deploy (or the first
write) fails with a KMS access error, which no template linter sees."""

from __future__ import annotations

import fnmatch
import json
from typing import Any


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _flatten(value: Any) -> str:
    """A CloudFormation string value with every reference written as REF."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        delimiter, parts = value["Fn::Join"]
        return delimiter.join(_flatten(p) for p in parts)
    return "REF"


def _key_of(templates: dict[tuple[str, str], dict[str, Any]], env: str, stack: str, ref: Any) -> tuple[str, str] | None:
    """(stack, logical id) of the KMS key a KmsKeyId points at, following cross-stack outputs."""
    if isinstance(ref, dict) and "Fn::GetAtt" in ref:
        return stack, ref["Fn::GetAtt"][0]
    if isinstance(ref, dict) and "Fn::GetStackOutput" in ref:
        spec = ref["Fn::GetStackOutput"]
        owner = spec["StackName"].split("-", 1)[1]
        output = templates[(env, owner)]["Outputs"][spec["OutputName"]]["Value"]
        return owner, output["Fn::GetAtt"][0]
    return None


def log_group_patterns(key: dict[str, Any]) -> list[str]:
    """The log-group name patterns a key policy lets CloudWatch Logs use the key for."""
    patterns = []
    for statement in _as_list(key["Properties"]["KeyPolicy"]["Statement"]):
        service = json.dumps(statement.get("Principal", {}))
        if statement.get("Effect") != "Allow" or "logs." not in service:
            continue
        arn = statement.get("Condition", {}).get("ArnLike", {}).get("kms:EncryptionContext:aws:logs:arn")
        patterns.append("*" if arn is None else _flatten(arn).split(":log-group:", 1)[1])
    return patterns


def unusable_log_groups(templates: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    bad = []
    for (env, stack), template in templates.items():
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::Logs::LogGroup" or "KmsKeyId" not in resource["Properties"]:
                continue
            found = _key_of(templates, env, stack, resource["Properties"]["KmsKeyId"])
            assert found, f"{env}-{stack}/{logical_id}: cannot follow its KmsKeyId"
            key = templates[(env, found[0])]["Resources"][found[1]]
            name = resource["Properties"].get("LogGroupName")
            patterns = log_group_patterns(key)
            if name is None:
                ok = "*" in patterns  # a generated name matches only a key open to every log group
            else:
                ok = any(fnmatch.fnmatchcase(_flatten(name), pattern) for pattern in patterns)
            if not ok:
                bad.append(f"{env}-{stack}/{logical_id} ({_flatten(name) if name else 'generated name'}) under key {found[1]} ({patterns})")
    return bad


def test_every_encrypted_log_group_may_use_its_key(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert unusable_log_groups(templates) == []
