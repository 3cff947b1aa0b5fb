"""The Step Functions form: an S3 upload starts a Standard state machine that crawls, cleans and loads."""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk import (
    ArnFormat,
    Duration,
    RemovalPolicy,
    aws_cloudwatch as cloudwatch,
    aws_events as events,
    aws_events_targets as targets,
    aws_kms as kms,
    aws_logs as logs,
    aws_stepfunctions as sfn,
    aws_stepfunctions_tasks as tasks,
)

from constructs import Construct

from ..acknowledgements import acknowledge_findings
from ..alerting import PipelineAlerting
from ..catalog import PipelineCatalog
from ..clean_job import CleanJob
from ..keys import allow_cloudwatch_logs
from ..storage import PipelineStorage
from ..targets.load_target import LoadTarget, check_load_target
from ..targets.redshift import RedshiftTarget
from ..validation import check_positive, check_prefix

FORM_NAME = "step_functions"
_COLON = ArnFormat.COLON_RESOURCE_NAME


def retry_transient(task: sfn.TaskStateBase, errors: list[str], *, interval: Duration, max_attempts: int) -> None:
    """Retry named transient errors with exponential backoff and full jitter, capped at five minutes per wait."""
    task.add_retry(
        errors=errors,
        interval=interval,
        max_attempts=max_attempts,
        backoff_rate=2,
        jitter_strategy=sfn.JitterType.FULL,
        max_delay=Duration.minutes(5),
    )


