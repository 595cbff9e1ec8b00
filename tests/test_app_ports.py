"""Ports an app serves without the HTTPS proxy (apps.*.ports: SMTP, Syncthing, a dev site on
8081): published by its container only, opened in its own server's security group only, TCP or
UDP as declared, and judged by the policy pack against an allow-list that gives each its reason."""

from __future__ import annotations

import copy

import pytest


from policy.rules import RULES, evaluate
from tests.conftest import errors_of, run_values
from tests.test_systems import CAPLIBRE
from tools.policy_graph import resources as graph_of

SYNC = [("22000", "tcp"), ("22000", "udp"), ("21027", "udp")]



def opened(run, server: str) -> set[tuple[str, str, str]]:
    """(port, protocol, source) the security group of `server` opens, besides 80/443 and SSH."""
    sg = next(r for r in run.of_type("ovh:index/cloudSecurityGroup:CloudSecurityGroup") if r.name == f"{server}-sg")
    return {(str(int(r["portRangeMin"])), r["protocol"].lower(), r["remoteIpPrefix"]) for r in sg.plain["rules"]
            if r["description"].startswith("app ")}


def test_declared_ports_are_published_and_opened_on_that_server_only():
    run = run_values(CAPLIBRE)
    assert opened(run, "sync") == {(p, proto, src) for p, proto in SYNC for src in ("0.0.0.0/0", "::/0")}, \
        opened(run, "sync")
    for other in ("cloud1", "cloud2"):
        assert opened(run, other) == set(), f"{other} opens a port of an app it does not run: {opened(run, other)}"
    sync = next(r for r in run.of_type("docker:index/container:Container") if r.name == "sync-containers-syncthing")
    bindings = {(str(int(p["external"])), p.get("protocol", "tcp"), str(int(p["internal"]))) for p in sync.plain["ports"]}
    assert bindings == {(p, proto, p) for p, proto in SYNC}, bindings
    others = [r.name for r in run.of_type("docker:index/container:Container")
              if r.plain.get("ports") and r.name != "sync-containers-syncthing" and not r.name.endswith("-proxy")]
    assert not others, f"containers that publish ports without declaring any: {others}"


def test_container_port_maps_to_another_host_port():
    v = copy.deepcopy(CAPLIBRE)
    v["apps"]["syncthing"]["ports"] = [{"port": 8081, "containerPort": 80, "reason": "the school's dev site"}]
    run = run_values(v)
    sync = next(r for r in run.of_type("docker:index/container:Container") if r.name == "sync-containers-syncthing")
    assert sync.plain["ports"] == [{"internal": 80, "external": 8081}], sync.plain["ports"]
    assert ("8081", "tcp", "0.0.0.0/0") in opened(run, "sync")


def _verdicts(run, allowed: dict) -> list:
    config = {"all": "mandatory", "only-proxy-publishes-ports": {"allowedPorts": allowed}}
    return [v for v in evaluate(graph_of(run), config)
            if v.finding.policy in ("only-proxy-publishes-ports", "ssh-from-admin-networks-only")]


def test_the_policy_refuses_them_until_allowed_with_a_reason_then_passes():
    run = run_values(CAPLIBRE)
    refused = _verdicts(run, {})
    assert [v.finding.message for v in refused] == [
        "Container 'socle-test-syncthing' publishes host ports 21027/udp, 22000, 22000/udp, bypassing the HTTPS proxy; "
        "remove it from `ports` and give the app a hostname, or, if it is not HTTP (e.g. SMTP), allow it in this "
        "policy's allowedPorts for this container with its reason: {\"socle-test-syncthing\": {\"21027/udp\": "
        "\"why it bypasses the proxy\"}}."], [v.finding.message for v in refused]
    allowed = {"socle-test-syncthing": {f"{p}/{proto}": "Syncthing" for p, proto in SYNC}}
    assert _verdicts(run, allowed) == [], [v.finding.message for v in _verdicts(run, allowed)]


def test_a_security_group_opening_a_port_nobody_publishes_is_refused():
    run = run_values(CAPLIBRE)
    graph = graph_of(run)
    sg = next(r for r in graph if r.name == "cloud1-sg")
    sg.props["rules"] = [*sg.props["rules"], {"direction": "INGRESS", "protocol": "UDP", "portRangeMin": 22000,
                                              "portRangeMax": 22000, "remoteIpPrefix": "0.0.0.0/0"}]
    found = [v.finding.message for v in evaluate(graph, {"all": "mandatory"})
             if v.finding.policy == "ssh-from-admin-networks-only"]
    assert found == ["Security group 'socle-test-cloud1-sg' opens port 22000/udp to 0.0.0.0/0 (4,294,967,296 "
                     "addresses) and no container of its server publishes it; list only admin blocks of /24 or "
                     "narrower in socle:access.adminCidrs."], found


@pytest.mark.parametrize("change,says", [
    (lambda a: a["syncthing"].update(ports=[{"port": 22000, "reason": "sync"}, {"port": 22000, "reason": "again"}]),
     "socle:apps.syncthing.ports.1: 22000/tcp is already apps.syncthing.ports.0 on server sync"),
    (lambda a: a["syncthing"].update(ports=[{"port": 443, "reason": "sync"}]),
     "socle:apps.syncthing.ports.0: 443/tcp is already proxy.httpsPort"),
    (lambda a: a["nextcloud"].update(ports=[{"port": 3478, "protocol": "udp", "reason": "TURN"}]),
     "socle:apps.nextcloud.ports: an app on several servers (cloud1, cloud2) serves only HTTPS"),
    (lambda a: a["syncthing"].update(ports=[{"port": 22000, "protocol": "sctp", "reason": "sync"}]),
     "socle:apps.syncthing.ports.0.protocol"),
    (lambda a: a["syncthing"].update(ports=[{"port": 22000}]), "socle:apps.syncthing.ports.0.reason"),
    (lambda a: a["syncthing"].update(publish=[22000]), "publish is replaced by ports"),
])
def test_impossible_ports_are_config_errors(change, says):
    v = copy.deepcopy(CAPLIBRE)
    change(v["apps"])
    msg = errors_of(v)
    assert says in msg, msg


def test_the_rules_that_judge_ports_exist():
    assert {"only-proxy-publishes-ports", "ssh-from-admin-networks-only"} <= {r.name for r in RULES}
