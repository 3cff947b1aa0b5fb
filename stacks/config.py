"""Typed per-environment configuration, validated before anything is synthesized.

The raw settings come from the `pipeline:environments` context in cdk.json (app.py reads it); every error names the
setting's path and the bad value, so a typo fails at `cdk synth` with a message instead of a half-built template.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pipeline_constructs.schedules import FORM_SCHEDULES, Schedule, ScheduleError, check_expression, check_form_schedule, check_time_zone

KNOWN_ENVIRONMENTS = ("dev", "staging", "prod")
FORMS = ("step_functions", "glue_workflow", "mwaa", "mwaa_serverless")
LOAD_TARGETS = ("athena", "redshift")
REMOVAL_POLICIES = ("retain", "destroy")
GLUE_WORKER_TYPES = ("G.1X", "G.2X", "G.4X", "G.8X")
# G.025X exists only for Glue streaming jobs; the clean job is a batch Glue 5.0 job.
GLUE_STREAMING_ONLY_WORKER_TYPES = ("G.025X",)
# A cap of this pipeline, not an AWS quota: 100 G.8X workers are 800 DPUs (about $350 an hour at list price), far
# beyond what one upload needs, so a larger number is taken for a typo. Raise it here if a dataset really needs more.
MAX_GLUE_WORKERS = 100
# Ten years, CloudWatch Logs' longest finite retention: landing and quarantine objects expire within it.
MAX_DATA_RETENTION_DAYS = 3653
# Zone names are the region followed by one letter. The largest region, us-east-1, has six zones (a to f); zone letters
# are mapped per account, so a name within a to f may still be absent from one account, but a later letter never exists.
AZ_LETTERS = "abcdef"
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)

_ACCOUNT = re.compile(r"^\d{12}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@cache
def known_regions() -> frozenset[str]:
    """Every region of every partition in botocore's partition data (offline; follows the installed boto3)."""
    from botocore.loaders import Loader

    regions: set[str] = set()
    for partition in Loader().load_data("partitions")["partitions"]:
        pattern = re.compile(partition["regionRegex"])
        regions.update(name for name in partition["regions"] if pattern.match(name))
    return frozenset(regions)


class ConfigError(ValueError):
    """A setting in the environment configuration is missing or invalid; the message names it and its value."""


# --- MWAA settings (the `mwaa` form) -----------------------------------------------------------------------------
MWAA_AIRFLOW_VERSIONS = ("3.3.1", "3.2.1")
MWAA_ENVIRONMENT_CLASSES = ("mw1.micro", "mw1.small", "mw1.medium", "mw1.large", "mw1.xlarge", "mw1.2xlarge")
MWAA_WEBSERVER_ACCESS = ("private", "public")
MWAA_KEYS = (
    "mwaa_airflow_version",
    "mwaa_environment_class",
    "mwaa_min_workers",
    "mwaa_max_workers",
    "mwaa_schedulers",
    "mwaa_webserver_access",
    "mwaa_max_active_runs",
    "mwaa_task_retries",
)


@dataclass(frozen=True)
class MwaaSettings:
    """Sizing and access of the MWAA environment (used when `forms` holds 'mwaa')."""

    airflow_version: str = "3.3.1"
    environment_class: str = "mw1.small"
    min_workers: int = 1
    max_workers: int = 2
    schedulers: int | None = None
    webserver_access: str = "private"
    max_active_runs: int = 4
    task_retries: int = 3


