"""Rules on the resource graph of each real stack, evaluated under Pulumi mocks."""

import ipaddress
import re

import pytest

from components.config import load
from tests.conftest import program, run_values, stack_values


def role(res):
    for lbl in res.plain.get("labels") or []:
        if lbl.get("label") == "socle.role":
            return lbl.get("value")
    return None


def caddyfile(run):
    """Every proxy's Caddyfile, one after the other (one proxy per server that serves hostnames)."""
    proxies = [c for c in run.of_type("docker:index/container:Container") if role(c) == "proxy"]
    assert proxies, f"{run.stack}: no proxy"
    texts = []
    for proxy in proxies:
        files = {u["file"]: u.get("content", "") for u in proxy.plain.get("uploads") or []}
        assert "/etc/caddy/Caddyfile" in files, f"{proxy.urn} has no Caddyfile upload"
        texts.append(files["/etc/caddy/Caddyfile"])
    return "\n".join(texts)


def test_only_the_proxy_publishes_host_ports_and_only_80_and_443(run):
    for c in run.of_type("docker:index/container:Container"):
        published = sorted(int(p.get("external", p["internal"])) for p in c.plain.get("ports") or [])
        if role(c) == "proxy":
            assert published == [80, 443], f"{c.urn} publishes {published}; the proxy publishes exactly 80 and 443"
        else:
            assert not published, f"{c.urn} publishes {published} on the host; only the proxy may"
        assert not c.plain.get("publishAllPorts"), f"{c.urn} publishes all ports"
        assert c.plain.get("networkMode") in (None, "bridge"), f"{c.urn} uses network mode {c.plain.get('networkMode')}"


def test_every_app_container_is_on_the_private_network(run):
    nets = {n.plain["name"] for n in run.of_type("docker:index/network:Network")}
    for c in run.of_type("docker:index/container:Container"):
        attached = {n["name"] for n in c.plain.get("networksAdvanced") or []}
        assert attached and attached <= nets, f"{c.urn} is on {attached}, not only on the private network {nets}"


def test_every_app_hostname_has_a_proxy_route_to_that_app(run):
    cfg, _ = load(stack_values(run.stack))
    text = caddyfile(run)
    for name, app in cfg.apps.items():
        if not app.hostname:
            continue
        block = re.search(rf"^{re.escape(app.hostname)} {{\n(.*?)^}}", text, re.S | re.M)
        assert block, f"{run.stack}: app {name} ({app.hostname}) has no HTTPS site in the Caddyfile"
        assert f"reverse_proxy {name}:{app.port}" in block.group(1), f"{app.hostname} does not proxy to {name}:{app.port}"
        assert "import socle_https" in block.group(1), f"{app.hostname} lacks the HSTS/TLS snippet"
        redirect = re.search(rf"^http://{re.escape(app.hostname)} {{\n\tredir https://", text, re.M)
        assert redirect, f"{app.hostname}: HTTP does not redirect to HTTPS"
    assert "protocols tls1.2 tls1.3" in text and "Strict-Transport-Security" in text


def test_proxy_uses_letsencrypt_on_ovh_and_the_internal_ca_on_local(run):
    text = caddyfile(run)
    if run.stack == "dev":
        assert "local_certs" in text and "tls internal" in text, "dev must use Caddy's internal CA"
    else:
        cfg, _ = load(stack_values(run.stack))
        assert f"email {cfg.proxy.acme_email}" in text and "local_certs" not in text, f"{run.stack} must use ACME"


def test_every_app_hostname_has_a_dns_record_to_its_server(ovh_run):
    cfg, _ = load(stack_values(ovh_run.stack))
    addresses = ovh_run.exports["servers"]
    records = {(r.plain["name"], r.plain["type"]): r.plain["values"] for r in ovh_run.of_type("livedns/record:Record")}
    for name, app in cfg.apps.items():
        if app.hostname:
            rel = app.hostname[: -len(cfg.dns_zone()) - 1] if app.hostname != cfg.dns_zone() else "@"
            assert (rel, "A") in records, f"{ovh_run.stack}: no A record for {app.hostname} (app {name})"
            assert records[(rel, "A")] == [addresses[app.server]], (
                f"{app.hostname} points at {records[(rel, 'A')]}, not at server {app.server} {addresses[app.server]}")


