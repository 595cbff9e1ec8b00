"""What a field alone cannot check: the stack config as a whole, one concern per function.

`cross_check` runs them all on a model that pydantic has already accepted field by field, and
returns every problem as (key path, message): the value as written, why it is wrong or dangerous,
and the fix. The policy pack judges the resource graph; this judges the stack file, so that a
mistake visible in the file stops the program (exit 2) before any resource is registered.
"""

from __future__ import annotations

import functools
import json
import re

from . import ovh_catalog
from .dns import relative_name
from .config import (
    _HOST_LABEL_RE,
    GeneratedSecret,
    StackConfig,
)

Issues = list[tuple[str, str]]

# Environment variable names that say "secret": their value belongs in `secrets`, which Pulumi keeps
# encrypted, not in `env`, which sits in plain text in the stack file, the state and the plan.
_SECRET_NAME = re.compile(
    r"PASSWORD|PASSWD|SECRET|TOKEN|APIKEY|API_KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL|"
    r"(^|_)(PASS|PWD|SALT|AUTH_?KEY)(_|$)|(^|_)KEY$")
# ... unless the name says it is a setting about the secret, not the secret (ACCESS_TOKEN_LIFETIME).
_SETTING_SUFFIX = re.compile(
    r"_(LIFETIME|TTL|EXPIRY|EXPIRES|EXPIRATION|TIMEOUT|ENDPOINT|URL|URI|HASHER|ALGORITHM|ALGO|LENGTH|POLICY|FILE|"
    r"PATH|DIR|HEADER|NAME|PREFIX|TYPE|ENABLED|REQUIRED|ROTATION|COST|ROUNDS|HOST|PORT|USER|USERNAME|ID)$")
# Values that are secrets whatever their name: URLs with a password, cloud keys, private keys, tokens.
_SECRET_VALUE = (
    (re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.I), "a URL with a password in it"),
    (re.compile(r"(^|\s)[A-Z_]*(PASSWORD|PASSWD|SECRET|TOKEN)[A-Z_]*=\S+"), "a password assignment"),
    (re.compile(r"^base64:[A-Za-z0-9+/=]{16,}$"), "an application key"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "an AWS-style access key"),
    (re.compile(r"\b(sk|rk)_live_[0-9A-Za-z]{10,}"), "a Stripe live key"),
    (re.compile(r"\bgh[pousr]_[0-9A-Za-z]{30,}"), "a GitHub token"),
    (re.compile(r"\bxox[abprs]-[0-9A-Za-z-]{10,}"), "a Slack token"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
)
# Values that cannot be secrets even under a secret-sounding name (PASSWORD_MIN_LENGTH: "12").
_HARMLESS = re.compile(r"^(|[0-9]{1,4}|true|false|yes|no|on|off|none|/(run|etc|var|srv|opt|data|usr|tmp|home|app)/\S*)$",
                       re.I)


def _known(kind: str, names) -> str:
    return f"(known {kind}: {', '.join(sorted(names)) or 'none'})"


def holds_state(cfg: StackConfig, server: str) -> bool:
    """A backup server, or an app server with a stateful volume or a container database."""
    if cfg.servers[server].role == "backup":
        return True
    if any(server in app.hosts() and any(v.stateful for v in app.volumes.values()) for app in cfg.apps.values()):
        return True
    if any(c.persistent and cfg.host_of("caches", n) == server for n, c in cfg.caches.items()):
        return True
    if cfg.mail is not None and cfg.mail.server == server:  # mailboxes and accounts
        return True
    return any(cfg.database_hosting(d) == "container" and cfg.host_of("databases", d) == server
               for d in cfg.databases)


def cross_check(cfg: StackConfig) -> Issues:
    issues: Issues = []
    for check in (_target, _ports, _ovh_catalog, _placement, _apps, _app_files, _secrets_in_env, _dns, _mail,
                  _monitoring, _buckets,
                  _backup, _backup_keeps_something, _physical_names):
        issues += check(cfg)
    return issues


# ---------------------------------------------------------------------------- monitoring


def _monitoring(cfg: StackConfig) -> Issues:
    """socle:monitoring: on a server of the stack, with somewhere to send the alerts."""
    m = cfg.monitoring
    if m is None:
        return []
    issues: Issues = []
    if cfg.target != "ovh":
        issues.append(("monitoring", "only on target ovh: it watches servers over the private network and probes "
                                     "the public hostnames from another server"))
    if m.server not in cfg.servers:
        issues.append(("monitoring.server", f"unknown server '{m.server}' {_known('servers', cfg.servers)}"))
    if m.email is None and m.webhook_url is None:
        issues.append(("monitoring", "alerts need somewhere to go: set email (to, from, smarthost, password) "
                                     "and/or webhookUrl"))
    if m.disk.warning_percent >= m.disk.critical_percent:
        issues.append(("monitoring.disk.warningPercent", f"{m.disk.warning_percent} is not below criticalPercent "
                                                         f"{m.disk.critical_percent}"))
    return issues


# ---------------------------------------------------------------------------- mail


