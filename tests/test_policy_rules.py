"""Each policy rule: a passing, a failing and an unknown-at-preview resource (Checkov style),
asserting the exact verdict and message."""

import json

import pytest

from components.render.caddyfile import Route, render_caddyfile
from policy import rules
from policy.rules import RULES, Res

U_STR = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
U_ARR = "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2"
U_NUM = "3eeb2bf0-c639-47a8-9e75-3b44932eb421"
U_BOOL = "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7"
U_OBJ = "dd056dcd-154b-4c76-9bd3-c8f88648b5ff"
RULE = {r.name: r for r in RULES}


def check(name, target, cfg=None):
    """Findings of one rule as (verdict, message): verdict is 'fail' or 'unknown'; [] is a pass."""
    r = RULE[name]
    conf = {**r.config, **(cfg or {})}
    found = rules.run_resource_rule(r, target, conf) if r.kind == "resource" else rules.run_stack_rule(r, target, conf)
    return [("unknown" if f.unknown else "fail", f.message) for f in found]


def unknown(what):
    return [("unknown", f"cannot check yet: {what} is not known until the update; this rule runs again then.")]


def container(name, role="app", **props):
    return Res(rules.T_CONTAINER, f"{name}-res", f"urn:{name}", {
        "name": name, "labels": [{"label": "socle.role", "value": role}], **props})


def test_unknown_sentinels_are_the_engines():
    from pulumi_policy import proxy
    ours = rules.UNKNOWN_SENTINELS
    theirs = {v for k, v in vars(proxy).items() if k.startswith("UNKNOWN_") and k.endswith("_VALUE")}
    assert ours == theirs


def test_every_rule_has_a_description_and_a_unique_name():
    assert len({r.name for r in RULES}) == len(RULES) >= 12
    assert all(r.description.endswith(".") for r in RULES)


# ---------------------------------------------------------------- only-proxy-publishes-ports

def test_ports_pass_app_without_ports_and_proxy_on_80_443():
    assert check("only-proxy-publishes-ports", container("socle-prod-web")) == []
    proxy = container("socle-prod-web-proxy", "proxy", ports=[{"internal": 80, "external": 80}, {"internal": 443, "external": 443}])
    assert check("only-proxy-publishes-ports", proxy) == []


def test_ports_fail_app_publishing_8080():
    app = container("socle-prod-web", ports=[{"internal": 8080, "external": 8080}])
    assert check("only-proxy-publishes-ports", app) == [("fail",
        "Container 'socle-prod-web' publishes host port 8080, bypassing the HTTPS proxy; remove it from `ports` "
        "and give the app a hostname, or, if it is not HTTP (e.g. SMTP), allow it in this policy's allowedPorts for "
        'this container with its reason: {"socle-prod-web": {"8080/tcp": "why it bypasses the proxy"}}.')]


def test_ports_allowed_explicitly_with_a_reason_pass():
    mail = container("socle-prod-mail", ports=[{"internal": 25, "external": 25}])
    assert check("only-proxy-publishes-ports", mail, {"allowedPorts": {"socle-prod-mail": {"25/tcp": "SMTP"}}}) == []
    sync = container("socle-prod-sync", ports=[{"internal": 22000, "external": 22000, "protocol": "udp"},
                                               {"internal": 22000, "external": 22000}])
    allow = {"socle-prod-sync": {"22000/tcp": "Syncthing sync", "22000/udp": "Syncthing sync (QUIC)"}}
    assert check("only-proxy-publishes-ports", sync, {"allowedPorts": allow}) == []


def test_ports_allowed_for_tcp_do_not_allow_udp_nor_another_container():
    sync = container("socle-prod-sync", ports=[{"internal": 21027, "external": 21027, "protocol": "udp"}])
    found = check("only-proxy-publishes-ports", sync, {"allowedPorts": {"socle-prod-sync": {"21027/tcp": "discovery"}}})
    assert found[0][1].startswith("Container 'socle-prod-sync' publishes host port 21027/udp, bypassing"), found
    found = check("only-proxy-publishes-ports", sync, {"allowedPorts": {"socle-prod-other": {"21027/udp": "discovery"}}})
    assert found and found[0][0] == "fail", found


def test_an_allow_list_entry_without_a_reason_or_in_the_old_form_allows_nothing():
    mail = container("socle-prod-mail", ports=[{"internal": 25, "external": 25}])
    old = check("only-proxy-publishes-ports", mail, {"allowedPorts": {"socle-prod-mail": [25]}})
    assert [v for v, _ in old] == ["fail", "fail"], old
    assert old[0][1].startswith("allowedPorts for 'socle-prod-mail' is [25]; give each port its protocol and reason"), old
    silent = check("only-proxy-publishes-ports", mail, {"allowedPorts": {"socle-prod-mail": {"25/tcp": ""}}})
    assert silent[0][1] == "allowedPorts for 'socle-prod-mail': 25/tcp has no reason; say why it bypasses the HTTPS proxy"
    assert "publishes host port 25," in silent[1][1], silent
    bad = check("only-proxy-publishes-ports", mail, {"allowedPorts": {"socle-prod-mail": {"25": "SMTP"}}})
    assert "'25' is not PORT/tcp or PORT/udp" in bad[0][1], bad


def test_ports_fail_proxy_publishing_8080():
    proxy = container("p", "proxy", ports=[{"internal": 80, "external": 8080}, {"internal": 443, "external": 443}])
    assert check("only-proxy-publishes-ports", proxy) == [("fail",
        "Reverse proxy 'p' publishes [443, 8080]; it must publish exactly 80 (redirect) and 443 (HTTPS): "
        "set socle:proxy.httpPort/httpsPort back to 80/443.")]