def test_the_domain_has_a_caa_record_allowing_only_letsencrypt(ovh_run):
    cfg, _ = load(stack_values(ovh_run.stack))
    at = "@" if cfg.domain == cfg.dns_zone() else cfg.domain[: -len(cfg.dns_zone()) - 1]
    caa = [r.plain for r in ovh_run.of_type("livedns/record:Record") if r.plain["type"] == "CAA"]
    assert len(caa) == 1 and caa[0]["name"] == at, f"{ovh_run.stack}: expected one CAA record at '{at}', got {caa}"
    issuers = [v for v in caa[0]["values"] if " issue " in v]
    assert issuers == ['0 issue "letsencrypt.org"'], issuers
    assert '0 issuewild ";"' in caa[0]["values"]


def test_extra_dns_records_from_config_are_created(ovh_run):
    types = {r.plain["type"] for r in ovh_run.of_type("livedns/record:Record")}
    assert {"MX", "TXT"} <= types, f"{ovh_run.stack}: extra records missing, have {types}"


def test_database_ip_restrictions_name_only_the_servers_that_use_it(ovh_run):
    cfg, _ = load(stack_values(ovh_run.stack))
    addresses = ovh_run.exports["servers"]
    for db in ovh_run.of_type("ovh:CloudProject/database:Database"):
        name = db.name.removesuffix("-cluster")
        users = {cfg.apps[a].server for a in cfg.users_of("databases", name)}
        allowed = {r["ip"] for r in db.plain.get("ipRestrictions") or []}
        assert allowed == {f"{addresses[s]}/32" for s in users}, (
            f"{db.urn} allows {allowed}; only the servers of its apps ({sorted(users)}) may connect")
        for ip in allowed:
            assert ipaddress.ip_network(ip).prefixlen == 32, f"{db.urn} allows a whole block {ip}"


def test_database_backups_are_set_with_a_second_region(ovh_run):
    for db in ovh_run.of_type("ovh:CloudProject/database:Database"):
        p = db.plain
        assert re.match(r"^\d\d:\d\d:\d\d$", p.get("backupTime", "")), f"{db.urn} has no backupTime"
        node_regions = {n["region"] for n in p["nodes"]}
        assert set(p["backupRegions"]) - node_regions, f"{db.urn} keeps backups only in {p['backupRegions']}"


def test_prod_has_deletion_protection_and_staging_does_not():
    prod, staging = program("prod"), program("staging")
    for db in prod.of_type("ovh:CloudProject/database:Database"):
        assert db.plain.get("deletionProtection") is True, f"{db.urn} has no deletion protection in prod"
        assert len(db.plain["nodes"]) >= 2, f"{db.urn}: prod needs a multi-node plan"
    for db in staging.of_type("ovh:CloudProject/database:Database"):
        assert not db.plain.get("deletionProtection"), f"{db.urn}: staging must stay destroyable"


def test_prod_keeps_more_instance_snapshots_than_staging():
    rot = {s: [w.plain["rotation"] for w in program(s).of_type("workflowBackup:WorkflowBackup")] for s in ("staging", "prod")}
    assert rot["prod"] and rot["staging"] and min(rot["prod"]) > max(rot["staging"]), rot


def test_no_secret_appears_in_plain_text_in_any_input_or_export(run):
    assert run.secret_values, "the mocks handed out no secret: this test would check nothing"
    leaks = []
    for res in run.resources:

        def walk(v, path):
            if isinstance(v, dict):
                if v.get("4dabf18193072939515e22adb298388d"):
                    return  # wrapped as a secret
                for k, x in v.items():
                    walk(x, f"{path}.{k}" if path else k)
            elif isinstance(v, list):
                for i, x in enumerate(v):
                    walk(x, f"{path}[{i}]")
            elif isinstance(v, str) and any(s in v for s in run.secret_values):
                leaks.append(f"{res.urn} input {path}")

        walk(res.inputs, "")
    exported = repr(run.exports)
    leaks += [f"export contains {s}" for s in run.secret_values if s in exported]
    assert not leaks, "secrets in plain text:\n" + "\n".join(leaks)


