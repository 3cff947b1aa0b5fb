"""A form's `target=`: one target, or a list loaded in parallel with at most one of each kind, refused by name otherwise."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2

from pipeline_constructs.catalog import PipelineCatalog
from pipeline_constructs.clean_job import CleanJob
from pipeline_constructs.contract import DatasetContract
from pipeline_constructs.network import mwaa_interface_endpoints
from pipeline_constructs.storage import PipelineStorage
from pipeline_constructs.targets.athena import AthenaTarget
from pipeline_constructs.targets.load_target import load_targets, target_name
from pipeline_constructs.targets.redshift import RedshiftTarget
from pipeline_constructs.validation import PipelinePropsError
from stacks.stateful_stack import CONTRACT_PATH


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    stack = cdk.Stack(cdk.App(), "Targets", env=cdk.Environment(region="eu-west-1"))
    storage = PipelineStorage(stack, "Storage")
    catalog = PipelineCatalog(stack, "Catalog", storage=storage, database_name="retail_test")
    job = CleanJob(stack, "Job", storage=storage, catalog=catalog, contract=DatasetContract.from_file(CONTRACT_PATH))
    vpc = ec2.Vpc(
        stack,
        "Vpc",
        availability_zones=["eu-west-1a", "eu-west-1b", "eu-west-1c"],
        nat_gateways=0,
        subnet_configuration=[ec2.SubnetConfiguration(name="Private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)],
    )
    athena = AthenaTarget(stack, "Athena", storage=storage, catalog=catalog, clean_job=job, workgroup_name="one")
    other_athena = AthenaTarget(stack, "OtherAthena", storage=storage, catalog=catalog, clean_job=job, workgroup_name="two")
    redshift = RedshiftTarget(stack, "Redshift", storage=storage, clean_job=job, vpc=vpc)
    return {"athena": athena, "other_athena": other_athena, "redshift": redshift}


def test_one_target_or_a_list_of_one_of_each_kind_comes_back_in_the_given_order(built: dict[str, Any]) -> None:
    athena, redshift = built["athena"], built["redshift"]
    assert load_targets(athena) == (athena,)
    assert load_targets([redshift, athena]) == (redshift, athena)
    assert [target_name(each) for each in load_targets((athena, redshift))] == ["athena", "redshift"]


def test_an_empty_list_a_kind_given_twice_or_something_else_is_refused_by_name(built: dict[str, Any]) -> None:
    with pytest.raises(PipelinePropsError, match=r"^target=\[\]: "):
        load_targets([])
    with pytest.raises(PipelinePropsError, match=r"^target=\['athena', 'athena'\]: athena is given twice"):
        load_targets([built["athena"], built["other_athena"]])
    with pytest.raises(PipelinePropsError, match=r"^target=str: use an AthenaTarget or a RedshiftTarget"):
        load_targets([built["athena"], "redshift"])


def _names(endpoints: list[ec2.InterfaceVpcEndpointAwsService]) -> list[str]:
    return [endpoint.short_name for endpoint in endpoints]


def test_mwaa_without_nat_reaches_every_target_it_loads_through_an_interface_endpoint() -> None:
    athena_only = _names(mwaa_interface_endpoints("athena"))
    assert "athena" in athena_only and "redshift-data" not in athena_only
    both = _names(mwaa_interface_endpoints(["athena", "redshift"]))
    assert {"athena", "redshift-data"} <= set(both)
    assert len(both) == len(athena_only) + 1
    with pytest.raises(PipelinePropsError, match=r"load_target=\['athena', 'bigquery'\]"):
        mwaa_interface_endpoints(["athena", "bigquery"])