def _mail(cfg: StackConfig) -> Issues:
    """socle:mail: on a server of the stack, a host name inside the domain, and no hand-written
    record that the generated ones would contradict (two SPF records make SPF fail: RFC 7208 §4.5)."""
    mail = cfg.mail
    if mail is None:
        return []
    issues: Issues = []
    if cfg.target != "ovh":
        issues.append(("mail", "only on target ovh: mail needs a public address and DNS records"))
    if mail.server not in cfg.servers:
        issues.append(("mail.server", f"unknown server '{mail.server}' {_known('servers', cfg.servers)}"))
    elif cfg.servers[mail.server].role != "app":
        issues.append(("mail.server", f"server '{mail.server}' has role {cfg.servers[mail.server].role}; "
                                      "mail runs on an app server"))
    elif any(mail.server in members for members in cfg.balanced_sets()):
        issues.append(("mail.server", f"server '{mail.server}' is behind a load balancer, which passes 80 and 443 only "
                                      "and answers from its own address; put mail on a server of its own"))
    host = cfg.mail_host()
    if not all(_HOST_LABEL_RE.match(lbl) for lbl in host.split(".")):
        issues.append(("mail.hostname", f"'{host}' is not a valid hostname (lower-case letters, digits and '-' "
                                        "between dots), e.g. mail.example.org"))
    elif host.split(".", 1)[1] != cfg.domain:
        # docker-mailserver takes the mail domain from its host name minus the first label
        # (target/scripts/helpers/dns.sh): mail.sub.<domain> would serve sub.<domain>.
        issues.append(("mail.hostname", f"'{host}' is not a name directly under the domain '{cfg.domain}' (the mail "
                                        f"server takes its domain from its host name minus the first label), e.g. "
                                        f"mail.{cfg.domain}"))
    elif any(host in app.hostnames() for app in cfg.apps.values()):
        issues.append(("mail.hostname", f"'{host}' is also an app's hostname; the mail host needs a name of its own "
                                        "(its HTTPS route only gets the certificate the mail server uses)"))
    for address, to in mail.aliases.items():
        if not address.lower().endswith("@" + cfg.domain):
            issues.append((f"mail.aliases.{address}", f"'{address}' is not an address of the domain '{cfg.domain}'; "
                                                      "the mail server only receives mail for its own domain"))
        elif not to:
            issues.append((f"mail.aliases.{address}", "forwards to nobody; list at least one address, or remove it"))
    if cfg.dns.caa_issuers and "letsencrypt.org" not in cfg.dns.caa_issuers:
        issues.append(("dns.caaIssuers", "socle:mail reads the mail host's certificate where Caddy files Let's "
                                         "Encrypt's; keep letsencrypt.org in caaIssuers"))
    from .render.mail import MAIL_PORTS

    ssh = {cfg.access.ssh_port, *cfg.access.extra_ssh_ports, cfg.proxy.http_port, cfg.proxy.https_port}
    for port in sorted(ssh & {p for p, _ in MAIL_PORTS}):
        issues.append(("access.sshPort" if port in (cfg.access.ssh_port, *cfg.access.extra_ssh_ports) else "proxy",
                       f"port {port} is the mail server's (socle:mail publishes 25, 465, 587 and 993); choose another"))
    zone = cfg.dns_zone()
    at = relative_name(cfg.domain, zone)
    under = "" if at == "@" else f".{at}"
    generated = {("MX", at): "the MX record", ("TXT", f"_dmarc{under}"): "the DMARC record",
                 ("TXT", f"{mail.dkim_selector}._domainkey{under}"): "the DKIM record"}
    for i, r in enumerate(cfg.dns.records):
        what = generated.get((r.type, r.name))
        if r.type == "TXT" and r.name == at and any("v=spf1" in v for v in r.values):
            what = "the SPF record (a domain with two has none: RFC 7208 §4.5)"
        if what:
            issues.append((f"dns.records.{i}", f"socle:mail generates {what} at '{r.name}'; remove this one "
                                               "(other senders go in mail.spfInclude)"))
    return issues


# ---------------------------------------------------------------------------- files


def _app_files(cfg: StackConfig) -> Issues:
    """apps.*.files: a source inside this repository, small UTF-8 text, and `${VAR}` only for the
    app's own environment variables."""
    from .render.files import MAX_BYTES, references, text_of_source

    issues: Issues = []
    for name, app in cfg.apps.items():
        known = app.env_names()
        for path, f in app.files.items():
            key = f"apps.{name}.files.{path}"
            if f.source is not None:
                text, why = text_of_source(f.source)
                if why:
                    issues.append((f"{key}.source", why))
                    continue
            else:
                text = f.content or ""
            if len(text.encode()) > MAX_BYTES:
                issues.append((key, f"{len(text.encode()):,} bytes; files put into containers hold at most "
                                    f"{MAX_BYTES:,} (configuration, not data: put data in a volume or the image)"))
            unknown = [v for v in references(text) if v not in known]
            if unknown:
                issues.append((key, f"${{{unknown[0]}}} is not an environment variable of app {name} "
                                    f"({', '.join(sorted(known)) or 'it has none'}); write $${{ for a literal ${{"))
    return issues


# ---------------------------------------------------------------------------- target


def _target(cfg: StackConfig) -> Issues:
    issues: Issues = []
    add = lambda path, msg: issues.append((path, msg))  # noqa: E731
    if cfg.target == "ovh":
        if cfg.ovh is None:
            add("ovh", "required on target ovh: set projectId, region and backupRegion")
        if cfg.dns.provider == "none":
            add("dns.provider", "target ovh needs a DNS provider for the app hostnames: gandi or ovh")
        zone = cfg.dns_zone()
        if not (cfg.domain == zone or cfg.domain.endswith("." + zone)):
            add("dns.zone", f"'{zone}' does not contain the domain '{cfg.domain}'; use the domain or a parent of it")
        if not cfg.proxy.acme_email:
            add("proxy.acmeEmail", "required on target ovh: Let's Encrypt needs a contact address")
        if not cfg.access.admin_ssh_keys:
            add("access.adminSshKeys", "required on target ovh: without a key nobody can log in")
        if not cfg.access.admin_cidrs:
            add("access.adminCidrs", "required on target ovh: SSH is only opened to these blocks")
        for name, srv in cfg.servers.items():
            if not srv.flavor:
                add(f"servers.{name}.flavor", "required on target ovh, e.g. b3-8")
            if srv.disk_gb is None and holds_state(cfg, name):
                add(f"servers.{name}.diskGb", "required on target ovh for a server that holds state: its data "
                    "lives on a block storage volume of this size, which a rebuild of the root disk keeps "
                    "(e.g. 50)")
    else:
        if len(cfg.servers) != 1:
            add("servers", f"target local runs everything on the one local Docker engine: declare exactly one "
                           f"server (got {len(cfg.servers)}: {', '.join(cfg.servers)})")
        if cfg.dns.provider != "none":
            add("dns.provider", f"'{cfg.dns.provider}' is not used on target local; set it to none")
        if not cfg.domain.endswith("localhost"):
            add("domain", f"'{cfg.domain}' on target local must end in .localhost, e.g. socle.localhost")
        for name, db in cfg.databases.items():
            if db.hosting == "managed":
                add(f"databases.{name}.hosting", "managed databases exist only on target ovh; use container")
    return issues


