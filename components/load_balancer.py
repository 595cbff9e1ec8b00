"""LoadBalancer: an OVH Public Cloud load balancer in front of the servers of apps that run on
several servers, and the shared storage their HTTPS proxies keep certificates in.

TLS is passed through, not terminated here: the listeners are TCP on 80 and 443, and each
server's Caddy terminates TLS as on a lone server (the proxy rules of the policy pack still read
its Caddyfile). Certificates: every proxy behind one load balancer uses the same Caddy storage, an
OVH File Storage (NFS) share mounted on each server. Caddy instances that share storage form a
cluster (CertMagic): one of them takes the storage lock and obtains or renews a certificate, the
others load it from the storage, and any of them answers the ACME HTTP-01 or TLS-ALPN-01
challenge, since the challenge token is in the storage too. So it does not matter which server
Let's Encrypt's validation requests reach (they come from several vantage points, so they do
reach several), and a server that is down during a renewal is simply not asked: the load
balancer's health monitors take it out of the pools and the others renew. Terminating TLS at the
load balancer instead would need the certificate in OVH's key manager and something outside
socle to renew it every 60 days; the DNS-01 challenge would need a DNS token on every server
(which can rewrite the whole zone) and a Caddy built with a DNS plugin.

From the pulumi-ovh docs (v2.22): the load balancer's region, flavor and network block recreate
it (a new VIP); the floating IP is a resource of its own, so DNS keeps pointing at the same
address when the load balancer is recreated. A member's address, port and pool recreate the
member (it leaves the pool and a new one joins; the others keep serving). A listener's protocol
and port recreate it. A pool's algorithm and health monitor change in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

# Health monitor timings (seconds): a member that fails `RETRIES_DOWN` checks `DELAY` apart leaves
# the pools, about 15 s after it stops answering; it comes back after `RETRIES` good checks.
DELAY, TIMEOUT, RETRIES, RETRIES_DOWN = 5, 4, 2, 3


@dataclass
class Member:
    server: str
    address: pulumi.Input[str]      # private address
    subnet_id: pulumi.Input[str]


@dataclass
class LoadBalancerArgs:
    project_id: str
    region: str
    physical_name: str
    flavor: str                     # small | medium | large | xl
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    health_host: str                # the hostname the health checks ask for
    health_path: str
    members: list[Member] = field(default_factory=list)
    http_port: int = 80             # where the members' proxies listen
    https_port: int = 443


class LoadBalancer(pulumi.ComponentResource):
    """`address`: the public (floating) IPv4 that the DNS records of its apps point at."""

    address: pulumi.Output[str]

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:network:LoadBalancer", name, None, opts)
        import pulumi_ovh as ovh

        child = pulumi.ResourceOptions(parent=self)
        common = {"service_name": args.project_id}
        fip = ovh.CloudFloatingIp(f"{name}-ip", region=args.region, description=f"{args.physical_name} public address",
                                  opts=child, **common)
        self.address = fip.current_state.apply(lambda s: (s or {}).get("ip") or "")
        self.lb = ovh.CloudLoadbalancer(
            f"{name}-lb", region=args.region, flavor_name=args.flavor.upper(), name=args.physical_name,
            description="socle: TCP pass-through to the servers' HTTPS proxies",
            network={"id": args.network_id, "subnet_id": args.subnet_id, "ip": self.address},
            opts=child, **common)
        self.pools = {}
        self.listeners = {}
        for kind, port, monitor in (
            # HTTPS: the app itself answers through the member's proxy, or the member leaves the pool.
            ("https", args.https_port, {"type": "HTTPS", "url_path": args.health_path, "domain_name": args.health_host,
                                        "http_method": "GET", "http_version": "1.1", "expected_codes": "200-399"}),
            # HTTP only redirects (308): the check proves the proxy's HTTP side answers.
            ("http", args.http_port, {"type": "HTTP", "url_path": "/", "domain_name": args.health_host,
                                      "http_method": "GET", "http_version": "1.1", "expected_codes": "308"}),
        ):
            pool = ovh.CloudLoadbalancerPool(
                f"{name}-{kind}", loadbalancer_id=self.lb.id, protocol="TCP", algorithm="LEAST_CONNECTIONS",
                name=f"{args.physical_name}-{kind}",
                health_monitor={**monitor, "delay": DELAY, "timeout": TIMEOUT, "max_retries": RETRIES,
                                "max_retries_down": RETRIES_DOWN},
                opts=child, **common)
            self.pools[kind] = pool
            self.listeners[kind] = ovh.CloudLoadbalancerListener(
                f"{name}-{kind}", loadbalancer_id=self.lb.id, protocol="TCP",
                protocol_port=443 if kind == "https" else 80, default_pool_id=pool.id,
                name=f"{args.physical_name}-{kind}",
                description="TLS passed through to the proxies" if kind == "https"
                else "passed through to the proxies, which only redirect to HTTPS",
                opts=child, **common)
            for m in args.members:
                ovh.CloudLoadbalancerPoolMember(
                    f"{name}-{kind}-{m.server}", loadbalancer_id=self.lb.id, pool_id=pool.id, address=m.address,
                    protocol_port=port, subnet_id=m.subnet_id, name=m.server, opts=child, **common)
        self.register_outputs({"address": self.address})
