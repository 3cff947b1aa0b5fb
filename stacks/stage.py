"""One deployment environment: a cdk.Stage with the stateful stack and one stack per enabled form."""

from __future__ import annotations

from aws_cdk import Environment, Stack, Stage, Tags

from constructs import Construct
from pipeline_constructs.contract import DatasetContract

from .config import EnvironmentConfig
from .dashboard_stack import DashboardStack
from .glue_workflow_stack import GlueWorkflowStack
from .mwaa_serverless_stack import MwaaServerlessStack
from .mwaa_stack import MwaaStack
from .network_stack import NetworkStack, needs_network
from .stateful_stack import StatefulStack
from .step_functions_stack import StepFunctionsStack


class PipelineStage(Stage):
    """The stacks of one environment, named `<env>-Stateful`, `<env>-StepFunctions`, ..., `<env>-Dashboard`."""

    def __init__(self, scope: Construct, config: EnvironmentConfig, *, contract: DatasetContract) -> None:
        super().__init__(scope, config.name, env=Environment(account=config.account, region=config.region))
        self.config = config
        self.network = (
            NetworkStack(self, "Network", config=config, description=f"Retail pipeline ({config.name}): private network")
            if needs_network(config)
            else None
        )
        self.stateful = StatefulStack(
            self,
            "Stateful",
            config=config,
            contract=contract,
            network=self.network.network if self.network is not None else None,
            description=f"Retail pipeline ({config.name}): data and state",
        )
        self.orchestration: dict[str, Stack] = {}
        if "step_functions" in config.forms:
            self.orchestration["step_functions"] = StepFunctionsStack(
                self,
                "StepFunctions",
                config=config,
                stateful=self.stateful,
                description=f"Retail pipeline ({config.name}): Step Functions orchestration",
            )
        if "glue_workflow" in config.forms:
            self.orchestration["glue_workflow"] = GlueWorkflowStack(
                self,
                "GlueWorkflow",
                config=config,
                stateful=self.stateful,
                description=f"Retail pipeline ({config.name}): Glue Workflow orchestration",
            )
        if "mwaa" in config.forms:
            if self.network is None:
                raise ValueError(f"environments.{config.name}.forms: 'mwaa' needs the network stack")
            self.orchestration["mwaa"] = MwaaStack(
                self,
                "Mwaa",
                config=config,
                stateful=self.stateful,
                network=self.network.network,
                description=f"Retail pipeline ({config.name}): MWAA (Airflow) orchestration",
            )
        if "mwaa_serverless" in config.forms:
            self.orchestration["mwaa_serverless"] = MwaaServerlessStack(
                self,
                "MwaaServerless",
                config=config,
                stateful=self.stateful,
                description=f"Retail pipeline ({config.name}): MWAA Serverless orchestration",
            )
        unsupported = [form for form in config.forms if form not in self.orchestration]
        if unsupported:
            raise ValueError(
                f"environments.{config.name}.forms={list(config.forms)!r}: {unsupported[0]!r} is not built by this version yet"
            )
        # After the form stacks: every enabled form feeds it (pipeline-ops reads no output of it).
        self.dashboard = DashboardStack(
            self,
            "Dashboard",
            config=config,
            stateful=self.stateful,
            orchestration=self.orchestration,
            other_stacks=(self.network,) if self.network is not None else (),
            description=f"Retail pipeline ({config.name}): dashboard",
        )
        Tags.of(self).add("Project", "retail-pipeline")
        Tags.of(self).add("Environment", config.name)
