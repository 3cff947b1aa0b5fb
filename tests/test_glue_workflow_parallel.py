"""Parallel loads of the Glue Workflow form (`target=[AthenaTarget, RedshiftTarget]`), synthesized and run locally.

The app's staging environment is synthesized (cdk-nag on) with the Glue Workflow form loading both targets. Its trigger
graph is checked as a graph, and one upload's workflow run is walked from the synth, as scripts/demo_form.py walks
the Glue form: the start trigger's actions, then every conditional trigger whose predicate the ended nodes meet (an
AND join waits for all its conditions); the jobs one trigger starts run at the same time (threads). Each job node is
its real code: the clean job on local Spark, each load job's `run_load` (Athena's MERGE on DuckDB, Redshift's COPY and
MERGE on DuckDB behind moto's Redshift Data), the finish job; moto holds S3, SQS, Glue's run properties and the ledger.
The Redshift load fails first (the warehouse has no schema yet); `pipeline-ops rerun` resumes the run at its clean
job, and only Redshift loads again.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from cfnlint.api import ManualArgs, lint

from pipeline_constructs.runtime.glue_load_job import LOAD_OUTCOME_PROPERTY
from pipeline_constructs.runtime.upload_ledger import FAILED, LOADED
from scripts import demo_form
from tests.cdk_app import pinned_context, synth_app

ENV = "staging"
STACK = "GlueWorkflow"
ROWS = 200


@pytest.fixture(scope="module")
def parallel_templates() -> dict[tuple[str, str], dict[str, Any]]:
    """Staging with the Glue Workflow form loading into Athena and Redshift (cdk-nag and the Control Tower checks on)."""
    context = pinned_context()
    staging = context["pipeline:environments"][ENV]
    context["pipeline:environments"] = {ENV: {**staging, "forms": ["glue_workflow"], "load_target": ["athena", "redshift"]}}
    return synth_app(context, nag=True).templates()


@pytest.fixture(scope="module")
def template(parallel_templates: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return parallel_templates[(ENV, STACK)]


def _of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r["Properties"] for lid, r in template["Resources"].items() if r["Type"] == kind}


def _jobs(template: dict[str, Any]) -> dict[str, str]:
    """{'athena' | 'redshift' | 'finish' | 'clean': job logical id}."""
    out = {}
    for lid, job in _of(template, "AWS::Glue::Job").items():
        arguments = job.get("DefaultArguments", {})
        if "--load_target" in arguments:
            out[arguments["--load_target"]] = lid
        elif "--finish_targets" in arguments:
            out["finish"] = lid
        elif "--curated_root" in arguments:
            out["clean"] = lid
    return out


# --- the synthesized workflow ------------------------------------------------------------------------------------------
def test_the_clean_job_starts_both_loads_and_an_and_join_of_both_starts_the_finish(template: dict[str, Any]) -> None:
    jobs = _jobs(template)
    assert set(jobs) == {"athena", "redshift", "finish", "clean"}
    triggers = list(_of(template, "AWS::Glue::Trigger").values())
    [cleaned] = [t for t in triggers if t.get("Predicate", {}).get("Conditions", [{}])[0].get("JobName") == {"Ref": jobs["clean"]}]
    assert cleaned["Predicate"]["Conditions"][0]["State"] == "SUCCEEDED"
    assert [a["JobName"] for a in cleaned["Actions"]] == [{"Ref": jobs["athena"]}, {"Ref": jobs["redshift"]}], "one trigger, both loads"
    [joined] = [t for t in triggers if t["Actions"] == [{"JobName": {"Ref": jobs["finish"]}}]]
    assert joined["Type"] == "CONDITIONAL" and joined["Predicate"]["Logical"] == "AND"
    assert sorted(json.dumps(c, sort_keys=True) for c in joined["Predicate"]["Conditions"]) == sorted(
        json.dumps({"JobName": {"Ref": jobs[t]}, "LogicalOperator": "EQUALS", "State": "SUCCEEDED"}, sort_keys=True)
        for t in ("athena", "redshift")
    )
    starting_a_load = [
        t for t in triggers if any(a.get("JobName", {}).get("Ref") in (jobs["athena"], jobs["redshift"]) for a in t["Actions"])
    ]
    assert starting_a_load == [cleaned], "nothing else starts a load"


def test_each_load_job_takes_only_its_targets_sql_and_the_finish_job_publishes_the_run(template: dict[str, Any]) -> None:
    jobs = _of(template, "AWS::Glue::Job")
    ids = _jobs(template)
    athena, redshift, finish = (jobs[ids[t]]["DefaultArguments"] for t in ("athena", "redshift", "finish"))
    assert "--athena_sql_template" in athena and not any(k.startswith("--redshift") for k in athena)
    assert "--redshift_sql_templates" in redshift and not any(k.startswith("--athena") for k in redshift)
    assert athena["--parallel_targets"] == redshift["--parallel_targets"] == finish["--finish_targets"] == "athena,redshift"
    assert "--metrics_namespace" in finish and "--metrics_namespace" not in athena and "--metrics_namespace" not in redshift
    assert not any(k.startswith(("--athena", "--redshift")) for k in finish)


def test_a_failed_load_is_reported_naming_its_target(template: dict[str, Any]) -> None:
    ids = _jobs(template)
    steps = {}
    for rule in _of(template, "AWS::Events::Rule").values():
        names = rule["EventPattern"].get("detail", {}).get("jobName")
        if names and rule.get("Targets"):
            found = re.search(r"failed_step\W+([A-Za-z ]+)", json.dumps(rule["Targets"][0]["InputTransformer"]["InputTemplate"]))
            assert found, rule
            steps[names[0]["Ref"]] = found.group(1)
    assert steps[ids["athena"]] == "Load athena" and steps[ids["redshift"]] == "Load redshift" and steps[ids["finish"]] == "Load"


def test_the_parallel_stack_passes_cfn_lint(template: dict[str, Any]) -> None:
    matches = [m for m in lint(json.dumps(template), config=ManualArgs(regions=["eu-west-1"])) if m.rule.id.startswith("E")]
    assert not matches, "\n".join(str(m) for m in matches)


# --- one upload's run, walked from the synth ---------------------------------------------------------------------------
class ParallelWalk(demo_form.GlueWorkflowDemo):
    """The demo's walk of the synthesized triggers, with the jobs one trigger starts run at the same time, each
    load job its target's, and the finish job after the AND join."""

    def __init__(self, world: Any) -> None:
        super().__init__(world)
        self.redshift = boto3.client("redshift-data", region_name=demo_form.REGION)

    def kind(self, job_id: str) -> str:
        if "--finish_targets" in self.jobs[job_id]["Properties"].get("DefaultArguments", {}):
            return "finish"
        return super().kind(job_id)

    def run_load(self, arguments: dict[str, str]) -> str:
        from pipeline_constructs.runtime.glue_load_job import resolve_args, run_load

        args = resolve_args(self.world.local_job_argv(arguments))
        clients = {"athena": self.world.athena, "redshift-data": self.redshift, "glue": self.world.glue, "dynamodb": self.world.dynamodb}
        summary = run_load(args, clients, sleep=lambda _s: time.sleep(0.02))
        return f"glue_load_job.run_load: {json.dumps(summary, default=str)}"

    run_finish = run_load

    def walk(self, run_id: str, first: list[str], how: str) -> dict[str, str]:
        states: dict[str, str] = {}
        fired: set[str] = set()
        wave = [(node, how) for node in first]
        while wave:
            with ThreadPoolExecutor(max_workers=len(wave)) as pool:
                ended = list(pool.map(lambda item: self.run_node(item[0], run_id), wave))
            for (node, reason), (state, note) in zip(wave, ended, strict=True):
                states[node] = state
                self.world.say(f"  {node} [{self.node_kind(node)}] {state} <- {reason}; {note[:300]}")
            wave = []
            for trigger_id, trigger in self.fired_by(states):
                if trigger_id not in fired:
                    fired.add(trigger_id)
                    wave += [(self.node_of(action), f"trigger {trigger_id}") for action in trigger["Actions"]]
        return states


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pipeline_constructs.runtime.spark_settings import local_session

    session = local_session(app_name="glue-workflow-parallel", cores=2)
    yield session
    session.stop()


