"""Run a real Step Functions (JSONPath) definition locally in aws-local-stepfunctions with scripted Task outcomes.

Stdlib only. `run_state_machine` pipes one JSON request into `node tests/asl/run_state_machine.mjs` (cwd = repo root, so the
pinned `aws-local-stepfunctions` in node_modules is used) and returns an `ExecutionResult`. `definition_from_template` turns
the `AWS::StepFunctions::StateMachine` of a synthesized CloudFormation template into a concrete ASL dict.

Scripts: `{"<Task state name>": [outcome, ...]}` where an outcome is `{"result": <JSON>}` or
`{"error": "<ErrorName>", "cause": "<string>"}`. The n-th call of a Task state (every entry and every retry counted) gets the
n-th outcome, and the last outcome repeats. Errors reach Retry/Catch exactly as AWS presents them (`Error`/`Cause`);
`{"error": "States.Timeout"}` is the interpreter's own timeout error, so `States.TaskFailed` does not match it. Retries and
Wait states never sleep (Wait states default to 0 ms; override per state with `wait_time_overrides`). A Task state that runs
without a script raises `MissingScriptError` (the runner makes that error impossible to Retry or Catch), so no test can pass
by accident. Scripts naming no Task state of the definition are rejected (typos).

Interpreter facts worth knowing (aws-local-stepfunctions 3.0.0), see tests/test_asl_runner.py:
- Every Task goes to its scripted handler by state name whatever the Resource (`glue:startJobRun.sync`,
  `athena:startQueryExecution.sync`, `sns:publish`, `aws-sdk:glue:startCrawler`, ...). `.sync` is not simulated: script
  what the integration returns (e.g. the Glue JobRun) or the error it raises (`States.TaskFailed` with the JSON cause).
- `$$.Execution.Input` and `$$.Execution.StartTime` are always the real ones; the runner defaults `Execution.Name`
  ("local-execution"), `Execution.Id`, `StateMachine.Name`/`Id` under whatever `context` gives.
- `"ResultPath": "$"` is normalized away by the runner (the interpreter would write a key named "$").
- A Pass state's falsy `Result` (0, false, "", null) is ignored by the interpreter (the input passes through).
- String results of intrinsics have every backslash removed (`States.Format` of "C:\\x" gives "C:x";
  `States.JsonToString` of strings containing quotes gives invalid JSON).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "tests" / "asl" / "run_state_machine.mjs"
PACKAGE = ROOT / "node_modules" / "aws-local-stepfunctions" / "package.json"

PSEUDO_PARAMETERS: dict[str, str] = {
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "test-stack",
    "AWS::StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/test-stack/00000000-0000-0000-0000-000000000000",
    "AWS::NoValue": "",
}


class AslHarnessError(RuntimeError):
    """The harness could not run the state machine (node or the package missing, invalid definition or request, timeout)."""


class MissingScriptError(AslHarnessError):
    """A Task state ran without a script. `.result` holds the (FAILED) execution up to that point."""

    def __init__(self, message: str, result: ExecutionResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class ExecutionResult:
    status: str
    """SUCCEEDED, FAILED, TIMED_OUT (top-level TimeoutSeconds elapsed) or ABORTED."""
    output: Any
    error: str | None
    cause: str | None
    calls: list[dict[str, Any]] = field(default_factory=list)
    """[{"state", "input" (after InputPath + Parameters), "attempt" (1 + retries in this entry), "call" (n-th call overall)}]"""
    states_entered: list[str] = field(default_factory=list)
    """Every state entered, in order, including states inside Parallel branches and Map iterations; once per entry."""

    def calls_to(self, state_name: str) -> list[dict[str, Any]]:
        return [call for call in self.calls if call["state"] == state_name]

    def inputs_to(self, state_name: str) -> list[Any]:
        return [call["input"] for call in self.calls_to(state_name)]

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        venv_node = ROOT / ".venv" / "bin" / "node"
        if venv_node.exists():
            node = str(venv_node)
    if node is None:
        raise AslHarnessError("`node` is not on PATH (Node 24 comes with the virtualenv): run `make setup`, then `make test`")
    if not PACKAGE.exists():
        raise AslHarnessError(f"aws-local-stepfunctions is not installed ({PACKAGE} missing): run `make setup`")
    return node


def _run_node_script(script: Path, request: dict[str, Any], *, timeout: float, timeout_message: str) -> dict[str, Any]:
    """Run one of the Node scripts (the request on stdin, a JSON report on stdout) and return the report;
    AslHarnessError naming the script when it exits non-zero or prints no JSON, `timeout_message` when it outlives
    `timeout` seconds of real time."""
    env = dict(os.environ)
    env.setdefault("NODE_NO_WARNINGS", "1")
    try:
        proc = subprocess.run(
            [_node(), str(script)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AslHarnessError(timeout_message) from exc
    if proc.returncode != 0:
        raise AslHarnessError(f"{script.name} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AslHarnessError(f"{script.name} printed no JSON report: {proc.stdout!r} {proc.stderr!r}") from exc


def run_state_machine(
    definition: dict[str, Any],
    input: Any,
    scripts: dict[str, list[dict[str, Any]]],
    *,
    context: dict[str, Any] | None = None,
    wait_time_overrides: dict[str, int] | None = None,
    timeout: float = 60,
    validation_options: dict[str, bool] | None = None,
) -> ExecutionResult:
    """Execute `definition` on `input` with every Task state answered by `scripts` (see the module docstring).

    `context` is the mock Context Object, e.g. `{"Execution": {"Name": "run-1"}}` for `$$.Execution.Name`
    (`Execution.Input` and `Execution.StartTime` are always set by the interpreter). `validation_options` is passed to the
    interpreter's asl-validator (`{"checkArn": False}`, `{"checkPaths": False}` or `{"noValidate": True}`).
    """
    request: dict[str, Any] = {
        "definition": definition,
        "input": input,
        "scripts": scripts,
    }
    if context is not None:
        request["context"] = context
    if wait_time_overrides:
        request["waitTimeOverrides"] = wait_time_overrides
    if validation_options:
        request["validationOptions"] = validation_options
    report = _run_node_script(
        RUNNER,
        request,
        timeout=timeout,
        timeout_message=f"the state machine did not finish within {timeout} s (a Wait or Task timeout really sleeping?)",
    )
    result = ExecutionResult(
        status=report["status"],
        output=report["output"],
        error=report["error"],
        cause=report["cause"],
        calls=report["calls"],
        states_entered=report["states_entered"],
    )
    if report.get("harness_error"):
        raise MissingScriptError(report["harness_error"], result)
    return result


# --------------------------------------------------------------------------------------------- CloudFormation -> ASL dict

_SUB_VARIABLE = re.compile(r"\$\{(!?)([^}]*)\}")


class _Resolver:
    def __init__(self, overrides: dict[str, str]) -> None:
        self.overrides = overrides

    def ref(self, name: str) -> str:
        if name in self.overrides:
            return self.overrides[name]
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        return f"arn:aws:ref:{name}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        key = f"{logical_id}.{attribute}"
        return self.overrides.get(key, key)

    def sub(self, template: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(1):  # ${!Literal} stays ${Literal}
                return "${" + match.group(2) + "}"
            name = match.group(2).strip()
            if name in variables:
                return self.to_string(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return self.ref(name)

        return _SUB_VARIABLE.sub(replace, template)

    def resolve(self, value: Any) -> Any:
        """Evaluate intrinsics in `value` (strings, lists, dicts) to plain values."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else (arg[0], self.to_string(arg[1]))
                return self.get_att(logical_id, attribute)
            if key == "Fn::Join":
                separator, parts = arg
                return self.to_string(separator).join(self.to_string(p) for p in self.resolve(parts))
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                template, variables = arg
                return self.sub(template, {k: self.resolve(v) for k, v in variables.items()})
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = arg
                return self.to_string(text).split(separator)
            if key == "Fn::ImportValue":
                return f"import:{self.to_string(arg)}"
            if key == "Fn::GetStackOutput":
                # A cross-stack reference (the orchestration stacks read the stateful stack's outputs).
                return f"{arg['StackName']}.{arg['OutputName']}"
            if key == "Fn::Base64":
                return self.to_string(arg)
            if key.startswith("Fn::") or key == "Condition":
                raise ValueError(f"definition_from_template: unsupported intrinsic {key}: {json.dumps(arg)[:200]}")
        return {k: self.resolve(v) for k, v in value.items()}

    def to_string(self, value: Any) -> str:
        resolved = self.resolve(value)
        if isinstance(resolved, str):
            return resolved
        if isinstance(resolved, (int, float)) and not isinstance(resolved, bool):
            return str(resolved)
        raise ValueError(f"definition_from_template: expected a string, got {json.dumps(resolved)[:200]}")


