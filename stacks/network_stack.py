"""The network of one environment, created only where an enabled piece needs a VPC (Redshift now, MWAA later)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack

from constructs import Construct
from pipeline_constructs.acknowledgements import acknowledge
from pipeline_constructs.network import MWAA_MIN_AZS, REDSHIFT_SERVERLESS_MIN_AZS, PipelineNetwork, mwaa_interface_endpoints

from .config import EnvironmentConfig
from .step_functions_stack import _retention


def needs_network(config: EnvironmentConfig) -> bool:
    """True when an enabled piece of this environment runs inside a VPC."""
    return "redshift" in config.load_targets or "mwaa" in config.forms


class NetworkStack(Stack):
    """Private subnets in the configured availability zones, the S3 gateway endpoint and encrypted flow logs."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, **kwargs) -> None:
        self._configured_zones = list(config.availability_zones)
        super().__init__(scope, construct_id, **kwargs)
        if self._configured_zones:
            acknowledge(
                self,
                "CloudFormation-Validate::W3010",
                "The zones are named in the environment config on purpose: Redshift Serverless needs subnets in 3 given zones "
                "and synth makes no availability-zone lookups.",
            )
        min_azs = REDSHIFT_SERVERLESS_MIN_AZS if "redshift" in config.load_targets else MWAA_MIN_AZS
        self.network = PipelineNetwork(
            self,
            "Network",
            availability_zones=config.availability_zones or None,
            min_availability_zones=min_azs,
            nat_gateways=config.nat_gateways,
            # Without NAT, MWAA and its DAG reach AWS through interface endpoints; with NAT they are not needed.
            interface_endpoints=mwaa_interface_endpoints(config.load_targets)
            if "mwaa" in config.forms and config.nat_gateways == 0
            else (),
            flow_log_retention=_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY if config.destroy_on_removal else RemovalPolicy.RETAIN,
        )
        self.vpc = self.network.vpc

    @property
    def availability_zones(self) -> list[str]:
        """The configured zones, when there are any: without this override, ec2.Vpc would ask for the stack's zones,
        which for a stack with an account and a region is a context lookup at synth (and AWS credentials)."""
        if self._configured_zones:
            return list(self._configured_zones)
        return super().availability_zones
