"""The library's own modules copied into a Lambda function's code folder at synth time.

A Lambda that runs library code gets only the modules it imports (standard library and boto3), never the construct
layer, so its asset stays small and its imports are the ones tested with aws-cdk blocked.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def stage_modules(target: Path, patterns: Iterable[str], *, purpose: str, flat: bool = False) -> Path:
    """Copy every library file matching each glob pattern (relative to the package) into `target`; returns `target`.

    `flat`: each file lands at `target`/<file name> (a handler folder importing its modules by bare name); otherwise at
    `target`/pipeline_constructs/<its path in the package>. A pattern that matches nothing raises FileNotFoundError
    naming `purpose`, the pattern and the package, so a renamed module fails the synth instead of the deployed Lambda.
    """
    for pattern in patterns:
        matches = sorted(PACKAGE.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"{purpose} needs {pattern} of {PACKAGE}, which is missing")
        for source in matches:
            destination = target / source.name if flat else target / "pipeline_constructs" / source.relative_to(PACKAGE)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
    return target
