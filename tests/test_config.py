"""Invalid environment configuration fails before synth, naming the setting and the bad value."""

from __future__ import annotations

import copy
import re

import pytest

from pipeline_constructs.schedules import Schedule
from stacks.config import ConfigError, parse_app_config, parse_bool_flag, parse_environment

VALID = {
    "region": "eu-west-1",
    "forms": ["step_functions"],
    "load_target": "athena",
    "alarm_emails": ["ops@example.com"],
    "glue_worker_type": "G.1X",
    "glue_worker_count": 2,
    "log_retention_days": 14,
    "removal": "retain",
}


def settings(**changes: object) -> dict:
    out = copy.deepcopy(VALID)
    for key, value in changes.items():
        if value is _DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


_DROP = object()


def test_valid_settings_give_a_typed_config() -> None:
    config = parse_environment("dev", settings(), default_account="123456789012")
    assert config.account == "123456789012"
    assert config.forms == ("step_functions",)
    assert config.glue_worker_count == 2
    assert config.destroy_on_removal is False


def test_account_and_region_fall_back_to_cdk_defaults() -> None:
    config = parse_environment("staging", settings(region=_DROP), default_account="111122223333", default_region="us-east-2")
    assert (config.account, config.region) == ("111122223333", "us-east-2")


@pytest.mark.parametrize(
    ("env", "changes", "setting", "value"),
    [
        ("qa", {}, "environment", "'qa'"),
        ("dev", {"account": "12345"}, "environments.dev.account", "'12345'"),
        ("dev", {"account": "12345678901a"}, "environments.dev.account", "'12345678901a'"),
        ("dev", {"region": "europe"}, "environments.dev.region", "'europe'"),
        ("dev", {"forms": ["step_functions", "airflow"]}, "environments.dev.forms[1]", "'airflow'"),
        ("dev", {"forms": []}, "environments.dev.forms", "[]"),
        ("dev", {"load_target": "bigquery"}, "environments.dev.load_target", "'bigquery'"),
        ("dev", {"load_target": ["athena", "bigquery"]}, "environments.dev.load_target[1]", "'bigquery'"),
        ("dev", {"load_target": []}, "environments.dev.load_target", "[]"),
        ("dev", {"load_target": ["athena", "athena"]}, "environments.dev.load_target", "['athena', 'athena']"),
        ("dev", {"load_target": 3}, "environments.dev.load_target", "3"),
        ("dev", {"alarm_emails": []}, "environments.dev.alarm_emails", "[]"),
        ("dev", {"alarm_emails": [""]}, "environments.dev.alarm_emails[0]", "''"),
        ("dev", {"alarm_emails": ["not-an-address"]}, "environments.dev.alarm_emails[0]", "'not-an-address'"),
        ("dev", {"glue_worker_count": 0}, "environments.dev.glue_worker_count", "0"),
        ("dev", {"glue_worker_count": -3}, "environments.dev.glue_worker_count", "-3"),
        ("dev", {"glue_worker_type": "G.3X"}, "environments.dev.glue_worker_type", "'G.3X'"),
        ("dev", {"log_retention_days": 0}, "environments.dev.log_retention_days", "0"),
        ("dev", {"log_retention_days": -1}, "environments.dev.log_retention_days", "-1"),
        ("dev", {"log_retention_days": 10}, "environments.dev.log_retention_days", "10"),
        ("dev", {"data_retention_days": 0}, "environments.dev.data_retention_days", "0"),
        ("prod", {"removal": "destroy"}, "environments.prod.removal", "'destroy'"),
        ("dev", {"removal": "wipe"}, "environments.dev.removal", "'wipe'"),
        ("dev", {"max_quarantine_ratio": 1.5}, "environments.dev.max_quarantine_ratio", "1.5"),
        ("dev", {"colour": "blue"}, "environments.dev.colour", "'blue'"),
        ("dev", {"availability_zones": ["us-east-1a"]}, "environments.dev.availability_zones[0]", "'us-east-1a'"),
    ],
)
def test_invalid_setting_is_named_with_its_value(env: str, changes: dict, setting: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_environment(env, settings(**changes), allow_destroy=True)
    message = str(error.value)
    assert message.startswith(f"{setting}={value}:"), message


def test_destroy_needs_the_context_flag_and_names_it() -> None:
    with pytest.raises(ConfigError, match=re.escape("pipeline:allowDestroy=true")):
        parse_environment("dev", settings(removal="destroy"))
    assert parse_environment("dev", settings(removal="destroy"), allow_destroy=True).destroy_on_removal


def test_prod_refuses_destroy_even_with_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"environments\.prod\.removal='destroy'"):
        parse_environment("prod", settings(removal="destroy"), allow_destroy=True)


