"""cdk-nag 3 acknowledgements with a reason each: the one way this library accepts a finding."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import IConstruct

from .validation import PipelinePropsError

MIN_REASON_LENGTH = 20


def acknowledge(construct: IConstruct, finding_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (a rule id such as 'AwsSolutions-IAM5') on `construct` and its children.

    The reason is required and must say why the finding is acceptable here; an empty or token reason raises, so
    an acknowledgement without a reason cannot be committed.
    """
    if not finding_id or " " in finding_id or "-" not in finding_id:
        raise PipelinePropsError(f"finding_id={finding_id!r}: give one rule id, e.g. 'AwsSolutions-IAM5'")
    if not isinstance(reason, str) or len(reason.strip()) < MIN_REASON_LENGTH:
        raise PipelinePropsError(
            f"reason={reason!r} for {finding_id} on {construct.node.path}: explain why the finding is acceptable "
            f"(at least {MIN_REASON_LENGTH} characters)"
        )
    cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(id=finding_id, reason=reason.strip()))
