"""The README's four Mermaid diagrams are drawn from the session's synth (scripts/form_diagrams.py) and match it; each
diagram shows what its artifact holds: every state, Catch and Retry of the state machines, every Glue trigger
predicate and failure rule, every task of the DAG as Airflow parses it and of the MWAA Serverless YAML."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from scripts.form_diagrams import FORMS, README, SOURCES, diagrams_from_assembly, readme_block, retry_lines, short_error
from tests.asl_runner import definition_from_template
from tests.cdk_app import SynthesizedApp

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def diagrams(synthesized: SynthesizedApp) -> dict[str, str]:
    return diagrams_from_assembly(synthesized.assembly, synthesized.stages)


def all_states(states: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from all_states(branch["States"])


@pytest.mark.parametrize("form", FORMS)
def test_the_readme_diagram_is_the_one_the_synth_draws(diagrams: dict[str, str], form: str) -> None:
    shown = readme_block(README.read_text(encoding="utf-8"), form)
    assert shown is not None, f"README.md lacks the {form} diagram markers"
    assert shown == diagrams[form], f"README.md's {form} diagram differs from the synth: run `make diagrams`"


@pytest.mark.parametrize("hint", [None, "FailureReporter"])
def test_every_state_catch_and_retry_of_the_state_machines_is_drawn(
    diagrams: dict[str, str], templates: dict[tuple[str, str], dict[str, Any]], hint: str | None
) -> None:
    definition = definition_from_template(templates[SOURCES["step_functions"]], hint)
    drawn = diagrams["step_functions"].split("```mermaid\n")[1 if hint is None else 2].split("\n```")[0]
    nodes = dict(re.findall(r'^\s+(?:subgraph )?(s\d+)(?:\{|\[\[|\[/|\(\[|\[| \[)"([^"<]+)', drawn, flags=re.M))
    states = list(all_states(definition["States"]))
    assert sorted(n.removesuffix(" (Parallel)") for n in nodes.values()) == sorted(name for name, _ in states)
    by_name = {n.removesuffix(" (Parallel)"): node for node, n in nodes.items()}
    for name, state in states:
        for retrier in retry_lines(state.get("Retry", [])):
            assert re.search(rf"^\s+(subgraph )?{by_name[name]}\W.*{re.escape(retrier)}", drawn, flags=re.M), (name, retrier)
        for catcher in state.get("Catch", []):
            errors = ", ".join(short_error(e) for e in catcher["ErrorEquals"])
            edge = f'{by_name[name]} -.->|"catch {errors}"| {by_name[catcher["Next"]]}'
            assert edge in drawn, edge
        for target in [state.get("Next"), state.get("Default"), *[rule["Next"] for rule in state.get("Choices", [])]]:
            if target:
                assert re.search(rf"{by_name[name]} -->(\|[^|]*\|)? {by_name[target]}\b", drawn), (name, target)


def test_every_glue_trigger_predicate_and_failure_rule_is_drawn(
    diagrams: dict[str, str], templates: dict[tuple[str, str], dict[str, Any]]
) -> None:
    template = templates[SOURCES["glue_workflow"]]
    drawn = diagrams["glue_workflow"]
    triggers = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Glue::Trigger"]
    conditions = [c for t in triggers for c in t.get("Predicate", {}).get("Conditions", [])]
    assert len(conditions) == len(re.findall(r': (SUCCEEDED|FAILED|STOPPED|TIMEOUT)"\|', drawn)) >= 2
    failure_rules = [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Events::Rule"
        and r["Properties"].get("Targets")
        and {"FAILED", "Failed"} & set(r["Properties"]["EventPattern"].get("detail", {}).get("state", []))
    ]
    assert len(failure_rules) == drawn.count("-.->|") >= 3
    start = next(t for t in triggers if t["Type"] in ("EVENT", "SCHEDULED", "ON_DEMAND"))
    if start["Type"] == "EVENT":
        assert f"batch of {start['EventBatchingCondition']['BatchSize']}" in drawn
    else:
        assert f"schedule {start['Schedule']}" in drawn if start["Type"] == "SCHEDULED" else "started on demand" in drawn


def test_the_airflow_diagrams_hold_every_task_with_its_retries_and_the_load_limit(diagrams: dict[str, str]) -> None:
    """The MWAA graph comes from Airflow's DagBag over the synthesized DAG folder, the serverless one from its YAML:
    the same steps with the same retries in both (they render one description, runtime/pipeline_plan.py; MWAA
    Serverless caps a timeout at an hour); staging's MWAA loads both targets, so its one load is a task per target."""

    def tasks(diagram: str) -> list[tuple[str, str]]:
        return re.findall(r'^\s+t\d+\["(\w+)<br/>(\d+ retries, timeout [^<"]+)', diagram, flags=re.M)

    mwaa, serverless = tasks(diagrams["mwaa"]), tasks(diagrams["mwaa_serverless"])
    assert [name for name, _ in mwaa][:2] == ["crawl", "clean"] and "load" in dict(serverless)
    retries = {name: label.split(",")[0] for name, label in serverless}
    split = [(name, retries[name]) for name, _ in serverless if name != "load"]
    split += [(f"load_{target}", retries["load"]) for target in ("athena", "redshift")]
    assert [(name, label.split(",")[0]) for name, label in mwaa] == split
    assert diagrams["mwaa"].count("-.->|failed| failed") == len(mwaa)
