"""`make compare` (scripts/compare_forms.py, scripts/form_costs.py): the cost arithmetic on small hand-made prices,
the table's rows against what the templates say, and the README's table against what the script produces now."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scripts import compare_forms, form_costs
from scripts.form_costs import FormShape, PollLoop, Prices, StateMachineShape


def prices(**assume: Any) -> Prices:
    """Round prices so the expected values can be worked out by hand."""
    assumptions = {
        "crawl_seconds": 90,
        "crawler_dpus": 2,
        "clean_seconds_base": 120,
        "clean_seconds_per_upload": 10,
        "load_seconds_base": 30,
        "load_seconds_per_upload": 0,
        "rows_check_seconds": 2,
        "athena_scan_mb_base": 0,
        "athena_scan_mb_per_upload": 0,
        "s3_puts_per_upload": 0,
        "s3_gets_per_upload": 0,
        "ledger_writes_per_upload": 0,
        "ledger_reads_per_upload": 0,
        "sqs_requests_per_message": 3,
        "lambda_seconds": 1,
        "mwaa_metadata_db_gb": 10,
        "empty_run": {"step_functions_transitions": 5, "serverless_task_seconds": 60, "glue_pending_check_seconds": 20},
    }
    assumptions.update(assume)

    def p(value: Any, minimum: int = 0) -> dict[str, Any]:
        return {"value": value, "minimum_seconds": minimum}

    return Prices(
        {
            "hours_per_month": 720,
            "prices": {
                "step_functions_standard_per_1000_transitions": p(1.0),
                "lambda_per_million_requests": p(1.0),
                "lambda_per_gb_second": p(0.001),
                "glue_spark_per_dpu_hour": p(1.0, 60),
                "glue_crawler_per_dpu_hour": p(1.0, 600),
                "glue_python_shell_per_dpu_hour": p(1.0, 60),
                "mwaa_environment_per_hour": p({"mw1.small": 0.5}),
                "mwaa_additional_worker_per_hour": p({"mw1.small": 0.1}),
                "mwaa_metadata_db_per_gb_month": p(0.1),
                "mwaa_serverless_per_task_hour": p(0.36, 60),
                "sqs_standard_per_million_requests": p(1.0),
                "dynamodb_on_demand_per_million_writes": p(1.0),
                "dynamodb_on_demand_per_million_reads": p(1.0),
                "athena_per_tb_scanned": {"value": 5.0, "minimum_mb": 10},
                "s3_put_per_1000": p(0.0),
                "s3_get_per_1000": p(0.0),
                "cloudwatch_alarm_per_month": p(0.1),
                "kms_key_per_month": p(1.0),
                "vpc_interface_endpoint_per_az_hour": p(0.01),
            },
            "assumptions": assumptions,
        }
    )


SF = FormShape(
    form="step_functions",
    alarms=2,
    kms_keys=1,
    clean_dpus=2,
    clean_concurrency=5,
    state_machine=StateMachineShape(base=20, crawl_loop=PollLoop(30, 5), load_loop=PollLoop(15, 4)),
    empty_run_kind="transitions",
)


def test_state_transitions_add_a_loop_pass_per_further_poll() -> None:
    d = form_costs.durations(prices(), 1)
    # crawl 90 s / 30 s = 3 polls -> 2 extra passes of 5; load 30 s / 15 s = 2 polls -> 1 extra pass of 4: 20 + 10 + 4
    assert form_costs.transitions(SF.state_machine, d) == 34  # type: ignore[arg-type]


def test_shared_run_cost_applies_the_crawler_and_job_minimums_and_athenas_10_mb() -> None:
    # crawl: 2 DPU x max(90 s, 600 s) = 2 x 1/6 h x $1 = $0.333...; clean: 2 DPU x 120 s = 2 x 1/30 h x $1 = $0.0666...
    # Athena: max(10 MB, 0 MB) = 10 MB = 10 / 1,048,576 TB x $5 = $0.0000476837
    expected = 2 * 600 / 3600 + 2 * 120 / 3600 + 10 / 1_048_576 * 5
    assert form_costs.shared_run_cost(prices(), SF, 1) == pytest.approx(expected)


def test_a_step_functions_day_of_one_upload_and_its_idle_cost() -> None:
    p = prices()
    # idle: 2 alarms x $0.1 + 1 key x $1 = $1.2 a month, a day = 1.2 x 24 / 720 = $0.04
    assert form_costs.idle_per_month(p, SF) == pytest.approx(1.2)
    day = form_costs.day_cost(p, SF, 1, "upload")
    # one run: shared 0.4 + 10/1048576*5, orchestration 34 transitions x $1 / 1000 = $0.034
    assert day.orchestration == pytest.approx(0.034)
    assert day.total == pytest.approx(0.04 + 0.034 + 2 * 600 / 3600 + 2 * 120 / 3600 + 10 / 1_048_576 * 5)


def test_an_hourly_day_of_one_upload_has_23_empty_runs() -> None:
    day = form_costs.day_cost(prices(), SF, 1, "hourly")
    assert (day.runs, day.uploads_per_run, day.empty_runs) == (1, 1, 23)
    # 34 transitions for the run + 23 x 5 for the empty ones = 149 x $1/1000
    assert day.orchestration == pytest.approx(0.149)


def test_an_hourly_day_of_240_uploads_takes_ten_per_run() -> None:
    day = form_costs.day_cost(prices(), SF, 240, "hourly")
    assert (day.runs, day.uploads_per_run, day.empty_runs) == (24, 10, 0)
    # clean: 120 + 10 x 9 further uploads = 210 s; 2 DPU x 210/3600 h x $1 = $0.11666 per run
    d = form_costs.durations(prices(), 10)
    assert d.clean == 210


def test_glue_workflow_batches_by_window_or_size() -> None:
    glue = FormShape(form="glue_workflow", alarms=0, kms_keys=0, clean_dpus=2, clean_concurrency=1, batch_size=10, batch_window_seconds=300)
    # 8,640 a day = one every 10 s: 1 + 300/10 = 31 in a window, capped at 10 -> 864 runs
    assert form_costs.runs_of_day(glue, 8_640, "upload") == (864.0, 10.0, 0.0)
    # 144 a day = one every 600 s: 1 + 300/600 = 1.5 a run -> 96 runs
    assert form_costs.runs_of_day(glue, 144, "upload") == (96.0, 1.5, 0.0)


def test_mwaa_idle_is_the_environment_the_database_and_the_endpoints() -> None:
    mwaa = FormShape(
        form="mwaa",
        alarms=1,
        kms_keys=0,
        clean_dpus=2,
        clean_concurrency=5,
        interface_endpoint_azs=6,
        mwaa_class="mw1.small",
        mwaa_extra_workers=1,
    )
    # 720 h x ($0.5 + 1 extra worker x $0.1) + 10 GB x $0.1 + 6 endpoint-zones x 720 h x $0.01 + 1 alarm x $0.1
    assert form_costs.idle_per_month(prices(), mwaa) == pytest.approx(720 * 0.6 + 1.0 + 6 * 720 * 0.01 + 0.1)


def test_mwaa_serverless_bills_each_task_at_least_a_minute() -> None:
    serverless = FormShape(
        form="mwaa_serverless",
        alarms=0,
        kms_keys=0,
        clean_dpus=2,
        clean_concurrency=5,
        serverless_tasks=("crawl", "clean", "find_curated_rows", "load"),
    )
    # tasks: crawl 90 s, clean 120 s, find_curated_rows 2 s -> 60 s, load 30 s -> 60 s: 330 s = 0.091666 h x $0.36
    assert form_costs.orchestration_run_cost(prices(), serverless, 1) == pytest.approx(330 / 3600 * 0.36)


def test_a_capped_step_busier_than_a_day_is_reported() -> None:
    p = prices()
    # 10,000 runs x 120 s clean / (5 at a time x 86,400 s) = 2.78; the load: 10,000 x 30 s / 86,400 = 3.47
    share, step = form_costs.busiest(p, SF, 10_000, 1)
    assert (step, share) == ("load", pytest.approx(10_000 * 30 / 86_400))


# --- the rows against the templates ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[compare_forms.Synth, dict[str, compare_forms.Form]]:
    """The comparison environment (every form enabled) per upload and hourly, for this module: two synths, about 20 s."""
    return compare_forms.compare(Path(tmp_path_factory.mktemp("compare")))


def test_every_form_stack_is_counted_whole(compared: tuple[compare_forms.Synth, dict[str, compare_forms.Form]]) -> None:
    synth, forms = compared
    for name, stack in compare_forms.STACKS.items():
        count = len(synth.templates[stack]["Resources"])
        assert forms[name].cells["resources"].startswith(f"{count} ("), (name, forms[name].cells["resources"])


def test_the_step_functions_retries_and_timeout_are_the_definitions(
    compared: tuple[compare_forms.Synth, dict[str, compare_forms.Form]],
) -> None:
    synth, forms = compared
    template = synth.templates["StepFunctions"]
    [machine] = [r for r in template["Resources"].values() if r["Properties"].get("StateMachineType") == "STANDARD"]
    definition = json.loads(compare_forms.to_text(machine["Properties"]["DefinitionString"]))
    load = next(s for n, s in definition["States"].items() if n.startswith("Load Into"))
    attempts = {r["MaxAttempts"] for r in load.get("Retry", [])}
    cell = forms["step_functions"].cells["step_load"]
    assert attempts and all(f"≤{n}×" in cell for n in attempts), cell
    assert forms["step_functions"].cells["run_timeout"] == compare_forms.fmt_seconds(definition["TimeoutSeconds"])


def test_the_airflow_rows_are_the_shipped_dag_and_yaml(compared: tuple[compare_forms.Synth, dict[str, compare_forms.Form]]) -> None:
    synth, forms = compared
    _, env = synth.one("Mwaa", "AWS::MWAA::Environment")
    assert env["EnvironmentClass"] in forms["mwaa"].cells["runs_on"]
    assert forms["mwaa"].shape is not None and forms["mwaa"].shape.mwaa_class == env["EnvironmentClass"]
    # MWAA Serverless runs a task at most an hour: the YAML's clean timeout says so, the DAG's does not.
    assert "`clean`: timeout 1 h" in forms["mwaa_serverless"].cells["step_clean"]


def test_each_fact_is_checked_against_the_template(compared: tuple[compare_forms.Synth, dict[str, compare_forms.Form]]) -> None:
    synth, forms = compared
    for by_form in compare_forms.FACTS.values():
        for name, fact in by_form.items():
            assert fact.check(synth, forms[name]), (name, fact.why)
    # the facts' checks are real: a template without the triggers fails the Glue Workflow's
    stripped = compare_forms.Synth(templates=dict(synth.templates), outdir=synth.outdir)
    stripped.templates["GlueWorkflow"] = {"Resources": {}}
    assert not compare_forms.FACTS["resume"]["glue_workflow"].check(stripped, forms["glue_workflow"])


def test_readme_table_is_what_make_compare_produces_now(compared: tuple[compare_forms.Synth, dict[str, compare_forms.Form]]) -> None:
    """Fails when README.md's table of the forms is stale: run `make compare` and commit README.md."""
    _, forms = compared
    table = compare_forms.render(forms, form_costs.load_prices())
    readme = compare_forms.README.read_text()
    assert compare_forms.BEGIN in readme, "README.md has no table of the forms: run `make compare`"
    current = readme.split(compare_forms.BEGIN, 1)[1].split(compare_forms.END, 1)[0].lstrip("\n")
    assert current == table, "README.md's table of the forms differs from the synth: run `make compare`"


