"""Shared fixtures: the whole app synthesized once (see tests/cdk_app.py for the helpers), and moto's fake AWS (tests/fake_aws.py).

tests.cdk_app is imported first: importing it puts the project's own Node.js first on PATH, before jsii starts.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.asl_runner import definition_from_template
from tests.cdk_app import SynthesizedApp, cdk_context, pinned_context, synth_app
from tests.fake_aws import fake_aws

__all__ = ["SynthesizedApp", "cdk_context", "fake_aws", "pinned_context", "synth_app"]


@pytest.fixture(scope="session")
def synthesized() -> SynthesizedApp:
    """The whole app (dev, staging, prod) synthesized once for the session."""
    return synth_app(pinned_context())


@pytest.fixture(scope="session")
def templates(synthesized: SynthesizedApp) -> dict[tuple[str, str], dict[str, Any]]:
    return synthesized.templates()


@pytest.fixture(scope="session")
def redshift_only_templates() -> dict[tuple[str, str], dict[str, Any]]:
    """Staging alone with one load target, Redshift (cdk.json gives it both), synthesized with cdk-nag: the templates of
    the one-target Redshift path, which no environment of the app deploys by itself."""
    context = pinned_context()
    staging = context["pipeline:environments"]["staging"]
    context["pipeline:environments"] = {"staging": {**staging, "load_target": "redshift"}}
    return synth_app(context).templates()


@pytest.fixture(scope="module")
def reporter(template: dict[str, Any]) -> dict[str, Any]:
    """The Step Functions form's failure reporter (its Express definition) beside the state machine of the module's
    `template` fixture (the StepFunctions stack that module executes)."""
    return definition_from_template(template, "FailureReporter")


@pytest.hookimpl(trylast=True)  # after -m/-k deselection
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the Airflow DAG suite (tests/test_airflow_dags.py) in the background when it was selected, so that it
    runs beside the other tests instead of after them."""
    if any(item.get_closest_marker("airflow") for item in items):
        from tests.test_airflow_dags import start_dag_suite

        start_dag_suite()
