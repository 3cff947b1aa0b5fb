"""The MWAA form: a private Amazon MWAA (Airflow 3) environment running the pipeline DAG, started per upload or on the
DAG's own schedule.

aws-cdk-lib has only the L1 `aws_mwaa.CfnEnvironment`; this construct adds what the pipeline needs around it: the
DAG bucket and deployment, the execution role scoped to the pipeline's resources, the key, the network
configuration, the upload trigger (EventBridge -> SQS -> Lambda -> InvokeRestApi; on a schedule EventBridge -> the
inbox queue the DAG's runs claim from), and alarms.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aws_cdk import (
    ArnFormat,
    Duration,
    Names,
    RemovalPolicy,
    Stack,
    Token,
    aws_cloudwatch as cloudwatch,
    aws_ec2 as ec2,
    aws_events as events,
    aws_iam as iam,
    aws_kms as kms,
    aws_logs as logs,
    aws_mwaa as mwaa,
    aws_s3 as s3,
    aws_s3_deployment as s3deploy,
    aws_sqs as sqs,
)

from constructs import Construct

from ..acknowledgements import acknowledge_findings
from ..alerting import PipelineAlerting
from ..catalog import PipelineCatalog
from ..clean_job import CleanJob
from ..deployments import review_bucket_deployment
from ..keys import allow_cloudwatch_logs
from ..ledger import UploadLedger
from ..queue_trigger import QueueTrigger, upload_inbox
from ..runtime.mwaa.pipeline_steps import CONFIG_FILE_NAME
from ..runtime.upload_ledger import STATE_INDEX
from ..schedules import Schedule, ScheduleError, airflow_cron
from ..storage import PipelineStorage
from ..targets.load_target import LoadTargets, load_targets
from ..validation import PipelinePropsError, check_positive
from .airflow_steps import SCHEDULED_STEP_MODULES, SHARED_STEP_MODULES, airflow_step_settings, grant_rows_check
from .glue_workflow_target import RuleQueueTarget

FORM_NAME = "mwaa"
RUNTIME = Path(__file__).resolve().parent.parent / "runtime"
DAG_FOLDER = RUNTIME / "mwaa"
TRIGGER_CODE = RUNTIME / "upload_lambdas"
AIRFLOW_VERSIONS = ("3.3.1", "3.2.1")
DEFAULT_AIRFLOW_VERSION = "3.3.1"
WEBSERVER_ACCESS = {"private": "PRIVATE_ONLY", "public": "PUBLIC_ONLY"}
# Per environment class: (max schedulers, max web servers); mw1.micro runs 1 scheduler, 1 web server and 1 worker.
ENVIRONMENT_CLASSES: dict[str, tuple[int, int]] = {
    "mw1.micro": (1, 1),
    "mw1.small": (5, 5),
    "mw1.medium": (5, 5),
    "mw1.large": (5, 5),
    "mw1.xlarge": (5, 5),
    "mw1.2xlarge": (5, 5),
}
MAX_WORKERS = 25
LOG_TYPES = ("DagProcessingLogs", "SchedulerLogs", "TaskLogs", "WebserverLogs", "WorkerLogs")
_ENVIRONMENT_NAME = re.compile(r"^[a-zA-Z][0-9a-zA-Z_-]{0,79}$")
_DAG_ID = re.compile(r"^[A-Za-z0-9_.-]{1,50}$")  # InvokeRestApi paths are at most 64 characters: /dags/<id>/dagRuns


def check_mwaa_sizing(environment_class: str, min_workers: int, max_workers: int, schedulers: int | None) -> None:
    """Class, workers and schedulers as MWAA accepts them; each message names the argument and the value."""
    if environment_class not in ENVIRONMENT_CLASSES:
        raise PipelinePropsError(f"environment_class={environment_class!r}: use one of {', '.join(ENVIRONMENT_CLASSES)}")
    for name, value in (("min_workers", min_workers), ("max_workers", max_workers)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
            raise PipelinePropsError(f"{name}={value!r}: must be an integer from 1 to {MAX_WORKERS}")
    if min_workers > max_workers:
        raise PipelinePropsError(f"min_workers={min_workers!r}: must not exceed max_workers={max_workers!r}")
    if environment_class == "mw1.micro" and max_workers != 1:
        raise PipelinePropsError(f"max_workers={max_workers!r}: mw1.micro runs exactly 1 worker; choose mw1.small or larger for more")
    max_schedulers = ENVIRONMENT_CLASSES[environment_class][0]
    min_schedulers = 1 if environment_class == "mw1.micro" else 2
    if schedulers is not None and (isinstance(schedulers, bool) or not min_schedulers <= schedulers <= max_schedulers):
        raise PipelinePropsError(f"schedulers={schedulers!r}: {environment_class} runs {min_schedulers} to {max_schedulers} schedulers")


class MwaaPipeline(Construct):
    """Upload -> EventBridge -> SQS -> Lambda (InvokeRestApi) -> DAG run on a private MWAA environment: crawl, clean,
    load; a failed task publishes one SNS message (pipeline, object, run_id, failed_step, error, cause). With a
    ledger, the DAG's tasks keep the upload's record (runtime/mwaa/dag_ledger.py) and the clean job writes its counts.

    The environment runs in two private subnets with its webserver private by default, all five log types on (task
    and worker logs at INFO), under its own customer-managed key (which CloudWatch Logs may use for the
    environment's log groups). The DAG bucket is versioned, SSL-only, KMS-encrypted, access-logged, with public
    access blocked; the DAG, its step description and its configuration (resource names, load SQL, timeouts) are
    deployed from the library, with no requirements.txt (a private environment cannot reach a package index).

    With `schedule`, the DAG starts on its own timetable instead (the cron in its time zone, no catch-up, one run at a
    time): the upload rule sends each event to an encrypted inbox queue (`inbox`; undeliverable events to the
    alarmed `dead_letter_queue`), no trigger Lambda exists, and each run first claims every pending upload in the
    ledger (the inbox's, the failed ones to retry, one a `pipeline-ops` run names), ends at once when there is none,
    and otherwise crawls once, cleans them in one clean job run and loads once (runtime/mwaa/dag_ledger.py).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: PipelineStorage,
        catalog: PipelineCatalog,
        clean_job: CleanJob,
        target: LoadTargets,
        alerting: PipelineAlerting,
        vpc: ec2.IVpc,
        ledger: UploadLedger | None = None,
        subnets: ec2.SubnetSelection | None = None,
        environment_name: str | None = None,
        airflow_version: str = DEFAULT_AIRFLOW_VERSION,
        environment_class: str = "mw1.small",
        min_workers: int = 1,
        max_workers: int = 2,
        schedulers: int | None = None,
        webserver_access: str = "private",
        max_active_runs: int = 4,
        task_retries: int = 3,
        landing_prefix: str | None = None,
        dag_id: str | None = None,
        weekly_maintenance_window_start: str | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        schedule: Schedule | None = None,
    ) -> None:
        """
        :param storage: the landing bucket whose uploads start runs; its access-log bucket receives the DAG bucket's logs.
        :param catalog: the raw crawler the DAG runs.
        :param clean_job: the Glue job the DAG runs for each upload.
        :param target: where a run is loaded (AthenaTarget or RedshiftTarget), or a list of one of each: loaded in
            parallel after the clean job, one load task per target (`load_athena`, `load_redshift`), each one at a
            time across runs; a re-run loads only the target that failed. Not with `schedule`.
        :param alerting: the topic of failure messages and alarms, and the key of the trigger queues.
        :param vpc: the VPC of the environment and the trigger Lambda (with no NAT, it needs the interface endpoints
            `network.mwaa_interface_endpoints` lists, and a DynamoDB gateway endpoint for the ledger).
        :param ledger: the upload ledger this form keeps current (the DAG's tasks take the upload, record each step,
            the outcome and the failure; the clean job writes its counts). Default: none (no ledger writes).
        :param subnets: the private subnets; the environment uses the first two. Default: the VPC's isolated or private subnets.
        :param environment_name: Default: a name unique in the app, derived from the construct path.
        :param airflow_version: '3.3.1' or '3.2.1'; always written into the template. Default: '3.3.1'.
        :param environment_class: mw1.micro ... mw1.2xlarge. Default: 'mw1.small'.
        :param min_workers: Default: 1.
        :param max_workers: Default: 2 (mw1.micro: must be 1).
        :param schedulers: Default: MWAA's default for the class (2; mw1.micro 1).
        :param webserver_access: 'private' (reachable from the VPC only) or 'public'. Default: 'private'.
        :param max_active_runs: DAG runs at once; more wait queued. Default: 4.
        :param task_retries: retries of each task, with exponential backoff from one minute. Default: 3.
        :param landing_prefix: uploads under this prefix start this form. Default: '<storage prefix>mwaa/'.
        :param dag_id: Default: '<dataset>_pipeline'.
        :param weekly_maintenance_window_start: e.g. 'SUN:03:00' (UTC). Default: MWAA's choice.
        :param log_retention: retention of the trigger Lambda's and the DAG deployment's logs. Default: one month.
        :param removal_policy: for the key, the DAG bucket and the trigger's queues and logs. Default: RETAIN.
        :param schedule: start the DAG on this schedule instead of once per upload: a `Schedule`
            (`pipeline_constructs.schedules`; `cron(...)` or `rate(...)` with an IANA time zone, written as the DAG's
            CronTriggerTimetable). Needs `ledger`; `max_active_runs` then does not apply (one run at a time).
            Default: None (one DAG run per upload).
        """
        super().__init__(scope, construct_id)
        self.targets = load_targets(target)
        """The load targets (one, or one of each kind loaded in parallel)."""
        if schedule is not None and len(self.targets) > 1:
            raise PipelinePropsError(
                f"schedule={getattr(schedule, 'expression', schedule)!r} with {len(self.targets)} load targets: a scheduled DAG run "
                "loads one target; give one target, or run the upload-mode DAG for parallel loads"
            )
        if airflow_version not in AIRFLOW_VERSIONS:
            raise PipelinePropsError(f"airflow_version={airflow_version!r}: use one of {', '.join(AIRFLOW_VERSIONS)} (Airflow 3 on MWAA)")
        check_mwaa_sizing(environment_class, min_workers, max_workers, schedulers)
        if webserver_access not in WEBSERVER_ACCESS:
            raise PipelinePropsError(f"webserver_access={webserver_access!r}: use 'private' or 'public'")
        check_positive("max_active_runs", max_active_runs)
        check_positive("task_retries", task_retries, minimum=0)
        self.schedule = schedule
        """When runs start (None: one per upload)."""
        self.schedule_cron = _airflow_schedule(schedule, ledger)
        """The DAG timetable's five-field cron (in `schedule.time_zone`), or None in upload mode."""
        stack = Stack.of(self)
        self.environment_name = (
            environment_name if environment_name is not None else Names.unique_resource_name(self, max_length=64, separator="-")
        )
        if not Token.is_unresolved(self.environment_name) and not _ENVIRONMENT_NAME.match(self.environment_name):
            raise PipelinePropsError(f"environment_name={self.environment_name!r}: must match {_ENVIRONMENT_NAME.pattern}")
        self.dag_id = dag_id if dag_id is not None else f"{clean_job.contract.name}_pipeline"
        if not _DAG_ID.match(self.dag_id):
            raise PipelinePropsError(
                f"dag_id={self.dag_id!r}: must match {_DAG_ID.pattern} (InvokeRestApi paths are at most 64 characters)"
            )
        self.landing_prefix = storage.claim_prefix(
            self, "landing", landing_prefix if landing_prefix is not None else storage.landing_prefix_for(FORM_NAME)
        )
        self.airflow_version = airflow_version
        self.alerting = alerting
        self.environment_arn = stack.format_arn(service="airflow", resource="environment", resource_name=self.environment_name)
        # InvokeRestApi is authorized on the Airflow role the call acts as: the environment's User role only.
        self.user_role_arn = stack.format_arn(service="airflow", resource="role", resource_name=f"{self.environment_name}/User")
        selected = vpc.select_subnets(**_selection_kwargs(subnets))
        if len(selected.subnet_ids) < 2:
            raise PipelinePropsError(f"subnets: MWAA needs two private subnets in two zones; the selection has {len(selected.subnet_ids)}")

        self.key = self._build_key(removal_policy)
        self.dag_bucket = self._build_dag_bucket(storage, removal_policy)
        self.execution_role = self._build_execution_role(catalog, clean_job, target)
        grant_rows_check(self.execution_role, storage, clean_job)
        self.dag_config = airflow_step_settings(
            self,
            dag_id=self.dag_id,
            airflow_version=self.airflow_version,
            storage=storage,
            catalog=catalog,
            clean_job=clean_job,
            target=target,
            topic_arn=self.alerting.topic.topic_arn,
            max_active_runs=max_active_runs,
            task_retries=task_retries,
        )
        self.ledger = ledger
        if ledger is not None:
            self.dag_config.update({"ledger_table": ledger.table_name, "ledger_ttl_days": ledger.retention_days})
            ledger.grant_write(self.execution_role)
        self.inbox: sqs.Queue | None = None
        """On a schedule: the queue the upload rule feeds and each run claims from (None in upload mode)."""
        self.clean_job_policy: iam.ManagedPolicy | None = None
        """On a schedule: lets the shared clean job alert once about the files it rejects (None in upload mode)."""
        if self.schedule is not None and self.schedule_cron is not None:
            self.dead_letter_queue = alerting.new_dead_letter_queue(self, "DeadLetterQueue", removal_policy=removal_policy)
            self.inbox = upload_inbox(self, self.alerting.key, removal_policy, read_by="the DAG's claim")
            self.dag_config.update(
                {
                    "schedule": {"cron": self.schedule_cron, "time_zone": self.schedule.time_zone, "expression": self.schedule.expression},
                    "inbox_queue_url": self.inbox.queue_url,
                    "landing_bucket": storage.landing_bucket.bucket_name,
                    "landing_prefix": self.landing_prefix,
                }
            )
            self._grant_claim(clean_job)
        step_modules = SHARED_STEP_MODULES + (SCHEDULED_STEP_MODULES if self.inbox is not None else ())
        self.dag_deployment = s3deploy.BucketDeployment(
            self,
            "DeployDag",
            sources=[
                s3deploy.Source.asset(str(DAG_FOLDER), exclude=["__pycache__", "*.pyc", "__init__.py"]),
                *[s3deploy.Source.data(module.name, module.read_text(encoding="utf-8")) for module in step_modules],
                s3deploy.Source.json_data(CONFIG_FILE_NAME, self.dag_config),
            ],
            destination_bucket=self.dag_bucket,
            destination_key_prefix="dags/",
            memory_limit=256,
            log_group=self._deployment_log_group(log_retention, removal_policy),
        )
        review_bucket_deployment(stack, what="the DAG files", memory_limit=256)

        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="MWAA environment: its own components talk to each other", allow_all_outbound=True
        )
        self.security_group.add_ingress_rule(
            self.security_group, ec2.Port.all_traffic(), "MWAA components (self-referencing, as MWAA requires)"
        )
        self.environment = self._build_environment(
            selected.subnet_ids[:2],
            environment_class=environment_class,
            min_workers=min_workers,
            max_workers=max_workers,
            schedulers=schedulers,
            webserver_access=webserver_access,
            weekly_maintenance_window_start=weekly_maintenance_window_start,
        )
        self.environment.node.add_dependency(self.dag_deployment)
        self.environment.node.add_dependency(self.execution_role)

        self.trigger: QueueTrigger | None = None
        """The upload trigger (queue -> Lambda -> InvokeRestApi), or None on a schedule."""
        if self.inbox is not None:
            self._build_inbox_rule(storage)
        else:
            self._build_upload_trigger(storage, vpc, subnets, log_retention, removal_policy)

        period = Duration.minutes(5)
        self.runs_failed_alarm = alerting.alarm_when_any(
            self, "RunsFailed", self.metric_runs_failed(period=period), f"A run of the {self.dag_id} DAG failed on {self.environment_name}"
        )
        self.alarms: list[cloudwatch.Alarm] = [self.runs_failed_alarm]
        self.dead_letter_alarm: cloudwatch.Alarm | None = None
        """On a schedule: the inbox rule's undelivered events (in upload mode the trigger's alarms cover them)."""
        if self.trigger is not None:
            self.alarms.extend(self.trigger.alarms)
        else:
            self.dead_letter_alarm = alerting.alarm_when_any(
                self,
                "UndeliveredEvents",
                self.dead_letter_queue.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
                f"An upload could not reach the inbox of the {self.dag_id} DAG on {self.environment_name}; it waits in the dead-letter queue",
            )
            self.alarms.append(self.dead_letter_alarm)

    # --- builders ---------------------------------------------------------------------------------------------------

    def _build_upload_trigger(
        self,
        storage: PipelineStorage,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection | None,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        """Upload mode: EventBridge -> SQS -> the trigger Lambda, which starts one DAG run per upload."""
        self.trigger = QueueTrigger(
            self,
            "Trigger",
            storage=storage,
            alerting=self.alerting,
            landing_prefix=self.landing_prefix,
            code_path=TRIGGER_CODE,
            handler="mwaa_trigger.handler",
            description=f"Start the {self.dag_id} DAG on {self.environment_name} for each upload",
            environment={"MWAA_ENVIRONMENT_NAME": self.environment_name, "DAG_ID": self.dag_id},
            vpc=vpc,
            subnets=subnets,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        self.trigger.role.add_to_principal_policy(iam.PolicyStatement(actions=["airflow:InvokeRestApi"], resources=[self.user_role_arn]))
        self.trigger.function.node.add_dependency(self.environment)
        self.trigger_rule = self.trigger.rule
        self.dead_letter_queue = self.trigger.dead_letter_queue

    def _build_inbox_rule(self, storage: PipelineStorage) -> None:
        """On a schedule: the upload rule sends each event to the inbox only (no Lambda starts a run); delivery is
        retried, and what cannot be delivered waits in the dead-letter queue."""
        assert self.inbox is not None and self.schedule is not None
        self.trigger_rule = events.Rule(
            self,
            "UploadRule",
            description=f"CSV uploads under {self.landing_prefix} wait in the inbox for the next scheduled run of the {self.dag_id} DAG "
            f"({self.schedule.expression} {self.schedule.time_zone})",
            event_pattern=storage.upload_event_pattern(self.landing_prefix),
            targets=[
                RuleQueueTarget(self.inbox, dead_letter_queue=self.dead_letter_queue, retry_attempts=8, max_event_age=Duration.hours(6))
            ],
        )

    def _grant_claim(self, clean_job: CleanJob) -> None:
        """A scheduled run's extra access: the claim (the DAG's execution role) reads and deletes inbox messages and
        queries the ledger's failed uploads; the clean job tells the topic once about files it rejects as a whole."""
        assert self.inbox is not None and self.ledger is not None
        for statement in (
            iam.PolicyStatement(actions=["sqs:ReceiveMessage", "sqs:DeleteMessage"], resources=[self.inbox.queue_arn]),
            iam.PolicyStatement(actions=["kms:Decrypt"], resources=[self.alerting.key.key_arn]),
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[f"{self.ledger.table_arn}/index/{STATE_INDEX}"]),
        ):
            self.execution_role.add_to_principal_policy(statement)
        self.clean_job_policy = iam.ManagedPolicy(
            self,
            "CleanJobAlertPolicy",
            description=f"The clean job of the {self.dag_id} DAG's scheduled runs alerts once about each file it rejects as a whole",
            roles=[clean_job.role],
            statements=[
                iam.PolicyStatement(actions=["sns:Publish"], resources=[self.alerting.topic.topic_arn]),
                iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[self.alerting.key.key_arn]),
            ],
        )

    # --- builders ---------------------------------------------------------------------------------------------------

    def _build_key(self, removal_policy: RemovalPolicy) -> kms.Key:
        """The environment's key: MWAA creates its own grants (the default policy lets the account's principals,
        and so the deployer, create them); CloudWatch Logs may use it for the environment's `airflow-<name>-*` groups."""
        key = kms.Key(
            self,
            "Key",
            description=f"MWAA environment {self.environment_name}: metadata, logs, DAG bucket",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        allow_cloudwatch_logs(key, f"airflow-{self.environment_name}-*", sid="AllowMwaaLogGroups")
        return key

    def _build_dag_bucket(self, storage: PipelineStorage, removal_policy: RemovalPolicy) -> s3.Bucket:
        return storage.new_bucket(self, "DagBucket", log_prefix="mwaa-dags/", removal_policy=removal_policy, encryption_key=self.key)

    def _build_execution_role(self, catalog: PipelineCatalog, clean_job: CleanJob, target: LoadTargets) -> iam.Role:
        """MWAA's documented minimum, plus exactly the crawler, the clean job, the load target, the topic and the key."""
        stack = Stack.of(self)
        role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.CompositePrincipal(
                iam.ServicePrincipal("airflow.amazonaws.com"), iam.ServicePrincipal("airflow-env.amazonaws.com")
            ),
            description=f"MWAA environment {self.environment_name} running the {self.dag_id} DAG",
        )
        log_groups = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"airflow-{self.environment_name}-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        celery_queues = stack.format_arn(service="sqs", account="*", resource="airflow-celery-*")
        statements = [
            iam.PolicyStatement(actions=["airflow:PublishMetrics"], resources=[self.environment_arn]),
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                actions=["s3:ListAllMyBuckets"],
                resources=[self.dag_bucket.bucket_arn, self.dag_bucket.arn_for_objects("*")],
            ),
            iam.PolicyStatement(
                actions=[
                    "s3:GetObject",
                    "s3:GetObjectVersion",
                    "s3:GetBucketLocation",
                    "s3:GetBucketVersioning",
                    "s3:GetBucketPublicAccessBlock",
                    "s3:ListBucket",
                ],
                resources=[self.dag_bucket.bucket_arn, self.dag_bucket.arn_for_objects("*")],
            ),
            iam.PolicyStatement(actions=["s3:GetAccountPublicAccessBlock"], resources=["*"]),
            iam.PolicyStatement(
                actions=[
                    "logs:CreateLogStream",
                    "logs:CreateLogGroup",
                    "logs:PutLogEvents",
                    "logs:GetLogEvents",
                    "logs:GetLogRecord",
                    "logs:GetLogGroupFields",
                    "logs:GetQueryResults",
                ],
                resources=[log_groups],
            ),
            iam.PolicyStatement(actions=["logs:DescribeLogGroups"], resources=["*"]),
            iam.PolicyStatement(actions=["cloudwatch:PutMetricData"], resources=["*"]),
            iam.PolicyStatement(
                actions=[
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                    "sqs:ReceiveMessage",
                    "sqs:SendMessage",
                ],
                resources=[celery_queues],
            ),
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey*", "kms:Encrypt"],
                resources=[self.key.key_arn],
                conditions={"StringLike": {"kms:ViaService": [f"sqs.{stack.region}.amazonaws.com", f"s3.{stack.region}.amazonaws.com"]}},
            ),
            # The DAG's steps.
            iam.PolicyStatement(actions=["glue:StartCrawler", "glue:GetCrawler"], resources=[catalog.crawler_arn]),
            iam.PolicyStatement(actions=["glue:GetCrawlerMetrics"], resources=["*"]),
            iam.PolicyStatement(
                actions=["glue:GetJob", "glue:StartJobRun", "glue:GetJobRun", "glue:BatchStopJobRun"], resources=[clean_job.job_arn]
            ),
        ]
        for statement in statements:
            role.add_to_principal_policy(statement)
        for each in load_targets(target):
            each.grant_load(role)
            each.review_load_findings(role)
        self.alerting.grant_publish(role)
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            "These APIs have no resource-level permissions: MWAA checks the account's public access block, lists log groups "
            "to find its own and publishes its AmazonMWAA metrics; the crawler operator logs crawl timings (GetCrawlerMetrics).",
            matching=r"Resource::\*",
            actions=["s3:GetAccountPublicAccessBlock", "logs:DescribeLogGroups", "cloudwatch:PutMetricData", "glue:GetCrawlerMetrics"],
        )
        for rule_detail, actions, reason in (
            (
                r"Resource::arn:[^:]+:logs:[^:]+:.*:log-group:airflow-.*-\*",
                [
                    "logs:CreateLogStream",
                    "logs:CreateLogGroup",
                    "logs:PutLogEvents",
                    "logs:GetLogEvents",
                    "logs:GetLogRecord",
                    "logs:GetLogGroupFields",
                    "logs:GetQueryResults",
                ],
                "MWAA writes and reads its five log groups, named airflow-<environment>-<Module>.",
            ),
            (
                r"Resource::arn:[^:]+:sqs:[^:]+:\*:airflow-celery-\*",
                [
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                    "sqs:ReceiveMessage",
                    "sqs:SendMessage",
                ],
                "MWAA's Celery queue lives in an AWS-owned account with a generated airflow-celery-* name (MWAA's documented policy).",
            ),
            (
                r"Resource::<.*DagBucket.*\.Arn>/\*",
                [
                    "s3:GetObject",
                    "s3:GetObjectVersion",
                    "s3:GetBucketLocation",
                    "s3:GetBucketVersioning",
                    "s3:GetBucketPublicAccessBlock",
                    "s3:ListBucket",
                ],
                "MWAA reads every object of its own DAG bucket (DAGs, the DAG configuration).",
            ),
            (
                r"Action::kms:GenerateDataKey\*",
                ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*"],
                "The environment's own key, through SQS and S3 only (ViaService condition): data keys (GenerateDataKey*, "
                "whose variants MWAA uses) and Decrypt, DescribeKey, Encrypt, which CDK merges into the same statement.",
            ),
        ):
            acknowledge_findings(role, "AwsSolutions-IAM5", reason, matching=rule_detail, actions=actions)
        return role

    def _deployment_log_group(self, retention: logs.RetentionDays, removal_policy: RemovalPolicy) -> logs.LogGroup:
        """The DAG deployment handler's logs under the environment's key with the form's retention (CDK's own default
        group would keep them two years, unencrypted)."""
        name = f"/pipeline/{self.environment_name}/dag-deployment"
        allow_cloudwatch_logs(self.key, name, sid="AllowDagDeploymentLogs")
        return logs.LogGroup(
            self, "DagDeploymentLogs", log_group_name=name, encryption_key=self.key, retention=retention, removal_policy=removal_policy
        )

    def _build_environment(
        self,
        subnet_ids: list[str],
        *,
        environment_class: str,
        min_workers: int,
        max_workers: int,
        schedulers: int | None,
        webserver_access: str,
        weekly_maintenance_window_start: str | None,
    ) -> mwaa.CfnEnvironment:
        def log(level: str) -> mwaa.CfnEnvironment.ModuleLoggingConfigurationProperty:
            return mwaa.CfnEnvironment.ModuleLoggingConfigurationProperty(enabled=True, log_level=level)

        micro = environment_class == "mw1.micro"
        return mwaa.CfnEnvironment(
            self,
            "Environment",
            name=self.environment_name,
            airflow_version=self.airflow_version,
            environment_class=environment_class,
            min_workers=min_workers,
            max_workers=max_workers,
            schedulers=schedulers,
            min_webservers=1 if micro else 2,
            max_webservers=1 if micro else 2,
            execution_role_arn=self.execution_role.role_arn,
            source_bucket_arn=self.dag_bucket.bucket_arn,
            dag_s3_path="dags",
            kms_key=self.key.key_arn,
            webserver_access_mode=WEBSERVER_ACCESS[webserver_access],
            endpoint_management="SERVICE",
            network_configuration=mwaa.CfnEnvironment.NetworkConfigurationProperty(
                security_group_ids=[self.security_group.security_group_id], subnet_ids=subnet_ids
            ),
            logging_configuration=mwaa.CfnEnvironment.LoggingConfigurationProperty(
                dag_processing_logs=log("INFO"),
                scheduler_logs=log("INFO"),
                task_logs=log("INFO"),
                webserver_logs=log("INFO"),
                worker_logs=log("INFO"),
            ),
            airflow_configuration_options={"core.load_examples": "False"},
            weekly_maintenance_window_start=weekly_maintenance_window_start,
        )

    # --- metrics ----------------------------------------------------------------------------------------------------

    def _dag_metric(self, name: str, period: Duration | None) -> cloudwatch.Metric:
        # MWAA publishes DAG run durations per DAG in AmazonMWAA (dimensions Environment, Function=DAG, DAG);
        # the sample count is the number of runs.
        return cloudwatch.Metric(
            namespace="AmazonMWAA",
            metric_name=name,
            dimensions_map={"Environment": self.environment_name, "Function": "DAG", "DAG": self.dag_id},
            statistic="SampleCount",
            period=period if period is not None else Duration.minutes(5),
        )

    def metric_runs_failed(self, period: Duration | None = None) -> cloudwatch.Metric:
        """DAG runs that failed (MWAA's DAGDurationFailed, sample count). Default period: 5 minutes."""
        return self._dag_metric("DAGDurationFailed", period)

    def metric_runs_succeeded(self, period: Duration | None = None) -> cloudwatch.Metric:
        """DAG runs that succeeded (MWAA's DAGDurationSuccess, sample count). Default period: 5 minutes."""
        return self._dag_metric("DAGDurationSuccess", period)


