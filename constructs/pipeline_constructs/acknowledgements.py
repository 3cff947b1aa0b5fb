"""cdk-nag 3 acknowledgements with a reason each: the one way this library accepts a finding.

cdk-nag 3 matches an acknowledgement by the exact finding id, and wildcard findings carry the rendered resource in
their id (`AwsSolutions-IAM5[Resource::<CuratedBucket.Arn>/sales/runs/*]`), which contains logical ids and
cross-stack references no caller should hard-code. So constructs declare *reviewed* findings with
`acknowledge_findings(construct, rule, reason, matching=<regex over the finding detail>)`, and
`AcknowledgementsPlugin`, registered before the rule packs (`Validations.of(app).add_plugins(AcknowledgementsPlugin(),
AwsSolutionsChecks(app), ServerlessChecks(app))`), runs the packs during synth, when references between stacks are
resolved, and acknowledges exactly the findings that match a declaration, one finding id per acknowledgement, each
with the declaration's reason. Anything that matches no declaration stays open and fails synth.
`apply_acknowledgements(app)` is the same step for a single-stack app checked before synth.

A wildcard declaration (AwsSolutions-IAM5) also names the IAM actions it covers. Every policy statement behind a
matched finding is read back from the resource, and a statement holding an action the declaration does not name
fails synth: a reason cannot cover more than it says. Finding details are compared with the pseudo parameters of
environment-agnostic stacks (`<AWS::Partition>`, `<AWS::Region>`, ...) written without their colons
(`<AWS.Partition>`), so one declaration matches whatever account, region and stack layout the app picks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
import jsii

from constructs import IConstruct

from .validation import PipelinePropsError

MIN_REASON_LENGTH = 20
_FINDING = re.compile(r"^(?P<rule>[^\[]+)(\[(?P<detail>.*)\])?$", re.DOTALL)
_PSEUDO = re.compile(r"<AWS::(\w+)>")
# Rules whose findings are wildcards inside policy statements: their declarations name the actions they cover.
STATEMENT_RULES = ("AwsSolutions-IAM5",)


@dataclass(frozen=True)
class ReviewedFinding:
    """Findings of `rule` on resources at or under `path` whose detail matches `matching` are accepted for `reason`."""

    path: str
    rule: str
    matching: str
    reason: str
    actions: tuple[str, ...] = ()


# Declarations live on the app's root construct (every App's root has the same node address).
_REVIEWED_ATTRIBUTE = "_pipeline_reviewed_findings"


def _check_reason(construct: IConstruct, finding_id: str, reason: str) -> str:
    if not isinstance(reason, str) or len(reason.strip()) < MIN_REASON_LENGTH:
        raise PipelinePropsError(
            f"reason={reason!r} for {finding_id} on {construct.node.path}: explain why the finding is acceptable "
            f"(at least {MIN_REASON_LENGTH} characters)"
        )
    return reason.strip()


def acknowledge(construct: IConstruct, finding_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding id (e.g. 'AwsSolutions-SQS3') on `construct` and its children, with a reason.

    An empty or short reason raises, so an acknowledgement without a reason cannot be committed.
    """
    if not finding_id or not _FINDING.match(finding_id) or "-" not in finding_id.split("[")[0]:
        raise PipelinePropsError(f"finding_id={finding_id!r}: give one finding id, e.g. 'AwsSolutions-IAM5[Action::s3:*]'")
    cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(id=finding_id, reason=_check_reason(construct, finding_id, reason)))


def acknowledge_findings(
    construct: IConstruct,
    rule: str,
    reason: str,
    *,
    matching: str,
    actions: Sequence[str] = (),
    child_path: str | None = None,
) -> None:
    """Declare reviewed findings of `rule` (e.g. 'AwsSolutions-IAM5') under `construct` whose detail matches `matching`.

    `apply_acknowledgements` turns each matching finding into its own acknowledgement. Keep `matching` narrow: it is
    a full-match regular expression over the bracketed detail, e.g. r'Resource::.*/incoming/\\*'. `child_path`
    narrows the declaration to a child that does not exist yet (one CDK adds while synthesizing).
    """
    if "[" in rule or "-" not in rule:
        raise PipelinePropsError(f"rule={rule!r}: give a rule id without detail, e.g. 'AwsSolutions-IAM5'")
    checked_reason = _check_reason(construct, rule, reason)
    if isinstance(actions, str):
        raise PipelinePropsError(f"actions={actions!r}: give a list of IAM actions, e.g. ['s3:GetObject']")
    if rule in STATEMENT_RULES and not actions:
        raise PipelinePropsError(
            f"actions={list(actions)!r} for {rule} on {construct.node.path}: name the IAM actions the reviewed statements hold"
        )
    try:
        re.compile(matching)
    except re.error as error:
        raise PipelinePropsError(f"matching={matching!r}: not a regular expression ({error})") from None
    path = construct.node.path if child_path is None else f"{construct.node.path}/{child_path}"
    entry = ReviewedFinding(path=path, rule=rule, matching=matching, reason=checked_reason, actions=tuple(actions))
    root = construct.node.root
    if not hasattr(root, _REVIEWED_ATTRIBUTE):
        setattr(root, _REVIEWED_ATTRIBUTE, [])
    getattr(root, _REVIEWED_ATTRIBUTE).append(entry)


def normalise_detail(detail: str) -> str:
    """A finding detail with pseudo parameters written without colons (`<AWS::Region>` -> `<AWS.Region>`)."""
    return _PSEUDO.sub(r"<AWS.\1>", detail)