@pytest.mark.spark
@pytest.mark.timeout(600)
def test_one_target_failing_loads_the_other_fails_the_run_naming_it_and_the_resumed_run_loads_only_it(
    parallel_templates: dict[tuple[str, str], dict[str, Any]], spark: Any, tmp_path: Path
) -> None:
    from demo_airflow_stand_ins import RedshiftOnDuckDB
    from demo_stand_ins import RoutedClient

    out = io.StringIO()
    with demo_form.fake_aws():
        world = demo_form.World(parallel_templates, STACK, tmp_path, spark, out, env=ENV)
        warehouse = RedshiftOnDuckDB(world.mirror.local, schema_exists=False)  # the Redshift load fails: no schema "public"
        with warehouse.installed():
            walk = ParallelWalk(world)
            jobs = _jobs(world.form_template)
            upload, event = world.upload(f"{world.deployment.output(STACK, 'LandingPrefix')}store-sales-2024-05.csv", ROWS)
            world.sqs.send_message(QueueUrl=walk.inbox, MessageBody=json.dumps(event))
            world.athena.create_target_table(world.database)
            _, start = walk.start_trigger()
            run_id = world.glue.start_workflow_run(Name=walk.workflow)["RunId"]
            states = walk.walk(run_id, [walk.node_of(a) for a in start["Actions"]], "start trigger")
            text = out.getvalue()

            assert states[jobs["athena"]] == "SUCCEEDED" and states[jobs["redshift"]] == FAILED.upper(), text
            assert jobs["finish"] not in states, "the AND join does not fire after a failed load"
            record = world.record(upload, "glue_workflow")
            assert record["state"] == FAILED and record["load_athena"] == LOADED and record["load_redshift"] == FAILED, record
            assert record["error"] == "LoadFailed" and record["cause"].startswith("load into redshift failed: "), record
            assert "public" in record["cause"]
            properties = world.glue.get_workflow_run_properties(Name=walk.workflow, RunId=run_id)["RunProperties"]
            assert json.loads(properties[LOAD_OUTCOME_PROPERTY + "athena"])["outcome"] == LOADED
            [(node, job_run, error)] = walk.failures
            message = walk.failure_message(node, job_run, error)["message"]
            assert node == jobs["redshift"] and message["failed_step"] == "Load redshift", message
            assert "load into redshift failed" in message["cause"]
            merges = [q for q in world.athena.queries.values() if q["Query"].startswith("MERGE") and q["Status"]["State"] == "SUCCEEDED"]
            assert len(merges) == 1, "Athena loaded the run in the failed run"
            first_loaded = world.athena.rows(f'SELECT count(*) FROM "{world.target_table}"', world.database)[1][0][0]
            assert first_loaded > 0

            # The cause is fixed; `pipeline-ops rerun` resumes the workflow run at its clean job (Glue runs the
            # selected nodes and every node downstream of them: both loads and the join), under a new run id.
            warehouse.create_schema()
            resumed = world.glue.start_workflow_run(Name=walk.workflow)["RunId"]  # the run Glue's resume starts, in moto
            stubbed = boto3.client("glue", region_name=demo_form.REGION)
            stubber = Stubber(stubbed)
            stubber.add_response(
                "get_workflow_run", walk.graph(run_id, states), {"Name": walk.workflow, "RunId": run_id, "IncludeGraph": True}
            )
            stubber.add_response(
                "resume_workflow_run",
                {"RunId": resumed, "NodeIds": [jobs["clean"]]},
                {"Name": walk.workflow, "RunId": run_id, "NodeIds": [jobs["clean"]]},
            )
            stubber.activate()
            action = demo_form.pipeline_ops(
                world, "rerun", upload.uri, glue=RoutedClient(world.glue, stubbed, ("get_workflow_run", "resume_workflow_run"))
            )
            stubber.assert_no_pending_responses()
            assert action["how"] == "resumed" and action["run"] == resumed
            walk.failures = []
            again = walk.walk(resumed, [jobs["clean"]], "resume_workflow_run")
            text = out.getvalue()

            assert again == {jobs[n]: "SUCCEEDED" for n in ("clean", "athena", "redshift", "finish")}, text
            record = world.record(upload, "glue_workflow")
            assert record["state"] == LOADED and [r["outcome"] for r in record["runs"]] == [FAILED, LOADED], record
            assert record["load_athena"] == LOADED and record["load_redshift"] == LOADED
            merges = [q for q in world.athena.queries.values() if q["Query"].startswith("MERGE")]
            assert len(merges) == 1, "the resumed run did not load Athena again"
            assert [b["status"] for b in warehouse.batches] == [FAILED.upper(), "FINISHED"], "Redshift: the failed batch, then one load"
            loaded = warehouse.rows('SELECT count(*) FROM "public"."retail_sales"')[1][0][0]
            assert loaded == first_loaded, "Redshift holds the rows Athena holds"


