"""The Glue Workflow form: uploads notify a Glue workflow whose triggers crawl, clean and load; failures -> SNS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import (
    Duration,
    RemovalPolicy,
    Stack,
    aws_cloudwatch as cloudwatch,
    aws_events as events,
    aws_glue as glue,
    aws_iam as iam,
)
from aws_cdk.interfaces.aws_glue import ITriggerRef

from constructs import Construct

from ..acknowledgements import acknowledge, acknowledge_findings
from ..alerting import PipelineAlerting, metric_rule_matches
from ..catalog import GLUE_ASSET_READ_ACTIONS, PipelineCatalog, review_glue_logs
from ..clean_job import CleanJob
from ..ledger import KEY_WRITE_ACTIONS, WRITE_ACTIONS, UploadLedger
from ..queue_trigger import upload_inbox
from ..runtime.glue_load_job import RUN_ID_TOKEN, WORKFLOW_RUNS_SUCCEEDED
from ..runtime.pipeline_plan import CRAWL, DEFAULT_TIMINGS, LOAD
from ..runtime.upload_ledger import STATE_INDEX
from ..schedules import Schedule, ScheduleError, glue_cron
from ..storage import PipelineStorage
from ..targets.athena import AthenaTarget
from ..targets.load_target import LoadTarget, LoadTargets, load_targets, target_name
from ..validation import PipelinePropsError, check_positive
from .glue_workflow_target import GlueWorkflowTarget, RuleQueueTarget

FORM_NAME = "glue_workflow"
RUNTIME_DIR = Path(__file__).parent.parent / "runtime"
WORKFLOW_JOB_MODULES = ("workflow_inputs.py", "upload_ledger.py", "pipeline_plan.py")
"""The runtime modules the Python shell jobs import, shipped beside their script."""
# Glue job states that end a run without success, and the crawler's failure state, as EventBridge reports them.
JOB_FAILURE_STATES = ("FAILED", "TIMEOUT", "STOPPED", "ERROR")
CRAWLER_FAILURE_STATES = ("Failed",)
# The `failed_step` of this form's messages (the clean job's own rejection alert says Clean too).
CRAWL_STEP, CLEAN_STEP, LOAD_STEP = "Crawl", "Clean", "Load"
CHECK_STEP = "Check"
"""The `failed_step` of a scheduled run whose pending check failed (the step before the crawl, scheduled runs only)."""
# The pending check may end STOPPED: an empty run stops its own workflow run, and with it the check. Not a failure.
CHECK_FAILURE_STATES = ("FAILED", "TIMEOUT", "ERROR")
FINISH_TIMEOUT = Duration.minutes(10)
"""The finish job's timeout (parallel loads): a few ledger writes per upload."""


