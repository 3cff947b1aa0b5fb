"""Each form's schedule as its engine takes it: EventBridge Scheduler keeps the expression and the time zone; an
Airflow timetable takes five cron fields, with Sunday 0 where EventBridge counts Sunday 1."""

from __future__ import annotations

import pytest

from pipeline_constructs.schedules import FORM_SCHEDULES, Schedule, ScheduleError, airflow_cron, check_form_schedule, scheduler_expression


@pytest.mark.parametrize(
    ("expression", "cron"),
    [
        ("cron(0 * * * ? *)", "0 * * * *"),
        ("cron(30 6 ? * 2-6 *)", "30 6 * * 1-5"),  # Monday to Friday: EventBridge 2-6, cron 1-5
        ("cron(0 0 ? * 1,7 *)", "0 0 * * 0,6"),  # Sunday and Saturday
        ("cron(0 0 ? * 2/2 *)", "0 0 * * 1/2"),  # a step keeps its length, only its start moves
        ("cron(0 8 ? * MON-FRI *)", "0 8 * * MON-FRI"),
        ("cron(15 2 1 * ? *)", "15 2 1 * *"),
        ("rate(15 minutes)", "*/15 * * * *"),
        ("rate(2 hours)", "0 */2 * * *"),
        ("rate(1 day)", "0 0 * * *"),
    ],
)
def test_an_airflow_timetable_gets_the_five_field_cron_that_fires_at_the_same_instants(expression: str, cron: str) -> None:
    assert airflow_cron(Schedule(expression, "Europe/Paris")) == cron


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("cron(0 0 L * ? *)", "L, W and #"),
        ("cron(0 0 ? * 6#3 *)", "L, W and #"),
        ("cron(0 0 * * ? 2027)", "no year"),
        ("cron(0 0 ? * 8 *)", "8 is not a day"),
        ("rate(7 minutes)", "no exact Airflow cron form"),
    ],
)
def test_what_an_airflow_cron_cannot_say_is_refused_with_the_reason(expression: str, why: str) -> None:
    with pytest.raises(ScheduleError, match=why):
        airflow_cron(Schedule(expression))


def test_eventbridge_scheduler_takes_the_expression_as_written_in_any_time_zone_but_not_an_unknown_one() -> None:
    assert scheduler_expression(Schedule("rate(5 minutes)", "America/New_York")) == "rate(5 minutes)"
    with pytest.raises(ScheduleError, match="IANA"):
        scheduler_expression(Schedule("rate(5 minutes)", "Mars/Olympus"))


def test_every_form_but_mwaa_serverless_has_a_schedule_check_and_the_glue_workflow_keeps_to_utc() -> None:
    assert set(FORM_SCHEDULES) == {"step_functions", "glue_workflow", "mwaa"}
    assert check_form_schedule("glue_workflow", Schedule("rate(1 hour)")) == "cron(0 * * * ? *)"
    with pytest.raises(ScheduleError, match="UTC only"):
        check_form_schedule("glue_workflow", Schedule("rate(1 hour)", "Europe/Paris"))