def _json_escaped(text: str) -> str:
    """`text` as it must appear inside a JSON string literal (placeholders are spliced into string literals)."""
    return json.dumps(text)[1:-1]


class _EscapingResolver(_Resolver):
    """Substitutes intrinsics inside a JSON document's text: every value is JSON-escaped."""

    def ref(self, name: str) -> str:
        return _json_escaped(super().ref(name))

    def get_att(self, logical_id: str, attribute: str) -> str:
        return _json_escaped(super().get_att(logical_id, attribute))


def _find_state_machine(template: dict[str, Any], logical_id_hint: str | None) -> tuple[str, dict[str, Any]]:
    machines = {
        logical_id: resource.get("Properties", {})
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::StepFunctions::StateMachine"
    }
    # Without a hint: the Standard state machine (a form's Express failure reporter sits beside it).
    candidates = {k: v for k, v in machines.items() if v.get("StateMachineType", "STANDARD") == "STANDARD"}
    if logical_id_hint is not None:
        candidates = {k: v for k, v in machines.items() if logical_id_hint.lower() in k.lower()}
        exact = {k: v for k, v in machines.items() if k == logical_id_hint}
        candidates = exact or candidates
    if len(candidates) != 1:
        hint = f" matching {logical_id_hint!r}" if logical_id_hint is not None else ""
        raise ValueError(
            f"definition_from_template: expected exactly one AWS::StepFunctions::StateMachine{hint}, "
            f"found {sorted(candidates)} (all state machines: {sorted(machines)}); pass logical_id_hint"
        )
    return next(iter(candidates.items()))


