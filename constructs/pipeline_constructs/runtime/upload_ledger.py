"""The upload ledger's record and its conditional writes: one DynamoDB item per uploaded object version.

Every form writes the same record, through the same expressions: the Glue jobs, the Airflow DAG and the trigger
Lambdas call the functions below; the Step Functions form sends the same expressions through its native DynamoDB
integration (`start_expression()` and friends return them, so the state machine and this module cannot differ).

Item (table keys: `object` = 's3://bucket/key', `version` = the S3 version id, or 'etag:<etag>' without one):

  bucket, key, etag, form     what was uploaded and which form owns its landing prefix
  state                       received | running | loaded | quarantined | rejected | skipped_empty | failed
  step                        the last step reached (crawl, clean, load)
  crawl                       the crawl decision of the last run: 'schema unchanged' (skipped) or why it crawled
  load_<target>               each load target's outcome (load_athena, load_redshift): loaded | failed; kept across
                              runs, so a re-run loads only the targets not yet loaded
  owner                       the run that holds the upload while it is running (removed when the run ends)
  run:<run id>                one map per run that touched it: execution, started_at, ended_at, outcome
  rows_in, rows_out, rows_quarantined, duplicates_dropped, lines_read, lines_quarantined, quarantine_uri
  error, cause                of the last failure (removed when a new run starts)
  received_at, updated_at, finished_at (ISO 8601 UTC), expires_at (epoch seconds, the table's TTL, finished only)

Conditions, so two runs cannot both own an upload and an older state never overwrites a newer:
  start   the record is new, received, or failed (any final state with force), or already this run's
  step, counts, finish, fail   the record is running and owned by this run

Pure boto3 and Python 3.9 compatible: the Glue Python shell load job imports it too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

RECEIVED, RUNNING, LOADED, QUARANTINED, REJECTED, SKIPPED_EMPTY, FAILED = (
    "received",
    "running",
    "loaded",
    "quarantined",
    "rejected",
    "skipped_empty",
    "failed",
)
STATES = (RECEIVED, RUNNING, LOADED, QUARANTINED, REJECTED, SKIPPED_EMPTY, FAILED)
FINAL_STATES = (LOADED, QUARANTINED, REJECTED, SKIPPED_EMPTY)
"""States a run ends an upload in when nothing failed; `failed` is final too until a re-run takes it."""
STARTABLE_STATES = (RECEIVED, FAILED)
"""States a new run may take an upload from (with force, the final states too)."""
PARTITION_KEY, SORT_KEY = "object", "version"
STATE_INDEX = "by_state"
"""Global secondary index: partition key `state`, sort key `updated_at` (what `pipeline-ops status` queries)."""
RUN_ATTRIBUTE_PREFIX = "run:"
TARGET_NAMES = ("athena", "redshift")
"""The load targets a record can name (`load_<target>`), in the order the forms load and report them."""
TARGET_OUTCOMES = (LOADED, FAILED)
COUNT_FIELDS = ("rows_in", "rows_out", "rows_quarantined", "duplicates_dropped", "lines_read", "lines_quarantined")


class LedgerConflict(RuntimeError):
    """A conditional write was refused: another run owns the upload, or the record moved on. The message says which."""


@dataclass(frozen=True)
class Upload:
    """One uploaded object version."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def version(self) -> str:
        return version_of(self.version_id, self.etag)

    def item_key(self) -> dict[str, dict[str, str]]:
        return {PARTITION_KEY: {"S": self.uri}, SORT_KEY: {"S": self.version}}


def version_of(version_id: str | None, etag: str | None) -> str:
    """The ledger's sort key: the version id; 'etag:<etag>' for an unversioned object; 'null' when neither is known."""
    if version_id and version_id != "null":
        return version_id
    if etag:
        return "etag:" + etag.strip('"')
    return "null"


