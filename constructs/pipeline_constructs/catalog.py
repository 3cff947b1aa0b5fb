"""The Glue side of the data: database, security configuration, and the crawler over the raw uploads."""

from __future__ import annotations

import json
import re

from aws_cdk import ArnFormat, RemovalPolicy, Stack, aws_glue as glue, aws_iam as iam, aws_kms as kms, aws_logs as logs

from constructs import Construct, IConstruct

from .acknowledgements import acknowledge_findings
from .keys import allow_cloudwatch_logs
from .storage import OBJECT_READ_ACTIONS, OBJECT_WRITE_ACTIONS, PipelineStorage
from .validation import PipelinePropsError, check_name, check_prefix

_COLON = ArnFormat.COLON_RESOURCE_NAME
# The log groups Glue writes to when a security configuration encrypts CloudWatch logs (it creates them itself,
# unencrypted by retention and never expiring, unless they exist): jobs write output, error and (real-time or
# continuous) logs-v2 streams; a crawler writes one group named after its role and the configuration.
GLUE_JOB_LOG_STREAMS = ("output", "error", "logs-v2")

# What the Glue L2 grants a job role on its script and extra files in the CDK asset bucket.
GLUE_ASSET_READ_ACTIONS = ("s3:GetBucket*", "s3:GetObject*", "s3:List*")
GLUE_LOG_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey")
# Create and update tables and partitions; nothing here deletes.
TABLE_WRITE_ACTIONS = (
    "glue:GetDatabase",
    "glue:GetTable",
    "glue:GetTables",
    "glue:CreateTable",
    "glue:UpdateTable",
    "glue:GetPartition",
    "glue:GetPartitions",
    "glue:BatchGetPartition",
    "glue:CreatePartition",
    "glue:BatchCreatePartition",
    "glue:UpdatePartition",
    "glue:BatchUpdatePartition",
)


