"""Mermaid diagrams of the four forms, drawn from what the app synthesizes, so the README's pictures cannot drift.

- Step Functions: the state machine definitions of `dev-StepFunctions` (the pipeline and its failure reporter): every
  state, every Next, Choice rule, Catch (dashed), Retry and timeout, each Parallel state as a box around its branch.
- Glue Workflow: the Glue triggers of `dev-GlueWorkflow` with their predicates, the crawler and jobs they start (with
  their timeouts and retries), and the EventBridge rules that turn a failed step into an alert (dashed).
- MWAA: the DAG of `staging-Mwaa` as Airflow 3 parses it (scripts/dag_graph.py in the Airflow virtualenv, over the DAG
  folder the stack deploys: the DAG, its modules and its synthesized configuration).
- MWAA Serverless: the workflow definition YAML that `dev-MwaaServerless` deploys.

    python scripts/form_diagrams.py            print the four diagrams
    python scripts/form_diagrams.py --write    write them into README.md between their markers
    python scripts/form_diagrams.py --check    exit 1, with a diff, when README.md differs
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

README = ROOT / "README.md"
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"
FORMS = ("step_functions", "glue_workflow", "mwaa", "mwaa_serverless")
# (environment, stack) whose artifact each diagram is drawn from: the app's own environments, as they synthesize.
SOURCES = {
    "step_functions": ("dev", "StepFunctions"),
    "glue_workflow": ("dev", "GlueWorkflow"),
    "mwaa": ("staging", "Mwaa"),
    "mwaa_serverless": ("dev", "MwaaServerless"),
}
_MARKER = re.compile(r"<<marker:0xbaba:(\d+)>>")


def begin_marker(form: str) -> str:
    return f"<!-- diagram:{form}:begin -->"


def end_marker(form: str) -> str:
    return f"<!-- diagram:{form}:end -->"


# --- text --------------------------------------------------------------------------------------------------------
def label(*lines: str) -> str:
    """A quoted Mermaid label: lines joined by <br/>, quotes and angle brackets as entities."""
    text = "<br/>".join(line.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") for line in lines if line)
    return f'"{text}"'


def duration(seconds: int | None) -> str:
    if not seconds:
        return ""
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def short_error(name: str) -> str:
    """'DynamoDB.ThrottlingException' -> 'DynamoDB.Throttling'; 'States.Timeout' stays."""
    return re.sub(r"Exception$", "", name)


# --- Step Functions ----------------------------------------------------------------------------------------------
_COMPARISONS = {
    "StringEquals": "==",
    "NumericEquals": "==",
    "BooleanEquals": "==",
    "TimestampEquals": "==",
    "NumericGreaterThan": ">",
    "NumericGreaterThanEquals": ">=",
    "NumericLessThan": "<",
    "NumericLessThanEquals": "<=",
    "StringGreaterThan": ">",
    "StringLessThan": "<",
    "TimestampGreaterThan": ">",
    "TimestampLessThan": "<",
    "StringMatches": "matches",
}


def choice_condition(rule: Mapping[str, Any]) -> str:
    """A Choice rule in one line: `$.a == 'x'`, `not(...)`, `a and b`, `$.x is present`."""
    if "And" in rule:
        return " and ".join(f"({choice_condition(r)})" for r in rule["And"])
    if "Or" in rule:
        return " or ".join(f"({choice_condition(r)})" for r in rule["Or"])
    if "Not" in rule:
        return f"not ({choice_condition(rule['Not'])})"
    variable = str(rule.get("Variable", "?"))
    for key, value in rule.items():
        if key in ("Variable", "Next"):
            continue
        if key == "IsPresent":
            return f"{variable} {'is present' if value else 'is absent'}"
        if key.startswith("Is"):
            return f"{variable} {'is' if value else 'is not'} {key[2:].lower()}"
        base = key[:-4] if key.endswith("Path") else key
        if base in _COMPARISONS:
            shown = value if key.endswith("Path") else json.dumps(value)
            return f"{variable} {_COMPARISONS[base]} {shown}"
    return json.dumps({k: v for k, v in rule.items() if k != "Next"})


def retry_lines(retriers: Iterable[Mapping[str, Any]]) -> list[str]:
    lines = []
    for retrier in retriers:
        errors = [short_error(e) for e in retrier.get("ErrorEquals", [])]
        attempts = retrier.get("MaxAttempts", 3)
        shown = ", ".join(errors) if len(errors) <= 2 else f"{errors[0]} and {len(errors) - 1} more"
        lines.append(f"retry {attempts}x on {shown}")
    return lines


def task_resource(state: Mapping[str, Any]) -> str:
    """'arn:aws:states:::glue:startJobRun.sync' -> 'glue:startJobRun.sync'; an ARN of a function or machine stays short."""
    resource = str(state.get("Resource", ""))
    match = re.match(r"arn:[^:]+:states:::(?:aws-sdk:)?(.+)$", resource)
    return match.group(1) if match else resource.rsplit(":", 1)[-1]


class _StateMachineDrawing:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ids: dict[tuple[str, str], str] = {}
        self.fails: list[str] = []
        self.count = 0

    def node_id(self, scope: str, name: str) -> str:
        key = (scope, name)
        if key not in self.ids:
            self.count += 1
            self.ids[key] = f"s{self.count}"
        return self.ids[key]

    def draw(self, states: Mapping[str, Any], scope: str, indent: str) -> None:
        for name, state in states.items():
            kind = state["Type"]
            node = self.node_id(scope, name)
            if kind == "Parallel":
                extra = [
                    duration(state.get("TimeoutSeconds")) and f"timeout {duration(state.get('TimeoutSeconds'))}",
                    *retry_lines(state.get("Retry", [])),
                ]
                self.lines.append(f"{indent}subgraph {node} [{label(name + ' (Parallel)', *extra)}]")
                self.lines.append(f"{indent}  direction TB")
                for number, branch in enumerate(state["Branches"]):
                    branch_scope = f"{scope}/{name}/{number}"
                    self.draw(branch["States"], branch_scope, indent + "  ")
                self.lines.append(f"{indent}end")
                continue
            text: list[str] = [name]
            if kind == "Task":
                text.append(task_resource(state))
                if state.get("TimeoutSeconds"):
                    text.append(f"timeout {duration(state['TimeoutSeconds'])}")
                text.extend(retry_lines(state.get("Retry", [])))
            elif kind == "Wait":
                text.append(f"wait {state.get('Seconds', state.get('SecondsPath', ''))}")
            shape = {
                "Choice": ("{", "}"),
                "Succeed": ("([", "])"),
                "Fail": ("([", "])"),
                "Wait": ("[/", "/]"),
                "Pass": ("[[", "]]"),
            }.get(kind, ("[", "]"))
            self.lines.append(f"{indent}{node}{shape[0]}{label(*text)}{shape[1]}")
            if kind == "Fail":
                self.fails.append(node)

    def edges(self, states: Mapping[str, Any], scope: str, parent: str | None = None) -> None:
        for name, state in states.items():
            node = self.node_id(scope, name)
            if state["Type"] == "Parallel":
                for number, branch in enumerate(state["Branches"]):
                    branch_scope = f"{scope}/{name}/{number}"
                    self.edges(branch["States"], branch_scope)
            if "Next" in state:
                self.lines.append(f"  {node} --> {self.node_id(scope, state['Next'])}")
            for rule in state.get("Choices", []):
                self.lines.append(f"  {node} -->|{label(choice_condition(rule))}| {self.node_id(scope, rule['Next'])}")
            if "Default" in state:
                self.lines.append(f"  {node} -->|otherwise| {self.node_id(scope, state['Default'])}")
            for catcher in state.get("Catch", []):
                errors = ", ".join(short_error(e) for e in catcher.get("ErrorEquals", []))
                self.lines.append(f"  {node} -.->|{label('catch ' + errors)}| {self.node_id(scope, catcher['Next'])}")


def state_machine_mermaid(definition: Mapping[str, Any], *, start_label: str) -> str:
    """One flowchart of a state machine definition: `start_label` names what starts an execution."""
    drawing = _StateMachineDrawing()
    drawing.lines.append("flowchart TD")
    drawing.lines.append(f"  start(({label(start_label)}))")
    drawing.draw(definition["States"], "", "  ")
    drawing.lines.append(f"  start --> {drawing.node_id('', definition['StartAt'])}")
    drawing.edges(definition["States"], "")
    if drawing.fails:
        drawing.lines.append("  classDef fail fill:#fdd,stroke:#b00")
        drawing.lines.append(f"  class {','.join(drawing.fails)} fail")
    return "\n".join(drawing.lines)


# --- Glue Workflow -----------------------------------------------------------------------------------------------
def _ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def glue_workflow_mermaid(template: Mapping[str, Any]) -> str:
    """The trigger graph: start trigger -> crawler -> conditional triggers -> jobs; failure rules -> one alert."""
    resources = template["Resources"]
    lines = ["flowchart TD"]
    steps: dict[str, str] = {}
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Glue::Crawler":
            steps[logical_id] = f"c{len(steps) + 1}"
            lines.append(f"  {steps[logical_id]}[{label('crawler ' + _glue_name(logical_id))}]")
        elif resource["Type"] == "AWS::Glue::Job":
            steps[logical_id] = f"j{len(steps) + 1}"
            command = properties.get("Command", {}).get("Name", "")
            concurrency = properties.get("ExecutionProperty", {}).get("MaxConcurrentRuns")
            text = [
                f"job {_glue_name(logical_id)} ({command})",
                f"timeout {properties.get('Timeout')} min, {properties.get('MaxRetries', 0)} retries",
                f"at most {concurrency} run(s) at a time" if concurrency else "",
            ]
            lines.append(f"  {steps[logical_id]}[{label(*text)}]")
    workflow: dict[str, Any] = next((r.get("Properties", {}) for r in resources.values() if r["Type"] == "AWS::Glue::Workflow"), {})
    if workflow.get("MaxConcurrentRuns"):
        lines.insert(1, f"  %% one workflow run at a time: MaxConcurrentRuns {workflow['MaxConcurrentRuns']}")
    for number, (logical_id, resource) in enumerate(sorted((k, r) for k, r in resources.items() if r["Type"] == "AWS::Glue::Trigger")):
        properties = resource["Properties"]
        targets = [steps[_ref(action.get("JobName") or action.get("CrawlerName")) or ""] for action in properties.get("Actions", [])]
        kind = properties["Type"]
        if kind in ("EVENT", "SCHEDULED", "ON_DEMAND"):
            batching = properties.get("EventBatchingCondition", {})
            start = {
                "EVENT": f"upload events (EventBridge), batch of {batching.get('BatchSize', 1)} or {batching.get('BatchWindow', 900)} s",
                "SCHEDULED": f"schedule {properties.get('Schedule')}",
                "ON_DEMAND": "started on demand",
            }[kind]
            lines.append(f"  t{number}(({label(_glue_name(logical_id), start)}))")
            lines.extend(f"  t{number} --> {target}" for target in targets)
            continue
        predicate = properties.get("Predicate", {})
        conditions = predicate.get("Conditions", [])
        for condition in conditions:
            source = steps[_ref(condition.get("JobName") or condition.get("CrawlerName")) or ""]
            state = condition.get("State") or condition.get("CrawlState")
            joiner = f" ({predicate.get('Logical', 'AND')} of {len(conditions)})" if len(conditions) > 1 else ""
            for target in targets:
                lines.append(f"  {source} -->|{label(_glue_name(logical_id) + ': ' + str(state) + joiner)}| {target}")
    alerts = []
    for _, resource in sorted(resources.items()):
        if resource["Type"] != "AWS::Events::Rule" or not resource["Properties"].get("Targets"):
            continue
        detail = resource["Properties"].get("EventPattern", {}).get("detail", {})
        watched = [_ref(v) for key in ("jobName", "crawlerName") for v in detail.get(key, [])]
        for source in (steps[w] for w in watched if w in steps):
            alerts.append(f"  {source} -.->|{label(', '.join(detail.get('state', [])))}| alert")
    if alerts:
        lines.append(f"  alert(({label('one alert message (EventBridge rule -> SNS)')}))")
        lines.extend(alerts)
        lines.append("  classDef fail fill:#fdd,stroke:#b00")
        lines.append("  class alert fail")
    return "\n".join(lines)


def _glue_name(logical_id: str) -> str:
    """'PipelineWorkflowCrawled21F3C6CA' -> 'Crawled': the construct id CDK put before its hash."""
    return re.sub(r"^Pipeline(Workflow)?", "", re.sub(r"[0-9A-F]{8}$", "", logical_id)) or logical_id


# --- Airflow task graphs (MWAA's parsed DAG, MWAA Serverless's YAML) ----------------------------------------------
def task_graph_mermaid(tasks: Sequence[Mapping[str, Any]], *, start_label: str, failure_label: str | None) -> str:
    """Tasks with retries, timeouts and load concurrency; upstream edges labelled with a non-default trigger rule."""
    lines = ["flowchart TD", f"  start(({label(start_label)}))"]
    ids = {task["id"]: f"t{number}" for number, task in enumerate(tasks, 1)}
    for task in tasks:
        text = [
            str(task["id"]),
            f"{task.get('retries', 0)} retries"
            + (f", timeout {duration(task.get('timeout_seconds'))}" if task.get("timeout_seconds") else ""),
        ]
        if task.get("max_active_tis_per_dag"):
            text.append(f"at most {task['max_active_tis_per_dag']} running across runs")
        lines.append(f"  {ids[task['id']]}[{label(*text)}]")
    for task in tasks:
        if not task.get("upstream"):
            lines.append(f"  start --> {ids[task['id']]}")
        rule = task.get("trigger_rule") or "all_success"
        for upstream in task.get("upstream", []):
            arrow = "-->" if rule == "all_success" else f"-.->|{label(rule)}|"
            lines.append(f"  {ids[upstream]} {arrow} {ids[task['id']]}")
    if failure_label:
        lines.append(f"  failed(({label(failure_label)}))")
        lines.extend(f"  {ids[task['id']]} -.->|failed| failed" for task in tasks if task.get("on_failure_callback", True))
        lines.append("  classDef fail fill:#fdd,stroke:#b00")
        lines.append("  class failed fail")
    return "\n".join(lines)


def serverless_tasks(definition_yaml: str) -> tuple[str, list[dict[str, Any]]]:
    """(workflow name, its tasks) from the MWAA Serverless YAML, in the graph's shape."""
    import yaml

    ((name, workflow),) = yaml.safe_load(definition_yaml).items()
    tasks = []
    for task_id, task in workflow["tasks"].items():
        timeout = task.get("execution_timeout") or {}
        tasks.append(
            {
                "id": task_id,
                "upstream": list(task.get("dependencies", [])),
                "retries": task.get("retries", 0),
                "timeout_seconds": timeout.get("seconds"),
                "trigger_rule": task.get("trigger_rule", "all_success"),
                "max_active_tis_per_dag": task.get("max_active_tis_per_dag"),
                "on_failure_callback": False,
            }
        )
    return name, tasks