def _ports(cfg: StackConfig) -> Issues:
    """The proxy's two ports and sshd's: each port one listener, and 80 never the HTTPS one."""
    issues: Issues = []
    http, https = cfg.proxy.http_port, cfg.proxy.https_port
    if http == https:
        issues.append(("proxy.httpsPort", f"{https} is also proxy.httpPort; HTTP (redirects) and HTTPS need a port each"))
    elif http == 443 or https == 80:
        issues.append(("proxy.httpPort", f"httpPort {http} and httpsPort {https} look swapped: browsers speak HTTP on "
                                         "80 and HTTPS on 443, so set httpPort: 80 and httpsPort: 443"))
    taken = {http: "proxy.httpPort", https: "proxy.httpsPort"}
    if cfg.target == "ovh":
        if cfg.access.ssh_port in taken:
            issues.append(("access.sshPort", f"{cfg.access.ssh_port} is already {taken[cfg.access.ssh_port]}, where the "
                                             "HTTPS proxy listens; choose another SSH port, e.g. 4660"))
        elif cfg.access.ssh_port in (80, 443):
            issues.append(("access.sshPort", f"{cfg.access.ssh_port}: the security groups open 80 and 443 to the whole "
                                             "Internet for the HTTPS proxy, so SSH there would be open to everyone; "
                                             "choose another port, e.g. 4660"))
        taken[cfg.access.ssh_port] = "access.sshPort"
        for i, port in enumerate(cfg.access.extra_ssh_ports):
            if port in taken:
                issues.append((f"access.extraSshPorts.{i}",
                               f"{port} is already {taken[port]}; list only the port sshd moves to"))
            taken[port] = f"access.extraSshPorts.{i}"
    return issues + _app_ports(cfg, {(p, "tcp"): key for p, key in taken.items()})


def _mail_ports(cfg: StackConfig, server: str) -> dict[tuple[int, str], str]:
    """The ports socle:mail's server publishes on its server."""
    from .render.mail import MAIL_PORTS

    if cfg.mail is None or cfg.mail.server != server:
        return {}
    return {(p, "tcp"): f"the mail server's ({why.split(':')[0]}, socle:mail)" for p, why in MAIL_PORTS}


def _app_ports(cfg: StackConfig, taken: dict[tuple[int, str], str]) -> Issues:
    """apps.*.ports: one listener per host port and protocol on each server, none on the proxy's or
    sshd's port, and an app that has some runs on one server (a load balancer passes 80 and 443
    only; the others would answer on whichever server's address a client found)."""
    issues: Issues = []
    by_server: dict[str, dict[tuple[int, str], str]] = {}
    for name, app in cfg.apps.items():
        if not app.ports:
            continue
        if len(app.hosts()) > 1:
            issues.append((f"apps.{name}.ports", f"an app on several servers ({', '.join(app.hosts())}) serves only "
                           "HTTPS, through the load balancer; run the service with these ports as an app of its own "
                           "on one server"))
        for server in app.hosts():
            seen = by_server.setdefault(server, _mail_ports(cfg, server))
            for i, p in enumerate(app.ports):
                key = f"apps.{name}.ports.{i}"
                mine = (p.port, p.protocol)
                if mine in taken:
                    issues.append((key, f"{p.key()} is already {taken[mine]}; choose another host port "
                                        f"(containerPort keeps the port inside the container)"))
                elif mine in seen:
                    issues.append((key, f"{p.key()} is already {seen[mine]} on server {server}; one listener per "
                                        "port and protocol"))
                else:
                    seen[mine] = key
    return issues


def _ovh_catalog(cfg: StackConfig) -> Issues:
    """Regions and engine versions OVH really offers (components/ovh_catalog.py)."""
    issues: Issues = []
    if cfg.target == "ovh" and cfg.ovh is not None:
        from .naming import ovh_location

        for key, value in (("ovh.region", cfg.ovh.region), ("ovh.backupRegion", cfg.ovh.backup_region)):
            why = ovh_catalog.region_problem(value)
            if why:
                issues.append((key, why))
        if not issues and ovh_location(cfg.ovh.region) == ovh_location(cfg.ovh.backup_region):
            issues.append(("ovh.backupRegion", f"'{cfg.ovh.backup_region}' is in {ovh_location(cfg.ovh.region)}, like "
                           f"ovh.region '{cfg.ovh.region}': the off-site copies (backup server, backup bucket, database "
                           "backups) would burn with the data; choose another location, e.g. SBG5 for GRA11"))
        for name, b in cfg.buckets.items():
            if b.region:
                why = ovh_catalog.region_problem(b.region, locations_too=True)
                if why:
                    issues.append((f"buckets.{name}.region", why))
    for name, db in cfg.databases.items():
        why = ovh_catalog.version_problem(db.engine, db.version, cfg.database_hosting(name))
        if why:
            issues.append((f"databases.{name}.version", why))
        if cfg.database_hosting(name) == "managed":
            if db.backup_time[:2] == db.maintenance_time[:2]:
                issues.append((f"databases.{name}.maintenanceTime",
                               f"'{db.maintenance_time}' is in the hour of backupTime '{db.backup_time}': a maintenance "
                               "restart would hit the daily backup; move it an hour or more away"))
    return issues


