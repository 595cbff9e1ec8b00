"""Apps on several servers (issue 12): the private network, the load balancers, the shared caches
and certificates, on the example stacks (examples/*/Pulumi.*.yaml) and the real ones. Every
assertion is derived from the stack's own config, so it holds for whatever the files contain."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from components.config import ConfigError, load
from components.render.host_setup import mount_unit_name, render_host_bundle, render_nfs_mount
from tests.conftest import ROOT, STACKS, program, stack_values
from tests.tools import require
from tools.harness import run_program
from tools.policy_graph import policy_config, verdicts

EXAMPLES = sorted(ROOT.glob("examples/*/Pulumi.*.yaml"))
_runs: dict = {}


def example(path: Path, preview: bool = False):
    key = (path, preview)
    if key not in _runs:
        _runs[key] = run_program(_stack_of(path), config_file=path, preview=preview)
    return _runs[key]


def example_policy_path(path: Path) -> Path | None:
    """An example's own policy config (examples/ORG/policy/STACK.json): the project's, plus the
    ports its apps publish with their reasons (tests/test_examples.py holds it to that)."""
    own = path.parent / "policy" / f"{_stack_of(path)}.json"
    return own if own.exists() else None


def example_policy(path: Path) -> dict:
    return policy_config(_stack_of(path), example_policy_path(path))


def _stack_of(path: Path) -> str:
    return path.name[len("Pulumi."):-len(".yaml")]


def _values(path: Path) -> dict:
    """The socle: keys of a stack file as plain values (namespace stripped); an encrypted value
    (`secure:`, e.g. an example's placeholder) as a stand-in string, as the harness does."""
    def plain(v):
        if isinstance(v, dict):
            return "placeholder-secret" if set(v) == {"secure"} else {k: plain(x) for k, x in v.items()}
        return [plain(x) for x in v] if isinstance(v, list) else v

    doc = yaml.safe_load(path.read_text())
    return {k.split(":", 1)[1]: plain(v) for k, v in doc["config"].items()}


def _cfg(path: Path):
    return load(_values(path), secret_keys=frozenset({"secrets"}))[0]


@pytest.fixture(params=EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def ex(request):
    return request.param


BALANCED = [p for p in EXAMPLES if _cfg(p).balanced_sets()]


@pytest.fixture(params=BALANCED, ids=lambda p: f"{p.parent.name}/{p.name}")
def balanced(request):
    return request.param


def test_there_is_a_load_balanced_example():
    assert BALANCED, "no example stack runs an app on several servers"


def test_examples_pass_every_mandatory_rule_of_their_stack(ex):
    found = verdicts(example(ex), example_policy(ex))
    assert not found, f"{ex}:\n" + "\n".join(f"[{v.level}] {v.finding.policy}: {v.finding.message}" for v in found)


def test_examples_evaluate_at_preview_and_fail_no_rule(ex):
    found = verdicts(example(ex, preview=True), example_policy(ex))
    bad = [f"{v.finding.policy}: {v.finding.message}" for v in found if not v.finding.unknown]
    assert not bad, f"{ex} at preview:\n" + "\n".join(bad)


def _by_type(run, suffix):
    return [r for r in run.resources if r.type.endswith(suffix)]


def test_each_load_balancer_passes_80_and_443_to_every_server_of_its_set(ex):
    """Members at the servers' private addresses, on the proxies' ports, with a health monitor per
    pool; listeners TCP on 80 and 443 only."""
    cfg, run = _cfg(ex), example(ex)
    private = run.exports["privateAddresses"]
    lbs = _by_type(run, "cloudLoadbalancer:CloudLoadbalancer")
    assert len(lbs) == len(cfg.balanced_sets()), f"{len(lbs)} load balancers for sets {cfg.balanced_sets()}"
    by_urn = run.by_urn()
    for members in cfg.balanced_sets():
        first = next(n for n, a in sorted(cfg.apps.items()) if a.hostname and tuple(sorted(a.hosts())) == members)
        lb = next(r for r in lbs if r.name == f"lb-{first}-lb")
        listeners = [r for r in _by_type(run, "CloudLoadbalancerListener") if lb.urn in r.dependencies]
        assert sorted((r.plain["protocol"], int(r.plain["protocolPort"])) for r in listeners) == \
            [("TCP", 80), ("TCP", 443)], f"{lb.name}: listeners {[(r.name, r.plain) for r in listeners]}"
        for lst in listeners:
            pools = [by_urn[d] for d in lst.dependencies if by_urn[d].type.endswith("CloudLoadbalancerPool")]
            assert len(pools) == 1 and pools[0].plain.get("healthMonitor"), f"{lst.name}: no pool with a monitor"
            monitor = pools[0].plain["healthMonitor"]
            assert monitor["type"] in ("HTTP", "HTTPS") and monitor["domainName"], f"{pools[0].name}: {monitor}"
            got = sorted((m.plain["address"], int(m.plain["protocolPort"]))
                         for m in _by_type(run, "CloudLoadbalancerPoolMember") if pools[0].urn in m.dependencies)
            port = cfg.proxy.https_port if lst.plain["protocolPort"] == 443 else cfg.proxy.http_port
            assert got == sorted((private[s], port) for s in members), f"{pools[0].name}: members {got}"


def test_load_balanced_names_point_at_the_load_balancer_and_wait_for_it(ex):
    cfg, run = _cfg(ex), example(ex)
    by_urn = run.by_urn()
    fips = {r.urn: r for r in _by_type(run, "CloudFloatingIp")}
    for name, app in cfg.apps.items():
        if not (app.hostname and len(app.hosts()) > 1):
            continue
        rec = next(r for r in run.resources if r.name == f"dns-app-{name}")
        deps = [by_urn[d] for d in rec.dependencies]
        assert any(d.type.endswith("cloudLoadbalancer:CloudLoadbalancer") for d in deps), \
            f"{rec.name} does not wait for its load balancer"
        ips = {f.outputs.get("currentState", {}).get("ip") for u, f in fips.items() if u in rec.dependencies}
        assert rec.plain["values"] and set(rec.plain["values"]) <= ips, f"{rec.name} -> {rec.plain['values']}, LB {ips}"


def test_nothing_shared_listens_on_a_public_address(ex):
    """Ports other than SSH and 80/443 open only from the private network; a container port other
    than the proxy's published only on a private address; backups go to a private address."""
    from components.render.mail import MAIL_PORTS

    cfg, run = _cfg(ex), example(ex)
    for sg in _by_type(run, "CloudSecurityGroup"):
        server = sg.name.removesuffix("-sg")
        # What the stack file publishes on purpose, with its reasons (apps.*.ports, the mail server).
        declared = {p.port for a in cfg.apps.values() if server in a.hosts() for p in a.ports}
        declared |= {p for p, _ in MAIL_PORTS} if cfg.mail and cfg.mail.server == server else set()
        for rule in sg.plain["rules"]:
            port = int(rule["portRangeMin"])
            if port not in (80, 443, cfg.access.ssh_port, *cfg.access.extra_ssh_ports, *declared):
                assert rule["remoteIpPrefix"] == cfg.network.cidr, f"{sg.name} opens {port} to {rule['remoteIpPrefix']}"
    for c in _by_type(run, "docker:index/container:Container"):
        labels = {lbl["label"]: lbl["value"] for lbl in c.plain.get("labels") or []}
        app = cfg.apps.get(labels.get("socle.app", ""))
        for p in c.plain.get("ports") or []:
            if labels.get("socle.role") in ("proxy", "mail") or (app and int(p["external"]) in {x.port for x in app.ports}):
                continue
            assert p.get("ip") and ipaddress.ip_address(p["ip"]).is_private, f"{c.name} publishes {p} publicly"
    for job in [r for r in run.resources if r.name.endswith("-backup-install")]:
        for host in re.findall(r'restic@([0-9.]+)', job.plain.get("stdin", "")):
            assert ipaddress.ip_address(host).is_private, f"{job.name} backs up to a public address {host}"


def test_load_balanced_servers_take_80_and_443_only_from_the_private_network(ex):
    cfg, run = _cfg(ex), example(ex)
    behind = {s for m in cfg.balanced_sets() for s in m}
    own = {s for a in cfg.apps.values() if a.hostnames() and len(a.hosts()) == 1 for s in a.hosts()}
    own |= {cfg.mail.server} if cfg.mail else set()  # the mail host's certificate comes over HTTP
    for sg in _by_type(run, "CloudSecurityGroup"):
        server = sg.name.removesuffix("-sg")
        web = {r["remoteIpPrefix"] for r in sg.plain["rules"] if int(r["portRangeMin"]) in (80, 443)}
        if server in behind and server not in own:
            assert web == {cfg.network.cidr}, f"{server} is behind a load balancer but takes 80/443 from {web}"
        elif server not in behind | own:
            assert not web, f"{server} serves no hostname but opens 80/443 to {web}"


def test_proxies_behind_a_load_balancer_share_their_caddy_storage(ex):
    """The same host directory, on the NFS share every server of the set mounts (mount unit in its
    host setup, the share attached to its instance)."""
    cfg, run = _cfg(ex), example(ex)
    setups = {r.name.removesuffix("-host-setup"): r for r in run.resources if r.name.endswith("-host-setup")}
    private = run.exports["privateAddresses"]
    for members in cfg.balanced_sets():
        data = set()
        for s in members:
            proxy = next(c for c in _by_type(run, "docker:index/container:Container") if c.name == f"{s}-containers-proxy")
            mount = next(v for v in proxy.plain["volumes"] if v["containerPath"] == "/data")
            assert mount.get("hostPath"), f"{s}: the proxy keeps certificates in a volume of its own: {mount}"
            data.add(mount["hostPath"])
            bundle = json.loads(setups[s].plain["stdin"])["bundle"]
            units = [u for u in bundle["enable"] if u.endswith(".mount")]
            assert units and "nfs-common" in bundle["packages"], f"{s}: no NFS mount in host setup"
            unit = bundle["files"][f"/etc/systemd/system/{units[0]}"]["content"]
            where = next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("Where="))
            assert mount["hostPath"].startswith(where + "/"), f"{s}: the proxy's {mount['hostPath']} is not on {where}"
            acls = [r for r in _by_type(run, "CloudStorageFileShareAcl") if r.name.startswith(f"{s}-share-")]
            assert [a.plain["accessTo"] for a in acls] == [private[s]], f"{s}: no access rule for {private[s]}"
            assert acls[0].urn in setups[s].dependencies, f"{s}: host setup mounts before the share lets it in"
        assert len(data) == 1, f"the proxies of {members} use different storage: {data}"


def test_a_persistent_cache_keeps_its_keys_and_is_backed_up(ex):
    cfg, run = _cfg(ex), example(ex)
    for cname, cache in cfg.caches.items():
        c = next(r for r in _by_type(run, "docker:index/container:Container") if r.name.endswith(f"-containers-{cname}"))
        cmd = " ".join(c.plain["command"])
        if not cache.persistent:
            assert "--appendonly no" in cmd and "allkeys-lru" in cmd, cmd
            continue
        assert "--appendonly yes" in cmd and "noeviction" in cmd, f"{cname} would lose or evict sessions: {cmd}"
        job = next(r for r in run.resources if r.name == f"{cfg.host_of('caches', cname)}-backup-install")
        assert f"{cname}-data" in job.plain["stdin"], f"{cname}'s volume is not in its server's backup"


def test_every_real_stack_attaches_its_servers_to_the_private_network():
    for stack in STACKS:
        run = program(stack)
        cfg = load(stack_values(stack))[0]
        if cfg.target != "ovh":
            assert not _by_type(run, "CloudNetworkPrivateVrack"), f"{stack}: a vRack network on target local"
            continue
        for vm in _by_type(run, "CloudInstance"):
            assert any(n.get("networkId") for n in vm.plain["networks"]), f"{stack}: {vm.name} is not on the network"
        vlans = {int(n.plain["vlanId"]) for n in _by_type(run, "CloudNetworkPrivateVrack")}
        assert len(vlans) == 1, f"{stack}: the regions' networks have VLANs {vlans}; they would not be joined"
        pools = [(p["start"], p["end"]) for s in _by_type(run, "CloudNetworkPrivateVrackSubnet")
                 for p in s.plain["allocationPools"]]
        for i, (a0, a1) in enumerate(pools):
            for b0, b1 in pools[i + 1:]:
                ip = ipaddress.ip_address
                assert ip(a1) < ip(b0) or ip(b1) < ip(a0), f"{stack}: overlapping DHCP pools {pools}"


# ---------------------------------------------------------------- config errors


def _base() -> dict:
    """The first example that runs an app on several servers."""
    return _values(BALANCED[0])


def _errors(values) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as e:
        load(values)
    return e.value.issues


def _balanced_app(values) -> str:
    return next(n for n, a in values["apps"].items() if len(a.get("servers") or []) > 1)


def test_a_stateful_volume_on_several_servers_is_refused_naming_the_fix():
    v = _base()
    app = _balanced_app(v)
    v["apps"][app]["volumes"] = {"uploads": "/srv/uploads"}
    issues = _errors(v)
    assert any(p == f"apps.{app}.volumes.uploads" and "bucket" in m and "persistent cache" in m for p, m in issues), issues


def test_server_and_servers_together_are_refused():
    v = _base()
    app = _balanced_app(v)
    v["apps"][app]["server"] = v["apps"][app]["servers"][0]
    assert any(p == f"apps.{app}.servers" and "not both" in m for p, m in _errors(v))


def test_a_server_listed_twice_or_unknown_is_refused():
    v = _base()
    app = _balanced_app(v)
    first = v["apps"][app]["servers"][0]
    v["apps"][app]["servers"] += [first, "nowhere"]
    issues = _errors(v)
    n = len(v["apps"][app]["servers"])
    assert (f"apps.{app}.servers.{n - 2}", f"'{first}' is listed twice; each server once") in issues, issues
    assert any(p == f"apps.{app}.servers.{n - 1}" and "unknown server 'nowhere'" in m for p, m in issues), issues


def test_several_servers_on_target_local_are_refused():
    v = stack_values("dev")
    app = next(n for n, a in v["apps"].items() if a.get("hostname"))
    server = v["apps"][app].pop("server", None) or next(iter(v["servers"]))
    v["apps"][app]["servers"] = [server, server + "b"]
    v["servers"][server + "b"] = {}
    issues = _errors(v)
    assert any(p == f"apps.{app}.servers" and "target ovh" in m for p, m in issues), issues


def test_a_container_database_for_apps_on_several_servers_is_refused_naming_managed():
    v = _base()
    app = _balanced_app(v)
    db = v["apps"][app]["databases"][0]["use"].split(".")[0]
    v["databases"][db]["hosting"] = "container"
    v["databases"][db]["server"] = v["apps"][app]["servers"][0]
    v["databases"][db]["nodes"] = 1
    issues = _errors(v)
    assert any(p.startswith(f"apps.{app}.databases.") and "hosting: managed" in m for p, m in issues), issues


def test_a_private_network_that_is_not_private_or_too_big_is_refused():
    for cidr, words in (("203.0.113.0/24", "not a private IPv4 block"), ("10.0.0.0/8", "/16 to /24"),
                        ("172.17.0.0/16", "Docker")):
        v = _base()
        v["network"] = {"cidr": cidr}
        issues = _errors(v)
        assert any(p == "network.cidr" and words in m for p, m in issues), (cidr, issues)


# ---------------------------------------------------------------- rendered files, by their real tools


def test_the_nfs_mount_unit_is_named_as_systemd_names_it_and_passes_systemd_analyze(tmp_path):
    where = "/srv/socle-shared/lb-web1-web2"
    escape = subprocess.run([require("systemd-escape", "systemd"), "--path", "--suffix=mount", where],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert mount_unit_name(where) == escape
    unit = tmp_path / escape
    unit.write_text(render_nfs_mount("10.42.0.9:/shares/share-0123", where))
    res = subprocess.run([require("systemd-analyze", "systemd"), "verify", "--man=no", str(unit)],
                         capture_output=True, text=True)
    noise = [line for line in res.stderr.splitlines() if "mount.nfs" not in line and line.strip()]
    assert res.returncode == 0 or not noise, f"systemd-analyze verify:\n{res.stderr}"


def test_an_nfs_export_or_mount_point_that_could_inject_is_refused():
    for what in ("10.42.0.9:/x\nExecStart=/bin/sh", "no-colon", "10.42.0.9:relative"):
        with pytest.raises(ValueError):
            render_nfs_mount(what, "/srv/socle-shared/x")
    for where in ("/srv/../etc", "/srv/a b", "relative"):
        with pytest.raises(ValueError):
            mount_unit_name(where)


def test_the_private_ports_reach_only_the_private_network_in_the_host_firewall():
    bundle = json.loads(render_host_bundle(role="app", deploy_user="deploy", admin_keys=[], ssh_port=4660,
                                           private=("10.42.0.0/16", (6379,)), web=False))
    rules = next(f["content"] for p, f in bundle["files"].items() if p.endswith(".nft"))
    assert "ip saddr 10.42.0.0/16 tcp dport { 6379 } accept" in rules
    assert "tcp dport { 4660 } accept" in rules, "a server serving no hostname still opens 80/443"


def test_an_app_on_several_servers_is_replaced_one_server_at_a_time(ex):
    """Each server's container waits for the previous server's to be done, and is done only once
    healthy (the Docker provider's `wait`), so an update never takes every server down at once."""
    cfg, run = _cfg(ex), example(ex)
    containers = {r.name: r for r in _by_type(run, "docker:index/container:Container")}
    for name, app in cfg.apps.items():
        hosts = app.hosts()
        for before, here in zip(hosts, hosts[1:]):
            c, prev = containers[f"{here}-containers-{name}"], containers[f"{before}-containers-{name}"]
            assert prev.urn in c.dependencies, f"{name} on {here} does not wait for {name} on {before}"
        for h in hosts if len(hosts) > 1 and app.healthcheck else []:
            assert containers[f"{h}-containers-{name}"].plain.get("wait") is True, f"{name} on {h} is not awaited healthy"
    for members in cfg.balanced_sets():
        for before, here in zip(members, members[1:]):
            proxy, prev = containers[f"{here}-containers-proxy"], containers[f"{before}-containers-proxy"]
            assert prev.urn in proxy.dependencies, f"the proxy of {here} does not wait for the one of {before}"


def test_the_proxies_behind_a_load_balancer_pass_caddy_validate(ex, tmp_path):
    """The Caddyfile each proxy of a load-balanced set really gets (its `uploads`), checked by Caddy."""
    from tests.test_renderers import caddy_validate

    cfg, run = _cfg(ex), example(ex)
    for members in cfg.balanced_sets():
        for s in members:
            proxy = next(c for c in _by_type(run, "docker:index/container:Container") if c.name == f"{s}-containers-proxy")
            text = next(u["content"] for u in proxy.plain["uploads"] if u["file"] == "/etc/caddy/Caddyfile")
            res = caddy_validate(tmp_path, text)
            assert res.returncode == 0, f"caddy validate rejected {s}'s Caddyfile:\n{res.stderr[-2000:]}\n{text}"


def test_a_proxy_behind_a_load_balancer_answers_health_checks_without_sni(ex):
    """OVH's HTTPS health monitor sends no SNI: Caddy must have a default name (default_sni), the
    one the monitor asks for, or it refuses the handshake and the member is marked down
    (shown against Caddy in test_shared_certificates_live)."""
    cfg, run = _cfg(ex), example(ex)
    pools = [r for r in _by_type(run, "CloudLoadbalancerPool") if r.plain["healthMonitor"]["type"] == "HTTPS"]
    for members in cfg.balanced_sets():
        for s in members:
            proxy = next(c for c in _by_type(run, "docker:index/container:Container") if c.name == f"{s}-containers-proxy")
            text = next(u["content"] for u in proxy.plain["uploads"] if u["file"] == "/etc/caddy/Caddyfile")
            sni = re.search(r"^\s*default_sni (\S+)$", text, re.M)
            assert sni, f"{s}'s proxy has no default_sni"
            assert any(p.plain["healthMonitor"]["domainName"] == sni.group(1) for p in pools), \
                f"{s}'s default_sni {sni.group(1)} is not what the health monitor asks for"


def test_adding_a_server_keeps_the_load_balancer_its_address_and_its_certificates(balanced):
    """Named after the app, not the servers: a fourth server joins the pools; the load balancer,
    its floating IP and the certificate share stay (a new address would break DNS for a TTL, new
    storage would re-issue every certificate)."""
    values = _values(balanced)
    app = _balanced_app(values)
    new = "extra1"
    values["servers"][new] = dict(values["servers"][values["apps"][app]["servers"][0]])
    values["apps"][app]["servers"].append(new)
    before = {r.urn for r in example(balanced).resources}
    after = run_program(_stack_of(balanced), config={f"socle:{k}": v if isinstance(v, str) else json.dumps(v)
                                                     for k, v in values.items()},
                        secret_keys=["socle:secrets"] if "secrets" in values else None)
    kept = ("cloudLoadbalancer:CloudLoadbalancer", "CloudFloatingIp", "CloudStorageFileShare:")
    for r in example(balanced).resources:
        if any(k in r.type for k in kept):
            assert r.urn in {x.urn for x in after.resources}, f"adding {new} replaces {r.urn}"
    added = {r.name for r in after.resources if r.urn not in before}
    assert any(n.endswith(f"-https-{new}") for n in added), f"{new} did not join the pools: {sorted(added)}"


def test_a_server_behind_two_different_load_balanced_sets_is_refused():
    v = _base()
    app = _balanced_app(v)
    servers = v["apps"][app]["servers"]
    other = dict(v["apps"][app], hostname="other." + v["domain"], servers=[servers[0], "extra2"])
    other.pop("server", None)
    v["servers"]["extra2"] = dict(v["servers"][servers[0]])
    v["apps"]["other"] = other
    issues = _errors(v)
    assert any(p.endswith(".servers") and "one load balancer only" in m for p, m in issues), issues


def test_an_app_that_names_no_server_runs_on_the_only_one():
    v = stack_values("dev")
    app = next(n for n, a in v["apps"].items() if a.get("hostname"))
    v["apps"][app].pop("server", None)
    cfg, _ = load(v)
    assert cfg.apps[app].hosts() == cfg.app_servers(), cfg.apps[app].hosts()


def test_docker_waits_for_the_shared_storage_at_boot():
    from components.render.host_setup import DOCKER_AFTER_MOUNTS

    bundle = json.loads(render_host_bundle(role="app", deploy_user="deploy", admin_keys=[], ssh_port=4660,
                                           nfs_mounts=[("10.42.0.9:/shares/x", "/srv/socle-shared/lb-web")]))
    assert "RequiresMountsFor=/srv/socle-shared/lb-web" in bundle["files"][DOCKER_AFTER_MOUNTS]["content"]