class PipelineCatalog(Construct):
    """A Glue database, a security configuration encrypting everything Glue writes, and the raw-schema crawler.

    The crawler records the schema of what lands, and logs schema changes instead of rewriting or deleting tables
    (schema change policy LOG), so a malformed upload cannot silently change the raw table. Its role is scoped to
    the landing prefix and this database.

    Glue creates the log groups of an encrypted job or crawler itself, with no retention; this construct creates them
    first (`create_glue_log_groups`), under the pipeline's key with `log_retention`, for the crawler and for every
    job that calls it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: PipelineStorage,
        database_name: str,
        raw_table_prefix: str = "raw_",
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        """
        :param storage: the buckets and key; the crawler reads `storage.landing_prefix`.
        :param database_name: the Glue database (snake_case).
        :param raw_table_prefix: prefix of the tables the crawler creates. Default: 'raw_'.
        :param log_retention: retention of the Glue log groups of the crawler and the jobs. Default: one month.
        :param removal_policy: for the database and the Glue log groups. Default: RETAIN.
        """
        super().__init__(scope, construct_id)
        check_name("database_name", database_name)
        check_name("raw_table_prefix", raw_table_prefix, pattern=r"[a-z][a-z0-9_]{0,30}")
        stack = Stack.of(self)
        self.storage = storage
        self.key: kms.IKey = storage.key
        self.database = glue.Database(self, "Database", database_name=database_name, removal_policy=removal_policy)
        self.database_name = database_name
        self.log_retention = log_retention
        self.removal_policy = removal_policy

        # Glue writes CloudWatch logs encrypted with this key: the logs service must be allowed to use it.
        allow_cloudwatch_logs(self.key, "/aws-glue/*", sid="AllowCloudWatchLogsForGlue")
        self.security_configuration = glue.SecurityConfiguration(
            self,
            "SecurityConfiguration",
            s3_encryption=glue.S3Encryption.kms(self.key),
            cloud_watch_encryption=glue.CloudWatchEncryption.kms(self.key),
            job_bookmarks_encryption=glue.JobBookmarksEncryption.client_side_kms(self.key),
        )

        self.crawler_role = iam.Role(
            self,
            "CrawlerRole",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description="Raw crawler: reads the landing prefix, writes raw tables of one database",
        )
        storage.grant_read_landing(self.crawler_role)
        self.grant_table_write(self.crawler_role)
        self.grant_glue_logs(self.crawler_role, "crawlers")
        review_object_prefix(
            self.crawler_role, storage.landing_prefix, "the crawler reads every upload under the landing prefix", write=False
        )
        acknowledge_findings(
            self.crawler_role,
            "AwsSolutions-IAM5",
            "The crawler creates and updates tables it names after what it finds, so table access is granted on the "
            "tables of this one database rather than on named tables.",
            matching=rf"Resource::arn:[^:]+:glue:.*:table/{database_name}/\*",
            actions=TABLE_WRITE_ACTIONS,
        )
        review_glue_logs(self.crawler_role, "crawlers")
        self.crawler = glue.CfnCrawler(
            self,
            "RawCrawler",
            role=self.crawler_role.role_arn,
            database_name=database_name,
            table_prefix=raw_table_prefix,
            description="Infers the schema of raw CSV uploads; logs schema changes instead of applying deletes",
            targets=glue.CfnCrawler.TargetsProperty(
                s3_targets=[
                    glue.CfnCrawler.S3TargetProperty(
                        path=f"s3://{storage.landing_bucket.bucket_name}/{storage.landing_prefix}",
                        exclusions=["**/_*", "**/.*"],
                    )
                ]
            ),
            schema_change_policy=glue.CfnCrawler.SchemaChangePolicyProperty(update_behavior="LOG", delete_behavior="LOG"),
            recrawl_policy=glue.CfnCrawler.RecrawlPolicyProperty(recrawl_behavior="CRAWL_NEW_FOLDERS_ONLY"),
            configuration=json.dumps(
                {
                    "Version": 1.0,
                    "Grouping": {"TableGroupingPolicy": "CombineCompatibleSchemas"},
                    "CrawlerOutput": {"Tables": {"AddOrUpdateBehavior": "MergeNewColumns"}},
                },
                sort_keys=True,
            ),
            crawler_security_configuration=self.security_configuration.security_configuration_name,
        )
        self.crawler_log_groups = self.create_glue_log_groups(self, self.crawler_role, "crawlers")
        self.crawler_name: str = self.crawler.ref
        self.crawler_arn = stack.format_arn(service="glue", resource="crawler", resource_name=self.crawler_name)

    def grant_table_write(self, grantee: iam.IGrantable) -> iam.Grant:
        """Create and update tables and partitions of this database only."""
        stack = Stack.of(self)
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(TABLE_WRITE_ACTIONS),
            resource_arns=[
                stack.format_arn(service="glue", resource="catalog"),
                self.database.database_arn,
                stack.format_arn(service="glue", resource="table", resource_name=f"{self.database_name}/*"),
            ],
        )

    def create_glue_log_groups(self, scope: Construct, role: iam.IRole, kind: str) -> list[logs.LogGroup]:
        """Create, in `scope`, the log groups Glue writes to for `role` under this security configuration, with the
        key and `log_retention`, so they exist before Glue would create them unencrypted and kept forever.

        `kind` 'jobs' (a Spark job): `/aws-glue/jobs/<configuration>-role/<role>/output`, `.../error`, `.../logs-v2`;
        'crawlers': `/aws-glue/crawlers-role/<role>-<configuration>`. The names follow the role's name, so a role
        shared by two jobs needs one call.
        """
        configuration = self.security_configuration.security_configuration_name
        if kind == "jobs":
            names = {
                f"GlueLogs{''.join(part.capitalize() for part in stream.split('-'))}": (
                    f"/aws-glue/jobs/{configuration}-role/{role.role_name}/{stream}"
                )
                for stream in GLUE_JOB_LOG_STREAMS
            }
        elif kind == "crawlers":
            names = {"GlueCrawlerLogs": f"/aws-glue/crawlers-role/{role.role_name}-{configuration}"}
        else:
            raise ValueError(f"kind={kind!r}: use 'jobs' or 'crawlers'")
        return [
            logs.LogGroup(
                scope,
                construct_id,
                log_group_name=name,
                encryption_key=self.key,
                retention=self.log_retention,
                removal_policy=self.removal_policy,
            )
            for construct_id, name in names.items()
        ]

    def grant_glue_logs(self, grantee: iam.IGrantable, kind: str) -> None:
        """Write Glue's encrypted CloudWatch logs (`kind`: 'crawlers' or 'jobs') and use the key for them."""
        stack = Stack.of(self)
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(GLUE_LOG_ACTIONS),
            resource_arns=[stack.format_arn(service="logs", resource="log-group", resource_name=f"/aws-glue/{kind}*", arn_format=_COLON)],
        )
        # Job bookmarks are encrypted client-side, so the role itself uses the key (not only through S3).
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
            resource_arns=[self.key.key_arn],
        )

    def add_crawler(self, scope: Construct, construct_id: str, *, prefix: str, description: str) -> glue.CfnCrawler:
        """A crawler in `scope` like the raw crawler (same role, database, table prefix, policies and security
        configuration) over one prefix of the landing bucket only.

        Why: Glue's crawler state-change events name the crawler but not who started it, so a form that reports its
        failures through EventBridge runs a crawler of its own over its own prefix. A crawler costs nothing while it
        does not run.

        :param prefix: a key prefix under the storage's landing prefix (the crawler role reads only that).
        :param description: of the new crawler.
        """
        landing = self.storage.landing_prefix
        check_prefix("prefix", prefix)
        if not prefix.startswith(landing):
            raise PipelinePropsError(
                f"prefix={prefix!r}: must be under the storage's landing prefix {landing!r}, the only one the crawler role may read"
            )
        source = self.crawler
        return glue.CfnCrawler(
            scope,
            construct_id,
            role=source.role,
            database_name=source.database_name,
            table_prefix=source.table_prefix,
            description=description,
            targets=glue.CfnCrawler.TargetsProperty(
                s3_targets=[
                    glue.CfnCrawler.S3TargetProperty(
                        path=f"s3://{self.storage.landing_bucket.bucket_name}/{prefix}",
                        exclusions=["**/_*", "**/.*"],
                    )
                ]
            ),
            schema_change_policy=source.schema_change_policy,
            recrawl_policy=source.recrawl_policy,
            configuration=source.configuration,
            crawler_security_configuration=source.crawler_security_configuration,
        )


