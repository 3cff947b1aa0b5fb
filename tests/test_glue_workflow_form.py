"""The Glue Workflow form (GlueWorkflowPipeline) as synthesized: the trigger graph, the upload rule, failure signals.

The whole app is synthesized once per session with cdk-nag (an open finding fails that synth); dev enables this form
next to Step Functions, on an hourly schedule (cdk.json `trigger`). Module-scoped synths build the form in upload mode
(dev without its schedule: `template`) and over a RedshiftTarget. The trigger graph is read back from the template and
checked as a graph, not as a list of resources.
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template
from cfnlint.api import ManualArgs, lint

from pipeline_constructs.forms.glue_workflow import GlueWorkflowPipeline
from pipeline_constructs.runtime.glue_load_job import RUN_ID_TOKEN, render_sql
from pipeline_constructs.validation import PipelinePropsError
from stacks.config import parse_app_config
from tests.cdk_app import pinned_context, synth_app

ENV = "dev"
STACK = "GlueWorkflow"


def key(value: Any) -> str:
    """A canonical string of a template value (a name may be a Ref, an import or a literal)."""
    return json.dumps(value, sort_keys=True)


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """The form in upload mode: dev's settings without its schedule (runs start on uploads, the default)."""
    context = pinned_context()
    dev = {key: value for key, value in context["pipeline:environments"][ENV].items() if key != "trigger"}
    context["pipeline:environments"] = {ENV: {**dev, "forms": ["glue_workflow"]}}
    return synth_app(context, nag=True).template(ENV, STACK)


