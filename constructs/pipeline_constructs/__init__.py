"""Reusable AWS CDK constructs for a CSV data pipeline (the app in this repository runs it on retail sales).

The public API is imported lazily (PEP 562): the runtime modules (the clean transform, the local runner) import
this package without loading aws-cdk-lib and its Node.js runtime.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DatasetContract": "contract",
    "ContractError": "contract",
    "PipelineStorage": "storage",
    "PipelineCatalog": "catalog",
    "PipelineAlerting": "alerting",
    "CleanJob": "clean_job",
    "AthenaTarget": "targets.athena",
    "RedshiftTarget": "targets.redshift",
    "PipelineNetwork": "network",
    "StepFunctionsPipeline": "forms.step_functions",
    "GlueWorkflowPipeline": "forms.glue_workflow",
    "GlueWorkflowTarget": "forms.glue_workflow_target",
    "MwaaPipeline": "forms.mwaa",
    "MwaaServerlessPipeline": "forms.mwaa_serverless",
    "QueueTrigger": "queue_trigger",
    "mwaa_interface_endpoints": "network",
    "PipelinePropsError": "validation",
    "UploadLedger": "ledger",
    "LedgerMetrics": "ledger",
    "PipelineDashboard": "dashboard",
    "DashboardForm": "dashboard",
    "Runbook": "alerting",
}

__all__ = [
    "AthenaTarget",
    "CleanJob",
    "ContractError",
    "DashboardForm",
    "DatasetContract",
    "GlueWorkflowPipeline",
    "GlueWorkflowTarget",
    "LedgerMetrics",
    "MwaaPipeline",
    "MwaaServerlessPipeline",
    "PipelineAlerting",
    "PipelineCatalog",
    "PipelineDashboard",
    "PipelineNetwork",
    "PipelinePropsError",
    "PipelineStorage",
    "QueueTrigger",
    "RedshiftTarget",
    "Runbook",
    "StepFunctionsPipeline",
    "UploadLedger",
    "mwaa_interface_endpoints",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .alerting import PipelineAlerting, Runbook
    from .catalog import PipelineCatalog
    from .clean_job import CleanJob
    from .contract import ContractError, DatasetContract
    from .dashboard import DashboardForm, PipelineDashboard
    from .forms.glue_workflow import GlueWorkflowPipeline
    from .forms.glue_workflow_target import GlueWorkflowTarget
    from .forms.mwaa import MwaaPipeline
    from .forms.mwaa_serverless import MwaaServerlessPipeline
    from .forms.step_functions import StepFunctionsPipeline
    from .ledger import LedgerMetrics, UploadLedger
    from .network import PipelineNetwork, mwaa_interface_endpoints
    from .queue_trigger import QueueTrigger
    from .storage import PipelineStorage
    from .targets.athena import AthenaTarget
    from .targets.redshift import RedshiftTarget
    from .validation import PipelinePropsError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline_constructs' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
