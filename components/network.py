"""PrivateNetwork: the stack's OVH vRack private network, in every region the stack uses.

Servers, load balancers and the shared file storage talk over it; what other servers use (the
backup server's SSH, a persistent cache) is reached at private addresses only.

From the pulumi-ovh docs (v2.22): on `CloudNetworkPrivateVrack`, region, service name,
description and VLAN id recreate the network; on its subnet, cidr, network id, region and service
name recreate it. A recreated network would detach every server, so none of these follows an
edit that could be routine: the names are fixed, the description is fixed, the CIDR and VLAN come
from socle:network, which the README says never to change on a running stack.

One network per region, the same VLAN and subnet in each: "connectivity between regions is made
possible by configuring a single broadcast domain over all private networks (i.e. configuring the
same vRack, VLAN, and subnet on the private networks in all regions)" (OVH, "Concepts - Public
Cloud Networking"; also the guide "Extending a private network across Public Cloud regions"), so
the backup server in the backup region reaches the app servers. The regions'
subnets share the CIDR and get disjoint allocation pools, so DHCP in one region never hands out an
address already taken in the other.
"""

from __future__ import annotations

import ipaddress
import math
import zlib
from dataclasses import dataclass

import pulumi


@dataclass
class PrivateNetworkArgs:
    project_id: str
    regions: list[str]          # first: the app region (its subnet gets the router the load balancers need)
    cidr: str
    vlan_id: int | None
    physical_name: str
    gateway: bool = False       # a router with an external gateway in the app region (load balancer floating IPs)


def default_vlan(physical_name: str) -> int:
    """A VLAN derived from the project and stack (physical_name is <project>-<stack>), so two stacks
    of one vRack do not join by default; socle:network.vlanId sets it explicitly."""
    return 2 + zlib.crc32(physical_name.encode()) % 3999


def allocation_pools(cidr: str, regions: int) -> list[tuple[str, str]]:
    """Disjoint DHCP pools, one per region: the block cut in halves (the app region's first), the
    first 16 addresses (gateway, fixed addresses) and each half's last address left out."""
    net = ipaddress.ip_network(cidr)
    # Always halves, even for one region: a backup region added later takes the second half, and
    # no address already handed out in the first moves under another region's DHCP.
    parts = list(net.subnets(prefixlen_diff=max(1, math.ceil(math.log2(regions)))))[:regions]
    return [(str(part.network_address + (16 if i == 0 else 0)), str(part.broadcast_address - 1))
            for i, part in enumerate(parts)]


class PrivateNetwork(pulumi.ComponentResource):
    """`networks[region]` and `subnets[region]`: ids for an instance's `networks` entry."""

    def __init__(self, name: str, args: PrivateNetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:network:PrivateNetwork", name, None, opts)
        import pulumi_ovh as ovh

        vlan = args.vlan_id if args.vlan_id is not None else default_vlan(args.physical_name)
        self.cidr = args.cidr
        self.networks: dict[str, pulumi.Output[str]] = {}
        self.subnets: dict[str, pulumi.Output[str]] = {}
        child = pulumi.ResourceOptions(parent=self)
        pools = allocation_pools(args.cidr, len(args.regions))
        for i, region in enumerate(args.regions):
            net = ovh.CloudNetworkPrivateVrack(
                f"{name}-{region.lower()}", service_name=args.project_id, region=region,
                name=f"{args.physical_name}-private", vlan_id=vlan,
                description="socle private network", opts=child)
            start, end = pools[i]
            subnet = ovh.CloudNetworkPrivateVrackSubnet(
                f"{name}-{region.lower()}-subnet", service_name=args.project_id, region=region,
                network_id=net.id, cidr=args.cidr, dhcp_enabled=True,
                allocation_pools=[{"start": start, "end": end}],
                name=f"{args.physical_name}-private-{region.lower()}", opts=child)
            self.networks[region] = net.id
            self.subnets[region] = subnet.id
            if i == 0 and args.gateway:
                # A load balancer's public (floating) IP needs the subnet of its VIP behind a router
                # with an external gateway (pulumi-ovh CloudLoadbalancer docs, network.ip).
                ovh.CloudGateway(f"{name}-{region.lower()}-gateway", service_name=args.project_id, region=region,
                                 name=f"{args.physical_name}-gateway", subnet_ids=[subnet.id],
                                 external_gateway={"enabled": True, "model": "S"}, opts=child)
        self.register_outputs({"networks": self.networks})