class StepFunctionsPipeline(Construct):
    """Upload -> EventBridge -> Standard state machine: crawl, clean (Glue .sync), load; failures -> SNS -> Fail.

    The EventBridge rule matches `Object Created` for `<prefix>*.csv` with a size above zero, retries delivery and
    keeps undeliverable events in an encrypted dead-letter queue (alarmed, so nothing is lost silently). Every task
    retries its transient errors with backoff and jitter and has a timeout; any other error is caught, published to
    the alert topic naming the object, the step and the error, and the execution fails, which the failed/timed
    out/aborted alarms report.
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
        landing_prefix: str | None = None,
        crawler_poll_interval: Duration | None = None,
        crawler_max_polls: int = 60,
        job_timeout: Duration | None = None,
        load_timeout: Duration | None = None,
        load_poll_interval: Duration | None = None,
        load_max_polls: int = 120,
        execution_timeout: Duration | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        """
        :param storage: the landing bucket whose uploads start runs.
        :param catalog: the raw crawler.
        :param clean_job: the Glue job run for each upload (RUN_JOB, .sync).
        :param target: where a successful run is loaded (AthenaTarget or RedshiftTarget).
        :param alerting: the topic for failure messages and alarms.
        :param landing_prefix: uploads under this prefix start this form. Default: '<storage prefix>step_functions/'.
        :param crawler_poll_interval: wait between crawler status checks. Default: 30 seconds.
        :param crawler_max_polls: checks before the crawl counts as stuck and the run fails. Default: 60.
        :param job_timeout: the clean job task's timeout. Default: the job's timeout plus 10 minutes (75 minutes).
        :param load_timeout: the load task's timeout. Default: 30 minutes.
        :param load_poll_interval: Redshift only: wait between Data API statement status checks. Default: 15 seconds.
        :param load_max_polls: Redshift only: checks before the load counts as stuck (it is then cancelled and the
            run fails). Default: 120 (30 minutes at the default interval).
        :param execution_timeout: the whole execution's timeout. Default: 4 hours.
        :param log_retention: execution log retention. Default: one month.
        :param removal_policy: for the log group and its key. Default: RETAIN.
        """
        super().__init__(scope, construct_id)
        check_load_target(target)
        check_positive("load_max_polls", load_max_polls)
        load_poll = load_poll_interval if load_poll_interval is not None else Duration.seconds(15)
        check_positive("load_poll_interval (seconds)", load_poll.to_seconds())
        check_positive("crawler_max_polls", crawler_max_polls)
        poll = crawler_poll_interval if crawler_poll_interval is not None else Duration.seconds(30)
        check_positive("crawler_poll_interval (seconds)", poll.to_seconds())
        self.landing_prefix = check_prefix(
            "landing_prefix", landing_prefix if landing_prefix is not None else storage.landing_prefix_for(FORM_NAME)
        )
        self.alerting = alerting

        # --- the state machine ---------------------------------------------------------------------------------
        start = sfn.Pass(
            self,
            "Describe Upload",
            comment="Keep what every later step needs: the object, its URI and the run id (the execution name).",
            parameters={
                "upload": {
                    "bucket.$": "$.detail.bucket.name",
                    "key.$": "$.detail.object.key",
                    "source_uri.$": "States.Format('s3://{}/{}', $.detail.bucket.name, $.detail.object.key)",
                    "run_id.$": "$$.Execution.Name",
                },
                "crawler_poll": {"iteration": 0},
            },
        )

        notify = tasks.SnsPublish(
            self,
            "Notify Failure",
            topic=alerting.topic,
            subject=sfn.JsonPath.format("Retail pipeline failed at {}", sfn.JsonPath.string_at("$.failed_step")),
            message=sfn.TaskInput.from_object(
                {
                    "pipeline": "step_functions",
                    "object": sfn.JsonPath.string_at("$.upload.source_uri"),
                    "run_id": sfn.JsonPath.string_at("$.upload.run_id"),
                    "failed_step": sfn.JsonPath.string_at("$.failed_step"),
                    "error": sfn.JsonPath.string_at("$.error.Error"),
                    "cause": sfn.JsonPath.string_at("$.error.Cause"),
                    "execution": sfn.JsonPath.string_at("$$.Execution.Id"),
                }
            ),
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(Duration.minutes(1)),
        )
        retry_transient(
            notify, ["SNS.ThrottledException", "SNS.InternalErrorException", "States.Timeout"], interval=Duration.seconds(2), max_attempts=5
        )
        failed = sfn.Fail(self, "Pipeline Failed", error="PipelineFailed", cause_path="$.error.Cause")
        notify.add_catch(failed, errors=["States.ALL"], result_path="$.notify_error")
        notify.next(failed)

        def on_failure(task: sfn.TaskStateBase, step: str) -> None:
            record = sfn.Pass(self, f"Record {step} Failure", result=sfn.Result.from_string(step), result_path="$.failed_step")
            record.next(notify)
            task.add_catch(record, errors=["States.ALL"], result_path="$.error")

        def fail_with(state_id: str, step: str, error: str, cause: dict) -> sfn.Pass:
            state = sfn.Pass(
                self,
                state_id,
                parameters={"Error": error, **cause},
                result_path="$.error",
            )
            record = sfn.Pass(self, f"Record {state_id}", result=sfn.Result.from_string(step), result_path="$.failed_step")
            state.next(record)
            record.next(notify)
            return state

        start_crawler = tasks.CallAwsService(
            self,
            "Start Crawler",
            service="glue",
            action="startCrawler",
            parameters={"Name": catalog.crawler_name},
            iam_resources=[catalog.crawler_arn],
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(Duration.minutes(2)),
        )
        # Another upload may have started the crawler: wait for it, then start ours.
        retry_transient(start_crawler, ["Glue.CrawlerRunningException"], interval=Duration.seconds(30), max_attempts=10)
        retry_transient(
            start_crawler,
            ["Glue.ThrottlingException", "Glue.InternalServiceException", "States.Timeout"],
            interval=Duration.seconds(5),
            max_attempts=5,
        )
        on_failure(start_crawler, "Start Crawler")

        wait = sfn.Wait(self, "Wait For Crawler", time=sfn.WaitTime.duration(poll))
        get_crawler = tasks.CallAwsService(
            self,
            "Get Crawler",
            service="glue",
            action="getCrawler",
            parameters={"Name": catalog.crawler_name},
            iam_resources=[catalog.crawler_arn],
            result_selector={"Crawler.$": "$.Crawler"},
            result_path="$.crawler",
            task_timeout=sfn.Timeout.duration(Duration.minutes(1)),
        )
        retry_transient(
            get_crawler,
            ["Glue.ThrottlingException", "Glue.InternalServiceException", "States.Timeout"],
            interval=Duration.seconds(5),
            max_attempts=5,
        )
        on_failure(get_crawler, "Get Crawler")
        count = sfn.Pass(
            self,
            "Count Crawler Poll",
            parameters={"iteration.$": "States.MathAdd($.crawler_poll.iteration, 1)"},
            result_path="$.crawler_poll",
        )
        crawler_failed = fail_with(
            "Crawler Failed",
            "Crawler",
            "CrawlerFailed",
            {"Cause.$": "States.JsonToString($.crawler.Crawler.LastCrawl)"},
        )
        crawler_stuck = fail_with(
            "Crawler Poll Cap Reached",
            "Crawler",
            "CrawlerTimeout",
            {"Cause": f"the crawler was still running after {crawler_max_polls} checks"},
        )

        job_task_timeout = job_timeout if job_timeout is not None else Duration.minutes(75)
        run_job = tasks.GlueStartJobRun(
            self,
            "Run Clean Job",
            glue_job_name=clean_job.job_name,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            arguments=sfn.TaskInput.from_object(
                {
                    # A JSON array, so an object key containing a comma stays one URI.
                    "--source_uris": sfn.JsonPath.json_to_string(sfn.JsonPath.array(sfn.JsonPath.string_at("$.upload.source_uri"))),
                    "--run_id": sfn.JsonPath.string_at("$.upload.run_id"),
                }
            ),
            result_selector={"JobRunId.$": "$.Id", "JobRunState.$": "$.JobRunState"},
            result_path="$.clean_job",
            task_timeout=sfn.Timeout.duration(job_task_timeout),
        )
        retry_transient(
            run_job, ["Glue.ConcurrentRunsExceededException", "Glue.ThrottlingException"], interval=Duration.seconds(60), max_attempts=6
        )
        on_failure(run_job, "Run Clean Job")

        loaded = sfn.Succeed(self, "Loaded")
        load: sfn.IChainable
        if isinstance(target, RedshiftTarget):
            load = self._redshift_load(
                target,
                on_failure=on_failure,
                fail_with=fail_with,
                loaded=loaded,
                poll=load_poll,
                max_polls=load_max_polls,
            )
        else:
            athena_load = tasks.AthenaStartQueryExecution(
                self,
                "Load Into Athena",
                query_string=sfn.JsonPath.format(target.merge_sql(), sfn.JsonPath.string_at("$.upload.run_id")),
                work_group=target.workgroup_name,
                query_execution_context=tasks.QueryExecutionContext(database_name=target.database_name),
                integration_pattern=sfn.IntegrationPattern.RUN_JOB,
                result_selector={"QueryExecutionId.$": "$.QueryExecution.QueryExecutionId", "State.$": "$.QueryExecution.Status.State"},
                result_path="$.load",
                task_timeout=sfn.Timeout.duration(load_timeout if load_timeout is not None else Duration.minutes(30)),
            )
            retry_transient(
                athena_load,
                ["Athena.TooManyRequestsException", "Athena.InternalServerException"],
                interval=Duration.seconds(10),
                max_attempts=5,
            )
            on_failure(athena_load, "Load")
            athena_load.next(loaded)
            load = athena_load
        # The run id is spliced into the load's SQL (the MERGE's literal, the COPY's S3 URI); execution names may
        # contain a quote, so such a run fails here instead of reaching the database.
        bad_run_id = fail_with(
            "Run Id Not Loadable",
            "Load",
            "InvalidRunId",
            {"Cause.$": "States.Format('run id {} contains a quote and cannot be used in the load SQL', $.upload.run_id)"},
        )
        load = sfn.Choice(self, "Run Id Loadable?").when(sfn.Condition.string_matches("$.upload.run_id", "*'*"), bad_run_id).otherwise(load)

        is_crawler_ready = (
            sfn.Choice(self, "Crawler Finished?")
            .when(sfn.Condition.not_(sfn.Condition.string_equals("$.crawler.Crawler.State", "READY")), count)
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_present("$.crawler.Crawler.LastCrawl.Status"),
                    sfn.Condition.not_(sfn.Condition.string_equals("$.crawler.Crawler.LastCrawl.Status", "SUCCEEDED")),
                ),
                crawler_failed,
            )
            .otherwise(run_job)
        )
        below_cap = (
            sfn.Choice(self, "Poll Again?")
            .when(sfn.Condition.number_greater_than_equals("$.crawler_poll.iteration", crawler_max_polls), crawler_stuck)
            .otherwise(wait)
        )
        count.next(below_cap)
        definition = start.next(start_crawler).next(wait).next(get_crawler).next(is_crawler_ready)
        run_job.next(load)

        self.log_key = kms.Key(
            self,
            "LogKey",
            description="Step Functions execution logs of the retail pipeline",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        allow_cloudwatch_logs(self.log_key)
        self.log_group = logs.LogGroup(
            self,
            "ExecutionLogs",
            encryption_key=self.log_key,
            retention=log_retention,
            removal_policy=removal_policy,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=execution_timeout if execution_timeout is not None else Duration.hours(4),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment=f"Retail pipeline ({clean_job.contract.name}): crawl, clean, load into {type(target).__name__}",
        )
        target.grant_load(self.state_machine)
        target.review_load_findings(self.state_machine.role)
        acknowledge_findings(
            self.state_machine.role,
            "AwsSolutions-IAM5",
            "X-Ray tracing and CloudWatch Logs delivery for Step Functions are only granted on '*' by AWS.",
            matching=r"Resource::\*",
            actions=[
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "logs:CreateLogDelivery",
                "logs:GetLogDelivery",
                "logs:UpdateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:DescribeResourcePolicies",
                "logs:DescribeLogGroups",
            ],
        )

        # --- the trigger -----------------------------------------------------------------------------------------
        self.dead_letter_queue = alerting.new_dead_letter_queue(self, "TriggerDeadLetterQueue", removal_policy=removal_policy)
        self.rule = events.Rule(
            self,
            "UploadRule",
            description=f"CSV uploads under {self.landing_prefix} start the retail pipeline state machine",
            event_pattern=storage.upload_event_pattern(self.landing_prefix),
            targets=[
                targets.SfnStateMachine(
                    self.state_machine,
                    dead_letter_queue=self.dead_letter_queue,
                    retry_attempts=8,
                    max_event_age=Duration.hours(6),
                )
            ],
        )

        # --- alarms ----------------------------------------------------------------------------------------------

        period = Duration.minutes(5)
        self.executions_failed_alarm = alerting.alarm_when_any(
            self, "ExecutionsFailed", self.state_machine.metric_failed(period=period), "A pipeline execution failed"
        )
        self.executions_timed_out_alarm = alerting.alarm_when_any(
            self, "ExecutionsTimedOut", self.state_machine.metric_timed_out(period=period), "A pipeline execution timed out"
        )
        self.executions_aborted_alarm = alerting.alarm_when_any(
            self, "ExecutionsAborted", self.state_machine.metric_aborted(period=period), "A pipeline execution was aborted"
        )
        self.dead_letter_alarm = alerting.alarm_when_any(
            self,
            "UndeliveredUploads",
            self.dead_letter_queue.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
            "An upload event could not start the state machine; it waits in the dead-letter queue",
        )
        self.alarms = [self.executions_failed_alarm, self.executions_timed_out_alarm, self.executions_aborted_alarm, self.dead_letter_alarm]

    def _redshift_load(
        self,
        target: RedshiftTarget,
        *,
        on_failure: Callable[[sfn.TaskStateBase, str], None],
        fail_with: Callable[[str, str, str, dict], sfn.Pass],
        loaded: sfn.Succeed,
        poll: Duration,
        max_polls: int,
    ) -> sfn.IChainable:
        """batchExecuteStatement (one transaction) -> Wait -> describeStatement -> Choice.

        FINISHED succeeds; FAILED or ABORTED goes to the failure path with the statement's error; still running loops,
        and at `max_polls` checks the statement is cancelled (so it cannot commit after the run was reported failed)
        and the run fails. The Data API authenticates with IAM (temporary credentials of the state machine's role),
        never with the admin secret.
        """
        submit = tasks.CallAwsService(
            self,
            "Load Into Redshift",
            comment="COPY the run into a staging table and MERGE it on the natural key, as one transaction",
            service="redshiftdata",
            action="batchExecuteStatement",
            iam_action="redshift-data:BatchExecuteStatement",
            iam_resources=[target.workgroup_arn],
            parameters={
                "WorkgroupName": target.workgroup_name,
                "Database": target.database_name,
                "Sqls": target.states_sqls("$.upload.run_id"),
                "StatementName": sfn.JsonPath.format("load-{}", sfn.JsonPath.string_at("$.upload.run_id")),
            },
            result_selector={"Id.$": "$.Id", "polls": 0},
            result_path="$.load",
            task_timeout=sfn.Timeout.duration(Duration.minutes(2)),
        )
        # Not States.Timeout: a submission that timed out may have started; the run fails instead of loading twice at once.
        retry_transient(
            submit,
            ["RedshiftData.ActiveStatementsExceededException", "RedshiftData.InternalServerException", "RedshiftData.ThrottlingException"],
            interval=Duration.seconds(10),
            max_attempts=6,
        )
        on_failure(submit, "Load")
        wait = sfn.Wait(self, "Wait For Load", time=sfn.WaitTime.duration(poll))
        # Describe and Cancel are authorized by the target's load policy (no resource-level permissions exist for
        # them; an owner condition limits them to this role's statements); the task's own statement names the workgroup.
        describe = tasks.CallAwsService(
            self,
            "Describe Load",
            service="redshiftdata",
            action="describeStatement",
            iam_action="redshift-data:DescribeStatement",
            iam_resources=[target.workgroup_arn],
            parameters={"Id": sfn.JsonPath.string_at("$.load.Id")},
            result_path="$.load_status",
            task_timeout=sfn.Timeout.duration(Duration.minutes(1)),
        )
        retry_transient(
            describe,
            ["RedshiftData.InternalServerException", "RedshiftData.ThrottlingException", "States.Timeout"],
            interval=Duration.seconds(5),
            max_attempts=5,
        )
        on_failure(describe, "Describe Load")
        count = sfn.Pass(
            self,
            "Count Load Poll",
            parameters={"Id.$": "$.load.Id", "polls.$": "States.MathAdd($.load.polls, 1)"},
            result_path="$.load",
        )
        statement_failed = fail_with("Load Statement Failed", "Load", "LoadFailed", {"Cause.$": "$.load_status.Error"})
        statement_aborted = fail_with(
            "Load Statement Aborted",
            "Load",
            "LoadAborted",
            {"Cause.$": "States.Format('statement {} was {}', $.load.Id, $.load_status.Status)"},
        )
        stuck = fail_with(
            "Load Poll Cap Reached",
            "Load",
            "LoadTimeout",
            {"Cause.$": f"States.Format('statement {{}} was still running after {max_polls} checks; cancelled', $.load.Id)"},
        )
        cancel = tasks.CallAwsService(
            self,
            "Cancel Load",
            service="redshiftdata",
            action="cancelStatement",
            iam_action="redshift-data:CancelStatement",
            iam_resources=[target.workgroup_arn],
            parameters={"Id": sfn.JsonPath.string_at("$.load.Id")},
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(Duration.minutes(1)),
        )
        retry_transient(
            cancel,
            ["RedshiftData.InternalServerException", "RedshiftData.ThrottlingException", "States.Timeout"],
            interval=Duration.seconds(5),
            max_attempts=3,
        )
        # The statement may have finished in the meantime (nothing to cancel): report the cap either way.
        cancel.add_catch(stuck, errors=["States.ALL"], result_path="$.cancel_error")
        cancel.next(stuck)
        below_cap = (
            sfn.Choice(self, "Poll Load Again?")
            .when(sfn.Condition.number_greater_than_equals("$.load.polls", max_polls), cancel)
            .otherwise(wait)
        )
        count.next(below_cap)
        finished = (
            sfn.Choice(self, "Load Finished?")
            .when(sfn.Condition.string_equals("$.load_status.Status", "FINISHED"), loaded)
            .when(
                sfn.Condition.and_(
                    sfn.Condition.or_(
                        sfn.Condition.string_equals("$.load_status.Status", "FAILED"),
                        sfn.Condition.string_equals("$.load_status.Status", "ABORTED"),
                    ),
                    sfn.Condition.is_present("$.load_status.Error"),
                ),
                statement_failed,
            )
            .when(
                sfn.Condition.or_(
                    sfn.Condition.string_equals("$.load_status.Status", "FAILED"),
                    sfn.Condition.string_equals("$.load_status.Status", "ABORTED"),
                ),
                statement_aborted,
            )
            .otherwise(count)
        )
        submit.next(wait).next(describe).next(finished)
        return submit

    def metric_failed(self, *, period: Duration | None = None) -> cloudwatch.Metric:
        """Executions that failed."""
        return self.state_machine.metric_failed(period=period)

    def metric_timed_out(self, *, period: Duration | None = None) -> cloudwatch.Metric:
        """Executions that timed out."""
        return self.state_machine.metric_timed_out(period=period)

    def metric_aborted(self, *, period: Duration | None = None) -> cloudwatch.Metric:
        """Executions that were aborted."""
        return self.state_machine.metric_aborted(period=period)

    def metric_succeeded(self, *, period: Duration | None = None) -> cloudwatch.Metric:
        """Executions that loaded their upload."""
        return self.state_machine.metric_succeeded(period=period)