def parse_mwaa_settings(prefix: str, raw: Mapping[str, Any], *, environment: str) -> MwaaSettings:
    """The mwaa_* settings of one environment; errors name the setting's path and value."""
    default = MwaaSettings()
    version = raw.get("mwaa_airflow_version", default.airflow_version)
    if version not in MWAA_AIRFLOW_VERSIONS:
        raise _fail(f"{prefix}.mwaa_airflow_version", version, f"use one of {', '.join(MWAA_AIRFLOW_VERSIONS)} (Airflow 3 on MWAA)")
    klass = raw.get("mwaa_environment_class", default.environment_class)
    if klass not in MWAA_ENVIRONMENT_CLASSES:
        raise _fail(f"{prefix}.mwaa_environment_class", klass, f"use one of {', '.join(MWAA_ENVIRONMENT_CLASSES)}")
    micro = klass == "mw1.micro"
    min_workers = _positive_int(f"{prefix}.mwaa_min_workers", raw.get("mwaa_min_workers", default.min_workers), maximum=25)
    max_workers = _positive_int(f"{prefix}.mwaa_max_workers", raw.get("mwaa_max_workers", 1 if micro else default.max_workers), maximum=25)
    if micro and max_workers != 1:
        raise _fail(f"{prefix}.mwaa_max_workers", max_workers, "mw1.micro runs exactly 1 worker; choose mw1.small or larger for more")
    if min_workers > max_workers:
        raise _fail(f"{prefix}.mwaa_min_workers", min_workers, f"must not exceed mwaa_max_workers ({max_workers})")
    schedulers = raw.get("mwaa_schedulers", default.schedulers)
    if schedulers is not None:
        low, high = (1, 1) if micro else (2, 5)
        schedulers = _positive_int(f"{prefix}.mwaa_schedulers", schedulers, minimum=low, maximum=high)
    access = raw.get("mwaa_webserver_access", default.webserver_access)
    if access not in MWAA_WEBSERVER_ACCESS:
        raise _fail(f"{prefix}.mwaa_webserver_access", access, f"use one of {', '.join(MWAA_WEBSERVER_ACCESS)}")
    if access == "public" and environment == "prod":
        raise _fail(f"{prefix}.mwaa_webserver_access", access, "prod keeps the Airflow UI and API private (reachable from the VPC only)")
    runs = _positive_int(f"{prefix}.mwaa_max_active_runs", raw.get("mwaa_max_active_runs", default.max_active_runs), maximum=100)
    retries = _positive_int(f"{prefix}.mwaa_task_retries", raw.get("mwaa_task_retries", default.task_retries), minimum=0, maximum=10)
    return MwaaSettings(
        airflow_version=version,
        environment_class=klass,
        min_workers=min_workers,
        max_workers=max_workers,
        schedulers=schedulers,
        webserver_access=access,
        max_active_runs=runs,
        task_retries=retries,
    )


# --- end of MWAA settings ----------------------------------------------------------------------------------------


# --- how runs start (`trigger`) ------------------------------------------------------------------------------------
UPLOAD_TRIGGER = "upload"
SCHEDULED_FORMS = tuple(FORM_SCHEDULES)
"""The forms that can start on a schedule, each checked by what its engine accepts (`schedules.FORM_SCHEDULES`)."""
SCHEDULE_KEYS = ("schedule", "time_zone")


def parse_triggers(prefix: str, raw: Any, forms: tuple[str, ...]) -> tuple[tuple[str, Schedule], ...]:
    """`trigger`: 'upload' (every form starts one run per upload, the default), or a mapping of form name to 'upload'
    or {schedule: cron(...) | rate(...), time_zone: IANA name (default UTC)}. Returns (form, Schedule) for the
    scheduled forms; errors name the setting's path and value."""
    path = f"{prefix}.trigger"
    if raw == UPLOAD_TRIGGER:
        return ()
    if not isinstance(raw, Mapping):
        raise _fail(path, raw, f"use '{UPLOAD_TRIGGER}' or a mapping of form to '{UPLOAD_TRIGGER}' or {{schedule, time_zone}}")
    schedules: list[tuple[str, Schedule]] = []
    for form, setting in raw.items():
        form_path = f"{path}.{form}"
        if form not in FORMS:
            raise _fail(form_path, setting, f"unknown orchestration form; use one of {', '.join(FORMS)}")
        if form not in forms:
            raise _fail(form_path, setting, f"the environment does not enable {form} (forms: {list(forms)})")
        if setting == UPLOAD_TRIGGER:
            continue
        if not isinstance(setting, Mapping) or "schedule" not in setting:
            raise _fail(form_path, setting, f"use '{UPLOAD_TRIGGER}' or {{schedule: cron(...) | rate(...), time_zone: UTC}}")
        unknown = sorted(set(setting) - set(SCHEDULE_KEYS))
        if unknown:
            raise _fail(f"{form_path}.{unknown[0]}", setting[unknown[0]], f"unknown setting; use {', '.join(SCHEDULE_KEYS)}")
        expression, zone = setting["schedule"], setting.get("time_zone", "UTC")
        try:
            check_expression(expression)
        except ScheduleError as error:
            raise _fail(f"{form_path}.schedule", expression, str(error)) from None
        try:
            check_time_zone(zone)
        except ScheduleError as error:
            raise _fail(f"{form_path}.time_zone", zone, str(error)) from None
        if form not in SCHEDULED_FORMS:
            raise _fail(
                f"{form_path}.schedule",
                expression,
                f"{form} starts one run per upload only in this version (its scheduled runs cannot claim their uploads in the "
                f"ledger yet): set trigger.{form} to '{UPLOAD_TRIGGER}' or remove it, or schedule one of {', '.join(SCHEDULED_FORMS)}",
            )
        schedule = Schedule(expression=expression, time_zone=zone)
        try:
            check_form_schedule(form, schedule)  # what the form's engine accepts (Glue: cron in UTC, at most every 5 minutes)
        except ScheduleError as error:
            where = "time_zone" if "time_zone" in str(error) else "schedule"
            raise _fail(f"{form_path}.{where}", zone if where == "time_zone" else expression, str(error)) from None
        schedules.append((form, schedule))
    return tuple(schedules)