def test_app_secrets_reach_their_container_as_secrets():
    run = program("dev")
    web = next(c for c in run.of_type("docker:index/container:Container") if c.name.endswith("-web"))
    assert "envs" in web.secret_paths(), f"{web.urn}: envs holding SECRET_KEY and DATABASE_URL are not secret"
    envs = dict(e.split("=", 1) for e in web.plain["envs"])
    assert envs["DATABASE_URL"].startswith("postgresql://app:") and envs["DATABASE_URL"].endswith("@main:5432/app")
    assert envs["SECRET_KEY"] in run.secret_values
    worker = next(c for c in run.of_type("docker:index/container:Container") if c.name.endswith("-worker"))
    assert dict(e.split("=", 1) for e in worker.plain["envs"])["SECRET_KEY"] == envs["SECRET_KEY"], \
        "web and worker must share the generated SECRET_KEY"


def test_managed_database_urls_require_tls(ovh_run):
    web = next(c for c in ovh_run.of_type("docker:index/container:Container") if c.name.endswith("-web"))
    url = dict(e.split("=", 1) for e in web.plain["envs"])["DATABASE_URL"]
    assert url.endswith("?sslmode=require"), f"{web.urn}: DATABASE_URL does not require TLS: {url.split('@')[-1]}"


def test_staging_and_prod_share_one_shape():
    def shape(run):
        return sorted((r.type, r.name) for r in run.resources if r.type != "pulumi:pulumi:Stack")
    staging, prod = shape(program("staging")), shape(program("prod"))
    only_s, only_p = set(staging) - set(prod), set(prod) - set(staging)
    assert not only_s and not only_p, f"only in staging: {sorted(only_s)}; only in prod: {sorted(only_p)}"


def test_ssh_is_open_only_to_admin_cidrs_and_https_only_on_app_servers(ovh_run):
    """SSH from the admin blocks, and on a backup server from the private network (never from its
    clients' public addresses); 80/443 on app servers; any other port only from the private network."""
    cfg, _ = load(stack_values(ovh_run.stack))
    private = ovh_run.exports.get("privateAddresses") or {}
    assert set(private) == set(cfg.servers), f"servers off the private network: {set(cfg.servers) - set(private)}"
    app_ips = {cfg.network.cidr}
    for sg in ovh_run.of_type("cloudSecurityGroup:CloudSecurityGroup"):
        server = sg.name.removesuffix("-sg")
        for rule in sg.plain["rules"]:
            port = int(rule["portRangeMin"])
            assert int(rule["portRangeMax"]) == port, f"{sg.urn} opens a port range {rule}"
            if port == cfg.access.ssh_port:
                allowed = set(cfg.access.admin_cidrs) | (app_ips if cfg.servers[server].role == "backup" else set())
                assert rule["remoteIpPrefix"] in allowed, f"{sg.urn} opens SSH to {rule['remoteIpPrefix']}"
            elif rule["remoteIpPrefix"] != cfg.network.cidr:
                assert port in (80, 443) and cfg.servers[server].role == "app", f"{sg.urn} opens {port} on {server}"


def test_servers_get_cloud_init_and_docker_waits_for_it(ovh_run):
    by_urn = ovh_run.by_urn()
    for vm in ovh_run.of_type("cloudInstance:CloudInstance"):
        ud = vm.plain["userData"]
        assert ud.startswith("#cloud-config") and "PermitRootLogin no" in ud and "Port 4660" in ud, vm.urn
        assert vm.plain["securityGroupIds"], f"{vm.urn} has no security group"
    for prov in ovh_run.of_type("pulumi:providers:docker"):
        assert prov.plain["host"].startswith("ssh://deploy@"), prov.plain["host"]
        setups = [by_urn[d] for d in prov.dependencies if by_urn[d].name.endswith("-host-setup")]
        assert setups, f"{prov.urn} does not wait for host setup"
        waits = [by_urn[d] for d in setups[0].dependencies if by_urn[d].type == "command:remote:Command"]
        assert waits and "cloud-init status --wait" in waits[0].plain["create"], (
            f"{setups[0].urn} does not wait for cloud-init")