def definition_from_template(
    template: dict[str, Any],
    logical_id_hint: str | None = None,
    *,
    overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ASL definition of the template's state machine, with every intrinsic replaced by a deterministic placeholder.

    `{"Ref": "X"}` -> "arn:aws:ref:X"; `{"Fn::GetAtt": ["X", "Arn"]}` -> "X.Arn"; `${AWS::Region}` -> "eu-west-1",
    `${AWS::AccountId}` -> "123456789012", `${AWS::Partition}` -> "aws", `${AWS::URLSuffix}` -> "amazonaws.com" (also as
    Refs). `overrides` replaces chosen placeholders: keys are logical ids or pseudo parameters (for Ref) or "X.Attr".
    Handles `DefinitionString` as a string, `Fn::Join` or `Fn::Sub`, `Definition` as an object, and `DefinitionSubstitutions`.
    `logical_id_hint` picks one state machine by (case-insensitive substring of its) logical id when there are several.
    """
    logical_id, props = _find_state_machine(template, logical_id_hint)
    overrides = dict(overrides or {})
    substitutions = {key: _Resolver(overrides).to_string(value) for key, value in (props.get("DefinitionSubstitutions") or {}).items()}

    def substitute(text: str, escape: bool) -> str:
        for key, value in substitutions.items():
            text = text.replace("${" + key + "}", _json_escaped(value) if escape else value)
        return text

    if "DefinitionString" in props:
        text = _EscapingResolver(overrides).to_string(props["DefinitionString"])
        text = substitute(text, escape=True)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            start = max(exc.pos - 80, 0)
            raise ValueError(
                f"definition_from_template: {logical_id}'s DefinitionString is not valid JSON after substitution "
                f"({exc.msg} at {exc.pos}): ...{text[start : exc.pos + 80]}..."
            ) from exc
    if "Definition" in props:

        def walk(value: Any) -> Any:
            if isinstance(value, str):
                return substitute(value, escape=False)
            if isinstance(value, list):
                return [walk(v) for v in value]
            if isinstance(value, dict):
                return {k: walk(v) for k, v in value.items()}
            return value

        return walk(_Resolver(overrides).resolve(copy.deepcopy(props["Definition"])))
    raise ValueError(f"definition_from_template: {logical_id} has neither DefinitionString nor Definition (DefinitionS3Location?)")


# ---------------------------------------------------------------------------------------------------- a burst of uploads

BURST_RUNNER = ROOT / "tests" / "asl" / "burst_scenario.mjs"


@dataclass
class BurstResult:
    """What a burst of executions against one shared scripted world did (see tests/asl/burst_scenario.mjs). Time is
    virtual there, so equal requests give equal results, `trace` (a digest of every call with its simulated time and
    input, and of every outcome) included."""

    crawls_started: int
    crawler_running_errors: int
    loads_committed: int
    load_conflicts: int
    simulated_seconds: int
    executions: list[dict[str, Any]]
    crawls: list[list[int]] = field(default_factory=list)
    calls: int = 0
    timers_fired: int = 0
    trace: str = ""
    max_concurrent_merges: int = 0
    """The most MERGEs that ran on the table at one moment (1 when the loads ran one at a time)."""
    lock_refusals: int = 0
    """Take Load Lock calls refused because another execution held the lock (each one a retry)."""

    @property
    def succeeded(self) -> int:
        return sum(1 for execution in self.executions if execution["status"] == "SUCCEEDED")

    @property
    def failed(self) -> int:
        return len(self.executions) - self.succeeded

    @property
    def longest_lock_wait(self) -> float:
        """Seconds the execution that waited longest for the load lock waited (0 without a lock)."""
        return max((e["lock_wait_seconds"] or 0 for e in self.executions), default=0)

    @property
    def last_loaded_after(self) -> float:
        """Seconds from its upload to its end of the upload loaded last: how long the last upload waited."""
        return max((e["ended_at"] - e["arrived_at"] for e in self.executions if e["status"] == "SUCCEEDED"), default=0)

    def failures_by_step(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for execution in self.executions:
            if execution["status"] != "SUCCEEDED":
                step = f"{execution['failed_step']} ({execution['error']})"
                out[step] = out.get(step, 0) + 1
        return out


def upload_event(bucket: str, key: str, time: str) -> dict[str, Any]:
    """An EventBridge `Object Created` event of the landing bucket, as the upload rule delivers it."""
    return {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": time,
        "region": "eu-west-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "bucket": {"name": bucket},
            # A versioned landing bucket's event: the ETag and version id S3 sends (derived from the key here).
            "object": {
                "key": key,
                "size": 1234,
                "etag": hashlib.md5(key.encode()).hexdigest(),
                "version-id": f"v-{hashlib.sha1(key.encode()).hexdigest()[:16]}",
            },
            "reason": "PutObject",
        },
    }


def run_burst(
    definition: dict[str, Any],
    *,
    uploads: int = 20,
    spread_seconds: float = 10,
    seed: int = 1,
    world: dict[str, Any] | None = None,
    handler_busy_ms: float = 0,
    max_simulated_seconds: float = 86400,
    timeout: float = 120,
) -> BurstResult:
    """`uploads` objects arrive within `spread_seconds` (simulated) and each starts its execution as it arrives; all
    run against one scripted crawler, clean job and Athena table (the world's defaults: a crawl takes 90-150 s, the
    clean job 60-120 s, a MERGE 15-30 s and fails with ICEBERG_COMMIT_ERROR when another MERGE committed after it
    began). Time is virtual: the result is a function of the arguments alone (`seed` draws the durations and the
    retries' jitter), whatever the machine's speed or load; `handler_busy_ms` burns that much real CPU time in every
    call to show it. `timeout` bounds the real time of the subprocess."""
    epoch_ms = 1795597200000  # 2026-11-25T09:00:00Z, the world's epoch
    executions = []
    for i in range(uploads):
        at = spread_seconds * i / max(uploads - 1, 1)
        time = _iso_seconds(epoch_ms + at * 1000)
        executions.append(
            {
                "name": f"upload-{i + 1:02d}",
                "input": upload_event("landing-bucket", f"incoming/step_functions/store-{i + 1:02d}.csv", time),
                "start_at": at,
            }
        )
    request = {
        "definition": definition,
        "executions": executions,
        "seed": seed,
        "world": world or {},
        "handler_busy_ms": handler_busy_ms,
        "max_simulated_seconds": max_simulated_seconds,
    }
    report = _run_node_script(
        BURST_RUNNER, request, timeout=timeout, timeout_message=f"the burst did not finish within {timeout} s of real time"
    )
    return BurstResult(
        crawls_started=report["crawls_started"],
        crawler_running_errors=report["crawler_running_errors"],
        loads_committed=report["loads_committed"],
        load_conflicts=report["load_conflicts"],
        simulated_seconds=report["simulated_seconds"],
        executions=report["executions"],
        crawls=report["crawls"],
        calls=report["calls"],
        timers_fired=report["timers_fired"],
        trace=report["trace"],
        max_concurrent_merges=report["max_concurrent_merges"],
        lock_refusals=report["lock_refusals"],
    )


def _iso_seconds(epoch_ms: float) -> str:
    """EventBridge's `time`: UTC, whole seconds (the event's time is the second the object arrived in)."""
    return datetime.datetime.fromtimestamp(int(epoch_ms // 1000), tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the upload ledger's states ----------------------------------------------------------------------------------------
LEDGER_UPDATE_STATES = (
    "Record Start",
    "Record Clean Step",
    "Record Load Step",
    "Record Loaded",
    "Record Quarantined",
    "Record Skipped Empty",
    "Record Failure",
)
FIELD_UPDATE_STATES = ("Record Crawl Decision",)
"""Ledger writes that set a field of the running record (the crawl decision) without a transition of state or step."""
CHECK_SCHEMA = "Check Schema"
"""The schema check's invoke (forms/step_functions_schema.py): crawl, or skip straight to the clean job."""
TAKE_LOCK, RELEASE_LOCK = "Take Load Lock", "Release Load Lock"
"""The load lock's states (forms/step_functions_lock.py): the lock function's invoke, and the conditional delete of the
pipeline (after the load) and of the failure reporter. With parallel loads each target's carry its name:
"Take Load Lock (redshift)", "Release Load Lock (athena)", "Release Load Lock After Failure (redshift)"."""
TARGET_UPDATE_STATE = re.compile(r"^Record (Athena|Redshift) (Loaded|Failed)$")
"""Parallel loads: one target's outcome (`load_<target>`) on the running record (forms/step_functions_ledger.py)."""


def task_states(definition: dict[str, Any]) -> list[str]:
    """The names of every Task state of `definition`, Parallel branches and Map processors included."""
    found: list[str] = []
    for name, state in definition.get("States", {}).items():
        if state.get("Type") == "Task":
            found.append(name)
        for branch in state.get("Branches", []):
            found.extend(task_states(branch))
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                found.extend(task_states(state[key]))
    return found


def _is_lock_state(state: str, base: str) -> bool:
    return state == base or (state.startswith(f"{base} (") or state.startswith(f"{base} After Failure (")) and state.endswith(")")


def lock_taken(
    owner: str = "", *, taken_at: str = "2026-11-25T09:20:00Z", lease_expires_at: str = "2026-11-25T10:50:00Z"
) -> dict[str, Any]:
    """The lock function's answer through Step Functions' Lambda integration: the lock was taken."""
    payload = {"owner": owner, "taken_at": taken_at, "lease_expires_at": lease_expires_at}
    return {"result": {"Payload": payload, "StatusCode": 200, "ExecutedVersion": "$LATEST"}}


def schema_checked(crawl: bool = True, reason: str = "no raw table yet") -> dict[str, Any]:
    """The schema check function's answer through Step Functions' Lambda integration."""
    return {"result": {"Payload": {"crawl": crawl, "reason": reason}, "StatusCode": 200, "ExecutedVersion": "$LATEST"}}


LOCK_HELD = {"error": "LoadLockHeld", "cause": '{"errorMessage": "the load lock is held by another-run", "errorType": "LoadLockHeld"}'}
"""What the Lambda integration raises while another execution holds the lock (the function's errorType)."""


def ledger_answers(*, rows_quarantined: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Scripts that accept every ledger write of the pipeline's state machine (the failure is the reporter's write) (UpdateItem answers with no attributes, as with ReturnValues NONE) and
    give the clean job's count of quarantined rows to Read Clean Counts; Check Schema answers "crawl" (no raw table
    yet), so the run walks through the crawl. What DynamoDB's conditions decide is tested by replaying the writes on
    moto (`replay_ledger_writes`)."""
    answers: dict[str, list[dict[str, Any]]] = {
        name: [{"result": {}}] for name in (*LEDGER_UPDATE_STATES, *FIELD_UPDATE_STATES) if name != "Record Failure"
    }
    answers[CHECK_SCHEMA] = [schema_checked()]
    answers[TAKE_LOCK] = [lock_taken()]
    answers[RELEASE_LOCK] = [{"result": {}}]
    answers["Read Clean Counts"] = [{"result": {"Item": {"rows_quarantined": {"N": str(rows_quarantined)}}}}]
    return answers


def replay_ledger_writes(
    result: ExecutionResult,
    dynamodb: Any,
    table_name: str,
    *,
    clean_counts: dict[str, Any] | None = None,
    now: datetime.datetime | None = None,
) -> list[tuple[str, str]]:
    """Send the execution's ledger writes, as the interpreter resolved them, to a DynamoDB (moto) table in their order,
    with the clean job's own counts write (`clean_counts`, as glue_clean_job.record_counts_in_ledger sends it) where
    the clean job ran; returns the record's (state, step) after each UpdateItem. A write DynamoDB refuses raises.

    The load lock's writes are replayed too: Take Load Lock by the lock function's own code (runtime/load_lock) at
    `now` (default: the real time), which raises LoadLockHeld when the lock is another execution's; Release Load Lock
    as the conditional DeleteItem it is, whose refusal the state machines catch (so it is not raised here)."""
    from pipeline_constructs.runtime.load_lock.load_lock import take
    from pipeline_constructs.runtime.upload_ledger import Upload, UploadLedger, from_item

    seen: list[tuple[str, str]] = []
    for call in result.calls:
        request = dict(call["input"]) if isinstance(call["input"], dict) else None
        if _is_lock_state(call["state"], TAKE_LOCK) and request is not None:
            take(dynamodb, {**request["Payload"], "TableName": table_name}, now or datetime.datetime.now(datetime.UTC))
            continue
        if _is_lock_state(call["state"], RELEASE_LOCK) and request is not None:
            try:
                dynamodb.delete_item(**{**request, "TableName": table_name})
            except dynamodb.exceptions.ConditionalCheckFailedException:
                pass
            continue
        if call["state"] == "Run Clean Job" and clean_counts is not None and seen:
            job = call["input"]["Arguments"]
            (uri,) = json.loads(job["--source_uris"])
            (version,) = json.loads(job["--source_versions"])
            bucket, _, key = uri[len("s3://") :].partition("/")
            ledger = UploadLedger(dynamodb, table_name, form=job["--pipeline_form"])
            ledger.counts(Upload(bucket, key, version_id=version), run_id=job["--run_id"], counts=clean_counts)
            continue
        if request is not None and (call["state"] in FIELD_UPDATE_STATES or TARGET_UPDATE_STATE.match(call["state"])):
            dynamodb.update_item(**{**request, "TableName": table_name})
            continue
        if request is None or call["state"] not in LEDGER_UPDATE_STATES:
            continue
        request["TableName"] = table_name
        answer = dynamodb.update_item(**request, ReturnValues="ALL_NEW")
        record = from_item(answer["Attributes"])
        seen.append((record["state"], record["step"]))
    return seen


# --- the failure reporter (forms/step_functions_failures.py) ------------------------------------------------------------
def status_change_event(result: ExecutionResult, execution_input: Any, *, name: str, execution_arn: str) -> dict[str, Any]:
    """The `Step Functions Execution Status Change` event EventBridge sends for an execution that ended as `result`."""
    state_machine_arn = execution_arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
    return {
        "version": "0",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": "2026-11-25T09:30:00Z",
        "region": "eu-west-1",
        "resources": [execution_arn],
        "detail": {
            "executionArn": execution_arn,
            "stateMachineArn": state_machine_arn,
            "name": name,
            "status": result.status,
            "startDate": 1795597964000,
            "stopDate": 1795599000000,
            "input": json.dumps(execution_input),
            "inputDetails": {"included": True},
            "output": None,
            "outputDetails": None,
            "error": result.error,
            "cause": result.cause,
            "redriveCount": 0,
        },
    }


def history_answer(result: ExecutionResult) -> dict[str, Any]:
    """GetExecutionHistory's answer (ReverseOrder, IncludeExecutionData false) for the execution `result` ran: its
    states' entered events, newest first, after the execution's own end event."""
    ended = {"FAILED": "ExecutionFailed", "TIMED_OUT": "ExecutionTimedOut", "ABORTED": "ExecutionAborted"}.get(
        result.status, "ExecutionSucceeded"
    )
    events: list[dict[str, Any]] = [{"Id": len(result.states_entered) + 1, "Type": ended}]
    for number, name in reversed(list(enumerate(result.states_entered, start=1))):
        events.append({"Id": number, "Type": "StateEntered", "StateEnteredEventDetails": {"Name": name}})
    return {"result": {"Events": events}}


def run_failure_report(
    reporter: dict[str, Any],
    result: ExecutionResult,
    execution_input: Any,
    *,
    name: str,
    execution_arn: str,
    answers: dict[str, list[dict[str, Any]]] | None = None,
) -> ExecutionResult:
    """The failure reporter run on the status-change event of the execution `result` ran (its history read from that
    run); its ledger accepts the failure and the topic accepts the message unless `answers` says otherwise."""
    event = status_change_event(result, execution_input, name=name, execution_arn=execution_arn)
    releases = [name for name in task_states(reporter) if _is_lock_state(name, RELEASE_LOCK)] or [RELEASE_LOCK]
    scripts = {
        "Read Execution History": [history_answer(result)],
        **{name: [{"result": {}}] for name in releases},
        "Record Failure": [{"result": {}}],
        "Read Upload State": [{"result": {"Item": {"state": {"S": "running"}}}}],
        "Notify Failure": [{"result": {"MessageId": "5b6c9a8e-1f1e-5d4e-9a3b-1a2b3c4d5e6f"}}],
        **(answers or {}),
    }
    context = {"Execution": {"Name": "report-1", "Id": "arn:aws:states:eu-west-1:123456789012:express:reporter:report-1:1"}}
    return run_state_machine(reporter, event, scripts, context=context)


def published_message(report: ExecutionResult) -> tuple[dict[str, Any], str]:
    """The one message a successful report published: (message, subject)."""
    assert report.status == "SUCCEEDED", report
    [published] = report.inputs_to("Notify Failure")
    return published["Message"], published["Subject"]


# ------------------------------------------------------------------------------------------- a burst of uploads, scheduled

SCHEDULED_BURST_RUNNER = ROOT / "tests" / "asl" / "scheduled_burst.mjs"


@dataclass
class ScheduledBurstResult:
    """What the firings of a scheduled definition did with a burst of uploads (tests/asl/scheduled_burst.mjs)."""

    executions: list[dict[str, Any]]
    """One per firing: name, started_at, ended_at, status, claimed (uploads taken), ending (the last state entered)."""
    uploads: list[dict[str, Any]]
    """One per upload: name, arrived_at, loaded_at, run, state."""
    crawls_started: int
    merges_started: int
    loads_committed: int
    load_conflicts: int
    max_concurrent_merges: int
    clean_runs: list[int]
    """Uploads per clean job run, in order."""
    simulated_seconds: int
    trace: str

    @property
    def loaded(self) -> int:
        return sum(1 for upload in self.uploads if upload["state"] == "loaded")

    @property
    def failed_runs(self) -> int:
        return sum(1 for execution in self.executions if execution["status"] != "SUCCEEDED")

    @property
    def runs_with_uploads(self) -> list[dict[str, Any]]:
        return [execution for execution in self.executions if execution["claimed"] > 0]

    @property
    def last_loaded_after(self) -> float:
        """Seconds from its upload to its load (Record Loaded) of the upload that waited longest."""
        return max((u["loaded_at"] - u["arrived_at"] for u in self.uploads if u["loaded_at"] is not None), default=0)


def run_scheduled_burst(
    definition: dict[str, Any],
    *,
    interval_seconds: float,
    uploads: int = 20,
    spread_seconds: float = 10,
    seed: int = 1,
    first_firing: float | None = None,
    world: dict[str, Any] | None = None,
    max_simulated_seconds: float = 86400,
    timeout: float = 120,
) -> ScheduledBurstResult:
    """`uploads` objects arrive within `spread_seconds` at run_burst's instants; the schedule fires every
    `interval_seconds` from `first_firing` (default: 1 ms before the last upload lands, the worst case for it) until
    every upload is loaded, each firing one execution of the scheduled `definition` on the virtual clock."""
    arrivals = [spread_seconds * i / max(uploads - 1, 1) for i in range(uploads)]
    request = {
        "definition": definition,
        "uploads": [{"name": f"store-{i + 1:03d}.csv", "at": at} for i, at in enumerate(arrivals)],
        "first_firing": arrivals[-1] - 0.001 if first_firing is None else first_firing,
        "interval": interval_seconds,
        "seed": seed,
        "world": world or {},
        "max_simulated_seconds": max_simulated_seconds,
    }
    report = _run_node_script(
        SCHEDULED_BURST_RUNNER,
        request,
        timeout=timeout,
        timeout_message=f"the scheduled burst did not finish within {timeout} s of real time",
    )
    return ScheduledBurstResult(
        executions=report["executions"],
        uploads=report["uploads"],
        crawls_started=report["crawls_started"],
        merges_started=report["merges_started"],
        loads_committed=report["loads_committed"],
        load_conflicts=report["load_conflicts"],
        max_concurrent_merges=report["max_concurrent_merges"],
        clean_runs=report["clean_runs"],
        simulated_seconds=report["simulated_seconds"],
        trace=report["trace"],
    )
