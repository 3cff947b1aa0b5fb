"""The environment's dashboard (`<env>-Dashboard`): every enabled form feeds it, after the form stacks.

It reads the other stacks' resources through (weak) cross-stack references: queue names, job names and alarm ARNs.
No output: `pipeline-ops` reads `<env>-Stateful` and the form stacks only.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Stack, aws_cloudwatch as cloudwatch

from constructs import Construct
from pipeline_constructs.dashboard import DashboardForm, PipelineDashboard
from pipeline_constructs.forms.glue_workflow import GlueWorkflowPipeline

from .config import EnvironmentConfig
from .operations_outputs import published_dead_letter_queues
from .stateful_stack import StatefulStack


def alarms_in(stack: Stack) -> list[cloudwatch.Alarm]:
    """Every alarm the stack holds, in construct order."""
    return [construct for construct in stack.node.find_all() if isinstance(construct, cloudwatch.Alarm)]


class DashboardStack(Stack):
    """One dashboard for the environment: ledger counts per form, the clean job, dead-letter queues, every alarm."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        stateful: StatefulStack,
        orchestration: Mapping[str, Stack],
        other_stacks: tuple[Stack, ...] = (),
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        forms = []
        for form, stack in orchestration.items():
            pipeline = getattr(stack, "pipeline", None)
            forms.append(
                DashboardForm(
                    name=form,
                    dead_letter_queues=[(f"{queue.node.id} ({kind})", queue) for queue, kind, _ in published_dead_letter_queues(stack)],
                    alarms=alarms_in(stack),
                    clean_job_name=pipeline.clean_job_name if isinstance(pipeline, GlueWorkflowPipeline) else None,
                )
            )
        check = stateful.reconcile_check
        self.dashboard = PipelineDashboard(
            self,
            "Dashboard",
            ledger_metrics=check.metrics,
            clean_job=stateful.clean_job,
            forms=forms,
            dead_letter_queues=[
                (f"alerts: {stateful.alerting.dead_letter_queue.node.id} (notification)", stateful.alerting.dead_letter_queue)
            ],
            alarms=[alarm for stack in (stateful, *other_stacks) for alarm in alarms_in(stack)],
            last_load_alarm=check.no_recent_load_alarm,
            not_accounted_alarm=check.alarms[0],
            dashboard_name=f"retail-pipeline-{config.name}",
            title="Retail sales pipeline",
            environment_name=config.name,
        )
