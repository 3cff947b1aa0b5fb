"""The DAG's upload ledger writes: the hooks its tasks run, so an MWAA run keeps the record every form keeps, with the
same states, steps and fields (`pipeline_plan.LEDGER_TRANSITIONS`, through `upload_ledger.UploadLedger`).

- The first step (crawl) takes the upload before it runs. Refused (another run holds it, or it already ended: a
  repeated run), the task is skipped, and with it every later task: the run ends without a step and without an alert.
- Each later step records itself before it runs; the last step's success ends the upload `loaded`.
- The rows check's skip ends it `pipeline_plan.outcome_without_load(rows_quarantined)`, from the clean job's counts.
- A failed task records `failed` with the error and the cause, before its one SNS message (`pipeline_dag.notify_failure`).

Two load targets (one load task each, `load_athena` and `load_redshift`): each task records its target's outcome
(`load_<target>`, loaded or failed); a task whose target the ledger already shows loaded is skipped, so a re-run (a
cleared run, or a new one) loads only the target that failed. The record ends when every target has an outcome,
written by whichever load ends last: `loaded` when all are loaded, otherwise `failed` with error LoadFailed and a
cause naming the target ("load into redshift failed: ..."). Failed outcomes of an earlier attempt are forgotten when
a run takes the upload (or takes it back), so only this attempt's count.

Clearing a run's failed tasks (`pipeline-ops rerun`, or the Airflow UI) re-runs them under the same run id: the first
write of a cleared task that finds the upload ended by this very run takes it back (`UploadLedger.start`, with force
for a run cleared after it succeeded, which `pipeline-ops rerun --force` does), then writes.

The take, the steps and `loaded` run inside their task (pre_execute, post_execute): a write that fails fails the task,
which retries and alerts. Airflow reports the rows check's skip to a callback only, which may not fail its task: a
write that fails there is logged, and the record stays running, which `pipeline-ops status` lists as stuck once the
run timeout has passed. The DynamoDB client is made when a task runs, never at parse time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from airflow.sdk.exceptions import AirflowSkipException
from pipeline_steps import (
    CLAIM_TASK_ID,
    CLAIM_XCOM_KEY,
    FORM_NAME,
    LOAD_FAILED,
    load_settings,
    load_task_id,
    parallel_loads,
    pipeline_run_id,
)

try:
    from pipeline_constructs.runtime.pipeline_plan import CRAWL, LOAD, outcome_without_load
    from pipeline_constructs.runtime.upload_ledger import (
        FAILED,
        LOADED,
        RUNNING,
        LedgerConflict,
        Upload,
        UploadLedger,
        attribute_names,
        loaded_targets,
        now_iso,
        target_attribute,
    )
except ImportError:  # beside the DAG, shipped as top-level modules
    from pipeline_plan import CRAWL, LOAD, outcome_without_load  # type: ignore[import-not-found,no-redef]
    from upload_ledger import (  # type: ignore[import-not-found,no-redef]
        FAILED,
        LOADED,
        RUNNING,
        LedgerConflict,
        Upload,
        UploadLedger,
        attribute_names,
        loaded_targets,
        now_iso,
        target_attribute,
    )

log = logging.getLogger(__name__)

Hook = Callable[[Any], None]
LOAD_FAILURE_XCOM_KEY = "load_failure"
"""XCom of a failed per-target load: its cause, for the load that ends last to write into the record."""
SUPERSEDED = "VersionSuperseded"
"""The error of an upload a scheduled run gave up because it also held a newer version of the same object."""


class DagLedger:
    """The ledger writes of one deployed DAG (`ledger_table`, `ledger_ttl_days` and `region` of its configuration)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.table = str(config["ledger_table"])
        self.ttl_days = int(config["ledger_ttl_days"])
        self.region = str(config["region"])
        self.targets = [str(settings["target"]) for settings in load_settings(config)] if parallel_loads(config) else []
        """The load targets when there are several (one load task each); empty with one target."""

    def _ledger(self) -> UploadLedger:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        client = AwsBaseHook(aws_conn_id=None, client_type="dynamodb", region_name=self.region).conn
        return UploadLedger(client, self.table, form=FORM_NAME, ttl_days=self.ttl_days)

    # --- the hooks --------------------------------------------------------------------------------------------------
    def take(self, step: str) -> Hook:
        """pre_execute of the first step: take the upload; skip the task (and so the run) when the ledger refuses."""

        def take_upload(context: Any) -> None:
            run = _Run(context)
            ledger = self._ledger()
            try:
                ledger.start(run.upload, run_id=run.run_id, execution=run.execution, step=step)
            except LedgerConflict as conflict:
                if not self._take_back(ledger, run, step):
                    raise AirflowSkipException(f"{conflict}: this run runs no step") from conflict
                return
            self._forget_failed_targets(ledger, run)

        take_upload.__name__ = f"take_upload_at_{step}"
        return take_upload

    def step(self, step: str) -> Hook:
        """pre_execute of a later step: the run reached it."""

        def record_step(context: Any) -> None:
            run = _Run(context)
            # Taken back, the upload is at this step already: nothing more to write.
            self._write(run, step, lambda ledger: ledger.step(run.upload, run_id=run.run_id, step=step), after_take_back=False)

        record_step.__name__ = f"record_{step}_step"
        return record_step

    def loaded(self, step: str) -> Callable[[Any, Any], None]:
        """post_execute of the last step: the upload is loaded."""

        def record_loaded(context: Any, result: Any = None) -> None:
            run = _Run(context)
            self._write(run, step, lambda ledger: ledger.finish(run.upload, run_id=run.run_id, outcome=LOADED))

        return record_loaded

    def outcome_without_load(self, context: Any) -> None:
        """on_skipped_callback of the rows check: nothing to load; quarantined or skipped_empty by the clean job's counts."""
        run = _Run(context)
        try:

            def finish(ledger: UploadLedger) -> None:
                record = ledger.get(run.upload) or {}
                outcome = outcome_without_load(int(record.get("rows_quarantined") or 0))
                ledger.finish(run.upload, run_id=run.run_id, outcome=outcome)

            self._write(run, None, finish)
        except Exception:
            log.exception(
                "the ledger did not record the outcome of %s (run %s, nothing to load); its record stays running until "
                "`pipeline-ops status` reports it stuck",
                run.upload.uri,
                run.run_id,
            )

    def fail(self, context: Any, *, error: str, cause: str) -> None:
        """The run failed at its last step (called by notify_failure before the message; raises when refused)."""
        run = _Run(context)
        self._ledger().fail(run.upload, run_id=run.run_id, error=error, cause=cause)

    # --- one load task per target (two targets) ---------------------------------------------------------------------
    def target_load(self, target: str) -> Hook:
        """pre_execute of one target's load: skipped when the ledger shows the target loaded (a re-run loads only the
        rest); otherwise the run reached the load (a cleared task takes the upload back first)."""

        def start_target_load(context: Any) -> None:
            run = _Run(context)
            ledger = self._ledger()
            if target in loaded_targets(ledger.get(run.upload)):
                self._settle(ledger, run, context)  # every other target may be loaded too: the record ends here
                raise AirflowSkipException(
                    f"{run.upload.uri} is loaded into {target} already ({target_attribute(target)}): not loaded again"
                )
            self._write(run, LOAD, lambda ledger: ledger.step(run.upload, run_id=run.run_id, step=LOAD), after_take_back=False)

        start_target_load.__name__ = f"start_{load_task_id(target)}"
        return start_target_load

    def target_loaded(self, target: str) -> Callable[[Any, Any], None]:
        """post_execute of one target's load: `load_<target>` = loaded; the last target to end ends the record."""

        def record_target_loaded(context: Any, result: Any = None) -> None:
            run = _Run(context)
            ledger = self._ledger()
            ledger.target(run.upload, run_id=run.run_id, target=target, outcome=LOADED)
            self._settle(ledger, run, context)

        return record_target_loaded

    def target_failed(self, context: Any, target: str, *, cause: str) -> None:
        """A target's load failed (from notify_failure; raises when refused): `load_<target>` = failed, the cause kept
        for the load that ends last (XCom), and the record failed now if every other target has ended."""
        run = _Run(context)
        ledger = self._ledger()
        context["ti"].xcom_push(key=LOAD_FAILURE_XCOM_KEY, value=cause)
        ledger.target(run.upload, run_id=run.run_id, target=target, outcome=FAILED)
        self._settle(ledger, run, context, causes={target: cause})

    def _settle(self, ledger: UploadLedger, run: _Run, context: Any, causes: Mapping[str, str] | None = None) -> None:
        """End the record once every target has an outcome in this run: loaded when all are, else failed naming the
        targets that failed. Nothing while another target's load is still going, or when the record has ended."""
        record = ledger.get(run.upload)
        if record is None or record.get("state") != RUNNING or record.get("owner") != run.run_id:
            return
        outcomes = {target: record.get(target_attribute(target)) for target in self.targets}
        if any(outcome is None for outcome in outcomes.values()):
            return
        failed = [target for target, outcome in outcomes.items() if outcome == FAILED]
        try:
            if not failed:
                ledger.finish(run.upload, run_id=run.run_id, outcome=LOADED)
                return
            known = dict(causes or {})
            for target in failed:
                if target not in known:
                    pulled = context["ti"].xcom_pull(task_ids=load_task_id(target), key=LOAD_FAILURE_XCOM_KEY)
                    known[target] = str(pulled) if pulled else f"load into {target} failed (its alert has the error)"
            ledger.fail(run.upload, run_id=run.run_id, error=LOAD_FAILED, cause="; ".join(known[target] for target in failed))
        except LedgerConflict:
            if (ledger.get(run.upload) or {}).get("state") not in (LOADED, FAILED):
                raise
            log.info("%s: another load of run %s ended the record at the same moment", run.upload.uri, run.run_id)

    def _forget_failed_targets(self, ledger: UploadLedger, run: _Run) -> None:
        """Remove the failed target outcomes of an earlier attempt (the run just took the upload): only this
        attempt's outcomes end the record. Loaded ones stay (those targets are not loaded again)."""
        if not self.targets:
            return
        record = ledger.get(run.upload) or {}
        stale = [target for target in self.targets if record.get(target_attribute(target)) == FAILED]
        if not stale:
            return
        expression = {
            "UpdateExpression": "SET #updated_at = :now REMOVE " + ", ".join(f"#{target_attribute(target)}" for target in stale),
            "ConditionExpression": "#state = :running AND #owner = :run_id",
        }
        ledger.client.update_item(
            TableName=ledger.table_name,
            Key=run.upload.item_key(),
            UpdateExpression=expression["UpdateExpression"],
            ConditionExpression=expression["ConditionExpression"],
            ExpressionAttributeNames=attribute_names(expression, run.run_id),
            ExpressionAttributeValues={":now": {"S": now_iso()}, ":running": {"S": RUNNING}, ":run_id": {"S": run.run_id}},
        )

    # --- writes -----------------------------------------------------------------------------------------------------
    def _write(self, run: _Run, step: str | None, write: Callable[[UploadLedger], Any], *, after_take_back: bool = True) -> None:
        """`write`; refused because this run had ended the upload (its tasks were cleared), take it back at `step` (the
        record's own step when None) and write again unless `after_take_back` is False."""
        ledger = self._ledger()
        try:
            write(ledger)
        except LedgerConflict:
            if not self._take_back(ledger, run, step):
                raise
            if after_take_back:
                write(ledger)

    def _take_back(self, ledger: UploadLedger, run: _Run, step: str | None) -> bool:
        """Take the upload again when this run ended it (failed, or finished before its tasks were cleared); False
        when another run holds it or another run ended it."""
        record = ledger.get(run.upload)
        if record is None or record.get("state") == RUNNING or not any(r.get("run_id") == run.run_id for r in record["runs"]):
            return False
        taken_at = step if step is not None else str(record.get("step"))
        ledger.start(run.upload, run_id=run.run_id, execution=run.execution, step=taken_at, force=True)
        log.info("run %s takes %s back from %s (its tasks were cleared)", run.run_id, run.upload.uri, record.get("state"))
        self._forget_failed_targets(ledger, run)
        return True


