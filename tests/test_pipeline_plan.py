"""The step description (runtime/pipeline_plan.py) read back out of each form's synthesized artifact: the same steps,
in the same order, with the same timeouts and ledger writes. The Airflow forms' DAG and YAML are checked as Airflow
parses them in tests/airflow/."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline_constructs.runtime.pipeline_plan import CLEAN, CRAWL, LOAD, ROWS_CURATED, describe_pipeline
from pipeline_constructs.targets.load_target import target_name
from tests.asl_runner import definition_from_template

PLAN = {step.name: step for step in describe_pipeline()}


def _states(definition: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def walk(machine: dict[str, Any]) -> None:
        for name, state in machine["States"].items():
            found[name] = state
            for branch in state.get("Branches", []):
                walk(branch)

    walk(definition)
    return found


def _cap_seconds(states: dict[str, Any], choice: str, wait: str) -> int:
    """A poll loop's allowance: the checks its Choice allows times its Wait."""
    [rule] = [r for r in states[choice]["Choices"] if "NumericGreaterThanEquals" in r]
    return int(rule["NumericGreaterThanEquals"]) * int(states[wait]["Seconds"])


@pytest.mark.parametrize(("stage", "target", "synth"), [("dev", "athena", "templates"), ("staging", "redshift", "redshift_only_templates")])
def test_the_state_machine_renders_the_steps_their_order_timeouts_and_ledger_writes(
    request: pytest.FixtureRequest, stage: str, target: str, synth: str
) -> None:
    """One target's state machine: dev's Athena, and staging's with Redshift as its one target (conftest's
    redshift_only_templates; the two-target Parallel state is tests/test_step_functions_parallel_load.py)."""
    definition = definition_from_template(request.getfixturevalue(synth)[(stage, "StepFunctions")])
    states = _states(definition)
    # Each step is announced to the ledger before it runs, in the description's order.
    recorded = [
        states[name]["Parameters"]["ExpressionAttributeValues"][":step"]["S"]
        for name in ("Record Start", "Record Clean Step", "Record Load Step")
    ]
    assert recorded == [CRAWL, CLEAN, LOAD] == [step.name for step in describe_pipeline()]
    # Crawl only when it can change something: the schema check and its decision's ledger write come first.
    assert states["Record Start"]["Next"] == "Check Schema" and states["Check Schema"]["Next"] == "Record Crawl Decision"
    crawl_needed = states[states["Record Crawl Decision"]["Next"]]
    assert crawl_needed["Choices"][0]["Next"] == "Crawl" and crawl_needed["Default"] == "Record Clean Step"
    assert states["Crawl"]["Branches"][0]["StartAt"] == "Get Crawler" and states["Crawl"]["Next"] == "Record Clean Step"
    assert states["Record Clean Step"]["Next"] == "Run Clean Job"
    # Timeouts: the crawl's and the load's poll caps, the clean job task's own timeout.
    assert _cap_seconds(states, "Poll Again?", "Wait For Crawler") == PLAN[CRAWL].timing.timeout_seconds
    assert states["Run Clean Job"]["Parameters"]["Timeout"] * 60 == PLAN[CLEAN].timing.timeout_seconds  # the job run's own timeout
    assert _cap_seconds(states, "Poll Load Again?", "Wait For Load") == PLAN[LOAD].timing.timeout_seconds
    # The load runs only when rows were curated: the check sits between clean and the load's ledger write.
    assert PLAN[LOAD].runs_when == ROWS_CURATED
    rows = states["Rows To Load?"]
    assert rows["Default"] == "Record Load Step" and rows["Choices"][0]["NumericEquals"] == 0
    assert json.dumps(states["Run Clean Job"]["Parameters"]["Arguments"]).count("--ledger_table") == 1


