"""The load targets a pipeline form accepts, checked the same way by every form."""

from __future__ import annotations

from typing import Any

from ..validation import PipelinePropsError
from .athena import AthenaTarget
from .redshift import RedshiftTarget

LoadTarget = AthenaTarget | RedshiftTarget


def check_load_target(target: Any) -> None:
    """Reject anything but an AthenaTarget or a RedshiftTarget, naming what was given."""
    if not isinstance(target, (AthenaTarget, RedshiftTarget)):
        raise PipelinePropsError(f"target={type(target).__name__}: use an AthenaTarget or a RedshiftTarget")
