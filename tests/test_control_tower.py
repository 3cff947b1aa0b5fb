"""AWS Control Tower's proactive controls over every synthesized template (stacks/control_tower.py): every finding
is fixed or accepted in the app's control_tower_exceptions.yaml, no entry is stale, and an unaccepted finding fails synth
naming the control and the resource. The session's synth of the app runs the same plugin, so it would fail first."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs

from app import CONTROL_TOWER_EXCEPTIONS
from pipeline_constructs.control_tower import ControlFinding, ControlTowerValidator, load_exceptions, run_controls
from tests.cdk_app import SynthesizedApp

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def findings(synthesized: SynthesizedApp) -> list[ControlFinding]:
    templates = sorted(Path(synthesized.assembly.directory).rglob("*.template.json"))
    assert len(templates) >= 10, templates
    return [finding for template in templates for finding in run_controls(template)]


def test_every_finding_is_accepted_by_a_reviewed_exception_and_no_exception_is_stale(findings: list[ControlFinding]) -> None:
    validator = ControlTowerValidator(exceptions=load_exceptions(CONTROL_TOWER_EXCEPTIONS))
    validator.findings = findings
    assert [f"{f.control} {f.resource}" for f in findings if validator.accepted(f) is None] == []
    assert [f"{e.control} {e.resource}" for e in validator.stale_exceptions()] == []
    counts = Counter(f.control for f in findings)
    print(
        f"\n{len(findings)} findings of {len(counts)} controls, all accepted by {len(validator.exceptions)} entries: {sorted(counts.items())}"
    )


def test_versioned_buckets_have_a_lifecycle_so_no_template_fails_s3_pr_3_or_pr_6(findings: list[ControlFinding]) -> None:
    """The DAG and workflow-definition buckets were versioned without a lifecycle (CT.S3.PR.3 and CT.S3.PR.6 failed on
    both); PipelineStorage.new_bucket now expires replaced versions after 90 days."""
    assert [f.resource for f in findings if f.control in ("ct.s3.pr.3", "ct.s3.pr.6")] == []


def test_an_unaccepted_finding_fails_synth_naming_the_control_and_the_resource(tmp_path: Path) -> None:
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Plain")
    sqs.Queue(stack, "Unencrypted", encryption=sqs.QueueEncryption.UNENCRYPTED)
    cdk.Validations.of(app).add_plugins(ControlTowerValidator(exceptions=[]))
    with pytest.raises(RuntimeError, match=r"(?s)CT\.SQS\.PR\.2.*Unencrypted"):
        app.synth()


def test_the_exceptions_file_names_a_control_a_pattern_and_a_reason_for_every_entry(tmp_path: Path) -> None:
    entries = load_exceptions(CONTROL_TOWER_EXCEPTIONS)
    assert entries and all(re.fullmatch(r"ct\.[a-z0-9]+\.pr\.[0-9]+", e.control) and len(e.reason) > 40 for e in entries)
    broken = tmp_path / "exceptions.yaml"
    broken.write_text("- control: CT.SQS.PR.2\n  resource: '.*'\n", encoding="utf-8")
    with pytest.raises(ValueError, match="entry 1: missing reason"):
        load_exceptions(broken)


def _object_lock_findings(tmp_path: Path, lock: cdk.Duration | None) -> list[str]:
    from pipeline_constructs.storage import PipelineStorage

    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Locked")
    storage = PipelineStorage(stack, "Storage", object_lock_retention=lock)
    storage.new_bucket(stack, "Definitions", log_prefix="definitions/", removal_policy=cdk.RemovalPolicy.RETAIN)
    template = Path(app.synth().directory) / "Locked.template.json"
    return sorted(re.sub(r"[0-9A-F]{8}$", "", f.resource.split("/")[-1]) for f in run_controls(template) if f.control == "ct.s3.pr.9")


def test_object_lock_is_a_setting_that_satisfies_s3_pr_9_on_every_bucket_but_the_access_log_bucket(tmp_path: Path) -> None:
    """Without `object_lock_retention` every bucket fails CT.S3.PR.9; with it only the access-log bucket does, because
    S3 cannot deliver server access logs to a bucket with Object Lock (the reviewed exception)."""
    assert _object_lock_findings(tmp_path / "off", None) == [
        "Definitions",
        "StorageAccessLogs",
        "StorageCurated",
        "StorageLanding",
        "StorageQuarantine",
    ]
    assert _object_lock_findings(tmp_path / "on", cdk.Duration.days(30)) == ["StorageAccessLogs"]
