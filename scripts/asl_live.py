"""Run a state machine definition in aws-local-stepfunctions with every Task answered while the execution waits.

`run_live(definition, input, handlers, context=...)` starts `node scripts/asl_live.mjs`, sends the request, and for
each Task the interpreter reaches calls `handlers[state name](input)` with the input the interpreter resolved
(after InputPath and Parameters). A handler returns the Task's result, or raises `TaskError(error, cause)`, which
reaches the state's Retry and Catch exactly as the service's error would. Every state's entry and exit is timed
(`Step`), and the result is the tests' `ExecutionResult` (tests/asl_runner.py), so the failure reporter helpers
(`history_answer`, `status_change_event`) read it as they read a scripted run.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "scripts" / "asl_live.mjs"

Handler = Callable[[Any], Any]


class TaskError(Exception):
    """The Task fails with this error name and cause (what a Retry/Catch `ErrorEquals` matches)."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


class LiveRunError(RuntimeError):
    """The runner could not run the definition (node missing, invalid definition, no handler for a Task)."""


@dataclass
class Step:
    """One state's entry: its name, type, when it was entered and left (epoch ms), how it ended, what its handler said."""

    state: str
    state_type: str
    entered: int
    left: int | None = None
    outcome: str = ""
    note: str = ""
    retries: int = 0

    @property
    def millis(self) -> int:
        return (self.left or self.entered) - self.entered


@dataclass
class LiveRun:
    result: Any
    """tests.asl_runner.ExecutionResult"""
    steps: list[Step] = field(default_factory=list)
    started: int = 0


def _node() -> str:
    import shutil

    node = shutil.which("node") or str(ROOT / ".venv" / "bin" / "node")
    if not Path(node).exists():
        raise LiveRunError("`node` is not on PATH (Node 24 comes with the virtualenv): run `make setup`")
    return node


def run_live(
    definition: dict[str, Any],
    execution_input: Any,
    handlers: dict[str, Handler],
    *,
    context: dict[str, Any] | None = None,
    notes: dict[str, str] | None = None,
    on_step: Callable[[Step], None] | None = None,
    timeout: float = 600,
) -> LiveRun:
    """Execute `definition` on `execution_input`; `notes[state]`, set by a handler, is attached to that state's step."""
    from tests.asl_runner import ExecutionResult

    notes = notes if notes is not None else {}
    request = {"definition": definition, "input": execution_input, "context": context or {}}
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            [_node(), str(RUNNER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=ROOT,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        steps: list[Step] = []
        open_steps: dict[str, Step] = {}

        def finish(step: Step) -> None:
            open_steps.pop(step.state, None)
            step.note = notes.pop(step.state, step.note)
            if on_step is not None:
                on_step(step)

        end: dict[str, Any] | None = None
        try:
            for line in proc.stdout:
                message = json.loads(line)
                kind = message["type"]
                if kind == "event":
                    name, event, at = message["state"], message["event"], message["at"]
                    if event == "StateEntered":
                        for ended in [s for s in open_steps.values() if s.outcome == "failed"]:
                            finish(ended)
                        open_steps[name] = Step(name, message["state_type"], at)
                        steps.append(open_steps[name])
                        notes.pop(name, None)
                    elif name in open_steps:
                        step = open_steps[name]
                        if event == "StateFailed":
                            step.left, step.outcome = at, "failed"
                            step.note = notes.get(name, step.note)
                        elif event == "StateRetried":
                            step.outcome, step.retries = "", step.retries + 1
                        elif event in ("StateExited", "StateCaught"):
                            step.left, step.outcome = at, "ok" if event == "StateExited" else "caught"
                            finish(step)
                elif kind == "task":
                    handler = handlers.get(message["state"])
                    if handler is None:
                        raise LiveRunError(f"Task state {message['state']!r} ran and no handler answers it")
                    try:
                        reply: dict[str, Any] = {"id": message["id"], "result": handler(message["input"])}
                    except TaskError as failed:
                        reply = {"id": message["id"], "error": failed.error, "cause": failed.cause}
                    proc.stdin.write(json.dumps(reply, default=str) + "\n")
                    proc.stdin.flush()
                elif kind == "end":
                    end = message
                    for ended in list(open_steps.values()):
                        ended.left = ended.left or ended.entered
                        ended.outcome = ended.outcome or "failed"
                        finish(ended)
                    break
        finally:
            proc.stdin.close()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        if end is None:
            stderr.seek(0)
            raise LiveRunError(f"{RUNNER.name} exited {proc.returncode} without a result: {stderr.read()[-2000:]}")
    result = ExecutionResult(
        status=end["status"],
        output=end["output"],
        error=end["error"],
        cause=end["cause"],
        calls=[{**call, "attempt": 1} for call in end["calls"]],
        states_entered=end["states_entered"],
    )
    return LiveRun(result=result, steps=steps, started=steps[0].entered if steps else 0)
