"""The Step Functions form on a schedule: EventBridge Scheduler starts the state machine, which takes what is pending.

In upload mode every upload starts its own execution. With a `Schedule`, uploads wait instead: the upload rule sends
each event to an encrypted SQS inbox (`inbox`), and EventBridge Scheduler (`schedule`: the schedule's expression in
its time zone, no flexible window, retried, with an encrypted dead-letter queue) starts one execution per tick.
That execution

1. takes the form's run lock and claims the pending uploads, in one small Lambda (`function`,
   `runtime/scheduled_runs.py`, over `workflow_inputs.claim_pending`, the Glue Workflow form's claim): the failed
   uploads fewer than three runs tried, the inbox's, and the ones `pipeline-ops` named in the execution's input
   (`requested`). The lock is a lease in the ledger's table (as the load lock is): a second run that finds it held
   ends at once (Run Already Going) and says so; a run with nothing pending releases it and ends (Nothing To Run).
2. crawls (the form's crawl steps), runs the clean job once over every claimed upload (`--settle_uploads`: each
   upload's own counts; rejected, empty and quarantined ones end there), and, when rows were curated, moves the
   rest to step load and loads once, holding the load lock (parallel loads: each target at once under its own lock,
   each target's outcome recorded on every upload the run holds; a failed target fails the run, naming it);
3. ends the uploads it still holds `loaded` and releases the run lock (Record Loaded / Record Run Without Load).

A failed, timed-out or aborted run is reported by the form's failure reporter (forms/step_functions_failures.py):
it releases both locks, records the failure on every upload the run still holds (the next run retakes them) and
sends one message naming them. The lock's lease (the execution timeout and a margin) frees only a lock that every
release missed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aws_cdk import (
    Duration,
    RemovalPolicy,
    TimeZone,
    aws_iam as iam,
    aws_kms as kms,
    aws_lambda as lambda_,
    aws_logs as logs,
    aws_scheduler as scheduler,
    aws_scheduler_targets as scheduler_targets,
    aws_sqs as sqs,
    aws_stepfunctions as sfn,
    aws_stepfunctions_tasks as tasks,
)

from constructs import Construct

from ..acknowledgements import acknowledge, acknowledge_findings
from ..alerting import PipelineAlerting
from ..lambda_code import stage_modules
from ..ledger import KEY_WRITE_ACTIONS, UploadLedger
from ..queue_trigger import upload_inbox
from ..runtime.scheduled_runs import run_lock_object
from ..runtime.upload_ledger import STATE_INDEX
from ..schedules import Schedule, ScheduleError, scheduler_expression
from ..validation import PipelinePropsError
from .step_functions_ledger import FORM_NAME
from .step_functions_states import acknowledge_tracing_and_log_delivery, retry_transient

CODE_MODULES = (
    "__init__.py",
    "runtime/__init__.py",
    "runtime/scheduled_runs.py",
    "runtime/workflow_inputs.py",
    "runtime/upload_ledger.py",
    "runtime/pipeline_plan.py",
    "runtime/load_lock/__init__.py",
    "runtime/load_lock/load_lock.py",
)
"""What the function imports (standard library and boto3 only), staged as pipeline_constructs/... in its code folder."""
HANDLER = "pipeline_constructs.runtime.scheduled_runs.handler"
LEASE_MARGIN = Duration.minutes(15)
_LAMBDA_TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "States.Timeout",
]


def stage_code(target: Path) -> Path:
    """Copy the function's modules into `target` (its code folder); returns `target`."""
    return stage_modules(target, CODE_MODULES, purpose="the scheduled runs function")


def check_schedule(schedule: Any) -> tuple[Schedule, str]:
    """(the Schedule, its EventBridge Scheduler expression); PipelinePropsError naming the bad value otherwise."""
    if isinstance(schedule, str):
        schedule = Schedule(schedule)
    if not isinstance(schedule, Schedule):
        raise PipelinePropsError(f"schedule={schedule!r}: give a Schedule(expression, time_zone) or a cron(...) / rate(...) string")
    try:
        return schedule, scheduler_expression(schedule)
    except ScheduleError as error:
        raise PipelinePropsError(f"schedule={schedule.expression!r} time_zone={schedule.time_zone!r}: {error}") from None


