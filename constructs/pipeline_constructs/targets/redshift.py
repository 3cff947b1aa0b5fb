"""The Redshift Serverless target: an encrypted, private namespace + workgroup, and the COPY + MERGE of each run."""

from __future__ import annotations

import re

from aws_cdk import (
    RemovalPolicy,
    Token,
    aws_ec2 as ec2,
    aws_iam as iam,
    aws_kms as kms,
    aws_redshiftserverless as redshift,
    aws_stepfunctions as sfn,
)

from constructs import Construct, IConstruct

from ..acknowledgements import acknowledge_findings
from ..catalog import review_object_prefix
from ..clean_job import CleanJob
from ..contract import DatasetContract
from ..network import REDSHIFT_SERVERLESS_MIN_AZS
from ..storage import PipelineStorage, grant_objects
from ..validation import PipelinePropsError, check_name, check_role
from .load_sql import RUN_ID_PLACEHOLDER
from .redshift_sql import check_identifier, load_statements, partition_expression

REDSHIFT_PORT = 5439
AUDIT_LOGS = ("userlog", "connectionlog", "useractivitylog")


class RedshiftTarget(Construct):
    """Loads each run into a Redshift Serverless table: COPY into a staging table, MERGE on the natural key.

    - Namespace: encrypted with its own customer-managed KMS key; the admin password is generated and kept by
      Redshift in Secrets Manager under that key (never in the template); audit logs (connection, user, user
      activity) exported to CloudWatch Logs; a COPY role that can read (and decrypt) only the run output prefix.
    - Workgroup: not publicly accessible, enhanced VPC routing (COPY traffic stays on the VPC's S3 endpoint),
      `require_ssl`, in the given private subnets, with a security group that admits only itself.
    - Tables: the target table and the staging table are created by the load itself (`CREATE TABLE IF NOT EXISTS`,
      `CREATE TEMP TABLE`) from the contract, inside the load's transaction, so no custom resource (and no Lambda)
      is needed and the DDL always matches the SQL that uses it.
    - The load authenticates to the Data API with IAM (temporary credentials for a database user named after the
      caller's role), not with the admin secret: the state machine never holds superuser credentials.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: PipelineStorage,
        clean_job: CleanJob,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection | None = None,
        base_capacity: int = 8,
        max_capacity: int | None = None,
        namespace_name: str | None = None,
        workgroup_name: str | None = None,
        database_name: str = "retail",
        schema_name: str = "public",
        table_name: str | None = None,
        admin_username: str = "pipeline_admin",
        partition_expression_sql: str | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        """
        :param storage: the curated bucket the runs are copied from, and its key.
        :param clean_job: the job whose per-run output is loaded (its contract and curated prefix).
        :param vpc: the VPC of the workgroup.
        :param subnets: private subnets in at least 3 availability zones. Default: the VPC's private subnets.
        :param base_capacity: RPUs a query starts with: 4, or a multiple of 8 up to 1024. Default: 8.
        :param max_capacity: RPU ceiling of the workgroup (cost guard). Default: none (Redshift's own maximum).
        :param namespace_name: Default: '<dataset>-pipeline' with '-' for '_'.
        :param workgroup_name: Default: '<dataset>-pipeline' with '-' for '_'.
        :param database_name: the database of the target table. Default: 'retail'.
        :param schema_name: the schema of the target table (must exist; 'public' always does). Default: 'public'.
        :param table_name: the target table. Default: the contract's name.
        :param admin_username: the namespace's admin user (its password is managed by Redshift). Default: 'pipeline_admin'.
        :param partition_expression_sql: Redshift expression over the staging row `s` that recomputes the partition
            column (the Parquet files do not hold it). Default: translated from the contract (e.g. to_date(c)).
        :param removal_policy: for the namespace, the workgroup and the key. Default: RETAIN.
        """
        super().__init__(scope, construct_id)
        contract: DatasetContract = clean_job.contract
        if not (base_capacity == 4 or (base_capacity % 8 == 0 and 8 <= base_capacity <= 1024)):
            raise PipelinePropsError(f"base_capacity={base_capacity!r}: Redshift Serverless takes 4 or a multiple of 8 up to 1024 RPUs")
        if max_capacity is not None and max_capacity < base_capacity:
            raise PipelinePropsError(f"max_capacity={max_capacity!r}: must be at least base_capacity ({base_capacity})")
        default_name = f"{contract.name.replace('_', '-')}-pipeline"
        self.namespace_name = check_name(
            "namespace_name", namespace_name if namespace_name is not None else default_name, pattern=r"[a-z0-9-]{3,64}"
        )
        self.workgroup_name = check_name(
            "workgroup_name", workgroup_name if workgroup_name is not None else default_name, pattern=r"[a-z0-9-]{3,64}"
        )
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,126}", database_name):
            raise PipelinePropsError(f"database_name={database_name!r}: must be lower-case snake_case")
        self.database_name = database_name
        try:
            self.schema_name = check_identifier("schema_name", schema_name)
            self.table_name = check_identifier("table_name", table_name if table_name is not None else contract.name)
            self.partition_sql = partition_expression_sql if partition_expression_sql is not None else partition_expression(contract)
        except ValueError as error:
            raise PipelinePropsError(str(error)) from None
        self.staging_table_name = f"{self.table_name}_staging"
        self.contract = contract
        self.curated_bucket = storage.curated_bucket
        self.runs_prefix = clean_job.curated_prefix

        if subnets is None:
            isolated = vpc.isolated_subnets
            subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED if isolated else ec2.SubnetType.PRIVATE_WITH_EGRESS)
        selected = vpc.select_subnets(
            subnet_type=subnets.subnet_type,
            subnet_group_name=subnets.subnet_group_name,
            subnets=subnets.subnets,
            availability_zones=subnets.availability_zones,
        )
        zones = [az for az in selected.availability_zones if not Token.is_unresolved(az)]
        if len(selected.subnet_ids) < REDSHIFT_SERVERLESS_MIN_AZS or (zones and len(set(zones)) < REDSHIFT_SERVERLESS_MIN_AZS):
            raise PipelinePropsError(
                f"subnets={sorted(set(selected.availability_zones))!r}: Redshift Serverless with enhanced VPC routing needs "
                f"subnets in {REDSHIFT_SERVERLESS_MIN_AZS} availability zones"
            )
        if selected.has_public:
            raise PipelinePropsError("subnets: public subnets selected; the workgroup belongs in private subnets")

        # --- keys, roles ----------------------------------------------------------------------------------------
        self.key = kms.Key(
            self,
            "Key",
            description=f"Redshift Serverless namespace {self.namespace_name} and its admin secret",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.copy_role = iam.Role(
            self,
            "CopyRole",
            assumed_by=iam.CompositePrincipal(
                iam.ServicePrincipal("redshift.amazonaws.com"), iam.ServicePrincipal("redshift-serverless.amazonaws.com")
            ),
            description="Redshift COPY of the curated run output (read and decrypt only)",
        )
        grant_objects(self.copy_role, storage.curated_bucket, storage.key, self.runs_prefix, write=False)
        review_object_prefix(self.copy_role, self.runs_prefix, "COPY reads every Parquet file of a run")

        # --- namespace + workgroup ------------------------------------------------------------------------------
        self.namespace = redshift.CfnNamespace(
            self,
            "Namespace",
            namespace_name=self.namespace_name,
            db_name=database_name,
            admin_username=admin_username,
            manage_admin_password=True,
            admin_password_secret_kms_key_id=self.key.key_arn,
            kms_key_id=self.key.key_arn,
            log_exports=list(AUDIT_LOGS),
            iam_roles=[self.copy_role.role_arn],
            default_iam_role_arn=self.copy_role.role_arn,
        )
        self.namespace.apply_removal_policy(removal_policy)

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description=f"Redshift Serverless workgroup {self.workgroup_name}: no ingress but from itself",
            allow_all_outbound=False,
        )
        self.security_group.add_ingress_rule(self.security_group, ec2.Port.tcp(REDSHIFT_PORT), "Redshift from members of this group only")
        self.security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS endpoints in the VPC (S3 gateway); no internet route without NAT"
        )
        self.security_group.add_egress_rule(self.security_group, ec2.Port.tcp(REDSHIFT_PORT), "Redshift within the group")

        config = {"require_ssl": "true", "enable_user_activity_logging": "true"}
        self.workgroup = redshift.CfnWorkgroup(
            self,
            "Workgroup",
            workgroup_name=self.workgroup_name,
            namespace_name=self.namespace_name,
            base_capacity=base_capacity,
            max_capacity=max_capacity,
            publicly_accessible=False,
            enhanced_vpc_routing=True,
            port=REDSHIFT_PORT,
            subnet_ids=selected.subnet_ids,
            security_group_ids=[self.security_group.security_group_id],
            config_parameters=[
                redshift.CfnWorkgroup.ConfigParameterProperty(parameter_key=k, parameter_value=v) for k, v in config.items()
            ],
        )
        self.workgroup.node.add_dependency(self.namespace)
        self.workgroup.apply_removal_policy(removal_policy)
        self.workgroup_arn = self.workgroup.attr_workgroup_workgroup_arn
        self.namespace_arn = self.namespace.attr_namespace_namespace_arn
        self.load_policy = self._build_load_policy()

    def load_statements(self, run_id: str = RUN_ID_PLACEHOLDER, *, bucket: str | None = None, iam_role_arn: str | None = None) -> list[str]:
        """The statements of one load (one transaction): create tables, lock, COPY the run, MERGE.

        With the default placeholder run id, the COPY statement is a States.Format template; `bucket` and
        `iam_role_arn` default to this target's curated bucket and COPY role (tokens until deploy).
        """
        return load_statements(
            self.contract,
            schema=self.schema_name,
            table=self.table_name,
            bucket=bucket if bucket is not None else self.curated_bucket.bucket_name,
            iam_role_arn=iam_role_arn if iam_role_arn is not None else self.copy_role.role_arn,
            run_id=run_id,
            staging_table=self.staging_table_name,
            runs_prefix=self.runs_prefix,
            partition_sql=self.partition_sql,
        )

    def states_sqls(self, run_id_path: str = "$.upload.run_id") -> str:
        """The load's statements as a Step Functions JSONPath expression: States.Array of the statements, the COPY
        one a States.Format of the curated bucket, the run id at `run_id_path` and the COPY role."""
        template = self.load_statements(RUN_ID_PLACEHOLDER, bucket=RUN_ID_PLACEHOLDER, iam_role_arn=RUN_ID_PLACEHOLDER)
        parts = [
            sfn.JsonPath.format(sql, self.curated_bucket.bucket_name, sfn.JsonPath.string_at(run_id_path), self.copy_role.role_arn)
            if RUN_ID_PLACEHOLDER in sql
            else sql
            for sql in template
        ]
        return sfn.JsonPath.array(*parts)

    def _build_load_policy(self) -> iam.ManagedPolicy:
        """What running a load through the Data API with IAM authentication needs (a managed policy in this stack,
        attached by the orchestration stacks' roles).

        Temporary database credentials for this workgroup only (`redshift-serverless:GetCredentials`; the database
        user is `IAMR:<role name>`), submitting statements to this workgroup, and reading and cancelling the caller's
        own statements (the Data API has no resource-level permission for those: the owner condition limits them).
        """
        policy = iam.ManagedPolicy(self, "LoadPolicy", description=f"Run the Redshift load of {self.contract.name} through the Data API")
        policy.add_statements(
            iam.PolicyStatement(
                actions=["redshift-serverless:GetCredentials", "redshift-data:BatchExecuteStatement"],
                resources=[self.workgroup_arn],
            ),
            iam.PolicyStatement(
                actions=["redshift-data:DescribeStatement", "redshift-data:CancelStatement"],
                resources=["*"],
                conditions={"StringEquals": {"redshift-data:statement-owner-iam-userid": "${aws:userid}"}},
            ),
        )
        acknowledge_findings(
            policy,
            "AwsSolutions-IAM5",
            "The Data API's DescribeStatement and CancelStatement have no resource-level permissions; the "
            "statement-owner condition limits them to the caller's own statements.",
            matching=r"Resource::\*",
            actions=["redshift-data:DescribeStatement", "redshift-data:CancelStatement"],
        )
        return policy

    def grant_load(self, grantee: iam.IGrantable) -> None:
        """Let `grantee` (a role) run the load: attaches the target's load policy."""
        check_role("grantee", grantee).add_managed_policy(self.load_policy)

    def review_load_findings(self, grantee_construct: IConstruct) -> None:
        """Nothing to accept on the grantee: the load policy carries its own reviewed finding, and Redshift reads
        S3 with its own COPY role (reviewed in this construct)."""
        del grantee_construct