def test_without_markers_the_block_goes_before_the_failure_section() -> None:
    readme = "# T\n\n## A\n\ntext\n\n## How failure is reported\n\nmore\n"
    out = compare_forms.readme_with(readme, "| table |\n")
    assert out.index(compare_forms.SECTION) < out.index("## How failure is reported")
    assert compare_forms.readme_with(out, "| new |\n").count(compare_forms.BEGIN) == 1
    assert "| new |" in compare_forms.readme_with(out, "| new |\n")


def test_an_empty_scheduled_glue_workflow_run_pays_one_pending_check_minute_not_a_crawl() -> None:
    glue = FormShape(
        form="glue_workflow",
        alarms=0,
        kms_keys=0,
        clean_dpus=2,
        clean_concurrency=1,
        empty_run_kind="pending_check",
        pending_check_dpus=0.0625,
    )
    # 0.0625 DPU x max(20 s, the 60 s minimum) = 0.0625 x 1/60 h x $1 = $0.00104166...; a crawl would be 2 x 600/3600 = $0.333
    assert form_costs.empty_run_cost(prices(), glue) == pytest.approx(0.0625 / 60)


def test_a_burst_per_upload_shares_two_crawls_and_waits_for_the_loads_one_at_a_time() -> None:
    p = prices()
    shared = FormShape(**{**SF.__dict__, "shared_crawl": True})
    burst = form_costs.burst_cost(p, shared, 200, "upload")
    assert (burst.runs, burst.crawls) == (200, 2)
    # crawl 2 DPU x 10-min minimum x $1 = $1/3 each, billed twice; clean 2 DPU x 120 s; 34 transitions; 10 MB scanned
    assert burst.cost == pytest.approx(2 / 3 + 200 * (2 * 120 / 3600 + 0.034 + 10 / 1_048_576 * 5))
    # serial: two crawls (330 s), 40 waves of 5 cleans (4,920 s), 200 loads one at a time: 90 + 120 + 200 x 30
    assert burst.last_loaded_after == 90 + 120 + 200 * 30