# --- the synthesized artifacts -----------------------------------------------------------------------------------
def stack_assets(assembly_dir: Path, stack_artifact: str) -> list[Path]:
    """The folders of a stack's file assets (its `.assets.json`), in their order there."""
    manifest = json.loads((assembly_dir / f"{stack_artifact}.assets.json").read_text(encoding="utf-8"))
    folders = [(assembly_dir / entry["source"]["path"]).resolve() for entry in manifest.get("files", {}).values()]
    return [folder for folder in folders if folder.is_dir()]


def mwaa_dag_folder(assets: list[Path], target: Path) -> Path:
    """The DAG folder the stack deploys, rebuilt in `target`: the DAG's modules and its configuration, with each
    deploy-time value (a CDK marker) replaced by a placeholder string so the JSON parses as on MWAA."""
    found = False
    for folder in assets:
        names = {p.name for p in folder.iterdir()}
        if not names & {"pipeline_dag.py", "pipeline_dag_config.json", "pipeline_plan.py", "upload_ledger.py"}:
            continue
        found = found or "pipeline_dag.py" in names
        for source in folder.iterdir():
            if source.suffix == ".json":
                (target / source.name).write_text(
                    _MARKER.sub(r'"deploy-time-value-\1"', source.read_text(encoding="utf-8")), encoding="utf-8"
                )
            elif source.suffix == ".py":
                shutil.copyfile(source, target / source.name)
    if not found:
        raise FileNotFoundError("no asset of the MWAA stack holds pipeline_dag.py")
    return target