class ScheduledRuns(Construct):
    """The pieces of the scheduled Step Functions form (see the module docstring): `inbox`, `function` (claim, load,
    finish, fail), the run lock (`lock_object`, `lease`), and after `start_on_schedule` the `schedule` with its
    `dead_letter_queue` and role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        schedule: Schedule,
        expression: str,
        ledger: UploadLedger,
        alerting: PipelineAlerting,
        landing_bucket_name: str,
        landing_prefix: str,
        execution_timeout: Duration,
        log_key: kms.IKey,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.schedule_setting = schedule
        self.expression = expression
        self.ledger = ledger
        self.alerting = alerting
        self.landing_bucket_name = landing_bucket_name
        self.landing_prefix = landing_prefix
        self.lock_object = run_lock_object(FORM_NAME, landing_prefix)
        self.lease = Duration.seconds(int(execution_timeout.to_seconds() + LEASE_MARGIN.to_seconds()))
        """How long a run lock nobody released counts as held: the execution's timeout and a margin."""
        self.inbox = upload_inbox(self, self.alerting.key, removal_policy, read_by="the scheduled run's claim")
        self.function = self._build_function(log_key, log_retention, removal_policy)
        self.schedule: scheduler.Schedule | None = None
        self.dead_letter_queue: sqs.Queue | None = None

    def _build_function(self, log_key: kms.IKey, log_retention: logs.RetentionDays, removal_policy: RemovalPolicy) -> lambda_.Function:
        log_group = logs.LogGroup(self, "Logs", encryption_key=log_key, retention=log_retention, removal_policy=removal_policy)
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Scheduled Step Functions runs: take the run lock, claim, settle and fail the run's uploads in the ledger",
        )
        table = self.ledger.table_arn
        for statement in (
            iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]),
            iam.PolicyStatement(
                actions=["dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:PutItem"], resources=[table]
            ),
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=[f"{table}/index/{STATE_INDEX}"]),
            iam.PolicyStatement(actions=list(KEY_WRITE_ACTIONS), resources=[self.ledger.encryption_key.key_arn]),
            iam.PolicyStatement(actions=["sqs:ReceiveMessage", "sqs:DeleteMessage"], resources=[self.inbox.queue_arn]),
            iam.PolicyStatement(actions=["kms:Decrypt"], resources=[self.alerting.key.key_arn]),
        ):
            role.add_to_principal_policy(statement)
        with tempfile.TemporaryDirectory(prefix="scheduled-runs-") as staging:
            function = lambda_.Function(
                self,
                "Function",
                runtime=lambda_.Runtime.PYTHON_3_12,
                code=lambda_.Code.from_asset(str(stage_code(Path(staging)))),
                handler=HANDLER,
                description="Scheduled Step Functions runs: run lock, claim of the pending uploads, their outcomes and failures",
                role=role,
                timeout=Duration.minutes(5),
                memory_size=256,
                log_group=log_group,
                tracing=lambda_.Tracing.ACTIVE,
            )
        acknowledge_tracing_and_log_delivery(role)
        for finding, reason in {
            "AwsSolutions-L1": "Python 3.12, the runtime the project's Lambdas are tested on.",
            "Serverless-LambdaLatestVersion": "Python 3.12, the runtime the project's Lambdas are tested on.",
            "Serverless-LambdaDLQ": "Step Functions invokes the function synchronously and retries it; nothing is queued.",
            "Serverless-LambdaAsyncFailureDestination": "Step Functions invokes the function synchronously and retries "
            "it; a call that fails for good fails the run, which the failure reporter reports.",
        }.items():
            acknowledge(function, finding, reason)
        return function

    # --- the schedule ----------------------------------------------------------------------------------------------
    def start_on_schedule(self, state_machine: sfn.IStateMachine, *, removal_policy: RemovalPolicy) -> scheduler.Schedule:
        """The EventBridge Scheduler schedule that starts `state_machine` (input {"requested": []}) at each tick, in
        the schedule's time zone, without a flexible window; a start that fails is retried, then kept in
        `dead_letter_queue` (encrypted with the alert key)."""
        self.dead_letter_queue = self.alerting.new_dead_letter_queue(self, "ScheduleDeadLetterQueue", removal_policy=removal_policy)
        role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
            description="EventBridge Scheduler: start the scheduled Step Functions run",
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self.alerting.key.key_arn])
        )
        self.schedule = scheduler.Schedule(
            self,
            "Schedule",
            schedule=scheduler.ScheduleExpression.expression(self.expression, TimeZone.of(self.schedule_setting.time_zone)),
            time_window=scheduler.TimeWindow.off(),
            description=f"{self.expression} ({self.schedule_setting.time_zone}): take the pending uploads of {self.landing_prefix}",
            target=scheduler_targets.StepFunctionsStartExecution(
                state_machine,
                input=scheduler.ScheduleTargetInput.from_object({"requested": []}),
                role=role,
                retry_attempts=3,
                max_event_age=Duration.hours(1),
                dead_letter_queue=self.dead_letter_queue,
            ),
        )
        return self.schedule

    # --- states ----------------------------------------------------------------------------------------------------
    def _payload(self, action: str, **values: Any) -> dict[str, Any]:
        return {
            "action": action,
            "TableName": self.ledger.table_name,
            "form": FORM_NAME,
            "ttl_days": self.ledger.retention_days,
            "lock_object": self.lock_object,
            **values,
        }

    def invoke(
        self, scope: Construct, state_id: str, action: str, *, comment: str, result_path: str, selector: dict[str, Any], **values: Any
    ) -> tasks.LambdaInvoke:
        """One call of the function (`action`, with the table, form, lock and `values`), retried on Lambda's
        transient errors; its answer's fields `selector` names land at `result_path`."""
        invoke = tasks.LambdaInvoke(
            scope,
            state_id,
            comment=comment,
            lambda_function=self.function,
            payload=sfn.TaskInput.from_object(self._payload(action, **values)),
            retry_on_service_exceptions=False,
            result_selector=selector,
            result_path=result_path,
            task_timeout=sfn.Timeout.duration(Duration.minutes(6)),
        )
        retry_transient(invoke, _LAMBDA_TRANSIENT, interval=Duration.seconds(2), max_attempts=5)
        return invoke

    def claim(self, scope: Construct) -> tasks.LambdaInvoke:
        """Claim Pending Uploads: the run lock, then the pending uploads -> $.claim {held, count, message, source_uris?, ...}."""
        return self.invoke(
            scope,
            "Claim Pending Uploads",
            "claim",
            comment="Take the run lock (held: another run is going), then every pending upload: failed ones to retry, the inbox's",
            result_path="$.claim",
            selector={"held.$": "$.Payload.held", "count.$": "$.Payload.count", "message.$": "$.Payload.message", "answer.$": "$.Payload"},
            run_id=sfn.JsonPath.execution_name,
            execution=sfn.JsonPath.execution_id,
            lease_seconds=int(self.lease.to_seconds()),
            inbox_url=self.inbox.queue_url,
            landing_bucket=self.landing_bucket_name,
            landing_prefix=self.landing_prefix,
            input=sfn.JsonPath.object_at("$$.Execution.Input"),
        )

    def _claimed(self) -> dict[str, Any]:
        return {
            "run_id": sfn.JsonPath.execution_name,
            "execution": sfn.JsonPath.execution_id,
            "source_uris": sfn.JsonPath.string_at("$.claim.answer.source_uris"),
            "source_versions": sfn.JsonPath.string_at("$.claim.answer.source_versions"),
        }

    def record_load_step(self, scope: Construct) -> tasks.LambdaInvoke:
        return self.invoke(
            scope,
            "Record Load Step",
            "load",
            comment="The uploads the run still holds (the clean job ended the others) reach step load",
            result_path="$.loading",
            selector={"count.$": "$.Payload.loading"},
            **self._claimed(),
        )

    def record_target(self, scope: Construct, target: str, outcome: str) -> tasks.LambdaInvoke:
        """Record <Target> Loaded | Failed (parallel loads): `target`'s outcome on every upload the run still holds."""
        return self.invoke(
            scope,
            f"Record {target.title()} {outcome.title()}",
            "target",
            comment=f"The load into {target} ended {outcome}: recorded on every upload the run still holds",
            result_path="$.target_recorded",
            selector={"count.$": "$.Payload.recorded"},
            target=target,
            outcome=outcome,
            **self._claimed(),
        )

    def finish(self, scope: Construct, state_id: str, *, loaded: bool) -> tasks.LambdaInvoke:
        """`state_id`: with `loaded`, the uploads the run still holds end loaded; then the run lock is released."""
        return self.invoke(
            scope,
            state_id,
            "finish",
            comment=("The uploads the run still holds end loaded; " if loaded else "Nothing was curated: ")
            + "the run lock is released and the outcomes counted",
            result_path="$.outcome",
            selector={"outcomes.$": "$.Payload.outcomes", "message.$": "$.Payload.message"},
            loaded=loaded,
            **self._claimed(),
        )

    def record_failure(self, scope: Construct) -> tasks.LambdaInvoke:
        """Record Run Failure (the failure reporter): the run lock released, the failure on every upload the run holds
        -> $.report {already_reported, object, run_id}."""
        return self.invoke(
            scope,
            "Record Run Failure",
            "fail",
            comment="Release the run lock, record the failure on every upload the run holds; first report of the run?",
            result_path="$.report",
            selector={
                "already_reported.$": "$.Payload.already_reported",
                "object.$": "$.Payload.object",
                "run_id.$": "$.Payload.run_id",
            },
            run_id=sfn.JsonPath.string_at("$.detail.name"),
            execution=sfn.JsonPath.string_at("$.detail.executionArn"),
            error=sfn.JsonPath.string_at("$.error.Error"),
            cause=sfn.JsonPath.string_at("$.error.Cause"),
        )

    def acknowledge_invoke(self, role: iam.IRole) -> None:
        """The invoke grant Step Functions adds names the function and its versions (its ARN followed by ':*')."""
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            "lambda:InvokeFunction on the scheduled runs function and its versions only (the function's ARN followed by :*).",
            matching=r"Resource::<[A-Za-z0-9]*ScheduledRunsFunction[A-Za-z0-9]*\.Arn>:\*",
            actions=["lambda:InvokeFunction"],
        )