def test_the_glue_workflow_renders_the_steps_in_order_with_the_load_timeout(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    resources = templates[("dev", "GlueWorkflow")]["Resources"]
    triggers = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Glue::Trigger"]
    jobs = {logical_id: r["Properties"] for logical_id, r in resources.items() if r["Type"] == "AWS::Glue::Job"}
    crawler = next(logical_id for logical_id, r in resources.items() if r["Type"] == "AWS::Glue::Crawler")

    def started_by(predicate: dict[str, Any] | None) -> list[str]:
        return [
            a.get("CrawlerName", a.get("JobName", {})).get("Ref") for t in triggers if t.get("Predicate") == predicate for a in t["Actions"]
        ]

    # The one start trigger: on uploads (EVENT) it starts the crawl; on a schedule (dev: SCHEDULED) it starts the
    # pending check, a gate before the plan's steps, whose success starts the crawl.
    [start] = [t for t in triggers if t["Type"] in ("EVENT", "SCHEDULED")]
    first_started = [crawler]
    if start["Type"] == "SCHEDULED":
        [check] = [a["JobName"]["Ref"] for a in start["Actions"]]
        assert jobs[check]["Command"]["Name"] == "pythonshell"
        [start] = [t for t in triggers if (t.get("Predicate") or {}).get("Conditions", [{}])[0].get("JobName", {}).get("Ref") == check]
        del jobs[check]
        first_started = [check]
    assert [a["CrawlerName"]["Ref"] for a in start["Actions"]] == [crawler]  # crawl first
    after_crawl = [
        t for t in triggers if any(c.get("CrawlerName", {}).get("Ref") == crawler for c in (t.get("Predicate") or {}).get("Conditions", []))
    ]
    [clean_job] = [a["JobName"]["Ref"] for t in after_crawl for a in t["Actions"]]
    after_clean = [
        t for t in triggers if any(c.get("JobName", {}).get("Ref") == clean_job for c in (t.get("Predicate") or {}).get("Conditions", []))
    ]
    [load_job] = [a["JobName"]["Ref"] for t in after_clean for a in t["Actions"]]
    assert jobs[clean_job]["Command"]["Name"] == "glueetl" and jobs[load_job]["Command"]["Name"] == "pythonshell"
    assert jobs[load_job]["Timeout"] * 60 == PLAN[LOAD].timing.timeout_seconds
    assert jobs[clean_job]["Timeout"] * 60 <= PLAN[CLEAN].timing.timeout_seconds
    assert started_by(None) == first_started


def _airflow_pipelines(synthesized: Any) -> dict[str, Any]:
    stages = {stage.stage_name: stage for stage in synthesized.stages}
    return {
        "mwaa": stages["staging"].orchestration["mwaa"].pipeline,
        "mwaa_serverless": stages["dev"].orchestration["mwaa_serverless"].pipeline,
    }


@pytest.mark.parametrize("form", ["mwaa", "mwaa_serverless"])
def test_the_airflow_forms_render_the_steps_their_order_timeouts_and_the_zero_row_skip(synthesized: Any, form: str) -> None:
    """The MWAA DAG's deployed configuration (the DAG calls describe_steps on it) and the MWAA Serverless YAML as
    deployed. tests/airflow checks that Airflow parses both into these tasks."""
    import aws_cdk as cdk
    import yaml

    from pipeline_constructs.runtime.mwaa.pipeline_steps import ROWS_CHECK_TASK_ID, describe_steps, load_task_id
    from tests.test_mwaa_form import deployed

    pipeline = _airflow_pipelines(synthesized)[form]
    targets = [target_name(target) for target in pipeline.targets]
    # One load task per target when there are several (staging's MWAA loads both), each right after the rows check.
    loads = [load_task_id(target) for target in targets] if len(targets) > 1 else [LOAD]
    if form == "mwaa":
        config = deployed(cdk.Stack.of(pipeline).resolve(pipeline.dag_config))
        tasks = {
            s.task_id: (s.execution_timeout_seconds, s.retry_delay_seconds, s.max_retry_delay_seconds, s.upstream, s.operator)
            for s in describe_steps(config)
        }
        limits = {s.task_id: s.max_active_tis_per_dag for s in describe_steps(config)}
        cap = None
    else:
        (dag,) = yaml.safe_load(pipeline.definition_yaml).values()
        tasks = {
            name: (
                task["execution_timeout"]["seconds"],
                task["retry_delay"]["seconds"],
                task["max_retry_delay"]["seconds"],
                tuple(task.get("dependencies", ())),
                task["operator"],
            )
            for name, task in dag["tasks"].items()
        }
        limits = {name: task.get("max_active_tis_per_dag") for name, task in dag["tasks"].items()}
        cap = 3600  # MWAA Serverless runs a task at most an hour
    # The plan's steps, in its order; a step that runs only when rows were curated has the rows check before it.
    expected_order: list[str] = []
    for step in describe_pipeline():
        if step.runs_when == ROWS_CURATED:
            expected_order.append(ROWS_CHECK_TASK_ID)
        expected_order.extend(loads if step.name == LOAD else [step.name])
    assert list(tasks) == expected_order == ["crawl", "clean", ROWS_CHECK_TASK_ID, *loads]
    upstream = {name: (before,) for before, name in zip(expected_order, expected_order[1:], strict=False)}
    upstream.update({name: (ROWS_CHECK_TASK_ID,) for name in loads})
    for name, before in upstream.items():
        assert tasks[name][3] == before, (name, tasks[name][3])
    assert tasks[ROWS_CHECK_TASK_ID][4].endswith("S3KeySensor")
    task_steps = {name: PLAN[name] for name in PLAN if name != LOAD} | {name: PLAN[LOAD] for name in loads}
    for name, step in task_steps.items():
        timeout, delay, max_delay, _, _ = tasks[name]
        plan_timeout = step.timing.timeout_seconds if cap is None else min(step.timing.timeout_seconds, cap)
        assert (timeout, delay, max_delay) == (plan_timeout, step.timing.retry_delay_seconds, step.timing.max_retry_delay_seconds), name
    # A step the plan runs one at a time (the load) is limited to one running instance across runs; no other task is.
    assert {name for name, step in PLAN.items() if step.one_at_a_time} == {LOAD}
    assert limits == {name: 1 if name in task_steps and task_steps[name].one_at_a_time else None for name in expected_order}