def parsed_dag_tasks(dag_folder: Path) -> dict[str, list[dict[str, Any]]]:
    """{dag id: tasks} as Airflow parses the folder (the Airflow virtualenv runs scripts/dag_graph.py)."""
    if not AIRFLOW_PYTHON.exists():
        raise FileNotFoundError(f"{AIRFLOW_PYTHON.relative_to(ROOT)} is missing: run `make airflow-venv` first")
    out = dag_folder.parent / "dag_graph.json"
    result = subprocess.run(
        [str(AIRFLOW_PYTHON), str(ROOT / "scripts" / "dag_graph.py"), str(dag_folder), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"Airflow could not parse the synthesized DAG folder:\n{result.stderr[-3000:]}")
    graph: dict[str, list[dict[str, Any]]] = json.loads(out.read_text(encoding="utf-8"))
    return graph


def diagrams_from_assembly(assembly: Any, stages: list[Any]) -> dict[str, str]:
    """The four diagrams from a synthesized app (the CDK cloud assembly and its stages)."""
    from tests.asl_runner import definition_from_template

    out: dict[str, str] = {}
    nested = {stage.stage_name: assembly.get_nested_assembly(stage.artifact_id) for stage in stages}

    def artifact(env: str, stack: str) -> Any:
        return next(a for a in nested[env].stacks if a.stack_name == f"{env}-{stack}")

    env, stack = SOURCES["step_functions"]
    template = artifact(env, stack).template
    pipeline = state_machine_mermaid(definition_from_template(template), start_label="S3 Object Created event (EventBridge rule)")
    reporter = state_machine_mermaid(
        definition_from_template(template, "FailureReporter"),
        start_label="execution FAILED, TIMED_OUT or ABORTED (status-change event)",
    )
    out["step_functions"] = (
        f"```mermaid\n{pipeline}\n```\n\nThe failure reporter (Express), started by the pipeline's status-change events:\n\n```mermaid\n{reporter}\n```"
    )

    env, stack = SOURCES["glue_workflow"]
    out["glue_workflow"] = f"```mermaid\n{glue_workflow_mermaid(artifact(env, stack).template)}\n```"

    env, stack = SOURCES["mwaa"]
    mwaa = artifact(env, stack)
    with tempfile.TemporaryDirectory(prefix="dag-folder-") as work:
        folder = Path(work) / "dags"
        folder.mkdir()
        graph = parsed_dag_tasks(mwaa_dag_folder(stack_assets(Path(nested[env].directory), mwaa.id), folder))
    ((dag_id, tasks),) = graph.items()
    out["mwaa"] = (
        "```mermaid\n"
        + task_graph_mermaid(
            tasks,
            start_label=f"DAG run of {dag_id} (trigger Lambda, one per upload)",
            failure_label="on_failure_callback: one alert message",
        )
        + "\n```"
    )

    env, stack = SOURCES["mwaa_serverless"]
    serverless = artifact(env, stack)
    yaml_files = [p for folder in stack_assets(Path(nested[env].directory), serverless.id) for p in folder.rglob("*.yaml")]
    if len(yaml_files) != 1:
        raise FileNotFoundError(f"expected one workflow YAML among the MWAA Serverless stack's assets, found {yaml_files}")
    name, tasks = serverless_tasks(yaml_files[0].read_text(encoding="utf-8"))
    out["mwaa_serverless"] = (
        "```mermaid\n"
        + task_graph_mermaid(
            tasks,
            start_label=f"workflow run of {name} (trigger Lambda, one per upload)",
            failure_label="run failed / timed out event: one alert message (Lambda)",
        )
        + "\n```"
    )
    return out


def synthesize_diagrams() -> dict[str, str]:
    import aws_cdk as cdk

    from app import build_app
    from tests.cdk_app import pinned_context

    with tempfile.TemporaryDirectory(prefix="form-diagrams-") as outdir:
        # The pictures need the artifacts, not the policy checks: `make synth` and the tests run those.
        app = cdk.App(context=pinned_context(), outdir=outdir)
        stages = build_app(app, nag=False, control_tower=False)
        return diagrams_from_assembly(app.synth(), stages)


# --- README ------------------------------------------------------------------------------------------------------
def readme_block(readme: str, form: str) -> str | None:
    """What README.md holds between the form's markers (None without them)."""
    begin, end = begin_marker(form), end_marker(form)
    if begin not in readme or end not in readme:
        return None
    return readme.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def with_diagrams(readme: str, diagrams: Mapping[str, str]) -> str:
    """README.md with each form's block replaced (KeyError-like ValueError when a form's markers are missing)."""
    for form, diagram in diagrams.items():
        begin, end = begin_marker(form), end_marker(form)
        if begin not in readme or end not in readme:
            raise ValueError(f"README.md has no {begin} ... {end} markers: add them where the {form} diagram belongs")
        before, rest = readme.split(begin, 1)
        readme = f"{before}{begin}\n{diagram}\n{end}{rest.split(end, 1)[1]}"
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the diagrams into README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when README.md's diagrams differ from the synth")
    args = parser.parse_args(argv)
    diagrams = synthesize_diagrams()
    if not (args.write or args.check):
        for form, diagram in diagrams.items():
            print(f"## {form}\n\n{diagram}\n")
        return 0
    readme = README.read_text(encoding="utf-8")
    updated = with_diagrams(readme, diagrams)
    if args.write:
        README.write_text(updated, encoding="utf-8")
        print(f"wrote {len(diagrams)} diagrams into README.md")
    elif args.check:
        if updated != readme:
            sys.stdout.writelines(difflib.unified_diff(readme.splitlines(True), updated.splitlines(True), "README.md", "synthesized"))
            print("README.md's diagrams differ from the synth: run `make diagrams`")
            return 1
        print("README.md's diagrams match the synth")
    return 0


if __name__ == "__main__":
    sys.exit(main())
