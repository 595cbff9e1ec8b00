"""The host firewall (components/render/firewall.py) loaded by the real nft into network namespaces
this test creates, and probed from a second namespace over a veth pair: the role's ports answer,
any other listening port does not, the table replaces itself atomically on reload, and a table of
Docker's (iptables-nft) survives it."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid

import pytest

from components.render.cloudinit import managed_files
from components.render.firewall import FIREWALL_RULES, open_ports, render_firewall
from tests.tools import require

SSH_PORT = 4660
STRAY = 8080  # a service listening where nothing should be reachable


def _ns(name: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", name, *cmd], capture_output=True, text=True, timeout=30, **kw)


def _make_pair(srv_dev_prefix: str):
    """Two namespaces joined by a veth pair: `srv` (10.77.0.1, fd77::1) and `cli` (10.77.0.2, fd77::2);
    the server's end is named <prefix><tag> (`br-…` is what Docker calls its bridges)."""
    if os.geteuid() != 0:
        pytest.fail("network namespaces need root (bash .ci/run runs as root)")
    require("nft", "nftables")
    tag = uuid.uuid4().hex[:6]
    srv, cli = f"socle-fw-s{tag}", f"socle-fw-c{tag}"
    sdev, cdev = f"{srv_dev_prefix}{tag}", f"vc{tag}"
    try:
        for cmd in (["ip", "netns", "add", srv], ["ip", "netns", "add", cli],
                    ["ip", "link", "add", sdev, "netns", srv, "type", "veth", "peer", cdev, "netns", cli]):
            subprocess.run(cmd, check=True)
        for ns, dev, v4, v6 in ((srv, sdev, "10.77.0.1/24", "fd77::1/64"), (cli, cdev, "10.77.0.2/24", "fd77::2/64")):
            for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", v4, "dev", dev],
                        ["ip", "-6", "addr", "add", v6, "dev", dev, "nodad"], ["ip", "link", "set", dev, "up"]):
                subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True)
        yield srv, cli
    finally:
        subprocess.run(["ip", "netns", "del", srv])
        subprocess.run(["ip", "netns", "del", cli])


@pytest.fixture
def pair():
    yield from _make_pair("vs")


@pytest.fixture
def bridge_pair():
    """The client stands for a container: it comes in through an interface named like Docker's bridges."""
    yield from _make_pair("br-")


def _load(ns: str, tmp_path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "firewall.nft"
    path.write_text(text)
    return _ns(ns, "nft", "-f", str(path))


def _listen(ns: str, ports: list[int]) -> subprocess.Popen:
    code = ("import socket, select\n"
            "socks = []\n"
            f"for p in {ports}:\n"
            "    for fam, addr in ((socket.AF_INET, '0.0.0.0'), (socket.AF_INET6, '::')):\n"
            "        s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "        if fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)\n"
            "        s.bind((addr, p)); s.listen(); socks.append(s)\n"
            "print('ready', flush=True)\n"
            "while True:\n"
            "    for s in select.select(socks, [], [])[0]: s.accept()[0].close()\n")
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _reachable(cli: str, host: str, port: int) -> bool:
    probe = (f"import socket, sys\ns = socket.socket(socket.AF_INET6 if ':' in '{host}' else socket.AF_INET)\n"
             f"s.settimeout(1.5)\ntry:\n    s.connect(('{host}', {port})); print('open')\n"
             "except OSError as e:\n    print('closed', e)\n")
    return _ns(cli, "python3", "-c", probe).stdout.startswith("open")


@pytest.mark.parametrize("role", ["app", "backup"])
def test_the_rendered_firewall_is_what_the_servers_get(role):
    files = managed_files(role=role, deploy_user="deploy", ssh_port=SSH_PORT)
    assert files[FIREWALL_RULES] == render_firewall(role=role, ssh_ports=(SSH_PORT,)), \
        f"{role}: the firewall in the user data and host setup is not the rendered one"