class GlueWorkflowPipeline(Construct):
    """Upload -> EventBridge -> Glue workflow: EVENT trigger (batched) -> crawler -> clean job -> load job.

    - An EventBridge rule (`trigger_rule`) matches `Object Created` for `<prefix>*.csv` with a size above zero and
      notifies the workflow (`glue:notifyEvent`, a role allowed nothing else) and sends the event to the form's
      inbox queue (`inbox`), retrying delivery and keeping undeliverable events in an encrypted, alarmed
      dead-letter queue (`dead_letter_queue`).
    - The workflow (one run at a time) batches those events (`batch_size` events or `batch_window`, whichever comes
      first) and starts the crawler; the crawler's SUCCEEDED starts the clean job, the clean job's SUCCEEDED the
      load job. Nothing runs after a failed step.
    - The crawler and the clean job are this form's own: a crawler over the form's prefix only
      (`PipelineCatalog.add_crawler`) and a job definition of the shared clean job
      (`CleanJob.add_job_definition`: same script, role, size and arguments). Glue's state-change events name the
      job or crawler but not who started it, so with shared ones a failure of another form's run (Step Functions
      runs the shared clean job and crawler) would also be reported here. Idle definitions cost nothing.
    - Which uploads a run processes: the clean job claims them in the upload ledger (`ledger`): the inbox's
      uploads, the failed ones a few runs tried, the ones `pipeline-ops` names (`runtime/workflow_inputs.py`). Every
      upload's record goes running (crawl, clean, load) to loaded, rejected (a file the clean job rejects as a whole:
      quarantined and alerted once; the run's other files still load), skipped_empty or quarantined (nothing
      curated: no load), or failed at the step with its error (recorded by the failing job itself).
    - The load job (Glue Python shell, `runtime/glue_load_job.py`) runs the target's SQL for the workflow run id and
      fails with the engine's error. Athena: the MERGE; Redshift: COPY + MERGE in one Data API transaction.
    - Two targets (`target=[AthenaTarget, RedshiftTarget]`): parallel loads. The clean job's SUCCEEDED starts one
      load job per target (`load_jobs`, one trigger); each records `load_<target>` on every upload and skips the
      uploads the ledger has loaded into its target already; a join trigger (AND of both SUCCEEDED) starts the finish
      job (`finish_job`), which ends the uploads loaded. A failed load fails the run's uploads naming the target
      (error LoadFailed, cause `load into <target> failed: ...`; its rule's failed_step `Load <target>`);
      `pipeline-ops rerun` resumes the run at its clean job and only the failed target loads again.
    - Failures: one EventBridge rule per step (Crawl, Clean, Load) on its own resource's failure states sends one
      message (pipeline, object, run_id, failed_step, error, cause) to the alert topic; `alarms` holds an alarm on
      `metric_runs_failed()` and one on the dead-letter queue.
    - With `schedule`, runs start on the clock instead (a workflow has one start trigger: a SCHEDULED trigger
      replaces the EVENT trigger, and the upload rule feeds only the inbox). A scheduled run first runs a small
      pending check (`pending_check_job`, Python shell, `runtime/glue_pending_check.py`): nothing pending (no inbox
      message, no failed upload to retry, nothing requested), and it records `pipeline_empty_run` in the run's
      properties and stops the run before the crawl; otherwise its success starts the crawler, and the run takes
      every pending upload (up to the clean job's 1,000 inbox uploads per run). A failed run leaves its uploads
      `failed` in the ledger for the next run (up to three runs); one run at a time, so runs never overlap (a tick
      while a run is still going starts nothing).
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
        landing_prefix: str | None = None,
        batch_size: int = 10,
        batch_window: Duration | None = None,
        clean_timeout: Duration | None = None,
        load_timeout: Duration | None = None,
        load_max_concurrent_runs: int = 5,
        workflow_name: str | None = None,
        delivery_retry_attempts: int = 8,
        max_event_age: Duration | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        schedule: Schedule | str | None = None,
    ) -> None:
        """
        :param storage: the landing bucket whose uploads start runs.
        :param catalog: the database, crawler role and security configuration of this form's crawler and load job.
        :param clean_job: the clean job this form runs a job definition of (same script, role and arguments).
        :param target: where a successful run is loaded (AthenaTarget or RedshiftTarget), or a list of one of each
            (loaded in parallel after the clean job).
        :param alerting: the topic for failure messages and alarms; its key encrypts the dead-letter and inbox queues.
        :param ledger: the upload ledger the jobs claim and record every upload in. Required: it is how this form
            knows which uploads a run takes (None is refused, naming this setting).
        :param landing_prefix: uploads under this prefix start this form; it must lie under the storage's landing
            prefix. Default: '<storage prefix>glue_workflow/'.
        :param batch_size: events that start a run at once, 1 to 100. Default: 10.
        :param batch_window: a run starts this long after the first event of a batch at the latest, 1 s to 15 min.
            Default: 5 minutes.
        :param clean_timeout: the clean job's timeout in this workflow. Default: the job's own timeout.
        :param load_timeout: the load job's timeout. Default: the step description's load timeout (30 minutes).
        :param load_max_concurrent_runs: load runs at once. Default: 5.
        :param workflow_name: Default: generated by CloudFormation.
        :param delivery_retry_attempts: EventBridge retries of an undelivered event, 0 to 185. Default: 8.
        :param max_event_age: how long EventBridge retries delivery. Default: 6 hours.
        :param removal_policy: for the dead-letter queue and the inbox, so undelivered and unclaimed events outlive a
            stack replacement. Default: RETAIN.
        :param schedule: start runs on this schedule instead of on uploads: a `Schedule` (`pipeline_constructs.schedules`)
            or an expression string, `cron(...)` or `rate(...)` in UTC (Glue schedules are UTC only; a `rate` is written
            as the cron it equals, and is refused when there is none; at most every 5 minutes). `batch_size` and
            `batch_window` then do not apply. Default: None (one batched run per upload burst).
        """
        super().__init__(scope, construct_id)
        if not isinstance(ledger, UploadLedger):
            raise PipelinePropsError(
                f"ledger={ledger!r}: the Glue Workflow form claims its uploads in the upload ledger; pass ledger=UploadLedger(...) "
                "(the stateful stack's `ledger`)"
            )
        self.ledger = ledger
        self.targets = load_targets(target)
        """The targets as a tuple (one, or an Athena and a Redshift target loaded in parallel)."""
        check_positive("batch_size", batch_size)
        if not isinstance(batch_size, bool) and batch_size > 100:
            raise PipelinePropsError(f"batch_size={batch_size!r}: must be <= 100")
        window = batch_window if batch_window is not None else Duration.minutes(5)
        if not 1 <= window.to_seconds() <= 900:
            raise PipelinePropsError(f"batch_window={window.to_seconds()} s: must be between 1 s and 15 minutes")
        check_positive("load_max_concurrent_runs", load_max_concurrent_runs)
        self.schedule = Schedule(schedule) if isinstance(schedule, str) else schedule
        """When runs start (None: on uploads)."""
        self.schedule_expression: str | None = None
        """The Glue cron expression (UTC) of the scheduled start trigger, or None in upload mode."""
        if self.schedule is not None:
            if not isinstance(self.schedule, Schedule):
                raise PipelinePropsError(f"schedule={schedule!r}: give a Schedule or a cron(...) / rate(...) string")
            try:
                self.schedule_expression = glue_cron(self.schedule)
            except ScheduleError as error:
                raise PipelinePropsError(f"schedule={self.schedule.expression!r}: {error}") from None
        load_run_timeout = load_timeout if load_timeout is not None else Duration.seconds(DEFAULT_TIMINGS[LOAD].timeout_seconds)
        check_positive("load_timeout (minutes)", load_run_timeout.to_minutes())
        self.landing_prefix = storage.claim_prefix(
            self, "landing", landing_prefix if landing_prefix is not None else storage.landing_prefix_for(FORM_NAME)
        )
        self.target = target
        self.alerting = alerting
        self.dataset = clean_job.contract.name
        self.metrics_namespace = clean_job.metrics_namespace

        self.source_listing_uri = f"s3://{storage.landing_bucket.bucket_name}/{self.landing_prefix}"
        self.workflow = glue.Workflow(
            self,
            "Workflow",
            workflow_name=workflow_name,
            description=f"{self.dataset} pipeline: crawl, clean, load uploads under {self.landing_prefix}",
            max_concurrent_runs=1,
        )
        self.dead_letter_queue = alerting.new_dead_letter_queue(self, "DeadLetterQueue", removal_policy=removal_policy)
        self.inbox = upload_inbox(self, self.alerting.key, removal_policy, read_by="the clean job")
        self.delivery_retry_attempts = delivery_retry_attempts
        self.max_event_age = max_event_age if max_event_age is not None else Duration.hours(6)

        self._build_steps(storage, catalog, clean_job, load_run_timeout, load_max_concurrent_runs)
        self.pending_check_job: glue.PythonShellJob | None = (
            self._build_pending_check(catalog) if self.schedule_expression is not None else None
        )
        """A scheduled run's first step (None in upload mode): ends the run before its crawl when nothing is pending."""
        crawl_seconds = DEFAULT_TIMINGS[CRAWL].timeout_seconds
        clean_seconds = (clean_timeout or clean_job.timeout).to_seconds()
        finish_seconds = FINISH_TIMEOUT.to_seconds() if self.finish_job is not None else 0
        self.run_timeout_seconds = int(crawl_seconds + clean_seconds + load_run_timeout.to_seconds() + finish_seconds)
        """How long one workflow run may take: the crawl's allowance plus the clean, load (and finish) jobs' timeouts."""
        self._build_triggers(batch_size, window, clean_timeout)
        self._build_upload_trigger(storage)
        self._build_failure_path()
        self._build_alarms()

    # --- the steps: this form's crawler, clean job definition and load job -------------------------------------------
    def _build_steps(
        self,
        storage: PipelineStorage,
        catalog: PipelineCatalog,
        clean_job: CleanJob,
        load_timeout: Duration,
        load_max_concurrent_runs: int,
    ) -> None:
        self.crawler = catalog.add_crawler(
            self,
            "Crawler",
            prefix=self.landing_prefix,
            description=f"Raw schema of the {self.dataset} uploads under {self.landing_prefix} ({FORM_NAME} form); logs schema changes",
        )
        self.crawler_name: str = self.crawler.ref

        self.clean_job = clean_job.add_job_definition(
            self,
            "CleanJob",
            description=f"Cleans the {self.dataset} uploads of one {FORM_NAME} run (the clean job's script, role and arguments)",
            default_arguments={
                "--source_uris": self.source_listing_uri,
                "--source_listing_prefix": self.source_listing_uri,
                "--inbox_queue_url": self.inbox.queue_url,
                "--alert_topic_arn": self.alerting.topic.topic_arn,
                **self._ledger_arguments(),
            },
            max_concurrent_runs=1,
        )
        self.clean_job_name: str = self.clean_job.ref
        self.clean_job_policy = iam.ManagedPolicy(
            self,
            "CleanJobStatePolicy",
            description=f"The {FORM_NAME} clean job claims a run's uploads in the ledger, records their counts and alerts about rejected ones once",
            roles=[clean_job.role],
        )
        self.clean_job_policy.add_statements(
            *self._ledger_statements(query=True),
            iam.PolicyStatement(
                actions=["glue:GetWorkflowRunProperties", "glue:PutWorkflowRunProperties"], resources=[self.workflow.workflow_arn]
            ),
            iam.PolicyStatement(actions=["sqs:ReceiveMessage", "sqs:DeleteMessage"], resources=[self.inbox.queue_arn]),
            iam.PolicyStatement(actions=["sns:Publish"], resources=[self.alerting.topic.topic_arn]),
            iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[self.alerting.key.key_arn]),
        )

        self.load_role = iam.Role(
            self,
            "LoadJobRole",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"Load job of the {FORM_NAME} form: runs the load SQL of a run, records its uploads loaded or failed",
        )
        for target in self.targets:
            target.grant_load(self.load_role)
        for statement in (
            *self._ledger_statements(query=False),
            iam.PolicyStatement(actions=self._load_run_property_actions(), resources=[self.workflow.workflow_arn]),
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],  # PutMetricData has no resource type; the namespace condition scopes it.
                conditions={"StringEquals": {"cloudwatch:namespace": self.metrics_namespace}},
            ),
        ):
            self.load_role.add_to_principal_policy(statement)
        acknowledge_findings(
            self.load_role,
            "AwsSolutions-IAM5",
            "cloudwatch:PutMetricData has no resource type (a run that ended publishes WorkflowRunsSucceeded); the "
            "statement is limited by the cloudwatch:namespace condition.",
            matching=r"Resource::\*",
            actions=["cloudwatch:PutMetricData"],
        )
        for target in self.targets:
            target.review_load_findings(self.load_role)
        self._build_load_jobs(catalog, load_timeout, load_max_concurrent_runs)

        # cdk-nag cannot follow the security configuration into the stateful stack (a cross-stack reference).
        findings = {"AwsSolutions-GL1": "CloudWatch Logs", "AwsSolutions-GL3": "job bookmark"}
        for resource, kind, ids in (
            (self.crawler, "crawler", ["AwsSolutions-GL1"]),
            (self.clean_job, "job", list(findings)),
            *((job, "job", list(findings)) for job in self.load_jobs.values()),
            *(((self.finish_job, "job", list(findings)),) if self.finish_job is not None else ()),
        ):
            for finding in ids:
                acknowledge(
                    resource,
                    finding,
                    f"The {kind} uses the pipeline's security configuration (catalog.security_configuration), which "
                    f"encrypts {findings[finding]} with the pipeline key; it lives in another stack, where cdk-nag cannot resolve it.",
                )

    def _build_load_jobs(self, catalog: PipelineCatalog, load_timeout: Duration, load_max_concurrent_runs: int) -> None:
        """One load job of the target; with two targets one per target (`--load_target`) and the finish job."""
        max_wait = {"--max_wait_seconds": str(int(max(load_timeout.to_seconds() - 120, 60)))}
        success_metric = {"--metrics_namespace": self.metrics_namespace, "--dataset": self.dataset}
        self.load_jobs: dict[str, glue.PythonShellJob] = {}
        """The load job of each target, by target name (athena, redshift)."""
        self.finish_job: glue.PythonShellJob | None = None
        """Two targets: the job after both loads (the join) that ends the uploads loaded; None with one target."""
        if len(self.targets) == 1:
            [target] = self.targets
            self.load_jobs[target_name(target)] = self._python_shell_job(
                "LoadJob",
                catalog,
                role=self.load_role,
                description=f"Loads one {FORM_NAME} run of {self.dataset} into {type(target).__name__} (idempotent MERGE)",
                script="glue_load_job.py",
                max_concurrent_runs=load_max_concurrent_runs,
                timeout=load_timeout,
                default_arguments={**self._load_arguments(target), **self._ledger_arguments(), **max_wait, **success_metric},
            )
        else:
            names = ",".join(target_name(target) for target in self.targets)
            for target in self.targets:
                name = target_name(target)
                self.load_jobs[name] = self._python_shell_job(
                    f"Load{name.capitalize()}Job",
                    catalog,
                    role=self.load_role,
                    description=f"Loads one {FORM_NAME} run of {self.dataset} into {type(target).__name__}, in parallel with {names}",
                    script="glue_load_job.py",
                    max_concurrent_runs=load_max_concurrent_runs,
                    timeout=load_timeout,
                    default_arguments={
                        **self._load_arguments(target),
                        **self._ledger_arguments(),
                        **max_wait,
                        "--load_target": name,
                        "--parallel_targets": names,
                    },
                )
            self.finish_job = self._python_shell_job(
                "FinishLoadJob",
                catalog,
                role=self.load_role,
                description=f"Ends a {FORM_NAME} run of {self.dataset} after its parallel loads: its uploads loaded into {names}",
                script="glue_load_job.py",
                max_concurrent_runs=load_max_concurrent_runs,
                timeout=FINISH_TIMEOUT,
                default_arguments={**self._ledger_arguments(), "--finish_targets": names, **success_metric},
            )
        self.load_job = next(iter(self.load_jobs.values()))
        """The load job (with two targets: the first target's; see `load_jobs`)."""
        self.load_job_name: str = self.load_job.job_name

    def _load_run_property_actions(self) -> list[str]:
        """Parallel loads also write their outcome into the run's properties (the failed one waits for the other's)."""
        if len(self.targets) == 1:
            return ["glue:GetWorkflowRunProperties"]
        return ["glue:GetWorkflowRunProperties", "glue:PutWorkflowRunProperties"]

    def _python_shell_job(
        self,
        construct_id: str,
        catalog: PipelineCatalog,
        *,
        role: iam.Role,
        description: str,
        script: str,
        max_concurrent_runs: int,
        timeout: Duration,
        default_arguments: dict[str, str],
    ) -> glue.PythonShellJob:
        """One of the form's Python shell jobs: `script` of the runtime folder with the modules it imports beside it
        (WORKFLOW_JOB_MODULES), the pipeline's security configuration, no Glue retry (a failed run is the ledger's to
        retake); its role may write the job's logs and read its script from the CDK asset bucket (acknowledged)."""
        for kind in ("python-jobs", "jobs"):
            catalog.grant_glue_logs(role, kind)
            review_glue_logs(role, kind)
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            "The Glue L2 grants the job role read access to its script and extra files in the CDK asset bucket.",
            matching=r"Action::s3:(GetBucket|GetObject|List)\*|Resource::arn:[^:]+:s3:::cdk-[a-z0-9]+-assets-.*/\*",
            actions=GLUE_ASSET_READ_ACTIONS,
        )
        return glue.PythonShellJob(
            self,
            construct_id,
            role=role,
            description=description,
            python_version=glue.PythonVersion.THREE_NINE,
            script=glue.Code.from_asset(str(RUNTIME_DIR / script)),
            extra_python_files=[glue.Code.from_asset(str(RUNTIME_DIR / name)) for name in WORKFLOW_JOB_MODULES],
            security_configuration=catalog.security_configuration,
            max_retries=0,
            max_concurrent_runs=max_concurrent_runs,
            timeout=timeout,
            default_arguments=default_arguments,
        )

    def _build_pending_check(self, catalog: PipelineCatalog) -> glue.PythonShellJob:
        """A scheduled run's first step: counts what the run would take (requested, failed to retry, the inbox) and,
        when nothing is pending, records why and stops the run before its crawl (runtime/glue_pending_check.py).
        Its role reads the inbox's count and one message it hands straight back, queries the ledger's failed uploads,
        and reads, writes and stops this workflow's runs; nothing else."""
        role = iam.Role(
            self,
            "PendingCheckRole",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"Pending check of the {FORM_NAME} form's scheduled runs: ends a run with nothing pending before its crawl",
        )
        table = self.ledger.table_arn
        for statement in (
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[f"{table}/index/{STATE_INDEX}"]),
            iam.PolicyStatement(actions=["kms:Decrypt"], resources=[self.ledger.encryption_key.key_arn, self.alerting.key.key_arn]),
            iam.PolicyStatement(actions=["sqs:ReceiveMessage", "sqs:GetQueueAttributes"], resources=[self.inbox.queue_arn]),
            iam.PolicyStatement(
                actions=["glue:GetWorkflowRunProperties", "glue:PutWorkflowRunProperties", "glue:StopWorkflowRun"],
                resources=[self.workflow.workflow_arn],
            ),
        ):
            role.add_to_principal_policy(statement)
        job = self._python_shell_job(
            "PendingCheckJob",
            catalog,
            role=role,
            description=f"First step of a scheduled {FORM_NAME} run of {self.dataset}: stops the run before its crawl when nothing is pending",
            script="glue_pending_check.py",
            max_concurrent_runs=1,
            timeout=Duration.minutes(10),
            default_arguments={
                "--source_listing_prefix": self.source_listing_uri,
                "--inbox_queue_url": self.inbox.queue_url,
                **self._ledger_arguments(),
            },
        )
        for finding, what in (("AwsSolutions-GL1", "CloudWatch Logs"), ("AwsSolutions-GL3", "job bookmark")):
            acknowledge(
                job,
                finding,
                f"The job uses the pipeline's security configuration (catalog.security_configuration), which encrypts {what} "
                "with the pipeline key; it lives in another stack, where cdk-nag cannot resolve it.",
            )
        return job

    def _ledger_arguments(self) -> dict[str, str]:
        return {
            "--ledger_table": self.ledger.table_name,
            "--ledger_ttl_days": str(self.ledger.retention_days),
            "--pipeline_form": FORM_NAME,
        }

    def _ledger_statements(self, *, query: bool) -> list[iam.PolicyStatement]:
        """The ledger writes (and, for the clean job, the query of failed uploads on the state index) under its key."""
        table = self.ledger.table_arn
        statements = [
            iam.PolicyStatement(actions=list(WRITE_ACTIONS), resources=[table]),
            iam.PolicyStatement(actions=list(KEY_WRITE_ACTIONS), resources=[self.ledger.encryption_key.key_arn]),
        ]
        if query:
            statements.append(iam.PolicyStatement(actions=["dynamodb:Query"], resources=[f"{table}/index/{STATE_INDEX}"]))
        return statements

    def _load_arguments(self, target: LoadTarget) -> dict[str, str]:
        """The load job's target arguments: the SQL rendered with RUN_ID_TOKEN, the workgroup and database."""
        if isinstance(target, AthenaTarget):
            return {
                "--athena_sql_template": target.merge_sql(RUN_ID_TOKEN),
                "--athena_workgroup": target.workgroup_name,
                "--athena_database": target.database_name,
            }
        return {
            "--redshift_sql_templates": Stack.of(self).to_json_string(target.load_statements(RUN_ID_TOKEN)),
            "--redshift_workgroup": target.workgroup_name,
            "--redshift_database": target.database_name,
        }

    # --- the workflow's triggers: batched uploads -> crawl -> clean -> load -------------------------------------------
    def _build_triggers(self, batch_size: int, window: Duration, clean_timeout: Duration | None) -> None:
        self.event_trigger: ITriggerRef | None = None
        """The EVENT start trigger (upload mode), or None on a schedule."""
        self.scheduled_trigger: ITriggerRef | None = None
        """The SCHEDULED start trigger (on a schedule), or None in upload mode."""
        self.pending_trigger: ITriggerRef | None = None
        """On a schedule: the pending check's success starts the crawl (None in upload mode)."""
        if self.pending_check_job is not None and self.schedule_expression is not None:
            self.scheduled_trigger = self.workflow.add_scheduled_trigger(
                "Scheduled",
                description=f"{self.schedule_expression} (UTC): check for pending uploads",
                schedule=glue.TriggerSchedule.expression(self.schedule_expression),
                start_on_creation=True,
                actions=[glue.Action.job(self.pending_check_job)],
            )
            self.pending_trigger = self.workflow.add_conditional_trigger(
                "UploadsPending",
                description="Uploads are pending (an empty run was stopped by its check): crawl the form's prefix",
                start_on_creation=True,
                predicate=glue.Predicate(conditions=[glue.Condition.job(self.pending_check_job, glue.JobState.SUCCEEDED)]),
                actions=[glue.Action.crawler(self.crawler)],
            )
        else:
            self.event_trigger = self.workflow.add_event_trigger(
                "UploadsArrived",
                description=f"Up to {batch_size} uploads, or {int(window.to_seconds())} s after the first: crawl the form's prefix",
                event_batching_condition=glue.EventBatchingCondition(batch_size=batch_size, batch_window=window),
                actions=[glue.Action.crawler(self.crawler)],
            )
        self.crawled_trigger = self.workflow.add_conditional_trigger(
            "Crawled",
            description="The crawler succeeded: clean the run's new uploads",
            start_on_creation=True,
            predicate=glue.Predicate(conditions=[glue.Condition.crawler(self.crawler, glue.CrawlerState.SUCCEEDED)]),
            actions=[glue.Action.job(self.clean_job, timeout=clean_timeout)],
        )
        kinds = " and ".join(type(target).__name__ for target in self.targets)
        self.cleaned_trigger = self.workflow.add_conditional_trigger(
            "Cleaned",
            description=f"The clean job succeeded: load the run into {kinds}" + (" in parallel" if len(self.targets) > 1 else ""),
            start_on_creation=True,
            predicate=glue.Predicate(conditions=[glue.Condition.job(self.clean_job, glue.JobState.SUCCEEDED)]),
            actions=[glue.Action.job(job) for job in self.load_jobs.values()],
        )
        self.loaded_trigger: ITriggerRef | None = None
        """Two targets: the join (every load job SUCCEEDED) that starts the finish job; None with one target."""
        if self.finish_job is not None:
            self.loaded_trigger = self.workflow.add_conditional_trigger(
                "Loaded",
                description=f"Every load succeeded ({', '.join(self.load_jobs)}): end the run's uploads loaded",
                start_on_creation=True,
                predicate=glue.Predicate(
                    logical=glue.PredicateLogical.AND,
                    conditions=[glue.Condition.job(job, glue.JobState.SUCCEEDED) for job in self.load_jobs.values()],
                ),
                actions=[glue.Action.job(self.finish_job)],
            )

    # --- the trigger: uploads -> workflow -------------------------------------------------------------------------
    def _build_upload_trigger(self, storage: PipelineStorage) -> None:
        """The upload rule: to the inbox always; to the workflow (its EVENT trigger) in upload mode only. On a
        schedule the workflow has no EVENT trigger to notify: uploads wait in the inbox for the next run."""
        self.workflow_target: GlueWorkflowTarget | None = None
        if self.schedule_expression is None:
            self.workflow_target = GlueWorkflowTarget(
                self.workflow,
                dead_letter_queue=self.dead_letter_queue,
                retry_attempts=self.delivery_retry_attempts,
                max_event_age=self.max_event_age,
            )
        to_inbox = RuleQueueTarget(
            self.inbox,
            dead_letter_queue=self.dead_letter_queue,
            retry_attempts=self.delivery_retry_attempts,
            max_event_age=self.max_event_age,
        )
        scheduled = f"wait in the inbox for the {self.dataset} pipeline's next scheduled Glue workflow run ({self.schedule_expression} UTC)"
        self.trigger_rule = events.Rule(
            self,
            "UploadRule",
            description=f"CSV uploads under {self.landing_prefix} "
            + (f"notify the {self.dataset} pipeline's Glue workflow" if self.workflow_target is not None else scheduled),
            event_pattern=storage.upload_event_pattern(self.landing_prefix),
            targets=[self.workflow_target, to_inbox] if self.workflow_target is not None else [to_inbox],
        )

    # --- failures of this form's own steps -> one message each ----------------------------------------------------
    def _build_failure_path(self) -> None:
        job_change, crawler_change = "Glue Job State Change", "Glue Crawler State Change"
        self.crawl_failure_rule = self._failure_rule(
            "CrawlFailureRule", CRAWL_STEP, crawler_change, {"crawlerName": [self.crawler_name], "state": list(CRAWLER_FAILURE_STATES)}
        )
        self.clean_failure_rule = self._failure_rule(
            "CleanFailureRule", CLEAN_STEP, job_change, {"jobName": [self.clean_job_name], "state": list(JOB_FAILURE_STATES)}
        )
        self.load_failure_rules: dict[str, events.Rule] = {}
        """The load step's failure rules by what failed: the target's load job (and, with two targets, `finish`)."""
        if len(self.load_jobs) == 1:
            [name] = self.load_jobs
            self.load_failure_rules[name] = self._failure_rule(
                "LoadFailureRule", LOAD_STEP, job_change, {"jobName": [self.load_job_name], "state": list(JOB_FAILURE_STATES)}
            )
        else:
            for name, job in self.load_jobs.items():
                self.load_failure_rules[name] = self._failure_rule(
                    f"Load{name.capitalize()}FailureRule",
                    f"{LOAD_STEP} {name}",
                    job_change,
                    {"jobName": [job.job_name], "state": list(JOB_FAILURE_STATES)},
                )
            assert self.finish_job is not None
            self.load_failure_rules["finish"] = self._failure_rule(
                "FinishLoadFailureRule", LOAD_STEP, job_change, {"jobName": [self.finish_job.job_name], "state": list(JOB_FAILURE_STATES)}
            )
        self.load_failure_rule = next(iter(self.load_failure_rules.values()))
        """The load step's failure rule (with two targets: the first target's; see `load_failure_rules`)."""
        self.failure_rules = [self.crawl_failure_rule, self.clean_failure_rule, *self.load_failure_rules.values()]
        self.check_failure_rule: events.Rule | None = None
        if self.pending_check_job is not None:
            self.check_failure_rule = self._failure_rule(
                "CheckFailureRule",
                CHECK_STEP,
                job_change,
                {"jobName": [self.pending_check_job.job_name], "state": list(CHECK_FAILURE_STATES)},
            )
            self.failure_rules.append(self.check_failure_rule)

    def _failure_rule(self, rule_id: str, step: str, detail_type: str, detail: dict[str, Any]) -> events.Rule:
        """A rule on one step's failure states, sending the message every form sends: pipeline, object (the
        workflow and the prefix its runs take uploads from: the events do not name the workflow run), run_id (the
        Glue job run id; a crawl has none, so the event id), failed_step, error (the state) and cause."""
        is_job = "jobName" in detail
        message = {
            "pipeline": FORM_NAME,
            "object": f"Glue workflow {self.workflow.workflow_name}: uploads under {self.source_listing_uri}",
            "run_id": events.EventField.from_path("$.detail.jobRunId") if is_job else events.EventField.event_id,
            "failed_step": step,
            "error": events.EventField.from_path("$.detail.state"),
            "cause": events.EventField.from_path("$.detail.message" if is_job else "$.detail.errorMessage"),
            "time": events.EventField.time,
        }
        return events.Rule(
            self,
            rule_id,
            description=f"The {step} step of the {self.dataset} pipeline's Glue workflow did not succeed",
            event_pattern=events.EventPattern(source=["aws.glue"], detail_type=[detail_type], detail=detail),
            targets=[
                self.alerting.notification_target(
                    events.RuleTargetInput.from_object(message),
                    dead_letter_queue=self.dead_letter_queue,
                    retry_attempts=self.delivery_retry_attempts,
                    max_event_age=self.max_event_age,
                )
            ],
        )

    # --- alarms ---------------------------------------------------------------------------------------------------
    def _build_alarms(self) -> None:
        period = Duration.minutes(5)
        self.runs_failed_alarm = self.alerting.alarm_when_any(
            self,
            "RunsFailed",
            self.metric_runs_failed(period=period),
            f"A {FORM_NAME} run of the {self.dataset} pipeline failed (crawl, clean or load)",
        )
        self.dead_letter_alarm = self.alerting.alarm_when_any(
            self,
            "UndeliveredEvents",
            self.dead_letter_queue.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
            "An upload could not notify the Glue workflow, or a failure could not reach the topic; it waits in the dead-letter queue",
        )
        self.alarms: list[cloudwatch.Alarm] = [self.runs_failed_alarm, self.dead_letter_alarm]

    # --- metrics --------------------------------------------------------------------------------------------------
    def metric_runs_failed(self, period: Duration | None = None) -> cloudwatch.IMetric:
        """Runs of this form that failed: failure events of its crawler, clean job or load job (each is a run's
        last step, since nothing runs after a failed step). Default period: 5 minutes."""
        using_metrics = {
            "crawl": metric_rule_matches(self.crawl_failure_rule, period),
            "clean": metric_rule_matches(self.clean_failure_rule, period),
            **self._load_failure_metrics(period),
        }
        if self.check_failure_rule is not None:  # a scheduled run's pending check
            using_metrics["check"] = metric_rule_matches(self.check_failure_rule, period)
        return cloudwatch.MathExpression(
            expression=" + ".join(f"FILL({name}, 0)" for name in using_metrics),
            using_metrics=using_metrics,
            label=f"{FORM_NAME} runs failed",
            period=period if period is not None else Duration.minutes(5),
        )

    def _load_failure_metrics(self, period: Duration | None) -> dict[str, cloudwatch.IMetric]:
        if len(self.load_failure_rules) == 1:
            return {"load": metric_rule_matches(self.load_failure_rule, period)}
        return {f"load_{name}": metric_rule_matches(rule, period) for name, rule in self.load_failure_rules.items()}

    def metric_runs_succeeded(self, period: Duration | None = None) -> cloudwatch.IMetric:
        """Runs of this form whose load job succeeded (runs with nothing new or zero rows included), as each run
        records it: the load job (with two targets, the finish job) publishes WorkflowRunsSucceeded (dimensions
        Dataset, WorkflowName) once at its end (`runtime/glue_load_job.py`), not an EventBridge rule's best-effort
        matches. Default period: 5 minutes."""
        return cloudwatch.Metric(
            namespace=self.metrics_namespace,
            metric_name=WORKFLOW_RUNS_SUCCEEDED,
            dimensions_map={"Dataset": self.dataset, "WorkflowName": self.workflow.workflow_name},
            statistic="Sum",
            period=period if period is not None else Duration.minutes(5),
            label=f"{FORM_NAME} runs succeeded",
        )

    def metric_step_failures(self, step: str, period: Duration | None = None) -> cloudwatch.IMetric:
        """Failures of one step: 'Crawl', 'Clean' or 'Load'. Default period: 5 minutes."""
        rules = {CRAWL_STEP: self.crawl_failure_rule, CLEAN_STEP: self.clean_failure_rule, LOAD_STEP: self.load_failure_rule}
        if self.check_failure_rule is not None:
            rules[CHECK_STEP] = self.check_failure_rule
        if step not in rules:
            raise PipelinePropsError(f"step={step!r}: must be one of {sorted(rules)}")
        if step == LOAD_STEP and len(self.load_failure_rules) > 1:  # every target's load and the finish
            using = self._load_failure_metrics(period)
            return cloudwatch.MathExpression(
                expression=" + ".join(f"FILL({name}, 0)" for name in using),
                using_metrics=using,
                label=f"{FORM_NAME} {LOAD_STEP} failures",
                period=period if period is not None else Duration.minutes(5),
            )
        return metric_rule_matches(rules[step], period)

    def metric_files_rejected(self, period: Duration | None = None) -> cloudwatch.IMetric:
        """Files this form's clean job rejected as a whole (quarantined, alerted once, skipped by later runs).
        Default period: 5 minutes."""
        return cloudwatch.Metric(
            namespace=self.metrics_namespace,
            metric_name="FilesRejected",
            dimensions_map={"Dataset": self.dataset, "JobName": self.clean_job_name},
            statistic="Sum",
            period=period if period is not None else Duration.minutes(5),
        )