# ---------------------------------------------------------------------------- where things run


def _placement(cfg: StackConfig) -> Issues:
    issues: Issues = []
    add = lambda path, msg: issues.append((path, msg))  # noqa: E731
    app_servers = cfg.app_servers()
    if not app_servers:
        add("servers", "at least one server must have role app")

    def check_server(path: str, server: str | None):
        if server is None:
            if len(app_servers) > 1:
                add(path, f"several app servers exist; say which one {_known('servers', app_servers)}")
            return
        if server not in cfg.servers:
            add(path, f"unknown server '{server}' {_known('servers', cfg.servers)}")
        elif cfg.servers[server].role != "app":
            add(path, f"server '{server}' has role {cfg.servers[server].role}; containers run on app servers")

    for name, db in cfg.databases.items():
        for dup in sorted({d for d in db.databases if db.databases.count(d) > 1}):
            add(f"databases.{name}.databases", f"'{dup}' is listed twice; each logical database once")
        if cfg.database_hosting(name) == "container":
            check_server(f"databases.{name}.server", db.server)
            if db.nodes != 1:
                add(f"databases.{name}.nodes", "a container database has exactly one node")
        elif db.plan == "essential" and db.nodes != 1:
            add(f"databases.{name}.nodes", f"plan essential has one node (got {db.nodes}); use plan business")
        elif db.plan != "essential" and db.nodes < 2:
            add(f"databases.{name}.nodes", f"plan {db.plan} is multi-node; set nodes to 2 or 3")
    for name, b in cfg.buckets.items():
        if cfg.target == "local":
            check_server(f"buckets.{name}.server", b.server)
    for name, c in cfg.caches.items():
        check_server(f"caches.{name}.server", c.server)
    for name, app in cfg.apps.items():
        _app_servers(cfg, name, app, add, check_server)
    for name in cfg.apps:
        if name in cfg.databases or name in cfg.caches or (cfg.target == "local" and name in cfg.buckets):
            add(f"apps.{name}", f"'{name}' is also a database, cache or bucket name; container names must differ")
    if cfg.mail is not None:
        from .render.mail import MAIL_APP

        for kind, names in (("apps", cfg.apps), ("caches", cfg.caches), ("databases", cfg.databases)):
            if MAIL_APP in names:
                add(f"{kind}.{MAIL_APP}", f"'{MAIL_APP}' is the mail server's container (socle:mail); rename this one")
    return issues


def _app_servers(cfg: StackConfig, name: str, app, add, check_server) -> None:
    """`server` or `servers`; an app on several servers runs on target ovh and keeps no state of its own."""
    p = f"apps.{name}"
    if app.server and app.servers:
        add(f"{p}.servers", f"set either server or servers, not both (server: {app.server})")
        return
    if not app.servers:
        check_server(f"{p}.server", app.server)
        return
    for i, srv in enumerate(app.servers):
        check_server(f"{p}.servers.{i}", srv)
        if app.servers.index(srv) != i:
            add(f"{p}.servers.{i}", f"'{srv}' is listed twice; each server once")
    if len(app.servers) > 1 and cfg.target != "ovh":
        add(f"{p}.servers", "an app on several servers needs target ovh (a load balancer and a private network); "
                            "on target local list one server")
    others = [(n, a.hosts()) for n, a in cfg.apps.items() if n != name and a.hostnames() and len(a.hosts()) > 1
              and set(a.hosts()) & set(app.servers) and sorted(a.hosts()) != sorted(app.servers)]
    if app.hostnames() and len(app.servers) > 1 and others:
        other, hosts = others[0]
        add(f"{p}.servers", f"shares servers with app '{other}' ({', '.join(hosts)}) but not all of them: one "
                            "server can sit behind one load balancer only (its proxy keeps one certificate "
                            "storage); give both apps the same servers, or servers of their own")
    stateful = sorted(v for v, vol in app.volumes.items() if vol.stateful)
    if len(app.servers) > 1 and stateful:
        add(f"{p}.volumes.{stateful[0]}",
            f"a stateful volume on {len(app.servers)} servers would be {len(app.servers)} diverging copies (a file "
            "uploaded through one server is missing on the others, and only one would be backed up); keep the "
            "files in a bucket (socle:buckets, S3 API) or the database, sessions in a persistent cache "
            "(socle:caches.NAME.persistent) or the database, and mark a volume that only holds rebuildable "
            "files stateful: false")


# ---------------------------------------------------------------------------- apps


