"""The DAG's upload ledger writes: the hooks its tasks run, so an MWAA run keeps the record every form keeps, with the
same states, steps and fields (`pipeline_plan.LEDGER_TRANSITIONS`, through `upload_ledger.UploadLedger`).

- The first step (crawl) takes the upload before it runs. Refused (another run holds it, or it already ended: a
  repeated run), the task is skipped, and with it every later task: the run ends without a step and without an alert.
- Each later step records itself before it runs; the last step's success ends the upload `loaded`.
- The rows check's skip ends it `pipeline_plan.outcome_without_load(rows_quarantined)`, from the clean job's counts.
- A failed task records `failed` with the error and the cause, before its one SNS message (`pipeline_dag.notify_failure`).

Clearing a run's failed tasks (`pipeline-ops rerun`, or the Airflow UI) re-runs them under the same run id: the first
write of a cleared task that finds the upload ended by this very run takes it back (`UploadLedger.start`, with force
for a run cleared after it succeeded, which `pipeline-ops rerun --force` does), then writes.

The take, the steps and `loaded` run inside their task (pre_execute, post_execute): a write that fails fails the task,
which retries and alerts. Airflow reports the rows check's skip to a callback only, which may not fail its task: a
write that fails there is logged, and the record stays running, which `pipeline-ops status` lists as stuck once the
run timeout has passed. The DynamoDB client is made when a task runs, never at parse time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from airflow.sdk.exceptions import AirflowSkipException
from pipeline_steps import FORM_NAME, pipeline_run_id

try:
    from pipeline_constructs.runtime.pipeline_plan import outcome_without_load
    from pipeline_constructs.runtime.upload_ledger import LOADED, RUNNING, LedgerConflict, Upload, UploadLedger
except ImportError:  # beside the DAG, shipped as top-level modules
    from pipeline_plan import outcome_without_load  # type: ignore[import-not-found,no-redef]
    from upload_ledger import LOADED, RUNNING, LedgerConflict, Upload, UploadLedger  # type: ignore[import-not-found,no-redef]

log = logging.getLogger(__name__)

Hook = Callable[[Any], None]


class DagLedger:
    """The ledger writes of one deployed DAG (`ledger_table`, `ledger_ttl_days` and `region` of its configuration)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.table = str(config["ledger_table"])
        self.ttl_days = int(config["ledger_ttl_days"])
        self.region = str(config["region"])

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

    @staticmethod
    def _take_back(ledger: UploadLedger, run: _Run, step: str | None) -> bool:
        """Take the upload again when this run ended it (failed, or finished before its tasks were cleared); False
        when another run holds it or another run ended it."""
        record = ledger.get(run.upload)
        if record is None or record.get("state") == RUNNING or not any(r.get("run_id") == run.run_id for r in record["runs"]):
            return False
        taken_at = step if step is not None else str(record.get("step"))
        ledger.start(run.upload, run_id=run.run_id, execution=run.execution, step=taken_at, force=True)
        log.info("run %s takes %s back from %s (its tasks were cleared)", run.run_id, run.upload.uri, record.get("state"))
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
