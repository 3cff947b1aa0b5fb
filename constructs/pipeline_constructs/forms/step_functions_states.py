"""State builders both Step Functions state machines use (the pipeline and its failure reporter)."""

from __future__ import annotations

from aws_cdk import Duration, aws_stepfunctions as sfn

from constructs import Construct, IConstruct

from ..acknowledgements import acknowledge_findings

# What Step Functions needs on '*' for tracing and for delivering execution logs (AWS grants these on no narrower resource).
TRACING_AND_LOG_DELIVERY_ACTIONS = (
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
)


def acknowledge_tracing_and_log_delivery(role: IConstruct) -> None:
    """Accept the IAM5 '*' of the actions every traced, logging state machine's role holds (TRACING_AND_LOG_DELIVERY_ACTIONS)."""
    acknowledge_findings(
        role,
        "AwsSolutions-IAM5",
        "Step Functions' X-Ray tracing and CloudWatch Logs delivery actions have no resource-level permissions; AWS documents them on '*'.",
        matching=r"Resource::\*",
        actions=list(TRACING_AND_LOG_DELIVERY_ACTIONS),
    )


def retry_transient(task: sfn.TaskStateBase | sfn.CustomState, errors: list[str], *, interval: Duration, max_attempts: int) -> None:
    """Retry named transient errors with exponential backoff and full jitter, capped at five minutes per wait."""
    task.add_retry(
        errors=errors,
        interval=interval,
        max_attempts=max_attempts,
        backoff_rate=2,
        jitter_strategy=sfn.JitterType.FULL,
        max_delay=Duration.minutes(5),
    )


def format_literal(text: str) -> str:
    """`text` as a literal inside a States.Format template (quotes, braces and backslashes escaped)."""
    return "".join("\\" + c if c in "'{}\\" else c for c in text)


def name_object_version(scope: Construct, event_path: str, *, then: sfn.IChainable) -> sfn.IChainable:
    """Versioned Upload? -> $.object_version.id = the S3 event's version id, or 'etag:<etag>' for an unversioned bucket
    (the ledger's sort key, as upload_ledger.version_of names it) -> `then`. `event_path` is where the event is."""
    versioned = sfn.Pass(
        scope, "Name Version", parameters={"id.$": f"{event_path}.detail.object.version-id"}, result_path="$.object_version"
    )
    unversioned = sfn.Pass(
        scope,
        "Name Unversioned Object",
        parameters={"id.$": f"States.Format('etag:{{}}', {event_path}.detail.object.etag)"},
        result_path="$.object_version",
    )
    versioned.next(then)
    unversioned.next(then)
    return (
        sfn.Choice(scope, "Versioned Upload?")
        .when(sfn.Condition.is_present(f"{event_path}.detail.object.version-id"), versioned)
        .otherwise(unversioned)
    )
