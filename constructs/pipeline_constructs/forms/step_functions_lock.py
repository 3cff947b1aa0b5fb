"""The Step Functions form's load lock: the loads into one target table run one at a time (issue 24).

In upload mode every upload starts its own execution. Their crawls and clean jobs run side by side, but MERGEs
into one Iceberg table race: the loser fails with ICEBERG_COMMIT_ERROR and is retried, and the more uploads arrive
together, the more each one retries (a Redshift MERGE on one table queues behind the table lock the same way). So
each load first takes a lock, an item of the upload ledger's table:

  object = 'lock:athena:<database>.<table>' or 'lock:redshift:<database>.<schema>.<table>', version = 'load'
  owner (the holding execution's ARN), run_id, taken_at, lease_expires_at (ISO 8601 UTC), expires_at (TTL)

It has no `state` attribute, so the ledger's by_state index, `pipeline-ops status` and the scheduled runs never see
it, and its object is no S3 URI, so `show` and `reconcile` (which look records up by upload) never meet it.

- Take Load Lock (first state of the load's branch, after the rows check: a run that loads nothing takes no lock):
  `runtime/load_lock/load_lock.py`, a small Lambda, writes the item conditionally: free, already this execution's, or
  its lease ended. Otherwise it raises `LoadLockHeld`, retried with full jitter (the first wait up to 5 s, doubling to
  at most a minute) for about `wait_budget` on average, then the branch fails at Load Lock Wait Cap Reached.
  The lock is taken inside the load's Parallel, so a retried or redriven load takes it again (renewing its lease).
- Release Load Lock: after the load, a native conditional DeleteItem (owner = this execution). A refusal means the
  lease ended and another execution took the lock over: nothing is left to release.
- The failure reporter (forms/step_functions_failures.py) deletes it for a failed, timed-out or aborted execution,
  on the same condition: a repeated status-change event, or an execution that never held the lock, is refused
  harmlessly.
- The lease (load timeout x the step description's attempts) only frees a lock that both releases missed.
- Parallel loads (`target=[athena, redshift]`): one lock item per target table, so the Athena load and the Redshift
  load run at the same time while two loads into one table still wait for each other. One function takes either
  (it may write those items only); the states carry the target in their names ("Take Load Lock (redshift)"), and
  the failure reporter releases every target's lock.

Why a Lambda: a lease needs `now` and `now + lease` on every attempt. JSONPath intrinsics cannot add to a timestamp,
and `$$.State.EnteredTime` stays the same through a state's retries, so a native DynamoDB task could not tell a lease
that ended from one that runs. The function does that one conditional write and nothing else; the release needs no
clock, so it stays a native task in both state machines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aws_cdk import (
    Duration,
    RemovalPolicy,
    Stack,
    aws_iam as iam,
    aws_kms as kms,
    aws_lambda as lambda_,
    aws_logs as logs,
    aws_stepfunctions as sfn,
    aws_stepfunctions_tasks as tasks,
)

from constructs import Construct

from ..acknowledgements import acknowledge, acknowledge_findings
from ..ledger import KEY_WRITE_ACTIONS, UploadLedger
from ..runtime.pipeline_plan import DEFAULT_TIMINGS, LOAD
from ..runtime.upload_ledger import PARTITION_KEY, SORT_KEY
from ..targets.load_target import LoadTarget, load_targets, target_name
from ..targets.redshift import RedshiftTarget
from .step_functions_ledger import _TRANSIENT as _DYNAMODB_TRANSIENT
from .step_functions_states import acknowledge_tracing_and_log_delivery, retry_transient

LOCK_VERSION = "load"
"""The lock item's sort key."""
LOCK_HELD_ERROR = "LoadLockHeld"
"""What the lock function raises while another execution's lease runs (the error Step Functions retries)."""
LOCK_WAIT_ERROR = "LoadLockTimeout"
"""The branch's error when the waits for the lock are used up."""
CODE = Path(__file__).resolve().parent.parent / "runtime" / "load_lock"
HANDLER = "load_lock.handler"
FIRST_WAIT = Duration.seconds(5)
MAX_WAIT = Duration.seconds(60)
_CONDITION_FAILED = "DynamoDB.ConditionalCheckFailedException"
_LAMBDA_TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "States.Timeout",
]