def flatten_reference(node: Any) -> str:
    """A resolved CloudFormation value as one string, the way cdk-nag writes it into a finding id."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(flatten_reference(item) for item in items)
        if "Fn::Sub" in node:
            return flatten_reference(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{flatten_reference(resource)}.{flatten_reference(attribute)}>"
        if "Fn::ImportValue" in node:
            return flatten_reference(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{flatten_reference(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_statements(resource: IConstruct) -> list[dict[str, Any]]:
    """The resolved Allow statements of an IAM policy, managed policy or role's inline policies ([] otherwise)."""
    from aws_cdk import aws_iam as iam

    stack = cdk.Stack.of(resource)
    documents: list[Any] = []
    if isinstance(resource, (iam.CfnPolicy, iam.CfnManagedPolicy)):
        documents.append(stack.resolve(resource.policy_document))
    elif isinstance(resource, (iam.CfnRole, iam.CfnUser, iam.CfnGroup)):
        for policy in _as_list(stack.resolve(resource.policies) or []):
            documents.append(stack.resolve(policy.get("PolicyDocument") or policy.get("policyDocument")))
    statements = []
    for document in documents:
        for statement in _as_list((document or {}).get("Statement", [])):
            if statement.get("Effect") == "Allow":
                statements.append(statement)
    return statements


def statement_findings(statement: dict[str, Any]) -> set[str]:
    """The AwsSolutions-IAM5 details one statement produces: each wildcard action and each wildcard resource."""
    details = {f"Action::{action}" for action in _as_list(statement.get("Action", [])) if isinstance(action, str) and "*" in action}
    for resource in _as_list(statement.get("Resource", [])):
        flat = flatten_reference(resource)
        if "*" in flat:
            details.add(f"Resource::{flat}")
    return details


def check_declared_actions(resource: IConstruct, detail: str, entry: ReviewedFinding) -> None:
    """Raise when a statement of `resource` behind finding `detail` holds an action `entry` does not name."""
    for statement in policy_statements(resource):
        if detail not in statement_findings(statement):
            continue
        extra = sorted(str(a) for a in _as_list(statement.get("Action", [])) if a not in entry.actions)
        if extra:
            raise PipelinePropsError(
                f"{resource.node.path}: the statement behind {entry.rule}[{detail}] holds {extra}, which the "
                f"acknowledgement declared at {entry.path} (actions={list(entry.actions)}) does not name; "
                f"narrow the statement or review the action and add it to the declaration"
            )


def reviewed_findings(scope: IConstruct) -> list[ReviewedFinding]:
    """The declarations made in the app that `scope` belongs to."""
    return list(getattr(scope.node.root, _REVIEWED_ATTRIBUTE, []))


def _find(root: IConstruct, path: str) -> IConstruct:
    node = root
    for part in path.split("/"):
        node = node.node.find_child(part)
    return node


def apply_acknowledgements(app: IConstruct, packs: Sequence[Any] | None = None) -> int:
    """Acknowledge every current finding that matches a declaration; returns how many were acknowledged.

    `packs` default to cdk-nag's AwsSolutionsChecks and ServerlessChecks. Call it after the app's constructs exist
    and before `app.synth()`.
    """
    if packs is None:
        try:
            from cdk_nag import AwsSolutionsChecks, ServerlessChecks
        except ImportError:
            raise PipelinePropsError(
                "packs=None: the default rule packs need cdk-nag 3; install the library with its extra "
                "(pip install 'retail-pipeline-constructs[nag]') or pass packs"
            ) from None

        packs = [AwsSolutionsChecks(), ServerlessChecks()]
    declarations = reviewed_findings(app)
    count = 0
    for pack in packs:
        for violation in pack.validate_scope(app).violations:
            parsed = _FINDING.match(violation.rule_name)
            if not parsed:
                continue
            rule, detail = parsed.group("rule"), parsed.group("detail") or ""
            for resource in violation.violating_resources:
                path = resource.construct_path
                for entry in declarations:
                    if (
                        entry.rule == rule
                        and (path == entry.path or path.startswith(entry.path + "/"))
                        and re.fullmatch(entry.matching, normalise_detail(detail), re.DOTALL)
                    ):
                        found = _find(app, path)
                        if rule in STATEMENT_RULES:
                            check_declared_actions(found, detail, entry)
                        acknowledge(found, violation.rule_name, entry.reason)
                        count += 1
                        break
    return count


@jsii.implements(cdk.IPolicyValidationPlugin)
class AcknowledgementsPlugin:
    """A validation plugin that runs `apply_acknowledgements` during synth, before the cdk-nag plugins after it.

    Register it first: `Validations.of(app).add_plugins(AcknowledgementsPlugin(), AwsSolutionsChecks(app), ...)`.
    During synth the references between stacks are resolved, so a finding's id holds the form the cdk-nag plugins
    will see (`Fn::GetStackOutput`, `Fn::ImportValue`), whatever the stack layout: acknowledging before synth would
    miss those. A declaration that covers less than its statement holds stops synth with a message naming both.
    """

    def __init__(self, packs: Sequence[Any] | None = None) -> None:
        """
        :param packs: the rule packs whose findings are acknowledged. Default: cdk-nag's AwsSolutionsChecks and
            ServerlessChecks (the `[nag]` extra).
        """
        self._packs = packs

    @property
    def name(self) -> str:
        return "pipeline-acknowledgements"

    @property
    def rule_ids(self) -> list[str] | None:
        return None

    @property
    def version(self) -> str | None:
        return None

    def validate(self, context: cdk.IPolicyValidationContext) -> cdk.PolicyValidationPluginReport:
        """Acknowledge what the declarations cover; a declaration that covers too little raises and stops synth."""
        apply_acknowledgements(context.app_construct, self._packs)
        return cdk.PolicyValidationPluginReport(success=True, violations=[])