def test_a_burst_on_a_schedule_is_one_run_and_waits_up_to_its_interval() -> None:
    for mode, interval in (("every_5_minutes", 300), ("hourly", 3600)):
        burst = form_costs.burst_cost(prices(), SF, 200, mode)
        assert (burst.runs, burst.crawls) == (1, 1)
        assert burst.last_loaded_after == interval + 90 + (120 + 199 * 10) + 30


def test_a_burst_in_a_form_of_one_run_at_a_time_waits_for_every_batch_and_crawls_in_each() -> None:
    glue = FormShape(
        form="glue_workflow",
        alarms=0,
        kms_keys=0,
        clean_dpus=2,
        clean_concurrency=1,
        run_concurrency=1,
        batch_size=10,
        batch_window_seconds=300,
    )
    burst = form_costs.burst_cost(prices(), glue, 200, "upload")
    assert (burst.runs, burst.crawls) == (20, 20)
    assert burst.last_loaded_after == 20 * (90 + (120 + 9 * 10) + 30)
    with pytest.raises(ValueError, match="every_5_minutes"):
        form_costs.burst_cost(prices(), glue, 200, "weekly")


def _loop(call: str) -> dict[str, Any]:
    """A poll loop branch: start, wait, check, done."""
    return {
        "StartAt": "Start",
        "States": {
            "Start": {"Type": "Task", "Resource": f"arn:aws:states:::aws-sdk:{call}", "Next": "Wait"},
            "Wait": {"Type": "Wait", "Seconds": 30, "Next": "Check"},
            "Check": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:glue:getCrawler", "Next": "Done?"},
            "Done?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericGreaterThanEquals": 60, "Next": "Done"}],
                "Default": "Wait",
            },
            "Done": {"Type": "Succeed"},
        },
    }


