"""The Step Functions form's ledger writes: native DynamoDB UpdateItem / GetItem states (no Lambda), each built from
the same expression `runtime/upload_ledger.py` gives the other forms, so every form writes the same record."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack, aws_stepfunctions as sfn

from constructs import Construct

from ..ledger import UploadLedger
from ..runtime import upload_ledger as records

FORM_NAME = "step_functions"
_TRANSIENT = [
    "DynamoDB.ProvisionedThroughputExceededException",
    "DynamoDB.RequestLimitExceeded",
    "DynamoDB.ThrottlingException",
    "DynamoDB.InternalServerErrorException",
    "States.Timeout",
]
_KEY = {records.PARTITION_KEY: {"S.$": "$.upload.source_uri"}, records.SORT_KEY: {"S.$": "$.upload.version"}}
# What each write names from the state input; `:now` is when the write's state was entered.
_COMMON_VALUES: dict[str, Any] = {
    ":now": {"S.$": "$$.State.EnteredTime"},
    ":run_id": {"S.$": "$.upload.run_id"},
    ":form": {"S": FORM_NAME},
    ":bucket": {"S.$": "$.upload.bucket"},
    ":key": {"S.$": "$.upload.key"},
    ":etag": {"S.$": "$.upload.etag"},
    ":error": {"S.$": "$.error.Error"},
    ":cause": {"S.$": "$.error.Cause"},
    ":run": {
        "M": {
            "run_id": {"S.$": "$.upload.run_id"},
            "execution": {"S.$": "$$.Execution.Id"},
            "started_at": {"S.$": "$$.Execution.StartTime"},
            "form": {"S": FORM_NAME},
        }
    },
}


def _values(expression: dict[str, str], chosen: dict[str, Any]) -> dict[str, Any]:
    """The expression values the expression names: states as literals, the rest from the state input."""
    pool = {**records.state_values(), **_COMMON_VALUES, **chosen}
    used = records.expression_values(expression)
    missing = [name for name in used if name not in pool]
    if missing:
        raise ValueError(f"no Step Functions value for {missing} in {' '.join(expression.values())!r}")
    return {name: pool[name] for name in used}


class LedgerStates:
    """Builds the form's ledger states against one table."""

    def __init__(self, scope: Construct, ledger: UploadLedger) -> None:
        self.scope = scope
        self.ledger = ledger

    def _task(self, state_id: str, action: str, parameters: dict[str, Any], *, comment: str, result_path: str) -> sfn.CustomState:
        state: dict[str, Any] = {
            "Type": "Task",
            "Comment": comment,
            "Resource": f"arn:{Stack.of(self.scope).partition}:states:::dynamodb:{action}",
            "Parameters": {"TableName": self.ledger.table_name, "Key": _KEY, **parameters},
            "ResultPath": result_path,
            "TimeoutSeconds": 60,
        }
        custom = sfn.CustomState(self.scope, state_id, state_json=state)
        custom.add_retry(
            errors=_TRANSIENT,
            interval=Duration.seconds(1),
            max_attempts=5,
            backoff_rate=2,
            jitter_strategy=sfn.JitterType.FULL,
            max_delay=Duration.seconds(30),
        )
        return custom

    def update(self, state_id: str, expression: dict[str, str], *, comment: str, **chosen: Any) -> sfn.CustomState:
        """An UpdateItem with `expression` (from runtime/upload_ledger.py); `chosen` sets values such as :step."""
        names = records.attribute_names(expression)
        parameters: dict[str, Any] = {**expression, "ExpressionAttributeValues": _values(expression, chosen)}
        if "#run" in names:
            names.pop("#run")
            names["#run.$"] = f"States.Format('{records.RUN_ATTRIBUTE_PREFIX}{{}}', $.upload.run_id)"
        parameters["ExpressionAttributeNames"] = names
        # CustomState drops a null ResultPath, so the (small) answer is kept aside instead of replacing the input.
        return self._task(state_id, "updateItem", parameters, comment=comment, result_path="$.ledger_write")

    def start(self) -> sfn.CustomState:
        return self.update(
            "Record Start",
            records.start_expression(),
            comment="Take the upload in the ledger; refused when another run holds it or it already ended (a repeated event)",
            **{":step": {"S": "crawl"}},
        )

    def step(self, step: str) -> sfn.CustomState:
        return self.update(
            f"Record {step.title()} Step", records.step_expression(), comment=f"The run reached {step}", **{":step": {"S": step}}
        )

    def crawl_decision(self) -> sfn.CustomState:
        return self.update(
            "Record Crawl Decision",
            records.crawl_expression(),
            comment="The crawl decision: 'schema unchanged' (skipped) or why the run crawls",
            **{":crawl": {"S.$": "$.schema_check.reason"}},
        )

    def target(self, target: str, outcome: str) -> sfn.CustomState:
        """Record <Target> Loaded | Failed: one load target's outcome (`load_<target>`); the record stays running."""
        return self.update(
            f"Record {target.title()} {outcome.title()}",
            records.target_expression(target),
            comment=f"The load into {target} {'succeeded' if outcome == records.LOADED else 'failed'} in this run",
            **{":target_outcome": {"S": outcome}},
        )

    def read_target(self, target: str) -> sfn.CustomState:
        """Read <Target> Outcome: `load_<target>` of the record, so a re-run skips a target an earlier run loaded."""
        return self._task(
            f"Read {target.title()} Outcome",
            "getItem",
            {
                "ProjectionExpression": "#target",
                "ExpressionAttributeNames": {"#target": records.target_attribute(target)},
                "ConsistentRead": True,
            },
            comment=f"Did an earlier run of this upload load {target} already?",
            result_path="$.target_record",
        )

    def finish(self, state_id: str, outcome: str) -> sfn.CustomState:
        return self.update(
            state_id,
            records.finish_expression(expires=False),
            comment=f"The upload ends {outcome} (the clean job's counts write set its expiry)",
            **{":outcome": {"S": outcome}},
        )

    def fail(self) -> sfn.CustomState:
        return self.update("Record Failure", records.fail_expression(), comment="The run failed at its last step: error and cause")

    def read_state(self) -> sfn.CustomState:
        return self._task(
            "Read Upload State",
            "getItem",
            {"ProjectionExpression": "#state", "ExpressionAttributeNames": {"#state": "state"}, "ConsistentRead": True},
            comment="The ledger refused the failure: already recorded by this run (a repeated event), or never taken?",
            result_path="$.ledger",
        )

    def read_counts(self) -> sfn.CustomState:
        return self._task(
            "Read Clean Counts",
            "getItem",
            {"ProjectionExpression": "rows_quarantined", "ConsistentRead": True},
            comment="The clean job's counts: were the rows quarantined, or was there none?",
            result_path="$.ledger",
        )
