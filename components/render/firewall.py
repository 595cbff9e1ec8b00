"""The host firewall of a socle server: nftables, in its own table, loaded by its own unit.

Defence in depth behind the OVH security group (server.py), which stays the first line: the
group filters ports *and* sources, but it lives outside the server, where a project's default
group, a click in the manager or a detached port can open everything (OVH's default security
group accepts all incoming traffic). On the host, the same ports only: SSH, and 80/443 on an app
server; every other port is closed, whatever starts listening on it (a debug server, a service
bound to 0.0.0.0 by mistake). Sources are left to the security group: a host rule naming the
admin networks would lock the administrators out the day their address changes, since host setup
itself comes in over SSH.

Docker: published container ports are DNATed in prerouting and *forwarded* to the container, so
they never cross this input chain; Docker's own rules (iptables-nft, tables `ip filter` / `ip
nat`) are not touched. That is why this is a separate `inet socle` table replaced atomically by
`nft -f` (create, delete, define), never Debian's /etc/nftables.conf, which begins with `flush
ruleset` and would wipe Docker's rules the day someone restarts nftables.service. Containers
cannot reach the host's sshd; they reach 80/443 (an app calling its own public URL goes through
docker-proxy, which is input traffic) and nothing else.
"""

from __future__ import annotations

FIREWALL_RULES = "/etc/socle/firewall.nft"
FIREWALL_UNIT = "socle-firewall.service"

# Before any network is up (as Debian's nftables.service): the host is never reachable unfiltered.
_UNIT = f"""[Unit]
Description=socle: host firewall (nftables table inet socle)
Documentation=file://{FIREWALL_RULES}
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
StandardInput=null
ProtectSystem=full
ProtectHome=true
ExecStart=/usr/sbin/nft -f {FIREWALL_RULES}
# `reload` replaces the table atomically; `restart` deletes it first (a moment without a filter).
ExecReload=/usr/sbin/nft -f {FIREWALL_RULES}
ExecStop=-/usr/sbin/nft delete table inet socle

[Install]
WantedBy=sysinit.target
"""


def open_ports(role: str, ssh_ports: tuple[int, ...], web: bool = True) -> list[int]:
    """The TCP ports a server of this role answers on from anywhere its security group allows
    (`web`: an app server that serves hostnames, through its HTTPS proxy)."""
    return sorted({*ssh_ports, *((80, 443) if role == "app" and web else ())})


def render_firewall(*, role: str, ssh_ports: tuple[int, ...], private: tuple[str, tuple[int, ...]] | None = None,
                    web: bool = True) -> str:
    """`private`: (the stack's private network, ports that only its servers reach, e.g. a shared cache)."""
    ports = ", ".join(str(p) for p in open_ports(role, ssh_ports, web))
    ssh = ", ".join(str(p) for p in sorted(set(ssh_ports)))
    inside = [p for p in sorted(set(private[1])) if p not in open_ports(role, ssh_ports, web)] if private else []
    private_rule = (f"\t\t# Only from the stack's private network: services other servers use.\n"
                    f"\t\tip saddr {private[0]} tcp dport {{ {', '.join(map(str, inside))} }} accept\n") if inside else ""
    return f"""#!/usr/sbin/nft -f
# Managed by socle (components/render/firewall.py): the host's input filter. Loaded by
# {FIREWALL_UNIT}; replaced as a whole, atomically, by `nft -f` (checked first with `nft -c`).
table inet socle
delete table inet socle
table inet socle {{
\tchain input {{
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept
\t\tct state invalid drop
\t\tiif "lo" accept
\t\t# Ping, path MTU discovery, and IPv6 neighbour discovery and router advertisements.
\t\tmeta l4proto {{ icmp, ipv6-icmp }} accept
\t\t# DHCP and DHCPv6 replies (OVH configures the instance's addresses by DHCP).
\t\tudp sport 67 udp dport 68 accept
\t\tip6 saddr fe80::/10 udp sport 547 udp dport 546 accept
\t\t# Containers do not reach the host's sshd (Docker's bridges are input interfaces here).
\t\tiifname "docker0" tcp dport {{ {ssh} }} drop
\t\tiifname "br-*" tcp dport {{ {ssh} }} drop
\t\ttcp dport {{ {ports} }} accept
{private_rule}\t}}
}}
"""


def firewall_files(*, role: str, ssh_ports: tuple[int, ...],
                   private: tuple[str, tuple[int, ...]] | None = None, web: bool = True) -> dict[str, str]:
    return {FIREWALL_RULES: render_firewall(role=role, ssh_ports=ssh_ports, private=private, web=web),
            f"/etc/systemd/system/{FIREWALL_UNIT}": _UNIT}
