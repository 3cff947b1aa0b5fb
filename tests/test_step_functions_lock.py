"""The Step Functions form's load lock (forms/step_functions_lock.py): loads into one target table run one at a time.

The synthesized state machines (the pipeline and its failure reporter) run in the ASL interpreter; what they send to
the lock is replayed on moto's DynamoDB through the lock function's own code (runtime/load_lock) at chosen clock
times, and moto's answers are fed back to the interpreter, so DynamoDB's conditions decide who holds the lock.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from aws_cdk.assertions import Template

from pipeline_constructs.forms.step_functions_lock import FIRST_WAIT, LOCK_HELD_ERROR, MAX_WAIT, lease_seconds
from pipeline_constructs.runtime.load_lock.load_lock import LoadLockHeld, take
from pipeline_constructs.runtime.pipeline_plan import DEFAULT_TIMINGS, LOAD
from pipeline_constructs.runtime.upload_ledger import PARTITION_KEY, SORT_KEY, STATE_INDEX, STATES
from stacks.config import parse_environment
from tests.asl_runner import (
    LOCK_HELD,
    ExecutionResult,
    definition_from_template,
    lock_taken,
    replay_ledger_writes,
    run_failure_report,
    run_state_machine,
)
from tests.cdk_app import cdk_context
from tests.deployed_environment import FakeDeployment
from tests.ledger_table import create_ledger_table
from tests.test_pipeline_ops import SFN_PREFIX, loaded, run_json, upload
from tests.test_step_functions_form import CONTEXT, EXECUTION_ARN, QUERY_SUCCEEDED, RUN_ID, UPLOAD_EVENT, query, scripts

pytestmark = pytest.mark.usefixtures("fake_aws")
T0 = datetime(2026, 11, 25, 9, 20, tzinfo=UTC)
LEASE = DEFAULT_TIMINGS[LOAD].timeout_seconds * (DEFAULT_TIMINGS[LOAD].retries + 1)
CCF = {"error": "DynamoDB.ConditionalCheckFailedException", "cause": "The conditional request failed"}
OTHER_RUN = "run-43"
OTHER_ARN = EXECUTION_ARN.replace(RUN_ID, OTHER_RUN)
OTHER_CONTEXT = {"Execution": {"Name": OTHER_RUN, "Id": OTHER_ARN}}
OTHER_EVENT = copy.deepcopy(UPLOAD_EVENT)
OTHER_EVENT["detail"]["object"].update(key="incoming/step_functions/2026/11/store-43.csv", **{"version-id": "v-43"})


@pytest.fixture(scope="module")
def template(templates: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """dev's StepFunctions stack (Athena); its failure reporter is conftest's `reporter`."""
    return templates[("dev", "StepFunctions")]


@pytest.fixture(scope="module")
def definition(template: dict[str, Any]) -> dict[str, Any]:
    return definition_from_template(template)


@pytest.fixture
def ledger() -> tuple[Any, str]:
    client = boto3.client("dynamodb")
    return client, create_ledger_table(client)


def lock_items(ledger: tuple[Any, str]) -> list[dict[str, Any]]:
    client, table = ledger
    return [item for item in client.scan(TableName=table)["Items"] if item[PARTITION_KEY]["S"].startswith("lock:")]


def holder(ledger: tuple[Any, str]) -> str | None:
    items = lock_items(ledger)
    assert len(items) <= 1, items
    return items[0]["owner"]["S"] if items else None


def take_as(ledger: tuple[Any, str], result: ExecutionResult, at: datetime) -> dict[str, str]:
    """The execution's (last) Take Load Lock sent to moto by the lock function's own code at `at`: its answer, as the
    Lambda integration gives it to the state machine, or LoadLockHeld."""
    client, table = ledger
    request = result.inputs_to("Take Load Lock")[-1]["Payload"]
    return take(client, {**request, "TableName": table}, at)


def test_a_load_takes_the_lock_before_its_query_and_releases_it_after_the_load(definition: dict[str, Any], ledger: tuple[Any, str]) -> None:
    result = run_state_machine(definition, UPLOAD_EVENT, scripts(), context=CONTEXT)
    assert result.status == "SUCCEEDED", result
    order = [call["state"] for call in result.calls]
    assert order.index("Take Load Lock") < order.index("Start Load Query") < order.index("Release Load Lock") < order.index("Record Loaded")
    [taken] = result.inputs_to("Take Load Lock")
    assert taken["Payload"]["owner"] == EXECUTION_ARN and taken["Payload"]["lease_seconds"] == LEASE
    assert taken["Payload"]["Key"] == {PARTITION_KEY: {"S": "lock:athena:retail_dev.retail_sales"}, SORT_KEY: {"S": "load"}}

    client, table = ledger
    replay_ledger_writes(result, client, table, now=T0)  # the take on moto, then the conditional release
    assert lock_items(ledger) == []


def test_a_second_execution_cannot_take_the_lock_while_the_first_holds_it_and_does_not_load(
    definition: dict[str, Any], ledger: tuple[Any, str]
) -> None:
    first = run_state_machine(definition, UPLOAD_EVENT, scripts(), context=CONTEXT)
    second = run_state_machine(definition, OTHER_EVENT, scripts(), context=OTHER_CONTEXT)
    take_as(ledger, first, T0)
    with pytest.raises(LoadLockHeld, match=f"held by {RUN_ID}"):
        take_as(ledger, second, T0 + timedelta(seconds=20))
    assert holder(ledger) == EXECUTION_ARN

    # What moto said, given back to the second execution: refused twice, then taken (after the first released it).
    waiting = run_state_machine(
        definition, OTHER_EVENT, scripts(Take_Load_Lock=[LOCK_HELD, LOCK_HELD, lock_taken(OTHER_ARN)]), context=OTHER_CONTEXT
    )
    assert waiting.status == "SUCCEEDED", waiting
    assert [call["attempt"] for call in waiting.calls_to("Take Load Lock")] == [1, 2, 3]
    order = [call["state"] for call in waiting.calls]
    assert order.index("Start Load Query") > len(order) - 1 - order[::-1].index("Take Load Lock")  # no query before the lock

    client, table = ledger
    replay_ledger_writes(first, client, table, now=T0 + timedelta(seconds=40))  # the first's renewal and release
    assert holder(ledger) is None
    take_as(ledger, waiting, T0 + timedelta(seconds=45))
    assert holder(ledger) == OTHER_ARN


def test_a_load_that_never_gets_the_lock_fails_at_the_wait_cap_without_loading(definition: dict[str, Any]) -> None:
    result = run_state_machine(definition, UPLOAD_EVENT, scripts(Take_Load_Lock=[LOCK_HELD]), context=CONTEXT)
    assert result.status == "FAILED" and result.error == "LoadLockTimeout", result
    assert result.states_entered[-1] == "Load Lock Wait Cap Reached"
    assert [name for name in result.states_entered if name in definition["States"]][-1] == "Load Into Athena"  # redrive resumes there
    take_state = definition["States"]["Load Into Athena"]["Branches"][0]["States"]["Take Load Lock"]
    [waits] = [retrier for retrier in take_state["Retry"] if retrier["ErrorEquals"] == [LOCK_HELD_ERROR]]
    assert len(result.calls_to("Take Load Lock")) == waits["MaxAttempts"] + 1
    assert result.calls_to("Start Load Query") == []


def test_the_wait_for_the_lock_outlasts_a_lease_and_the_lease_is_the_load_plan(definition: dict[str, Any]) -> None:
    """Lease = the load's timeout x its attempts (runtime/pipeline_plan.py); the retries wait two leases on average
    (full jitter waits half the backoff on average), so a waiter outlasts a holder that died holding the lock."""
    take_state = definition["States"]["Load Into Athena"]["Branches"][0]["States"]["Take Load Lock"]
    assert take_state["Parameters"]["Payload"]["lease_seconds"] == lease_seconds(DEFAULT_TIMINGS[LOAD].timeout_seconds) == LEASE == 5400
    [waits] = [retrier for retrier in take_state["Retry"] if retrier["ErrorEquals"] == [LOCK_HELD_ERROR]]
    assert (waits["JitterStrategy"], waits["BackoffRate"], waits["IntervalSeconds"], waits["MaxDelaySeconds"]) == (
        "FULL",
        2,
        FIRST_WAIT.to_seconds(),
        MAX_WAIT.to_seconds(),
    )
    expected = sum(min(FIRST_WAIT.to_seconds() * 2**n, MAX_WAIT.to_seconds()) / 2 for n in range(waits["MaxAttempts"]))
    assert 2 * LEASE <= expected < 2 * LEASE + MAX_WAIT.to_seconds()
    assert expected < definition["TimeoutSeconds"]


def test_a_lease_that_ended_is_taken_over_and_the_late_release_of_the_old_holder_changes_nothing(
    definition: dict[str, Any], ledger: tuple[Any, str]
) -> None:
    # The first execution took the lock, then died without a release (no status-change event reached the reporter).
    first = run_state_machine(definition, UPLOAD_EVENT, scripts(Release_Load_Lock=[CCF]), context=CONTEXT)
    second = run_state_machine(definition, OTHER_EVENT, scripts(), context=OTHER_CONTEXT)
    take_as(ledger, first, T0)
    with pytest.raises(LoadLockHeld):
        take_as(ledger, second, T0 + timedelta(seconds=LEASE))  # the lease's last second
    answer = take_as(ledger, second, T0 + timedelta(seconds=LEASE + 1))
    assert holder(ledger) == OTHER_ARN and answer["owner"] == OTHER_ARN

    client, table = ledger
    [release] = first.inputs_to("Release Load Lock")
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.delete_item(**{**release, "TableName": table})
    assert holder(ledger) == OTHER_ARN
    # ...and the first execution, told so by DynamoDB, still records its load and succeeds.
    assert first.status == "SUCCEEDED" and first.states_entered[-2:] == ["Record Loaded", "Loaded"]


def test_a_retried_load_keeps_and_renews_its_own_lock(definition: dict[str, Any], ledger: tuple[Any, str]) -> None:
    conflict = query("FAILED", "ICEBERG_COMMIT_ERROR: a concurrent commit (another form loading the same table)")
    result = run_state_machine(definition, UPLOAD_EVENT, scripts(Get_Load_Query=[conflict, QUERY_SUCCEEDED]), context=CONTEXT)
    assert result.status == "SUCCEEDED", result
    assert len(result.calls_to("Take Load Lock")) == 2  # the Parallel's retry takes the lock again
    take_as(ledger, result, T0)
    renewed = take_as(ledger, result, T0 + timedelta(minutes=10))
    assert renewed["lease_expires_at"] == (T0 + timedelta(minutes=10, seconds=LEASE)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_run_that_loads_nothing_takes_no_lock(definition: dict[str, Any]) -> None:
    result = run_state_machine(definition, UPLOAD_EVENT, scripts(Find_Curated_Rows=[{"result": {"KeyCount": 0}}]), context=CONTEXT)
    assert result.status == "SUCCEEDED"
    assert result.calls_to("Take Load Lock") == [] and result.calls_to("Release Load Lock") == []


def failed_load(definition: dict[str, Any], event: dict[str, Any], context: dict[str, Any]) -> ExecutionResult:
    failed = query("FAILED", "TABLE_NOT_FOUND: Table 'retail_sales' does not exist")
    result = run_state_machine(definition, event, scripts(Get_Load_Query=[failed]), context=context)
    assert result.status == "FAILED" and result.calls_to("Release Load Lock") == [], result
    return result


def test_the_failure_reporter_releases_the_lock_of_its_own_execution_only_and_a_repeated_event_is_harmless(
    definition: dict[str, Any], reporter: dict[str, Any], ledger: tuple[Any, str]
) -> None:
    client, table = ledger
    holding = failed_load(definition, UPLOAD_EVENT, CONTEXT)  # failed at the load: it still holds the lock
    take_as(ledger, holding, T0)
    # Another execution failed at its clean job (it never took the lock): its report's release is refused by DynamoDB.
    other = run_state_machine(
        definition, OTHER_EVENT, scripts(Run_Clean_Job=[{"error": "States.TaskFailed", "cause": "{}"}]), context=OTHER_CONTEXT
    )
    other_report = run_failure_report(reporter, other, OTHER_EVENT, name=OTHER_RUN, execution_arn=OTHER_ARN)
    [release] = other_report.inputs_to("Release Load Lock")
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.delete_item(**{**release, "TableName": table})
    assert holder(ledger) == EXECUTION_ARN
    refused = run_failure_report(
        reporter, other, OTHER_EVENT, name=OTHER_RUN, execution_arn=OTHER_ARN, answers={"Release Load Lock": [CCF]}
    )
    assert len(refused.calls_to("Notify Failure")) == 1  # the refusal changes nothing in the report

    # The holder's report deletes it.
    report = run_failure_report(reporter, holding, UPLOAD_EVENT, name=RUN_ID, execution_arn=EXECUTION_ARN)
    assert report.states_entered[0] == "Release Load Lock" and len(report.calls_to("Notify Failure")) == 1
    [again] = report.inputs_to("Release Load Lock")
    client.delete_item(**{**again, "TableName": table})
    assert holder(ledger) is None

    # A repeated status-change event: the release is refused (nothing to delete), the report goes on as before.
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.delete_item(**{**again, "TableName": table})
    repeated = run_failure_report(
        reporter, holding, UPLOAD_EVENT, name=RUN_ID, execution_arn=EXECUTION_ARN, answers={"Release Load Lock": [CCF]}
    )
    assert repeated.status == "SUCCEEDED" and "Read Execution Input" in repeated.states_entered

    # A lock another execution took in the meantime is not the repeated report's to delete.
    take(client, {**holding.inputs_to("Take Load Lock")[-1]["Payload"], "TableName": table, "owner": OTHER_ARN}, T0)
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.delete_item(**{**again, "TableName": table})
    assert holder(ledger) == OTHER_ARN


def test_a_release_error_in_the_reporter_still_reports_the_failure(definition: dict[str, Any], reporter: dict[str, Any]) -> None:
    holding = failed_load(definition, UPLOAD_EVENT, CONTEXT)
    outage = {"error": "DynamoDB.InternalServerErrorException", "cause": "Internal server error"}
    report = run_failure_report(
        reporter, holding, UPLOAD_EVENT, name=RUN_ID, execution_arn=EXECUTION_ARN, answers={"Release Load Lock": [outage]}
    )
    assert report.status == "SUCCEEDED" and len(report.calls_to("Release Load Lock")) == 6  # 1 + 5 retries, then on
    assert len(report.calls_to("Notify Failure")) == 1


def test_the_lock_item_has_no_state_so_the_ledger_index_and_pipeline_ops_never_see_it(
    templates: dict[tuple[str, str], dict[str, Any]], definition: dict[str, Any]
) -> None:
    dev = FakeDeployment(templates, "dev")
    client = boto3.client("dynamodb")
    table = dev.output("Stateful", "LedgerTableName")
    loaded(dev, upload(dev, f"{SFN_PREFIX}2026-12-04/store-1.csv"), "run-ok")
    held = run_state_machine(definition, UPLOAD_EVENT, scripts(), context=CONTEXT)
    now = datetime.now(UTC)
    take(client, {**held.inputs_to("Take Load Lock")[0]["Payload"], "TableName": table}, now - timedelta(days=1))  # a stale lock

    [item] = [i for i in client.scan(TableName=table)["Items"] if i[PARTITION_KEY]["S"].startswith("lock:")]
    assert "state" not in item and "updated_at" not in item and int(item["expires_at"]["N"]) < (now + timedelta(days=1)).timestamp()
    for state in STATES:
        answer = client.query(
            TableName=table,
            IndexName=STATE_INDEX,
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":s": {"S": state}},
        )
        assert all(not i[PARTITION_KEY]["S"].startswith("lock:") for i in answer["Items"])
    code, status = run_json(dev, "status")
    assert code == 0 and status["counts"]["loaded"] == 1 and sum(status["counts"].values()) == 1 and not status["stuck"]
    code, report = run_json(dev, "reconcile")
    assert code == 0 and report["checked"] == 1 and report["findings"] == [], report


def test_redshift_loads_take_the_lock_of_their_table_inside_the_load(
    redshift_only_templates: dict[tuple[str, str], dict[str, Any]],
) -> None:
    definition = definition_from_template(redshift_only_templates[("staging", "StepFunctions")])
    branch = definition["States"]["Load Into Redshift"]["Branches"][0]["States"]
    assert branch["Take Load Lock"]["Next"] == "Start Load Statements"
    assert (
        branch["Take Load Lock"]["Parameters"]["Payload"]["Key"][PARTITION_KEY]["S"] == "lock:redshift:retail_staging.public.retail_sales"
    )
    assert definition["States"]["Load Into Redshift"]["Next"] == "Release Load Lock"


@pytest.mark.parametrize("env", ["dev", "staging"])
def test_the_lock_function_and_the_releases_may_write_the_lock_items_only(
    templates: dict[tuple[str, str], dict[str, Any]], env: str
) -> None:
    """One lock item per target the environment loads (staging loads both), and no other item, in every grant that
    may write one: the lock function takes (UpdateItem), each release deletes (DeleteItem)."""
    targets = parse_environment(env, cdk_context()["pipeline:environments"][env]).load_targets
    tables = {"athena": f"retail_{env}.retail_sales", "redshift": f"retail_{env}.public.retail_sales"}
    expected = {f"lock:{target}:{tables[target]}" for target in targets}
    assertions = Template.from_json(templates[(env, "StepFunctions")])
    [function] = [
        f for f in assertions.find_resources("AWS::Lambda::Function").values() if f["Properties"]["Handler"] == "load_lock.handler"
    ]
    assert function["Properties"]["Timeout"] == 10 and function["Properties"]["TracingConfig"] == {"Mode": "Active"}
    grants: dict[str, list[str]] = {}
    granted: set[str] = set()
    for policy_id, policy in assertions.find_resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if set(actions) & {"dynamodb:DeleteItem", "dynamodb:PutItem"} or ("dynamodb:UpdateItem" in actions and "LoadLock" in policy_id):
                keys = statement["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]
                assert set(keys) <= expected, (policy_id, statement)
                granted |= set(keys)
                grants.setdefault(policy_id, []).extend(actions)
    assert granted == expected
    assert sorted(grants.values()) == [["dynamodb:DeleteItem"], ["dynamodb:DeleteItem"], ["dynamodb:UpdateItem"]], grants
