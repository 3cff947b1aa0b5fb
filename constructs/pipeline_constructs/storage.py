"""Buckets and the KMS key of the pipeline: landing (raw CSV), curated (Parquet), quarantine, access logs."""

from __future__ import annotations

from aws_cdk import Annotations, Duration, RemovalPolicy, Stack, Token, aws_events as events, aws_iam as iam, aws_kms as kms, aws_s3 as s3

from constructs import Construct, IConstruct

from .acknowledgements import acknowledge_findings
from .validation import PipelinePropsError, check_positive, check_prefix

# Prefix claims live on the app's root construct: {(bucket address, what): [(prefix, owner path, argument)]}.
_CLAIMS_ATTRIBUTE = "_pipeline_prefix_claims"


class PipelineStorage(Construct):
    """The pipeline's S3 storage under one customer-managed KMS key.

    Every bucket blocks public access, enforces TLS, is versioned, logs access to the access-log bucket and expires
    old data. The landing bucket sends its events to EventBridge, which is how every orchestration form learns of an
    upload. An existing landing bucket (one that other systems already fill) can be adopted with `landing_bucket`:
    the library then switches on its EventBridge notifications and grants access under `landing_prefix`, and warns
    at synth about the settings it cannot enforce on a bucket it does not own.

    Prefixes are claimed: each form claims the landing prefix it listens on and each clean job the curated prefix it
    writes (`claim_prefix`), and two claims of which one contains the other fail with both owners named, so one
    upload cannot start two runs and two jobs cannot overwrite each other's output. Deleting data with the stack needs `removal_policy=RemovalPolicy.DESTROY`, which callers should put
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
        landing_bucket: s3.IBucket | None = None,
        landing_bucket_key: kms.IKey | None = None,
        object_lock_retention: Duration | None = None,
    ) -> None:
        """
        :param removal_policy: what happens to buckets and key when the stack is deleted. Default: RETAIN.
            DESTROY also empties the buckets (an auto-delete custom resource).
        :param data_retention: how long landing, quarantine and access-log objects are kept. Default: 365 days.
        :param noncurrent_version_retention: how long overwritten object versions are kept. Default: 30 days.
        :param landing_prefix: the key prefix under which uploads are processed. Default: 'incoming/'.
        :param encryption_key: an existing key for the buckets the library creates. An imported key's policy cannot be
            changed here: the statements the pipeline needs in it are printed as a synth warning. Default: a new key
            with rotation.
        :param landing_bucket: an existing bucket to take uploads from instead of a new one. Default: a new bucket.
        :param landing_bucket_key: the KMS key of `landing_bucket`, when it is encrypted with one (readers get
            decrypt on it). Only with `landing_bucket`. Default: none (SSE-S3).
        :param object_lock_retention: switch S3 Object Lock on for every bucket the library creates except the
            access-log bucket (S3 cannot deliver logs to a locked bucket), with this default retention in governance
            mode: no object version can be deleted before it passes, except by a principal granted
            `s3:BypassGovernanceRetention`. Satisfies Control Tower's CT.S3.PR.9. Object Lock cannot be switched off
            again; it needs RETAIN (a stack deletion could not empty the buckets) and a retention no longer than
            `data_retention` (the expiry it promises). Default: none (no lock).
        """
        super().__init__(scope, construct_id)
        if removal_policy not in (RemovalPolicy.RETAIN, RemovalPolicy.DESTROY):
            raise PipelinePropsError(f"removal_policy={removal_policy!r}: use RETAIN or DESTROY")
        retention = data_retention if data_retention is not None else Duration.days(365)
        check_positive("data_retention (days)", retention.to_days())
        noncurrent = noncurrent_version_retention if noncurrent_version_retention is not None else Duration.days(30)
        check_positive("noncurrent_version_retention (days)", noncurrent.to_days())
        self.landing_prefix = check_prefix("landing_prefix", landing_prefix)
        if landing_bucket_key is not None and landing_bucket is None:
            raise PipelinePropsError("landing_bucket_key: give it only with landing_bucket (a new landing bucket uses the pipeline key)")
        destroy = removal_policy == RemovalPolicy.DESTROY
        if object_lock_retention is not None:
            lock_days = object_lock_retention.to_days()
            check_positive("object_lock_retention (days)", lock_days)
            if destroy:
                raise PipelinePropsError(
                    f"object_lock_retention={lock_days} days with removal_policy=DESTROY: locked versions cannot be deleted with "
                    "the stack; use RETAIN or no object lock"
                )
            if lock_days > retention.to_days():
                raise PipelinePropsError(
                    f"object_lock_retention={lock_days} days is longer than data_retention={retention.to_days()} days: locked "
                    "versions would outlive the expiry; shorten the lock or lengthen the retention"
                )
        self.object_lock_retention = object_lock_retention

        self.key: kms.IKey = (
            encryption_key
            if encryption_key is not None
            else kms.Key(
                self,
                "Key",
                description="Pipeline data at rest: landing, curated and quarantine buckets, Glue output",
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
                object_lock_enabled=self._object_lock_enabled,
                object_lock_default_retention=self._object_lock_default_retention,
            )

        self.landing_bucket: s3.IBucket
        self.landing_key: kms.IKey | None
        if landing_bucket is None:
            self.landing_bucket = data_bucket("Landing", "landing/", events=True, rules=[expire])
            self.landing_key = self.key
        else:
            self.landing_bucket = landing_bucket
            self.landing_key = landing_bucket_key
            landing_bucket.enable_event_bridge_notification()
            Annotations.of(self).add_warning_v2(
                "pipeline:ExistingLandingBucket",
                f"landing_bucket={landing_bucket.node.path}: the library did not create this bucket and cannot enforce "
                "versioning, the public access block, a TLS-only bucket policy, server access logging, encryption or "
                f"the expiry of uploads under {self.landing_prefix!r} on it; check them. It switched on EventBridge "
                "notifications (CDK's notifications handler keeps the bucket's other notification settings).",
            )
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

    def new_bucket(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_prefix: str,
        removal_policy: RemovalPolicy,
        encryption_key: kms.IKey | None = None,
        lifecycle_rules: list[s3.LifecycleRule] | None = None,
    ) -> s3.Bucket:
        """A bucket in `scope` with this storage's guarantees: public access blocked, TLS only, versioned, encrypted
        with a KMS key (bucket keys on), access-logged to the access-log bucket under `log_prefix`.

        :param encryption_key: Default: the storage key.
        :param lifecycle_rules: Default: replaced versions expire after 90 days, unfinished multipart uploads after 7
            (a versioned bucket without a lifecycle keeps every old version forever; Control Tower's CT.S3.PR.3 and
            CT.S3.PR.6 require one).
        """
        if self.object_lock_retention is not None and removal_policy == RemovalPolicy.DESTROY:
            raise PipelinePropsError(
                f"{construct_id}: removal_policy=DESTROY on a storage with object_lock_retention: locked versions cannot be "
                "deleted with the stack; use RETAIN"
            )
        if lifecycle_rules is None:
            lifecycle_rules = [
                s3.LifecycleRule(
                    id="ExpireReplacedVersions",
                    noncurrent_version_expiration=Duration.days(90),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ]
        return s3.Bucket(
            scope,
            construct_id,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=encryption_key if encryption_key is not None else self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix=log_prefix,
            lifecycle_rules=lifecycle_rules,
            removal_policy=removal_policy,
            auto_delete_objects=removal_policy == RemovalPolicy.DESTROY,
            object_lock_enabled=self._object_lock_enabled,
            object_lock_default_retention=self._object_lock_default_retention,
        )

    @property
    def _object_lock_enabled(self) -> bool | None:
        """`object_lock_enabled` of the buckets this storage creates: True with an Object Lock setting, else unset."""
        return True if self.object_lock_retention is not None else None

    @property
    def _object_lock_default_retention(self) -> s3.ObjectLockRetention | None:
        """Governance mode for the setting's retention (a principal with s3:BypassGovernanceRetention may still delete)."""
        return s3.ObjectLockRetention.governance(self.object_lock_retention) if self.object_lock_retention is not None else None

    def claim_prefix(self, owner: IConstruct, bucket: str, prefix: str, *, argument: str = "landing_prefix") -> str:
        """Claim `prefix` of the `bucket` ('landing' or 'curated') for `owner`; returns the prefix.

        A landing claim must lie under the storage's landing prefix (the crawler and the clean job's role read only
        there). Two claims on one bucket in one app fail when either prefix contains the other: every upload would
        start both owners, or both would write the same output.
        """
        if bucket not in ("landing", "curated"):
            raise PipelinePropsError(f"bucket={bucket!r}: use 'landing' or 'curated'")
        check_prefix(argument, prefix)
        if Token.is_unresolved(prefix):
            return prefix
        if bucket == "landing" and not prefix.startswith(self.landing_prefix):
            raise PipelinePropsError(
                f"{argument}={prefix!r} of {owner.node.path}: must lie under the storage's landing prefix "
                f"{self.landing_prefix!r}, which is all the crawler and the clean job may read"
            )
        target = self.landing_bucket if bucket == "landing" else self.curated_bucket
        root = self.node.root
        if not hasattr(root, _CLAIMS_ATTRIBUTE):
            setattr(root, _CLAIMS_ATTRIBUTE, {})
        claims = getattr(root, _CLAIMS_ATTRIBUTE).setdefault((target.node.addr, bucket), [])
        for other, other_owner, other_argument in claims:
            if prefix.startswith(other) or other.startswith(prefix):
                raise PipelinePropsError(
                    f"{argument}={prefix!r} of {owner.node.path} overlaps {other_argument}={other!r} of {other_owner} on "
                    f"the same {bucket} bucket: "
                    + ("one upload would start both" if bucket == "landing" else "both would write the same runs")
                    + "; give each its own prefix, neither inside the other"
                )
        claims.append((prefix, owner.node.path, argument))
        return prefix

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
        grant_objects(grantee, self.landing_bucket, self.landing_key, prefix if prefix is not None else self.landing_prefix, write=False)

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