def _apps(cfg: StackConfig) -> Issues:
    issues: Issues = []
    add = lambda path, msg: issues.append((path, msg))  # noqa: E731
    app_servers = cfg.app_servers()
    hostnames: dict[str, str] = {}
    shared_lengths: dict[str, tuple[int, str]] = {}
    for name, app in cfg.apps.items():
        p = f"apps.{name}"
        named = ([(f"{p}.hostname", app.hostname, f"app '{name}'")] if app.hostname is not None else []) + \
            [(f"{p}.sites.{i}.hostname", site.hostname, f"site '{site.name}' of app '{name}'")
             for i, site in enumerate(app.sites)]
        for key, h, owner in named:
            if not all(_HOST_LABEL_RE.match(lbl) for lbl in h.split(".")):
                add(key, f"'{h}' is not a valid hostname (lower-case letters, digits and '-' between dots)")
            elif not (h == cfg.domain or h.endswith("." + cfg.domain)):
                add(key, f"'{h}' is outside the stack's domain '{cfg.domain}'; use NAME.{cfg.domain}")
            if h in hostnames:
                add(key, f"'{h}' is already served by {hostnames[h]}; one hostname, one app")
            else:
                hostnames[h] = owner
        if named and app.port is None:
            add(f"{p}.port", "required with hostname or sites: the port the app listens on in its container")
        site_names = [s.name for s in app.sites]
        for i, site in enumerate(app.sites):
            if site_names.index(site.name) != i:
                add(f"{p}.sites.{i}.name", f"'{site.name}' is already a site of this app; each site once")

        for i, use in enumerate(app.databases):
            db_name, logical = use.use.split(".")
            if db_name not in cfg.databases:
                add(f"{p}.databases.{i}.use", f"unknown database '{db_name}' {_known('databases', cfg.databases)}")
                continue
            db = cfg.databases[db_name]
            if logical not in db.databases:
                add(f"{p}.databases.{i}.use", f"database '{db_name}' has no logical database '{logical}' "
                    f"(known: {', '.join(db.databases)}); add it to databases.{db_name}.databases")
            if cfg.database_hosting(db_name) == "container" and set(app.hosts()) <= set(cfg.servers):
                host = cfg.host_of("databases", db_name) if (db.server or len(app_servers) == 1) else None
                others = [h for h in app.hosts() if host and h != host]
                if others:
                    add(f"{p}.databases.{i}.use", f"database '{db_name}' runs as a container on server '{host}', but "
                        f"the app runs on '{others[0]}'; a container database serves only its own server: "
                        f"set databases.{db_name}.hosting: managed (an OVH cluster every server reaches)")
        for i, use in enumerate(app.buckets):
            if use.use not in cfg.buckets:
                add(f"{p}.buckets.{i}.use", f"unknown bucket '{use.use}' {_known('buckets', cfg.buckets)}")
        for i, use in enumerate(app.caches):
            if use.use not in cfg.caches:
                add(f"{p}.caches.{i}.use", f"unknown cache '{use.use}' {_known('caches', cfg.caches)}")
            elif cfg.target != "ovh" and set(app.hosts()) <= set(cfg.servers) and \
                    (cfg.caches[use.use].server or len(app_servers) == 1):
                # (on ovh, a cache used from other servers listens on its server's private address)
                host = cfg.host_of("caches", use.use)
                if any(h != host for h in app.hosts()):
                    add(f"{p}.caches.{i}.use", f"cache '{use.use}' runs on server '{host}', but the app runs on "
                                               f"'{app.hosts()[0]}'")
        for var, src in app.secrets.items():
            if isinstance(src, GeneratedSecret) and src.shared:
                first = shared_lengths.setdefault(src.shared, (src.generate, f"{p}.secrets.{var}"))
                if first[0] != src.generate:
                    add(f"{p}.secrets.{var}.generate",
                        f"shared secret '{src.shared}' has length {first[0]} at {first[1]}; use the same length")
        for vname, vol in app.volumes.items():
            for j, inc in enumerate(vol.include):
                if inc.startswith("/") or ".." in inc.split("/"):
                    add(f"{p}.volumes.{vname}.include.{j}", f"'{inc}' must be a path inside the volume, e.g. data/")
        for var in sorted(set(app.env) & set(app.secrets)):
            add(f"{p}.env.{var}", "also set in secrets; keep it in one place")
        # Variables the database, bucket and cache entries set: one source per variable, or one
        # would silently replace the other in the container.
        sources: dict[str, str] = {}
        for section in ("databases", "buckets", "caches"):
            for i, use in enumerate(getattr(app, section)):
                for var in use.env.values():
                    here = f"{p}.{section}.{i}.env"
                    if var in app.env or var in app.secrets:
                        add(here, f"sets {var}, which {p}.{'env' if var in app.env else 'secrets'} sets too: the "
                                  "container would get only one of them; rename one")
                    elif var in sources:
                        add(here, f"sets {var}, which {sources[var]} sets too; rename one")
                    sources.setdefault(var, here)
    return issues


def _secrets_in_env(cfg: StackConfig) -> Issues:
    """A password or key pasted into plain `env` (it would sit unencrypted in the stack file, the
    state, the plan and every preview comment)."""
    issues: Issues = []
    for name, app in cfg.apps.items():
        for i, arg in enumerate([*(app.command or []), *(app.healthcheck.test if app.healthcheck else [])]):
            what = next((why for rx, why in _SECRET_VALUE if rx.search(arg)), None)
            if what:
                where = "command" if i < len(app.command or []) else "healthcheck.test"
                j = i if where == "command" else i - len(app.command or [])
                issues.append((f"apps.{name}.{where}.{j}", f"holds {what} in plain text, readable in the stack file, the "
                               "state and every preview; pass it as an environment variable from apps."
                               f"{name}.secrets and refer to it as $NAME"))
        for var, value in app.env.items():
            what = next((why for rx, why in _SECRET_VALUE if rx.search(value)), None)
            if (what is None and _SECRET_NAME.search(var.upper()) and not _SETTING_SUFFIX.search(var.upper())
                    and not _HARMLESS.match(value.strip())):
                what = f"a secret, by its name {var}"
            if what:
                random = (f"; or, if the app only needs some random value, {{generate: 32}}"
                          if what.startswith("a secret, by its name") else "")
                issues.append((f"apps.{name}.env.{var}",
                               f"holds {what} in plain text, readable in the stack file, the state and every preview; "
                               f"store it with `pulumi config set --secret --path 'socle:secrets.{var}' VALUE` and "
                               f"write apps.{name}.secrets.{var}: {{config: {var}}}{random}"))
    return issues