def test_a_port_bound_privately_and_publicly_is_public():
    both = container("socle-prod-sessions", "cache", ports=[{"internal": 6379, "external": 6379, "ip": "10.42.0.7"},
                                                            {"internal": 6379, "external": 6379}])
    assert check("only-proxy-publishes-ports", both)[0][1].startswith(
        "Container 'socle-prod-sessions' publishes host port 6379, bypassing the HTTPS proxy")


def test_ports_published_on_a_private_address_pass_public_fail_unknown_waits():
    cache = container("socle-prod-sessions", "cache", ports=[{"internal": 6379, "external": 6379, "ip": "10.42.0.7"}])
    assert check("only-proxy-publishes-ports", cache) == []
    public = container("socle-prod-sessions", "cache", ports=[{"internal": 6379, "external": 6379, "ip": "203.0.113.7"}])
    assert check("only-proxy-publishes-ports", public)[0][1].startswith(
        "Container 'socle-prod-sessions' publishes host port 6379, bypassing the HTTPS proxy")
    pending = container("socle-prod-sessions", "cache", ports=[{"internal": 6379, "external": 6379, "ip": U_STR}])
    assert check("only-proxy-publishes-ports", pending) == unknown("ports of socle-prod-sessions-res[0].ip")


def test_ports_fail_host_network():
    assert check("only-proxy-publishes-ports", container("c", networkMode="host"))[0][1].startswith(
        "Container 'c' uses the host network")


def test_ports_unknown():
    assert check("only-proxy-publishes-ports", container("c", ports=U_ARR)) == unknown("ports of c-res")


# ---------------------------------------------------------------- proxy-serves-https-only

def proxy_with(caddyfile):
    return container("socle-prod-web-proxy", "proxy", uploads=[{"file": "/etc/caddy/Caddyfile", "content": caddyfile}])


def good_caddyfile(**kw):
    args = {"acme_email": "admin@example.org", "internal_ca": False, "hsts_max_age": 31536000} | kw
    return render_caddyfile([Route("cloud.example.org", "nextcloud:80")], **args)


def test_https_passes_rendered_caddyfile():
    assert check("proxy-serves-https-only", proxy_with(good_caddyfile())) == []


def test_https_fails_without_redirect():
    text = good_caddyfile().replace("redir https://{host}{uri} 308", "respond \"hello\" 200")
    assert check("proxy-serves-https-only", proxy_with(text)) == [("fail",
        "Proxy 'socle-prod-web-proxy': http://cloud.example.org does not redirect to HTTPS; make its only directive "
        "`redir https://{host}{uri} 308`.")]


def test_https_automatic_redirects_count_when_enabled():
    text = "{\n\temail a@example.org\n}\ncloud.example.org {\n\theader Strict-Transport-Security \"max-age=31536000\"\n\treverse_proxy x:80\n}\n"
    assert check("proxy-serves-https-only", proxy_with(text)) == []


def test_https_fails_short_hsts_old_tls_and_missing_contact():
    text = good_caddyfile(hsts_max_age=86400).replace("tls1.2 tls1.3", "tls1.0 tls1.3")
    text = text.replace("\temail admin@example.org\n", "").replace("tls admin@example.org {", "tls {")
    assert check("proxy-serves-https-only", proxy_with(text)) == [
        ("fail", "Proxy 'socle-prod-web-proxy': cloud.example.org sends HSTS max-age=86400, below the required "
                 "31536000; raise socle:proxy.hstsMaxAge to 31536000."),
        ("fail", "Proxy 'socle-prod-web-proxy': cloud.example.org accepts TLS 1.0; set `protocols tls1.2 tls1.3`."),
        ("fail", "Proxy 'socle-prod-web-proxy': cloud.example.org has no ACME contact; set socle:proxy.acmeEmail so "
                 "Let's Encrypt can warn about expiring certificates."),
    ]


def test_https_internal_ca_only_where_allowed():
    text = render_caddyfile([Route("app.socle.localhost", "web:80")], acme_email=None, internal_ca=True, hsts_max_age=86400)
    assert check("proxy-serves-https-only", proxy_with(text), {"allowInternalCa": True, "minHstsMaxAge": 86400}) == []
    assert check("proxy-serves-https-only", proxy_with(text), {"minHstsMaxAge": 86400}) == [("fail",
        "Proxy 'socle-prod-web-proxy': app.socle.localhost uses Caddy's internal CA, which visitors do not trust; "
        "use Let's Encrypt by setting socle:proxy.acmeEmail on a public target.")]


def test_https_fails_without_hsts():
    text = good_caddyfile().replace('\t\tStrict-Transport-Security "max-age=31536000"\n', "")
    assert check("proxy-serves-https-only", proxy_with(text)) == [("fail",
        "Proxy 'socle-prod-web-proxy': cloud.example.org sends no Strict-Transport-Security header; add HSTS "
        "(max-age=31536000).")]


def test_https_unknown():
    assert check("proxy-serves-https-only", container("p", "proxy", uploads=U_ARR)) == unknown("uploads of p-res")


def test_https_ignores_non_proxy_containers():
    assert check("proxy-serves-https-only", container("web", uploads=U_ARR)) == []


# ---------------------------------------------------------------- dns-points-at-tls-terminator

def dns_graph(values, proxy_host="ssh://deploy@203.0.113.10:4660", **record):
    prov = Res(rules.T_DOCKER_PROVIDER, "web-docker", "urn:prov", {"host": proxy_host})
    proxy = container("socle-prod-web-proxy", "proxy")
    proxy.provider = "urn:prov"
    rec = Res(rules.T_GANDI_RECORD, "dns-app-web", "urn:rec", {"name": "app", "type": "A", "values": values, **record})
    return [prov, proxy, rec]


