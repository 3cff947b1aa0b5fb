"""The pipeline's network: a VPC of private subnets for the pieces that need one (Redshift Serverless, MWAA)."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy, Stack, Token, aws_ec2 as ec2, aws_kms as kms, aws_logs as logs

from constructs import Construct

from .keys import allow_cloudwatch_logs
from .validation import PipelinePropsError

# Redshift Serverless with enhanced VPC routing needs three subnets in three AZs; MWAA needs two private subnets.
REDSHIFT_SERVERLESS_MIN_AZS = 3
MWAA_MIN_AZS = 2
PRIVATE_SUBNET_GROUP = "Private"


def mwaa_interface_endpoints(load_target: str | Sequence[str]) -> list[ec2.InterfaceVpcEndpointAwsService]:
    """Interface endpoints a private MWAA environment without NAT needs: MWAA's own (airflow api/env/ops, SQS for its
    Celery queue, CloudWatch Logs and monitoring, KMS, ECR api/dkr for its images, STS), and what the DAG calls:
    Glue, SNS, and Athena and/or the Redshift Data API (`load_target`: one name or a list). S3 and DynamoDB (the
    upload ledger) go through the gateway endpoints."""
    targets = [load_target] if isinstance(load_target, str) else list(load_target)
    if not targets or any(target not in ("athena", "redshift") for target in targets):
        raise PipelinePropsError(f"load_target={load_target!r}: use 'athena', 'redshift' or a list of both")
    service = ec2.InterfaceVpcEndpointAwsService
    return [
        service.AIRFLOW_API,
        service.AIRFLOW_ENV,
        service.AIRFLOW_OPS,
        service.SQS,
        service.CLOUDWATCH_LOGS,
        service.CLOUDWATCH_MONITORING,
        service.KMS,
        service.ECR,
        service.ECR_DOCKER,
        service.STS,
        service.GLUE,
        service.SNS,
        *([service.ATHENA] if "athena" in targets else []),
        *([service.REDSHIFT_DATA] if "redshift" in targets else []),
    ]


class PipelineNetwork(Construct):
    """A VPC with one private subnet per availability zone, S3 and DynamoDB gateway endpoints and encrypted flow logs.

    No internet route by default: the subnets are PRIVATE_ISOLATED and AWS services are reached through VPC
    endpoints. The S3 gateway endpoint is free and is all Redshift Serverless needs from inside the VPC (COPY with
    enhanced VPC routing reads S3 through it; the Data API, IAM role assumption, the managed admin secret, KMS and
    audit logging are called by the service itself, outside this VPC). The DynamoDB gateway endpoint, free too, is how
    the DAG's tasks reach the upload ledger from private subnets. Interface endpoints cost per hour per AZ, so
    they are created only for the services named in `interface_endpoints` (MWAA needs some). With
    `nat_gateways` > 0 the VPC gets public subnets and NAT gateways, and the private subnets route through them.

    Availability zones come from `availability_zones`, or else from `Stack.availability_zones` (no lookup: an
    environment-agnostic or region-only stack gives two unresolved zones, which is fewer than Redshift needs).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        availability_zones: Sequence[str] | None = None,
        min_availability_zones: int = MWAA_MIN_AZS,
        nat_gateways: int = 0,
        cidr: str = "10.40.0.0/16",
        subnet_cidr_mask: int = 22,
        interface_endpoints: Sequence[ec2.InterfaceVpcEndpointAwsService] = (),
        flow_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        """
        :param availability_zones: zones of the private subnets. Default: the stack's zones (no lookup), which is
            two for an environment-agnostic stack: enough for MWAA, too few for a RedshiftTarget, which needs three
            (name them here).
        :param min_availability_zones: fail unless this many zones are used. Default: 2 (MWAA's minimum); pass 3
            (`REDSHIFT_SERVERLESS_MIN_AZS`) when the network is for a RedshiftTarget.
        :param nat_gateways: NAT gateways (then public subnets too); 0 keeps the VPC without internet. Default: 0.
        :param cidr: the VPC's IPv4 range. Default: 10.40.0.0/16.
        :param subnet_cidr_mask: prefix length of each subnet. Default: 22 (1,019 addresses per subnet).
        :param interface_endpoints: services to reach through interface endpoints (private DNS on). Default: none.
        :param flow_log_retention: retention of the VPC flow log group. Default: one month.
        :param removal_policy: for the flow log group and its key. Default: RETAIN.
        """
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        if nat_gateways < 0:
            raise PipelinePropsError(f"nat_gateways={nat_gateways!r}: must be 0 or more")
        if availability_zones is not None:
            zones = list(availability_zones)
            for zone in zones:
                if not Token.is_unresolved(zone) and not Token.is_unresolved(stack.region) and not zone.startswith(stack.region):
                    raise PipelinePropsError(f"availability_zones={zones!r}: {zone!r} is not a zone of {stack.region}")
            if len(set(zones)) != len(zones):
                raise PipelinePropsError(f"availability_zones={zones!r}: lists a zone twice")
            argument = "availability_zones"
        else:
            zones = list(stack.availability_zones)
            argument = "availability_zones (default: the stack's zones)"
        if len(zones) < min_availability_zones:
            shown = [z if not Token.is_unresolved(z) else "<unresolved>" for z in zones]
            raise PipelinePropsError(
                f"{argument}={shown!r}: {min_availability_zones} availability zones are needed; name them explicitly "
                f"(an environment-agnostic stack has only 2 unresolved zones)"
            )
        if nat_gateways > len(zones):
            raise PipelinePropsError(f"nat_gateways={nat_gateways!r}: at most one per availability zone ({len(zones)})")
        self.availability_zones = zones

        private_type = ec2.SubnetType.PRIVATE_WITH_EGRESS if nat_gateways > 0 else ec2.SubnetType.PRIVATE_ISOLATED
        subnets = [ec2.SubnetConfiguration(name=PRIVATE_SUBNET_GROUP, subnet_type=private_type, cidr_mask=subnet_cidr_mask)]
        if nat_gateways > 0:
            subnets.insert(
                0, ec2.SubnetConfiguration(name="Public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=26, map_public_ip_on_launch=False)
            )

        self.flow_log_key = kms.Key(
            self, "FlowLogKey", description="VPC flow logs of the data pipeline", enable_key_rotation=True, removal_policy=removal_policy
        )
        allow_cloudwatch_logs(self.flow_log_key)
        self.flow_log_group = logs.LogGroup(
            self, "FlowLogs", encryption_key=self.flow_log_key, retention=flow_log_retention, removal_policy=removal_policy
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(cidr),
            availability_zones=zones,
            nat_gateways=nat_gateways,
            subnet_configuration=subnets,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            restrict_default_security_group=True,
            flow_logs={
                "All": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
        )
        self.private_subnets = ec2.SubnetSelection(subnet_group_name=PRIVATE_SUBNET_GROUP)

        self.s3_endpoint = self.vpc.add_gateway_endpoint(
            "S3Endpoint", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.private_subnets]
        )
        self.dynamodb_endpoint = self.vpc.add_gateway_endpoint(
            "DynamoDbEndpoint", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB, subnets=[self.private_subnets]
        )
        self.endpoint_security_group = None
        self.interface_endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        if interface_endpoints:
            self.endpoint_security_group = ec2.SecurityGroup(
                self,
                "EndpointSecurityGroup",
                vpc=self.vpc,
                description="Interface endpoints of the data pipeline: HTTPS from inside the VPC only",
                allow_all_outbound=False,
            )
            self.endpoint_security_group.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), "HTTPS from the VPC")
            for service in interface_endpoints:
                short = service.short_name
                endpoint_id = "".join(part.capitalize() for part in short.replace(".", "-").split("-")) + "Endpoint"
                self.interface_endpoints[short] = self.vpc.add_interface_endpoint(
                    endpoint_id,
                    service=service,
                    subnets=self.private_subnets,
                    private_dns_enabled=True,
                    security_groups=[self.endpoint_security_group],
                    open=False,
                )

    def select_private_subnets(self) -> ec2.SelectedSubnets:
        """The private subnets, one per availability zone."""
        return self.vpc.select_subnets(subnet_group_name=PRIVATE_SUBNET_GROUP)
