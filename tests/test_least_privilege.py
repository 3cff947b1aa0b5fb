"""No identity statement in any template grants an S3, Glue, Lake Formation or KMS action on every resource (issue 11),
except the few actions IAM defines without a resource type, each named here with what needs it."""

from __future__ import annotations

from typing import Any

from tests.test_step_functions_form import DATA_SERVICES, as_list, identity_statements

# Actions IAM's service authorization reference lists with no resource type: '*' is the only resource they take.
NO_RESOURCE_TYPE = {
    # The Airflow forms' crawl operator reads the crawl's metrics after waiting (provider 9.34).
    "glue:GetCrawlerMetrics",
    # In MWAA's documented execution-role policy: MWAA reads the account's S3 public access block settings.
    "s3:GetAccountPublicAccessBlock",
}


def data_actions_on_everything(templates: dict[tuple[str, str], dict[str, Any]]) -> list[tuple[str, str, str, list[str]]]:
    offending = []
    for (env, stack), template in templates.items():
        for logical_id, statement in identity_statements(template):
            if statement.get("Effect", "Allow") != "Allow" or "*" not in as_list(statement.get("Resource")):
                continue
            actions = [a for a in as_list(statement["Action"]) if a.lower().startswith(DATA_SERVICES) and a not in NO_RESOURCE_TYPE]
            if actions:
                offending.append((env, stack, logical_id, actions))
    return offending


def test_no_statement_in_any_stack_grants_data_actions_on_everything(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert {stack for _, stack in templates} >= {"Stateful", "StepFunctions", "GlueWorkflow", "Mwaa", "MwaaServerless"}
    assert data_actions_on_everything(templates) == []
