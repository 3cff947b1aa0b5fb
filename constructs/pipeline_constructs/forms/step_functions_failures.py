"""The Step Functions form's failure report: one message per failed, timed-out or aborted execution, sent from the
execution's status-change event instead of from inside the run.

Why outside the run: a run that catches its errors into a notify-then-Fail path ends at that Fail state, and
`RedriveExecution`, which resumes from the state that failed, re-enters the Fail state and fails again. So the
pipeline's steps have no catch-all: a step that fails after its retries ends the execution failed at its own state,
where a redrive resumes it. EventBridge then delivers the execution's `Step Functions Execution Status Change` event
to a small Express state machine (this module) that

1. releases the form's load lock (with parallel loads: every target's) if that execution holds it (a conditional
   delete: forms/step_functions_lock.py),
2. reads the upload from the execution's input (the S3 event) and the failing state from its history,
3. records the failure in the upload ledger (the run must own the record: the write is conditional), and
4. publishes the message (pipeline, object, run_id, failed_step, error, cause, execution) to the alert topic.

Exactly once: a repeated event finds the record already failed by this run (the conditional write is refused and a
read shows `failed`) and publishes nothing; its lock release is refused (the lock is gone, or another execution's)
and changes nothing. A run that never took its record (it failed before or at its first
ledger write) is still reported. Without a ledger every event is published (EventBridge delivers at least once).

A scheduled run (forms/step_functions_schedule.py) took many uploads, not the one of an S3 event: after the load
lock, its report calls the form's scheduled runs function (Record Run Failure), which releases the run lock, records
the failure on every upload the run holds (the next scheduled run retakes them) and names them; the one message
names them all. A marker item in the ledger's table makes a repeated event publish nothing.
"""

from __future__ import annotations

from aws_cdk import (
    ArnFormat,
    Duration,
    RemovalPolicy,
    Stack,
    aws_events as events,
    aws_events_targets as targets,
    aws_kms as kms,
    aws_logs as logs,
    aws_sqs as sqs,
    aws_stepfunctions as sfn,
    aws_stepfunctions_tasks as tasks,
)

from constructs import Construct

from ..acknowledgements import acknowledge_findings
from ..alerting import PipelineAlerting
from ..ledger import UploadLedger
from ..runtime.upload_ledger import FAILED
from .step_functions_ledger import FORM_NAME, LedgerStates
from .step_functions_lock import LoadLock
from .step_functions_schedule import ScheduledRuns
from .step_functions_states import acknowledge_tracing_and_log_delivery, format_literal, name_object_version, retry_transient

REPORTED_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
HISTORY_EVENTS = 200
"""Events read back from the end of the history to find the failing state (a step retried 20 times writes ~60)."""
UNKNOWN_STEP = "unknown (see the execution's history)"