def test_the_host_firewall_opens_the_security_groups_ports_and_no_other(ovh_run):
    """The host firewall (defence in depth) and the security group must agree: a port the group
    opens but the host drops is an outage, one the host opens but the group does not, a hole the
    day the group is detached."""
    import json
    import re

    from components.render.firewall import FIREWALL_RULES

    setups = {r.name.removesuffix("-host-setup"): r for r in ovh_run.resources if r.name.endswith("-host-setup")}
    for sg in ovh_run.of_type("cloudSecurityGroup:CloudSecurityGroup"):
        server = sg.name.removesuffix("-sg")
        assert server in setups, f"{server} has a security group but no host setup"
        bundle = json.loads(setups[server].plain["stdin"])["bundle"]
        rules = bundle["files"][FIREWALL_RULES]["content"]
        host = {int(p) for p in re.search(r"tcp dport \{ ([\d, ]+) \} accept", rules).group(1).split(", ")}
        group = {int(r["portRangeMin"]) for r in sg.plain["rules"]}
        assert host == group, f"{server}: the host firewall opens {sorted(host)}, its security group {sorted(group)}"


def test_a_backup_client_installs_after_the_backup_server_knows_its_key(ovh_run):
    """A client's installer creates its repository on the backup server over the key that
    restic-access installs: on a first `pulumi up` it must wait for it."""
    by_urn = ovh_run.by_urn()
    installs = [r for r in ovh_run.resources if r.name.endswith("-backup-install")]
    access = {r.urn for r in ovh_run.resources if r.name.endswith("-restic-access")}
    for r in installs:
        manifest = r.plain["stdin"]
        if "rclone-ssh" not in manifest:
            continue
        waited = set()
        todo = list(r.dependencies)
        while todo:
            urn = todo.pop()
            if urn not in waited:
                waited.add(urn)
                todo.extend(by_urn[urn].dependencies if urn in by_urn else [])
        assert waited & access, f"{r.urn} can run before the backup server has its key (restic-access)"


def test_buckets_are_versioned_encrypted_and_have_a_user_limited_to_them(ovh_run):
    import json
    for b in ovh_run.of_type("ovh:CloudProject/storage:Storage"):
        assert b.plain["versioning"]["status"] == "enabled", f"{b.urn} is not versioned"
        assert b.plain["encryption"]["sseAlgorithm"] == "AES256", f"{b.urn} is not encrypted"
        policies = [p for p in ovh_run.of_type("s3Policy:S3Policy") if p.parent == b.parent]
        assert len(policies) == 1, f"{b.urn} has no dedicated S3 policy"
        doc = json.loads(policies[0].plain["policy"])
        resources = {r for st in doc["Statement"] for r in st["Resource"]}
        assert resources == {f"arn:aws:s3:::{b.plain['name']}", f"arn:aws:s3:::{b.plain['name']}/*"}, resources


def test_stateful_volumes_are_labelled_for_backup(run):
    vols = {v.plain["name"]: v.plain for v in run.of_type("docker:index/volume:Volume")}
    assert any(n.endswith("-nextcloud-data") for n in vols), sorted(vols)
    for name, v in vols.items():
        labels = {lbl["label"]: lbl["value"] for lbl in v.get("labels") or []}
        assert labels.get("socle.stateful") in ("true", "false"), f"volume {name} does not say whether it is stateful"


def test_exports_list_urls_servers_and_databases_without_secrets(run):
    assert set(run.exports) == {"urls", "servers", "privateAddresses", "databases", "buckets", "ssh", "backups"}
    assert all(u.startswith("https://") for u in run.exports["urls"].values()), run.exports["urls"]
    assert not run.export_secrets, f"exports {run.export_secrets} are secret: they should not carry secrets at all"


def test_protect_is_set_on_stateful_resources_in_prod_only():
    # `protect` is an engine option: the mocks do not see it, so check it on the model the program uses.
    assert load(stack_values("prod"))[0].protect is True
    assert load(stack_values("staging"))[0].protect is False