# --- the parallel load job's own rules, against moto (Glue run properties, the ledger) ---------------------------------
class _FailingRedshift:
    """Redshift Data whose batch fails at once (the warehouse refuses the COPY)."""

    def batch_execute_statement(self, **_request: Any) -> dict[str, str]:
        return {"Id": "b-1"}

    def describe_statement(self, Id: str) -> dict[str, Any]:  # noqa: N803 (boto3's argument name)
        return {"Id": Id, "Status": "FAILED", "Error": "ERROR: schema public does not exist"}


def _parallel_argv(form: Any, run_id: str, target: str) -> list[str]:
    from tests.test_glue_load_job import MERGE_TEMPLATE
    from tests.test_workflow_inputs import WORKFLOW

    sql = (
        ["--athena_sql_template", MERGE_TEMPLATE, "--athena_workgroup", "pipeline", "--athena_database", "db"]
        if target == "athena"
        else ["--redshift_sql_templates", json.dumps([MERGE_TEMPLATE]), "--redshift_workgroup", "wg", "--redshift_database", "dev"]
    )
    return [
        *sql,
        *("--load_target", target, "--parallel_targets", "athena,redshift", "--poll_seconds", "1", "--max_wait_seconds", "30"),
        *("--ledger_table", form.ledger.table_name, "--WORKFLOW_NAME", WORKFLOW, "--WORKFLOW_RUN_ID", run_id),
    ]


