"""The MWAA Serverless form: the pipeline as an Amazon MWAA Serverless workflow (Airflow 3, billed per task-hour,
nothing while idle), started per upload.

aws-cdk-lib has only the L1 `aws_mwaaserverless.CfnWorkflow`. This construct adds the workflow's YAML definition
(written from the MWAA DAG's step description, so both run the same steps), its bucket, its role, its log group, the
upload trigger (EventBridge -> SQS -> Lambda -> StartWorkflowRun) and the failure path. The service ignores DAG
callbacks, has no event trigger yet, and its operators cannot write DynamoDB; the trigger Lambda and the service's
events cover all three: with a ledger, the trigger takes the upload before it starts the run, the task-running and
run-succeeded events record the steps and the outcome, the run-failed events the failure
(runtime/upload_lambdas/mwaa_serverless.py), and the clean job writes its counts. The Lambdas that take the outcome
events count the runs (one embedded-metric-format line per outcome, `metric_runs_succeeded` / `metric_runs_failed`),
with a ledger or without one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from aws_cdk import (
    Duration,
    Names,
    RemovalPolicy,
    Stack,
    aws_cloudwatch as cloudwatch,
    aws_events as events,
    aws_events_targets as targets,
    aws_iam as iam,
    aws_lambda as lambda_,
    aws_lambda_destinations as destinations,
    aws_logs as logs,
    aws_mwaaserverless as mwaaserverless,
    aws_s3_deployment as s3deploy,
    aws_sqs as sqs,
)

from constructs import Construct

from ..acknowledgements import acknowledge, acknowledge_findings
from ..alerting import PipelineAlerting
from ..catalog import PipelineCatalog
from ..clean_job import CleanJob
from ..deployments import review_bucket_deployment
from ..keys import allow_cloudwatch_logs
from ..lambda_code import stage_modules
from ..ledger import UploadLedger
from ..queue_trigger import QueueTrigger
from ..runtime.mwaa_serverless.workflow_yaml import MAX_EXECUTION_TIMEOUT_SECONDS, MAX_RETRIES, workflow_yaml
from ..runtime.upload_lambdas.serverless_runs import DATASET_DIMENSION, RUNS_FAILED, RUNS_SUCCEEDED, WORKFLOW_DIMENSION
from ..schedules import Schedule
from ..storage import PipelineStorage
from ..targets.load_target import LoadTargets, load_targets
from ..validation import PipelinePropsError, check_positive
from .airflow_steps import airflow_step_settings, grant_rows_check

FORM_NAME = "mwaa_serverless"
LAMBDA_MODULES = ("runtime/upload_lambdas/*.py", "runtime/upload_ledger.py", "runtime/pipeline_plan.py")
"""The Lambdas' handler folder and the ledger modules they import as top-level modules, copied flat into their asset."""
DEFINITION_KEY = "workflow/pipeline.yaml"
RUN_FAILED_DETAIL_TYPES = (
    "MWAA Serverless Workflow Run Failed",
    "MWAA Serverless Workflow Run Timeout",
    "MWAA Serverless Workflow Run Stopped",
)
RUN_SUCCEEDED_DETAIL_TYPE = "MWAA Serverless Workflow Run Succeeded"
TASK_RUNNING_DETAIL_TYPE = "MWAA Serverless Task Running"
RUN_LOOKUP_ACTIONS = ("airflow-serverless:GetWorkflowRun", "airflow-serverless:ListTaskInstances", "airflow-serverless:GetTaskInstance")


def stage_lambda_code(target: Path) -> Path:
    """Copy the Lambdas' folder and the ledger modules they import into `target` (their asset); returns `target`."""
    return stage_modules(target, LAMBDA_MODULES, purpose="the MWAA Serverless Lambdas", flat=True)


AIRFLOW_VERSIONS = ("3.3.1", "3.2.1")


