"""The Redshift Serverless target (RedshiftTarget) as synthesized for staging (cdk.json: load_target [athena, redshift]).

cdk-nag has no rule for Redshift Serverless, so the security settings are asserted here: no public access, enhanced VPC
routing, require_ssl, KMS encryption, the admin password managed in Secrets Manager under the customer key, audit logs,
a security group that admits only itself, a COPY role that reads only the run output. The session's whole-app synth ran
cdk-nag (an open finding fails it).
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk.assertions import Template

from pipeline_constructs.catalog import PipelineCatalog
from pipeline_constructs.clean_job import CleanJob
from pipeline_constructs.contract import DatasetContract
from pipeline_constructs.storage import PipelineStorage
from pipeline_constructs.targets.redshift import RedshiftTarget
from pipeline_constructs.validation import PipelinePropsError
from stacks.config import parse_environment
from stacks.stateful_stack import CONTRACT_PATH
from tests.cdk_app import cdk_context


@pytest.fixture(scope="module")
def stateful(templates: dict[tuple[str, str], dict[str, Any]]) -> Template:
    return Template.from_json(templates[("staging", "Stateful")])


def _one(template: Template, resource_type: str) -> tuple[str, dict[str, Any]]:
    [(logical_id, resource)] = template.find_resources(resource_type).items()
    return logical_id, resource


def test_each_environment_builds_the_targets_it_loads_and_no_other(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    """A Redshift namespace where cdk.json's load_target names redshift, an Athena workgroup where it names athena
    (staging names both), each in the Stateful stack only."""
    for env, settings in cdk_context()["pipeline:environments"].items():
        loads = parse_environment(env, settings).load_targets
        for stack in {stack for (e, stack) in templates if e == env}:
            found = Template.from_json(templates[(env, stack)])
            namespaces = len(found.find_resources("AWS::RedshiftServerless::Namespace"))
            workgroups = len(found.find_resources("AWS::Athena::WorkGroup"))
            in_stateful = stack == "Stateful"
            assert namespaces == int(in_stateful and "redshift" in loads), (env, stack)
            assert workgroups == int(in_stateful and "athena" in loads), (env, stack)


def test_workgroup_is_private_with_enhanced_vpc_routing_and_ssl_required(stateful: Template) -> None:
    _, workgroup = _one(stateful, "AWS::RedshiftServerless::Workgroup")
    props = workgroup["Properties"]
    assert props["PubliclyAccessible"] is False
    assert props["EnhancedVpcRouting"] is True
    assert {"ParameterKey": "require_ssl", "ParameterValue": "true"} in props["ConfigParameters"]
    assert props["BaseCapacity"] == 8  # cdk.json staging redshift_base_capacity
    assert len(props["SubnetIds"]) == 3
    assert all("PrivateSubnet" in json.dumps(s) for s in props["SubnetIds"])
    assert workgroup["DeletionPolicy"] == "Retain"


def test_namespace_is_kms_encrypted_with_a_managed_admin_secret_and_audit_logs(stateful: Template) -> None:
    key_id, _ = _redshift_key(stateful)  # its own key, rotated
    _, namespace = _one(stateful, "AWS::RedshiftServerless::Namespace")
    props = namespace["Properties"]
    assert props["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert props["ManageAdminPassword"] is True
    assert props["AdminPasswordSecretKmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert "AdminUserPassword" not in props
    assert sorted(props["LogExports"]) == ["connectionlog", "useractivitylog", "userlog"]
    assert props["DefaultIamRoleArn"] in props["IamRoles"]
    assert namespace["DeletionPolicy"] == "Retain"


def _redshift_key(template: Template) -> tuple[str, dict[str, Any]]:
    [(logical_id, key)] = [(k, v) for k, v in template.find_resources("AWS::KMS::Key").items() if "Redshift" in k]
    assert key["Properties"]["EnableKeyRotation"] is True
    return logical_id, key


def test_security_group_admits_only_itself(stateful: Template) -> None:
    [(group_id, group)] = [
        (k, v) for k, v in stateful.find_resources("AWS::EC2::SecurityGroup").items() if "Redshift" in v["Properties"]["GroupDescription"]
    ]
    assert "SecurityGroupIngress" not in group["Properties"]
    ingress = [
        r["Properties"]
        for r in stateful.find_resources("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group_id, "GroupId"]}
    ]
    assert ingress == [
        {
            "IpProtocol": "tcp",
            "FromPort": 5439,
            "ToPort": 5439,
            "GroupId": {"Fn::GetAtt": [group_id, "GroupId"]},
            "SourceSecurityGroupId": {"Fn::GetAtt": [group_id, "GroupId"]},
            "Description": "Redshift from members of this group only",
        }
    ]
    egress = group["Properties"]["SecurityGroupEgress"]
    assert [(e["FromPort"], e["ToPort"]) for e in egress] == [(443, 443)]


def test_copy_role_reads_and_decrypts_only_the_run_output(stateful: Template) -> None:
    [(role_id, role)] = [(k, v) for k, v in stateful.find_resources("AWS::IAM::Role").items() if "RedshiftTargetCopyRole" in k]
    principals = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
    assert sorted(principals) == ["redshift-serverless.amazonaws.com", "redshift.amazonaws.com"]
    [policy] = [p for p in stateful.find_resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    actions = sorted({a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])})
    assert actions == ["kms:Decrypt", "kms:DescribeKey", "s3:GetBucketLocation", "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"]
    objects = [s for s in statements if "s3:GetObject" in s["Action"]]
    assert all("/retail_sales/runs/*" in json.dumps(s["Resource"]) for s in objects)


def test_load_policy_grants_iam_credentials_on_the_workgroup_and_own_statements_only(stateful: Template) -> None:
    [policy] = [p for k, p in stateful.find_resources("AWS::IAM::ManagedPolicy").items() if "RedshiftTarget" in k]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    workgroup_arn = {"Fn::GetAtt": [_one(stateful, "AWS::RedshiftServerless::Workgroup")[0], "Workgroup.WorkgroupArn"]}
    by_resource = {json.dumps(s["Resource"]): s for s in statements}
    on_workgroup = by_resource[json.dumps(workgroup_arn)]
    assert sorted(on_workgroup["Action"]) == ["redshift-data:BatchExecuteStatement", "redshift-serverless:GetCredentials"]
    on_statements = by_resource['"*"']
    assert sorted(on_statements["Action"]) == ["redshift-data:CancelStatement", "redshift-data:DescribeStatement"]
    assert on_statements["Condition"] == {"StringEquals": {"redshift-data:statement-owner-iam-userid": "${aws:userid}"}}
    assert "secretsmanager" not in json.dumps(statements)


def test_the_state_machine_role_gets_the_load_policy(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    sfn = Template.from_json(templates[("staging", "StepFunctions")])
    roles = [
        r for r in sfn.find_resources("AWS::IAM::Role").values() if "states" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])
    ]
    assert any("LoadPolicy" in json.dumps(r["Properties"].get("ManagedPolicyArns", [])) for r in roles)


# --- validation on a small standalone stack -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pieces() -> dict[str, Any]:
    stack = cdk.Stack(cdk.App(), "Target", env=cdk.Environment(region="eu-west-1"))
    storage = PipelineStorage(stack, "Storage")
    catalog = PipelineCatalog(stack, "Catalog", storage=storage, database_name="retail_test")
    job = CleanJob(stack, "Job", storage=storage, catalog=catalog, contract=DatasetContract.from_file(CONTRACT_PATH))
    return {"stack": stack, "storage": storage, "job": job}


def _vpc(stack: cdk.Stack, construct_id: str, zones: list[str]) -> ec2.Vpc:
    return ec2.Vpc(
        stack,
        construct_id,
        availability_zones=zones,
        nat_gateways=0,
        subnet_configuration=[ec2.SubnetConfiguration(name="Private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)],
    )


def test_subnets_in_two_zones_are_rejected(pieces: dict[str, Any]) -> None:
    vpc = _vpc(pieces["stack"], "TwoZones", ["eu-west-1a", "eu-west-1b"])
    with pytest.raises(PipelinePropsError, match=r"subnets=\['eu-west-1a', 'eu-west-1b'\]: .*3 availability zones"):
        RedshiftTarget(pieces["stack"], "TwoZoneTarget", storage=pieces["storage"], clean_job=pieces["job"], vpc=vpc)


@pytest.mark.parametrize("capacity", [0, 6, 12, 2048])
def test_base_capacity_must_be_4_or_a_multiple_of_8(pieces: dict[str, Any], capacity: int) -> None:
    vpc = _vpc(pieces["stack"], f"Vpc{capacity}", ["eu-west-1a", "eu-west-1b", "eu-west-1c"])
    with pytest.raises(PipelinePropsError, match=rf"base_capacity={capacity}: "):
        RedshiftTarget(
            pieces["stack"], f"Target{capacity}", storage=pieces["storage"], clean_job=pieces["job"], vpc=vpc, base_capacity=capacity
        )


def test_max_capacity_below_base_is_rejected(pieces: dict[str, Any]) -> None:
    vpc = _vpc(pieces["stack"], "VpcMax", ["eu-west-1a", "eu-west-1b", "eu-west-1c"])
    with pytest.raises(PipelinePropsError, match=r"max_capacity=8: must be at least base_capacity \(16\)"):
        RedshiftTarget(
            pieces["stack"], "TargetMax", storage=pieces["storage"], clean_job=pieces["job"], vpc=vpc, base_capacity=16, max_capacity=8
        )