def test_dns_passes_record_to_proxy_server():
    assert check("dns-points-at-tls-terminator", dns_graph(["203.0.113.10"])) == []


def test_dns_fails_record_to_other_address():
    assert check("dns-points-at-tls-terminator", dns_graph(["198.51.100.7"])) == [("fail",
        "DNS record app A points at 198.51.100.7, which runs no HTTPS proxy; point it at the app's server (give the "
        "app a hostname in socle:apps) or list the address in this policy's allowedAddresses if it serves no HTTP.")]


def test_dns_allowed_address_and_load_balancer_pass():
    assert check("dns-points-at-tls-terminator", dns_graph(["198.51.100.7"]), {"allowedAddresses": ["198.51.100.7"]}) == []
    g = dns_graph(["198.51.100.9"])
    g.append(Res(rules.T_LB, "lb", "urn:lb", {}))
    g[2].dependencies = ["urn:lb"]
    assert check("dns-points-at-tls-terminator", g) == []


def test_dns_unknown():
    assert check("dns-points-at-tls-terminator", dns_graph(U_ARR)) == unknown("values of DNS record dns-app-web")


# ---------------------------------------------------------------- zone-has-caa

def rec(t, name="@", values=("x",)):
    return Res(rules.T_GANDI_RECORD, f"dns-{t}", f"urn:{t}", {"name": name, "type": t, "values": list(values)})


def test_caa_passes():
    assert check("zone-has-caa", [rec("A"), rec("CAA")]) == []
    assert check("zone-has-caa", []) == [], "no DNS at all (target local) needs no CAA"


def test_caa_fails():
    assert check("zone-has-caa", [rec("A"), rec("MX")]) == [("fail",
        "The DNS zone has records but no CAA record; keep socle:dns.caaIssuers non-empty (default: letsencrypt.org) "
        "so socle creates one.")]


def test_caa_unknown():
    r = rec("A")
    r.props["type"] = U_STR
    assert check("zone-has-caa", [r]) == unknown("the type of DNS record dns-A")


# ---------------------------------------------------------------- database-connections-use-tls

def test_db_tls_passes_managed_with_sslmode_and_local_alias():
    c = container("socle-prod-web", envs=["DATABASE_URL=postgresql://app:pw@main.database.cloud.ovh.net:20184/app?sslmode=require",
                                          "OTHER=postgresql://app:pw@main:5432/app", "X=1"])
    assert check("database-connections-use-tls", c) == []


def test_db_tls_fails_without_tls_and_never_prints_the_password():
    c = container("socle-prod-web", envs=["LEGACY_URL=mysql://u:hunter2@db.example.net:3306/legacy"])
    found = check("database-connections-use-tls", c)
    assert found == [("fail", "Container 'socle-prod-web' connects to database host db.example.net without TLS "
                              "(LEGACY_URL); use the URL socle generates for socle:apps.*.databases (it ends in "
                              "?sslmode=require), not a hand-written one.")]
    assert "hunter2" not in found[0][1]


def test_db_tls_unknown():
    assert check("database-connections-use-tls", container("c", envs=U_ARR)) == unknown("envs of c-res")


# ---------------------------------------------------------------- load-balancer-listeners-https

def lb_graph(protocol, redirect=None):
    lst = Res(rules.T_LB_LISTENER, "front-80", "urn:l", {"protocol": protocol, "protocolPort": 80})
    out = [lst]
    if redirect:
        out.append(Res(rules.T_LB_L7POLICY, "front-80-redirect", "urn:p",
                       {"action": "REDIRECT_PREFIX", "redirectPrefix": redirect}, dependencies=["urn:l"]))
    return out


def test_lb_passes_https_and_http_redirecting():
    assert check("load-balancer-listeners-https", lb_graph("TERMINATED_HTTPS")) == []
    assert check("load-balancer-listeners-https", lb_graph("HTTP", "https://example.org")) == []


def test_lb_fails_plain_http():
    assert check("load-balancer-listeners-https", lb_graph("HTTP", "http://example.org")) == [("fail",
        "Load-balancer listener 'front-80' speaks HTTP; use TERMINATED_HTTPS, or for HTTP add an L7 policy "
        "REDIRECT_PREFIX to https://.")]


def passthrough_graph(listen=443, member_port=443, proxy_ports=((80, 80), (443, 443))):
    """A TCP listener, its pool, one member, and a socle proxy publishing `proxy_ports` (host, container)."""
    pool = Res(rules.T_LB_POOL, "lb-https", "urn:pool", {"protocol": "TCP"})
    lst = Res(rules.T_LB_LISTENER, "lb-https", "urn:lst", {"protocol": "TCP", "protocolPort": listen},
              dependencies=["urn:pool"])
    member = Res(rules.T_LB_MEMBER, "lb-https-web1", "urn:m", {"name": "web1", "protocolPort": member_port,
                                                                "address": "10.42.0.20"}, dependencies=["urn:pool"])
    proxy = container("socle-prod-web1-proxy", "proxy",
                      ports=[{"internal": i, "external": e} for e, i in proxy_ports])
    return [pool, lst, member, proxy]


def test_lb_tcp_passthrough_to_the_proxies_passes():
    assert check("load-balancer-listeners-https", passthrough_graph()) == []
    assert check("load-balancer-listeners-https", passthrough_graph(80, 80)) == []
    # proxies on other host ports: the listener still reaches their HTTPS port
    assert check("load-balancer-listeners-https",
                 passthrough_graph(443, 8443, ((8080, 80), (8443, 443)))) == []


