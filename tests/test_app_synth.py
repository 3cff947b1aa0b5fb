"""The whole app, every stage: snapshots, cdk-nag with zero open findings, reasoned acknowledgements, cfn-lint."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from syrupy.extensions.json import JSONSnapshotExtension

from tests.cdk_app import SynthesizedApp

ASSET_HASH = re.compile(r"[0-9a-f]{64}")
ACK_KEY = "aws:cdk:acknowledged-rules"


def normalise(template: dict[str, Any]) -> Any:
    """The template with asset hashes blanked, so a snapshot changes only when the infrastructure does."""
    return json.loads(ASSET_HASH.sub("<asset-hash>", json.dumps(template, sort_keys=True)))


@pytest.fixture
def json_snapshot(snapshot: Any) -> Any:
    return snapshot.use_extension(JSONSnapshotExtension)


def test_every_configured_environment_has_its_stacks(synthesized: SynthesizedApp) -> None:
    stacks = set(synthesized.templates())
    for stage in synthesized.stages:
        assert (stage.stage_name, "Stateful") in stacks
        for form in stage.config.forms:
            assert any(env == stage.stage_name and stack != "Stateful" for env, stack in stacks), form


def test_templates_match_snapshots(templates: dict[tuple[str, str], dict[str, Any]], json_snapshot: Any) -> None:
    for (env, stack), template in sorted(templates.items()):
        assert normalise(template) == json_snapshot(name=f"{env}-{stack}")


def test_cdk_nag_finds_nothing_open(synthesized: SynthesizedApp) -> None:
    """Synth itself fails on an open finding (the packs are validation plugins); check the packs directly too."""
    from cdk_nag import AwsSolutionsChecks, ServerlessChecks

    for pack in (AwsSolutionsChecks(), ServerlessChecks()):
        report = pack.validate_scope(synthesized.app)
        open_findings = [(v.rule_name, r.construct_path) for v in report.violations for r in v.violating_resources]
        assert open_findings == []


def _acknowledgements(app: Any) -> list[tuple[str, str, str]]:
    out = []
    for construct in app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == ACK_KEY:
                for finding, reason in dict(entry.data).items():
                    out.append((construct.node.path, finding, reason))
    return out


def test_every_acknowledgement_names_one_finding_and_gives_a_reason(synthesized: SynthesizedApp) -> None:
    acknowledgements = _acknowledgements(synthesized.app)
    assert acknowledgements, "expected the reviewed findings to be acknowledged"
    for path, finding, reason in acknowledgements:
        if finding.startswith("CloudFormation-Validate::") and path.startswith(
            tuple(f"{s.stage_name}/Network" for s in synthesized.stages)
        ):
            # aws-cdk-lib's own acknowledgements in ec2.Vpc (literal zones from the config, its flow log), not ours.
            continue
        finding_id = re.sub(r"^annotation::", "", finding, flags=re.I)
        assert re.fullmatch(r"(AwsSolutions|Serverless)-[A-Za-z0-9]+(\[.+\])?", finding_id, re.S), (path, finding)
        assert isinstance(reason, str) and len(reason.strip()) >= 20, (path, finding, reason)


def test_an_acknowledgement_without_a_reason_is_refused() -> None:
    import aws_cdk as cdk

    from pipeline_constructs.acknowledgements import acknowledge, acknowledge_findings
    from pipeline_constructs.validation import PipelinePropsError

    stack = cdk.Stack(cdk.App(), "Scratch")
    with pytest.raises(PipelinePropsError, match=r"reason=''"):
        acknowledge(stack, "AwsSolutions-S1", "")
    with pytest.raises(PipelinePropsError, match=r"reason='ok'"):
        acknowledge_findings(stack, "AwsSolutions-IAM5", "ok", matching=r"Resource::\*")
    with pytest.raises(PipelinePropsError, match=r"finding_id=''"):
        acknowledge(stack, "", "a long enough reason for the test")


def test_cfn_lint_reports_no_errors(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    errors = []
    for (env, stack), template in sorted(templates.items()):
        matches = lint(json.dumps(template), config=ManualArgs(regions=["eu-west-1"]))
        errors += [f"{env}-{stack}: {m.rule.id} {m.message}" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def test_an_open_cdk_nag_finding_fails_synth() -> None:
    """cdk-nag runs as a validation plugin of synth: a non-compliant resource stops it (this is what `make synth` does)."""
    import aws_cdk as cdk
    from aws_cdk import aws_sqs as sqs

    from app import build_app
    from tests.cdk_app import pinned_context

    app = cdk.App(context=pinned_context(**{"pipeline:env": "dev"}))
    (stage,) = build_app(app)
    sqs.Queue(stage.stateful, "UnencryptedQueueWithoutDlq", encryption=sqs.QueueEncryption.UNENCRYPTED)
    with pytest.raises(RuntimeError, match=r"ValidationFailed(.|\n)*UnencryptedQueueWithoutDlq(.|\n)*AwsSolutions-SQS2"):
        app.synth()
