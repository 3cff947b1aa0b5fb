#!/usr/bin/env python3
"""The CDK app: one Stage per configured environment. The only place that reads context and environment variables."""

from __future__ import annotations

import os
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, ServerlessChecks

from pipeline_constructs.acknowledgements import AcknowledgementsPlugin
from pipeline_constructs.contract import DatasetContract
from pipeline_constructs.control_tower import ControlTowerValidator, load_exceptions
from stacks.config import parse_app_config, parse_bool_flag
from stacks.stage import PipelineStage
from stacks.stateful_stack import CONTRACT_PATH

CONTROL_TOWER_EXCEPTIONS = Path(__file__).resolve().parent / "control_tower_exceptions.yaml"


def build_app(app: cdk.App, *, nag: bool = True, control_tower: bool = True) -> list[PipelineStage]:
    """Validate the configuration, then add a stage per environment, (unless `nag` is false) the cdk-nag packs and
    (unless `control_tower` is false) the Control Tower proactive controls with their reviewed exceptions."""
    node = app.node
    config = parse_app_config(
        node.try_get_context("pipeline:environments"),
        only=node.try_get_context("pipeline:env"),
        default_account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        default_region=os.environ.get("CDK_DEFAULT_REGION"),
        allow_destroy=parse_bool_flag("pipeline:allowDestroy", node.try_get_context("pipeline:allowDestroy")),
    )
    contract = DatasetContract.from_file(CONTRACT_PATH)
    stages = [PipelineStage(app, env, contract=contract) for env in config.environments]
    if nag:
        # The acknowledgements plugin runs first, during synth, so findings are matched in their final form.
        cdk.Validations.of(app).add_plugins(AcknowledgementsPlugin(), AwsSolutionsChecks(app), ServerlessChecks(app))
    if control_tower:
        cdk.Validations.of(app).add_plugins(ControlTowerValidator(exceptions=load_exceptions(CONTROL_TOWER_EXCEPTIONS)))
    return stages


if __name__ == "__main__":
    cdk_app = cdk.App()
    build_app(cdk_app)
    cdk_app.synth()