def test_selecting_an_unknown_environment_names_it() -> None:
    with pytest.raises(ConfigError, match=r"pipeline:env='qa'"):
        parse_app_config({"dev": settings()}, only="qa")


def test_empty_environments_mapping_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"pipeline:environments=\{\}"):
        parse_app_config({})


@pytest.mark.parametrize(("raw", "expected"), [(True, True), ("true", True), ("False", False), (None, False)])
def test_bool_flags_accept_true_and_false(raw: object, expected: bool) -> None:
    assert parse_bool_flag("pipeline:allowDestroy", raw) is expected


def test_bool_flag_names_a_bad_value() -> None:
    with pytest.raises(ConfigError, match=r"pipeline:allowDestroy='yes'"):
        parse_bool_flag("pipeline:allowDestroy", "yes")


def test_bad_config_fails_the_app_before_synth() -> None:
    """app.py's build step raises on a bad setting before any template is written."""
    import aws_cdk as cdk

    from app import build_app
    from tests.cdk_app import pinned_context

    context = pinned_context()
    context["pipeline:environments"]["staging"]["glue_worker_count"] = 0
    with pytest.raises(ConfigError, match=r"environments\.staging\.glue_worker_count=0"):
        build_app(cdk.App(context=context))


def test_the_mwaa_form_builds_its_stack_and_the_network_it_needs() -> None:
    """mwaa (once accepted but not built) now builds <env>-Mwaa, and the network stack it runs in."""
    import aws_cdk as cdk

    from app import build_app
    from tests.cdk_app import pinned_context

    context = pinned_context(**{"pipeline:env": "dev"})
    context["pipeline:environments"]["dev"]["forms"] = ["step_functions", "mwaa"]
    context["pipeline:environments"]["dev"].pop("trigger")  # dev's schedule is for its Glue Workflow, not enabled here
    [stage] = build_app(cdk.App(context=context), nag=False)
    assert sorted(stage.orchestration) == ["mwaa", "step_functions"]
    assert stage.network is not None