def iso_utc(moment: datetime) -> str:
    """The ledger's timestamp form: ISO 8601, whole seconds, UTC ('Z')."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: UP017


def now_iso() -> str:
    # timezone.utc, not datetime.UTC (Python 3.11+): the Glue Python shell load job runs Python 3.9.
    return iso_utc(datetime.now(timezone.utc))  # noqa: UP017


def run_attribute(run_id: str) -> str:
    return RUN_ATTRIBUTE_PREFIX + run_id


# --- the expressions (also rendered into the Step Functions definition) ----------------------------------------------
# Every attribute is written as #name (many are DynamoDB reserved words: state, key, bucket, owner, ...);
# `attribute_names` maps each to its name, and #run to run:<run id>.
_NAME = re.compile(r"#([A-Za-z_]+)")


def attribute_names(expression: Mapping[str, str], run_id: str = "<run id>") -> dict[str, str]:
    """ExpressionAttributeNames of an expression: #name -> name, #run -> run:<run id>."""
    found = _NAME.findall(" ".join(expression.values()))
    return {f"#{name}": run_attribute(run_id) if name == "run" else name for name in dict.fromkeys(found)}


def received_expression() -> dict[str, str]:
    """Record an upload a trigger accepted and no run holds yet. Values: :received, :now, :form, :bucket, :key, :etag."""
    return {
        "UpdateExpression": "SET #state = :received, #form = :form, #bucket = :bucket, #key = :key, #etag = :etag, "
        "#received_at = :now, #updated_at = :now",
        "ConditionExpression": "attribute_not_exists(#state)",
    }


def start_expression(*, force: bool = False) -> dict[str, str]:
    """A run takes the upload. Values: :running, :received, :failed (and the final states with force), :now, :form,
    :bucket, :key, :etag, :run_id, :step, :run (the run's map). Idempotent for the same run."""
    startable = "#state IN (" + ", ".join(f":{state}" for state in STARTABLE_STATES + (FINAL_STATES if force else ())) + ")"
    return {
        "UpdateExpression": "SET #state = :running, #step = :step, #owner = :run_id, #form = :form, #bucket = :bucket, "
        "#key = :key, #etag = :etag, #received_at = if_not_exists(#received_at, :now), #updated_at = :now, "
        "#run = if_not_exists(#run, :run) REMOVE #error, #cause, #expires_at, #finished_at",
        "ConditionExpression": f"attribute_not_exists(#state) OR {startable} OR #owner = :run_id",
    }


_OWNED = "#state = :running AND #owner = :run_id"


def step_expression() -> dict[str, str]:
    """The run reached `:step`. Values: :step, :now, :running, :run_id."""
    return {"UpdateExpression": "SET #step = :step, #updated_at = :now", "ConditionExpression": _OWNED}


def crawl_expression() -> dict[str, str]:
    """The run's crawl decision (runtime/crawl_check.py): 'schema unchanged' or why it crawled. Values: :crawl, :now,
    :running, :run_id."""
    return {"UpdateExpression": "SET #crawl = :crawl, #updated_at = :now", "ConditionExpression": _OWNED}


def target_attribute(target: str) -> str:
    """The record's attribute for one load target's outcome: load_athena, load_redshift."""
    if target not in TARGET_NAMES:
        raise ValueError(f"target={target!r}: the ledger records the load targets {', '.join(TARGET_NAMES)}")
    return f"load_{target}"


def target_expression(target: str) -> dict[str, str]:
    """One load target's outcome in the run (parallel loads): loaded or failed. Values: :target_outcome, :now,
    :running, :run_id. The record's state stays running: the run finishes it when every target is loaded, or fails
    it naming the target that failed."""
    return {
        "UpdateExpression": f"SET #{target_attribute(target)} = :target_outcome, #updated_at = :now",
        "ConditionExpression": _OWNED,
    }


def loaded_targets(record: Mapping[str, Any] | None) -> list[str]:
    """The targets a record says are loaded (`load_<target>` = loaded), in TARGET_NAMES order: what a re-run skips."""
    if not record:
        return []
    return [target for target in TARGET_NAMES if record.get(target_attribute(target)) == LOADED]


def targets_to_load(record: Mapping[str, Any] | None, targets: Iterable[str]) -> list[str]:
    """Of `targets`, those a run must still load for this record (all of them for a new record)."""
    done = set(loaded_targets(record))
    return [target for target in targets if target not in done]


def counts_expression(fields: Iterable[str]) -> dict[str, str]:
    """The clean job's counts (and where its quarantined rows are, and `expires_at`). Values: one :<field> each, :now,
    :running, :run_id."""
    sets = ", ".join(f"#{name} = :{name}" for name in fields)
    return {"UpdateExpression": f"SET {sets}, #updated_at = :now", "ConditionExpression": _OWNED}


