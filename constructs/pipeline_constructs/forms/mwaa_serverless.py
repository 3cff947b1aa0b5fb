"""The MWAA Serverless form: the pipeline as an Amazon MWAA Serverless workflow (Airflow 3, billed per task-hour,
nothing while idle), started per upload.

aws-cdk-lib has only the L1 `aws_mwaaserverless.CfnWorkflow`. This construct adds the workflow's YAML definition
(written from the MWAA DAG's step description, so both run the same steps), its bucket, its role, its log group, the
upload trigger (EventBridge -> SQS -> Lambda -> StartWorkflowRun) and the failure path. The service ignores DAG
callbacks and has no event trigger yet; the trigger Lambda and the failure events cover both.
"""

from __future__ import annotations

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
)

from constructs import Construct

from ..acknowledgements import acknowledge, acknowledge_findings
from ..alerting import PipelineAlerting, metric_rule_matches
from ..catalog import PipelineCatalog
from ..clean_job import CleanJob
from ..deployments import review_bucket_deployment
from ..keys import allow_cloudwatch_logs
from ..queue_trigger import QueueTrigger
from ..runtime.mwaa_serverless.workflow_yaml import MAX_EXECUTION_TIMEOUT_SECONDS, MAX_RETRIES, workflow_yaml
from ..storage import PipelineStorage
from ..targets.load_target import LoadTarget, check_load_target
from ..validation import PipelinePropsError, check_positive
from .airflow_steps import airflow_step_settings, grant_rows_check

FORM_NAME = "mwaa_serverless"
LAMBDA_CODE = Path(__file__).resolve().parent.parent / "runtime" / "upload_lambdas"
DEFINITION_KEY = "workflow/pipeline.yaml"
RUN_FAILED_DETAIL_TYPES = ("MWAA Serverless Workflow Run Failed", "MWAA Serverless Workflow Run Timeout")
RUN_SUCCEEDED_DETAIL_TYPE = "MWAA Serverless Workflow Run Succeeded"
AIRFLOW_VERSIONS = ("3.3.1", "3.2.1")