class FailureReporter(Construct):
    """Execution status change (FAILED, TIMED_OUT, ABORTED) -> Express state machine: ledger `failed`, one SNS message.

    - `rule`: the EventBridge rule on the pipeline state machine's status changes; undeliverable events wait in
      `dead_letter_queue` (alarmed; `pipeline-ops replay-dead-letters` starts the reporter with them).
    - `state_machine`: the Express reporter; `alarms` holds one on its failures (a message that could not be sent)
      and one on the dead-letter queue.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        pipeline: sfn.StateMachine,
        dataset: str,
        alerting: PipelineAlerting,
        ledger: UploadLedger | None,
        log_key: kms.IKey,
        load_lock: LoadLock | None = None,
        scheduled_runs: ScheduledRuns | None = None,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dataset = dataset
        self._ledger = LedgerStates(self, ledger) if ledger is not None else None
        self._load_lock = load_lock
        self._scheduled_runs = scheduled_runs
        log_group = logs.LogGroup(self, "Logs", encryption_key=log_key, retention=log_retention, removal_policy=removal_policy)
        history_arn = Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{pipeline.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_type=sfn.StateMachineType.EXPRESS,
            definition_body=sfn.DefinitionBody.from_chainable(self._definition(alerting, history_arn)),
            timeout=Duration.minutes(5),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment=f"{dataset} pipeline: report a failed, timed-out or aborted execution once (ledger, then topic)",
        )
        if ledger is not None and scheduled_runs is None:
            ledger.grant_write(self.state_machine)
        if scheduled_runs is not None:  # its ledger writes are the function's
            scheduled_runs.acknowledge_invoke(self.state_machine.role)
        if load_lock is not None:
            load_lock.grant_release(self.state_machine)
        acknowledge_findings(
            self.state_machine.role,
            "AwsSolutions-IAM5",
            "GetExecutionHistory is granted on the executions of the pipeline's own state machine only "
            "(an execution ARN is the state machine's name followed by the execution's name).",
            matching=r"Resource::arn:(?:<[^>]+>|[^:]+):states:(?:<[^>]+>|[^:]+):(?:<[^>]+>|[^:]+):execution:<[A-Za-z0-9]+\.Name>:\*",
            actions=["states:GetExecutionHistory"],
        )
        acknowledge_tracing_and_log_delivery(self.state_machine.role)
        self.dead_letter_queue: sqs.Queue = alerting.new_dead_letter_queue(self, "DeadLetterQueue", removal_policy=removal_policy)
        self.rule = events.Rule(
            self,
            "StatusChangeRule",
            description=f"A {dataset} pipeline execution that failed, timed out or was aborted is reported once",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={"stateMachineArn": [pipeline.state_machine_arn], "status": list(REPORTED_STATUSES)},
            ),
            targets=[
                targets.SfnStateMachine(
                    self.state_machine, dead_letter_queue=self.dead_letter_queue, retry_attempts=8, max_event_age=Duration.hours(6)
                )
            ],
        )
        period = Duration.minutes(5)
        self.alarms = [
            alerting.alarm_when_any(
                self,
                "ReportsFailed",
                self.state_machine.metric_failed(period=period),
                f"A failure of the {dataset} pipeline could not be reported (see the reporter's logs)",
            ),
            alerting.alarm_when_any(
                self,
                "UndeliveredReports",
                self.dead_letter_queue.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
                "A status-change event of a failed execution could not reach the reporter; it waits in the dead-letter queue",
            ),
        ]

    def _definition(self, alerting: PipelineAlerting, history_arn: str) -> sfn.IChainable:
        if self._scheduled_runs is not None:
            return self._scheduled_definition(self._scheduled_runs, alerting, history_arn)
        notify = self._notify(alerting)
        record: sfn.IChainable = notify
        if self._ledger is not None:
            record = self._record_once(notify)
        failing_state = self._find_failing_state(history_arn, then=record)
        describe = self._describe_failure(then=failing_state)
        upload = sfn.Pass(
            self,
            "Describe Upload",
            comment="The object and run id, as the pipeline's own Describe Upload names them",
            parameters={
                "upload": {
                    "bucket.$": "$.event.detail.bucket.name",
                    "key.$": "$.event.detail.object.key",
                    "source_uri.$": "States.Format('s3://{}/{}', $.event.detail.bucket.name, $.event.detail.object.key)",
                    "run_id.$": "$.detail.name",
                    "version.$": "$.object_version.id",
                    "etag.$": "$.event.detail.object.etag",
                },
                "detail.$": "$.detail",
            },
        )
        upload.next(describe)
        read = sfn.Pass(
            self,
            "Read Execution Input",
            comment="The execution's input is the S3 Object Created event that started it (or pipeline-ops' copy of it)",
            parameters={"event.$": "States.StringToJson($.detail.input)", "detail.$": "$.detail"},
        )
        read.next(name_object_version(self, "$.event", then=upload))
        if self._load_lock is None:
            return read
        # First, so the next load into the table starts as early as it can: refused when the execution held no lock
        # (or an event came again); any other error leaves the lock to its lease and the report goes on. With
        # parallel loads, every target's lock, one after the other.
        return self._load_lock.release_every(self, owner_path="$.detail.executionArn", then=read)

    def _scheduled_definition(self, runs: ScheduledRuns, alerting: PipelineAlerting, history_arn: str) -> sfn.IChainable:
        """Release Load Lock -> Describe Run -> How Did It End? -> Read Execution History -> Record Run Failure ->
        First Report? -> Name Uploads -> Notify Failure | Already Reported."""
        notify = self._notify(alerting)
        named = sfn.Pass(
            self,
            "Name Uploads",
            comment="The message's object: every upload the run held when it failed",
            parameters={"source_uri.$": "$.report.object", "run_id.$": "$.report.run_id"},
            result_path="$.upload",
        )
        named.next(notify)
        record = runs.record_failure(self)
        already = sfn.Succeed(self, "Already Reported", comment="A repeated event: this run's failure is in the ledger and was sent")
        record.next(
            sfn.Choice(self, "First Report?")
            .when(sfn.Condition.boolean_equals("$.report.already_reported", True), already)
            .otherwise(named)
        )
        # The ledger could not be written (after its retries): the message still goes out, naming the run.
        unrecorded = sfn.Pass(
            self,
            "Uploads Not Recorded",
            parameters={
                "source_uri.$": "States.Format('the uploads of run {} (their failure could not be recorded: see the reporter logs)', $.detail.name)",
                "run_id.$": "$.detail.name",
            },
            result_path="$.upload",
        )
        unrecorded.next(notify)
        record.add_catch(unrecorded, errors=["States.ALL"], result_path="$.ledger_error")
        failing_state = self._find_failing_state(history_arn, then=record)
        describe = self._describe_failure(then=failing_state)
        run = sfn.Pass(
            self,
            "Describe Run",
            comment="A scheduled run: its run id is the execution name; its uploads are named by Record Run Failure",
            parameters={"upload": {"run_id.$": "$.detail.name"}, "detail.$": "$.detail"},
        )
        run.next(describe)
        if self._load_lock is None:
            return run
        return self._load_lock.release_every(self, owner_path="$.detail.executionArn", then=run)

    def _describe_failure(self, *, then: sfn.IChainable) -> sfn.IChainable:
        """$.error = {Error, Cause} from the event: a failure's own, or what a timeout or an abort means."""

        def error(state_id: str, parameters: dict[str, str]) -> sfn.IChainable:
            return sfn.Pass(self, state_id, parameters=parameters, result_path="$.error").next(then)

        return (
            sfn.Choice(self, "How Did It End?")
            .when(
                sfn.Condition.and_(sfn.Condition.string_equals("$.detail.status", "FAILED"), sfn.Condition.is_string("$.detail.cause")),
                error("Execution Failed", {"Error.$": "$.detail.error", "Cause.$": "$.detail.cause"}),
            )
            .when(
                sfn.Condition.and_(sfn.Condition.string_equals("$.detail.status", "FAILED"), sfn.Condition.is_string("$.detail.error")),
                error("Execution Failed Without Cause", {"Error.$": "$.detail.error", "Cause": "the failing state gave no cause"}),
            )
            .when(
                sfn.Condition.string_equals("$.detail.status", "TIMED_OUT"),
                error("Execution Timed Out", {"Error": "States.Timeout", "Cause": "the execution ran past its timeout"}),
            )
            .otherwise(
                error("Execution Ended", {"Error.$": "States.Format('Execution{}', $.detail.status)", "Cause": "stopped before its end"})
            )
        )

    def _find_failing_state(self, history_arn: str, *, then: sfn.IChainable) -> sfn.IChainable:
        """$.failed_step = the last state the execution entered (the failing one), read from the end of its history."""
        history = tasks.CallAwsService(
            self,
            "Read Execution History",
            service="sfn",
            action="getExecutionHistory",
            iam_action="states:GetExecutionHistory",
            iam_resources=[history_arn],
            parameters={
                "ExecutionArn.$": "$.detail.executionArn",
                "ReverseOrder": True,
                "MaxResults": HISTORY_EVENTS,
                "IncludeExecutionData": False,
            },
            result_selector={"entered.$": "$.Events[?(@.StateEnteredEventDetails)].StateEnteredEventDetails.Name"},
            result_path="$.history",
            task_timeout=sfn.Timeout.duration(Duration.seconds(30)),
        )
        retry_transient(history, ["Sfn.ThrottlingException", "States.Timeout"], interval=Duration.seconds(1), max_attempts=4)
        unknown = sfn.Pass(self, "Failing State Unknown", result=sfn.Result.from_string(UNKNOWN_STEP), result_path="$.failed_step")
        history.add_catch(unknown, errors=["States.ALL"], result_path="$.history_error")
        named = sfn.Pass(
            self,
            "Name Failing State",
            parameters={
                "upload.$": "$.upload",
                "detail.$": "$.detail",
                "error.$": "$.error",
                "failed_step.$": "States.ArrayGetItem($.history.entered, 0)",
            },
        )
        named.next(then)
        unknown.next(then)
        return history.next(
            sfn.Choice(self, "Failing State Found?").when(sfn.Condition.is_present("$.history.entered[0]"), named).otherwise(unknown)
        )

    def _record_once(self, notify: sfn.IChainable) -> sfn.IChainable:
        """Record Failure (owned by this run) -> notify; refused -> notify unless the record already says failed."""
        assert self._ledger is not None
        record = self._ledger.fail()
        read = self._ledger.read_state()
        already = sfn.Succeed(self, "Already Reported", comment="A repeated event: this failure is in the ledger and was sent")
        read.next(
            sfn.Choice(self, "Failure Already Recorded?")
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_present("$.ledger.Item.state.S"), sfn.Condition.string_equals("$.ledger.Item.state.S", FAILED)
                ),
                already,
            )
            .otherwise(notify)
        )
        read.add_catch(notify, errors=["States.ALL"], result_path="$.ledger_error")
        record.add_catch(read, errors=["DynamoDB.ConditionalCheckFailedException"], result_path="$.ledger_refused")
        # Any other ledger error (after its retries) still sends the message: the topic is what someone reads.
        record.add_catch(notify, errors=["States.ALL"], result_path="$.ledger_error")
        return record.next(notify)

    def _notify(self, alerting: PipelineAlerting) -> sfn.IChainable:
        notify = tasks.SnsPublish(
            self,
            "Notify Failure",
            topic=alerting.topic,
            subject=sfn.JsonPath.format(f"{format_literal(self.dataset)} pipeline failed at {{}}", sfn.JsonPath.string_at("$.failed_step")),
            message=sfn.TaskInput.from_object(
                {
                    "pipeline": FORM_NAME,
                    "object": sfn.JsonPath.string_at("$.upload.source_uri"),
                    "run_id": sfn.JsonPath.string_at("$.upload.run_id"),
                    "failed_step": sfn.JsonPath.string_at("$.failed_step"),
                    "error": sfn.JsonPath.string_at("$.error.Error"),
                    "cause": sfn.JsonPath.string_at("$.error.Cause"),
                    "execution": sfn.JsonPath.string_at("$.detail.executionArn"),
                }
            ),
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(Duration.seconds(30)),
        )
        retry_transient(
            notify, ["SNS.ThrottledException", "SNS.InternalErrorException", "States.Timeout"], interval=Duration.seconds(2), max_attempts=5
        )
        return notify
