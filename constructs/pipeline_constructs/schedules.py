"""Schedule expressions for scheduled runs: `cron(...)` or `rate(...)` in the syntax EventBridge and Glue share, with
an IANA time zone, validated before anything is synthesized; and their Glue form.

Glue's SCHEDULED triggers take only `cron(...)`, in UTC, at most every 5 minutes (Glue developer guide, "Time-based
schedules for jobs and crawlers": "You specify time in Coordinated Universal Time (UTC), and the minimum precision
for a schedule is 5 minutes"). `glue_cron` therefore refuses any other time zone (a fixed offset would be wrong half
the year wherever daylight saving time applies) and writes a `rate(...)` as the cron expression that fires at the
same instants, when there is one (every N minutes with N dividing 60, every N hours with N dividing 24, every day),
and refuses the rest instead of approximating them.

`scheduler_expression` is what EventBridge Scheduler takes (the Step Functions form): the same expressions, in any
IANA time zone (Scheduler applies the zone, daylight saving included). `airflow_cron` is what an Airflow DAG's
timetable takes (the MWAA form): five fields, no year, Sunday 0 where EventBridge counts Sunday 1; the time zone
goes to the timetable. `check_form_schedule` picks the right one for a form's name.

Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UTC_NAMES = ("UTC", "Etc/UTC")
GLUE_MIN_INTERVAL_MINUTES = 5

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
# EventBridge / Glue cron: minutes hours day-of-month month day-of-week year.
_FIELDS = (
    ("minutes", r"[0-9,\-*/]+"),
    ("hours", r"[0-9,\-*/]+"),
    ("day-of-month", r"[0-9,\-*?/LW]+"),
    ("month", r"[0-9A-Za-z,\-*/]+"),
    ("day-of-week", r"[0-9A-Za-z,\-*?/L#]+"),
    ("year", r"[0-9,\-*/]+"),
)


class ScheduleError(ValueError):
    """A schedule expression or time zone that cannot be used; the message says why (the caller adds the path)."""


@dataclass(frozen=True)
class Schedule:
    """When scheduled runs start: `expression` is `cron(...)` or `rate(...)`, `time_zone` an IANA name."""

    expression: str
    time_zone: str = "UTC"


def check_expression(expression: object) -> str:
    """The expression when it is a well-formed `cron(...)` (six fields) or `rate(N unit)`; else ScheduleError."""
    if not isinstance(expression, str):
        raise ScheduleError("must be a string: cron(minutes hours day-of-month month day-of-week year) or rate(N minutes|hours|days)")
    rate = _RATE.match(expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise ScheduleError("a rate must be at least 1")
        if (value == 1) != (not unit.endswith("s")):
            raise ScheduleError(f"write rate(1 {unit.rstrip('s')}) for one, rate(N {unit.rstrip('s')}s) for more (EventBridge's syntax)")
        return expression
    cron = _CRON.match(expression)
    if not cron:
        raise ScheduleError("use cron(minutes hours day-of-month month day-of-week year) or rate(N minutes|hours|days)")
    fields = cron.group(1).split()
    if len(fields) != len(_FIELDS):
        raise ScheduleError(f"a cron expression has 6 fields ({' '.join(name for name, _ in _FIELDS)}), this one {len(fields)}")
    for value, (name, allowed) in zip(fields, _FIELDS, strict=True):
        if not re.fullmatch(allowed, value):
            raise ScheduleError(f"the {name} field {value!r} has characters cron does not allow there")
    day_of_month, day_of_week = fields[2], fields[4]
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ScheduleError("exactly one of day-of-month and day-of-week must be '?' (e.g. cron(0 * * * ? *))")
    return expression


def check_time_zone(time_zone: object) -> str:
    """The name when the machine's time zone database knows it (e.g. 'UTC', 'Europe/Paris'); else ScheduleError."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(time_zone, str) or not time_zone:
        raise ScheduleError("must be an IANA time zone name such as UTC or Europe/Paris")
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError("is not an IANA time zone name (e.g. UTC, Europe/Paris, America/New_York)") from None
    return time_zone


def glue_cron(schedule: Schedule) -> str:
    """The Glue trigger schedule for `schedule`: a `cron(...)` in UTC, at most every 5 minutes. ScheduleError names
    what Glue cannot do (another time zone, a rate with no exact cron form, anything more often than 5 minutes)."""
    expression = check_expression(schedule.expression)
    if check_time_zone(schedule.time_zone) not in UTC_NAMES:
        raise ScheduleError(
            f"time_zone {schedule.time_zone!r}: Glue schedules run in UTC only (Glue cron has no time zone, and a fixed offset "
            "would be an hour off for half the year wherever daylight saving applies); write the hours in UTC and set time_zone 'UTC'"
        )
    rate = _RATE.match(expression)
    if rate:
        return _rate_as_cron(int(rate.group(1)), rate.group(2).rstrip("s"), expression)
    minutes = expression[len("cron(") :].split()[0]
    step = re.fullmatch(r"(?:\*|\d+)/(\d+)", minutes)
    if minutes == "*" or (step and int(step.group(1)) < GLUE_MIN_INTERVAL_MINUTES) or _minute_gap(minutes) < GLUE_MIN_INTERVAL_MINUTES:
        raise ScheduleError(f"runs more often than every {GLUE_MIN_INTERVAL_MINUTES} minutes, Glue's shortest schedule")
    return expression


