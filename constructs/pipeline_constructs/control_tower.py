"""AWS Control Tower's proactive controls on every synth: the controls' cfn-guard rules and the cfn-guard binary that
cdklabs publishes with its validator (`cdklabs.cdk-validator-cfnguard`), with the reviewed exceptions of
a reviewed-exceptions file (this repository's app keeps `control_tower_exceptions.yaml`). Needs the `[controltower]`
extra. In another app: `Validations.of(app).add_plugins(ControlTowerValidator(exceptions=load_exceptions(path)))`.

Organizations that enforce the controls as CloudFormation hooks refuse a failing template at deploy; running the same
rules at synth shows the failure first. A finding is either fixed in the construct that owns the resource or accepted
in the exceptions file: control, the resources as a pattern over '<stack path>/<logical id>', and the reason. A
finding no entry accepts fails synth, naming the control and the resource; an entry that accepts no finding is stale
and is reported by `stale_exceptions` (the tests fail on it).
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import jsii
import yaml

EXCEPTIONS_FILE = "control_tower_exceptions.yaml"


@dataclass(frozen=True)
class ControlException:
    control: str
    """The control's rule name as the validator reports it, e.g. 'ct-sqs-pr-2'."""
    resource: str
    """A regular expression matched in full against '<template file>/<logical id>'."""
    reason: str


@dataclass(frozen=True)
class ControlFinding:
    control: str
    resource: str
    """'<template file>/<logical id>'."""
    description: str


def load_exceptions(path: Path) -> list[ControlException]:
    """The reviewed exceptions; ValueError naming the entry for a missing field or a bad pattern."""
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    out = []
    for number, entry in enumerate(entries, start=1):
        missing = [name for name in ("control", "resource", "reason") if not str(entry.get(name, "")).strip()]
        if missing:
            raise ValueError(f"{path.name} entry {number}: missing {', '.join(missing)}")
        try:
            re.compile(entry["resource"])
        except re.error as error:
            raise ValueError(f"{path.name} entry {number}: resource={entry['resource']!r} is not a regular expression ({error})") from None
        out.append(ControlException(entry["control"].lower(), entry["resource"], " ".join(str(entry["reason"]).split())))
    return out


def guard_paths() -> tuple[Path, Path]:
    """(the cfn-guard binary, the Control Tower rules folder) bundled with cdklabs' validator package."""
    import tarfile

    try:
        import cdklabs.cdk_validator_cfnguard as package
    except ImportError:
        raise ImportError(
            "the Control Tower controls need cdklabs' rules and cfn-guard: pip install 'retail-pipeline-constructs[controltower]'"
        ) from None

    bundle = next((Path(package.__file__).parent / "_jsii").glob("*.tgz"))
    target = Path(tempfile.gettempdir()) / f"control-tower-{bundle.stem}"
    machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[platform.machine().lower()]
    system = {"Linux": "ubuntu", "Darwin": "macos"}[platform.system()]
    binary = target / "package" / "bin" / system / machine / "cfn-guard"
    if not binary.exists():
        with tarfile.open(bundle) as archive:
            archive.extractall(target, filter="data")
        binary.chmod(0o755)
    return binary, target / "package" / "rules" / "control-tower" / "cfn-guard"


_CONTROL = re.compile(r"\[(CT\.[A-Z0-9]+\.PR\.[0-9]+)\]")
_RESOURCE = re.compile(r"/Resources/([A-Za-z0-9]+)")


def run_controls(template: Path) -> list[ControlFinding]:
    """Every control a template fails, one finding per (control, resource), from cfn-guard's own JSON report.

    cdklabs' plugin parses cfn-guard's report itself and fails on this project's templates (a check without a
    resource path makes it raise); reading the control id from each failed rule's message and the resources from
    its paths works on every report cfn-guard 3 writes."""
    binary, rules = guard_paths()
    answer = subprocess.run(
        [str(binary), "validate", "--data", str(template), "--rules", str(rules), "--output-format", "json", "--show-summary", "none"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if answer.returncode not in (0, 19):  # 19: some rule failed
        raise RuntimeError(f"cfn-guard exited {answer.returncode} on {template.name}: {answer.stderr.strip()[:500]}")
    findings: dict[tuple[str, str], ControlFinding] = {}
    decoder, text, index = json.JSONDecoder(), answer.stdout, 0
    while index < len(text):
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            break
        document, index = decoder.raw_decode(text, index)
        for failed in document.get("not_compliant", []):
            dumped = json.dumps(failed)
            controls = sorted(set(_CONTROL.findall(dumped)))
            description = failed.get("Rule", {}).get("name", "")
            for control in controls:
                for resource in sorted(set(_RESOURCE.findall(dumped))):
                    key = (control.lower(), f"{template.name}/{resource}")
                    findings.setdefault(key, ControlFinding(key[0], key[1], description))
    return list(findings.values())


@jsii.implements(cdk.IPolicyValidationPlugin)
class ControlTowerValidator:
    """A validation plugin: the Control Tower proactive controls (cfn-guard rules), minus the reviewed exceptions."""

    def __init__(self, exceptions: list[ControlException] | None = None) -> None:
        """
        :param exceptions: the reviewed exceptions (`load_exceptions(path)`). Default: none, every finding fails synth.
        """
        self.exceptions = list(exceptions or [])
        self.findings: list[ControlFinding] = []
        """Every finding of the last synth, accepted or not."""

    @property
    def name(self) -> str:
        return "control-tower-proactive-controls"

    @property
    def rule_ids(self) -> list[str] | None:
        return None

    @property
    def version(self) -> str | None:
        return None

    def accepted(self, finding: ControlFinding) -> ControlException | None:
        return next((e for e in self.exceptions if e.control == finding.control and re.fullmatch(e.resource, finding.resource)), None)

    def validate(self, context: cdk.IPolicyValidationContext) -> cdk.PolicyValidationPluginReport:
        self.findings = [finding for path in context.template_paths for finding in run_controls(Path(path))]
        violations = []
        for finding in self.findings:
            if self.accepted(finding) is not None:
                continue
            template, _, logical_id = finding.resource.rpartition("/")
            violations.append(
                cdk.PolicyViolation(
                    rule_name=finding.control.upper(),
                    description=f"{finding.control.upper()} ({finding.description}) fails on {logical_id}: fix it in the construct "
                    f"that owns the resource, or accept it with a reason in the reviewed exceptions ({EXCEPTIONS_FILE})",
                    violating_resources=[
                        cdk.PolicyViolatingResource(
                            resource_logical_id=logical_id,
                            template_path=next(p for p in context.template_paths if Path(p).name == template),
                            locations=[f"/Resources/{logical_id}"],
                        )
                    ],
                )
            )
        return cdk.PolicyValidationPluginReport(success=not violations, violations=violations)

    def stale_exceptions(self) -> list[ControlException]:
        """Entries that accepted no finding of the last synth."""
        return [
            e for e in self.exceptions if not any(e.control == f.control and re.fullmatch(e.resource, f.resource) for f in self.findings)
        ]