def test_config_secret_reaches_the_app_as_a_secret():
    v = stack_values("dev")
    v["secrets"] = {"smtpPassword": "s3cr3t-from-config"}
    v["apps"]["web"]["secrets"]["SMTP_PASSWORD"] = {"config": "smtpPassword"}
    run = run_values(v, secret_keys=("secrets",))
    web = next(c for c in run.of_type("docker:index/container:Container") if c.name.endswith("-web"))
    assert "envs" in web.secret_paths()
    assert "SMTP_PASSWORD=s3cr3t-from-config" in web.plain["envs"]


def test_maintenance_switch_serves_503_instead_of_the_app():
    v = stack_values("dev")
    v["apps"]["web"]["maintenance"] = True
    text = caddyfile(run_values(v))
    block = re.search(r"^app\.socle\.localhost {\n(.*?)^}", text, re.S | re.M).group(1)
    assert "respond" in block and "503" in block and "reverse_proxy" not in block, block


@pytest.mark.parametrize("engine,image", [("postgresql", "postgres:16-alpine"), ("mysql", "mariadb:11")])
def test_container_database_uses_a_volume_and_the_engine_image(engine, image):
    v = stack_values("dev")
    v["databases"]["main"].update({"engine": engine, "version": image.split(":")[1].split("-")[0]})
    run = run_values(v)
    images = {i.plain["name"] for i in run.of_type("remoteImage:RemoteImage")}
    assert image in images, images
    db = next(c for c in run.of_type("docker:index/container:Container") if role(c) == "database")
    assert db.plain["volumes"][0]["volumeName"].endswith("-main-data"), db.plain["volumes"]
    assert "envs" in db.secret_paths()


def test_managed_databases_have_a_maintenance_window_and_long_enough_timeouts(ovh_run):
    clusters = ovh_run.of_type("ovh:CloudProject/database:Database")
    for c in clusters:
        p = c.plain
        assert p.get("maintenanceTime") and p["maintenanceTime"] != p.get("backupTime"), \
            f"{c.urn}: maintenance window {p.get('maintenanceTime')} (backup at {p.get('backupTime')})"
        create = c.options.get("customTimeouts", {}).get("create", "")
        assert create.endswith("m") and int(create[:-1]) >= 60, f"{c.urn} create timeout {create!r} (provider default: 20m)"


def test_backup_buckets_are_protected_and_kept_on_destroy_in_every_ovh_stack(ovh_run):
    from components.config import load

    cfg = load(stack_values(ovh_run.stack))[0]
    name = cfg.backup_bucket()
    assert name, f"{ovh_run.stack} has no backup bucket"
    bucket = next(r for r in ovh_run.of_type("ovh:CloudProject/storage:Storage") if r.name == f"{name}-bucket")
    assert bucket.options.get("protect") and bucket.options.get("retainOnDelete"), \
        f"{bucket.urn} options {bucket.options}: removing objectLock or a destroy would delete every backup"


@pytest.mark.parametrize("region,location", [("GRA11", "GRA"), ("SBG5", "SBG"), ("GRA", "GRA"),
                                             ("EU-WEST-PAR", "EU-WEST-PAR"), ("eu-south-mil", "EU-SOUTH-MIL")])
def test_locations_of_regions_including_3az_agree_between_program_and_policy(region, location):
    from components.naming import ovh_location
    from policy.rules import _location

    assert ovh_location(region) == _location(region) == location


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_a_database_address_is_host_and_port_of_that_database(stack):
    """`address` (host:port in one variable, for Nextcloud) carries the cluster's own port: an OVH
    managed database does not listen on the engine's default."""
    cfg, _ = load(stack_values(stack))
    run = program(stack)
    uses = [(a, u) for a, app in cfg.apps.items() for u in app.databases if "address" in u.env]
    assert uses, f"{stack}: no app takes a database address; the test would check nothing"
    for aname, use in uses:
        c = next(r for r in run.of_type("docker:index/container:Container") if r.name.endswith(f"-containers-{aname}"))
        envs = dict(e.split("=", 1) for e in c.plain["envs"])
        host, port = envs[use.env["address"]].rsplit(":", 1)
        assert host and port.isdigit(), f"{aname}: {use.env['address']}={envs[use.env['address']]} is not host:port"
        if "port" in use.env:
            assert envs[use.env["port"]] == port