def _load_targets(path: str, value: Any) -> tuple[str, ...]:
    """`load_target`: one name, or a list of distinct names loaded in parallel."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise _fail(path, value, f"give one of {', '.join(LOAD_TARGETS)}, or a list of them, e.g. [athena, redshift]")
    for i, name in enumerate(names):
        if name not in LOAD_TARGETS:
            where = path if isinstance(value, str) else f"{path}[{i}]"
            raise _fail(where, name, f"use one of {', '.join(LOAD_TARGETS)}")
    if len(set(names)) != len(names):
        raise _fail(path, names, "lists a target twice")
    return tuple(names)


# --- end of trigger settings ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvironmentConfig:
    """Everything one deployment environment (one `cdk.Stage`) may vary."""

    name: str
    region: str
    account: str | None
    forms: tuple[str, ...]
    load_targets: tuple[str, ...]
    """`load_target`: one name, or a list (loaded in parallel after the clean job)."""
    alarm_emails: tuple[str, ...]
    glue_worker_type: str
    glue_worker_count: int
    log_retention_days: int
    removal: str
    data_retention_days: int = 365
    object_lock_days: int = 0
    ledger_retention_days: int = 400
    reconcile_every_hours: int = 1
    reconcile_window_hours: int = 24
    max_minutes_without_load: int = 1560
    athena_bytes_scanned_cutoff: int = 10 * 1024**3
    max_quarantine_ratio: float = 0.05
    availability_zones: tuple[str, ...] = ()
    redshift_base_capacity: int = 8
    nat_gateways: int = 0
    workflow_batch_size: int = 10
    workflow_batch_window_seconds: int = 300
    mwaa: MwaaSettings = field(default_factory=MwaaSettings)
    schedules: tuple[tuple[str, Schedule], ...] = ()
    """(form, Schedule) of the forms that start on a schedule (`trigger`); every other form starts per upload."""

    def schedule_for(self, form: str) -> Schedule | None:
        """The form's schedule, or None when it starts one run per upload."""
        return dict(self.schedules).get(form)

    @property
    def destroy_on_removal(self) -> bool:
        """True when stateful resources are deleted with the stack (dev only, behind the allow-destroy flag)."""
        return self.removal == "destroy"


@dataclass(frozen=True)
class AppConfig:
    environments: tuple[EnvironmentConfig, ...] = field(default_factory=tuple)


_DEFAULTS = EnvironmentConfig(
    name="",
    region="",
    account=None,
    forms=(),
    load_targets=("athena",),
    alarm_emails=(),
    glue_worker_type="G.1X",
    glue_worker_count=2,
    log_retention_days=30,
    removal="retain",
)
_KEYS = {
    "region",
    "account",
    "forms",
    "load_target",
    "alarm_emails",
    "glue_worker_type",
    "glue_worker_count",
    "log_retention_days",
    "removal",
    "data_retention_days",
    "object_lock_days",
    "ledger_retention_days",
    "reconcile_every_hours",
    "reconcile_window_hours",
    "max_minutes_without_load",
    "athena_bytes_scanned_cutoff",
    "max_quarantine_ratio",
    "availability_zones",
    "redshift_base_capacity",
    "nat_gateways",
    "workflow_batch_size",
    "workflow_batch_window_seconds",
    "trigger",
} | set(MWAA_KEYS)