def _airflow_schedule(schedule: Schedule | None, ledger: UploadLedger | None) -> str | None:
    """The DAG timetable's cron for `schedule` (None: upload mode); PipelinePropsError naming the setting."""
    if schedule is None:
        return None
    if not isinstance(schedule, Schedule):
        raise PipelinePropsError(f"schedule={schedule!r}: give a pipeline_constructs.schedules.Schedule(expression, time_zone)")
    if ledger is None:
        raise PipelinePropsError(
            f"schedule={schedule.expression!r} with ledger=None: a scheduled DAG run claims its uploads in the upload ledger; "
            "pass ledger=UploadLedger(...) (the stateful stack's `ledger`)"
        )
    try:
        return airflow_cron(schedule)
    except ScheduleError as error:
        raise PipelinePropsError(f"schedule={schedule.expression!r} (time_zone {schedule.time_zone!r}): {error}") from None


def _selection_kwargs(subnets: ec2.SubnetSelection | None) -> dict[str, Any]:
    if subnets is None:
        return {"subnet_type": ec2.SubnetType.PRIVATE_ISOLATED}
    return {
        "subnet_group_name": subnets.subnet_group_name,
        "subnet_type": subnets.subnet_type,
        "availability_zones": subnets.availability_zones,
        "one_per_az": subnets.one_per_az,
        "subnets": subnets.subnets,
    }
