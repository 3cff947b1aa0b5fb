"""cdk-nag 3 acknowledgements with a reason each: the one way this library accepts a finding.

cdk-nag 3 matches an acknowledgement by the exact finding id, and wildcard findings carry the rendered resource in
their id (`AwsSolutions-IAM5[Resource::<CuratedBucket.Arn>/sales/runs/*]`), which contains logical ids and
cross-stack references no caller should hard-code. So constructs declare *reviewed* findings with
`acknowledge_findings(construct, rule, reason, matching=<regex over the finding detail>)`, and
`apply_acknowledgements(app)` (called once, before synth) runs the rule packs, and acknowledges exactly the findings
that match a declaration, one finding id per acknowledgement, each with the declaration's reason. Anything that
matches no declaration stays open and fails synth.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk

from constructs import IConstruct

from .validation import PipelinePropsError

MIN_REASON_LENGTH = 20
_FINDING = re.compile(r"^(?P<rule>[^\[]+)(\[(?P<detail>.*)\])?$", re.DOTALL)


@dataclass(frozen=True)
class ReviewedFinding:
    """Findings of `rule` on resources at or under `path` whose detail matches `matching` are accepted for `reason`."""

    path: str
    rule: str
    matching: str
    reason: str
    actions: tuple[str, ...] = ()


_REVIEWED: dict[str, list[ReviewedFinding]] = {}


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
    try:
        re.compile(matching)
    except re.error as error:
        raise PipelinePropsError(f"matching={matching!r}: not a regular expression ({error})") from None
    path = construct.node.path if child_path is None else f"{construct.node.path}/{child_path}"
    entry = ReviewedFinding(path=path, rule=rule, matching=matching, reason=_check_reason(construct, rule, reason), actions=tuple(actions))
    _REVIEWED.setdefault(construct.node.root.node.addr, []).append(entry)


def reviewed_findings(scope: IConstruct) -> list[ReviewedFinding]:
    """The declarations made in the app that `scope` belongs to."""
    return list(_REVIEWED.get(scope.node.root.node.addr, []))


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
        from cdk_nag import AwsSolutionsChecks, ServerlessChecks

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
                        and re.fullmatch(entry.matching, detail, re.DOTALL)
                    ):
                        acknowledge(_find(app, path), violation.rule_name, entry.reason)
                        count += 1
                        break
    return count
