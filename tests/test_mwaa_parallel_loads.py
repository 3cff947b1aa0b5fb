"""Both Airflow forms given two load targets (the app's staging environment with `load_target: [athena, redshift]`,
and MWAA Serverless added there): one load task per target in the deployed configuration, and roles that may load
both. Synthesized with cdk-nag on, so every new grant is reviewed."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from cdk_app import pinned_context, synth_app
from test_mwaa_form import deployed

from pipeline_constructs.runtime.mwaa.pipeline_steps import describe_steps
from pipeline_constructs.runtime.mwaa_serverless.workflow_yaml import serverless_steps


@pytest.fixture(scope="module")
def staging_both() -> Any:
    context = pinned_context()
    staging = context["pipeline:environments"]["staging"]
    staging["load_target"] = ["athena", "redshift"]
    staging["forms"] = [*staging["forms"], "mwaa_serverless"]
    return next(stage for stage in synth_app(context).stages if stage.stage_name == "staging")


def test_the_dag_loads_each_target_in_its_own_task_after_the_rows_check(staging_both: Any) -> None:
    pipeline = staging_both.orchestration["mwaa"].pipeline
    config = deployed(cdk.Stack.of(pipeline).resolve(pipeline.dag_config))
    assert [load["target"] for load in config["load"]] == ["athena", "redshift"]
    steps = describe_steps(config)
    assert [step.task_id for step in steps] == ["crawl", "clean", "find_curated_rows", "load_athena", "load_redshift"]
    assert [(step.upstream, step.max_active_tis_per_dag, step.target) for step in steps[3:]] == [
        (("find_curated_rows",), 1, "athena"),
        (("find_curated_rows",), 1, "redshift"),
    ]
    assert steps[3].operator.endswith("AthenaOperator") and steps[4].operator.endswith("RedshiftDataOperator")


def test_the_workflow_guards_each_targets_load_with_the_loaded_targets_parameter(staging_both: Any) -> None:
    pipeline = staging_both.orchestration["mwaa_serverless"].pipeline
    config = deployed(cdk.Stack.of(pipeline).resolve(pipeline.workflow_config))
    steps = {step.task_id: step for step in serverless_steps(config)}
    assert steps["load_athena"].upstream == ("to_load_athena",) and steps["to_load_athena"].upstream == ("find_curated_rows",)
    assert "params.loaded_targets" in steps["to_load_redshift"].arguments["bucket_key"]
    assert "loaded_targets:" in pipeline.definition_yaml