def lock_object(target: LoadTarget) -> str:
    """The lock item's partition key: the target and the table its loads write."""
    if isinstance(target, RedshiftTarget):
        return f"lock:redshift:{target.database_name}.{target.schema_name}.{target.table_name}"
    return f"lock:athena:{target.database_name}.{target.table_name}"


def lease_seconds(load_timeout_seconds: int) -> int:
    """How long a taken lock counts as held without a release: the load's timeout times its attempts in the step
    description (runtime/pipeline_plan.py), so a live load never loses its lock."""
    return load_timeout_seconds * (DEFAULT_TIMINGS[LOAD].retries + 1)


def wait_attempts(budget_seconds: int, *, first: Duration = FIRST_WAIT, most: Duration = MAX_WAIT) -> int:
    """Attempts of the lock's retry (backoff 2, full jitter: each wait averages half its backoff) whose waits add up to
    `budget_seconds` on average."""
    attempts, expected, backoff = 0, 0.0, first.to_seconds()
    while expected < budget_seconds:
        expected += min(backoff, most.to_seconds()) / 2
        backoff *= 2
        attempts += 1
    return attempts


class LoadLock(Construct):
    """The lock item of one target table in the upload ledger, the function that takes it, and the states that take
    and release it (see the module docstring).

    - `object`: the item's partition key (the first target's; `objects` names each target's); `lease`: how long a lock
      nobody released stays held; `wait_budget`: how long (on average) a load waits for the lock before its run
      fails at Load Lock Wait Cap Reached.
    - `function`: the Lambda that takes the lock; it may update those items only (dynamodb:LeadingKeys).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        ledger: UploadLedger,
        target: LoadTarget | Sequence[LoadTarget],
        lease: Duration,
        wait_budget: Duration,
        log_key: kms.IKey,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.ledger = ledger
        self.targets = load_targets(target)
        self.objects = {target_name(each): lock_object(each) for each in self.targets}
        """Each target's lock item (partition key), by target name."""
        self.object = lock_object(self.targets[0])
        self.lease = lease
        self.wait_budget = wait_budget
        self.key = self._key(self.object)
        log_group = logs.LogGroup(self, "Logs", encryption_key=log_key, retention=log_retention, removal_policy=removal_policy)
        role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description="Take the load lock")
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn])
        )
        self._grant_item(role, "dynamodb:UpdateItem")
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_12,
            code=lambda_.Code.from_asset(str(CODE), exclude=["__pycache__", "*.pyc"]),
            handler=HANDLER,
            description=f"Take the load lock of {self._described_tables()} table (one conditional write with a lease)",
            role=role,
            timeout=Duration.seconds(10),
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
            acknowledge(self.function, finding, reason)

    @staticmethod
    def _key(lock: str) -> dict[str, Any]:
        return {PARTITION_KEY: {"S": lock}, SORT_KEY: {"S": LOCK_VERSION}}

    def _described_tables(self) -> str:
        if len(self.targets) == 1:
            return type(self.targets[0]).__name__
        return "an " + " or a ".join(type(each).__name__ for each in self.targets)

    def _suffix(self, target: LoadTarget | None) -> tuple[str, dict[str, Any], str]:
        """(state name suffix, lock key, lock object) of `target`: no suffix with one target, ' (<target>)' otherwise."""
        if target is None or len(self.targets) == 1:
            return "", self.key, self.object
        lock = self.objects[target_name(target)]
        return f" ({target_name(target)})", self._key(lock), lock

    def _grant_item(self, grantee: iam.IGrantable, action: str) -> None:
        """`action` on the lock items only (their partition keys), and the ledger key to encrypt with."""
        self.ledger.encryption_key.grant(grantee, *KEY_WRITE_ACTIONS)
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[action],
                resources=[self.ledger.table_arn],
                conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": list(self.objects.values())}},
            )
        )

    def grant_release(self, grantee: iam.IGrantable) -> None:
        """DeleteItem on the lock item only: what the pipeline and its failure reporter release it with."""
        self._grant_item(grantee, "dynamodb:DeleteItem")

    # --- states ------------------------------------------------------------------------------------------------------
    def take(self, scope: Construct, *, then: sfn.IChainable, target: LoadTarget | None = None) -> sfn.IChainable:
        """Take Load Lock -> `then`; the waits used up -> Load Lock Wait Cap Reached (fails the branch). With several
        targets, `target`'s lock, in states named after it."""
        suffix, key, lock = self._suffix(target)
        attempts = wait_attempts(int(self.wait_budget.to_seconds()))
        take = tasks.LambdaInvoke(
            scope,
            f"Take Load Lock{suffix}",
            comment="One load into the table at a time: wait (retried) while another execution holds the lock",
            lambda_function=self.function,
            payload=sfn.TaskInput.from_object(
                {
                    "TableName": self.ledger.table_name,
                    "Key": key,
                    "owner": sfn.JsonPath.execution_id,
                    "run_id": sfn.JsonPath.string_at("$.upload.run_id"),
                    "lease_seconds": int(self.lease.to_seconds()),
                }
            ),
            retry_on_service_exceptions=False,
            result_selector={"taken_at.$": "$.Payload.taken_at", "lease_expires_at.$": "$.Payload.lease_expires_at"},
            result_path="$.load_lock",
            task_timeout=sfn.Timeout.duration(Duration.seconds(30)),
        )
        take.add_retry(
            errors=[LOCK_HELD_ERROR],
            interval=FIRST_WAIT,
            max_attempts=attempts,
            backoff_rate=2,
            jitter_strategy=sfn.JitterType.FULL,
            max_delay=MAX_WAIT,
        )
        retry_transient(take, _LAMBDA_TRANSIENT, interval=Duration.seconds(2), max_attempts=5)
        waited = sfn.Fail(
            scope,
            f"Load Lock Wait Cap Reached{suffix}",
            error=LOCK_WAIT_ERROR,
            cause=f"another execution held the load lock ({lock}) through {attempts} attempts "
            f"(about {int(self.wait_budget.to_seconds()) // 60} minutes)",
        )
        take.add_catch(waited, errors=[LOCK_HELD_ERROR], result_path="$.load_lock_error")
        return take.next(then)

    def release(
        self,
        scope: Construct,
        *,
        owner_path: str,
        then: sfn.IChainable | None = None,
        target: LoadTarget | None = None,
        state_id: str | None = None,
    ) -> sfn.CustomState:
        """Release Load Lock: delete the item if the execution at `owner_path` holds it; refused -> `then` as well.
        With several targets, `target`'s lock, as 'Release Load Lock (<target>)' unless `state_id` names it."""
        suffix, key, _ = self._suffix(target)
        state: dict[str, Any] = {
            "Type": "Task",
            "Comment": "Delete the load lock if this execution holds it (refused: released already, or never held)",
            "Resource": f"arn:{Stack.of(scope).partition}:states:::dynamodb:deleteItem",
            "Parameters": {
                "TableName": self.ledger.table_name,
                "Key": key,
                "ConditionExpression": "#owner = :owner",
                "ExpressionAttributeNames": {"#owner": "owner"},
                "ExpressionAttributeValues": {":owner": {"S.$": owner_path}},
            },
            "ResultPath": "$.load_lock_release",
            "TimeoutSeconds": 60,
        }
        release = sfn.CustomState(scope, state_id or f"Release Load Lock{suffix}", state_json=state)
        retry_transient(release, _DYNAMODB_TRANSIENT, interval=Duration.seconds(1), max_attempts=5)
        if then is not None:
            release.add_catch(then, errors=[_CONDITION_FAILED], result_path="$.load_lock_refused")
            release.next(then)
        return release

    def release_every(self, scope: Construct, *, owner_path: str, then: sfn.IChainable) -> sfn.IChainable:
        """Release every target's lock the execution at `owner_path` holds, one after the other, then `then`: refused or
        failed (after its retries), each goes on (a lock not released is freed by its lease)."""
        if len(self.targets) == 1:
            release = self.release(scope, owner_path=owner_path, then=then)
            release.add_catch(then, errors=["States.ALL"], result_path="$.load_lock_error")
            return release
        for target in reversed(self.targets):
            release = self.release(scope, owner_path=owner_path, then=then, target=target)
            release.add_catch(then, errors=["States.ALL"], result_path="$.load_lock_error")
            then = release
        return then

    def acknowledge_invoke(self, role: iam.IRole) -> None:
        """The invoke grant Step Functions adds names the function and its versions (its ARN followed by ':*')."""
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            "lambda:InvokeFunction on the load lock function and its versions only (the function's ARN followed by :*).",
            matching=r"Resource::<[A-Za-z0-9]*LoadLockFunction[A-Za-z0-9]*\.Arn>:\*",
            actions=["lambda:InvokeFunction"],
        )
