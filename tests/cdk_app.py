"""Synthesizing this app in tests: cdk.json's context with the region pinned, nag on or off, templates by stack."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")


def cdk_context() -> dict[str, Any]:
    """The committed cdk.json context (feature flags and environments), as `cdk synth` would read it."""
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def pinned_context(**overrides: Any) -> dict[str, Any]:
    """cdk.json's context with every environment pinned to one region and no account, so templates are stable."""
    context = cdk_context()
    envs = json.loads(json.dumps(context["pipeline:environments"]))
    for settings in envs.values():
        settings["region"] = "eu-west-1"
        settings.pop("account", None)
    context["pipeline:environments"] = envs
    context.update(overrides)
    return context


@dataclass
class SynthesizedApp:
    app: Any
    stages: list[Any]
    assembly: Any

    def templates(self) -> dict[tuple[str, str], dict[str, Any]]:
        """{(environment, stack id): template} for every stack of every stage, e.g. ('dev', 'Stateful')."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for stage in self.stages:
            for artifact in self.assembly.get_nested_assembly(stage.artifact_id).stacks:
                out[(stage.stage_name, artifact.stack_name.split("-", 1)[1])] = artifact.template
        return out

    def template(self, env: str, stack: str) -> dict[str, Any]:
        return self.templates()[(env, stack)]


def synth_app(context: dict[str, Any], *, nag: bool = True, outdir: str | None = None) -> SynthesizedApp:
    """Build app.py's stages in a fresh App with `context`; with `nag`, an open cdk-nag finding raises."""
    import aws_cdk as cdk

    from app import build_app

    app = cdk.App(context=context, outdir=outdir)
    stages = build_app(app, nag=nag)
    assembly = app.synth()
    return SynthesizedApp(app=app, stages=stages, assembly=assembly)