# --- values that are well-formed but cannot work -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "setting", "value", "why"),
    [
        ({"glue_worker_type": "G.025X"}, "environments.dev.glue_worker_type", "'G.025X'", "streaming"),
        ({"region": "eu-west-9"}, "environments.dev.region", "'eu-west-9'", "botocore"),
        ({"region": "mars-north-1"}, "environments.dev.region", "'mars-north-1'", "botocore"),
        ({"availability_zones": ["eu-west-1a", "eu-west-1z"]}, "environments.dev.availability_zones[1]", "'eu-west-1z'", "a to f"),
        ({"glue_worker_count": 101}, "environments.dev.glue_worker_count", "101", "<= 100"),
        ({"data_retention_days": 3654}, "environments.dev.data_retention_days", "3654", "<= 3653"),
        ({"alarm_emails": ["ops@example.com", "OPS@example.com "]}, "environments.dev.alarm_emails[1]", "'OPS@example.com '", "twice"),
        ({"nat_gateways": -1}, "environments.dev.nat_gateways", "-1", ">= 0"),
        (
            {"availability_zones": ["eu-west-1a", "eu-west-1b"], "nat_gateways": 3},
            "environments.dev.nat_gateways",
            "3",
            "one per availability zone",
        ),
        ({"nat_gateways": 3}, "environments.dev.nat_gateways", "3", "one per availability zone"),
    ],
)
def test_values_that_cannot_work_are_rejected_with_path_and_value(changes: dict, setting: str, value: str, why: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_environment("dev", settings(**changes))
    message = str(error.value)
    assert message.startswith(f"{setting}={value}:"), message
    assert why in message, message


def test_every_region_botocore_knows_is_accepted_and_its_zones_a_to_f() -> None:
    from botocore.loaders import Loader

    for partition in Loader().load_data("partitions")["partitions"]:
        pattern = re.compile(partition["regionRegex"])
        for region in (r for r in partition["regions"] if pattern.match(r)):
            config = parse_environment("dev", settings(region=region, availability_zones=[f"{region}{z}" for z in "abcdef"]))
            assert config.region == region


def test_the_zone_rule_accepts_every_zone_moto_models() -> None:
    """moto carries AWS's zone names per region (us-east-1 has six, a to f, the most of any region): all pass."""
    from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend

    zones = {region: [zone.name for zone in listed] for region, listed in RegionsAndZonesBackend.zones.items()}
    assert max(len(z) for z in zones.values()) == 6
    for region, names in zones.items():
        parse_environment("dev", settings(region=region, availability_zones=names))


def test_upper_bounds_are_inclusive() -> None:
    config = parse_environment(
        "dev",
        settings(glue_worker_count=100, data_retention_days=3653, availability_zones=["eu-west-1a", "eu-west-1b"], nat_gateways=2),
    )
    assert (config.glue_worker_count, config.data_retention_days, config.nat_gateways) == (100, 3653, 2)


def test_selecting_one_environment_still_validates_the_others() -> None:
    """`-c pipeline:env=dev` must not let a broken prod through: prod is validated, then only dev is built."""
    raw = {"dev": settings(), "prod": settings(removal="destroy")}
    with pytest.raises(ConfigError, match=r"^environments\.prod\.removal='destroy'"):
        parse_app_config(raw, only="dev", allow_destroy=True)
    ok = parse_app_config({"dev": settings(), "prod": settings()}, only="dev")
    assert [env.name for env in ok.environments] == ["dev"]


def test_selecting_dev_in_the_app_still_fails_on_a_bad_prod() -> None:
    import aws_cdk as cdk

    from app import build_app
    from tests.cdk_app import pinned_context

    context = pinned_context(**{"pipeline:env": "dev", "pipeline:allowDestroy": "true"})
    context["pipeline:environments"]["prod"]["removal"] = "destroy"
    with pytest.raises(ConfigError, match=r"environments\.prod\.removal='destroy'"):
        build_app(cdk.App(context=context), nag=False)


@pytest.mark.parametrize(
    ("changes", "value", "why"),
    [
        ({"object_lock_days": -1}, "-1", ">= 1"),
        ({"object_lock_days": "30"}, "'30'", ">= 1"),
        ({"object_lock_days": 400, "data_retention_days": 365}, "400", "at most data_retention_days (365)"),
        ({"object_lock_days": 30, "removal": "destroy"}, "30", "removal: retain"),
    ],
)
def test_object_lock_days_that_cannot_work_are_rejected_with_path_and_value(changes: dict, value: str, why: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_environment("dev", settings(**changes), allow_destroy=True)
    message = str(error.value)
    assert message.startswith(f"environments.dev.object_lock_days={value}:"), message
    assert why in message, message


def test_object_lock_is_off_by_default_and_on_when_set() -> None:
    assert parse_environment("dev", settings()).object_lock_days == 0
    assert parse_environment("dev", settings(object_lock_days=365)).object_lock_days == 365


# --- how runs start: `trigger` (upload, or a schedule; only the Glue Workflow is scheduled in this version) --------
GLUE = {"forms": ["step_functions", "glue_workflow"]}


def test_runs_start_on_uploads_unless_a_form_has_a_schedule() -> None:
    assert parse_environment("dev", settings(**GLUE)).schedules == ()
    assert parse_environment("dev", settings(**GLUE, trigger="upload")).schedule_for("glue_workflow") is None
    config = parse_environment("dev", settings(**GLUE, trigger={"step_functions": "upload", "glue_workflow": {"schedule": "rate(1 hour)"}}))
    schedule = config.schedule_for("glue_workflow")
    assert schedule is not None and (schedule.expression, schedule.time_zone) == ("rate(1 hour)", "UTC")
    assert config.schedule_for("step_functions") is None


@pytest.mark.parametrize(
    ("trigger", "setting", "value", "why"),
    [
        ("hourly", "environments.dev.trigger", "'hourly'", "use 'upload' or a mapping"),
        ({"airflow": "upload"}, "environments.dev.trigger.airflow", "'upload'", "unknown orchestration form"),
        ({"mwaa": "upload"}, "environments.dev.trigger.mwaa", "'upload'", "does not enable mwaa"),
        ({"glue_workflow": "hourly"}, "environments.dev.trigger.glue_workflow", "'hourly'", "use 'upload' or"),
        (
            {"glue_workflow": {"schedule": "rate(1 hour)", "zone": "UTC"}},
            "environments.dev.trigger.glue_workflow.zone",
            "'UTC'",
            "unknown setting",
        ),
        # expressions that are not cron(...) or rate(...)
        ({"glue_workflow": {"schedule": "0 * * * *"}}, "environments.dev.trigger.glue_workflow.schedule", "'0 * * * *'", "use cron("),
        (
            {"glue_workflow": {"schedule": "cron(0 * * * *)"}},
            "environments.dev.trigger.glue_workflow.schedule",
            "'cron(0 * * * *)'",
            "6 fields",
        ),
        (
            {"glue_workflow": {"schedule": "cron(0 * * * * *)"}},
            "environments.dev.trigger.glue_workflow.schedule",
            "'cron(0 * * * * *)'",
            "'?'",
        ),
        (
            {"glue_workflow": {"schedule": "cron(0 x * * ? *)"}},
            "environments.dev.trigger.glue_workflow.schedule",
            "'cron(0 x * * ? *)'",
            "hours field",
        ),
        (
            {"glue_workflow": {"schedule": "rate(1 hours)"}},
            "environments.dev.trigger.glue_workflow.schedule",
            "'rate(1 hours)'",
            "rate(1 hour)",
        ),
        (
            {"glue_workflow": {"schedule": "rate(0 minutes)"}},
            "environments.dev.trigger.glue_workflow.schedule",
            "'rate(0 minutes)'",
            "at least 1",
        ),
        ({"glue_workflow": {"schedule": 60}}, "environments.dev.trigger.glue_workflow.schedule", "60", "must be a string"),
        # time zones
        (
            {"glue_workflow": {"schedule": "rate(1 hour)", "time_zone": "Mars/Olympus"}},
            "environments.dev.trigger.glue_workflow.time_zone",
            "'Mars/Olympus'",
            "IANA",
        ),
        (
            {"glue_workflow": {"schedule": "cron(0 6 * * ? *)", "time_zone": "Europe/Paris"}},
            "environments.dev.trigger.glue_workflow.time_zone",
            "'Europe/Paris'",
            "Glue schedules run in UTC only",
        ),
        # what Glue cannot schedule
        (
            {"glue_workflow": {"schedule": "rate(2 minutes)"}},
            "environments.dev.trigger.glue_workflow.schedule",
            "'rate(2 minutes)'",
            "every 5 minutes",
        ),
        (
            {"glue_workflow": {"schedule": "cron(* * * * ? *)"}},
            "environments.dev.trigger.glue_workflow.schedule",
            "'cron(* * * * ? *)'",
            "every 5 minutes",
        ),
        (
            {"glue_workflow": {"schedule": "rate(7 minutes)"}},
            "environments.dev.trigger.glue_workflow.schedule",
            "'rate(7 minutes)'",
            "no exact Glue cron form",
        ),
    ],
)
def test_a_bad_trigger_is_refused_naming_its_path_and_value(trigger: object, setting: str, value: str, why: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_environment("dev", settings(**GLUE, trigger=trigger))
    assert str(error.value).startswith(f"{setting}={value}: "), str(error.value)
    assert why in str(error.value)


def _scheduled(form: str, schedule: str, time_zone: str = "UTC") -> dict:
    extra = {"availability_zones": ["eu-west-1a", "eu-west-1b"]} if form == "mwaa" else {}
    return settings(forms=[form], trigger={form: {"schedule": schedule, "time_zone": time_zone}}, **extra)


@pytest.mark.parametrize("form", ["step_functions", "mwaa"])
def test_every_form_but_mwaa_serverless_can_start_on_a_schedule_in_a_time_zone_of_its_own(form: str) -> None:
    config = parse_environment("dev", _scheduled(form, "cron(30 6 ? * MON-FRI *)", "Europe/Paris"))
    assert config.schedule_for(form) == Schedule(expression="cron(30 6 ? * MON-FRI *)", time_zone="Europe/Paris")
    assert config.schedule_for("glue_workflow") is None


@pytest.mark.parametrize(
    ("form", "schedule", "why"),
    [
        ("mwaa", "cron(0 0 L * ? *)", "L, W and # have no exact Airflow cron equivalent"),
        ("mwaa", "cron(0 0 * * ? 2027)", "an Airflow cron has no year"),
        ("mwaa_serverless", "cron(0 * * * ? *)", "mwaa_serverless starts one run per upload only in this version"),
        ("mwaa", "rate(7 minutes)", "no exact Airflow cron form"),
        ("step_functions", "cron(0 0 * * *)", "a cron expression has 6 fields"),
    ],
)
def test_a_schedule_a_forms_engine_cannot_run_is_refused_naming_the_setting(form: str, schedule: str, why: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_environment("dev", _scheduled(form, schedule))
    assert str(error.value).startswith(f"environments.dev.trigger.{form}.schedule={schedule!r}: "), str(error.value)
    assert why in str(error.value)


def test_the_app_runs_the_glue_workflow_of_dev_on_an_hourly_schedule_and_every_other_form_per_upload() -> None:
    from pipeline_constructs.schedules import glue_cron
    from tests.cdk_app import pinned_context

    environments = parse_app_config(pinned_context()["pipeline:environments"]).environments
    scheduled = {(env.name, form): schedule for env in environments for form, schedule in env.schedules}
    assert list(scheduled) == [("dev", "glue_workflow")]
    dev = next(env for env in environments if env.name == "dev")
    assert "glue_workflow" in dev.forms
    assert glue_cron(scheduled[("dev", "glue_workflow")]) == "cron(0 * * * ? *)"  # on the hour, UTC


def test_max_minutes_without_load_defaults_to_26_hours_and_is_read() -> None:
    from stacks.config import parse_environment

    base = {"region": "eu-west-1", "forms": ["step_functions"], "alarm_emails": ["oncall@example.com"]}
    assert parse_environment("dev", base).max_minutes_without_load == 1560
    assert parse_environment("dev", {**base, "max_minutes_without_load": 2880}).max_minutes_without_load == 2880


def test_load_target_takes_one_name_or_a_list_loaded_in_parallel() -> None:
    assert parse_environment("dev", settings()).load_targets == ("athena",)
    zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    both = parse_environment("dev", settings(load_target=["athena", "redshift"], availability_zones=zones))
    assert both.load_targets == ("athena", "redshift")
    with pytest.raises(ConfigError, match=r"^environments\.dev\.availability_zones=\[\]: load_target 'redshift' needs 3"):
        parse_environment("dev", settings(load_target=["athena", "redshift"]))