def test_lb_tcp_passthrough_fails_off_the_proxies_or_other_ports():
    assert check("load-balancer-listeners-https", passthrough_graph(8080, 8080)) == [("fail",
        "Load-balancer listener 'lb-https' passes TCP port 8080 through: only 443 (TLS, terminated by the servers' "
        "HTTPS proxies) and 80 (their redirect) may be passed through.")]
    assert check("load-balancer-listeners-https", passthrough_graph(443, 80)) == [("fail",
        "Load-balancer listener 'lb-https' passes port 443 to port 80 of member 'web1', which is not a socle "
        "proxy's port 443.")]
    assert check("load-balancer-listeners-https", passthrough_graph()[:2] + passthrough_graph()[3:]) == [("fail",
        "Load-balancer listener 'lb-https' passes TCP port 443 to a pool with no members socle made.")]
    g = passthrough_graph()
    g[2].props["address"] = "198.51.100.9"
    assert check("load-balancer-listeners-https", g) == [("fail",
        "Load-balancer listener 'lb-https' passes port 443 to member 'web1' at 198.51.100.9, outside the private "
        "network: only socle's servers, at their private addresses, may be members.")]
    g = passthrough_graph()
    del g[2].props["protocolPort"]
    assert check("load-balancer-listeners-https", g)[0][1].endswith("which is not a socle proxy's port 443."), \
        "a member without a port is a finding, not a crash"
    g = passthrough_graph()
    del g[1].props["protocolPort"]
    assert check("load-balancer-listeners-https", g)[0][1].startswith(
        "Load-balancer listener 'lb-https' passes TCP port None through"), "a listener without a port is a finding"


def test_lb_tcp_passthrough_unknown_member_port():
    g = passthrough_graph()
    g[2].props["protocolPort"] = U_NUM
    assert check("load-balancer-listeners-https", g) == unknown("port of pool member lb-https-web1")


def test_lb_unknown():
    assert check("load-balancer-listeners-https", lb_graph(U_STR)) == unknown("protocol of listener front-80")


# ---------------------------------------------------------------- database-backups-offsite / deletion protection

def db(**props):
    base = {"description": "socle-prod-main", "backupTime": "02:30:00", "backupRegions": ["GRA", "SBG"],
            "nodes": [{"region": "GRA"}, {"region": "GRA"}], "deletionProtection": True}
    return Res(rules.T_OVH_DATABASE, "main-cluster", "urn:db", {**base, **props})


def test_db_backups_pass():
    assert check("database-backups-offsite", db()) == []


def test_db_backups_fail_one_region_and_no_time():
    assert check("database-backups-offsite", db(backupRegions=["GRA"], backupTime="")) == [
        ("fail", "Database 'socle-prod-main' has no backupTime; set socle:databases.*.backupTime (e.g. '02:30:00')."),
        ("fail", "Database 'socle-prod-main' keeps backups only in GRA; add a second region to backupRegions "
                 "(set socle:ovh.backupRegion to another location, e.g. SBG5 for GRA11)."),
    ]


def test_db_backups_unknown():
    assert check("database-backups-offsite", db(backupRegions=U_ARR)) == unknown("backupRegions of main-cluster")


def test_deletion_protection_pass_fail_unknown():
    assert check("database-deletion-protection", db()) == []
    assert check("database-deletion-protection", db(deletionProtection=False)) == [("fail",
        "Database 'socle-prod-main' can be deleted by a mistaken destroy; set socle:databases.*.deletionProtection: "
        "true in this stack.")]
    assert check("database-deletion-protection", db(deletionProtection=U_BOOL)) == unknown("deletionProtection of main-cluster")


# ---------------------------------------------------------------- bucket-versioning

def bucket(**props):
    return Res(rules.T_OVH_STORAGE, "documents-bucket", "urn:b", {"name": "socle-prod-documents", "regionName": "GRA",
                                                                   "versioning": {"status": "enabled"}, **props})


def test_versioning_passes():
    assert check("bucket-versioning", bucket()) == []
    job = container("socle-dev-documents-create", "bucket-create", command=["mc mb --with-versioning s3/x"])
    assert check("bucket-versioning", job) == []


def test_versioning_fails():
    assert check("bucket-versioning", bucket(versioning={"status": "disabled"})) == [("fail",
        "Bucket 'socle-prod-documents' is not versioned, so an overwrite or a delete loses data; set "
        "socle:buckets.*.versioning: true.")]
    job = container("socle-dev-documents-create", "bucket-create", command=["mc mb s3/x"])
    assert check("bucket-versioning", job)[0][1].startswith("Bucket created by 'socle-dev-documents-create' is not versioned")


def test_versioning_unknown():
    assert check("bucket-versioning", bucket(versioning=U_OBJ)) == unknown("versioning of documents-bucket")


# ---------------------------------------------------------------- backup-bucket-immutable-offsite

def backup_bucket(**props):
    base = {"name": "socle-prod-backups", "regionName": "SBG", "tags": {"socle-purpose": "backup"},
            "objectLock": {"status": "enabled", "rule": {"mode": "compliance", "period": "P30D"}}}
    return Res(rules.T_OVH_STORAGE, "backups-bucket", "urn:bb", {**base, **props})


VM = Res(rules.T_OVH_INSTANCE, "web-vm", "urn:vm", {"name": "socle-prod-web", "region": "GRA11"})


def test_backup_bucket_passes():
    assert check("backup-bucket-immutable-offsite", [VM, backup_bucket(), bucket(tags={"socle-purpose": "data"})]) == []


def test_backup_bucket_fails_unlocked_short_lock_and_same_region():
    assert check("backup-bucket-immutable-offsite", [VM, backup_bucket(objectLock={})]) == [("fail",
        "Backup bucket 'socle-prod-backups' has no object lock in compliance mode, so ransomware holding the keys can "
        "delete the backups; set objectLock {mode: compliance, days: 30} on it.")]
    short = backup_bucket(objectLock={"status": "enabled", "rule": {"mode": "compliance", "period": "P7D"}})
    assert check("backup-bucket-immutable-offsite", [VM, short]) == [("fail",
        "Backup bucket 'socle-prod-backups' locks objects for 7 days, below the required 30; raise its "
        "objectLock.days to 30.")]
    assert check("backup-bucket-immutable-offsite", [VM, backup_bucket(regionName="GRA")]) == [("fail",
        "Backup bucket 'socle-prod-backups' is in GRA, where the data it protects lives; put it in "
        "socle:ovh.backupRegion (another location).")]