def check_serverless_schedule(schedule: Schedule | None) -> None:
    """Refuse a schedule for this form, with what it would take. The service starts a scheduled run from the
    workflow definition's cron (its ScheduleConfiguration holds a CronExpression only: no time zone) with no run
    parameters, so the run must claim its uploads itself; the definition is one YAML file (no module of ours reaches
    the service's workers, so no task writes the ledger), and the Lambdas that keep this form's ledger identify a run
    by the parameters the trigger gave it. Until the claim runs as a Lambda task whose result those Lambdas read back
    (GetTaskInstance returns a task's XCom), a scheduled run could neither take nor record an upload: refused, so a
    configured schedule is never silently ignored."""
    if schedule is None:
        return
    expression = schedule.expression if isinstance(schedule, Schedule) else schedule
    raise PipelinePropsError(
        f"schedule={expression!r}: the MWAA Serverless form starts one run per upload only (its scheduled runs cannot claim "
        "their uploads in the ledger yet); remove trigger.mwaa_serverless from the environment's config, or schedule the "
        "MWAA, Glue Workflow or Step Functions form"
    )


class MwaaServerlessPipeline(Construct):
    """Upload -> EventBridge -> SQS -> Lambda (StartWorkflowRun) -> an MWAA Serverless workflow run: crawl, clean, load.

    Failures: the service's run-failed, run-timed-out and run-stopped events -> a small Lambda that looks the run up,
    publishes one SNS message (pipeline, object, run_id, failed_step, error, cause, execution), records the failure
    in the ledger and counts the run (RunsFailed, alarmed). Successes: the run-succeeded events -> a second Lambda
    (`progress_function`) that counts the run (RunsSucceeded) and, with a ledger, records the steps and the outcome
    (from the task-running events too). Both counts are embedded-metric-format lines in the clean job's metrics
    namespace, dimensions Dataset and WorkflowName; with a ledger a repeated event is not counted twice.
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
        ledger: UploadLedger | None = None,
        workflow_name: str | None = None,
        landing_prefix: str | None = None,
        max_active_runs: int = 4,
        task_retries: int = 3,
        airflow_version: str = "3.3.1",
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        schedule: Schedule | None = None,
    ) -> None:
        """
        :param storage: the landing bucket whose uploads start runs; its key encrypts the definition bucket and the
            log group, and its access-log bucket receives the definition bucket's logs.
        :param catalog: the raw crawler the workflow runs.
        :param clean_job: the Glue job the workflow runs for each upload.
        :param target: where a run is loaded (AthenaTarget or RedshiftTarget), or a list of one of each: one load task
            per target after the rows check, in parallel; a new run of an upload loads only the targets the ledger does
            not show loaded (the trigger passes them as the `loaded_targets` parameter).
        :param alerting: the topic of failure messages and alarms, and the key of the trigger queues.
        :param ledger: the upload ledger this form keeps current (the trigger takes the upload, the service's events
            record each step, the outcome and the failure; the clean job writes its counts). Default: none.
        :param workflow_name: Default: a name unique in the app, derived from the construct path.
        :param landing_prefix: uploads under this prefix start this form. Default: '<storage prefix>mwaa_serverless/'.
        :param max_active_runs: runs at once; more wait queued. Default: 4.
        :param task_retries: retries of each task, 0 to 3 (the service's limit), exponential backoff from one minute.
            Default: 3.
        :param airflow_version: the Amazon provider generation the operators target: '3.3.1' (GlueCrawlerRunOperator)
            or '3.2.1' (GlueCrawlerOperator). Default: '3.3.1'.
        :param log_retention: the workflow's and the Lambdas' log retention. Default: one month.
        :param removal_policy: for the definition bucket, the queues and the log groups. Default: RETAIN.
        :param schedule: not available for this form yet; anything but None is refused (see `check_serverless_schedule`).
            Default: None (one workflow run per upload).
        """
        super().__init__(scope, construct_id)
        check_serverless_schedule(schedule)
        self.targets = load_targets(target)
        """The load targets (one, or one of each kind loaded in parallel)."""
        check_positive("max_active_runs", max_active_runs)
        if isinstance(task_retries, bool) or not isinstance(task_retries, int) or not 0 <= task_retries <= MAX_RETRIES:
            raise PipelinePropsError(f"task_retries={task_retries!r}: MWAA Serverless accepts 0 to {MAX_RETRIES} retries per task")
        if airflow_version not in AIRFLOW_VERSIONS:
            raise PipelinePropsError(f"airflow_version={airflow_version!r}: use one of {', '.join(AIRFLOW_VERSIONS)}")
        stack = Stack.of(self)
        self.workflow_name = workflow_name if workflow_name is not None else Names.unique_resource_name(self, max_length=64, separator="-")
        self.dag_id = f"{clean_job.contract.name}_pipeline"
        self.landing_prefix = storage.claim_prefix(
            self, "landing", landing_prefix if landing_prefix is not None else storage.landing_prefix_for(FORM_NAME)
        )
        self.alerting = alerting
        self.key = storage.key
        self.dataset = clean_job.contract.name
        self.metrics_namespace = clean_job.metrics_namespace
        """The namespace of the run counts the Lambdas publish (the clean job's)."""

        # --- the definition -----------------------------------------------------------------------------------------
        self.workflow_config = airflow_step_settings(
            self,
            dag_id=self.dag_id,
            airflow_version=airflow_version,
            storage=storage,
            catalog=catalog,
            clean_job=clean_job,
            target=target,
            topic_arn=self.alerting.topic.topic_arn,
            max_active_runs=max_active_runs,
            task_retries=task_retries,
            max_timeout_seconds=MAX_EXECUTION_TIMEOUT_SECONDS,  # a task runs at most an hour on MWAA Serverless
        )
        self.ledger = ledger
        if ledger is not None:
            self.workflow_config.update({"ledger_table": ledger.table_name, "ledger_ttl_days": ledger.retention_days})
        self.definition_yaml = workflow_yaml(self.workflow_config)
        self.definition_bucket = storage.new_bucket(
            self, "DefinitionBucket", log_prefix="mwaa-serverless-definitions/", removal_policy=removal_policy
        )
        self.definition_deployment = s3deploy.BucketDeployment(
            self,
            "DeployDefinition",
            sources=[s3deploy.Source.data(DEFINITION_KEY, self.definition_yaml)],
            destination_bucket=self.definition_bucket,
            prune=False,
            log_group=self._encrypted_log_group("DeploymentLogs", "definition-deployment", log_retention, removal_policy),
        )
        review_bucket_deployment(stack, what="the workflow definition")
        self.log_group = self._encrypted_log_group("WorkflowLogs", "workflow", log_retention, removal_policy)

        # --- the workflow ---------------------------------------------------------------------------------------------
        self.role = self._build_role(catalog, clean_job, target)
        grant_rows_check(self.role, storage, clean_job)
        self.workflow = mwaaserverless.CfnWorkflow(
            self,
            "Workflow",
            name=self.workflow_name,
            description=f"{clean_job.contract.name}: crawl, clean and load one uploaded object",
            definition_s3_location=mwaaserverless.CfnWorkflow.S3LocationProperty(
                bucket=self.definition_bucket.bucket_name, object_key=DEFINITION_KEY
            ),
            role_arn=self.role.role_arn,
            encryption_configuration=mwaaserverless.CfnWorkflow.EncryptionConfigurationProperty(
                type="CUSTOMER_MANAGED_KEY", kms_key_id=self.key.key_arn
            ),
            logging_configuration=mwaaserverless.CfnWorkflow.LoggingConfigurationProperty(log_group_name=self.log_group.log_group_name),
        )
        # The service snapshots the definition when the workflow is created or updated: deploy the file first.
        self.workflow.node.add_dependency(self.definition_deployment)
        self.workflow.node.add_dependency(self.role)
        self.workflow_arn = self.workflow.attr_workflow_arn

        self.ledger_environment = (
            {"LEDGER_TABLE": ledger.table_name, "LEDGER_TTL_DAYS": str(ledger.retention_days)} if ledger is not None else {}
        )
        self.metrics_environment = {
            "METRICS_NAMESPACE": self.metrics_namespace,
            "DATASET": self.dataset,
            "WORKFLOW_NAME": self.workflow_name,
        }
        """Where the event Lambdas count runs (runtime/upload_lambdas/mwaa_serverless.count_run)."""
        # The Lambdas' asset is staged (their folder and the ledger modules) while they are built.
        with tempfile.TemporaryDirectory(prefix="mwaa-serverless-lambdas-") as staging:
            code = lambda_.Code.from_asset(str(stage_lambda_code(Path(staging))), exclude=["__pycache__", "*.pyc"])

            # --- the trigger: uploads -> the ledger -> StartWorkflowRun --------------------------------------------------
            self.trigger = QueueTrigger(
                self,
                "Trigger",
                storage=storage,
                alerting=alerting,
                landing_prefix=self.landing_prefix,
                code_path=Path(staging),
                handler="mwaa_serverless.start",
                description=f"Start the {self.dag_id} MWAA Serverless workflow for each upload",
                environment={"WORKFLOW_ARN": self.workflow_arn, **self.ledger_environment},
                log_retention=log_retention,
                removal_policy=removal_policy,
            )
            self.trigger.role.add_to_principal_policy(
                iam.PolicyStatement(actions=["airflow-serverless:StartWorkflowRun"], resources=[self.workflow_arn])
            )
            if ledger is not None:
                ledger.grant_write(self.trigger.role)
            self.trigger_rule = self.trigger.rule
            self.dead_letter_queue = self.trigger.dead_letter_queue

            # --- failures -> one message each; progress -> the ledger --------------------------------------------------
            self._build_failure_path(code, clean_job, log_retention, removal_policy)
            self._build_progress_path(code, log_retention, removal_policy)

        # --- alarms ----------------------------------------------------------------------------------------------------
        period = Duration.minutes(5)
        self.runs_failed_alarm = alerting.alarm_when_any(
            self,
            "RunsFailed",
            self.metric_runs_failed(period=period),
            f"A run of the {self.dag_id} MWAA Serverless workflow failed, timed out or was stopped",
        )
        self.report_failures_alarm = alerting.alarm_when_any(
            self,
            "UnreportedFailuresAlarm",
            self.report_dead_letter_queue.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
            f"A failed run of {self.dag_id} could not be reported; the event waits in the dead-letter queue",
        )
        self.alarms: list[cloudwatch.Alarm] = [self.runs_failed_alarm, self.report_failures_alarm, *self.trigger.alarms]
        self.alarms.append(
            alerting.alarm_when_any(
                self,
                "UnrecordedProgressAlarm",
                self.progress_dead_letter_queue.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
                (
                    f"A step or the outcome of a {self.dag_id} run could not be written to the upload ledger or counted; the "
                    "event waits in the dead-letter queue (pipeline-ops replay-dead-letters)"
                    if ledger is not None
                    else f"A successful {self.dag_id} run could not be counted; the event waits in the dead-letter queue"
                ),
            )
        )

    # --- builders -------------------------------------------------------------------------------------------------------

    def _build_role(self, catalog: PipelineCatalog, clean_job: CleanJob, target: LoadTargets) -> iam.Role:
        """The workflow's execution role: exactly the crawler, the clean job, the load target, the topic and the key."""
        role = iam.Role(
            self,
            "WorkflowRole",
            assumed_by=iam.ServicePrincipal("airflow-serverless.amazonaws.com"),
            description=f"MWAA Serverless workflow {self.workflow_name} ({self.dag_id})",
        )
        role.add_to_principal_policy(iam.PolicyStatement(actions=["glue:StartCrawler", "glue:GetCrawler"], resources=[catalog.crawler_arn]))
        role.add_to_principal_policy(iam.PolicyStatement(actions=["glue:GetCrawlerMetrics"], resources=["*"]))
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["glue:GetJob", "glue:StartJobRun", "glue:GetJobRun", "glue:BatchStopJobRun"], resources=[clean_job.job_arn]
            )
        )
        self.definition_bucket.grant_read(role, DEFINITION_KEY)
        self.key.grant_encrypt_decrypt(role)
        self.log_group.grant_write(role)
        for each in load_targets(target):
            each.grant_load(role)
            each.review_load_findings(role)
        self.alerting.grant_publish(role)
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            "The crawler operator logs crawl timings; GetCrawlerMetrics has no resource-level permission.",
            matching=r"Resource::\*",
            actions=["glue:GetCrawlerMetrics"],
        )
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            "Reads the one workflow definition object; CDK's read grant names its actions with wildcards (s3:GetObject*, s3:GetBucket*, s3:List*).",
            matching=r"(Action::s3:(GetObject|GetBucket|List)\*|Resource::.*DefinitionBucket.*)",
            actions=["s3:GetObject*", "s3:GetBucket*", "s3:List*"],
        )
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            "Data keys of the pipeline's key, for the definition, the logs and the encrypted workflow (CDK's encrypt/decrypt "
            "grant, merged with DescribeKey into one statement on that one key).",
            matching=r"Action::kms:(ReEncrypt|GenerateDataKey)\*",
            actions=["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
        )
        return role

    def _encrypted_log_group(
        self, construct_id: str, purpose: str, retention: logs.RetentionDays, removal_policy: RemovalPolicy
    ) -> logs.LogGroup:
        """A log group `/pipeline/<workflow>/<purpose>` under the pipeline key, which CloudWatch Logs may use for it."""
        name = f"/pipeline/{self.workflow_name}/{purpose}"
        allow_cloudwatch_logs(self.key, name, sid=f"AllowLogs{construct_id}")
        return logs.LogGroup(
            self, construct_id, log_group_name=name, encryption_key=self.key, retention=retention, removal_policy=removal_policy
        )

    def _event_function(
        self,
        prefix: str,
        *,
        code: lambda_.Code,
        handler: str,
        description: str,
        purpose: str,
        environment: dict[str, str],
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> tuple[lambda_.Function, iam.Role, sqs.Queue]:
        """A Lambda the service's events invoke (`<prefix>Function`): its role (logs, the run lookups, the ledger's
        writes), its log group, and the dead-letter queue of invocations that failed after Lambda's retries (the same
        queue keeps events its rule could not deliver). It counts runs by printing embedded-metric-format lines to its
        log group (METRICS_NAMESPACE, DATASET, WORKFLOW_NAME): CloudWatch Logs makes the metrics, no permission needed."""
        dead_letter_queue = self.alerting.new_dead_letter_queue(self, f"{prefix}DeadLetterQueue", removal_policy=removal_policy)
        log_group = self._encrypted_log_group(f"{prefix}Logs", purpose, log_retention, removal_policy)
        role = iam.Role(self, f"{prefix}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=description[:1000])
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn])
        )
        role.add_to_principal_policy(iam.PolicyStatement(actions=list(RUN_LOOKUP_ACTIONS), resources=[self.workflow_arn]))
        if self.ledger is not None:
            self.ledger.grant_write(role)
        function = lambda_.Function(
            self,
            f"{prefix}Function",
            runtime=lambda_.Runtime.PYTHON_3_12,
            code=code,
            handler=handler,
            description=description,
            role=role,
            timeout=Duration.seconds(30),
            memory_size=256,
            environment={"WORKFLOW_ARN": self.workflow_arn, **self.metrics_environment, **environment, **self.ledger_environment},
            log_group=log_group,
            environment_encryption=self.key,
            retry_attempts=2,
            # An event that still fails after Lambda's own retries is kept (alarmed), never dropped.
            on_failure=destinations.SqsDestination(dead_letter_queue),
        )
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            "Data keys of the alert key (the encrypted topic and dead-letter queue) and of the ledger's key (its encrypted table).",
            matching=r"Action::kms:(ReEncrypt|GenerateDataKey)\*",
            actions=["kms:Decrypt", "kms:Encrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
        )
        reason = "Python 3.12 is the runtime of the Airflow 3 images MWAA runs; the Lambda code is tested on it."
        for finding in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion"):
            acknowledge(function, finding, reason)
        acknowledge(
            function,
            "Serverless-LambdaTracing",
            "A short function called by EventBridge; its logs carry what it read and wrote, tracing would add nothing.",
        )
        acknowledge(
            function,
            "Serverless-LambdaDLQ",
            "EventBridge invokes it; events it could not take are kept in the rule target's dead-letter queue (alarmed).",
        )
        return function, role, dead_letter_queue

    def _event_target(self, function: lambda_.Function, dead_letter_queue: sqs.Queue) -> targets.LambdaFunction:
        return targets.LambdaFunction(function, dead_letter_queue=dead_letter_queue, retry_attempts=8, max_event_age=Duration.hours(6))

    def _build_failure_path(
        self, code: lambda_.Code, clean_job: CleanJob, log_retention: logs.RetentionDays, removal_policy: RemovalPolicy
    ) -> None:
        """Run-failed, timed-out and stopped events of this workflow -> the report Lambda -> one SNS message per run, and
        the ledger's `failed`."""
        self.report_function, self.report_role, self.report_dead_letter_queue = self._event_function(
            "Report",
            code=code,
            handler="mwaa_serverless.report_failure",
            description=f"Report a failed run of the {self.dag_id} MWAA Serverless workflow to the alert topic",
            purpose="failure-reports",
            environment={"TOPIC_ARN": self.alerting.topic.topic_arn},
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        self.alerting.grant_publish(self.report_role)
        self.failure_rule = events.Rule(
            self,
            "RunFailedRule",
            description=f"A run of the {self.dag_id} MWAA Serverless workflow failed, timed out or was stopped",
            event_pattern=events.EventPattern(
                source=["aws.airflow-serverless"], detail_type=list(RUN_FAILED_DETAIL_TYPES), resources=[self.workflow_arn]
            ),
            targets=[self._event_target(self.report_function, self.report_dead_letter_queue)],
        )

    def _build_progress_path(self, code: lambda_.Code, log_retention: logs.RetentionDays, removal_policy: RemovalPolicy) -> None:
        """Run-succeeded events -> the progress Lambda, which counts the run (metric_runs_succeeded) and, with a ledger,
        records the outcome; with a ledger the task-running events go to it too (the steps)."""
        self.task_running_rule: events.Rule | None = None
        with_ledger = self.ledger is not None
        self.progress_function, _, progress_dead_letter_queue = self._event_function(
            "RunEvents",
            code=code,
            handler="mwaa_serverless.record_progress",
            description=(
                f"Count the successful runs of the {self.dag_id} MWAA Serverless workflow"
                + (" and record their steps and outcome in the upload ledger" if with_ledger else "")
            ),
            purpose="run-events",
            environment={},
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        self.progress_dead_letter_queue: sqs.Queue = progress_dead_letter_queue
        self.success_rule = events.Rule(
            self,
            "RunSucceededRule",
            description=f"A run of the {self.dag_id} MWAA Serverless workflow succeeded: counted"
            + (", its outcome goes to the upload ledger" if with_ledger else ""),
            event_pattern=events.EventPattern(
                source=["aws.airflow-serverless"], detail_type=[RUN_SUCCEEDED_DETAIL_TYPE], resources=[self.workflow_arn]
            ),
            targets=[self._event_target(self.progress_function, self.progress_dead_letter_queue)],
        )
        if not with_ledger:
            return
        self.task_running_rule = events.Rule(
            self,
            "TaskRunningRule",
            description=f"A task of a {self.dag_id} MWAA Serverless run began: its step goes to the upload ledger",
            event_pattern=events.EventPattern(
                source=["aws.airflow-serverless"], detail_type=[TASK_RUNNING_DETAIL_TYPE], resources=[self.workflow_arn]
            ),
            targets=[self._event_target(self.progress_function, self.progress_dead_letter_queue)],
        )

    # --- metrics ----------------------------------------------------------------------------------------------------

    def _run_count(self, metric_name: str, period: Duration | None) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=self.metrics_namespace,
            metric_name=metric_name,
            dimensions_map={DATASET_DIMENSION: self.dataset, WORKFLOW_DIMENSION: self.workflow_name},
            statistic="Sum",
            period=period if period is not None else Duration.minutes(5),
        )

    def metric_runs_failed(self, period: Duration | None = None) -> cloudwatch.Metric:
        """Runs that failed, timed out or were stopped, as the failure reporter counts them: one RunsFailed line per run
        (embedded metric format; dimensions Dataset, WorkflowName), not the failure rule's best-effort MatchedEvents.
        Default period: 5 minutes."""
        return self._run_count(RUNS_FAILED, period)

    def metric_runs_succeeded(self, period: Duration | None = None) -> cloudwatch.Metric:
        """Runs that succeeded, as the progress Lambda counts them: one RunsSucceeded line per run (embedded metric
        format; dimensions Dataset, WorkflowName), not the success rule's best-effort MatchedEvents. Default period:
        5 minutes."""
        return self._run_count(RUNS_SUCCEEDED, period)
