"""checkov over every synthesized template: zero findings besides the reviewed ones in tests/checkov_exceptions.yaml.

checkov lives in its own virtualenv (`make checkov` creates .venv-checkov; `make test` depends on it), because
installing it beside the project moves boto3 and packaging. It runs offline (`--skip-download`) over the cloud
assembly the session fixture already synthesized (dev, staging, prod).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cdk_app import ROOT, SynthesizedApp

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
EXCEPTIONS_FILE = ROOT / "tests" / "checkov_exceptions.yaml"


@dataclass(frozen=True)
class Finding:
    check: str
    resource: str
    template: str
    title: str

    def __str__(self) -> str:
        return f"{self.check} {self.resource} in {self.template}: {self.title}"


@dataclass(frozen=True)
class Exception_:
    check: str
    resource: re.Pattern[str]
    template: re.Pattern[str] | None
    reason: str

    def accepts(self, finding: Finding) -> bool:
        return (
            finding.check == self.check
            and self.resource.fullmatch(finding.resource) is not None
            and (self.template is None or self.template.search(finding.template) is not None)
        )


def load_exceptions(path: Path = EXCEPTIONS_FILE) -> list[Exception_]:
    """The reviewed exceptions; each needs a check id, a resource pattern and a reason of substance."""
    entries = yaml.safe_load(path.read_text())
    out = []
    for i, entry in enumerate(entries):
        unknown = set(entry) - {"check", "resource", "template", "reason"}
        assert not unknown, f"{path.name}[{i}]: unknown keys {sorted(unknown)}"
        assert re.fullmatch(r"CKV2?_AWS_\d+", str(entry.get("check", ""))), f"{path.name}[{i}].check={entry.get('check')!r}"
        assert len(str(entry.get("reason", "")).split()) >= 12, f"{path.name}[{i}] ({entry['check']}): give a real reason"
        out.append(
            Exception_(
                check=entry["check"],
                resource=re.compile(entry["resource"]),
                template=re.compile(entry["template"]) if entry.get("template") else None,
                reason=entry["reason"],
            )
        )
    return out


def run_checkov(directory: Path) -> list[Finding]:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `make checkov` (make test does it) to create checkov's own virtualenv")
    proc = subprocess.run(
        [str(CHECKOV), "-d", str(directory), "--framework", "cloudformation", "--skip-download", "--quiet", "--compact", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # checkov exits 1 when a check fails; anything else (or no JSON) is a broken run, not a result.
    assert proc.returncode in (0, 1), f"checkov exited {proc.returncode}: {proc.stderr[-3000:]}"
    report: Any = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    assert reports and all(r.get("check_type") == "cloudformation" for r in reports), proc.stdout[:2000]
    summary = reports[0]["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["resource_count"] > 100, f"checkov read too few resources to be scanning the templates: {summary}"
    return [
        Finding(check=f["check_id"], resource=f["resource"], template=f["file_path"], title=f["check_name"])
        for r in reports
        for f in r["results"]["failed_checks"]
    ]


@pytest.fixture(scope="module")
def findings(synthesized: SynthesizedApp) -> list[Finding]:
    directory = Path(synthesized.assembly.directory)
    assert len(list(directory.glob("assembly-*/*.template.json"))) >= 7, "expected every stage's templates"
    return run_checkov(directory)


def test_checkov_finds_nothing_outside_the_reviewed_exceptions(findings: list[Finding]) -> None:
    exceptions = load_exceptions()
    open_findings = [f for f in findings if not any(e.accepts(f) for e in exceptions)]
    assert not open_findings, "checkov findings without a reviewed exception (fix them, or add a reasoned entry to " + (
        f"{EXCEPTIONS_FILE.name}):\n" + "\n".join(map(str, open_findings))
    )


def test_every_reviewed_exception_still_matches_a_finding(findings: list[Finding]) -> None:
    """An exception that accepts nothing is stale: it would tell a reviewer about a finding that is gone."""
    stale = [e for e in load_exceptions() if not any(e.accepts(f) for f in findings)]
    assert not stale, "stale entries in " + EXCEPTIONS_FILE.name + ": " + ", ".join(f"{e.check} {e.resource.pattern}" for e in stale)


def test_exceptions_accept_only_the_resources_they_name() -> None:
    """The matching itself: the access-log exception does not cover another bucket, nor the same check elsewhere."""
    exceptions = load_exceptions()

    def accepted(check: str, resource: str, template: str = "/assembly-dev/devStateful28FBCF0B.template.json") -> bool:
        return any(e.accepts(Finding(check=check, resource=resource, template=template, title="")) for e in exceptions)

    assert accepted("CKV_AWS_18", "AWS::S3::Bucket.StorageAccessLogs96FB524C")
    assert not accepted("CKV_AWS_18", "AWS::S3::Bucket.StorageLanding1A2B3C4D")
    assert not accepted("CKV_AWS_18", "AWS::S3::Bucket.StorageAccessLogs96FB524CExtra")
    assert not accepted("CKV_AWS_21", "AWS::S3::Bucket.StorageAccessLogs96FB524C")
    assert not accepted("CKV_AWS_116", "AWS::Lambda::Function.TriggerHandler1A2B3C4D")