def test_backup_bucket_unknown():
    assert check("backup-bucket-immutable-offsite", [VM, backup_bucket(objectLock=U_OBJ)]) == unknown(
        "objectLock of backups-bucket")


# ---------------------------------------------------------------- backup-server-offsite

def backup_server(region="SBG5"):
    sg = Res(rules.T_OVH_SECURITY_GROUP, "backup-sg", "urn:bsg",
             {"description": "socle backup server: SSH 4660 from admin networks only"}, parent="urn:backup")
    vm = Res(rules.T_OVH_INSTANCE, "backup-vm", "urn:bvm", {"name": "socle-prod-backup", "region": region},
             parent="urn:backup")
    return [sg, vm]


def test_backup_server_offsite_passes():
    assert check("backup-server-offsite", [VM, *backup_server("SBG5")]) == []


def test_backup_server_beside_the_data_fails():
    assert check("backup-server-offsite", [VM, *backup_server("GRA9")]) == [("fail",
        "Backup server 'socle-prod-backup' is in GRA, where the data it keeps lives; set socle:ovh.backupRegion to "
        "another location (e.g. SBG5 for data in GRA).")]


def test_backup_server_offsite_unknown():
    assert check("backup-server-offsite", [VM, *backup_server(U_STR)]) == unknown("region of backup-vm")


def test_a_backup_server_is_not_data_for_the_bucket_rule():
    """The backup server sits in the backup region: the backup bucket beside it is still off-site."""
    assert check("backup-bucket-immutable-offsite", [VM, *backup_server("SBG5"), backup_bucket()]) == []


# ---------------------------------------------------------------- stateful-data-backed-up

def manifest(volumes=("socle-prod-nextcloud-data",), dbs=("nextcloud",), retention=None, targets=("bucket",)):
    return {"host": "web", "volumes": [{"name": v, "path": f"/v/{v}"} for v in volumes],
            "databases": [{"cluster": "socle-prod-main", "database": d} for d in dbs],
            "retention": retention or {"daily": 7, "weekly": 4, "monthly": 12, "yearly": 5},
            "targets": [{"name": t} for t in targets]}


def backup_graph(m=None, stdin=None):
    vol = Res(rules.T_VOLUME, "v", "urn:v", {"name": "socle-prod-nextcloud-data",
                                            "labels": [{"label": "socle.stateful", "value": "true"}]})
    cluster = Res(rules.T_OVH_DATABASE, "main-cluster", "urn:c", {"description": "socle-prod-main"}, parent="urn:dbcomp")
    logical = Res("ovh:CloudProjectDatabase/databaseInstance:DatabaseInstance", "main-nextcloud", "urn:l",
                  {"name": "nextcloud"}, parent="urn:dbcomp")
    job = Res(rules.T_REMOTE_COMMAND, "web-backup-install", "urn:j",
              {"stdin": stdin if stdin is not None else json.dumps({"manifest": m or manifest(), "files": {}})})
    return [vol, cluster, logical, job]


def test_backed_up_passes():
    assert check("stateful-data-backed-up", backup_graph(), {"minRetentionDays": 1825}) == []


def test_backed_up_fails_retention_30_days_in_prod():
    g = backup_graph(manifest(retention={"daily": 30}))
    assert check("stateful-data-backed-up", g, {"minRetentionDays": 1825}) == [("fail",
        "Backup job of server 'web' keeps snapshots for 30 days, below the stack's minimum of 1825; raise "
        "socle:backup.retention (e.g. yearly: 5).")]


def test_backed_up_fails_uncovered_volume_and_database():
    assert check("stateful-data-backed-up", backup_graph(manifest(volumes=(), dbs=()))) == [
        ("fail", "Volume 'socle-prod-nextcloud-data' holds state but no backup job covers it; keep socle:backup "
                 "enabled for its server and do not set backup: false on the volume."),
        ("fail", "Database 'socle-prod-main' is not dumped by any backup job (nextcloud missing); every database an "
                 "app uses is dumped by the backup job of that app's server."),
    ]


def test_backed_up_unknown():
    # one finding per resource it could not judge: the volume and the database
    assert check("stateful-data-backed-up", backup_graph(stdin=U_STR)) == 2 * unknown(
        "the backup manifest of web-backup-install")


# ---------------------------------------------------------------- backups-are-watched

def test_watched_passes():
    m = {**manifest(), "watched": ["check", "drill", "run"]}
    assert check("backups-are-watched", backup_graph(m), {"requiredPings": ["run", "check", "drill"]}) == []


def test_watched_fails_without_dead_man_urls():
    m = {**manifest(), "watched": ["run"]}
    assert check("backups-are-watched", backup_graph(m), {"requiredPings": ["run", "check", "drill"]}) == [("fail",
        "Backup job of server 'web' reports check, drill to no dead-man URL, so backups that stop would go unnoticed; "
        "set socle:backup.checkPingUrl, socle:backup.drillPingUrl (a Healthchecks-style URL each, {config: NAME} to "
        "keep it secret).")]


def test_watched_unknown():
    assert check("backups-are-watched", backup_graph(stdin=U_STR)) == unknown("the backup manifest of web-backup-install")