# ---------------------------------------------------------------------------- DNS


def _dns(cfg: StackConfig) -> Issues:
    """Records that cannot coexist, and a CAA that would keep the proxy from getting certificates."""
    issues: Issues = []
    zone = cfg.dns_zone()
    # What socle itself writes: an A record per app hostname, the CAA record at the domain.
    owners: dict[tuple[str, str], str] = {}
    for name, app in cfg.apps.items():
        for h in app.hostnames():
            if h == zone or h.endswith("." + zone):
                rel = relative_name(h, zone)
                owners.setdefault((rel, "A"), f"apps.{name}.hostname" if h == app.hostname else f"apps.{name}.sites")
    if cfg.mail is not None:
        host = cfg.mail_host()
        if host.endswith("." + zone):
            owners.setdefault((relative_name(host, zone), "A"), "mail.hostname")
    caa_at = relative_name(cfg.domain, zone)
    if cfg.dns.caa_issuers:
        owners[(caa_at, "CAA")] = "dns.caaIssuers"
    types_at: dict[str, set[str]] = {}
    for (rel, rtype) in owners:
        types_at.setdefault(rel, set()).add(rtype)
    app_names = {rel for (rel, t) in owners if t == "A"}
    for i, rec in enumerate(cfg.dns.records):
        p = f"dns.records.{i}"
        name = rec.name.lower()  # DNS names are case-insensitive: Cloud is cloud
        if name.endswith(".") or name == zone or name.endswith("." + zone):
            issues.append((f"{p}.name", f"'{name}' is written in full; record names are relative to the zone {zone} "
                                        f"('@' for {zone} itself, 'www' for www.{zone})"))
            continue
        owner = owners.get((name, rec.type))
        if owner and owner.startswith("dns.records"):
            issues.append((p, f"a second {rec.type} record set at '{name}' ({owner} has one); list every value in "
                              "that entry's `values`: the DNS provider keeps one record set per name and type"))
            continue
        if owner:
            issues.append((p, f"a {rec.type} record at '{name}' is already written by socle from {owner}; "
                              "set it there instead of adding a record"))
            continue
        if rec.type == "CNAME" and name == "@":
            issues.append((p, f"a CNAME at the zone apex ({zone}) is forbidden by the DNS (RFC 1034 §3.6.2: the apex "
                              "has SOA and NS records); use an A/AAAA record, or an ALIAS at your DNS provider"))
        elif rec.type == "CNAME" and (types_at.get(name, set()) - {"CNAME"}):
            issues.append((p, f"a CNAME at '{name}' beside its {', '.join(sorted(types_at[name]))} record(s): a name with "
                              "a CNAME can have no other record (RFC 1034 §3.6.2); remove one of them"))
        elif rec.type != "CNAME" and "CNAME" in types_at.get(name, set()):
            issues.append((p, f"a {rec.type} record at '{name}', which already has a CNAME: a name with a CNAME can have "
                              "no other record (RFC 1034 §3.6.2); remove one of them"))
        if rec.type == "NS" and any(a == name or a.endswith("." + name) or name == "@" for a in app_names):
            issues.append((p, f"an NS record at '{name}' hands {name if name != '@' else 'the zone'} (and the app "
                              "hostnames under it) to other name servers: whoever runs them decides where visitors go "
                              "and can get certificates; remove it or delegate a name no app uses"))
        if rec.type == "CAA" and cfg.target == "ovh" and not any(
                re.search(r'issue(wild)?\s+"?letsencrypt\.org', v) for v in rec.values):
            issues.append((f"{p}.values", f"a CAA record at '{name}' that does not allow letsencrypt.org overrides the zone's "
                                          "for that name and below: the HTTPS proxy could get no certificate there; add "
                                          "'0 issue \"letsencrypt.org\"' or remove the record"))
        if rec.type == "CNAME" and len(rec.values) != 1:
            issues.append((f"{p}.values", f"a CNAME has exactly one target (got {len(rec.values)})"))
        owners.setdefault((name, rec.type), p)
        types_at.setdefault(name, set()).add(rec.type)
    if cfg.target == "ovh" and cfg.dns.caa_issuers and "letsencrypt.org" not in cfg.dns.caa_issuers:
        issues.append(("dns.caaIssuers", f"{cfg.dns.caa_issuers} does not allow letsencrypt.org, the ACME issuer the "
                                         "HTTPS proxy uses: no certificate could ever be issued; add letsencrypt.org"))
    return issues


# ---------------------------------------------------------------------------- buckets and backups


def _buckets(cfg: StackConfig) -> Issues:
    issues: Issues = []
    for name, b in cfg.buckets.items():
        if b.object_lock and not b.versioning:
            issues.append((f"buckets.{name}.versioning", "object lock needs versioning; set versioning: true"))
        if not b.encryption:
            issues.append((f"buckets.{name}.encryption", "false stores every object unencrypted at rest; remove the key "
                                                        "(encryption: true is the default)"))
    return issues


