"""Typed per-environment configuration, validated before anything is synthesized.

The raw settings come from the `pipeline:environments` context in cdk.json (app.py reads it); every error names the
setting's path and the bad value, so a typo fails at `cdk synth` with a message instead of a half-built template.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KNOWN_ENVIRONMENTS = ("dev", "staging", "prod")
FORMS = ("step_functions", "glue_workflow", "mwaa", "mwaa_serverless")
LOAD_TARGETS = ("athena", "redshift")
REMOVAL_POLICIES = ("retain", "destroy")
GLUE_WORKER_TYPES = ("G.1X", "G.2X", "G.4X", "G.8X", "G.025X")
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)

_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_AZ = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$")


class ConfigError(ValueError):
    """A setting in the environment configuration is missing or invalid; the message names it and its value."""


@dataclass(frozen=True)
class EnvironmentConfig:
    """Everything one deployment environment (one `cdk.Stage`) may vary."""

    name: str
    region: str
    account: str | None
    forms: tuple[str, ...]
    load_target: str
    alarm_emails: tuple[str, ...]
    glue_worker_type: str
    glue_worker_count: int
    log_retention_days: int
    removal: str
    data_retention_days: int = 365
    athena_bytes_scanned_cutoff: int = 10 * 1024**3
    max_quarantine_ratio: float = 0.05
    availability_zones: tuple[str, ...] = ()
    redshift_base_capacity: int = 8
    nat_gateways: int = 0
    workflow_batch_size: int = 10
    workflow_batch_window_seconds: int = 300

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
    load_target="athena",
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
    "athena_bytes_scanned_cutoff",
    "max_quarantine_ratio",
    "availability_zones",
    "redshift_base_capacity",
    "nat_gateways",
    "workflow_batch_size",
    "workflow_batch_window_seconds",
}


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
    if not isinstance(region, str) or not _REGION.match(region):
        raise _fail(f"{prefix}.region", region, "must be an AWS region such as eu-west-1 (or set CDK_DEFAULT_REGION)")

    forms = _string_list(f"{prefix}.forms", raw.get("forms", ["step_functions"]))
    if not forms:
        raise _fail(f"{prefix}.forms", list(forms), f"enable at least one of {', '.join(FORMS)}")
    for i, form in enumerate(forms):
        if form not in FORMS:
            raise _fail(f"{prefix}.forms[{i}]", form, f"unknown orchestration form; use one of {', '.join(FORMS)}")
    if len(set(forms)) != len(forms):
        raise _fail(f"{prefix}.forms", list(forms), "lists a form twice")

    load_target = raw.get("load_target", _DEFAULTS.load_target)
    if load_target not in LOAD_TARGETS:
        raise _fail(f"{prefix}.load_target", load_target, f"use one of {', '.join(LOAD_TARGETS)}")

    emails = _string_list(f"{prefix}.alarm_emails", raw.get("alarm_emails", []))
    if not emails:
        raise _fail(f"{prefix}.alarm_emails", list(emails), "give at least one address so failures reach a person")
    for i, email in enumerate(emails):
        if not _EMAIL.match(email.strip()):
            raise _fail(f"{prefix}.alarm_emails[{i}]", email, "is not an e-mail address")

    worker_type = raw.get("glue_worker_type", _DEFAULTS.glue_worker_type)
    if worker_type not in GLUE_WORKER_TYPES:
        raise _fail(f"{prefix}.glue_worker_type", worker_type, f"use one of {', '.join(GLUE_WORKER_TYPES)}")
    # Glue Spark jobs need at least 2 workers (one driver, one executor).
    workers = _positive_int(f"{prefix}.glue_worker_count", raw.get("glue_worker_count", _DEFAULTS.glue_worker_count), minimum=2)

    retention = _positive_int(f"{prefix}.log_retention_days", raw.get("log_retention_days", _DEFAULTS.log_retention_days))
    if retention not in LOG_RETENTION_DAYS:
        raise _fail(f"{prefix}.log_retention_days", retention, f"CloudWatch Logs accepts only {LOG_RETENTION_DAYS}")
    data_retention = _positive_int(f"{prefix}.data_retention_days", raw.get("data_retention_days", _DEFAULTS.data_retention_days))

    removal = raw.get("removal", _DEFAULTS.removal)
    if removal not in REMOVAL_POLICIES:
        raise _fail(f"{prefix}.removal", removal, f"use one of {', '.join(REMOVAL_POLICIES)}")
    if removal == "destroy" and name == "prod":
        raise _fail(f"{prefix}.removal", removal, "prod never deletes its data with the stack; use 'retain'")

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
        if not _AZ.match(az) or not az.startswith(region):
            raise _fail(f"{prefix}.availability_zones[{i}]", az, f"must be an availability zone of {region}, e.g. {region}a")
    if len(set(azs)) != len(azs):
        raise _fail(f"{prefix}.availability_zones", list(azs), "lists a zone twice")
    if load_target == "redshift" and len(azs) < 3:
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
    batch_size = _positive_int(f"{prefix}.workflow_batch_size", raw.get("workflow_batch_size", _DEFAULTS.workflow_batch_size), maximum=100)
    batch_window = _positive_int(
        f"{prefix}.workflow_batch_window_seconds",
        raw.get("workflow_batch_window_seconds", _DEFAULTS.workflow_batch_window_seconds),
        maximum=900,
    )

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
        load_target=load_target,
        alarm_emails=tuple(e.strip() for e in emails),
        glue_worker_type=worker_type,
        glue_worker_count=workers,
        log_retention_days=retention,
        removal=removal,
        data_retention_days=data_retention,
        athena_bytes_scanned_cutoff=cutoff,
        max_quarantine_ratio=float(ratio),
        availability_zones=azs,
        redshift_base_capacity=base_capacity,
        nat_gateways=nat,
        workflow_batch_size=batch_size,
        workflow_batch_window_seconds=batch_window,
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
    envs = tuple(
        parse_environment(
            name,
            settings,
            default_account=default_account,
            default_region=default_region,
            allow_destroy=allow_destroy,
        )
        for name, settings in raw.items()
        if only is None or name == only
    )
    return AppConfig(environments=envs)


def parse_bool_flag(name: str, value: Any) -> bool:
    """Context values given with `-c` arrive as strings; accept true/false only."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _fail(name, value, "must be true or false")