@pytest.fixture
def handed_over(fake_aws: None) -> tuple[Any, str, list[Any]]:
    """A workflow run whose clean job claimed two uploads and handed them to the loads."""
    from pipeline_constructs.runtime.workflow_inputs import LOADING_PROPERTY, put_uploads
    from tests.test_workflow_inputs import WORKFLOW, Form

    form = Form()
    uploads = [form.upload("2026/12/07/store-1.csv"), form.upload("2026/12/07/store-2.csv")]
    run_id = form.new_run()
    claimed = form.claim(run_id)
    put_uploads(form.glue, workflow_name=WORKFLOW, run_id=run_id, name=LOADING_PROPERTY, uploads=claimed)
    return form, run_id, uploads


def test_a_load_that_fails_first_waits_for_the_other_target_so_its_outcome_is_recorded(handed_over: tuple[Any, str, list[Any]]) -> None:
    """Redshift fails while Athena's load still runs: the failed job records load_redshift, waits (its polls) until
    Athena has recorded its outcome, then fails the run's uploads naming redshift, so a re-run loads only Redshift."""
    from pipeline_constructs.runtime.glue_load_job import LoadFailed, resolve_args, run_load
    from tests.test_glue_load_job import _athena_workgroup

    form, run_id, uploads = handed_over
    athena = boto3.client("athena", region_name=demo_form.REGION)
    _athena_workgroup(athena)
    polls: list[float] = []

    def athena_ends_during_the_wait(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:  # Athena's load ends while Redshift's job waits
            athena_args = resolve_args(_parallel_argv(form, run_id, "athena"))
            run_load(athena_args, {"athena": athena, "glue": form.glue, "dynamodb": form.ledger.client}, sleep=lambda _s: None)

    redshift_args = resolve_args(_parallel_argv(form, run_id, "redshift"))
    clients = {"redshift-data": _FailingRedshift(), "glue": form.glue, "dynamodb": form.ledger.client}
    with pytest.raises(LoadFailed, match="^load into redshift failed: .*schema public does not exist"):
        run_load(redshift_args, clients, sleep=athena_ends_during_the_wait)
    assert len(polls) == 2, "it stopped waiting once Athena had recorded its outcome"
    for upload in uploads:
        record = form.record(upload)
        assert (record["state"], record["load_athena"], record["load_redshift"], record["error"]) == (FAILED, LOADED, FAILED, "LoadFailed")
        assert record["cause"].startswith("load into redshift failed: ")


def test_an_outcome_written_in_another_run_is_not_waited_for_and_a_missing_one_ends_the_wait(
    handed_over: tuple[Any, str, list[Any]],
) -> None:
    from pipeline_constructs.runtime.glue_load_job import resolve_args, wait_for_targets
    from tests.test_workflow_inputs import WORKFLOW

    form, run_id, _ = handed_over
    stale = json.dumps({"run_id": "wr_the_original_run", "outcome": LOADED})
    form.glue.put_workflow_run_properties(Name=WORKFLOW, RunId=run_id, RunProperties={LOAD_OUTCOME_PROPERTY + "athena": stale})
    args = resolve_args(_parallel_argv(form, run_id, "redshift"))
    polls: list[float] = []
    assert wait_for_targets(form.glue, args, polls.append, budget_seconds=3) == {}
    assert polls == [1.0, 1.0, 1.0], "bounded by its budget"


def test_a_target_already_loaded_by_an_earlier_run_is_not_loaded_again(handed_over: tuple[Any, str, list[Any]]) -> None:
    from pipeline_constructs.runtime.glue_load_job import resolve_args, run_load

    form, run_id, uploads = handed_over
    for upload in uploads:
        form.ledger.target(upload, run_id=run_id, target="athena", outcome=LOADED)
    athena = boto3.client("athena", region_name=demo_form.REGION)  # no workgroup: a query would fail
    summary = run_load(
        resolve_args(_parallel_argv(form, run_id, "athena")), {"athena": athena, "glue": form.glue, "dynamodb": form.ledger.client}
    )
    assert summary["loaded_uploads"] == 0 and summary["already_loaded"] == 2
    assert "athena_query_id" not in summary, "no MERGE ran"


def test_the_finish_ends_the_uploads_loaded_only_when_every_target_is(handed_over: tuple[Any, str, list[Any]]) -> None:
    from pipeline_constructs.runtime.glue_load_job import LoadFailed, resolve_args, run_load
    from tests.test_workflow_inputs import WORKFLOW

    form, run_id, uploads = handed_over
    argv = ["--finish_targets", "athena,redshift", "--ledger_table", form.ledger.table_name, "--WORKFLOW_NAME", WORKFLOW]
    for upload in uploads:
        form.ledger.target(upload, run_id=run_id, target="athena", outcome=LOADED)
    form.ledger.target(uploads[0], run_id=run_id, target="redshift", outcome=LOADED)
    with pytest.raises(LoadFailed, match="misses redshift"):
        run_load(resolve_args([*argv, "--WORKFLOW_RUN_ID", run_id]), {"glue": form.glue, "dynamodb": form.ledger.client})
    assert form.record(uploads[0])["state"] == LOADED
    assert (form.record(uploads[1])["state"], form.record(uploads[1])["cause"]) == (FAILED, "not loaded into redshift")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--load_target", "snowflake"], "--load_target='snowflake'"),
        (
            ["--load_target", "athena", "--redshift_sql_templates", "[]", "--redshift_workgroup", "w", "--redshift_database", "d"],
            "only that",
        ),
        (["--finish_targets", "athena", "--load_target", "athena"], "exclude each other"),
        (["--finish_targets", "athena,oracle"], "--finish_targets="),
        (["--load_target", "athena", "--parallel_targets", "redshift"], "must include"),
    ],
)
def test_the_parallel_arguments_are_checked_naming_the_argument(argv: list[str], message: str) -> None:
    from pipeline_constructs.runtime.glue_load_job import resolve_args

    athena = ["--athena_sql_template", "x", "--athena_workgroup", "w", "--athena_database", "d"]
    with pytest.raises(SystemExit, match=re.escape(message)):
        resolve_args([*athena, *argv, "--run_id", "wr_1"] if "--finish_targets" not in argv else [*argv, "--run_id", "wr_1"])