def scheduler_expression(schedule: Schedule) -> str:
    """The EventBridge Scheduler expression for `schedule` (its `time_zone` goes to the schedule as it is): any
    well-formed cron(...) or rate(...), in any IANA time zone; ScheduleError otherwise."""
    check_time_zone(schedule.time_zone)
    return check_expression(schedule.expression)


def airflow_cron(schedule: Schedule) -> str:
    """The five-field cron of an Airflow timetable for `schedule` (the time zone goes to the timetable): the year
    field must be '*', '?' becomes '*', day-of-week numbers move from EventBridge's 1-7 (Sunday 1) to cron's 0-6, a
    `rate(...)` becomes the cron that fires at the same instants. ScheduleError for what has no exact equivalent
    (a year, L, W or #, a rate no cron step repeats exactly)."""
    check_time_zone(schedule.time_zone)
    expression = check_expression(schedule.expression)
    rate = _RATE.match(expression)
    if rate:
        expression = _rate_as_cron(int(rate.group(1)), rate.group(2).rstrip("s"), expression, minimum=1, engine="Airflow")
    minutes, hours, day_of_month, month, day_of_week, year = expression[len("cron(") : -1].split()
    if year != "*":
        raise ScheduleError(f"the year field {year!r}: an Airflow cron has no year; use '*'")
    for name, value in (("day-of-month", day_of_month), ("day-of-week", day_of_week)):
        if re.search(r"[LW#]", value):
            raise ScheduleError(f"the {name} field {value!r}: L, W and # have no exact Airflow cron equivalent; list the days instead")
    minutes, hours = (re.sub(r"^0/", "*/", value) for value in (minutes, hours))  # croniter's spelling of a step from 0
    fields = [
        minutes,
        hours,
        "*" if day_of_month == "?" else day_of_month,
        month,
        "*" if day_of_week == "?" else _cron_weekdays(day_of_week),
    ]
    return " ".join(fields)


def _cron_weekdays(field: str) -> str:
    """EventBridge day-of-week numbers (1-7, Sunday 1) as cron's (0-6, Sunday 0); names and '*' stay."""

    def shift(part: str) -> str:
        start, slash, step = part.partition("/")
        start = re.sub(r"\d+", lambda number: _weekday(number.group(0), field), start)
        return f"{start}{slash}{step}"

    return ",".join(shift(part) for part in field.split(","))


def _weekday(number: str, field: str) -> str:
    value = int(number)
    if not 1 <= value <= 7:
        raise ScheduleError(f"the day-of-week field {field!r}: {value} is not a day (EventBridge counts 1-7, Sunday 1)")
    return str(value - 1)


def check_form_schedule(form: str, schedule: Schedule) -> str:
    """The schedule in the form the named orchestration form deploys (see the module docstring); ScheduleError says
    what that form's engine cannot do, KeyError for a form with no schedule."""
    return FORM_SCHEDULES[form](schedule)


def _rate_as_cron(value: int, unit: str, expression: str, *, minimum: int = GLUE_MIN_INTERVAL_MINUTES, engine: str = "Glue") -> str:
    if unit == "minute":
        if value < minimum:
            raise ScheduleError(f"runs more often than every {minimum} minutes, {engine}'s shortest schedule")
        if 60 % value == 0:
            return f"cron(0/{value} * * * ? *)" if value < 60 else "cron(0 * * * ? *)"
    elif unit == "hour":
        if value == 1:
            return "cron(0 * * * ? *)"
        if 24 % value == 0:
            return f"cron(0 0/{value} * * ? *)" if value < 24 else "cron(0 0 * * ? *)"
    elif value == 1:
        return "cron(0 0 * * ? *)"
    raise ScheduleError(
        f"{expression} has no exact {engine} cron form ({engine} takes cron only here, and a cron step restarts every hour "
        "or day): write the cron expression you mean"
    )


def _minute_gap(minutes: str) -> int:
    """The smallest gap between two listed minutes (e.g. '0,2' -> 2); 60 for a single minute or anything else."""
    if not re.fullmatch(r"\d+(,\d+)+", minutes):
        return 60
    values = sorted({int(m) for m in minutes.split(",")})
    gaps = [b - a for a, b in zip(values, values[1:], strict=False)] + [60 - values[-1] + values[0]]
    return min(gaps)


FORM_SCHEDULES = {
    "glue_workflow": glue_cron,
    "step_functions": scheduler_expression,
    "mwaa": airflow_cron,
}
"""Each orchestration form's schedule check, by the form's name (the config's `forms`). MWAA Serverless has none: a
scheduled run of its could not claim its uploads in the ledger yet (forms/mwaa_serverless.py,
`check_serverless_schedule`), so its schedule is refused."""