def test_retention_days():
    assert rules.retention_days({"daily": 7, "weekly": 4, "monthly": 12, "yearly": 5}) == 1825
    assert rules.retention_days({"daily": 30}) == 30
    assert rules.retention_days({}) == 0


# ---------------------------------------------------------------- instance-backups

def instance_graph(rotation=7, with_flow=True):
    vm = Res(rules.T_OVH_INSTANCE, "web-vm", "urn:vm", {"name": "socle-prod-web", "region": "GRA11"}, parent="urn:srv")
    prov = Res(rules.T_DOCKER_PROVIDER, "web-docker", "urn:prov", {"host": "ssh://deploy@203.0.113.10:4660"}, parent="urn:srv")
    vol = Res(rules.T_VOLUME, "v", "urn:v", {"name": "data", "labels": [{"label": "socle.stateful", "value": "true"}]},
              provider="urn:prov")
    out = [vm, prov, vol]
    if with_flow:
        out.append(Res(rules.T_OVH_WORKFLOW_BACKUP, "web-autobackup", "urn:wf", {"rotation": rotation}, parent="urn:srv"))
    return out


def test_instance_backups_pass():
    assert check("instance-backups", instance_graph(14)) == []
    stateless = [r for r in instance_graph(with_flow=False) if r.type != rules.T_VOLUME]
    assert check("instance-backups", stateless) == [], "a server without state needs no snapshots"


def test_instance_backups_fail():
    assert check("instance-backups", instance_graph(with_flow=False)) == [("fail",
        "Server 'socle-prod-web' holds state but has no instance backup; set socle:servers.*.autoBackup (rotation: 7).")]
    assert check("instance-backups", instance_graph(3)) == [("fail",
        "Server 'socle-prod-web' keeps 3 instance backups, below the required 7; raise "
        "socle:servers.*.autoBackup.rotation to 7.")]


def test_instance_backups_unknown():
    assert check("instance-backups", instance_graph(U_NUM)) == unknown("rotation of web-autobackup")


# ---------------------------------------------------------------- enforcement

@pytest.mark.parametrize("stack,level", [("dev", "advisory"), ("staging", "mandatory"), ("prod", "mandatory")])
def test_enforcement_per_stack(stack, level):
    from tools.policy_graph import policy_config
    conf = policy_config(stack)
    levels = {r.name: rules.enforcement(r, conf) for r in RULES}
    expected = {n: level for n in levels}
    expected["database-deletion-protection"] = "mandatory" if stack == "prod" else "disabled"
    # Production-only rules: staging deploys without protect; dev runs its database as a container.
    expected["stateful-resources-protected"] = "mandatory" if stack == "prod" else "disabled"
    if stack == "dev":
        expected["databases-managed"] = "disabled"
    assert levels == expected


def test_policy_config_files_only_name_known_rules_and_keys():
    # The plan's own check (unknown rules, unknown settings, unknown levels), on every config file.
    from tools.policy_graph import policy_config, policy_config_problems
    for stack in ("dev", "staging", "prod", "review"):
        problems = policy_config_problems(policy_config(stack))
        assert not problems, f"policy/config/{stack}.json: {problems}"


# ---------------------------------------------------------------- one unknown hides nothing else

def test_dns_judges_known_records_beside_an_unknown_one():
    g = dns_graph(["198.51.100.7"])
    g.append(Res(rules.T_GANDI_RECORD, "dns-app-pad", "urn:rec2", {"name": "pad", "type": "A", "values": U_ARR}))
    found = check("dns-points-at-tls-terminator", g)
    assert ("fail", "DNS record app A points at 198.51.100.7, which runs no HTTPS proxy; point it at the app's server "
            "(give the app a hostname in socle:apps) or list the address in this policy's allowedAddresses if it "
            "serves no HTTP.") in found, found
    assert ("unknown", "cannot check yet: values of DNS record dns-app-pad is not known until the update; this rule "
            "runs again then.") in found, found


def test_dns_record_to_an_unknown_proxy_address_is_unknown_not_failed():
    assert check("dns-points-at-tls-terminator", dns_graph(["198.51.100.7"], proxy_host=U_STR)) == unknown(
        "the address of web-docker (to tell whether 198.51.100.7 runs the HTTPS proxy)")


def test_backed_up_judges_what_it_can_while_a_manifest_is_unknown():
    g = backup_graph(stdin=U_STR)
    found = check("stateful-data-backed-up", g)
    assert [f[0] for f in found] == ["unknown", "unknown"], found
    assert {f[1] for f in found} == {
        "cannot check yet: the backup manifest of web-backup-install is not known until the update; this rule runs "
        "again then."}
    # the finding names the volume and the database it could not judge, one each
    r = RULE["stateful-data-backed-up"]
    assert sorted(f.resource for f in rules.run_stack_rule(r, g, r.config)) == ["main-cluster", "v"]


def test_a_stack_rule_keeps_its_violations_when_a_later_value_is_unknown():
    late = Res(rules.T_OVH_INSTANCE, "backup-vm", "urn:b", {"name": "socle-prod-backup", "region": U_STR},
               parent="urn:backupsrv")
    sg = Res(rules.T_OVH_SECURITY_GROUP, "backup-sg", "urn:bsg", {"description": "socle backup server: SSH"},
             parent="urn:backupsrv")
    bad = Res(rules.T_OVH_INSTANCE, "backup2-vm", "urn:b2", {"name": "socle-prod-backup2", "region": "GRA9"},
              parent="urn:backupsrv2")
    sg2 = Res(rules.T_OVH_SECURITY_GROUP, "backup2-sg", "urn:bsg2", {"description": "socle backup server: SSH"},
              parent="urn:backupsrv2")
    data = Res(rules.T_OVH_INSTANCE, "web-vm", "urn:w", {"name": "socle-prod-web", "region": "GRA11"}, parent="urn:websrv")
    found = check("backup-server-offsite", [late, sg, bad, sg2, data])
    assert ("fail", "Backup server 'socle-prod-backup2' is in GRA, where the data it keeps lives; set "
            "socle:ovh.backupRegion to another location (e.g. SBG5 for data in GRA).") in found, found
    assert ("unknown", "cannot check yet: region of backup-vm is not known until the update; this rule runs again "
            "then.") in found, found


