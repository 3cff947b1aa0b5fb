"""A separate CDK app that uses the construct library the way another team would: installed from its wheel.

It imports only the public API of `pipeline_constructs` (plus `pipeline_constructs.acknowledgements` for the cdk-nag
wiring its docstring asks every app to do), brings its own dataset contract (`web_orders.yaml` beside this file:
another name, columns, a two-column natural key and its own date partition), uses its own construct ids and names,
and runs the cdk-nag AwsSolutions and Serverless packs, so an open finding fails synth here too.

`tests/test_consumer.py` runs it with a fresh virtualenv's python. The CDK feature flags come in through
`CDK_CONTEXT_JSON`, as the CDK CLI passes them; the output directory through `CDK_OUTDIR`. The first line of
stdout is a JSON object naming the file `pipeline_constructs` was imported from, so the test can check that it is
the installed wheel and not the repository's source.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, ServerlessChecks

import pipeline_constructs
from pipeline_constructs import (
    AthenaTarget,
    CleanJob,
    DatasetContract,
    MwaaPipeline,
    PipelineAlerting,
    PipelineCatalog,
    PipelineNetwork,
    PipelineStorage,
    StepFunctionsPipeline,
    mwaa_interface_endpoints,
)
from pipeline_constructs.acknowledgements import apply_acknowledgements

CONTRACT_PATH = Path(__file__).resolve().parent / "web_orders.yaml"
STACK_NAME = "WebOrdersPipeline"
DATABASE_NAME = "orders_db"


class WebOrdersStack(cdk.Stack):
    """Everything in one stack: storage, catalog, clean job, Athena load, alerting, the Step Functions and MWAA forms."""

    def __init__(self, scope: cdk.App, construct_id: str, *, contract: DatasetContract, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.storage = PipelineStorage(self, "OrdersStorage", landing_prefix="uploads/")
        self.alerting = PipelineAlerting(
            self,
            "OrdersAlerts",
            emails=["orders-oncall@example.com"],
            topic_display_name="Web orders pipeline",
        )
        self.catalog = PipelineCatalog(self, "OrdersCatalog", storage=self.storage, database_name=DATABASE_NAME)
        self.clean_job = CleanJob(
            self,
            "OrdersCleanJob",
            storage=self.storage,
            catalog=self.catalog,
            contract=contract,
            worker_count=3,
            metrics_namespace="WebShop/Orders",
        )
        self.target = AthenaTarget(
            self,
            "OrdersAthena",
            storage=self.storage,
            catalog=self.catalog,
            clean_job=self.clean_job,
        )
        self.pipeline = StepFunctionsPipeline(
            self,
            "OrdersStepFunctions",
            storage=self.storage,
            catalog=self.catalog,
            clean_job=self.clean_job,
            target=self.target,
            alerting=self.alerting,
        )
        # The Airflow form on its own prefix, in a VPC without NAT (hence the interface endpoints).
        self.network = PipelineNetwork(self, "OrdersNetwork", interface_endpoints=mwaa_interface_endpoints("athena"))
        self.airflow = MwaaPipeline(
            self,
            "OrdersAirflow",
            storage=self.storage,
            catalog=self.catalog,
            clean_job=self.clean_job,
            target=self.target,
            alerting=self.alerting,
            vpc=self.network.vpc,
            subnets=self.network.private_subnets,
            environment_name="web-orders",
            environment_class="mw1.micro",
            max_workers=1,
        )


def main() -> None:
    print(json.dumps({"pipeline_constructs": pipeline_constructs.__file__}), flush=True)
    app = cdk.App()
    contract = DatasetContract.from_file(CONTRACT_PATH)
    WebOrdersStack(
        app,
        STACK_NAME,
        contract=contract,
        env=cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region="us-east-2"),
    )
    apply_acknowledgements(app)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))
    app.synth()


if __name__ == "__main__":
    main()
