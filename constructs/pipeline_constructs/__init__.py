"""Reusable AWS CDK constructs for a retail sales data pipeline.

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
    "AthenaTarget": "athena_target",
    "RedshiftTarget": "redshift_target",
    "PipelineNetwork": "network",
    "StepFunctionsPipeline": "step_functions_form",
    "GlueWorkflowPipeline": "glue_workflow_form",
    "GlueWorkflowTarget": "glue_workflow_target",
    "PipelinePropsError": "validation",
}

__all__ = [
    "AthenaTarget",
    "CleanJob",
    "ContractError",
    "DatasetContract",
    "GlueWorkflowPipeline",
    "GlueWorkflowTarget",
    "PipelineAlerting",
    "PipelineCatalog",
    "PipelineNetwork",
    "PipelinePropsError",
    "PipelineStorage",
    "RedshiftTarget",
    "StepFunctionsPipeline",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .alerting import PipelineAlerting
    from .athena_target import AthenaTarget
    from .catalog import PipelineCatalog
    from .clean_job import CleanJob
    from .contract import ContractError, DatasetContract
    from .glue_workflow_form import GlueWorkflowPipeline
    from .glue_workflow_target import GlueWorkflowTarget
    from .network import PipelineNetwork
    from .redshift_target import RedshiftTarget
    from .step_functions_form import StepFunctionsPipeline
    from .storage import PipelineStorage
    from .validation import PipelinePropsError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline_constructs' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