# ---------------------------------------------------------------- stateful-resources-protected

def test_protected_passes_fails_and_ignores_unknown_props():
    vm = Res(rules.T_OVH_INSTANCE, "web-vm", "urn:w", {"name": "socle-prod-web", "region": U_STR}, protect=True)
    assert check("stateful-resources-protected", vm) == [], "protect is an option, known even when props are not"
    db = Res(rules.T_OVH_DATABASE, "main-cluster", "urn:c", {"description": "socle-prod-main"})
    assert check("stateful-resources-protected", db) == [("fail",
        "'main-cluster' (Database) holds data but is not protected, so a destroy or a replacement would delete it "
        "without asking; set socle:protect: true in this stack.")]


def test_protected_checks_only_stateful_cloud_types():
    assert rules.T_OVH_SECURITY_GROUP not in RULE["stateful-resources-protected"].types
    assert set(RULE["stateful-resources-protected"].types) >= {rules.T_OVH_INSTANCE, rules.T_OVH_DATABASE,
                                                               rules.T_OVH_STORAGE, rules.T_OVH_BLOCK_VOLUME}


# ---------------------------------------------------------------- databases-managed

def test_databases_managed_pass_fail_unknown():
    assert check("databases-managed", container("socle-prod-web")) == []
    db = container("socle-prod-main", "database")
    db.props["labels"].append({"label": "socle.database", "value": "main"})
    assert check("databases-managed", db) == [("fail",
        "Database 'main' runs as a container on an app server (the review profile's setting); in this stack a "
        "database is an OVH managed cluster: remove hosting: container from socle:databases.")]
    odd = Res(rules.T_CONTAINER, "c", "urn:c", {"name": "x", "labels": U_ARR})
    assert check("databases-managed", odd) == unknown("labels of c")


# ---------------------------------------------------------------- ssh-from-admin-networks-only

def sg(*rules_, private=None, containers=()):
    """A security group of server `web` (and the stack's private subnet, if any, and containers on
    that server's Docker provider): what the stack rule reads."""
    out = [Res(rules.T_OVH_SECURITY_GROUP, "web-sg", "urn:sg", {"name": "socle-prod-web-sg", "rules": list(rules_)},
               parent="urn:server-web"),
           Res("pulumi:providers:docker", "web-docker", "urn:docker-web", {}, parent="urn:server-web"),
           Res("pulumi:providers:docker", "db-docker", "urn:docker-db", {}, parent="urn:server-db")]
    for c in containers:
        c.provider = c.provider or "urn:docker-web"
        out.append(c)
    if private:
        out.append(Res(rules.T_VRACK_SUBNET, "private-gra11-subnet", "urn:subnet", {"cidr": private}))
    return out


def sg_rule(port, prefix, protocol="TCP"):
    return {"portRangeMin": port, "portRangeMax": port, "remoteIpPrefix": prefix, "protocol": protocol}


def test_a_port_open_to_the_internet_passes_only_where_a_container_of_that_server_publishes_it():
    sync = container("socle-prod-sync", ports=[{"internal": 22000, "external": 22000, "protocol": "udp"}])
    rules_ = (sg_rule(22000, "0.0.0.0/0", "UDP"), sg_rule(22000, "::/0", "UDP"))
    assert check("ssh-from-admin-networks-only", sg(*rules_, containers=[sync])) == []
    # The same port over TCP, or published by a container of another server, is not a reason.
    tcp = check("ssh-from-admin-networks-only", sg(sg_rule(22000, "0.0.0.0/0"), containers=[sync]))
    assert tcp == [("fail", "Security group 'socle-prod-web-sg' opens port 22000/tcp to 0.0.0.0/0 (4,294,967,296 "
                            "addresses) and no container of its server publishes it; list only admin blocks of /24 or "
                            "narrower in socle:access.adminCidrs.")], tcp
    elsewhere = container("socle-prod-sync", ports=[{"internal": 22000, "external": 22000, "protocol": "udp"}])
    elsewhere.provider = "urn:docker-db"
    assert check("ssh-from-admin-networks-only", sg(*rules_, containers=[elsewhere]))[0][0] == "fail"
    # A container whose ports are not known yet: the verdict waits.
    pending = container("socle-prod-sync", ports=U_ARR)
    assert check("ssh-from-admin-networks-only", sg(rules_[0], containers=[pending])) == [(
        "unknown", "cannot check yet: the ports a container of web-sg's server publishes is not known until the "
                   "update; this rule runs again then.")]


def test_ssh_exposure_passes_admin_blocks_and_public_https():
    assert check("ssh-from-admin-networks-only", sg(sg_rule(443, "0.0.0.0/0"), sg_rule(80, "::/0"),
                                                    sg_rule(4660, "203.0.113.0/28"), sg_rule(4660, "2001:db8::/56"))) == []


def test_ssh_exposure_passes_the_stacks_private_network_only():
    assert check("ssh-from-admin-networks-only", sg(sg_rule(6379, "10.42.0.0/16"), sg_rule(4660, "10.42.0.7/32"),
                                                    private="10.42.0.0/16")) == []
    wider = check("ssh-from-admin-networks-only", sg(sg_rule(6379, "10.0.0.0/8"), private="10.42.0.0/16"))
    assert wider == [("fail", "Security group 'socle-prod-web-sg' opens port 6379/tcp to 10.0.0.0/8 (16,777,216 addresses) "
                              "and no container of its server publishes it; list only admin blocks of /24 or narrower in socle:access.adminCidrs.")], wider
    assert check("ssh-from-admin-networks-only", sg(sg_rule(6379, "10.42.0.0/16")))[0][0] == "fail", \
        "a private block is not the stack's network when the stack has none"