@pytest.fixture(scope="module")
def scheduled_template(templates: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """The form as the app deploys it in dev: on an hourly schedule."""
    return templates[(ENV, STACK)]


@pytest.fixture(scope="module")
def assertions(template: dict[str, Any]) -> Template:
    return Template.from_json(template)


def python_shell_jobs(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(lid, j) for lid, j in resources(template, "AWS::Glue::Job").items() if j["Properties"]["Command"]["Name"] == "pythonshell"]


@pytest.fixture(scope="module")
def load_job(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    [(lid, job)] = python_shell_jobs(template)
    return lid, job


@pytest.fixture(scope="module")
def clean_job(scheduled_template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The form's clean job in the app's own synth (compared with that synth's stateful stack); the same in both modes."""
    [(lid, job)] = [
        (lid, j) for lid, j in resources(scheduled_template, "AWS::Glue::Job").items() if j["Properties"]["Command"]["Name"] == "glueetl"
    ]
    return lid, job


def queues(template: dict[str, Any]) -> tuple[str, str]:
    """(dead-letter queue, inbox) logical ids."""
    [dead_letters] = [lid for lid in resources(template, "AWS::SQS::Queue") if "DeadLetterQueue" in lid]
    [inbox] = [lid for lid in resources(template, "AWS::SQS::Queue") if "Inbox" in lid]
    return dead_letters, inbox


def failure_rules(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Glue state-change rules that send a message (the success-counting rule has no target)."""
    return {
        lid: r["Properties"]
        for lid, r in resources(template, "AWS::Events::Rule").items()
        if r["Properties"]["EventPattern"]["source"] == ["aws.glue"] and r["Properties"].get("Targets")
    }


@pytest.fixture(scope="module")
def redshift_template() -> dict[str, Any]:
    context = pinned_context()
    staging = context["pipeline:environments"]["staging"]
    context["pipeline:environments"] = {
        "staging": {
            **staging,
            "forms": ["glue_workflow"],
            "load_target": "redshift",
            "availability_zones": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
        }
    }
    return synth_app(context, nag=True).template("staging", STACK)


# --- the trigger graph ------------------------------------------------------------------------------------------


class TriggerGraph:
    """Nodes are jobs and crawlers (by canonical name); an edge A -> B says 'B starts when A reached <state>'."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.starts: list[str] = []
        self.edges: list[tuple[str, str, str, str | None]] = []  # (from, to, state, logical)
        self.nodes: dict[str, str] = {}  # node -> 'job' | 'crawler'
        for trigger in resources(template, "AWS::Glue::Trigger").values():
            props = trigger["Properties"]
            targets = []
            for action in props["Actions"]:
                kind = "job" if "JobName" in action else "crawler"
                node = key(action["JobName"] if kind == "job" else action["CrawlerName"])
                self.nodes[node] = kind
                targets.append(node)
            if props["Type"] in ("EVENT", "SCHEDULED"):  # a workflow's one start trigger
                self.starts.extend(targets)
                continue
            assert props["Type"] == "CONDITIONAL", props["Type"]
            logical = props["Predicate"].get("Logical")
            for condition in props["Predicate"]["Conditions"]:
                source = key(condition.get("JobName", condition.get("CrawlerName")))
                state = condition.get("State", condition.get("CrawlState"))
                assert condition.get("LogicalOperator", "EQUALS") == "EQUALS"
                self.nodes.setdefault(source, "job" if "JobName" in condition else "crawler")
                for target in targets:
                    self.edges.append((source, target, state, logical))

    def paths_to(self, goal: str) -> list[list[tuple[str, str, str, str | None]]]:
        """Every path of edges from an event-started node to `goal`."""
        found = []
        queue = deque((start, []) for start in self.starts)
        while queue:
            node, path = queue.popleft()
            if node == goal:
                found.append(path)
                continue
            for edge in self.edges:
                if edge[0] == node and edge not in path:
                    queue.append((edge[1], [*path, edge]))
        return found


def test_the_upload_batch_starts_the_crawler_then_clean_then_load_only_on_success(
    template: dict[str, Any], load_job: tuple[str, Any]
) -> None:
    graph = TriggerGraph(template)
    load = key({"Ref": load_job[0]})
    assert len(graph.starts) == 1 and graph.nodes[graph.starts[0]] == "crawler"
    paths = graph.paths_to(load)
    assert paths, "the event trigger never reaches the load job"
    for path in paths:
        assert [state for _, _, state, _ in path] == ["SUCCEEDED", "SUCCEEDED"]
        assert all(logical in (None, "AND") for *_, logical in path)
        crawler, clean = path[0][0], path[1][0]
        assert graph.nodes[crawler] == "crawler" and graph.nodes[clean] == "job" and clean != load
    # Nothing starts on a failure state, and no edge bypasses a step.
    assert {state for _, _, state, _ in graph.edges} == {"SUCCEEDED"}
    assert len(graph.edges) == 2


def test_every_job_and_the_crawler_has_a_failure_path_to_the_topic(template: dict[str, Any]) -> None:
    graph = TriggerGraph(template)
    alarms = resources(template, "AWS::CloudWatch::Alarm").values()
    topic = {key(action) for alarm in alarms for action in alarm["Properties"]["AlarmActions"]}
    assert len(topic) == 1, "all alarms go to the one alert topic"
    rules = [
        r["Properties"]
        for r in resources(template, "AWS::Events::Rule").values()
        if r["Properties"]["EventPattern"]["source"] == ["aws.glue"]
    ]
    for node, kind in graph.nodes.items():
        name_field, detail_type, failure_states = (
            ("jobName", "Glue Job State Change", {"FAILED", "TIMEOUT", "STOPPED", "ERROR"})
            if kind == "job"
            else ("crawlerName", "Glue Crawler State Change", {"Failed"})
        )
        catching = [
            rule
            for rule in rules
            if rule["EventPattern"]["detail-type"] == [detail_type]
            and node in {key(n) for n in rule["EventPattern"]["detail"][name_field]}
            and failure_states <= set(rule["EventPattern"]["detail"]["state"])
            and any(key(target["Arn"]) in topic for target in rule["Targets"])
        ]
        assert catching, f"no failure rule sends {kind} {node} failures to the topic"


def test_failure_messages_carry_the_fields_every_form_sends_naming_the_step(template: dict[str, Any]) -> None:
    """pipeline, object, run_id, failed_step, error, cause: the Step Functions form's Notify Failure fields."""
    steps = {}
    for props in failure_rules(template).values():
        [target] = props["Targets"]
        transformer = target["InputTransformer"]
        paths = transformer["InputPathsMap"]
        text = key(transformer["InputTemplate"])
        is_job = "jobName" in props["EventPattern"]["detail"]
        for field, path in (
            ("run_id", "$.detail.jobRunId" if is_job else "$.id"),
            ("error", "$.detail.state"),
            ("cause", "$.detail.message" if is_job else "$.detail.errorMessage"),
        ):
            [variable] = [name for name, p in paths.items() if p == path]
            assert f'\\"{field}\\":<{variable}>' in text, field
        assert '\\"pipeline\\":\\"glue_workflow\\"' in text
        assert '\\"object\\":\\"Glue workflow ' in text and "/incoming/glue_workflow/" in text
        [step] = [f for f in ("Crawl", "Clean", "Load") if f'\\"failed_step\\":\\"{f}\\"' in text]
        steps[step] = is_job
        assert target["DeadLetterConfig"] and target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert steps == {"Crawl": False, "Clean": True, "Load": True}, "one rule per step"


def _output_refs(template: dict[str, Any]) -> dict[str, str]:
    """Output name -> the logical id it publishes (`{"Ref": id}` outputs only)."""
    return {
        name: o["Value"]["Ref"] for name, o in template.get("Outputs", {}).items() if isinstance(o["Value"], dict) and "Ref" in o["Value"]
    }


def _glue_resources_referenced(value: Any, stack: str, templates: dict[tuple[str, str], dict[str, Any]]) -> set[tuple[str, str]]:
    """(stack, logical id) of every Glue job or crawler that `value` refers to: a Ref in its own stack, or an output
    of another stack of the stage (Fn::GetStackOutput / Fn::ImportValue)."""
    found: set[tuple[str, str]] = set()
    glue_types = ("AWS::Glue::Job", "AWS::Glue::Crawler")

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if "Ref" in node and isinstance(node["Ref"], str):
                resource = templates[(ENV, stack)]["Resources"].get(node["Ref"])
                if resource and resource["Type"] in glue_types:
                    found.add((stack, node["Ref"]))
            output = node.get("Fn::GetStackOutput")
            if output:
                other = output["StackName"].split("-", 1)[1]
                lid = _output_refs(templates[(ENV, other)]).get(output["OutputName"])
                if lid and templates[(ENV, other)]["Resources"][lid]["Type"] in glue_types:
                    found.add((other, lid))
            if "Fn::ImportValue" in node:
                raise AssertionError(f"unexpected export reference {node}: teach this helper to follow it")
            for child in node.values():
                visit(child)
        elif isinstance(node, list):
            for child in node:
                visit(child)

    visit(value)
    return found


def test_a_step_functions_run_cannot_fire_this_forms_failure_rules(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Issue 11: with both forms in dev, the jobs and crawler a Step Functions run calls must not be in any of this
    form's failure rules, which name only this form's own crawler, clean job definition and load job."""
    sfn = templates[(ENV, "StepFunctions")]
    [machine] = [
        m for m in resources(sfn, "AWS::StepFunctions::StateMachine").values() if m["Properties"]["StateMachineType"] == "STANDARD"
    ]
    called = _glue_resources_referenced(machine["Properties"]["DefinitionString"], "StepFunctions", templates)
    assert {templates[(ENV, s)]["Resources"][lid]["Type"] for s, lid in called} == {"AWS::Glue::Job", "AWS::Glue::Crawler"}

    template = templates[(ENV, STACK)]
    watched: set[tuple[str, str]] = set()
    for props in failure_rules(template).values():
        detail = props["EventPattern"]["detail"]
        watched |= _glue_resources_referenced(detail.get("jobName", []) + detail.get("crawlerName", []), STACK, templates)
    assert watched.isdisjoint(called), f"rules of the Glue Workflow form match resources Step Functions runs: {watched & called}"
    own = {(STACK, lid) for lid, r in template["Resources"].items() if r["Type"] in ("AWS::Glue::Job", "AWS::Glue::Crawler")}
    # dev runs on a schedule: the pending check job is the fourth
    assert watched == own and len(own) == 4, "the rules watch exactly this form's crawler, clean, load and pending check jobs"
    graph = TriggerGraph(template)
    assert {n for n in graph.nodes} == {key({"Ref": lid}) for _, lid in own}, "the workflow runs only its own resources"


def test_the_forms_clean_job_is_the_shared_job_definition_under_its_own_name(
    templates: dict[tuple[str, str], dict[str, Any]], clean_job: tuple[str, dict[str, Any]]
) -> None:
    [shared] = resources(templates[(ENV, "Stateful")], "AWS::Glue::Job").values()
    own = clean_job[1]["Properties"]
    for prop in ("GlueVersion", "WorkerType", "NumberOfWorkers", "Timeout", "MaxRetries"):
        assert own[prop] == shared["Properties"][prop], prop
    assert own["Command"]["ScriptLocation"] == shared["Properties"]["Command"]["ScriptLocation"]
    outputs = templates[(ENV, "Stateful")]["Outputs"]

    def as_in_stateful(value: Any) -> Any:
        """The value with each reference to a Stateful output replaced by what the output publishes."""
        if isinstance(value, dict):
            if "Fn::GetStackOutput" in value:
                return outputs[value["Fn::GetStackOutput"]["OutputName"]]["Value"]
            return {k: as_in_stateful(v) for k, v in value.items()}
        if isinstance(value, list):
            return [as_in_stateful(v) for v in value]
        return value

    assert as_in_stateful(own["Role"]) == shared["Properties"]["Role"], "the same role"
    shared_args = shared["Properties"]["DefaultArguments"]
    assert {k: as_in_stateful(own["DefaultArguments"][k]) for k in shared_args} == shared_args, "the same arguments"
    assert own["ExecutionProperty"] == {"MaxConcurrentRuns": 1}, "the workflow runs one run at a time"


def test_the_runs_failed_alarm_counts_every_failure_rule_and_one_alarm_watches_the_dead_letter_queue(
    template: dict[str, Any], assertions: Template
) -> None:
    rules = set(failure_rules(template))
    assert len(rules) == 3
    [runs_failed] = [a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values() if "Metrics" in a["Properties"]]
    assert runs_failed["Threshold"] == 1 and runs_failed["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert runs_failed["TreatMissingData"] == "notBreaching" and runs_failed["AlarmActions"]
    [expression] = [m["Expression"] for m in runs_failed["Metrics"] if "Expression" in m]
    counted = set()
    for metric in runs_failed["Metrics"]:
        if "MetricStat" in metric:
            stat = metric["MetricStat"]
            assert stat["Metric"]["Namespace"] == "AWS/Events" and stat["Metric"]["MetricName"] == "MatchedEvents"
            assert stat["Stat"] == "Sum" and f"FILL({metric['Id']}, 0)" in expression
            [dimension] = stat["Metric"]["Dimensions"]
            counted.add(dimension["Value"]["Ref"])
    assert counted == rules
    queue, _ = queues(template)
    assertions.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}],
        },
    )


# --- the upload trigger -----------------------------------------------------------------------------------------


def test_uploads_under_the_form_prefix_notify_the_workflow_with_retries_and_a_dead_letter_queue(
    template: dict[str, Any], assertions: Template
) -> None:
    [workflow] = resources(template, "AWS::Glue::Workflow")
    queue, inbox = queues(template)
    [upload] = [
        r["Properties"]
        for r in resources(template, "AWS::Events::Rule").values()
        if r["Properties"]["EventPattern"]["source"] == ["aws.s3"]
    ]
    pattern = upload["EventPattern"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"] == {
        "key": [{"wildcard": "incoming/glue_workflow/*.csv"}],
        "size": [{"numeric": [">", 0]}],
    }
    [target, to_inbox] = upload["Targets"]
    assert key({"Ref": workflow}) in key(target["Arn"]) and ":workflow/" in key(target["Arn"])
    assert to_inbox["Arn"] == {"Fn::GetAtt": [inbox, "Arn"]} and "RoleArn" not in to_inbox
    for each in (target, to_inbox):
        assert each["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}
        assert each["RetryPolicy"] == {"MaximumRetryAttempts": 8, "MaximumEventAgeInSeconds": 21600}
    role = target["RoleArn"]["Fn::GetAtt"][0]
    assertions.has_resource_properties(
        "AWS::IAM::Role",
        {"AssumeRolePolicyDocument": {"Statement": [Match.object_like({"Principal": {"Service": "events.amazonaws.com"}})]}},
    )
    [policy] = [p["Properties"] for p in resources(template, "AWS::IAM::Policy").values() if p["Properties"]["Roles"] == [{"Ref": role}]]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "glue:notifyEvent"
    assert key(statement["Resource"]) == key(target["Arn"])
    assertions.has_resource_properties("AWS::SQS::Queue", {"KmsMasterKeyId": Match.any_value(), "MessageRetentionPeriod": 1209600})
    assertions.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "sqs:SendMessage",
                                "Principal": {"Service": "events.amazonaws.com"},
                                "Condition": {"ArnEquals": {"aws:SourceArn": Match.any_value()}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_the_event_trigger_batches_uploads_as_configured(template: dict[str, Any]) -> None:
    config = next(e for e in parse_app_config(pinned_context()["pipeline:environments"]).environments if e.name == ENV)
    [event] = [t["Properties"] for t in resources(template, "AWS::Glue::Trigger").values() if t["Properties"]["Type"] == "EVENT"]
    assert event["EventBatchingCondition"] == {
        "BatchSize": config.workflow_batch_size,
        "BatchWindow": config.workflow_batch_window_seconds,
    }
    conditional = [t["Properties"] for t in resources(template, "AWS::Glue::Trigger").values() if t["Properties"]["Type"] == "CONDITIONAL"]
    assert all(t["StartOnCreation"] is True for t in conditional), "conditional triggers must be activated"


def ledger_arguments_are_set(arguments: dict[str, Any]) -> None:
    assert "LedgerTable" in key(arguments["--ledger_table"])
    assert arguments["--ledger_ttl_days"] == "400" and arguments["--pipeline_form"] == "glue_workflow"
    assert "--workflow_state_uri" not in arguments


def test_the_clean_job_gets_the_prefix_the_inbox_the_ledger_and_the_alert_topic(
    template: dict[str, Any], clean_job: tuple[str, dict[str, Any]]
) -> None:
    arguments = clean_job[1]["Properties"]["DefaultArguments"]
    assert key(arguments["--source_listing_prefix"]).endswith('/incoming/glue_workflow/"]]}')
    assert "PublishOutputRefAlertingTopic" in key(arguments["--alert_topic_arn"])
    _, inbox = queues(template)
    assert arguments["--inbox_queue_url"] == {"Ref": inbox}
    ledger_arguments_are_set(arguments)
    [workflow] = resources(template, "AWS::Glue::Workflow")
    [policy] = [p["Properties"] for p in resources(template, "AWS::IAM::ManagedPolicy").values()]
    statements = policy["PolicyDocument"]["Statement"]
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {
        "dynamodb:UpdateItem",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:Encrypt",
        "kms:GenerateDataKey",
        "glue:GetWorkflowRunProperties",
        "glue:PutWorkflowRunProperties",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sns:Publish",
    }
    [query] = [s for s in statements if s["Action"] == "dynamodb:Query"]
    assert key(query["Resource"]).endswith('/index/by_state"]]}'), "the state index only, not the table"
    assert not [s for s in statements if str(s["Action"]).startswith("s3:")], "no state file any more"
    assert "*" not in key([s["Resource"] for s in statements]).replace("${AWS::", "")
    assert workflow in key(policy["PolicyDocument"])


# --- the load job -----------------------------------------------------------------------------------------------


def test_the_load_job_is_a_python_shell_job_running_the_athena_merge_of_the_workflow_run(
    load_job: tuple[str, Any],
) -> None:
    _, job = load_job
    props = job["Properties"]
    assert props["Command"]["Name"] == "pythonshell" and props["Command"]["PythonVersion"] == "3.9"
    assert props["SecurityConfiguration"] and props["MaxRetries"] == 0
    args = props["DefaultArguments"]
    [sql] = render_sql([args["--athena_sql_template"]], "wr_42")
    assert sql.startswith('MERGE INTO "retail_dev"."retail_sales" AS t USING') and "\"run_id\" = 'wr_42'" in sql
    assert args["--athena_workgroup"] and args["--athena_database"] == "retail_dev"
    assert "--extra-py-files" in args
    assert int(args["--max_wait_seconds"]) < props["Timeout"] * 60


def test_the_load_role_gets_the_target_load_policy_the_ledger_writes_and_the_run_properties(
    template: dict[str, Any], load_job: tuple[str, Any]
) -> None:
    ledger_arguments_are_set(load_job[1]["Properties"]["DefaultArguments"])
    role_id = load_job[1]["Properties"]["Role"]["Fn::GetAtt"][0]
    role = template["Resources"][role_id]["Properties"]
    assert "AthenaTargetLoadPolicy" in key(role["ManagedPolicyArns"])
    [policy] = [p["Properties"] for p in resources(template, "AWS::IAM::Policy").values() if p["Properties"]["Roles"] == [{"Ref": role_id}]]
    statements = policy["PolicyDocument"]["Statement"]
    [ledger] = [s for s in statements if sorted(s["Action"]) == ["dynamodb:GetItem", "dynamodb:UpdateItem"]]
    assert "LedgerTable" in key(ledger["Resource"])
    assert not [s for s in statements if "s3:PutObject" in str(s["Action"])], "no state file any more"
    [run_properties] = [s for s in statements if s["Action"] == "glue:GetWorkflowRunProperties"]
    assert ":workflow/" in key(run_properties["Resource"])


def test_the_load_job_over_redshift_runs_copy_and_merge_through_the_data_api(redshift_template: dict[str, Any]) -> None:
    [(_, job)] = python_shell_jobs(redshift_template)
    args = job["Properties"]["DefaultArguments"]
    assert "--athena_sql_template" not in args
    assert args["--redshift_workgroup"] and args["--redshift_database"]
    text = key(args["--redshift_sql_templates"])
    assert f"run_id={RUN_ID_TOKEN}/" in text and "MERGE INTO" in text and "COPY" in text
    [role] = [r for lid, r in resources(redshift_template, "AWS::IAM::Role").items() if "LoadJobRole" in lid]
    assert "RedshiftTargetLoadPolicy" in key(role["Properties"]["ManagedPolicyArns"]), "the target's load policy is attached"


# --- whole-app checks -------------------------------------------------------------------------------------------


def test_the_form_is_enabled_in_dev_next_to_step_functions(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert (ENV, STACK) in templates and (ENV, "StepFunctions") in templates


def test_the_stack_passes_cfn_lint(template: dict[str, Any]) -> None:
    matches = lint(json.dumps(template), config=ManualArgs(regions=["eu-west-1"], ignore_checks=["W3005"]))
    errors = [f"{m.rule.id} {m.message} {m.path}" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def test_the_redshift_variant_passes_cfn_lint(redshift_template: dict[str, Any]) -> None:
    matches = lint(json.dumps(redshift_template), config=ManualArgs(regions=["eu-west-1"], ignore_checks=["W3005"]))
    assert [f"{m.rule.id} {m.message}" for m in matches if m.rule.id.startswith("E")] == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch_size": 101}, "batch_size=101"),
        ({"batch_window": cdk.Duration.minutes(16)}, "batch_window=960"),
        ({"landing_prefix": "/incoming"}, "landing_prefix='/incoming'"),
        ({"target": "athena"}, "target=str"),
        ({"ledger": None}, "ledger=None: the Glue Workflow form claims its uploads in the upload ledger"),
    ],
)
def test_invalid_arguments_are_rejected_naming_the_argument(synthesized: Any, overrides: dict[str, Any], message: str) -> None:
    stage = next(s for s in synthesized.stages if s.stage_name == ENV)
    stateful = stage.stateful
    stack = cdk.Stack(cdk.App(), "Scratch")
    props = {
        "storage": stateful.storage,
        "catalog": stateful.catalog,
        "clean_job": stateful.clean_job,
        "target": stateful.target,
        "alerting": stateful.alerting,
        "ledger": stateful.ledger,
        **overrides,
    }
    with pytest.raises(PipelinePropsError, match=message.replace("(", r"\(")):
        GlueWorkflowPipeline(stack, "Pipeline", **props)


def test_the_dead_letter_queue_and_the_inbox_are_kept_when_the_environment_retains_its_data(template: dict[str, Any]) -> None:
    """dev retains its data (cdk.json), so undelivered and unclaimed upload events must outlive a stack deletion or
    replacement."""
    for queue in queues(template):
        assert template["Resources"][queue]["DeletionPolicy"] == "Retain"
        assert template["Resources"][queue]["UpdateReplacePolicy"] == "Retain"
    inbox = template["Resources"][queues(template)[1]]["Properties"]
    assert inbox["KmsMasterKeyId"] and inbox["MessageRetentionPeriod"] == 1209600 and inbox["VisibilityTimeout"] == 300


# --- one vocabulary across forms (issue 13), in another app's dataset ------------------------------------------


@pytest.fixture(scope="module")
def web_orders() -> tuple[GlueWorkflowPipeline, dict[str, Any]]:
    """The form in one stack with another team's dataset (tests/consumer_app/web_orders.yaml): no retail anywhere."""
    from pathlib import Path

    from pipeline_constructs import AthenaTarget, CleanJob, DatasetContract, PipelineAlerting, PipelineCatalog, PipelineStorage
    from pipeline_constructs.ledger import UploadLedger

    stack = cdk.Stack(cdk.App(), "WebOrders")
    contract = DatasetContract.from_file(Path(__file__).parent / "consumer_app" / "web_orders.yaml")
    storage = PipelineStorage(stack, "Storage", landing_prefix="uploads/")
    alerting = PipelineAlerting(stack, "Alerts", emails=["oncall@example.com"], topic_display_name="Web orders")
    catalog = PipelineCatalog(stack, "Catalog", storage=storage, database_name="orders_db")
    clean = CleanJob(stack, "Clean", storage=storage, catalog=catalog, contract=contract, metrics_namespace="WebShop/Orders")
    athena = AthenaTarget(stack, "Athena", storage=storage, catalog=catalog, clean_job=clean)
    ledger = UploadLedger(stack, "Ledger", encryption_key=storage.key)
    form = GlueWorkflowPipeline(
        stack, "Workflow", storage=storage, catalog=catalog, clean_job=clean, target=athena, alerting=alerting, ledger=ledger
    )
    return form, Template.from_stack(stack).to_json()


def test_the_form_exposes_the_vocabulary_every_form_shares(web_orders: tuple[GlueWorkflowPipeline, dict[str, Any]]) -> None:
    import aws_cdk.aws_cloudwatch as cloudwatch
    import aws_cdk.aws_events as events
    import aws_cdk.aws_sqs as sqs

    form, template = web_orders
    assert isinstance(form.trigger_rule, events.Rule) and not hasattr(form, "upload_rule")
    assert isinstance(form.dead_letter_queue, sqs.Queue)
    assert form.alarms and all(isinstance(a, cloudwatch.Alarm) for a in form.alarms)
    assert not hasattr(form, "metric_job_failures") and not hasattr(form, "metric_crawler_failures")
    stack = cdk.Stack.of(form)
    failed = form.metric_runs_failed(period=cdk.Duration.minutes(1))
    assert isinstance(failed, cloudwatch.MathExpression) and failed.period.to_seconds() == 60
    assert set(failed.using_metrics) == {"crawl", "clean", "load"}
    succeeded = form.metric_runs_succeeded()
    assert isinstance(succeeded, cloudwatch.Metric) and succeeded.namespace == "WebShop/Orders"
    rejected = form.metric_files_rejected()
    assert rejected.namespace == "WebShop/Orders" and stack.resolve(rejected.dimensions["JobName"]) == {
        "Ref": stack.get_logical_id(form.clean_job)
    }
    with pytest.raises(PipelinePropsError, match="step='Transform'"):
        form.metric_step_failures("Transform")


def test_nothing_the_user_did_not_name_says_retail(web_orders: tuple[GlueWorkflowPipeline, dict[str, Any]]) -> None:
    form, template = web_orders
    stack = cdk.Stack.of(form)
    own = [stack.get_logical_id(c) for c in form.node.find_all() if isinstance(c, cdk.CfnResource)]
    assert len(own) > 10
    for lid in own:
        assert "retail" not in json.dumps(template["Resources"][lid]).lower(), f"{lid} says retail"
    workflow = template["Resources"][stack.get_logical_id(form.workflow.node.default_child)]
    assert workflow["Properties"]["Description"].startswith("web_orders pipeline")


def test_the_workflow_runs_one_run_at_a_time(template: dict[str, Any]) -> None:
    [workflow] = resources(template, "AWS::Glue::Workflow").values()
    assert workflow["Properties"]["MaxConcurrentRuns"] == 1


def test_a_form_crawler_outside_the_storage_landing_prefix_is_refused(synthesized: Any) -> None:
    stage = next(s for s in synthesized.stages if s.stage_name == ENV)
    stack = cdk.Stack(cdk.App(), "Scratch")
    with pytest.raises(PipelinePropsError, match=r"prefix='drop/glue_workflow/': must be under the storage's landing prefix 'incoming/'"):
        stage.stateful.catalog.add_crawler(stack, "Crawler", prefix="drop/glue_workflow/", description="x")


# --- on a schedule (dev: cdk.json trigger.glue_workflow, hourly) -------------------------------------------------


def _triggers(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [t["Properties"] for t in resources(template, "AWS::Glue::Trigger").values() if t["Properties"]["Type"] == kind]


def _pending_check(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The Python shell job that reads the inbox (the load job does not)."""
    [(lid, job)] = [(lid, j) for lid, j in python_shell_jobs(template) if "--inbox_queue_url" in j["Properties"]["DefaultArguments"]]
    return lid, job


def test_a_scheduled_run_starts_with_the_pending_check_then_crawls_cleans_and_loads_only_on_success(
    scheduled_template: dict[str, Any],
) -> None:
    """A workflow has one start trigger: the SCHEDULED one replaces the EVENT trigger; its first step is the check
    that stops an empty run before the crawl."""
    assert _triggers(scheduled_template, "EVENT") == []
    [scheduled] = _triggers(scheduled_template, "SCHEDULED")
    assert scheduled["Schedule"] == "cron(0 * * * ? *)" and scheduled["StartOnCreation"] is True  # hourly, UTC
    check, _ = _pending_check(scheduled_template)
    [(load, _)] = [(lid, j) for lid, j in python_shell_jobs(scheduled_template) if lid != check]
    graph = TriggerGraph(scheduled_template)
    assert graph.starts == [key({"Ref": check})]
    [path] = graph.paths_to(key({"Ref": load}))
    assert [state for _, _, state, _ in path] == ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]
    assert [graph.nodes[source] for source, *_ in path] == ["job", "crawler", "job"]  # check -> crawl -> clean -> load
    assert {state for _, _, state, _ in graph.edges} == {"SUCCEEDED"} and len(graph.edges) == 3
    assert all(t["StartOnCreation"] is True for t in _triggers(scheduled_template, "CONDITIONAL"))
    [workflow] = resources(scheduled_template, "AWS::Glue::Workflow").values()
    assert workflow["Properties"]["MaxConcurrentRuns"] == 1, "two scheduled runs never overlap"


def test_on_a_schedule_the_upload_rule_still_feeds_the_inbox_and_notifies_no_workflow(scheduled_template: dict[str, Any]) -> None:
    queue, inbox = queues(scheduled_template)
    [upload] = [
        r["Properties"]
        for r in resources(scheduled_template, "AWS::Events::Rule").values()
        if r["Properties"]["EventPattern"]["source"] == ["aws.s3"]
    ]
    assert upload["EventPattern"]["detail"]["object"]["key"] == [{"wildcard": "incoming/glue_workflow/*.csv"}]
    [to_inbox] = upload["Targets"]
    assert to_inbox["Arn"] == {"Fn::GetAtt": [inbox, "Arn"]} and to_inbox["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}
    assert to_inbox["RetryPolicy"] == {"MaximumRetryAttempts": 8, "MaximumEventAgeInSeconds": 21600}
    assert "notifyEvent" not in json.dumps(scheduled_template), "no EVENT trigger to notify, so no role that may"


def test_the_pending_check_gets_the_inbox_the_prefix_and_the_ledger_and_may_stop_only_its_workflows_runs(
    scheduled_template: dict[str, Any],
) -> None:
    lid, job = _pending_check(scheduled_template)
    props = job["Properties"]
    arguments = props["DefaultArguments"]
    assert key(arguments["--source_listing_prefix"]).endswith('/incoming/glue_workflow/"]]}')
    _, inbox = queues(scheduled_template)
    assert arguments["--inbox_queue_url"] == {"Ref": inbox}
    ledger_arguments_are_set(arguments)
    assert props["Command"]["Name"] == "pythonshell" and props["MaxRetries"] == 0 and props["Timeout"] == 10
    assert key(arguments["--extra-py-files"]).count(".py") == 3  # workflow_inputs, upload_ledger, pipeline_plan (as assets)
    role = props["Role"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in resources(scheduled_template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    actions = {action for s in statements for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {
        "glue:StopWorkflowRun",
        "glue:PutWorkflowRunProperties",
        "sqs:ReceiveMessage",
        "sqs:GetQueueAttributes",
        "dynamodb:Query",
    } <= actions
    assert not {"sqs:DeleteMessage", "dynamodb:UpdateItem", "glue:StartCrawler", "glue:StartJobRun"} & actions, "it takes nothing"
    [stop] = [s for s in statements if "glue:StopWorkflowRun" in key(s["Action"])]
    [workflow] = resources(scheduled_template, "AWS::Glue::Workflow")
    assert key({"Ref": workflow}) in key(stop["Resource"]) and "*" not in key(stop["Resource"]).replace('"*"', "")


def test_the_pending_check_reports_its_own_failure_but_not_the_stop_of_an_empty_run(scheduled_template: dict[str, Any]) -> None:
    lid, _ = _pending_check(scheduled_template)
    [rule] = [r for r in failure_rules(scheduled_template).values() if r["EventPattern"]["detail"].get("jobName") == [{"Ref": lid}]]
    assert rule["EventPattern"]["detail"]["state"] == ["FAILED", "TIMEOUT", "ERROR"]  # STOPPED: an empty run stopped itself
    assert '\\"failed_step\\":\\"Check\\"' in key(rule["Targets"][0]["InputTransformer"]["InputTemplate"])
    [runs_failed] = [
        a["Properties"] for a in resources(scheduled_template, "AWS::CloudWatch::Alarm").values() if "Metrics" in a["Properties"]
    ]
    counted = {m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"] for m in runs_failed["Metrics"] if "MetricStat" in m}
    assert counted == set(failure_rules(scheduled_template)) and len(counted) == 4


def test_the_scheduled_stack_passes_cfn_lint(scheduled_template: dict[str, Any]) -> None:
    matches = lint(json.dumps(scheduled_template), config=ManualArgs(regions=["eu-west-1"]))
    assert [f"{m.rule.id} {m.message}" for m in matches if m.rule.id.startswith("E")] == []


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("rate(2 minutes)", "schedule='rate(2 minutes)': runs more often than every 5 minutes"),
        ("every hour", "schedule='every hour': use cron("),
        ("rate(90 minutes)", "schedule='rate(90 minutes)': rate(90 minutes) has no exact Glue cron form"),
    ],
)
def test_a_schedule_glue_cannot_run_is_refused_naming_the_argument(synthesized: Any, schedule: str, message: str) -> None:
    stateful = next(s for s in synthesized.stages if s.stage_name == ENV).stateful
    props = {name: getattr(stateful, name) for name in ("storage", "catalog", "clean_job", "target", "alerting", "ledger")}
    with pytest.raises(PipelinePropsError, match=re.escape(message)):
        GlueWorkflowPipeline(cdk.Stack(cdk.App(), "Scratch"), "Pipeline", **props, schedule=schedule, landing_prefix="incoming/scratch/")


def test_a_schedule_in_another_time_zone_is_refused_glue_runs_utc_only(synthesized: Any) -> None:
    from pipeline_constructs.schedules import Schedule

    stateful = next(s for s in synthesized.stages if s.stage_name == ENV).stateful
    props = {name: getattr(stateful, name) for name in ("storage", "catalog", "clean_job", "target", "alerting", "ledger")}
    paris = Schedule("cron(0 6 * * ? *)", "Europe/Paris")
    with pytest.raises(PipelinePropsError, match="Glue schedules run in UTC only"):
        GlueWorkflowPipeline(cdk.Stack(cdk.App(), "Scratch"), "Pipeline", **props, schedule=paris, landing_prefix="incoming/scratch_paris/")
    form = GlueWorkflowPipeline(
        cdk.Stack(cdk.App(), "Scratch"), "Pipeline", **props, schedule="rate(1 day)", landing_prefix="incoming/scratch_daily/"
    )
    assert form.schedule_expression == "cron(0 0 * * ? *)" and form.event_trigger is None and form.workflow_target is None


def test_runs_succeeded_counts_what_each_run_publishes_not_the_matches_of_a_rule_without_target(
    web_orders: tuple[GlueWorkflowPipeline, dict[str, Any]],
) -> None:
    """metric_runs_succeeded() names the metric the form's load job publishes at the end of a run (run with the load
    job's synthesized arguments and the workflow name Glue passes), not AWS/Events MatchedEvents of a rule with no
    target, which EventBridge may never publish; and no rule without a target is left."""
    form, template = web_orders
    stack = cdk.Stack.of(form)
    metric = form.metric_runs_succeeded()
    dimensions = {name: stack.resolve(value) for name, value in metric.dimensions.items()}
    assert (metric.namespace, metric.metric_name) != ("AWS/Events", "MatchedEvents"), "counts the matches of a rule"
    from pipeline_constructs.runtime.glue_load_job import run_metric_data

    [load_job] = [r for r in resources(template, "AWS::Glue::Job").values() if r["Properties"]["Command"]["Name"] == "pythonshell"]
    arguments = {key.removeprefix("--"): value for key, value in load_job["Properties"]["DefaultArguments"].items()}
    workflow = {"Ref": stack.get_logical_id(form.workflow.node.default_child)}
    [datum] = run_metric_data({**arguments, "WORKFLOW_NAME": "the-workflow"})
    assert (arguments["metrics_namespace"], datum["MetricName"]) == (metric.namespace, metric.metric_name)
    published = {d["Name"]: d["Value"] for d in datum["Dimensions"]}
    assert published == {"Dataset": "web_orders", "WorkflowName": "the-workflow"}
    assert dimensions == {"Dataset": "web_orders", "WorkflowName": workflow}  # Glue's --WORKFLOW_NAME is this workflow's
    assert all(r["Properties"].get("Targets") for r in resources(template, "AWS::Events::Rule").values())
    statements = [
        s
        for r in resources(template, "AWS::IAM::Policy").values()
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if "cloudwatch:PutMetricData" in json.dumps(s["Action"])
    ]
    assert statements and all(s["Condition"] == {"StringEquals": {"cloudwatch:namespace": "WebShop/Orders"}} for s in statements)
