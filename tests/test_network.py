"""The network (PipelineNetwork, NetworkStack): created only where a piece needs a VPC, private by default.

Template assertions on staging's Network stack from the session's whole-app synth (which runs cdk-nag and fails on an open
finding), plus small standalone stacks for the NAT and interface-endpoint variants and for the validation errors.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

from pipeline_constructs.network import PipelineNetwork, mwaa_interface_endpoints
from pipeline_constructs.validation import PipelinePropsError
from stacks.config import ConfigError, parse_environment

ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


@pytest.fixture(scope="module")
def network(templates: dict[tuple[str, str], dict[str, Any]]) -> Template:
    return Template.from_json(templates[("staging", "Network")])


def test_only_environments_that_need_a_vpc_get_a_network_stack(templates: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert ("staging", "Network") in templates  # load_target: [athena, redshift], and MWAA
    assert ("dev", "Network") not in templates and ("prod", "Network") not in templates  # athena, no MWAA


def test_one_private_isolated_subnet_per_configured_zone_and_no_internet_route(network: Template) -> None:
    subnets = network.find_resources("AWS::EC2::Subnet")
    assert sorted(s["Properties"]["AvailabilityZone"] for s in subnets.values()) == ZONES
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets.values())
    assert all(tag in s["Properties"]["Tags"] for s in subnets.values() for tag in [{"Key": "aws-cdk:subnet-type", "Value": "Isolated"}])
    network.resource_count_is("AWS::EC2::NatGateway", 0)
    network.resource_count_is("AWS::EC2::InternetGateway", 0)
    network.resource_count_is("AWS::EC2::Route", 0)
    network.has_resource_properties("AWS::EC2::VPC", {"EnableDnsHostnames": True, "EnableDnsSupport": True})


def test_s3_is_reached_through_a_gateway_endpoint_on_every_private_route_table(network: Template) -> None:
    network.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {
            "VpcEndpointType": "Gateway",
            "ServiceName": Match.object_like({"Fn::Join": Match.array_with([Match.array_with([".s3"])])}),
            "RouteTableIds": Match.any_value(),
        },
    )
    endpoint = _gateway(network, "s3")
    assert len(endpoint["Properties"]["RouteTableIds"]) == 3
    # Redshift needs no interface endpoint; staging's MWAA form (no NAT) brings its own, Athena's and the Redshift
    # Data API's for its two load targets included (tests/test_mwaa_form.py).
    interface = network.find_resources("AWS::EC2::VPCEndpoint", {"Properties": {"VpcEndpointType": "Interface"}})
    assert len(interface) == len(mwaa_interface_endpoints(["athena", "redshift"]))


def _gateway(network: Template, service: str) -> dict[str, Any]:
    gateways = network.find_resources("AWS::EC2::VPCEndpoint", {"Properties": {"VpcEndpointType": "Gateway"}}).values()
    [endpoint] = [e for e in gateways if json.dumps(e["Properties"]["ServiceName"]).endswith(f'.{service}"]]}}')]
    return endpoint


def test_dynamodb_is_reached_through_a_gateway_endpoint_on_every_private_route_table(network: Template) -> None:
    """The upload ledger, from the MWAA DAG's tasks in private subnets without internet (gateway endpoints are free)."""
    endpoint = _gateway(network, "dynamodb")
    s3_routes = _gateway(network, "s3")["Properties"]["RouteTableIds"]
    assert endpoint["Properties"]["RouteTableIds"] == s3_routes and len(s3_routes) == 3
    assert "PolicyDocument" not in endpoint["Properties"]  # like the S3 gateway: IAM on the callers decides
    assert len(network.find_resources("AWS::EC2::VPCEndpoint", {"Properties": {"VpcEndpointType": "Gateway"}})) == 2


def test_flow_logs_capture_all_traffic_into_an_encrypted_log_group(network: Template) -> None:
    network.has_resource_properties(
        "AWS::EC2::FlowLog", {"ResourceType": "VPC", "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"}
    )
    network.has_resource_properties("AWS::Logs::LogGroup", {"KmsKeyId": Match.object_like({"Fn::GetAtt": Match.any_value()})})
    network.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_the_default_security_group_is_stripped_of_its_rules(network: Template) -> None:
    network.resource_count_is("Custom::VpcRestrictDefaultSG", 1)