class _Run:
    """The upload, the ledger's run id and the execution id of the DAG run a task context belongs to."""

    def __init__(self, context: Any) -> None:
        dag_run = context["dag_run"]
        conf = dag_run.conf or {}
        if not conf.get("bucket") or not conf.get("key"):
            raise ValueError(f"dag_run.conf={dict(conf)!r}: a run needs the object's bucket and key (the trigger sets them)")
        self.upload = Upload(str(conf["bucket"]), str(conf["key"]), version_id=conf.get("version_id") or None)
        self.run_id = pipeline_run_id(dag_run.run_id)
        self.execution = f"{dag_run.dag_id}/{dag_run.run_id}"


# --- scheduled runs ---------------------------------------------------------------------------------------------------
def _workflow_inputs() -> Any:
    """The claim's module (runtime/workflow_inputs.py), shipped beside the DAG only when it runs on a schedule."""
    try:
        from pipeline_constructs.runtime import workflow_inputs
    except ImportError:  # beside the DAG, a top-level module
        import workflow_inputs  # type: ignore[import-not-found,no-redef]
    return workflow_inputs


def _taking(ledger: Any) -> Any:
    """`ledger` as one that remembers every upload it started, so a claim that fails half-way can fail what it took."""

    class TakingLedger(type(ledger)):  # type: ignore[misc]
        taken: list[Any]

        def start(self, upload: Any, **kwargs: Any) -> dict[str, Any]:
            record = super().start(upload, **kwargs)
            self.taken.append(upload)
            return dict(record)

    taking = TakingLedger(ledger.client, ledger.table_name, form=ledger.form, ttl_days=ledger.ttl_days)
    taking.taken = []
    return taking


