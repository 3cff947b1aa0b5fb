"""Buckets and the KMS key of the pipeline: landing (raw CSV), curated (Parquet), quarantine, access logs."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack, aws_events as events, aws_iam as iam, aws_kms as kms, aws_s3 as s3

from constructs import Construct

from .acknowledgements import acknowledge_findings
from .validation import PipelinePropsError, check_positive, check_prefix


class PipelineStorage(Construct):
    """The pipeline's S3 storage under one customer-managed KMS key.

    Every bucket blocks public access, enforces TLS, is versioned, logs access to the access-log bucket and expires
    old data. The landing bucket sends its events to EventBridge, which is how every orchestration form learns of an
    upload. Deleting data with the stack needs `removal_policy=RemovalPolicy.DESTROY`, which callers should put
    behind an explicit flag (the app does: `pipeline:allowDestroy`).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        data_retention: Duration | None = None,
        noncurrent_version_retention: Duration | None = None,
        landing_prefix: str = "incoming/",
        encryption_key: kms.IKey | None = None,
    ) -> None:
        """
        :param removal_policy: what happens to buckets and key when the stack is deleted. Default: RETAIN.
            DESTROY also empties the buckets (an auto-delete custom resource).
        :param data_retention: how long landing, quarantine and access-log objects are kept. Default: 365 days.
        :param noncurrent_version_retention: how long overwritten object versions are kept. Default: 30 days.
        :param landing_prefix: the key prefix under which uploads are processed. Default: 'incoming/'.
        :param encryption_key: an existing key for the buckets. Default: a new key with rotation.
        """
        super().__init__(scope, construct_id)
        if removal_policy not in (RemovalPolicy.RETAIN, RemovalPolicy.DESTROY):
            raise PipelinePropsError(f"removal_policy={removal_policy!r}: use RETAIN or DESTROY")
        retention = data_retention if data_retention is not None else Duration.days(365)
        check_positive("data_retention (days)", retention.to_days())
        noncurrent = noncurrent_version_retention if noncurrent_version_retention is not None else Duration.days(30)
        check_positive("noncurrent_version_retention (days)", noncurrent.to_days())
        self.landing_prefix = check_prefix("landing_prefix", landing_prefix)
        destroy = removal_policy == RemovalPolicy.DESTROY

        self.key: kms.IKey = (
            encryption_key
            if encryption_key is not None
            else kms.Key(
                self,
                "Key",
                description="Retail pipeline data at rest: landing, curated and quarantine buckets, Glue output",
                enable_key_rotation=True,
                removal_policy=removal_policy,
            )
        )

        expire = s3.LifecycleRule(
            id="ExpireOldData",
            expiration=retention,
            noncurrent_version_expiration=noncurrent,
            abort_incomplete_multipart_upload_after=Duration.days(7),
        )
        # S3 server access logs can only be delivered to a bucket with S3-managed encryption.
        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[expire],
            removal_policy=removal_policy,
            auto_delete_objects=destroy,
        )

        def data_bucket(construct_id: str, log_prefix: str, *, events: bool, rules: list[s3.LifecycleRule]) -> s3.Bucket:
            return s3.Bucket(
                self,
                construct_id,
                encryption=s3.BucketEncryption.KMS,
                encryption_key=self.key,
                bucket_key_enabled=True,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                versioned=True,
                event_bridge_enabled=events,
                server_access_logs_bucket=self.access_logs_bucket,
                server_access_logs_prefix=log_prefix,
                lifecycle_rules=rules,
                removal_policy=removal_policy,
                auto_delete_objects=destroy,
            )

        self.landing_bucket = data_bucket("Landing", "landing/", events=True, rules=[expire])
        # Curated data is what users query: only old versions expire, never current objects.
        self.curated_bucket = data_bucket(
            "Curated",
            "curated/",
            events=False,
            rules=[
                s3.LifecycleRule(
                    id="ExpireOldVersions",
                    noncurrent_version_expiration=noncurrent,
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
        )
        self.quarantine_bucket = data_bucket("Quarantine", "quarantine/", events=False, rules=[expire])
        # EventBridge notifications are switched on by a CDK-provided singleton Lambda that CDK adds to the stack.
        acknowledge_findings(
            Stack.of(self),
            "AwsSolutions-IAM4",
            "CDK's own bucket-notifications handler runs at deploy time with the AWS-managed basic execution policy "
            "(CloudWatch Logs only); it is not in the data path.",
            matching=r"Policy::arn:[^:]+:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            child_path="BucketNotificationsHandler050a0587b7544547bf325f094a3db834",
        )

    def landing_prefix_for(self, form: str) -> str:
        """The landing prefix one orchestration form listens on, so one upload is processed by one form only."""
        return f"{self.landing_prefix}{form}/"

    def upload_event_pattern(self, prefix: str) -> events.EventPattern:
        """EventBridge pattern for a non-empty CSV upload to the landing bucket under `prefix`."""
        return events.EventPattern(
            source=["aws.s3"],
            detail_type=["Object Created"],
            detail={
                "bucket": {"name": [self.landing_bucket.bucket_name]},
                "object": {"key": events.Match.wildcard(f"{prefix}*.csv"), "size": events.Match.greater_than(0)},
            },
        )

    def grant_read_landing(self, grantee: iam.IGrantable | iam.ManagedPolicy, prefix: str | None = None) -> None:
        """Read uploads (and decrypt them) under `prefix` (default: the whole landing prefix)."""
        grant_objects(grantee, self.landing_bucket, self.key, prefix if prefix is not None else self.landing_prefix, write=False)

    def grant_write_curated(self, grantee: iam.IGrantable | iam.ManagedPolicy, prefix: str = "") -> None:
        """Read and write curated objects under `prefix`."""
        grant_objects(grantee, self.curated_bucket, self.key, prefix, write=True)

    def grant_read_curated(self, grantee: iam.IGrantable | iam.ManagedPolicy, prefix: str = "") -> None:
        """Read curated objects under `prefix`."""
        grant_objects(grantee, self.curated_bucket, self.key, prefix, write=False)

    def grant_write_quarantine(self, grantee: iam.IGrantable | iam.ManagedPolicy, prefix: str = "") -> None:
        """Write quarantined rows and rejected files under `prefix`."""
        grant_objects(grantee, self.quarantine_bucket, self.key, prefix, write=True)


# The object actions `grant_objects` gives under a prefix; acknowledgements of those wildcards name the same lists.
OBJECT_READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")
OBJECT_WRITE_ACTIONS = (*OBJECT_READ_ACTIONS, "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")


def grant_objects(
    grantee: iam.IGrantable | iam.ManagedPolicy, bucket: s3.IBucket, key: kms.IKey | None, prefix: str, *, write: bool
) -> None:
    """Least-privilege object access under one prefix, with explicit actions instead of CDK's wildcard grants.

    `grantee` is a principal or a managed policy. Listing is limited to the prefix with the `s3:prefix` condition;
    the key may only be used through S3.
    """
    statements = [
        iam.PolicyStatement(
            actions=list(OBJECT_WRITE_ACTIONS if write else OBJECT_READ_ACTIONS),
            resources=[bucket.arn_for_objects(f"{prefix}*")],
        ),
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}} if prefix else None,
        ),
        iam.PolicyStatement(
            actions=["s3:GetBucketLocation"] + (["s3:ListBucketMultipartUploads"] if write else []),
            resources=[bucket.bucket_arn],
        ),
    ]
    if key is not None:
        statements.append(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:DescribeKey"] + (["kms:Encrypt", "kms:GenerateDataKey"] if write else []),
                resources=[key.key_arn],
                conditions={"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}},
            )
        )
    for statement in statements:
        if isinstance(grantee, iam.ManagedPolicy):
            grantee.add_statements(statement)
        else:
            grantee.grant_principal.add_to_principal_policy(statement)