def finish_expression(*, expires: bool = True) -> dict[str, str]:
    """The run ended the upload in `:outcome` (a final state). Values: :outcome, :now, :running, :run_id, and :expires
    unless `expires` is False (Step Functions has no intrinsic for epoch seconds: there the clean job's counts write
    sets `expires_at`, and only uploads that reached the clean job finish)."""
    expiry = "#expires_at = :expires, " if expires else ""
    return {
        "UpdateExpression": f"SET #state = :outcome, #updated_at = :now, #finished_at = :now, {expiry}"
        "#run.#ended_at = :now, #run.#outcome = :outcome REMOVE #owner",
        "ConditionExpression": _OWNED,
    }


def fail_expression() -> dict[str, str]:
    """The run failed at its last step. Values: :failed, :error, :cause, :now, :running, :run_id."""
    return {
        "UpdateExpression": "SET #state = :failed, #error = :error, #cause = :cause, #updated_at = :now, "
        "#run.#ended_at = :now, #run.#outcome = :failed REMOVE #owner, #expires_at",
        "ConditionExpression": _OWNED,
    }


def state_values() -> dict[str, dict[str, str]]:
    """Every state as an expression value (:received, :running, ...); DynamoDB refuses values an expression does not use,
    so callers pick the ones theirs names."""
    return {f":{state}": {"S": state} for state in STATES}


def expression_values(expression: Mapping[str, str]) -> list[str]:
    """The :values an expression uses, in order of first use."""
    return list(dict.fromkeys(re.findall(r":[A-Za-z_]+", " ".join(expression.values()))))


def _pick(values: Mapping[str, Any], expression: Mapping[str, str]) -> dict[str, Any]:
    used = set(expression_values(expression))
    return {name: value for name, value in values.items() if name in used}


