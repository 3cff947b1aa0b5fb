"""Take the load lock of one target table: the Step Functions form's loads into that table run one at a time.

The lock is one item in the upload ledger's table (key `object` = 'lock:<target>:<table>', `version` = 'load'; no
`state` attribute, so the ledger's by_state index and `pipeline-ops status` never see it). This function is the
one step that needs a clock: it writes the lock with a conditional UpdateItem, taken when

- nobody holds it (no item, or an item without owner),
- or this execution already holds it (a retried or redriven load renews its lease),
- or the holder's lease ended before now (an execution that died while it held the lock).

and raises `LoadLockHeld` otherwise, which the state machine retries with jittered backoff. The state machine
releases the lock after the load (a conditional DeleteItem, owner = that execution), and the failure reporter
releases it for an execution that failed, timed out or was aborted, so the lease is only the last resort.

Event (from the state machine): {"TableName", "Key" (the DynamoDB key of the lock item), "owner" (the execution
ARN), "run_id", "lease_seconds"}. Answer: {"owner", "taken_at", "lease_expires_at"}.

Standard library and boto3 only, Python 3.9 compatible.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
from botocore.exceptions import ClientError

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
"""The ledger's timestamps (ISO 8601, whole seconds, UTC): compared as strings, so one format for every write."""
RETAIN_SECONDS = 86_400
"""A lock item nobody released is deleted by the table's TTL (expires_at) this long after its lease ended."""

TAKE_EXPRESSION = "SET #owner = :owner, #run_id = :run_id, #taken_at = :now, #lease = :lease, #expires_at = :ttl"
TAKE_CONDITION = "attribute_not_exists(#owner) OR #owner = :owner OR #lease < :now"


class LoadLockHeld(Exception):
    """Another execution holds the load lock and its lease has not ended (Step Functions sees the error `LoadLockHeld`)."""


def timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)  # noqa: UP017 (Python 3.9)


def take(dynamodb: Any, event: dict[str, Any], now: datetime) -> dict[str, str]:
    """Take (or renew) the lock for `event["owner"]` at `now`; raises LoadLockHeld while another lease runs."""
    lease_ends = now + timedelta(seconds=int(event["lease_seconds"]))
    values = {
        ":owner": {"S": str(event["owner"])},
        ":run_id": {"S": str(event["run_id"])},
        ":now": {"S": timestamp(now)},
        ":lease": {"S": timestamp(lease_ends)},
        ":ttl": {"N": str(int(lease_ends.timestamp()) + RETAIN_SECONDS)},
    }
    try:
        dynamodb.update_item(
            TableName=event["TableName"],
            Key=event["Key"],
            UpdateExpression=TAKE_EXPRESSION,
            ConditionExpression=TAKE_CONDITION,
            ExpressionAttributeNames={
                "#owner": "owner",
                "#run_id": "run_id",
                "#taken_at": "taken_at",
                "#lease": "lease_expires_at",
                "#expires_at": "expires_at",
            },
            ExpressionAttributeValues=values,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        holder = error.response.get("Item") or {}
        run_id = holder.get("run_id", {}).get("S", "another execution")
        until = holder.get("lease_expires_at", {}).get("S", "?")
        raise LoadLockHeld(f"the load lock is held by {run_id} (lease until {until})") from None
    return {"owner": values[":owner"]["S"], "taken_at": values[":now"]["S"], "lease_expires_at": values[":lease"]["S"]}


_CLIENT: Any = None


def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = boto3.client("dynamodb")
    return take(_CLIENT, event, datetime.now(timezone.utc))  # noqa: UP017 (Python 3.9)