def test_ssh_exposure_fails_the_internet_and_an_isp():
    assert check("ssh-from-admin-networks-only", sg(sg_rule(4660, "0.0.0.0/0"), sg_rule(22, "81.56.0.0/13"))) == [
        ("fail", "Security group 'socle-prod-web-sg' opens port 4660/tcp to 0.0.0.0/0 (4,294,967,296 addresses) and no container "
                 "of its server publishes it; list only admin blocks of /24 or narrower in socle:access.adminCidrs."),
        ("fail", "Security group 'socle-prod-web-sg' opens port 22/tcp to 81.56.0.0/13 (524,288 addresses) and no container "
                 "of its server publishes it; list only admin blocks of /24 or narrower in socle:access.adminCidrs."),
    ]


def test_ssh_exposure_judges_known_rules_beside_an_unknown_one():
    found = check("ssh-from-admin-networks-only", sg(sg_rule(4660, U_STR), sg_rule(4660, "0.0.0.0/0")))
    assert found[0] == ("unknown", "cannot check yet: a rule of web-sg (its source address) is not known until the "
                                   "update; this rule runs again then.")
    assert found[1][0] == "fail" and "0.0.0.0/0" in found[1][1]
    assert check("ssh-from-admin-networks-only", [Res(rules.T_OVH_SECURITY_GROUP, "web-sg", "urn:sg",
                                                      {"rules": U_ARR})]) == unknown("rules of web-sg")


def test_a_binding_whose_address_is_unknown_hides_only_its_own_port():
    # A cache published on its server's private address, unknown at preview: the rule waits for
    # 6379, and still refuses 5432 opened to the Internet beside it.
    cache = container("socle-prod-sessions", "cache", ports=[{"internal": 6379, "external": 6379, "ip": U_STR}])
    found = check("ssh-from-admin-networks-only", sg(sg_rule(6379, "0.0.0.0/0"), sg_rule(5432, "0.0.0.0/0"),
                                                     containers=[cache]))
    assert [v for v, _ in found] == ["unknown", "fail"], found
    assert "opens port 5432/tcp to 0.0.0.0/0" in found[1][1], found


def test_without_provider_resources_the_server_is_found_by_name():
    # Policy engines that leave provider resources out of the stack's list: socle's names link a
    # container's provider (<server>-docker) to its server's security group (<server>-sg).
    sync = container("socle-prod-sync", ports=[{"internal": 22000, "external": 22000, "protocol": "udp"}])
    graph = [r for r in sg(sg_rule(22000, "0.0.0.0/0", "UDP"), containers=[sync])
             if not r.type.startswith("pulumi:providers:")]
    sync.provider = "urn:pulumi:prod::socle::socle:compute:Server$pulumi:providers:docker::web-docker"
    assert check("ssh-from-admin-networks-only", graph) == []
    sync.provider = "urn:pulumi:prod::socle::socle:compute:Server$pulumi:providers:docker::db-docker"
    assert check("ssh-from-admin-networks-only", graph)[0][0] == "fail"


def test_443_over_udp_is_not_the_https_proxy():
    found = check("ssh-from-admin-networks-only", sg(sg_rule(443, "0.0.0.0/0", "UDP")))
    assert found and "opens port 443/udp" in found[0][1], found


def test_an_allowance_covers_the_port_inside_the_container_it_names():
    mail = container("socle-prod-mail", ports=[{"internal": 8080, "external": 25}])
    found = check("only-proxy-publishes-ports", mail, {"allowedPorts": {"socle-prod-mail": {"25/tcp": "SMTP"}}})
    assert found and "publishes host port 25/tcp->8080" in found[0][1], found
    assert check("only-proxy-publishes-ports", mail,
                 {"allowedPorts": {"socle-prod-mail": {"25/tcp->8080": "SMTP, the image listens on 8080"}}}) == []


# ---------------------------------------------------------------- backup-has-undeletable-copy

def _with_targets(*targets):
    m = manifest()
    m["targets"] = list(targets)
    return backup_graph(m)


def test_undeletable_copy_passes_a_bucket_or_the_append_only_server_beside_an_sftp_host():
    sftp = {"name": "sftp", "kind": "sftp"}
    assert check("backup-has-undeletable-copy", _with_targets({"name": "bucket", "kind": "s3"}, sftp)) == []
    assert check("backup-has-undeletable-copy",
                 _with_targets({"name": "backup-server", "kind": "rclone-ssh", "appendOnly": True}, sftp)) == []
    assert check("backup-has-undeletable-copy", _with_targets({"name": "local", "kind": "local"})) == [], \
        "the local engine (dev) has nothing out of reach to ask for"


def test_undeletable_copy_fails_an_sftp_host_alone():
    assert check("backup-has-undeletable-copy", _with_targets({"name": "sftp", "kind": "sftp"})) == [("fail",
        "Backup job of server 'web' writes only to sftp targets, which that server can also delete from (ransomware "
        "on it would take the backups too); add socle:backup.targets.bucket (object lock) or "
        "socle:backup.targets.server (append-only).")]


def test_undeletable_copy_waits_for_an_unknown_manifest_or_kind():
    assert check("backup-has-undeletable-copy", backup_graph(stdin=U_STR)) == unknown(
        "the backup manifest of web-backup-install")
    assert check("backup-has-undeletable-copy", _with_targets({"name": "x"})) == unknown(
        "the kind of a backup target of web-backup-install")
