"""Early validation shared by the constructs: every message names the argument and the bad value."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from aws_cdk import Token, aws_iam as iam

from constructs import IConstruct


class PipelinePropsError(ValueError):
    """A construct argument is invalid; raised before synth with the argument's name and value."""


def check_positive(name: str, value: float | int | None, *, minimum: float = 1) -> None:
    """Reject values below `minimum`; unresolved tokens are skipped because their value is unknown at synth."""
    if value is None or Token.is_unresolved(value):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PipelinePropsError(f"{name}={value!r}: must be a number, not {type(value).__name__}")
    if value < minimum:
        raise PipelinePropsError(f"{name}={value!r}: must be >= {minimum}")


def check_prefix(name: str, value: str) -> str:
    """An S3 key prefix: no leading slash, ends with '/', no '..' or spaces. Returns the value."""
    if Token.is_unresolved(value):
        return value
    if not re.fullmatch(r"[A-Za-z0-9!_.*'()=/-]+/", value) or value.startswith("/") or ".." in value:
        raise PipelinePropsError(f"{name}={value!r}: must be an S3 key prefix like 'incoming/sales/' (no leading '/', ends with '/')")
    return value


def check_name(name: str, value: str, *, pattern: str = r"[a-z][a-z0-9_]{0,62}") -> str:
    """A snake_case identifier usable as a Glue database, table or Athena name."""
    if Token.is_unresolved(value):
        return value
    if not re.fullmatch(pattern, value):
        raise PipelinePropsError(f"{name}={value!r}: must match {pattern}")
    return value


def unique_default_name(construct: IConstruct, base: str) -> str:
    """`<base>-<8 hex>`, the hex a hash of the construct's path: two copies of a pipeline in one account and region
    (other stacks or stages) get different names, and one copy keeps its name from synth to synth."""
    return f"{base}-{hashlib.sha256(construct.node.path.encode('utf-8')).hexdigest()[:8]}"


def exactly_one(first_name: str, first: Any, second_name: str, second: Any) -> None:
    """An existing resource or the props for a new one, never both."""
    if first is not None and second is not None:
        raise PipelinePropsError(f"give {first_name} or {second_name}, not both")


def check_role(name: str, grantee: iam.IGrantable) -> iam.IRole:
    """The role behind `grantee` (a role, or a resource acting through one, like a state machine), for grants
    that attach a managed policy."""
    role = grantee.grant_principal
    if not hasattr(role, "add_managed_policy"):
        raise PipelinePropsError(f"{name}={grantee!r}: must be a role, or act through one (managed policies attach to roles)")
    return role  # type: ignore[return-value]