def _fail(path: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{path}={value!r}: {why}")


def _positive_int(path: str, value: Any, *, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(path, value, f"must be an integer >= {minimum}")
    if maximum is not None and value > maximum:
        raise _fail(path, value, f"must be an integer <= {maximum}")
    return value


def _string_list(path: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail(path, value, "must be a list of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _fail(f"{path}[{i}]", item, "must be a string")
    return tuple(value)


def parse_environment(
    name: str,
    raw: Mapping[str, Any],
    *,
    default_account: str | None = None,
    default_region: str | None = None,
    allow_destroy: bool = False,
) -> EnvironmentConfig:
    """Validate one environment's raw settings and return its typed config.

    `default_account` / `default_region` (CDK_DEFAULT_ACCOUNT / CDK_DEFAULT_REGION) fill in what the settings omit;
    `allow_destroy` is the `pipeline:allowDestroy` context flag that `removal: destroy` needs.
    """
    prefix = f"environments.{name}"
    if name not in KNOWN_ENVIRONMENTS:
        raise _fail("environment", name, f"unknown environment; use one of {', '.join(KNOWN_ENVIRONMENTS)}")
    if not isinstance(raw, Mapping):
        raise _fail(prefix, raw, "must be a mapping of settings")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise _fail(f"{prefix}.{unknown[0]}", raw[unknown[0]], f"unknown setting; known settings are {', '.join(sorted(_KEYS))}")

    account = raw.get("account", default_account)
    if account is not None and (not isinstance(account, str) or not _ACCOUNT.match(account)):
        raise _fail(f"{prefix}.account", account, "must be a 12-digit AWS account id (or omit it to use CDK_DEFAULT_ACCOUNT)")

    region = raw.get("region", default_region)
    if not isinstance(region, str):
        raise _fail(f"{prefix}.region", region, "must be an AWS region such as eu-west-1 (or set CDK_DEFAULT_REGION)")
    if region not in known_regions():
        import botocore

        raise _fail(
            f"{prefix}.region",
            region,
            f"no such region in botocore {botocore.__version__}'s partition data; check the name (a region newer than "
            f"this botocore needs a newer boto3)",
        )

    forms = _string_list(f"{prefix}.forms", raw.get("forms", ["step_functions"]))
    if not forms:
        raise _fail(f"{prefix}.forms", list(forms), f"enable at least one of {', '.join(FORMS)}")
    for i, form in enumerate(forms):
        if form not in FORMS:
            raise _fail(f"{prefix}.forms[{i}]", form, f"unknown orchestration form; use one of {', '.join(FORMS)}")
    if len(set(forms)) != len(forms):
        raise _fail(f"{prefix}.forms", list(forms), "lists a form twice")

    load_targets = _load_targets(f"{prefix}.load_target", raw.get("load_target", list(_DEFAULTS.load_targets)))

    emails = _string_list(f"{prefix}.alarm_emails", raw.get("alarm_emails", []))
    if not emails:
        raise _fail(f"{prefix}.alarm_emails", list(emails), "give at least one address so failures reach a person")
    seen: dict[str, int] = {}
    for i, email in enumerate(emails):
        if not _EMAIL.match(email.strip()):
            raise _fail(f"{prefix}.alarm_emails[{i}]", email, "is not an e-mail address")
        # SNS would get two subscriptions for one mailbox (and CDK refuses two with one id): compare case-insensitively.
        folded = email.strip().lower()
        if folded in seen:
            raise _fail(f"{prefix}.alarm_emails[{i}]", email, f"lists the address of alarm_emails[{seen[folded]}] twice")
        seen[folded] = i

    worker_type = raw.get("glue_worker_type", _DEFAULTS.glue_worker_type)
    if worker_type in GLUE_STREAMING_ONLY_WORKER_TYPES:
        raise _fail(
            f"{prefix}.glue_worker_type",
            worker_type,
            f"is for Glue streaming jobs only; the clean job is a batch Glue 5.0 job: use one of {', '.join(GLUE_WORKER_TYPES)}",
        )
    if worker_type not in GLUE_WORKER_TYPES:
        raise _fail(f"{prefix}.glue_worker_type", worker_type, f"use one of {', '.join(GLUE_WORKER_TYPES)}")
    # Glue Spark jobs need at least 2 workers (one driver, one executor).
    workers = _positive_int(f"{prefix}.glue_worker_count", raw.get("glue_worker_count", _DEFAULTS.glue_worker_count), minimum=2)
    if workers > MAX_GLUE_WORKERS:
        raise _fail(
            f"{prefix}.glue_worker_count",
            workers,
            f"must be an integer <= {MAX_GLUE_WORKERS} (this pipeline's cap against typos, not an AWS quota: "
            f"raise MAX_GLUE_WORKERS in stacks/config.py if a dataset needs more)",
        )

    retention = _positive_int(f"{prefix}.log_retention_days", raw.get("log_retention_days", _DEFAULTS.log_retention_days))
    if retention not in LOG_RETENTION_DAYS:
        raise _fail(f"{prefix}.log_retention_days", retention, f"CloudWatch Logs accepts only {LOG_RETENTION_DAYS}")
    data_retention = _positive_int(f"{prefix}.data_retention_days", raw.get("data_retention_days", _DEFAULTS.data_retention_days))
    if data_retention > MAX_DATA_RETENTION_DAYS:
        raise _fail(
            f"{prefix}.data_retention_days",
            data_retention,
            f"must be an integer <= {MAX_DATA_RETENTION_DAYS} (ten years); landing and quarantine objects are not kept forever",
        )
    object_lock = raw.get("object_lock_days", _DEFAULTS.object_lock_days)
    if object_lock != 0:
        object_lock = _positive_int(f"{prefix}.object_lock_days", object_lock)
        if object_lock > data_retention:
            raise _fail(
                f"{prefix}.object_lock_days",
                object_lock,
                f"must be 0 (no lock) or at most data_retention_days ({data_retention}): locked versions would outlive the expiry",
            )
    ledger_retention = _positive_int(
        f"{prefix}.ledger_retention_days",
        raw.get("ledger_retention_days", _DEFAULTS.ledger_retention_days),
        maximum=MAX_DATA_RETENTION_DAYS,
    )
    reconcile_every = _positive_int(
        f"{prefix}.reconcile_every_hours", raw.get("reconcile_every_hours", _DEFAULTS.reconcile_every_hours), maximum=24
    )
    reconcile_window = _positive_int(
        f"{prefix}.reconcile_window_hours", raw.get("reconcile_window_hours", _DEFAULTS.reconcile_window_hours), maximum=168
    )
    if reconcile_window < reconcile_every:
        raise _fail(
            f"{prefix}.reconcile_window_hours",
            reconcile_window,
            f"must cover at least reconcile_every_hours ({reconcile_every}), or uploads between two checks go unchecked",
        )
    without_load = _positive_int(
        f"{prefix}.max_minutes_without_load", raw.get("max_minutes_without_load", _DEFAULTS.max_minutes_without_load)
    )
    if without_load < reconcile_every * 60:
        raise _fail(
            f"{prefix}.max_minutes_without_load",
            without_load,
            f"must be at least reconcile_every_hours x 60 ({reconcile_every * 60}): the reconcile check measures the minutes "
            "since the last load once per run, so a shorter limit cannot be told apart from the time between two checks",
        )
    if without_load >= ledger_retention * 1440:
        raise _fail(
            f"{prefix}.max_minutes_without_load",
            without_load,
            f"must be below ledger_retention_days x 1440 ({ledger_retention * 1440}): loaded records expire after "
            "ledger_retention_days, and with none left the check has no last load to measure from",
        )

    removal = raw.get("removal", _DEFAULTS.removal)
    if removal not in REMOVAL_POLICIES:
        raise _fail(f"{prefix}.removal", removal, f"use one of {', '.join(REMOVAL_POLICIES)}")
    if removal == "destroy" and name == "prod":
        raise _fail(f"{prefix}.removal", removal, "prod never deletes its data with the stack; use 'retain'")
    if removal == "destroy" and object_lock:
        raise _fail(f"{prefix}.object_lock_days", object_lock, "needs removal: retain (locked versions cannot be deleted with the stack)")

    cutoff = _positive_int(
        f"{prefix}.athena_bytes_scanned_cutoff",
        raw.get("athena_bytes_scanned_cutoff", _DEFAULTS.athena_bytes_scanned_cutoff),
        minimum=10 * 1024**2,  # Athena's own minimum for a workgroup cutoff is 10 MB.
    )
    ratio = raw.get("max_quarantine_ratio", _DEFAULTS.max_quarantine_ratio)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise _fail(f"{prefix}.max_quarantine_ratio", ratio, "must be a number between 0 and 1")

    azs = _string_list(f"{prefix}.availability_zones", raw.get("availability_zones", []))
    for i, az in enumerate(azs):
        if az[:-1] != region or az[-1:] not in AZ_LETTERS:
            raise _fail(
                f"{prefix}.availability_zones[{i}]",
                az,
                f"must be an availability zone of {region}: the region followed by one letter a to f, e.g. {region}a",
            )
    if len(set(azs)) != len(azs):
        raise _fail(f"{prefix}.availability_zones", list(azs), "lists a zone twice")
    if "redshift" in load_targets and len(azs) < 3:
        # Redshift Serverless with enhanced VPC routing needs subnets in 3 AZs; synth makes no AZ lookups, so name them.
        raise _fail(
            f"{prefix}.availability_zones",
            list(azs),
            f"load_target 'redshift' needs 3 availability zones of {region} (Redshift Serverless with enhanced VPC routing), e.g. "
            f"[{region}a, {region}b, {region}c]",
        )

    base_capacity = _positive_int(
        f"{prefix}.redshift_base_capacity", raw.get("redshift_base_capacity", _DEFAULTS.redshift_base_capacity), minimum=4, maximum=1024
    )
    if base_capacity % 8 and base_capacity != 4:
        raise _fail(f"{prefix}.redshift_base_capacity", base_capacity, "Redshift Serverless takes 4 or a multiple of 8 RPUs")
    nat = _positive_int(f"{prefix}.nat_gateways", raw.get("nat_gateways", _DEFAULTS.nat_gateways), minimum=0)
    # One NAT gateway per zone at most; a network without named zones gets the stack's two (synth makes no lookups).
    zone_count = len(azs) if azs else 2
    if nat > zone_count:
        raise _fail(
            f"{prefix}.nat_gateways",
            nat,
            f"at most one per availability zone: {zone_count} "
            + (f"in availability_zones {list(azs)}" if azs else "(no availability_zones named, so the network has 2)"),
        )
    batch_size = _positive_int(f"{prefix}.workflow_batch_size", raw.get("workflow_batch_size", _DEFAULTS.workflow_batch_size), maximum=100)
    batch_window = _positive_int(
        f"{prefix}.workflow_batch_window_seconds",
        raw.get("workflow_batch_window_seconds", _DEFAULTS.workflow_batch_window_seconds),
        maximum=900,
    )

    mwaa = parse_mwaa_settings(prefix, raw, environment=name)
    schedules = parse_triggers(prefix, raw.get("trigger", UPLOAD_TRIGGER), forms)

    if removal == "destroy" and not allow_destroy:
        raise _fail(
            f"{prefix}.removal",
            removal,
            "deleting buckets and keys with the stack needs the context flag: cdk synth -c pipeline:allowDestroy=true",
        )

    return EnvironmentConfig(
        name=name,
        region=region,
        account=account,
        forms=forms,
        load_targets=load_targets,
        alarm_emails=tuple(e.strip() for e in emails),
        glue_worker_type=worker_type,
        glue_worker_count=workers,
        log_retention_days=retention,
        removal=removal,
        data_retention_days=data_retention,
        object_lock_days=object_lock,
        ledger_retention_days=ledger_retention,
        reconcile_every_hours=reconcile_every,
        reconcile_window_hours=reconcile_window,
        max_minutes_without_load=without_load,
        athena_bytes_scanned_cutoff=cutoff,
        max_quarantine_ratio=float(ratio),
        availability_zones=azs,
        redshift_base_capacity=base_capacity,
        nat_gateways=nat,
        workflow_batch_size=batch_size,
        workflow_batch_window_seconds=batch_window,
        mwaa=mwaa,
        schedules=schedules,
    )


def parse_app_config(
    raw: Any,
    *,
    only: str | None = None,
    default_account: str | None = None,
    default_region: str | None = None,
    allow_destroy: bool = False,
) -> AppConfig:
    """Validate the whole `pipeline:environments` mapping; `only` keeps one environment (and must name one)."""
    if not isinstance(raw, Mapping) or not raw:
        raise _fail("pipeline:environments", raw, "must be a non-empty mapping of environment name to settings")
    if only is not None and only not in raw:
        raise _fail("pipeline:env", only, f"no such environment; configured: {', '.join(raw)}")
    # Every environment is validated, whichever one is synthesized: a broken prod fails a dev-only synth too.
    envs = tuple(
        parse_environment(
            name,
            settings,
            default_account=default_account,
            default_region=default_region,
            allow_destroy=allow_destroy,
        )
        for name, settings in raw.items()
    )
    return AppConfig(environments=tuple(env for env in envs if only is None or env.name == only))


def parse_bool_flag(name: str, value: Any) -> bool:
    """Context values given with `-c` arrive as strings; accept true/false only."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _fail(name, value, "must be true or false")