def _backup(cfg: StackConfig) -> Issues:
    issues: Issues = []
    add = lambda path, msg: issues.append((path, msg))  # noqa: E731
    b = cfg.backup
    if b.enabled:
        t = b.targets
        if t.sftp and cfg.target != "ovh":
            add("backup.targets.sftp", "only on target ovh (the servers' backup jobs log in to it over SSH); "
                                       "use localPath on target local")
        if not (t.bucket or t.server or t.local_path or t.sftp):
            add("backup.targets", "set at least one target: bucket, server (role backup) or localPath (target local)")
        if t.bucket and t.bucket not in cfg.buckets:
            add("backup.targets.bucket", f"unknown bucket '{t.bucket}' {_known('buckets', cfg.buckets)}")
        if t.server and t.server not in cfg.servers:
            add("backup.targets.server", f"unknown server '{t.server}' {_known('servers', cfg.servers)}")
        elif t.server and cfg.servers[t.server].role != "backup":
            add("backup.targets.server", f"server '{t.server}' has role {cfg.servers[t.server].role}; "
                "the backup target must be a server with role backup")
        if t.local_path and cfg.target != "local":
            add("backup.targets.localPath", "only on target local; use bucket or server on ovh")
        if t.bucket and t.bucket in cfg.buckets:
            used = [a for a in cfg.apps if t.bucket in {u.use for u in cfg.apps[a].buckets}]
            if used:
                add("backup.targets.bucket", f"bucket '{t.bucket}' is also used by apps {', '.join(used)}; "
                    "backups need a bucket of their own")
            issues += _backup_bucket(cfg, t.bucket)
    from .render.backup import ScheduleError, cron_to_oncalendar

    for key, cron in (("schedule", b.schedule), ("checkSchedule", b.check_schedule),
                      ("drillSchedule", b.drill_schedule), ("pruneSchedule", b.prune_schedule)):
        try:
            cron_to_oncalendar(cron, cfg.time_zone)
        except ScheduleError as e:
            add(f"backup.{key}", f"{e}; servers run backups from systemd timers")
            continue
        if _longest_gap_hours(cron, cfg.time_zone) is None:
            add(f"backup.{key}", f"'{cron}' never runs (a day that does not exist in that month); e.g. '0 3 * * *'")
            continue
        skipped = _skipped_local_time(cron, cfg.time_zone)
        if skipped:
            add(f"backup.{key}", f"'{cron}' in {cfg.time_zone} falls in the hour skipped when the clocks go "
                                 f"forward ({skipped}): systemd skips that run; pick a time outside "
                                 "that hour (e.g. '0 3 * * *'), or set timeZone: UTC")
    urls = [u for u in (b.ping_url, b.check_ping_url, b.drill_ping_url) if u is not None]
    if len({json.dumps(u, default=str, sort_keys=True) if not isinstance(u, str) else u for u in urls}) < len(urls):
        add("backup.checkPingUrl", "run, check and drill must each report to a check of their own: a weekly check's "
                                   "success on the run's URL would hide nightly runs that stopped")
    gap = _longest_gap_hours(b.schedule, cfg.time_zone)
    if b.enabled and gap is not None and b.max_age_hours <= gap:
        add("backup.maxAgeHours", f"{b.max_age_hours} hours is not longer than the {gap} hours between two runs of "
                                  f"backup.schedule '{b.schedule}': the weekly check would fail on a sound repository; "
                                  f"set it above {gap} (e.g. {gap + 12})")
    return issues


def _backup_bucket(cfg: StackConfig, name: str) -> Issues:
    """The backup bucket's own rules must not undo the retention: no expiry of live objects, no
    lock longer than what restic keeps (README "Backups": retention >= lock)."""
    issues: Issues = []
    bucket = cfg.buckets[name]
    keep = cfg.backup.retention.days()
    for i, rule in enumerate(bucket.lifecycle):
        if rule.expire_days is not None:
            issues.append((f"buckets.{name}.lifecycle.{i}.expireDays",
                           f"{rule.expire_days} days: this bucket holds the restic repository, whose files live as "
                           f"long as the snapshots that need them ({keep} days by backup.retention); expiring them "
                           "breaks every snapshot. Remove the rule (restic's prune deletes what is no longer needed)"))
    if bucket.object_lock and keep and bucket.object_lock.days > keep:
        issues.append((f"buckets.{name}.objectLock.days",
                       f"{bucket.object_lock.days} days is longer than backup.retention keeps snapshots ({keep} days): "
                       "prune could never delete what the retention drops, and the bucket only grows; lower the lock "
                       f"to at most {keep} or raise the retention"))
    if cfg.target == "ovh" and cfg.ovh is not None and bucket.region:
        from .naming import ovh_location

        if ovh_location(bucket.region) == ovh_location(cfg.ovh.region):
            issues.append((f"buckets.{name}.region",
                           f"'{bucket.region}' is where the data lives ({cfg.ovh.region}): the backup bucket must be "
                           "in another location; remove the key (it defaults to ovh.backupRegion)"))
    return issues


def _backup_keeps_something(cfg: StackConfig) -> Issues:
    issues: Issues = []
    r = cfg.backup.retention
    if cfg.backup.enabled and not any((r.daily, r.weekly, r.monthly, r.yearly)):
        issues.append(("backup.retention", "keeps no snapshot at all (every count is 0): each night's prune would "
                                           "delete the snapshot just taken; e.g. daily: 7, weekly: 4"))
    for name, app in cfg.apps.items():
        for vname, vol in app.volumes.items():
            if not (vol.stateful and vol.backup):
                continue
            for j, pattern in enumerate(vol.exclude):
                path = f"apps.{name}.volumes.{vname}.exclude.{j}"
                parts = [p for p in pattern.strip().split("/") if p not in ("", ".")]
                if pattern.strip().startswith("/") or ".." in parts:
                    issues.append((path, f"'{pattern}' is not a pattern inside the volume: restic would match it from the "
                                         "server's root, where it could leave out every volume or the database dumps; "
                                         "write it relative to the volume, e.g. cache/"))
                elif not parts or re.fullmatch(r"(\*|\?|\[[^\]]*\])+", parts[0]) or (vol.include and pattern in vol.include):
                    issues.append((path, f"'{pattern}' excludes everything the volume holds, so its backup would be empty; "
                                         "exclude only caches (e.g. cache/), or set stateful: false if nothing in it matters"))
    return issues


