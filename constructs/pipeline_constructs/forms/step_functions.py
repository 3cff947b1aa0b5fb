"""The Step Functions form: an S3 upload starts a Standard state machine that crawls, cleans and loads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_cdk import (
    ArnFormat,
    Duration,
    RemovalPolicy,
    Stack,
    aws_cloudwatch as cloudwatch,
    aws_events as events,
    aws_events_targets as targets,
    aws_iam as iam,
    aws_kms as kms,
    aws_logs as logs,
    aws_sqs as sqs,
    aws_stepfunctions as sfn,
    aws_stepfunctions_tasks as tasks,
)

from constructs import Construct

from ..alerting import ON_CALL, REPLAY, PipelineAlerting, Runbook
from ..catalog import PipelineCatalog
from ..clean_job import CleanJob
from ..keys import allow_cloudwatch_logs
from ..ledger import UploadLedger
from ..runtime.pipeline_plan import CLEAN, CRAWL, DEFAULT_TIMINGS, LOAD, QUARANTINED, SKIPPED_EMPTY
from ..schedules import Schedule
from ..storage import PipelineStorage
from ..targets.athena import AthenaTarget
from ..targets.load_target import LoadTarget, LoadTargets, load_targets, target_name
from ..targets.redshift import RedshiftTarget
from ..validation import PipelinePropsError, check_positive
from .glue_workflow_target import RuleQueueTarget
from .step_functions_failures import FailureReporter
from .step_functions_ledger import FORM_NAME, LedgerStates
from .step_functions_lock import LoadLock, lease_seconds
from .step_functions_schedule import ScheduledRuns, check_schedule
from .step_functions_schema import SchemaCheck
from .step_functions_states import acknowledge_tracing_and_log_delivery, format_literal, name_object_version, retry_transient

_COLON = ArnFormat.COLON_RESOURCE_NAME
CONFLICT_ERROR = "Load.IcebergCommitConflict"
"""The error a load attempt ends with when Athena reports ICEBERG_COMMIT_ERROR (another MERGE committed first)."""
LOAD_FAILED = "LoadFailed"
BRANCH_FAILURES = [LOAD_FAILED, "LoadAborted", "LoadTimeout", "InvalidRunId", "LoadLockTimeout", CONFLICT_ERROR]
"""Parallel loads: the errors a target's load ends with at one of its own Fail states (a redrive would only enter
that Fail state again). Its branch records the target failed, releases its lock and fails naming the target; any
other error (a task's, after its retries) fails the branch at Load Into <Target>, where a redrive resumes it."""

_GLUE_TRANSIENT = ["Glue.ThrottlingException", "Glue.InternalServiceException", "States.Timeout"]


class StepFunctionsPipeline(Construct):
    """Upload -> EventBridge -> Standard state machine: Crawl, Run Clean Job (Glue .sync), Load; failures -> SNS.

    - Trigger: an EventBridge rule on `Object Created` for `<prefix>*.csv` with a size above zero; delivery is retried
      and undeliverable events wait in an encrypted dead-letter queue (alarmed, so nothing is lost silently).
    - Check Schema: a crawl runs only when the run's uploads can change the raw table (no table yet, its columns
      differ from the contract's, or an upload's header differs from them): a small Lambda over
      `runtime/crawl_check.py` (forms/step_functions_schema.py) reads the table and each upload's first line, and
      Crawl Needed? skips to the clean job otherwise. The ledger's `crawl` field says "schema unchanged" or why.
    - Crawl: a run needs a successful crawl that began after its object arrived, not a crawl of its own. It reads the
      crawler first: a crawl that started after the upload and succeeded lets it go on; a running crawl is waited for;
      otherwise it starts one, and `CrawlerRunningException` then means another run just started one, which is
      waited for. A burst of uploads thus causes one or two crawls, not one each.
    - Clean: the Glue job (.sync). A run whose curated output holds no rows (a header-only file) succeeds without a load.
    - Load: Athena (an Iceberg MERGE, retried with jittered exponential backoff when a concurrent MERGE committed
      first, and only then) or Redshift (COPY + MERGE in one Data API transaction). Both are polled up to a cap.
      With a ledger, loads into one table run one at a time: the load's branch first takes the table's load lock
      (Take Load Lock, a conditional write with a lease, waited for with jittered retries) and Release Load Lock
      follows the load; the failure reporter releases the lock of a run that failed, timed out or was aborted
      (forms/step_functions_lock.py). Crawl and clean still run side by side.
    - Parallel loads (`target=[AthenaTarget, RedshiftTarget]`): after the rows check, Load Targets (a Parallel) runs
      one branch per target: Read <Target> Outcome (the ledger's `load_<target>`) skips a target an earlier run
      loaded; otherwise Load Into <Target> (taking that target's own load lock, so the two loads run side by side)
      -> Record <Target> Loaded -> Release Load Lock (<target>). A load that ends at one of its Fail states records
      <Target> Failed, releases its lock and fails the branch at <Target> Load Failed, cause 'load into <target>
      failed: ...'; a task's error fails it at Load Into <Target>, where a redrive resumes that branch only (the
      failure reporter then releases every target's lock). Record Loaded follows once every target is loaded.
    - Failure: every task retries its transient errors and has a timeout; nothing catches the rest, so a step that
      fails ends the execution failed at the step's own state (Crawl, Run Clean Job, Load Into ...), which is where
      `RedriveExecution` resumes it. The execution's status-change event reaches `failure_reporter`
      (forms/step_functions_failures.py), which records the failure in the ledger and sends one message (pipeline,
      object, run id, failed step, error, cause, execution) to the alert topic, for timeouts and aborts too; alarms
      report failed, timed-out and aborted executions and the dead-letter queues.
    - With `schedule`, runs start on the clock instead (forms/step_functions_schedule.py): the upload rule feeds an
      encrypted inbox queue (`scheduled_runs.inbox`), EventBridge Scheduler starts one execution per tick, and
      each execution takes the run lock (one scheduled run at a time; a run that finds it held ends at once), claims
      every pending upload (failed ones to retry, the inbox's, the ones `pipeline-ops` requested), and ends at once
      when there is none; otherwise it crawls, runs the clean job once over all of them, loads once (holding the
      load lock) and ends each upload with its own outcome. A failed run leaves its uploads failed for the next.
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
        crawler_poll_interval: Duration | None = None,
        crawler_max_polls: int | None = None,
        job_timeout: Duration | None = None,
        load_poll_interval: Duration | None = None,
        load_max_polls: int | None = None,
        load_conflict_retries: int = 10,
        load_conflict_interval: Duration | None = None,
        execution_timeout: Duration | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        schedule: Schedule | str | None = None,
    ) -> None:
        """
        :param storage: the landing bucket whose uploads start runs, and the curated bucket the run writes to.
        :param catalog: the raw crawler.
        :param clean_job: the Glue job run for each upload (RUN_JOB, .sync).
        :param target: where a successful run is loaded (AthenaTarget or RedshiftTarget), or a list of one of each,
            loaded in parallel.
        :param alerting: the topic for failure messages and alarms.
        :param ledger: the upload ledger this form keeps current (native DynamoDB states: start, each step, the
            outcome, the failure; the clean job writes its counts). Default: none (no ledger writes).
        :param landing_prefix: uploads under this prefix start this form. Default: '<storage prefix>step_functions/'.
        :param crawler_poll_interval: wait between crawler status checks. Default: 30 seconds.
        :param crawler_max_polls: checks before the crawl counts as stuck and the run fails. Default: the step
            description's crawl timeout over the poll interval (60 at the defaults).
        :param job_timeout: the clean job task's timeout. Default: the step description's clean timeout (75 minutes).
        :param load_poll_interval: wait between load status checks (Athena query, Redshift statement). Default: 15 seconds.
        :param load_max_polls: checks before the load counts as stuck (it is then cancelled and the run fails).
            Default: the step description's load timeout over the poll interval (120 at the defaults).
        :param load_conflict_retries: Athena only: loads retried after a concurrent MERGE committed first
            (ICEBERG_COMMIT_ERROR); no other error is retried this way. Default: 10.
        :param load_conflict_interval: Athena only: the first conflict retry waits up to this long (full jitter), each
            next one twice as long, at most 2 minutes. Default: 10 seconds.
        :param execution_timeout: the whole execution's timeout. Default: 4 hours.
        :param log_retention: execution log retention. Default: one month.
        :param removal_policy: for the log group, its key and the dead-letter queue. Default: RETAIN.
        :param schedule: start runs on this schedule instead of one per upload: a `Schedule` (`cron(...)` or
            `rate(...)` in an IANA time zone, `pipeline_constructs.schedules`) or an expression string (UTC). Needs
            `ledger` (where the pending uploads are claimed). Default: None (one execution per upload).
        """
        super().__init__(scope, construct_id)
        self.targets = load_targets(target)
        """The load targets, in the given order (one, or one of each kind loaded in parallel)."""
        self._state_suffix = ""
        """Parallel loads: ' (<target>)', appended to the name of every state of the target's load being built."""
        self.schedule: Schedule | None = None
        """When runs start (None: one execution per upload)."""
        self.schedule_expression: str | None = None
        """EventBridge Scheduler's expression of the schedule (in `schedule.time_zone`), or None in upload mode."""
        if schedule is not None:
            self.schedule, self.schedule_expression = check_schedule(schedule)
            if ledger is None:
                raise PipelinePropsError(
                    "ledger=None: a scheduled Step Functions run claims its uploads in the upload ledger; pass "
                    "ledger=UploadLedger(...) (the stateful stack's `ledger`) or schedule=None"
                )
        self._load_poll = load_poll_interval if load_poll_interval is not None else Duration.seconds(15)
        check_positive("load_poll_interval (seconds)", self._load_poll.to_seconds())
        self._crawler_poll = crawler_poll_interval if crawler_poll_interval is not None else Duration.seconds(30)
        check_positive("crawler_poll_interval (seconds)", self._crawler_poll.to_seconds())
        # The steps' timeouts come from the one step description (runtime/pipeline_plan.py), as in every form.
        if crawler_max_polls is None:
            crawler_max_polls = max(1, DEFAULT_TIMINGS[CRAWL].timeout_seconds // int(self._crawler_poll.to_seconds()))
        if load_max_polls is None:
            load_max_polls = max(1, DEFAULT_TIMINGS[LOAD].timeout_seconds // int(self._load_poll.to_seconds()))
        check_positive("load_max_polls", load_max_polls)
        check_positive("crawler_max_polls", crawler_max_polls)
        check_positive("load_conflict_retries", load_conflict_retries)
        self._conflict_interval = load_conflict_interval if load_conflict_interval is not None else Duration.seconds(10)
        check_positive("load_conflict_interval (seconds)", self._conflict_interval.to_seconds())
        self.landing_prefix = storage.claim_prefix(
            self, "landing", landing_prefix if landing_prefix is not None else storage.landing_prefix_for(FORM_NAME)
        )
        self.alerting = alerting
        self.dataset = clean_job.contract.name
        self.ledger = ledger
        self._ledger = LedgerStates(self, ledger) if ledger is not None else None
        self.log_key = self._build_log_key(removal_policy)
        # Loads into one table run one at a time (forms/step_functions_lock.py); the lock lives in the ledger's table.
        lease = Duration.seconds(lease_seconds(load_max_polls * int(self._load_poll.to_seconds())))
        self.load_lock: LoadLock | None = (
            LoadLock(
                self,
                "LoadLock",
                ledger=ledger,
                target=self.targets,
                lease=lease,
                wait_budget=Duration.seconds(2 * int(lease.to_seconds())),
                log_key=self.log_key,
                log_retention=log_retention,
                removal_policy=removal_policy,
            )
            if ledger is not None
            else None
        )
        self.state_machine_timeout = execution_timeout if execution_timeout is not None else Duration.hours(4)
        self.scheduled_runs: ScheduledRuns | None = None
        """The scheduled form's inbox, claim function, run lock and schedule (None in upload mode)."""
        if self.schedule is not None and self.schedule_expression is not None and ledger is not None:
            self.scheduled_runs = ScheduledRuns(
                self,
                "ScheduledRuns",
                schedule=self.schedule,
                expression=self.schedule_expression,
                ledger=ledger,
                alerting=alerting,
                landing_bucket_name=storage.landing_bucket.bucket_name,
                landing_prefix=self.landing_prefix,
                execution_timeout=self.state_machine_timeout,
                log_key=self.log_key,
                log_retention=log_retention,
                removal_policy=removal_policy,
            )

        self.schema_check = SchemaCheck(
            self,
            "SchemaCheck",
            storage=storage,
            catalog=catalog,
            columns=[column.name for column in clean_job.contract.columns],
            landing_prefix=self.landing_prefix,
            ledger=ledger if self.scheduled_runs is not None else None,
            log_key=self.log_key,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        """Check Schema: the Lambda that decides whether a run crawls (forms/step_functions_schema.py)."""
        build = self._build_scheduled_steps if self.scheduled_runs is not None else self._build_steps
        definition = build(
            storage=storage,
            catalog=catalog,
            clean_job=clean_job,
            target=self.targets[0],
            crawler_max_polls=crawler_max_polls,
            job_timeout=job_timeout if job_timeout is not None else Duration.seconds(DEFAULT_TIMINGS[CLEAN].timeout_seconds),
            load_max_polls=load_max_polls,
            load_conflict_retries=load_conflict_retries,
        )
        self.state_machine = self._build_state_machine(
            definition,
            execution_timeout=self.state_machine_timeout,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        self._grant(storage, clean_job)
        self.failure_reporter = FailureReporter(
            self,
            "FailureReporter",
            pipeline=self.state_machine,
            dataset=self.dataset,
            alerting=alerting,
            ledger=ledger,
            load_lock=self.load_lock,
            scheduled_runs=self.scheduled_runs,
            log_key=self.log_key,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        self.dead_letter_queue, self.trigger_rule = self._build_trigger(storage, alerting, removal_policy)
        if self.scheduled_runs is not None:
            self.scheduled_runs.start_on_schedule(self.state_machine, removal_policy=removal_policy)
            self._allow_rejection_alerts(clean_job, alerting)
        self.alarms = self._build_alarms(alerting)

    # --- failures ----------------------------------------------------------------------------------------------------
    def _fail(self, state_id: str, error: str, cause: str) -> sfn.IChainable:
        """End the step's branch with `error`; `cause` is plain text, or an intrinsic ('States.…') computed first (a Fail
        state's CausePath takes a path, not an intrinsic)."""
        if not cause.startswith("States."):
            return sfn.Fail(self, state_id, error=error, cause=cause)
        describe = sfn.Pass(self, f"Describe {state_id}", parameters={"Cause.$": cause}, result_path="$.branch_failure")
        return describe.next(sfn.Fail(self, state_id, error=error, cause_path="$.branch_failure.Cause"))

    # --- steps -------------------------------------------------------------------------------------------------------
    def _build_steps(
        self,
        *,
        storage: PipelineStorage,
        catalog: PipelineCatalog,
        clean_job: CleanJob,
        target: LoadTarget,
        crawler_max_polls: int,
        job_timeout: Duration,
        load_max_polls: int,
        load_conflict_retries: int,
    ) -> sfn.IChainable:
        """Describe Upload -> Check Schema -> Crawl Needed? -> (Crawl) -> Run Clean Job -> rows? -> Load Into ... -> Loaded
        (built back to front).

        Each step is one state the execution fails at (the crawl and the load are Parallel states of one branch, so
        their polling and their verdicts stay inside them): nothing catches a step's failure."""
        loaded: sfn.IChainable = sfn.Succeed(self, "Loaded")
        if self._ledger is not None:
            loaded = self._ledger.finish("Record Loaded", "loaded").next(loaded)
        load: sfn.IChainable
        if len(self.targets) > 1:
            load = self._build_parallel_loads(loaded=loaded, max_polls=load_max_polls, conflict_retries=load_conflict_retries)
        else:
            if self.load_lock is not None:
                loaded = self.load_lock.release(self, owner_path=sfn.JsonPath.execution_id, then=loaded)
            load = self._build_load(target, loaded=loaded, max_polls=load_max_polls, conflict_retries=load_conflict_retries)
        if self._ledger is not None:
            load = self._ledger.step(LOAD).next(load)
        rows = self._build_rows_check(storage, clean_job, then=load)
        run_job = self._build_clean_step(clean_job, job_timeout)
        run_job.next(rows)
        clean: sfn.IChainable = run_job
        if self._ledger is not None:
            clean = self._ledger.step(CLEAN).next(run_job)
        crawl = self._build_crawl_steps(catalog, max_polls=crawler_max_polls)
        crawl.next(clean)
        checked = self._build_schema_check(
            crawl=crawl,
            skip=clean,
            source_uris=self._clean_arguments()["--source_uris"],
            source_versions=self._clean_arguments().get("--source_versions"),
        )
        start = sfn.Pass(
            self,
            "Describe Upload",
            comment="Keep what every later step needs: the object, its URI, when it arrived and the run id (the execution name).",
            parameters={
                "upload": {
                    "bucket.$": "$.detail.bucket.name",
                    "key.$": "$.detail.object.key",
                    "source_uri.$": "States.Format('s3://{}/{}', $.detail.bucket.name, $.detail.object.key)",
                    "arrived.$": "$.time",
                    "run_id.$": "$$.Execution.Name",
                    **({"version.$": "$.object_version.id", "etag.$": "$.detail.object.etag"} if self._ledger is not None else {}),
                },
                "crawler_poll": {"iteration": 0},
            },
        )
        if self._ledger is None:
            return start.next(checked)
        record = self._ledger.start()
        taken = sfn.Succeed(self, "Upload Already Taken", comment="Another run holds this upload, or it already ended: a repeated event")
        record.add_catch(taken, errors=["DynamoDB.ConditionalCheckFailedException"], result_path="$.ledger_refused")
        start.next(record).next(checked)
        return name_object_version(self, "$", then=start)

    def _build_scheduled_steps(
        self,
        *,
        storage: PipelineStorage,
        catalog: PipelineCatalog,
        clean_job: CleanJob,
        target: LoadTarget,
        crawler_max_polls: int,
        job_timeout: Duration,
        load_max_polls: int,
        load_conflict_retries: int,
    ) -> sfn.IChainable:
        """Claim Pending Uploads -> Anything Pending? -> (Run Already Going | Nothing To Run) or Describe Run -> Check
        Schema (every claimed upload; it records the decision on each) -> Crawl Needed? -> (Crawl) ->
        Run Clean Job (every claimed upload) -> Rows To Load? -> Record Load Step -> Load Into ... -> Release Load
        Lock -> Record Loaded -> Loaded; no rows -> Record Run Without Load -> No Rows To Load (built back to front).
        Parallel loads: Load Targets instead of the load and its release, each target's outcome recorded on every
        upload the run holds (no skip: a scheduled run's uploads are loaded together).

        As in upload mode, nothing catches a step's failure: the failure reporter records it on the run's uploads."""
        runs, lock = self.scheduled_runs, self.load_lock
        assert runs is not None and lock is not None
        loaded: sfn.IChainable = runs.finish(self, "Record Loaded", loaded=True).next(
            sfn.Succeed(self, "Loaded", comment="Every upload of the run ended with its own outcome", output_path="$.outcome")
        )
        load: sfn.IChainable
        if len(self.targets) > 1:
            load = self._build_parallel_loads(
                loaded=loaded,
                max_polls=load_max_polls,
                conflict_retries=load_conflict_retries,
                record=lambda name, outcome: runs.record_target(self, name, outcome),
            )
        else:
            loaded = lock.release(self, owner_path=sfn.JsonPath.execution_id, then=loaded)
            load = self._build_load(target, loaded=loaded, max_polls=load_max_polls, conflict_retries=load_conflict_retries)
        nothing = runs.finish(self, "Record Run Without Load", loaded=False).next(
            sfn.Succeed(
                self, "No Rows To Load", comment="No upload curated a row: nothing to load, and nothing failed.", output_path="$.outcome"
            )
        )
        rows = self._build_rows_check(storage, clean_job, then=runs.record_load_step(self).next(load), nothing=nothing)
        run_job = self._build_clean_step(clean_job, job_timeout, scheduled=True)
        run_job.next(rows)
        crawl = self._build_crawl_steps(catalog, max_polls=crawler_max_polls)
        crawl.next(run_job)
        checked = self._build_schema_check(
            crawl=crawl,
            skip=run_job,
            source_uris=sfn.JsonPath.string_at("$.claim.answer.source_uris"),
            source_versions=sfn.JsonPath.string_at("$.claim.answer.source_versions"),
        )
        describe = sfn.Pass(
            self,
            "Describe Run",
            comment="The run id (the execution name) and its start: a crawl that began after it covers every upload it took.",
            parameters={
                "upload": {"run_id.$": "$$.Execution.Name", "arrived.$": "$$.Execution.StartTime"},
                "claim.$": "$.claim",
                "crawler_poll": {"iteration": 0},
            },
        )
        describe.next(checked)
        going = sfn.Pass(self, "Another Run Going", parameters={"message.$": "$.claim.message"}).next(
            sfn.Succeed(self, "Run Already Going", comment="Another scheduled run holds the run lock: this one takes nothing")
        )
        empty = sfn.Pass(self, "Nothing Pending", parameters={"message.$": "$.claim.message"}).next(
            sfn.Succeed(self, "Nothing To Run", comment="No upload waits: nothing crawled, cleaned or loaded")
        )
        return runs.claim(self).next(
            sfn.Choice(self, "Anything Pending?")
            .when(sfn.Condition.boolean_equals("$.claim.held", True), going)
            .when(sfn.Condition.number_equals("$.claim.count", 0), empty)
            .otherwise(describe)
        )

    def _build_schema_check(
        self, *, crawl: sfn.IChainable, skip: sfn.IChainable, source_uris: str, source_versions: str | None
    ) -> sfn.IChainable:
        """Check Schema (the run's uploads) -> [Record Crawl Decision, upload mode with a ledger] -> Crawl Needed? ->
        `crawl` | `skip` (the clean job's first state). A scheduled run's check records the decision itself."""
        check = self.schema_check.check(self, source_uris=source_uris, source_versions=source_versions)
        choice = SchemaCheck.choose(self, crawl=crawl, skip=skip)
        if self._ledger is not None and self.scheduled_runs is None:
            check.next(self._ledger.crawl_decision()).next(choice)
        else:
            check.next(choice)
        return check

    def _build_crawl_steps(self, catalog: PipelineCatalog, *, max_polls: int) -> sfn.Parallel:
        """Crawl: Get Crawler -> Crawl Covers Upload? -> Upload Crawled | Start Crawler | wait and look again (at most
        `max_polls` times), as the one branch of a Parallel, so every crawl failure ends the execution at Crawl.

        A crawl covers the upload when it began at or after the upload's event time (EventBridge gives whole seconds,
        so a crawl started in the same second counts) and succeeded; one that began after the upload and failed fails
        the run. While a crawl runs the run waits, since LastCrawl is the last finished one.
        """
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
        retry_transient(get_crawler, _GLUE_TRANSIENT, interval=Duration.seconds(5), max_attempts=5)

        count = sfn.Pass(
            self,
            "Count Crawler Poll",
            parameters={"iteration.$": "States.MathAdd($.crawler_poll.iteration, 1)"},
            result_path="$.crawler_poll",
        )
        start_crawler = tasks.CallAwsService(
            self,
            "Start Crawler",
            comment="No crawl since the upload: start one. If another run just started one, wait for that one instead.",
            service="glue",
            action="startCrawler",
            parameters={"Name": catalog.crawler_name},
            iam_resources=[catalog.crawler_arn],
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(Duration.minutes(2)),
        )
        retry_transient(start_crawler, _GLUE_TRANSIENT, interval=Duration.seconds(5), max_attempts=5)
        start_crawler.add_catch(count, errors=["Glue.CrawlerRunningException"], result_path=sfn.JsonPath.DISCARD)
        start_crawler.next(count)

        crawler_failed = self._fail("Crawler Failed", "CrawlerFailed", "States.JsonToString($.crawler.Crawler.LastCrawl)")
        crawler_stuck = self._fail("Crawler Poll Cap Reached", "CrawlerTimeout", f"the crawler was still running after {max_polls} checks")
        last_start = "$.crawler.Crawler.LastCrawl.StartTime"
        began_after_upload = sfn.Condition.and_(
            sfn.Condition.is_timestamp(last_start),
            sfn.Condition.timestamp_greater_than_equals_json_path(last_start, "$.upload.arrived"),
        )
        # Rules are tried in order: the later ones only see a READY crawler that has a last crawl.
        covers = (
            sfn.Choice(self, "Crawl Covers Upload?")
            .when(sfn.Condition.not_(sfn.Condition.string_equals("$.crawler.Crawler.State", "READY")), count)
            .when(sfn.Condition.not_(sfn.Condition.is_present(last_start)), start_crawler)
            .when(
                sfn.Condition.and_(began_after_upload, sfn.Condition.string_equals("$.crawler.Crawler.LastCrawl.Status", "SUCCEEDED")),
                sfn.Succeed(self, "Upload Crawled"),
            )
            .when(began_after_upload, crawler_failed)
            .otherwise(start_crawler)
        )
        wait = sfn.Wait(self, "Wait For Crawler", time=sfn.WaitTime.duration(self._crawler_poll))
        below_cap = (
            sfn.Choice(self, "Poll Again?")
            .when(sfn.Condition.number_greater_than_equals("$.crawler_poll.iteration", max_polls), crawler_stuck)
            .otherwise(wait)
        )
        count.next(below_cap)
        wait.next(get_crawler)
        get_crawler.next(covers)
        crawl = sfn.Parallel(
            self,
            "Crawl",
            comment="A successful crawl that began after the upload: found, waited for, or started. Fails here otherwise.",
            result_path=sfn.JsonPath.DISCARD,
        )
        return crawl.branch(get_crawler)

    def _build_clean_step(self, clean_job: CleanJob, timeout: Duration, *, scheduled: bool = False) -> tasks.GlueStartJobRun:
        """Run Clean Job: the run's upload, or (`scheduled`) every upload its claim took, settled by the job itself
        (`--settle_uploads`: each upload's counts; rejected, empty and quarantined uploads end there, alerted once)."""
        arguments = self._scheduled_clean_arguments() if scheduled else self._clean_arguments()
        run_job = tasks.GlueStartJobRun(
            self,
            "Run Clean Job",
            glue_job_name=clean_job.job_name,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            arguments=sfn.TaskInput.from_object(arguments),
            result_selector={"JobRunId.$": "$.Id", "JobRunState.$": "$.JobRunState"},
            result_path="$.clean_job",
            task_timeout=sfn.Timeout.duration(timeout),
        )
        retry_transient(
            # 20 attempts (full jitter, waits up to 5 minutes): about an hour of queueing, so a burst larger than the
            # job's max_concurrent_runs waits for a free slot instead of failing.
            run_job,
            ["Glue.ConcurrentRunsExceededException", "Glue.ThrottlingException"],
            interval=Duration.seconds(60),
            max_attempts=20,
        )
        return run_job

    def _scheduled_clean_arguments(self) -> dict[str, Any]:
        assert self.ledger is not None
        return {
            "--source_uris": sfn.JsonPath.string_at("$.claim.answer.source_uris"),
            "--source_versions": sfn.JsonPath.string_at("$.claim.answer.source_versions"),
            "--run_id": sfn.JsonPath.string_at("$.upload.run_id"),
            "--settle_uploads": "true",
            "--ledger_table": self.ledger.table_name,
            "--ledger_ttl_days": str(self.ledger.retention_days),
            "--pipeline_form": FORM_NAME,
            "--alert_topic_arn": self.alerting.topic.topic_arn,
        }

    def _clean_arguments(self) -> dict[str, Any]:
        return {
            # A JSON array, so an object key containing a comma stays one URI.
            "--source_uris": sfn.JsonPath.json_to_string(sfn.JsonPath.array(sfn.JsonPath.string_at("$.upload.source_uri"))),
            "--run_id": sfn.JsonPath.string_at("$.upload.run_id"),
            **(
                {
                    "--ledger_table": self.ledger.table_name,
                    "--ledger_ttl_days": str(self.ledger.retention_days),
                    "--pipeline_form": FORM_NAME,
                    "--source_versions": sfn.JsonPath.json_to_string(sfn.JsonPath.array(sfn.JsonPath.string_at("$.upload.version"))),
                }
                if self.ledger is not None
                else {}
            ),
        }

    def _build_rows_check(
        self, storage: PipelineStorage, clean_job: CleanJob, *, then: sfn.IChainable, nothing: sfn.IChainable | None = None
    ) -> sfn.IChainable:
        """Find Curated Rows -> Rows To Load? -> `then` | `nothing` (default: No Rows To Load, which succeeds).

        The clean job writes a run's rows under `<dataset>/runs/run_id=<id>/<partition>=<value>/`; a run with no curated
        row (a header-only file, or every row quarantined within the allowed ratio) has no partition folder, and a
        Redshift COPY of it would fail with "no files found". One ListObjectsV2 (MaxKeys 1) on that prefix tells.
        """
        partition_name, _ = clean_job.contract.partition_column()
        self._rows_prefix = f"{clean_job.curated_prefix}run_id="
        template = format_literal(f"{self._rows_prefix}") + "{}" + format_literal(f"/{partition_name}=")
        find = sfn.CustomState(
            self,
            "Find Curated Rows",
            state_json={
                "Type": "Task",
                "Comment": "Does the run have any curated row? One listing of its partition folders (MaxKeys 1).",
                "Resource": f"arn:{Stack.of(self).partition}:states:::aws-sdk:s3:listObjectsV2",
                "Parameters": {
                    "Bucket": storage.curated_bucket.bucket_name,
                    "Prefix.$": f"States.Format('{template}', $.upload.run_id)",
                    "MaxKeys": 1,
                },
                "ResultSelector": {"KeyCount.$": "$.KeyCount"},
                "ResultPath": "$.curated",
                "TimeoutSeconds": 60,
            },
        )
        retry_transient(find, ["S3.S3Exception", "States.Timeout"], interval=Duration.seconds(2), max_attempts=4)
        if nothing is None:
            nothing = sfn.Succeed(self, "No Rows To Load", comment="The run curated no row: nothing to load, and nothing failed.")
            if self._ledger is not None:
                nothing = self._build_outcome_without_load(nothing)
        return find.next(
            sfn.Choice(self, "Rows To Load?").when(sfn.Condition.number_equals("$.curated.KeyCount", 0), nothing).otherwise(then)
        )

    def _build_outcome_without_load(self, then: sfn.IChainable) -> sfn.IChainable:
        """Read Clean Counts -> Record Quarantined | Record Skipped Empty -> `then` (pipeline_plan.outcome_without_load)."""
        assert self._ledger is not None
        counts = self._ledger.read_counts()
        quarantined = self._ledger.finish("Record Quarantined", QUARANTINED)
        empty = self._ledger.finish("Record Skipped Empty", SKIPPED_EMPTY)
        quarantined.next(then)
        empty.next(then)
        rows_quarantined = "$.ledger.Item.rows_quarantined.N"
        return counts.next(
            sfn.Choice(self, "Rows Quarantined?")
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_present(rows_quarantined), sfn.Condition.not_(sfn.Condition.string_equals(rows_quarantined, "0"))
                ),
                quarantined,
            )
            .otherwise(empty)
        )

    def _build_load(self, target: LoadTarget, *, loaded: sfn.IChainable, max_polls: int, conflict_retries: int) -> sfn.Parallel:
        """Load Into Athena | Load Into Redshift -> `loaded`."""
        if isinstance(target, RedshiftTarget):
            return self._build_redshift_load(target, loaded=loaded, max_polls=max_polls)
        return self._build_athena_load(target, loaded=loaded, max_polls=max_polls, conflict_retries=conflict_retries)

    def _named(self, state_id: str) -> str:
        """`state_id` of the target's load being built: as it is with one target, '<state_id> (<target>)' otherwise."""
        return f"{state_id}{self._state_suffix}"

    def _build_parallel_loads(
        self,
        *,
        loaded: sfn.IChainable,
        max_polls: int,
        conflict_retries: int,
        record: Callable[[str, str], sfn.CustomState | sfn.TaskStateBase] | None = None,
    ) -> sfn.IChainable:
        """Load Targets: a Parallel of one branch per target (see the class docstring) -> `loaded`. `record` makes a
        target outcome's ledger state (default: the upload's own native write; a scheduled run's: every held upload's,
        and no skip, since a scheduled run's uploads are loaded together or not at all)."""
        scheduled = record is not None
        if record is None and self._ledger is not None:
            record = self._ledger.target
        load = sfn.Parallel(
            self,
            "Load Targets",
            comment="Every target at once, each under its own load lock"
            + ("" if scheduled or self._ledger is None else "; a target an earlier run loaded is skipped"),
            result_path=sfn.JsonPath.DISCARD,
        )
        for target in self.targets:
            branch = self._build_target_branch(
                target, max_polls=max_polls, conflict_retries=conflict_retries, record=record, skip_loaded=not scheduled
            )
            load.branch(branch)
        load.next(loaded)
        return load

    def _build_target_branch(
        self,
        target: LoadTarget,
        *,
        max_polls: int,
        conflict_retries: int,
        record: Callable[[str, str], sfn.CustomState | sfn.TaskStateBase] | None,
        skip_loaded: bool,
    ) -> sfn.IChainable:
        """Read <Target> Outcome -> <Target> Loaded Before? -> (Load Into <Target> -> Record <Target> Loaded -> Release
        Load Lock (<target>) -> <Target> Loaded) | <Target> Loaded Before; the load's own failures -> Record <Target>
        Failed -> Release Load Lock After Failure (<target>) -> <Target> Load Failed."""
        name, title = target_name(target), target_name(target).title()
        done: sfn.IChainable = sfn.Succeed(self, f"{title} Loaded")
        lock = self.load_lock
        if lock is not None:
            done = lock.release(self, owner_path=sfn.JsonPath.execution_id, then=done, target=target)
        if record is not None:
            done = record(name, "loaded").next(done)
        describe = sfn.Pass(
            self,
            f"Describe {title} Load Failure",
            parameters={
                "Error.$": "$.load_error.Error",
                "Cause.$": f"States.Format('load into {name} failed: {{}}', $.load_error.Cause)",
            },
            result_path="$.branch_failure",
        )
        describe.next(sfn.Fail(self, f"{title} Load Failed", error_path="$.branch_failure.Error", cause_path="$.branch_failure.Cause"))
        failed: sfn.IChainable = describe
        if lock is not None:
            release = lock.release(
                self, owner_path=sfn.JsonPath.execution_id, then=failed, target=target, state_id=f"Release Load Lock After Failure ({name})"
            )
            release.add_catch(failed, errors=["States.ALL"], result_path="$.load_lock_error")
            failed = release
        if record is not None:
            recorded = record(name, "failed")
            assert isinstance(recorded, (sfn.CustomState, sfn.TaskStateBase))
            recorded.add_catch(failed, errors=["States.ALL"], result_path="$.ledger_error")
            failed = recorded.next(failed)
        self._state_suffix = f" ({name})"
        try:
            load = self._build_load(target, loaded=done, max_polls=max_polls, conflict_retries=conflict_retries)
        finally:
            self._state_suffix = ""
        load.add_catch(failed, errors=BRANCH_FAILURES, result_path="$.load_error")
        if self._ledger is None or not skip_loaded:
            return load
        attribute = f"$.target_record.Item.load_{name}.S"
        return self._ledger.read_target(name).next(
            sfn.Choice(self, f"{title} Loaded Before?")
            .when(
                sfn.Condition.and_(sfn.Condition.is_present(attribute), sfn.Condition.string_equals(attribute, "loaded")),
                sfn.Succeed(self, f"{title} Loaded Before", comment=f"An earlier run of this upload loaded {name}: not again"),
            )
            .otherwise(load)
        )

    def _build_athena_load(self, target: AthenaTarget, *, loaded: sfn.IChainable, max_polls: int, conflict_retries: int) -> sfn.Parallel:
        """Load Into Athena: a Parallel of one branch (start the MERGE -> poll -> outcome), retried on conflict only.

        Athena reports a MERGE that lost the race with a concurrent commit as a FAILED query whose reason holds
        ICEBERG_COMMIT_ERROR. The branch ends that case with its own error, `Load.IcebergCommitConflict`, which the
        Parallel retries (jittered exponential backoff; the MERGE is idempotent); every other failure ends with a
        different error and goes to the failure path at once. A query still running at the poll cap is stopped.
        """
        start_query = tasks.CallAwsService(
            self,
            self._named("Start Load Query"),
            comment="MERGE the run into the Iceberg table on the natural key",
            service="athena",
            action="startQueryExecution",
            iam_action="athena:StartQueryExecution",
            iam_resources=[target.workgroup_arn],
            parameters={
                "QueryString": sfn.JsonPath.format(target.merge_sql(), sfn.JsonPath.string_at("$.upload.run_id")),
                "WorkGroup": target.workgroup_name,
                "QueryExecutionContext": {"Database": target.database_name},
            },
            result_selector={"QueryExecutionId.$": "$.QueryExecutionId", "polls": 0},
            result_path="$.load",
            task_timeout=sfn.Timeout.duration(Duration.minutes(2)),
        )
        # Not States.Timeout: a submission that timed out may have started; the run fails instead of merging twice at once.
        retry_transient(
            start_query,
            ["Athena.TooManyRequestsException", "Athena.InternalServerException"],
            interval=Duration.seconds(10),
            max_attempts=5,
        )
        wait = sfn.Wait(self, self._named("Wait For Load"), time=sfn.WaitTime.duration(self._load_poll))
        get_query = tasks.CallAwsService(
            self,
            self._named("Get Load Query"),
            service="athena",
            action="getQueryExecution",
            iam_action="athena:GetQueryExecution",
            iam_resources=[target.workgroup_arn],
            parameters={"QueryExecutionId": sfn.JsonPath.string_at("$.load.QueryExecutionId")},
            result_selector={"Status.$": "$.QueryExecution.Status"},
            result_path="$.load_status",
            task_timeout=sfn.Timeout.duration(Duration.minutes(1)),
        )
        retry_transient(
            get_query,
            ["Athena.TooManyRequestsException", "Athena.InternalServerException", "States.Timeout"],
            interval=Duration.seconds(5),
            max_attempts=5,
        )
        count = sfn.Pass(
            self,
            self._named("Count Load Poll"),
            parameters={"QueryExecutionId.$": "$.load.QueryExecutionId", "polls.$": "States.MathAdd($.load.polls, 1)"},
            result_path="$.load",
        )
        stuck = self._fail(
            self._named("Load Query Poll Cap Reached"),
            "LoadTimeout",
            f"States.Format('query {{}} was still running after {max_polls} checks; stopped', $.load.QueryExecutionId)",
        )
        stop = tasks.CallAwsService(
            self,
            self._named("Stop Load Query"),
            service="athena",
            action="stopQueryExecution",
            iam_action="athena:StopQueryExecution",
            iam_resources=[target.workgroup_arn],
            parameters={"QueryExecutionId": sfn.JsonPath.string_at("$.load.QueryExecutionId")},
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(Duration.minutes(1)),
        )
        retry_transient(
            stop,
            ["Athena.TooManyRequestsException", "Athena.InternalServerException", "States.Timeout"],
            interval=Duration.seconds(5),
            max_attempts=3,
        )
        # The query may have finished in the meantime: report the cap either way.
        stop.add_catch(stuck, errors=["States.ALL"], result_path="$.stop_error")
        stop.next(stuck)
        below_cap = (
            sfn.Choice(self, self._named("Poll Load Again?"))
            .when(sfn.Condition.number_greater_than_equals("$.load.polls", max_polls), stop)
            .otherwise(wait)
        )
        count.next(below_cap)
        failed = self._fail(self._named("Load Query Failed"), "LoadFailed", "States.JsonToString($.load_status.Status)")
        conflict = sfn.Fail(
            self, self._named("Load Commit Conflict"), error=CONFLICT_ERROR, cause_path="$.load_status.Status.StateChangeReason"
        )
        reason = "$.load_status.Status.StateChangeReason"
        why = (
            sfn.Choice(self, self._named("Load Conflict?"))
            .when(sfn.Condition.not_(sfn.Condition.is_present(reason)), failed)
            .when(
                sfn.Condition.and_(
                    sfn.Condition.string_equals("$.load_status.Status.State", "FAILED"),
                    sfn.Condition.string_matches(reason, "*ICEBERG_COMMIT_ERROR*"),
                ),
                conflict,
            )
            .otherwise(failed)
        )
        finished = (
            sfn.Choice(self, self._named("Load Finished?"))
            .when(
                sfn.Condition.string_equals("$.load_status.Status.State", "SUCCEEDED"),
                sfn.Succeed(self, self._named("Load Query Succeeded")),
            )
            .when(
                sfn.Condition.or_(
                    sfn.Condition.string_equals("$.load_status.Status.State", "FAILED"),
                    sfn.Condition.string_equals("$.load_status.Status.State", "CANCELLED"),
                ),
                why,
            )
            .otherwise(count)
        )
        load = sfn.Parallel(
            self,
            "Load Into Athena",
            comment="One load attempt; retried only when a concurrent MERGE committed first",
            result_selector={"QueryExecutionId.$": "$[0].load.QueryExecutionId", "State.$": "$[0].load_status.Status.State"},
            result_path="$.load",
        )
        load.branch(self._check_run_id(target, then=start_query))
        start_query.next(wait).next(get_query).next(finished)
        load.add_retry(
            errors=[CONFLICT_ERROR],
            interval=self._conflict_interval,
            max_attempts=conflict_retries,
            backoff_rate=2,
            jitter_strategy=sfn.JitterType.FULL,
            max_delay=Duration.minutes(2),
        )
        load.next(loaded)
        return load

    def _build_redshift_load(self, target: RedshiftTarget, *, loaded: sfn.IChainable, max_polls: int) -> sfn.Parallel:
        """Load Into Redshift: a Parallel of one branch: batchExecuteStatement (one transaction) -> Wait ->
        describeStatement -> Choice.

        FINISHED succeeds; FAILED or ABORTED goes to the failure path with the statement's error; still running loops,
        and at `max_polls` checks the statement is cancelled (so it cannot commit after the run was reported failed)
        and the run fails. The Data API authenticates with IAM (temporary credentials of the state machine's role),
        never with the admin secret.
        """
        submit = tasks.CallAwsService(
            self,
            self._named("Start Load Statements"),
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
        wait = sfn.Wait(self, self._named("Wait For Load"), time=sfn.WaitTime.duration(self._load_poll))
        # Describe and Cancel are authorized by the target's load policy (no resource-level permissions exist for
        # them; an owner condition limits them to this role's statements); the task's own statement names the workgroup.
        describe = tasks.CallAwsService(
            self,
            self._named("Describe Load"),
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
        count = sfn.Pass(
            self,
            self._named("Count Load Poll"),
            parameters={"Id.$": "$.load.Id", "polls.$": "States.MathAdd($.load.polls, 1)"},
            result_path="$.load",
        )
        statement_failed = sfn.Fail(self, self._named("Load Statement Failed"), error="LoadFailed", cause_path="$.load_status.Error")
        statement_aborted = self._fail(
            self._named("Load Statement Aborted"), "LoadAborted", "States.Format('statement {} was {}', $.load.Id, $.load_status.Status)"
        )
        stuck = self._fail(
            self._named("Load Poll Cap Reached"),
            "LoadTimeout",
            f"States.Format('statement {{}} was still running after {max_polls} checks; cancelled', $.load.Id)",
        )
        cancel = tasks.CallAwsService(
            self,
            self._named("Cancel Load"),
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
            sfn.Choice(self, self._named("Poll Load Again?"))
            .when(sfn.Condition.number_greater_than_equals("$.load.polls", max_polls), cancel)
            .otherwise(wait)
        )
        count.next(below_cap)
        finished = (
            sfn.Choice(self, self._named("Load Finished?"))
            .when(
                sfn.Condition.string_equals("$.load_status.Status", "FINISHED"), sfn.Succeed(self, self._named("Load Statements Finished"))
            )
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
        load = sfn.Parallel(
            self,
            "Load Into Redshift",
            comment="COPY + MERGE of the run as one transaction, polled to its end. Fails here otherwise.",
            result_selector={"Id.$": "$[0].load.Id", "Status.$": "$[0].load_status.Status"},
            result_path="$.load",
        )
        load.branch(self._check_run_id(target, then=submit))
        load.next(loaded)
        return load

    def _check_run_id(self, target: LoadTarget, *, then: sfn.IChainable) -> sfn.IChainable:
        """The run id is spliced into the load's SQL (the MERGE's literal, the COPY's S3 URI); execution names may
        contain a quote, so such a run fails before the database sees it. Then the load lock is taken (with a ledger),
        inside the load's branch, so a retried or redriven load takes it again."""
        if self.load_lock is not None:
            then = self.load_lock.take(self, then=then, target=target)
        bad = self._fail(
            self._named("Run Id Not Loadable"),
            "InvalidRunId",
            "States.Format('run id {} contains a quote and cannot be used in the load SQL', $.upload.run_id)",
        )
        return (
            sfn.Choice(self, self._named("Run Id Loadable?"))
            .when(sfn.Condition.string_matches("$.upload.run_id", "*'*"), bad)
            .otherwise(then)
        )

    # --- state machine, permissions ----------------------------------------------------------------------------------
    def _build_log_key(self, removal_policy: RemovalPolicy) -> kms.Key:
        key = kms.Key(
            self,
            "LogKey",
            description=f"Step Functions execution logs of the {self.dataset} pipeline",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        allow_cloudwatch_logs(key)
        return key

    def _build_state_machine(
        self,
        definition: sfn.IChainable,
        *,
        execution_timeout: Duration,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> sfn.StateMachine:
        self.log_group = logs.LogGroup(
            self,
            "ExecutionLogs",
            encryption_key=self.log_key,
            retention=log_retention,
            removal_policy=removal_policy,
        )
        return sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=execution_timeout,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment=f"{self.dataset} pipeline: crawl, clean, load into {' and '.join(type(each).__name__ for each in self.targets)}",
        )

    def _grant(self, storage: PipelineStorage, clean_job: CleanJob) -> None:
        """The tasks' own statements come from their integrations (crawler, job, topic, Athena workgroup, Redshift
        workgroup); the load's data access comes from the target's load policy; the rows check may list the run
        output's prefix only. Nothing on '*' but what tracing and log delivery need."""
        for target in self.targets:
            target.grant_load(self.state_machine)
        if self.ledger is not None and self.scheduled_runs is None:
            self.ledger.grant_write(self.state_machine)
        if self.scheduled_runs is not None:  # its ledger writes are the function's
            self.scheduled_runs.acknowledge_invoke(self.state_machine.role)
        self.schema_check.acknowledge_invoke(self.state_machine.role)
        if self.load_lock is not None:
            self.load_lock.grant_release(self.state_machine)
            self.load_lock.acknowledge_invoke(self.state_machine.role)
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[storage.curated_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{self._rows_prefix}*"]}},
            )
        )
        acknowledge_tracing_and_log_delivery(self.state_machine.role)

    # --- trigger, alarms ---------------------------------------------------------------------------------------------
    def _build_trigger(
        self, storage: PipelineStorage, alerting: PipelineAlerting, removal_policy: RemovalPolicy
    ) -> tuple[sqs.Queue, events.Rule]:
        dead_letter_queue = alerting.new_dead_letter_queue(self, "TriggerDeadLetterQueue", removal_policy=removal_policy)
        if self.scheduled_runs is not None and self.schedule is not None:
            scheduled = events.Rule(
                self,
                "UploadRule",
                description=f"CSV uploads under {self.landing_prefix} wait in the inbox for the {self.dataset} pipeline's next "
                f"scheduled Step Functions run ({self.schedule_expression} {self.schedule.time_zone})",
                event_pattern=storage.upload_event_pattern(self.landing_prefix),
                targets=[RuleQueueTarget(self.scheduled_runs.inbox, dead_letter_queue=dead_letter_queue, max_event_age=Duration.hours(6))],
            )
            return dead_letter_queue, scheduled
        rule = events.Rule(
            self,
            "UploadRule",
            description=f"CSV uploads under {self.landing_prefix} start the {self.dataset} pipeline state machine",
            event_pattern=storage.upload_event_pattern(self.landing_prefix),
            targets=[
                targets.SfnStateMachine(
                    self.state_machine,
                    dead_letter_queue=dead_letter_queue,
                    retry_attempts=8,
                    max_event_age=Duration.hours(6),
                )
            ],
        )
        return dead_letter_queue, rule

    def _allow_rejection_alerts(self, clean_job: CleanJob, alerting: PipelineAlerting) -> None:
        """A scheduled run's clean job tells the topic once about files it rejects as a whole (their batch still loads)."""
        iam.ManagedPolicy(
            self,
            "CleanJobAlertPolicy",
            description=f"The clean job of a scheduled {FORM_NAME} run alerts once about files it rejects as a whole",
            roles=[clean_job.role],
            statements=[
                iam.PolicyStatement(actions=["sns:Publish"], resources=[alerting.topic.topic_arn]),
                iam.PolicyStatement(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[alerting.key.key_arn]),
            ],
        )

    def _build_alarms(self, alerting: PipelineAlerting) -> list[cloudwatch.Alarm]:
        period = Duration.minutes(5)
        self.executions_failed_alarm = alerting.alarm_when_any(
            self, "ExecutionsFailed", self.metric_runs_failed(period), f"A {self.dataset} pipeline execution failed"
        )
        self.executions_timed_out_alarm = alerting.alarm_when_any(
            self, "ExecutionsTimedOut", self.metric_timed_out(period=period), f"A {self.dataset} pipeline execution timed out"
        )
        self.executions_aborted_alarm = alerting.alarm_when_any(
            self, "ExecutionsAborted", self.metric_aborted(period=period), f"A {self.dataset} pipeline execution was aborted"
        )
        self.dead_letter_alarm = alerting.alarm_when_any(
            self,
            "UndeliveredUploads",
            self.dead_letter_queue.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
            "An upload event could not reach the inbox of the scheduled runs; it waits in the dead-letter queue"
            if self.scheduled_runs is not None
            else "An upload event could not start the state machine; it waits in the dead-letter queue",
        )
        alarms = [
            self.executions_failed_alarm,
            self.executions_timed_out_alarm,
            self.executions_aborted_alarm,
            self.dead_letter_alarm,
            *self.failure_reporter.alarms,
        ]
        self.schedule_dead_letter_alarm: cloudwatch.Alarm | None = None
        """On a schedule: a start EventBridge Scheduler could not make waits in the schedule's dead-letter queue."""
        if self.scheduled_runs is not None and self.scheduled_runs.dead_letter_queue is not None:
            self.schedule_dead_letter_alarm = alerting.alarm_when_any(
                self,
                "UnstartedScheduledRuns",
                self.scheduled_runs.dead_letter_queue.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
                "EventBridge Scheduler could not start a scheduled run; the next tick takes its uploads (the start waits in the dead-letter queue)",
                runbook=Runbook(ON_CALL, f"{REPLAY} (starts the run; or wait for the next tick)"),
            )
            alarms.append(self.schedule_dead_letter_alarm)
        return alarms

    # --- metrics -----------------------------------------------------------------------------------------------------
    def metric_runs_failed(self, period: Duration | None = None) -> cloudwatch.Metric:
        """Runs (executions) that failed. Default period: 5 minutes."""
        return self.state_machine.metric_failed(period=period)

    def metric_runs_succeeded(self, period: Duration | None = None) -> cloudwatch.Metric:
        """Runs (executions) that loaded their upload, or had nothing to load. Default period: 5 minutes."""
        return self.state_machine.metric_succeeded(period=period)

    def metric_timed_out(self, *, period: Duration | None = None) -> cloudwatch.Metric:
        """Executions that timed out. Default period: 5 minutes."""
        return self.state_machine.metric_timed_out(period=period)

    def metric_aborted(self, *, period: Duration | None = None) -> cloudwatch.Metric:
        """Executions that were aborted. Default period: 5 minutes."""
        return self.state_machine.metric_aborted(period=period)
