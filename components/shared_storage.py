"""SharedStorage: an OVH File Storage share (NFS) on the private network, mounted by several servers.

socle uses one for the Caddy storage of the proxies behind a load balancer (components/
load_balancer.py says why). It holds certificates and ACME account keys, which Let's Encrypt
re-issues if they are lost, so it is not backed up and is deleted with the stack.

From the pulumi-ovh docs (v2.22): a share's protocol, region, share network, type and encryption
recreate it; its size grows in place. A share network's network, subnet, region and name recreate
it. Each server gets in by an access rule (`CloudStorageFileShareAcl`, its private address,
READ_WRITE; any change recreates the rule), made by components/server.py after the instance.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi


@dataclass
class SharedStorageArgs:
    project_id: str
    region: str
    physical_name: str
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    size_gb: int


def export_path(state) -> str:
    """The preferred NFS export (server:/path) of a share, from its current state."""
    locations = (state or {}).get("export_locations") or (state or {}).get("exportLocations") or []
    preferred = [loc for loc in locations if loc.get("preferred")] or locations
    return preferred[0].get("path", "") if preferred else ""


class SharedStorage(pulumi.ComponentResource):
    """`id`: for an instance's `shares`; `export`: what the servers mount (server:/path)."""

    def __init__(self, name: str, args: SharedStorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:storage:SharedStorage", name, None, opts)
        import pulumi_ovh as ovh

        child = pulumi.ResourceOptions(parent=self)
        share_net = ovh.CloudStorageFileShareNetwork(
            f"{name}-net", service_name=args.project_id, region=args.region, network_id=args.network_id,
            subnet_id=args.subnet_id, name=f"{args.physical_name}-net", opts=child)
        share = ovh.CloudStorageFileShare(
            f"{name}-share", service_name=args.project_id, region=args.region, protocol="NFS",
            share_type="STANDARD_1AZ", size=args.size_gb, share_network_id=share_net.id,
            name=args.physical_name, description="socle: certificates of the proxies behind a load balancer",
            opts=child)
        self.id = share.id
        self.export = share.current_state.apply(export_path)
        self.register_outputs({"export": self.export})