@pytest.mark.parametrize("role", ["app", "backup"])
def test_only_the_roles_ports_answer(pair, tmp_path, role):
    srv, cli = pair
    res = _load(srv, tmp_path, render_firewall(role=role, ssh_ports=(SSH_PORT,)))
    assert res.returncode == 0, f"nft refused the {role} firewall: {res.stderr}"
    listener = _listen(srv, [SSH_PORT, 80, 443, STRAY])
    try:
        wanted = set(open_ports(role, (SSH_PORT,)))
        for host in ("10.77.0.1", "fd77::1"):
            for port in (SSH_PORT, 80, 443, STRAY):
                assert _reachable(cli, host, port) == (port in wanted), \
                    f"{role}: port {port} on {host} is {'closed' if port in wanted else 'open'} through the firewall"
        ping = _ns(cli, "ping", "-c", "1", "-W", "2", "10.77.0.1")
        assert ping.returncode == 0, f"{role}: the firewall drops ping (and with it path MTU discovery)"
        assert _ns(srv, "python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {STRAY}), 2)"
                   ).returncode == 0, f"{role}: the firewall cuts the host off from its own loopback"
    finally:
        listener.kill()


def test_containers_reach_the_proxy_ports_but_not_sshd(bridge_pair, tmp_path):
    srv, cli = bridge_pair
    assert _load(srv, tmp_path, render_firewall(role="app", ssh_ports=(SSH_PORT,))).returncode == 0
    listener = _listen(srv, [SSH_PORT, 443])
    try:
        assert _reachable(cli, "10.77.0.1", 443), "a container cannot reach the proxy's port on the host"
        assert not _reachable(cli, "10.77.0.1", SSH_PORT), "a container reaches the host's sshd"
    finally:
        listener.kill()


def test_reload_replaces_the_table_and_leaves_dockers_rules(pair, tmp_path):
    srv, _ = pair
    # What Docker's iptables-nft leaves: its own tables, which socle's reload must not touch.
    docker_like = "table ip filter {\n\tchain DOCKER-USER {\n\t\treturn\n\t}\n}\n"
    assert _load(srv, tmp_path, docker_like).returncode == 0
    assert _load(srv, tmp_path, render_firewall(role="app", ssh_ports=(2222,))).returncode == 0
    res = _load(srv, tmp_path, render_firewall(role="app", ssh_ports=(SSH_PORT,)))
    assert res.returncode == 0, f"loading the firewall a second time failed: {res.stderr}"
    ruleset = _ns(srv, "nft", "list", "ruleset").stdout
    assert "DOCKER-USER" in ruleset, "reloading socle's firewall removed Docker's rules"
    assert ruleset.count("table inet socle") == 1 and "2222" not in ruleset, \
        f"the reload did not replace socle's table as a whole:\n{ruleset}"


def test_nft_refuses_a_broken_ruleset(pair, tmp_path):
    """The check host setup runs before loading (nft -c): a typo is caught, not loaded."""
    srv, _ = pair
    broken = render_firewall(role="app", ssh_ports=(SSH_PORT,)).replace("policy drop", "policy dorp")
    path = tmp_path / "broken.nft"
    path.write_text(broken)
    res = _ns(srv, "nft", "-c", "-f", str(path))
    assert res.returncode != 0 and "dorp" in res.stderr, res
    assert "socle" not in _ns(srv, "nft", "list", "ruleset").stdout, "a refused ruleset was loaded anyway"


@pytest.mark.parametrize("network, reached", [("10.77.0.0/24", True), ("10.99.0.0/16", False)])
def test_a_private_port_answers_only_the_private_network(pair, tmp_path, network, reached):
    """A shared cache's port: open to the stack's private network (here: the client's block, or
    another one), never over IPv6 or from elsewhere; a server that serves no hostname keeps 80/443
    closed."""
    srv, cli = pair
    res = _load(srv, tmp_path, render_firewall(role="app", ssh_ports=(SSH_PORT,), private=(network, (6379,)), web=False))
    assert res.returncode == 0, f"nft refused the firewall: {res.stderr}"
    listener = _listen(srv, [SSH_PORT, 80, 443, 6379])
    try:
        assert _reachable(cli, "10.77.0.1", 6379) == reached, \
            f"port 6379 is {'closed' if reached else 'open'} to 10.77.0.2 with the private network {network}"
        assert not _reachable(cli, "fd77::1", 6379), "the private port answers over IPv6"
        for port in (80, 443):
            assert not _reachable(cli, "10.77.0.1", port), f"port {port} is open on a server serving no hostname"
        assert _reachable(cli, "10.77.0.1", SSH_PORT), "SSH is closed"
    finally:
        listener.kill()