def _runs(cron: str, zone: str) -> list | None:
    """The runs of a cron schedule over two years from 2026-01-01 (at most 1000), as wall-clock
    times in `zone` (naive); None for a schedule that never runs (31 February)."""
    from datetime import datetime, timedelta

    from croniter import CroniterBadDateError, croniter

    start = datetime(2026, 1, 1)
    try:
        it = croniter(cron, start)
        runs = [it.get_next(datetime)]
        while runs[-1] < start + timedelta(days=731) and len(runs) < 1000:
            runs.append(it.get_next(datetime))
    except (CroniterBadDateError, ValueError, KeyError):
        return None
    return [start, *runs]


@functools.lru_cache(maxsize=256)
def _longest_gap_hours(cron: str, zone: str = "UTC") -> int | None:
    """The longest time between two runs of a cron schedule read in `zone`, over the next two
    years, in whole hours (a daylight-saving change lengthens one gap by an hour); None for a
    schedule that never runs."""
    from datetime import timezone
    from zoneinfo import ZoneInfo

    runs = _runs(cron, zone)
    if runs is None:
        return None
    tz = ZoneInfo(zone)
    instants = [r.replace(tzinfo=tz).astimezone(timezone.utc) for r in runs]
    return int(max((b - a).total_seconds() for a, b in zip(instants, instants[1:])) // 3600)


@functools.lru_cache(maxsize=64)
def _spring_gaps(zone: str, first: int = 2026, last: int = 2060) -> tuple:
    """The wall-clock intervals the clocks skip when they go forward in `zone`, from `first` to
    `last`: ((start, end) naive local times), e.g. 02:00-03:00 on the last Sunday of March in Paris."""
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    if zone == "UTC":
        return ()
    tz = ZoneInfo(zone)
    gaps = []
    week = datetime(first, 1, 1, tzinfo=timezone.utc)
    end = datetime(last + 1, 1, 1, tzinfo=timezone.utc)
    offset = week.astimezone(tz).utcoffset()
    while week < end:  # a week at a time, then the minute of the change by bisection
        nxt = week + timedelta(days=7)
        new = nxt.astimezone(tz).utcoffset()
        if new > offset:
            lo, hi = 0, 7 * 24 * 60
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if (week + timedelta(minutes=mid)).astimezone(tz).utcoffset() > offset:
                    hi = mid
                else:
                    lo = mid
            instant = (week + timedelta(minutes=hi)).replace(tzinfo=None)
            gaps.append((instant + offset, instant + new))
        offset, week = new, nxt
    return tuple(gaps)


@functools.lru_cache(maxsize=256)
def _skipped_local_time(cron: str, zone: str) -> str | None:
    """The first run of `cron` (wall-clock time in `zone`) that does not exist because the clocks go
    forward over it, e.g. 02:30 on the last Sunday of March in Europe/Paris, over 2026-2060 (a
    monthly run on the 25th meets the change only some years): systemd's timer skips that run
    (systemd-analyze calendar shows it). None if every run exists."""
    from datetime import timedelta

    from croniter import croniter

    minutes, hours, _days, months, _weekdays = croniter(cron).expanded[:5]

    def may(field, value):
        return field == ["*"] or value in field

    for start, end in _spring_gaps(zone):
        minute = start
        while minute < end:  # croniter.match (slow) only where minute, hour and month already fit
            if may(minutes, minute.minute) and may(hours, minute.hour) and may(months, minute.month) \
                    and croniter.match(cron, minute):
                return minute.strftime("%Y-%m-%d %H:%M")
            minute += timedelta(minutes=1)
    return None


# ---------------------------------------------------------------------------- physical names


def _physical_names(cfg: StackConfig) -> Issues:
    """Two Docker objects with the same name on one server: a second container fails to start, and
    a second volume of the same name silently shares (and, on delete, loses) the first one's data.
    The names are those the components give (components/naming.py, <name>-<suffix>)."""
    seen: dict[tuple[str, str, str], str] = {}
    issues: Issues = []

    def claim(server: str | None, kind: str, name: str, path: str):
        key = (server or "", kind, name)
        if key in seen and seen[key] != path:
            issues.append((path, f"its Docker {kind} would be named '{name}', like the one of {seen[key]}: one would "
                                 f"replace or share the other's; rename one of them"))
        seen.setdefault(key, path)

    for sname, srv in cfg.servers.items():
        if srv.role == "app":
            claim(sname, "container", f"{sname}-proxy", f"servers.{sname} (its HTTPS proxy)")
            claim(sname, "volume", f"{sname}-proxy-data", f"servers.{sname} (its proxy's certificates)")
            claim(sname, "container", f"{sname}-backup", f"servers.{sname} (its backup job)")
            claim(sname, "network", f"{sname}-net", f"servers.{sname} (its network)")
    for dname, db in cfg.databases.items():
        if cfg.database_hosting(dname) == "container" and (db.server or cfg.app_servers()):
            host = cfg.host_of("databases", dname)
            claim(host, "container", dname, f"databases.{dname}")
            claim(host, "volume", f"{dname}-data", f"databases.{dname}")
    for bname, b in cfg.buckets.items():
        if cfg.target == "local" and (b.server or cfg.app_servers()):
            host = cfg.host_of("buckets", bname)
            claim(host, "volume", f"{bname}-data", f"buckets.{bname}")
            claim(host, "container", f"{bname}-s3", f"buckets.{bname}")
    for cname, c in cfg.caches.items():
        if c.server or cfg.app_servers():
            claim(cfg.host_of("caches", cname), "container", cname, f"caches.{cname}")
    for aname, app in cfg.apps.items():
        for host in app.hosts() or [None]:
            claim(host, "container", aname, f"apps.{aname}")
            for vname in app.volumes:
                claim(host, "volume", f"{aname}-{vname}", f"apps.{aname}.volumes.{vname}")
    return issues