def test_a_run_is_read_from_the_definition_with_its_lambda_calls_and_a_skippable_crawl() -> None:
    lam = "arn:aws:states:::lambda:invoke"
    definition = {
        "StartAt": "Claim",
        "States": {
            "Claim": {"Type": "Task", "Resource": lam, "Next": "Pending?"},
            "Pending?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.none", "BooleanEquals": True, "Next": "Nothing"}],
                "Default": "Check",
            },
            "Nothing": {"Type": "Succeed"},
            "Check": {"Type": "Task", "Resource": lam, "Next": "Crawl?"},
            "Crawl?": {"Type": "Choice", "Choices": [{"Variable": "$.crawl", "BooleanEquals": True, "Next": "Crawl"}], "Default": "Load"},
            "Crawl": {"Type": "Parallel", "Branches": [_loop("glue:startCrawler")], "Next": "Load"},
            "Load": {"Type": "Parallel", "Branches": [_loop("athena:startQueryExecution")], "Next": "Loaded"},
            "Loaded": {"Type": "Succeed"},
        },
    }
    run = compare_forms.machine_run(definition)
    # Claim, Pending?, Check, Crawl?, Load, Loaded + one pass of the load's loop (Start, Wait, Check, Done?, Done)
    assert (run.shape.base, run.shape.crawls, run.lambdas) == (6 + 5, False, 2)
    assert (run.empty_transitions, run.empty_lambdas) == (3, 1)
    # a crawl that cannot be skipped is on the path, with one pass of its loop
    definition["States"]["Crawl?"] = {"Type": "Pass", "Next": "Crawl"}
    crawled = compare_forms.machine_run(definition)
    assert (crawled.shape.base, crawled.shape.crawls) == (7 + 5 + 5, True)


def test_a_form_that_skips_an_unchanged_schemas_crawl_pays_no_crawl() -> None:
    p = prices()
    skipping = FormShape(**{**SF.__dict__, "skips_unchanged_crawl": True})
    assert form_costs.shared_run_cost(p, SF, 1) - form_costs.shared_run_cost(p, skipping, 1) == pytest.approx(2 * 600 / 3600)
    burst = form_costs.burst_cost(p, skipping, 200, "hourly")
    assert (burst.crawls, burst.last_loaded_after) == (0, 3600 + (120 + 199 * 10) + 30)