def _stack(env: cdk.Environment | None = None) -> cdk.Stack:
    return cdk.Stack(cdk.App(), "Net", env=env if env is not None else cdk.Environment(region="eu-west-1"))


def test_nat_gateways_bring_public_subnets_and_private_subnets_with_egress() -> None:
    stack = _stack()
    PipelineNetwork(stack, "Network", availability_zones=ZONES, nat_gateways=1)
    template = Template.from_stack(stack)

    template.resource_count_is("AWS::EC2::NatGateway", 1)
    template.resource_count_is("AWS::EC2::InternetGateway", 1)
    template.resource_count_is("AWS::EC2::Subnet", 6)
    template.has_resource_properties("AWS::EC2::Route", {"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": Match.any_value()})


def test_interface_endpoints_use_private_dns_and_admit_https_from_the_vpc_only() -> None:
    stack = _stack()
    PipelineNetwork(stack, "Network", availability_zones=ZONES, interface_endpoints=[ec2.InterfaceVpcEndpointAwsService.STS])
    template = Template.from_stack(stack)

    template.has_resource_properties("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Interface", "PrivateDnsEnabled": True})
    [group] = [
        g
        for g in template.find_resources("AWS::EC2::SecurityGroup").values()
        if "Interface endpoints" in g["Properties"]["GroupDescription"]
    ]
    [rule] = group["Properties"]["SecurityGroupIngress"]
    assert rule["FromPort"] == rule["ToPort"] == 443
    assert rule["CidrIp"] == "10.40.0.0/16"  # the VPC's own range, not 0.0.0.0/0


def test_the_network_has_no_cdk_nag_findings_on_its_own() -> None:
    stack = _stack()
    PipelineNetwork(
        stack, "Network", availability_zones=ZONES, nat_gateways=1, interface_endpoints=[ec2.InterfaceVpcEndpointAwsService.STS]
    )
    violations = AwsSolutionsChecks().validate_scope(stack).violations
    assert [v.rule_name for v in violations] == []


def test_an_environment_agnostic_stack_has_too_few_zones_for_redshift() -> None:
    stack = cdk.Stack(cdk.App(), "Net")
    with pytest.raises(
        PipelinePropsError, match=r"availability_zones \(default: the stack's zones\)=\['<unresolved>', '<unresolved>'\]: 3"
    ):
        PipelineNetwork(stack, "Network", min_availability_zones=3)


def test_zones_of_another_region_are_rejected() -> None:
    with pytest.raises(PipelinePropsError, match=r"availability_zones=\['us-east-1a'.*'us-east-1a' is not a zone of eu-west-1"):
        PipelineNetwork(_stack(), "Network", availability_zones=["us-east-1a", "eu-west-1b", "eu-west-1c"])


def test_config_requires_three_zones_for_the_redshift_target() -> None:
    raw = {
        "region": "eu-west-1",
        "load_target": "redshift",
        "alarm_emails": ["a@example.com"],
        "availability_zones": ["eu-west-1a", "eu-west-1b"],
    }
    with pytest.raises(
        ConfigError, match=r"environments\.staging\.availability_zones=\['eu-west-1a', 'eu-west-1b'\]: .*3 availability zones"
    ):
        parse_environment("staging", raw)
    raw["availability_zones"] = ZONES
    assert parse_environment("staging", raw).availability_zones == tuple(ZONES)


def test_a_stack_with_an_account_names_its_zones_without_a_lookup(tmp_path) -> None:
    from stacks.network_stack import NetworkStack

    raw = {"region": "eu-west-1", "account": "123456789012", "load_target": "redshift", "alarm_emails": ["a@example.com"]}
    config = parse_environment("staging", {**raw, "availability_zones": ZONES})
    app = cdk.App(outdir=str(tmp_path))
    stack = NetworkStack(app, "Network", config=config, env=cdk.Environment(account="123456789012", region="eu-west-1"))
    app.synth()

    manifest = (tmp_path / "manifest.json").read_text()
    assert "availability-zones" not in manifest  # no context lookup for the account's zones
    subnets = Template.from_stack(stack).find_resources("AWS::EC2::Subnet")
    assert sorted(s["Properties"]["AvailabilityZone"] for s in subnets.values()) == ZONES
