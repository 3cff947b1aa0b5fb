"""The Athena target: a locked-down workgroup, the table of per-run output, and the Iceberg table users query."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack, aws_athena as athena, aws_glue as glue, aws_iam as iam, aws_s3 as s3

from constructs import Construct, IConstruct

from ..acknowledgements import acknowledge_findings
from ..catalog import PipelineCatalog, review_object_prefix
from ..clean_job import CleanJob
from ..contract import DatasetContract
from ..storage import PipelineStorage, grant_objects
from ..validation import PipelinePropsError, check_name, check_positive, check_role, unique_default_name
from .load_sql import RUN_ID_PLACEHOLDER, athena_merge_sql, iceberg_type, table_columns

# What a query of the pipeline's tables reads from the Glue catalog with the caller's permissions.
CATALOG_READ_ACTIONS = (
    "glue:GetDatabase",
    "glue:GetDatabases",
    "glue:GetTable",
    "glue:GetTables",
    "glue:GetPartition",
    "glue:GetPartitions",
    "glue:BatchGetPartition",
)


class AthenaTarget(Construct):
    """Loads each run into an Iceberg table with an Athena MERGE on the contract's natural key.

    The clean job writes a run's rows under `run_id=<id>/`; the `<dataset>_runs` table reads them through partition
    projection (no crawler, no MSCK), and the load MERGEs that run into `<dataset>` (Iceberg), so the same run loaded
    twice, or the same transaction in two files, is one row. The workgroup enforces its settings: results encrypted
    with the pipeline key, a bytes-scanned cutoff per query, CloudWatch metrics on.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: PipelineStorage,
        catalog: PipelineCatalog,
        clean_job: CleanJob,
        bytes_scanned_cutoff: int = 10 * 1024**3,
        workgroup_name: str | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        results_retention: Duration | None = None,
    ) -> None:
        """
        :param storage: the curated bucket holds the table data; a results bucket is created beside it.
        :param catalog: the Glue database of the tables.
        :param clean_job: the job whose per-run output is loaded (its contract and curated prefix).
        :param bytes_scanned_cutoff: queries scanning more bytes are cancelled; at least 10 MB. Default: 10 GiB.
        :param workgroup_name: Default: '<dataset>-<8 hex of this construct's path>', unique per stack.
        :param removal_policy: for the results bucket and the workgroup. Default: RETAIN.
        :param results_retention: how long query results are kept. Default: 30 days.
        """
        super().__init__(scope, construct_id)
        check_positive("bytes_scanned_cutoff", bytes_scanned_cutoff, minimum=10 * 1024**2)
        contract: DatasetContract = clean_job.contract
        partition_name, partition_type = contract.partition_column()
        if partition_type != "date":
            raise PipelinePropsError(
                f"contract partition type={partition_type!r}: the Athena target projects date partitions only; "
                "derive a date partition column in the contract"
            )
        self.contract = contract
        self.database_name = catalog.database_name
        self.table_name = contract.name
        self.runs_table_name = f"{contract.name}_runs"
        self.workgroup_name = check_name(
            "workgroup_name",
            workgroup_name if workgroup_name is not None else unique_default_name(self, contract.name.replace("_", "-")),
            pattern=r"[a-zA-Z0-9._-]{1,128}",
        )
        stack = Stack.of(self)

        self.results_bucket = storage.new_bucket(
            self,
            "Results",
            log_prefix="athena-results/",
            removal_policy=removal_policy,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=results_retention if results_retention is not None else Duration.days(30),
                    noncurrent_version_expiration=Duration.days(1),
                )
            ],
        )
        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=self.workgroup_name,
            description=f"Loads and queries of {contract.name}; settings enforced on every query",
            state="ENABLED",
            recursive_delete_option=removal_policy == RemovalPolicy.DESTROY,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=bytes_scanned_cutoff,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(selected_engine_version="Athena engine version 3"),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{self.results_bucket.bucket_name}/results/",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=storage.key.key_arn
                    ),
                ),
            ),
        )
        self.workgroup.apply_removal_policy(removal_policy)
        self.workgroup_arn = stack.format_arn(service="athena", resource="workgroup", resource_name=self.workgroup_name)

        # One run's output, read through partition projection: run_id is injected by the query's WHERE clause.
        self.runs_table = glue.S3Table(
            self,
            "RunsTable",
            database=catalog.database,
            table_name=self.runs_table_name,
            description=f"Per-run curated output of {contract.name}, as the clean job wrote it",
            storage=glue.S3TableStorage.from_bucket(storage.curated_bucket),
            s3_prefix=clean_job.curated_prefix,
            data_format=glue.DataFormat.PARQUET,
            columns=[glue.Column(name=n, type=glue.Schema.custom(t)) for n, t in contract.output_columns()],
            partition_keys=[
                glue.Column(name="run_id", type=glue.Schema.STRING),
                glue.Column(name=partition_name, type=glue.Schema.DATE),
            ],
            partition_projection={
                "run_id": glue.PartitionProjectionConfiguration.injected(),
                partition_name: glue.PartitionProjectionConfiguration.date(format="yyyy-MM-dd", min="2000-01-01", max="NOW+1DAYS"),
            },
        )

        # The table users query: Iceberg, so that MERGE (and so idempotent loads) is possible.
        self.table_prefix = f"{contract.name}/table/"
        columns = table_columns(contract)
        self.table = glue.CfnTable(
            self,
            "Table",
            catalog_id=stack.account,
            database_name=catalog.database_name,
            open_table_format_input=glue.CfnTable.OpenTableFormatInputProperty(
                iceberg_input=glue.CfnTable.IcebergInputProperty(
                    metadata_operation="CREATE",
                    version="2",
                    iceberg_table_input=glue.CfnTable.IcebergTableInputProperty(
                        location=f"s3://{storage.curated_bucket.bucket_name}/{self.table_prefix}",
                        schema=glue.CfnTable.IcebergSchemaProperty(
                            type="struct",
                            fields=[
                                glue.CfnTable.IcebergStructFieldProperty(
                                    id=i + 1, name=name, type=iceberg_type(col_type), required=name in contract.natural_key
                                )
                                for i, (name, col_type) in enumerate(columns)
                            ],
                        ),
                        partition_spec=glue.CfnTable.IcebergPartitionSpecProperty(
                            fields=[
                                glue.CfnTable.IcebergPartitionFieldProperty(
                                    name=partition_name, source_id=len(columns), transform="identity", field_id=1000
                                )
                            ]
                        ),
                        properties={"write.format.default": "parquet", "write.parquet.compression-codec": "snappy"},
                    ),
                )
            ),
            table_input=glue.CfnTable.TableInputProperty(
                name=self.table_name,
                description=f"Curated {contract.name}, one row per {', '.join(contract.natural_key)}",
                table_type="EXTERNAL_TABLE",
            ),
        )
        self.table.node.add_dependency(catalog.database)
        self.load_policy = self._build_load_policy(storage, catalog)

    def merge_sql(self, run_id: str = RUN_ID_PLACEHOLDER) -> str:
        """The MERGE that loads one run; with the default placeholder, a States.Format template."""
        return athena_merge_sql(
            self.contract,
            database=self.database_name,
            table=self.table_name,
            runs_table=self.runs_table_name,
            run_id=run_id,
        )

    def _build_load_policy(self, storage: PipelineStorage, catalog: PipelineCatalog) -> iam.ManagedPolicy:
        """What running the MERGE needs: the workgroup, the catalog, both tables, the run output, the table data, the key.

        A managed policy in this (stateful) stack, so that roles of orchestration stacks attach it instead of
        growing cross-stack references to every bucket.
        """
        stack = Stack.of(self)
        policy = iam.ManagedPolicy(self, "LoadPolicy", description=f"Run the Athena load of {self.contract.name}")
        policy.add_statements(
            iam.PolicyStatement(
                actions=["athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults", "athena:StopQueryExecution"],
                resources=[self.workgroup_arn],
            ),
            # The query runs in the account's Glue catalog (AwsDataCatalog); Athena resolves it with the caller's rights.
            iam.PolicyStatement(
                actions=["athena:GetDataCatalog"],
                resources=[stack.format_arn(service="athena", resource="datacatalog", resource_name="AwsDataCatalog")],
            ),
            # What an Iceberg MERGE needs of the catalog: read the database and both tables, and update the Iceberg
            # table's metadata pointer on commit. Nothing that creates or deletes a database, table or partition.
            iam.PolicyStatement(
                actions=["glue:GetDatabase", "glue:GetTable", "glue:UpdateTable", "glue:GetPartitions"],
                resources=[
                    stack.format_arn(service="glue", resource="catalog"),
                    catalog.database.database_arn,
                    stack.format_arn(service="glue", resource="table", resource_name=f"{self.database_name}/{self.table_name}"),
                    stack.format_arn(service="glue", resource="table", resource_name=f"{self.database_name}/{self.runs_table_name}"),
                ],
            ),
        )
        storage.grant_read_curated(policy, f"{self.contract.name}/runs/")
        storage.grant_write_curated(policy, self.table_prefix)
        grant_objects(policy, self.results_bucket, storage.key, "results/", write=True)
        self.review_load_findings(policy)
        return policy

    def grant_load(self, grantee: iam.IGrantable) -> None:
        """Let `grantee` (a role) run the load: attaches the target's load policy."""
        check_role("grantee", grantee).add_managed_policy(self.load_policy)

    def review_load_findings(self, grantee_construct: IConstruct) -> None:
        """Accept the wildcard findings `grant_load` causes on `grantee_construct` (object prefixes; and the catalog's
        tables and functions, should a caller's own Athena task add them)."""
        review_object_prefix(grantee_construct, f"{self.contract.name}/runs/", "the MERGE reads the run's Parquet files", write=False)
        review_object_prefix(grantee_construct, self.table_prefix, "Iceberg writes data and metadata files it names", write=True)
        review_object_prefix(grantee_construct, "results/", "Athena names each query's result files", write=True)
        acknowledge_findings(
            grantee_construct,
            "AwsSolutions-IAM5",
            "Athena reads the catalog with the caller's permissions: tables and functions of this pipeline's database "
            f"({', '.join(CATALOG_READ_ACTIONS)}); nothing that creates or deletes.",
            matching=rf"Resource::arn:[^:]+:glue:.*:(table|userDefinedFunction)/{self.database_name}/\*",
            actions=CATALOG_READ_ACTIONS,
        )
