"""Declared cdk-nag acknowledgements: each names the actions it covers, and covers nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam

from pipeline_constructs.acknowledgements import acknowledge_findings, apply_acknowledgements
from pipeline_constructs.validation import PipelinePropsError

ROOT = Path(__file__).resolve().parent.parent
REASON = "Object names are not known in advance; access is limited to the prefix 'uploads/'."


def _role_with_statement(actions: list[str], *, env: cdk.Environment | None = None) -> tuple[cdk.App, iam.Role]:
    app = cdk.App()
    stack = cdk.Stack(app, "Stack", env=env)
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("glue.amazonaws.com"))
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=actions, resources=[stack.format_arn(service="s3", region="", account="", resource="bucket", resource_name="uploads/*")]
        )
    )
    return app, role


def _open_findings(app: cdk.App) -> list[str]:
    from cdk_nag import AwsSolutionsChecks

    return [v.rule_name for v in AwsSolutionsChecks().validate_scope(app).violations]


def test_a_statement_that_holds_only_the_declared_actions_is_acknowledged() -> None:
    app, role = _role_with_statement(["s3:GetObject", "s3:GetObjectVersion"])
    acknowledge_findings(
        role, "AwsSolutions-IAM5", REASON, matching=r"Resource::.*/uploads/\*", actions=["s3:GetObject", "s3:GetObjectVersion"]
    )
    assert apply_acknowledgements(app) == 1
    assert not [f for f in _open_findings(app) if f.startswith("AwsSolutions-IAM5")]


def test_a_smuggled_action_in_a_matched_statement_fails_with_its_name() -> None:
    app, role = _role_with_statement(["s3:GetObject", "s3:GetObjectVersion", "s3:DeleteBucket"])
    acknowledge_findings(
        role, "AwsSolutions-IAM5", REASON, matching=r"Resource::.*/uploads/\*", actions=["s3:GetObject", "s3:GetObjectVersion"]
    )
    with pytest.raises(PipelinePropsError, match=r"holds \['s3:DeleteBucket'\].*Stack/Role"):
        apply_acknowledgements(app)


def test_a_wildcard_declaration_without_actions_is_refused() -> None:
    app, role = _role_with_statement(["s3:GetObject"])
    with pytest.raises(PipelinePropsError, match=r"actions=\[\] for AwsSolutions-IAM5 on Stack/Role"):
        acknowledge_findings(role, "AwsSolutions-IAM5", REASON, matching=r"Resource::.*/uploads/\*")
    with pytest.raises(PipelinePropsError, match=r"actions='s3:GetObject'"):
        acknowledge_findings(role, "AwsSolutions-IAM5", REASON, matching=r"Resource::.*/uploads/\*", actions="s3:GetObject")


@pytest.mark.parametrize(
    "env",
    [cdk.Environment(account="123456789012", region="eu-west-1"), None],
    ids=["account-and-region", "environment-agnostic"],
)
def test_a_declaration_written_against_an_arn_matches_in_any_environment(env: cdk.Environment | None) -> None:
    """Environment-agnostic stacks render `arn:<AWS::Partition>:...`; `arn:[^:]+:` must still match."""
    app = cdk.App()
    stack = cdk.Stack(app, "Stack", env=env)
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("glue.amazonaws.com"))
    role.add_to_principal_policy(
        iam.PolicyStatement(actions=["glue:GetTable"], resources=[stack.format_arn(service="glue", resource="table", resource_name="db/*")])
    )
    acknowledge_findings(
        role,
        "AwsSolutions-IAM5",
        "Tables of this one database only, named at run time.",
        matching=r"Resource::arn:[^:]+:glue:.*:table/db/\*",
        actions=["glue:GetTable"],
    )
    assert apply_acknowledgements(app) == 1


def _split_app(*, plugin: bool, target_kind: str = "redshift", references: str = "weak", datasets: int = 1) -> cdk.App:
    """Storage and clean job(s) in one environment-agnostic stack, each target and its Step Functions form in another,
    with `references` cross-stack references (weak: `Fn::GetStackOutput` in the finding ids; strong:
    `Fn::ImportValue`), as another team may lay it out; `datasets` clean jobs share the one storage."""
    from cdk_nag import AwsSolutionsChecks, ServerlessChecks

    from pipeline_constructs import (
        AthenaTarget,
        CleanJob,
        DatasetContract,
        PipelineAlerting,
        PipelineCatalog,
        PipelineNetwork,
        PipelineStorage,
        RedshiftTarget,
        StepFunctionsPipeline,
    )
    from pipeline_constructs.acknowledgements import AcknowledgementsPlugin
    from tests.test_constructs import feature_flags

    app = cdk.App(context={**feature_flags(), "@aws-cdk/core:defaultCrossStackReferences": references})
    data = cdk.Stack(app, "Data")
    storage = PipelineStorage(data, "Storage")
    alerting = PipelineAlerting(data, "Alerts", emails=["fleet@example.com"])
    catalog = PipelineCatalog(data, "Catalog", storage=storage, database_name="fleet_db")
    contracts = [ROOT / "tests" / "consumer_app" / "fleet_trips.yaml", ROOT / "tests" / "consumer_app" / "web_orders.yaml"][:datasets]
    for number, path in enumerate(contracts):
        clean = CleanJob(data, f"Clean{number}", storage=storage, catalog=catalog, contract=DatasetContract.from_file(path))
        warehouse = cdk.Stack(app, f"Warehouse{number}")
        target: Any
        if target_kind == "redshift":
            network = PipelineNetwork(
                warehouse, "Network", availability_zones=["us-east-2a", "us-east-2b", "us-east-2c"], min_availability_zones=3
            )
            target = RedshiftTarget(warehouse, "Redshift", storage=storage, clean_job=clean, vpc=network.vpc)
        else:
            target = AthenaTarget(warehouse, "Athena", storage=storage, catalog=catalog, clean_job=clean)
        StepFunctionsPipeline(
            warehouse,
            "Trips",
            storage=storage,
            catalog=catalog,
            clean_job=clean,
            target=target,
            alerting=alerting,
            landing_prefix=f"incoming/{clean.contract.name}/",
        )
    if plugin:
        cdk.Validations.of(app).add_plugins(AcknowledgementsPlugin(), AwsSolutionsChecks(app), ServerlessChecks(app))
    else:
        apply_acknowledgements(app)
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))
    return app


def test_acknowledgements_match_when_the_target_lives_in_another_stack() -> None:
    """Before synth the finding names the bucket as in its own stack; the cdk-nag plugins see the cross-stack form."""
    with pytest.raises(RuntimeError, match=r"Fn::GetStackOutput.*runs/\*"):
        _split_app(plugin=False).synth()
    _split_app(plugin=True).synth()


@pytest.mark.parametrize("references", ["weak", "strong"])
@pytest.mark.parametrize(("target_kind", "datasets"), [("redshift", 1), ("athena", 1), ("redshift", 2)])
def test_every_target_in_its_own_stack_synthesizes_nag_clean_under_both_reference_styles(
    target_kind: str, datasets: int, references: str
) -> None:
    """Each form of the curated bucket's ARN the plugins see (`Fn::GetStackOutput`, `Fn::ImportValue`) is matched;
    the synthesized template shows the reference was in that form, so the test cannot pass on a same-stack layout."""
    import json

    assembly = _split_app(plugin=True, target_kind=target_kind, references=references, datasets=datasets).synth()
    function = "Fn::GetStackOutput" if references == "weak" else "Fn::ImportValue"
    for number in range(datasets):
        template = json.dumps(assembly.get_stack_by_name(f"Warehouse{number}").template)
        assert function in template and "/runs/*" in template


def test_the_plugin_reports_a_smuggled_action_and_stops_synth() -> None:
    from pipeline_constructs.acknowledgements import AcknowledgementsPlugin

    app, role = _role_with_statement(["s3:GetObject", "s3:GetObjectVersion", "s3:DeleteBucket"])
    acknowledge_findings(
        role, "AwsSolutions-IAM5", REASON, matching=r"Resource::.*/uploads/\*", actions=["s3:GetObject", "s3:GetObjectVersion"]
    )
    from cdk_nag import AwsSolutionsChecks

    cdk.Validations.of(app).add_plugins(AcknowledgementsPlugin([AwsSolutionsChecks()]), AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match=r"s3:DeleteBucket"):
        app.synth()