# --- the writes ------------------------------------------------------------------------------------------------------
class UploadLedger:
    """The ledger table through a boto3 DynamoDB client, for one form."""

    def __init__(self, client: Any, table_name: str, *, form: str, ttl_days: int = 0) -> None:
        self.client = client
        self.table_name = table_name
        self.form = form
        self.ttl_days = ttl_days

    def _update(self, upload: Upload, expression: dict[str, str], values: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
        names = attribute_names(expression, run_id or "")
        chosen = _pick({**state_values(), **values}, expression)
        try:
            answer = self.client.update_item(
                TableName=self.table_name,
                Key=upload.item_key(),
                UpdateExpression=expression["UpdateExpression"],
                ConditionExpression=expression["ConditionExpression"],
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=chosen,
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException as error:
            current = self.get(upload)
            state = current.get("state") if current else None
            owner = current.get("owner") if current else None
            raise LedgerConflict(
                f"{upload.uri} (version {upload.version}): the ledger refused the write of run {run_id!r}; "
                f"the record is {state!r}" + (f", owned by run {owner!r}" if owner else "")
            ) from error
        return from_item(answer.get("Attributes", {}))

    def _object_values(self, upload: Upload) -> dict[str, Any]:
        return {
            ":now": {"S": now_iso()},
            ":form": {"S": self.form},
            ":bucket": {"S": upload.bucket},
            ":key": {"S": upload.key},
            ":etag": {"S": (upload.etag or "").strip('"')},
        }

    def received(self, upload: Upload) -> bool:
        """Record an accepted upload; False when the ledger already holds it (a repeated event)."""
        try:
            self._update(upload, received_expression(), self._object_values(upload))
        except LedgerConflict:
            return False
        return True

    def start(self, upload: Upload, *, run_id: str, execution: str, step: str, force: bool = False) -> dict[str, Any]:
        """Take the upload for `run_id`; LedgerConflict when another run holds it or it already ended (without force)."""
        run = {"M": {"run_id": {"S": run_id}, "execution": {"S": execution}, "started_at": {"S": now_iso()}, "form": {"S": self.form}}}
        values = {**self._object_values(upload), ":run_id": {"S": run_id}, ":step": {"S": step}, ":run": run}
        return self._update(upload, start_expression(force=force), values, run_id)

    def step(self, upload: Upload, *, run_id: str, step: str) -> dict[str, Any]:
        return self._update(upload, step_expression(), {":step": {"S": step}, ":now": {"S": now_iso()}, ":run_id": {"S": run_id}})

    def crawl(self, upload: Upload, *, run_id: str, decision: str) -> dict[str, Any]:
        """Record the run's crawl decision ('schema unchanged', or why it crawled) on the upload."""
        values = {":crawl": {"S": decision[:1000]}, ":now": {"S": now_iso()}, ":run_id": {"S": run_id}}
        return self._update(upload, crawl_expression(), values, run_id)

    def target(self, upload: Upload, *, run_id: str, target: str, outcome: str) -> dict[str, Any]:
        """Record one load target's outcome (TARGET_OUTCOMES) in this run; the record stays running."""
        if outcome not in TARGET_OUTCOMES:
            raise ValueError(f"outcome={outcome!r}: a load target's outcome is one of {', '.join(TARGET_OUTCOMES)}")
        values = {":target_outcome": {"S": outcome}, ":now": {"S": now_iso()}, ":run_id": {"S": run_id}}
        return self._update(upload, target_expression(target), values, run_id)

    def counts(self, upload: Upload, *, run_id: str, counts: Mapping[str, Any]) -> dict[str, Any]:
        """Row and line counts (COUNT_FIELDS, numbers) and quarantine_uri (text) of this upload in the run."""
        values: dict[str, Any] = {":now": {"S": now_iso()}, ":run_id": {"S": run_id}}
        for name, value in counts.items():
            if name not in COUNT_FIELDS and name != "quarantine_uri":
                raise ValueError(f"counts[{name!r}]: the ledger records {', '.join(COUNT_FIELDS)} and quarantine_uri")
            if value is None:
                continue
            values[f":{name}"] = {"S": str(value)} if name == "quarantine_uri" else {"N": str(int(value))}
        values[":expires_at"] = {"N": str(self.expires_at())}
        fields = [name[1:] for name in values if name not in (":now", ":run_id")]
        return self._update(upload, counts_expression(fields), values)

    def finish(self, upload: Upload, *, run_id: str, outcome: str) -> dict[str, Any]:
        if outcome not in FINAL_STATES:
            raise ValueError(f"outcome={outcome!r}: use one of {', '.join(FINAL_STATES)}")
        values = {":outcome": {"S": outcome}, ":now": {"S": now_iso()}, ":run_id": {"S": run_id}, ":expires": {"N": str(self.expires_at())}}
        return self._update(upload, finish_expression(), values, run_id)

    def fail(self, upload: Upload, *, run_id: str, error: str, cause: str) -> dict[str, Any]:
        values = {
            ":error": {"S": error or "Error"},
            ":cause": {"S": (cause or "")[:10_000]},
            ":now": {"S": now_iso()},
            ":run_id": {"S": run_id},
        }
        return self._update(upload, fail_expression(), values, run_id)

    def expires_at(self) -> int:
        """Epoch seconds at which DynamoDB's TTL may delete a finished record (`ttl_days`; 0 keeps it for 100 years)."""
        days = self.ttl_days if self.ttl_days > 0 else 36_500
        return int(time.time()) + days * 86_400

    def get(self, upload: Upload) -> dict[str, Any] | None:
        answer = self.client.get_item(TableName=self.table_name, Key=upload.item_key(), ConsistentRead=True)
        return from_item(answer["Item"]) if "Item" in answer else None


# --- reading ---------------------------------------------------------------------------------------------------------
def _plain(value: Mapping[str, Any]) -> Any:
    ((kind, inner),) = value.items()
    if kind == "S":
        return inner
    if kind == "N":
        number = float(inner)
        return int(number) if number.is_integer() else number
    if kind == "BOOL":
        return bool(inner)
    if kind == "NULL":
        return None
    if kind == "M":
        return {name: _plain(item) for name, item in inner.items()}
    if kind == "L":
        return [_plain(item) for item in inner]
    if kind in ("SS", "NS"):
        return sorted(inner)
    raise ValueError(f"attribute type {kind!r} is not one the ledger writes")


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain values, with its runs gathered under `runs` (oldest first)."""
    record: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    for name, value in item.items():
        plain = _plain(value)
        if name.startswith(RUN_ATTRIBUTE_PREFIX):
            runs.append({"run_id": name[len(RUN_ATTRIBUTE_PREFIX) :], **plain})
        else:
            record[name] = plain
    record["runs"] = sorted(runs, key=lambda run: (str(run.get("started_at", "")), run["run_id"]))
    return record


def split_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'key') of s3://bucket/key; ValueError naming the value otherwise."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    return bucket, key
