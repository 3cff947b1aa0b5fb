"""A separate CDK app that uses the construct library the way another team would: installed from its wheel.

It imports only the public API of `pipeline_constructs` (plus `pipeline_constructs.acknowledgements` for the cdk-nag
wiring its docstring asks every app to do), brings its own dataset contracts (`web_orders.yaml` and
`fleet_trips.yaml` beside this file: other names, columns, natural keys and date partitions), uses its own
construct ids and names, and runs the cdk-nag AwsSolutions and Serverless packs, so an open finding fails synth here
too. Two layouts side by side:

- `WebOrdersPipeline`: everything in one account- and region-bound stack, Athena, the Step Functions form.
- `FleetTripsData` + `FleetTripsWarehouse`: environment-agnostic stacks; the data stack adopts an existing landing
  bucket and an imported KMS key; the warehouse stack holds the network, a Redshift target and the Step Functions
  form, all using the data stack's storage and clean job through cross-stack references.

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
from aws_cdk import aws_kms as kms, aws_s3 as s3
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
    RedshiftTarget,
    StepFunctionsPipeline,
    mwaa_interface_endpoints,
)
from pipeline_constructs.acknowledgements import AcknowledgementsPlugin

CONTRACT_PATH = Path(__file__).resolve().parent / "web_orders.yaml"
FLEET_CONTRACT_PATH = Path(__file__).resolve().parent / "fleet_trips.yaml"
SHARED_KEY_ARN = "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
EXISTING_BUCKET = "fleet-telematics-drop"
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


class FleetTripsDataStack(cdk.Stack):
    """The fleet team's data: an existing landing bucket and an imported key, catalog, clean job, alerting."""

    def __init__(self, scope: cdk.App, construct_id: str, *, contract: DatasetContract, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        key = kms.Key.from_key_arn(self, "SharedKey", SHARED_KEY_ARN)
        bucket = s3.Bucket.from_bucket_name(self, "TelematicsDrop", EXISTING_BUCKET)
        self.storage = PipelineStorage(self, "Storage", encryption_key=key, landing_bucket=bucket, landing_prefix="trips/")
        self.alerting = PipelineAlerting(self, "Alerts", emails=["fleet-oncall@example.com"])
        self.catalog = PipelineCatalog(self, "Catalog", storage=self.storage, database_name="fleet_db")
        self.clean_job = CleanJob(self, "Clean", storage=self.storage, catalog=self.catalog, contract=contract)


class FleetTripsWarehouseStack(cdk.Stack):
    """The warehouse, in a stack of its own: network, Redshift Serverless and the Step Functions form."""

    def __init__(self, scope: cdk.App, construct_id: str, *, data: FleetTripsDataStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.network = PipelineNetwork(
            self, "Network", availability_zones=["eu-central-1a", "eu-central-1b", "eu-central-1c"], min_availability_zones=3
        )
        self.target = RedshiftTarget(self, "Warehouse", storage=data.storage, clean_job=data.clean_job, vpc=self.network.vpc)
        self.pipeline = StepFunctionsPipeline(
            self,
            "Trips",
            storage=data.storage,
            catalog=data.catalog,
            clean_job=data.clean_job,
            target=self.target,
            alerting=data.alerting,
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
    fleet = FleetTripsDataStack(app, "FleetTripsData", contract=DatasetContract.from_file(FLEET_CONTRACT_PATH))
    FleetTripsWarehouseStack(app, "FleetTripsWarehouse", data=fleet)
    cdk.Validations.of(app).add_plugins(AcknowledgementsPlugin(), AwsSolutionsChecks(app), ServerlessChecks(app))
    app.synth()


if __name__ == "__main__":
    main()