def review_object_prefix(construct: IConstruct, prefix: str, why: str, *, write: bool, bucket_hint: str = "") -> None:
    """Accept the IAM5 wildcard of object access under one key prefix (object names are not known in advance).

    The declaration covers the actions `grant_objects` gives: reads, plus writes when `write`.
    """
    actions = OBJECT_WRITE_ACTIONS if write else OBJECT_READ_ACTIONS
    acknowledge_findings(
        construct,
        "AwsSolutions-IAM5",
        f"Object names are not known in advance: {why}; {'read and write' if write else 'read'} access "
        f"({', '.join(actions)}) is limited to the prefix '{prefix}'.",
        matching=rf"Resource::.*{bucket_hint}.*/{re.escape(prefix)}\*" if bucket_hint else rf"Resource::.*/{re.escape(prefix)}\*",
        actions=actions,
    )


def review_glue_logs(construct: IConstruct, kind: str) -> None:
    """Accept the IAM5 wildcard on Glue's own log groups (/aws-glue/<kind>...), whose names Glue chooses."""
    acknowledge_findings(
        construct,
        "AwsSolutions-IAM5",
        f"Glue writes its {kind} logs to log groups it names under /aws-glue/{kind}; access is limited to that path.",
        matching=rf"Resource::arn:[^:]+:logs:.*:log-group:/aws-glue/{kind}\*",
        actions=GLUE_LOG_ACTIONS,
    )