class MwaaServerlessPipeline(Construct):
    """Upload -> EventBridge -> SQS -> Lambda (StartWorkflowRun) -> an MWAA Serverless workflow run: crawl, clean, load.

    Failures: the service's run-failed and run-timed-out events -> a small Lambda that looks the run up and publishes
    one SNS message (pipeline, object, run_id, failed_step, error, cause); an alarm counts the events.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: PipelineStorage,
        catalog: PipelineCatalog,
        clean_job: CleanJob,
        target: LoadTarget,
        alerting: PipelineAlerting,
        workflow_name: str | None = None,
        landing_prefix: str | None = None,
        max_active_runs: int = 4,
        task_retries: int = 3,
        airflow_version: str = "3.3.1",
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        """
        :param storage: the landing bucket whose uploads start runs; its key encrypts the definition bucket and the
            log group, and its access-log bucket receives the definition bucket's logs.
        :param catalog: the raw crawler the workflow runs.
        :param clean_job: the Glue job the workflow runs for each upload.
        :param target: where a run is loaded (AthenaTarget or RedshiftTarget).
        :param alerting: the topic of failure messages and alarms, and the key of the trigger queues.
        :param workflow_name: Default: a name unique in the app, derived from the construct path.
        :param landing_prefix: uploads under this prefix start this form. Default: '<storage prefix>mwaa_serverless/'.
        :param max_active_runs: runs at once; more wait queued. Default: 4.
        :param task_retries: retries of each task, 0 to 3 (the service's limit), exponential backoff from one minute.
            Default: 3.
        :param airflow_version: the Amazon provider generation the operators target: '3.3.1' (GlueCrawlerRunOperator)
            or '3.2.1' (GlueCrawlerOperator). Default: '3.3.1'.
        :param log_retention: the workflow's and the Lambdas' log retention. Default: one month.
        :param removal_policy: for the definition bucket, the queues and the log groups. Default: RETAIN.
        """
        super().__init__(scope, construct_id)
        check_load_target(target)
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

        # --- the trigger: uploads -> StartWorkflowRun -----------------------------------------------------------------
        self.trigger = QueueTrigger(
            self,
            "Trigger",
            storage=storage,
            alerting=alerting,
            landing_prefix=self.landing_prefix,
            code_path=LAMBDA_CODE,
            handler="mwaa_serverless.start",
            description=f"Start the {self.dag_id} MWAA Serverless workflow for each upload",
            environment={"WORKFLOW_ARN": self.workflow_arn},
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        self.trigger.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["airflow-serverless:StartWorkflowRun"], resources=[self.workflow_arn])
        )
        self.trigger_rule = self.trigger.rule
        self.dead_letter_queue = self.trigger.dead_letter_queue

        # --- failures -> one message each ------------------------------------------------------------------------------
        self._build_failure_path(clean_job, log_retention, removal_policy)

        # --- alarms ----------------------------------------------------------------------------------------------------
        period = Duration.minutes(5)
        self.runs_failed_alarm = alerting.alarm_when_any(
            self,
            "RunsFailed",
            self.metric_runs_failed(period=period),
            f"A run of the {self.dag_id} MWAA Serverless workflow failed or timed out",
        )
        self.report_failures_alarm = alerting.alarm_when_any(
            self,
            "UnreportedFailuresAlarm",
            self.report_dead_letter_queue.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
            f"A failed run of {self.dag_id} could not be reported; the event waits in the dead-letter queue",
        )
        self.alarms: list[cloudwatch.Alarm] = [self.runs_failed_alarm, self.report_failures_alarm, *self.trigger.alarms]

    # --- builders -------------------------------------------------------------------------------------------------------

    def _build_role(self, catalog: PipelineCatalog, clean_job: CleanJob, target: LoadTarget) -> iam.Role:
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
        target.grant_load(role)
        target.review_load_findings(role)
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

    def _build_failure_path(self, clean_job: CleanJob, log_retention: logs.RetentionDays, removal_policy: RemovalPolicy) -> None:
        """Run-failed and run-timed-out events of this workflow -> the report Lambda -> one SNS message per run."""
        self.report_dead_letter_queue = self.alerting.new_dead_letter_queue(self, "ReportDeadLetterQueue", removal_policy=removal_policy)
        self.report_log_group = self._encrypted_log_group("ReportLogs", "failure-reports", log_retention, removal_policy)
        self.report_role = iam.Role(
            self, "ReportRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=f"Report failed runs of {self.dag_id}"
        )
        self.report_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[self.report_log_group.log_group_arn])
        )
        self.report_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["airflow-serverless:GetWorkflowRun", "airflow-serverless:ListTaskInstances", "airflow-serverless:GetTaskInstance"],
                resources=[self.workflow_arn],
            )
        )
        self.alerting.grant_publish(self.report_role)
        self.report_function = lambda_.Function(
            self,
            "ReportFunction",
            runtime=lambda_.Runtime.PYTHON_3_12,
            code=lambda_.Code.from_asset(str(LAMBDA_CODE), exclude=["__pycache__", "*.pyc"]),
            handler="mwaa_serverless.report_failure",
            description=f"Report a failed run of the {self.dag_id} MWAA Serverless workflow to the alert topic",
            role=self.report_role,
            timeout=Duration.seconds(30),
            memory_size=256,
            environment={"WORKFLOW_ARN": self.workflow_arn, "TOPIC_ARN": self.alerting.topic.topic_arn, "DATASET": clean_job.contract.name},
            log_group=self.report_log_group,
            environment_encryption=self.key,
            retry_attempts=2,
            # A report that still fails after Lambda's own retries is kept (alarmed), never dropped.
            on_failure=destinations.SqsDestination(self.report_dead_letter_queue),
        )
        acknowledge_findings(
            self.report_role,
            "AwsSolutions-IAM5",
            "Data keys of the alert key, to publish to the encrypted topic and to keep failed reports in the encrypted dead-letter queue.",
            matching=r"Action::kms:(ReEncrypt|GenerateDataKey)\*",
            actions=["kms:Decrypt", "kms:Encrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
        )
        acknowledge(
            self.report_function,
            "AwsSolutions-L1",
            "Python 3.12 is the runtime of the Airflow 3 images MWAA runs; the report code is tested on it.",
        )
        for finding in ("Serverless-LambdaLatestVersion",):
            acknowledge(
                self.report_function,
                finding,
                "Python 3.12 is the runtime of the Airflow 3 images MWAA runs; the report code is tested on it.",
            )
        acknowledge(
            self.report_function,
            "Serverless-LambdaTracing",
            "A short report function called by EventBridge; its logs carry the whole message, tracing would add nothing.",
        )
        acknowledge(
            self.report_function,
            "Serverless-LambdaDLQ",
            "EventBridge invokes it; events it could not take are kept in the rule target's dead-letter queue (alarmed).",
        )
        self.failure_rule = events.Rule(
            self,
            "RunFailedRule",
            description=f"A run of the {self.dag_id} MWAA Serverless workflow failed or timed out",
            event_pattern=events.EventPattern(
                source=["aws.airflow-serverless"], detail_type=list(RUN_FAILED_DETAIL_TYPES), resources=[self.workflow_arn]
            ),
            targets=[
                targets.LambdaFunction(
                    self.report_function, dead_letter_queue=self.report_dead_letter_queue, retry_attempts=8, max_event_age=Duration.hours(6)
                )
            ],
        )
        # Counts successful runs (metric_runs_succeeded); it has no target.
        self.success_rule = events.Rule(
            self,
            "RunSucceededRule",
            description=f"A run of the {self.dag_id} MWAA Serverless workflow succeeded (counted, no target)",
            event_pattern=events.EventPattern(
                source=["aws.airflow-serverless"], detail_type=[RUN_SUCCEEDED_DETAIL_TYPE], resources=[self.workflow_arn]
            ),
        )
        acknowledge(
            self.success_rule,
            "Serverless-EventBusDLQ",
            "This rule has no target, so nothing can fail to be delivered: it only counts successful runs (MatchedEvents).",
        )

    # --- metrics ----------------------------------------------------------------------------------------------------

    def metric_runs_failed(self, period: Duration | None = None) -> cloudwatch.Metric:
        """Runs that failed or timed out (events the failure rule matched). Default period: 5 minutes."""
        return metric_rule_matches(self.failure_rule, period)

    def metric_runs_succeeded(self, period: Duration | None = None) -> cloudwatch.Metric:
        """Runs that succeeded (events the success rule matched). Default period: 5 minutes."""
        return metric_rule_matches(self.success_rule, period)