def upload_to_xcom(upload: Upload) -> dict[str, Any]:
    return {
        "bucket": upload.bucket,
        "key": upload.key,
        "version_id": upload.version_id,
        "etag": upload.etag,
        "uri": upload.uri,
        "version": upload.version,
    }


def upload_from_xcom(item: Mapping[str, Any]) -> Upload:
    return Upload(str(item["bucket"]), str(item["key"]), item.get("version_id") or None, item.get("etag") or None)


class ScheduledLedger(DagLedger):
    """The ledger writes of a DAG that starts on a schedule: its first task claims every pending upload
    (`workflow_inputs.claim_pending`: the upload a `pipeline-ops` run names in its conf, this form's failed uploads
    fewer than three runs tried, the inbox), and each later task writes for every upload the run still holds, as the
    Glue Workflow form's jobs do. The clean job settles each upload (`--settle_uploads`): rejected, skipped_empty and
    quarantined end there; the load's success ends the rest loaded; a failure is recorded on every upload the run
    still holds, so the next run retakes them.

    A task that runs again (a retry, or `pipeline-ops rerun` clearing it) takes back the uploads this run recorded
    failed (when this run is still their latest), never the ones it ended otherwise nor ones a later run took.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.inbox_url = str(config["inbox_queue_url"])
        self.landing_bucket = str(config["landing_bucket"])
        self.landing_prefix = str(config["landing_prefix"])

    def _ledger(self) -> Any:
        """The ledger through workflow_inputs' own UploadLedger, so the claim's functions catch its LedgerConflict
        (wherever the DAG processor found the modules)."""
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        client = AwsBaseHook(aws_conn_id=None, client_type="dynamodb", region_name=self.region).conn
        return _workflow_inputs().UploadLedger(client, self.table, form=FORM_NAME, ttl_days=self.ttl_days)

    def _sqs(self) -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=None, client_type="sqs", region_name=self.region).conn

    # --- the claim ---------------------------------------------------------------------------------------------------
    def claim(self, **context: Any) -> bool:
        """python_callable of the claim task (a ShortCircuitOperator): take what is pending and push the claim
        (XCom CLAIM_XCOM_KEY) before the inbox messages are deleted. False (nothing pending) ends the run at once:
        every later task is skipped, nothing is crawled, cleaned or loaded. Any error fails what the claim took (the
        next run, or this task's retry, takes it again) and is raised."""
        ti, dag_run = context["ti"], context["dag_run"]
        run_id, execution = pipeline_run_id(dag_run.run_id), f"{dag_run.dag_id}/{dag_run.run_id}"
        ledger = _taking(self._ledger())
        requested = _requested(dag_run.conf or {})

        def record(uploads: list[Upload]) -> None:
            ti.xcom_push(key=CLAIM_XCOM_KEY, value=[upload_to_xcom(upload) for upload in uploads])

        try:
            uploads = _workflow_inputs().claim_pending(
                ledger,
                sqs=self._sqs(),
                inbox_url=self.inbox_url,
                run_id=run_id,
                execution=execution,
                landing_bucket=self.landing_bucket,
                landing_prefix=self.landing_prefix,
                first=requested,
                record=record,
                then_step=None,  # at step crawl: the crawl task comes next
            )
        except Exception as error:
            _workflow_inputs().fail_uploads(
                ledger, ledger.taken, run_id=run_id, error=type(error).__name__, cause=f"claiming the run's uploads: {error}"
            )
            raise
        if not uploads:
            log.info("run %s: nothing pending (no upload in the inbox, no failed upload to retry, none requested): "
                     "nothing crawled, cleaned or loaded", run_id)  # fmt: skip
            return False
        log.info("run %s takes %d uploads: %s", run_id, len(uploads), ", ".join(upload.uri for upload in uploads[:20]))
        return True

    # --- the hooks of the later tasks --------------------------------------------------------------------------------
    def step(self, step: str) -> Hook:
        """pre_execute of the crawl and the load: every upload the run holds reaches `step`."""

        def record_step(context: Any) -> None:
            held = self.held(context, step)
            if not held:
                raise AirflowSkipException(f"the run holds none of its claimed uploads any more: nothing to {step}")

        record_step.__name__ = f"record_{step}_step"
        return record_step

    def clean_sources(self, step: str) -> Hook:
        """pre_execute of the clean: every held upload reaches `step`, and the clean job is given exactly those
        (--source_uris, --source_versions): an upload a previous attempt ended is not cleaned again."""

        def name_sources(context: Any) -> None:
            held = self.held(context, step)
            if not held:
                raise AirflowSkipException(f"the run holds none of its claimed uploads any more: nothing to {step}")
            held = self._one_version_per_object(context, held)
            task = context["task"]
            task.script_args = {
                **task.script_args,
                "--source_uris": json.dumps([upload.uri for upload in held]),
                "--source_versions": json.dumps([upload.version for upload in held]),
            }

        name_sources.__name__ = f"record_{step}_step_and_name_sources"
        return name_sources

    def loaded(self, step: str) -> Callable[[Any, Any], None]:
        """post_execute of the load: every upload the run still holds is loaded."""

        def record_loaded(context: Any, result: Any = None) -> None:
            run_id = pipeline_run_id(context["dag_run"].run_id)
            ledger = self._ledger()
            for upload in self.held(context, None, ledger=ledger):
                ledger.finish(upload, run_id=run_id, outcome=LOADED)

        return record_loaded

    def outcome_without_load(self, context: Any) -> None:
        """on_skipped_callback of the rows check: no upload curated a row; the clean job ended them all, so this only
        ends one it left running (by its own counts). A write that fails is logged (a callback cannot fail its task)."""
        try:
            run_id = pipeline_run_id(context["dag_run"].run_id)
            ledger = self._ledger()
            for upload in self.held(context, None, ledger=ledger):
                record = ledger.get(upload) or {}
                ledger.finish(upload, run_id=run_id, outcome=outcome_without_load(int(record.get("rows_quarantined") or 0)))
        except Exception:
            log.exception("the ledger did not record the outcome of the run's uploads (nothing to load)")

    def fail(self, context: Any, *, error: str, cause: str) -> None:
        """The run failed: recorded on every claimed upload it still holds (the others ended already)."""
        run_id = pipeline_run_id(context["dag_run"].run_id)
        claimed = self.claimed(context)
        failed = _workflow_inputs().fail_uploads(self._ledger(), claimed, run_id=run_id, error=error, cause=cause)
        log.info("run %s failed: recorded on %d of its %d claimed uploads", run_id, failed, len(claimed))

    def _one_version_per_object(self, context: Any, held: list[Upload]) -> list[Upload]:
        """The held uploads with one version per object (the last claimed): Spark reads an object's current version
        only, so two versions of one key cannot be cleaned apart. The others are recorded failed, naming why; a later
        run retakes them alone."""
        latest = {upload.uri: upload for upload in held}
        superseded = [upload for upload in held if latest[upload.uri] is not upload]
        if superseded:
            run_id = pipeline_run_id(context["dag_run"].run_id)
            _workflow_inputs().fail_uploads(
                self._ledger(),
                superseded,
                run_id=run_id,
                error=SUPERSEDED,
                cause="another version of the same object is cleaned in this run (a run reads each key once); a later run retakes this one",
            )
        return [upload for upload in held if latest[upload.uri] is upload]

    # --- reading the claim ---------------------------------------------------------------------------------------------
    @staticmethod
    def claimed(context: Any) -> list[Upload]:
        """The uploads the run's claim took (its XCom; none when the claim did not get that far)."""
        items = context["ti"].xcom_pull(task_ids=CLAIM_TASK_ID, key=CLAIM_XCOM_KEY) or []
        return [upload_from_xcom(item) for item in items]

    def claimed_uris(self, context: Any) -> list[str]:
        return [upload.uri for upload in self.claimed(context)]

    def held(self, context: Any, step: str | None, *, ledger: UploadLedger | None = None) -> list[Upload]:
        """The claimed uploads this run still holds (taking back the ones it recorded failed, when it is still their
        latest run), each moved to `step` unless None."""
        dag_run = context["dag_run"]
        run_id, execution = pipeline_run_id(dag_run.run_id), f"{dag_run.dag_id}/{dag_run.run_id}"
        ledger = ledger or self._ledger()
        held = []
        for upload in self.claimed(context):
            record = ledger.get(upload) or {}
            latest = record["runs"][-1]["run_id"] if record.get("runs") else None
            if record.get("state") == FAILED and latest == run_id and record.get("error") != SUPERSEDED:
                ledger.start(upload, run_id=run_id, execution=execution, step=step or str(record.get("step") or CRAWL))
                log.info("run %s takes %s back (it had recorded it failed)", run_id, upload.uri)
            elif record.get("state") != RUNNING or record.get("owner") != run_id:
                continue
            if step is not None:
                ledger.step(upload, run_id=run_id, step=step)
            held.append(upload)
        return held


def _requested(conf: Mapping[str, Any]) -> list[Upload]:
    """The upload a run's conf names (`pipeline-ops rerun` / `reconcile --start` start a run with it), or none."""
    if not conf.get("bucket") or not conf.get("key"):
        return []
    return [Upload(str(conf["bucket"]), str(conf["key"]), version_id=conf.get("version_id") or None)]
