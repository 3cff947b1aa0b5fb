"""The load targets a pipeline form accepts, checked the same way by every form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..validation import PipelinePropsError
from .athena import AthenaTarget
from .redshift import RedshiftTarget

LoadTarget = AthenaTarget | RedshiftTarget
LoadTargets = LoadTarget | Sequence[LoadTarget]
"""What a form's `target=` takes: one target, or a list of them loaded in parallel (one of each kind)."""


def check_load_target(target: Any) -> None:
    """Reject anything but an AthenaTarget or a RedshiftTarget, naming what was given."""
    if not isinstance(target, (AthenaTarget, RedshiftTarget)):
        raise PipelinePropsError(f"target={type(target).__name__}: use an AthenaTarget or a RedshiftTarget")


def target_name(target: LoadTarget) -> str:
    """The name a target goes by in the config, the ledger (`load_<name>`) and failure messages: athena, redshift."""
    check_load_target(target)
    return "redshift" if isinstance(target, RedshiftTarget) else "athena"


def load_targets(target: Any) -> tuple[LoadTarget, ...]:
    """A form's `target=` as a tuple: one target, or a non-empty list with at most one of each kind (two Athena
    targets would MERGE into tables of the same name); PipelinePropsError naming the value otherwise. The order is
    the given one."""
    given = tuple(target) if isinstance(target, (list, tuple)) else (target,)
    if not given:
        raise PipelinePropsError("target=[]: give an AthenaTarget, a RedshiftTarget, or a list of one of each")
    for each in given:
        check_load_target(each)
    names = [target_name(each) for each in given]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise PipelinePropsError(f"target={names}: {', '.join(repeated)} is given twice; load each kind of target once")
    return given
