"""socle's policy rules: HTTPS everywhere, backups that exist.

Pure Python, no `pulumi_policy` import: the CrossGuard pack (policy/__main__.py), the tests and the
offline plan (tools/plan.py) all run these same functions over resources as the engine sends them
(type token, name, URN, camelCase properties with secrets already unwrapped).

A property not known at preview time arrives as one of the engine's "unknown" sentinels. A rule
that needs such a value reports an `unknown` finding (no verdict yet; the rule runs again on
`pulumi up`, when the value is known) instead of crashing or failing a good resource.

Every violation message is a sentence that names the resource and says how to fix it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

# The engine's sentinels for values unknown during preview (pulumi_policy.proxy has the same ones;
# a test keeps the two in step).
UNKNOWN_SENTINELS = frozenset({
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # boolean
    "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # string
    "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
    "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
    "e48ece36-62e2-4504-bad9-02848725956a",  # archive
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
})

T_CONTAINER = "docker:index/container:Container"
T_VOLUME = "docker:index/volume:Volume"
T_DOCKER_PROVIDER = "pulumi:providers:docker"
T_OVH_DATABASE = "ovh:CloudProject/database:Database"
T_OVH_STORAGE = "ovh:CloudProject/storage:Storage"
T_OVH_INSTANCE = "ovh:index/cloudInstance:CloudInstance"
T_OVH_SECURITY_GROUP = "ovh:index/cloudSecurityGroup:CloudSecurityGroup"
T_OVH_WORKFLOW_BACKUP = "ovh:CloudProject/workflowBackup:WorkflowBackup"
T_OVH_ZONE_RECORD = "ovh:Domain/zoneRecord:ZoneRecord"
T_GANDI_RECORD = "gandi:livedns/record:Record"
T_LB = "ovh:index/cloudLoadbalancer:CloudLoadbalancer"
T_LB_LISTENER = "ovh:index/cloudLoadbalancerListener:CloudLoadbalancerListener"
T_LB_L7POLICY = "ovh:index/cloudLoadbalancerL7policy:CloudLoadbalancerL7policy"
T_LB_POOL = "ovh:index/cloudLoadbalancerPool:CloudLoadbalancerPool"
T_VRACK_SUBNET = "ovh:index/cloudNetworkPrivateVrackSubnet:CloudNetworkPrivateVrackSubnet"
T_LB_MEMBER = "ovh:index/cloudLoadbalancerPoolMember:CloudLoadbalancerPoolMember"

_PRIVATE_V4 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]


def _is_private(address: str) -> bool:
    """An RFC 1918 IPv4 address or block: reachable only inside the stack's private network (OVH's
    edge does not route these from the Internet, and replies to a forged one go nowhere)."""
    try:
        net = ipaddress.ip_network(str(address), strict=False)
    except ValueError:
        return False
    return net.version == 4 and any(net.subnet_of(n) for n in _PRIVATE_V4)
T_REMOTE_COMMAND = "command:remote:Command"
T_OVH_BLOCK_VOLUME = "ovh:index/cloudStorageBlockVolume:CloudStorageBlockVolume"
T_OVH_DATABASE_INSTANCE = "ovh:CloudProjectDatabase/databaseInstance:DatabaseInstance"

BACKUP_MANIFEST_PATH = "/etc/socle/backup.json"


class Unknown(Exception):
    """Raised inside a rule when a value it needs is not known yet. A stack rule may also *yield* one
    (see `each`): the rule then goes on judging the other resources."""

    def __init__(self, what: str, resource: str = ""):
        super().__init__(what)
        self.what = what
        self.resource = resource


def each(items: Iterable, check: Callable[[Any], Iterable[str]]) -> Iterable:
    """Run `check` on every item; an item whose values are unknown yields an Unknown naming it, and
    the others are still judged: one unknown address must not hide a bad record beside it."""
    for item in items:
        try:
            yield from check(item)
        except Unknown as u:
            res = item[0] if isinstance(item, tuple) else item  # (resource, ...) rows name their resource first
            yield Unknown(u.what, u.resource or getattr(res, "name", "") or "")


def is_unknown(value: Any) -> bool:
    return isinstance(value, str) and value in UNKNOWN_SENTINELS


def known(value: Any, what: str) -> Any:
    """The value, or raise Unknown naming it; checks nested lists and dicts too."""
    if is_unknown(value):
        raise Unknown(what)
    if isinstance(value, dict):
        for k, v in value.items():
            known(v, f"{what}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            known(v, f"{what}[{i}]")
    return value


@dataclass
class Res:
    type: str
    name: str
    urn: str
    props: dict
    parent: str | None = None
    dependencies: list[str] = field(default_factory=list)
    provider: str | None = None  # URN of the provider resource, if any
    protect: bool = False        # the resource option `protect` (CrossGuard: args.opts.protect)

    def label(self, key: str) -> Any:
        labels = self.props.get("labels")
        if is_unknown(labels):
            raise Unknown(f"labels of {self.name}")
        for lbl in labels or []:
            if lbl.get("label") == key:
                return lbl.get("value")
        return None


@dataclass
class Finding:
    policy: str
    resource: str          # the resource's name ("" for the stack as a whole)
    message: str
    unknown: bool = False  # True: no verdict yet, the value is unknown at preview


@dataclass
class Rule:
    name: str
    description: str
    kind: str                                   # "resource" | "stack"
    check: Callable[..., Iterable[str]]         # resource: (res, cfg); stack: (resources, cfg)
    types: tuple[str, ...] = ()                 # resource rules: the types they look at
    config: dict = field(default_factory=dict)  # defaults of the rule's config keys


RULES: list[Rule] = []


def rule(name: str, description: str, kind: str = "resource", types: tuple[str, ...] = (), **config):
    def register(fn):
        RULES.append(Rule(name, description, kind, fn, types, config))
        return fn
    return register


# ---------------------------------------------------------------------------- helpers


def _name(res: Res) -> str:
    """The name people know a resource by: its physical name when it has one."""
    n = res.props.get("name")
    return n if isinstance(n, str) and n and not is_unknown(n) else res.name


def _role(res: Res) -> str | None:
    return res.label("socle.role")


def _ports(res: Res) -> list[int]:
    ports = known(res.props.get("ports") or [], f"ports of {res.name}")
    return sorted(int(p.get("external") or p.get("internal")) for p in ports)


def _uploads(res: Res) -> dict[str, str]:
    uploads = known(res.props.get("uploads") or [], f"uploads of {res.name}")
    return {u.get("file"): u.get("content", "") for u in uploads}


def _location(region: str) -> str:
    """The twin of components.naming.ovh_location (the pack cannot import components)."""
    if (region or "").count("-") >= 2:  # a 3-AZ region (EU-WEST-PAR) is a location of its own; US-EAST-VA-1 is in US-EAST-VA
        return re.sub(r"-[0-9]+$", "", region.upper())
    m = re.match(r"[A-Za-z]+", region or "")
    return m.group(0).upper() if m else (region or "").upper()


def _days_of_iso_period(period: str) -> int | None:
    m = re.fullmatch(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?", period or "")
    if not m or not any(m.groups()):
        return None
    y, mo, d = (int(g or 0) for g in m.groups())
    return 365 * y + 30 * mo + d


def retention_days(retention: dict) -> int:
    """How far back the oldest kept snapshot reaches under restic's --keep-* policy (days)."""
    spans = [
        int(retention.get("daily") or 0),
        7 * int(retention.get("weekly") or 0),
        30 * int(retention.get("monthly") or 0),
        365 * int(retention.get("yearly") or 0),
    ]
    return max(spans)


# ---------------------------------------------------------------------------- Caddyfile reading


@dataclass
class _Block:
    head: str
    body: list[str]


def _blocks(text: str) -> list[_Block]:
    """Top-level blocks of a Caddyfile: their head line and their body lines (nested kept flat)."""
    blocks, depth, cur = [], 0, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if depth == 0:
            if line.endswith("{"):
                cur = _Block(line[:-1].strip(), [])
                depth = 1
            continue
        opens, closes = line.count("{"), line.count("}")
        if line == "}" and depth == 1:
            blocks.append(cur)
            depth = 0
            continue
        cur.body.append(line)
        depth += opens - closes
    return blocks


def caddy_sites(text: str) -> tuple[list[str], dict[str, list[str]], dict[str, list[str]]]:
    """(global option lines, snippets by name, site bodies by address) with imports expanded."""
    glob, snippets, sites = [], {}, {}
    for b in _blocks(text):
        if b.head == "":
            glob = b.body
        elif b.head.startswith("(") and b.head.endswith(")"):
            snippets[b.head[1:-1]] = b.body
        else:
            for addr in re.split(r"[,\s]+", b.head):
                if addr:
                    sites[addr] = b.body
    for addr, body in sites.items():
        expanded = []
        for line in body:
            m = re.match(r"import\s+(\S+)", line)
            expanded += snippets.get(m.group(1), []) if m else [line]
        sites[addr] = expanded
    return glob, snippets, sites


# ---------------------------------------------------------------------------- HTTPS rules


@rule("only-proxy-publishes-ports",
      "No container but the HTTPS reverse proxy publishes a host port; the proxy publishes only 80 and 443.",
      types=(T_CONTAINER,), allowedPorts={})
def only_proxy_publishes_ports(res: Res, cfg: dict) -> Iterable[str]:
    ports = _ports(res)
    name = _name(res)
    if known(res.props.get("publishAllPorts"), f"publishAllPorts of {res.name}"):
        yield (f"Container '{name}' publishes all its ports on the host; remove publish_all_ports and "
               "let the HTTPS proxy route to it by hostname.")
    if known(res.props.get("networkMode"), f"networkMode of {res.name}") == "host":
        yield (f"Container '{name}' uses the host network, which exposes every port it listens on; "
               "put it on the server's private network instead.")
    if _role(res) == "proxy":
        extra = [p for p in ports if p not in (80, 443)]
        if extra or sorted(set(ports)) != [80, 443]:
            yield (f"Reverse proxy '{name}' publishes {ports or 'no port'}; it must publish exactly 80 "
                   "(redirect) and 443 (HTTPS): set socle:proxy.httpPort/httpsPort back to 80/443.")
        return
    allowed, problems = _allow_list(cfg.get("allowedPorts"), name)
    yield from problems
    bad = sorted({key for key in _public_bindings(res)} - allowed, key=lambda k: (int(k.split("/")[0]), k))
    if bad:
        yield (f"Container '{name}' publishes host port{'s' if len(bad) > 1 else ''} "
               f"{', '.join(_show(k) for k in bad)}, bypassing the HTTPS proxy; remove it from `ports` and give the "
               "app a hostname, or, if it is not HTTP (e.g. SMTP), allow it in this policy's allowedPorts for "
               f'this container with its reason: {{"{name}": {{"{bad[0]}": "why it bypasses the proxy"}}}}.')


def _show(key: str) -> str:
    """8080/tcp reads 8080 (the usual case, as before UDP existed); 22000/udp stays."""
    return key[:-4] if key.endswith("/tcp") else key


def _public_bindings(res: Res) -> set[str]:
    """The container's host ports bound on a public address (or every address), as PORT/PROTOCOL,
    or PORT/PROTOCOL->INSIDE when the port inside the container differs (an allowance for 25/tcp
    does not cover an admin page on 8080 behind it). A binding on a private address only (a cache
    other servers use) is not public."""
    out = set()
    for p in known(res.props.get("ports") or [], f"ports of {res.name}"):
        if p.get("ip") and _is_private(p["ip"]):
            continue
        out.add(_binding_key(p))
    return out


def _binding_key(p: dict) -> str:
    outside = int(p.get("external") or p.get("internal"))
    inside = int(p.get("internal") or outside)
    key = f"{outside}/{str(p.get('protocol') or 'tcp').lower()}"
    return key if inside == outside else f"{key}->{inside}"


def _port_protocol(key: str) -> str:
    return key.split("->")[0]


def _allow_list(raw: Any, name: str) -> tuple[set[str], list[str]]:
    """allowedPorts' entry for a container: {"PORT/tcp|udp": "reason"}. An entry without a reason
    allows nothing: an exception nobody can explain is one nobody will remove."""
    entry = (raw or {}).get(name) if isinstance(raw, dict) else None
    if entry is None:
        return set(), []
    if not isinstance(entry, dict):
        return set(), [f"allowedPorts for '{name}' is {json.dumps(entry)}; give each port its protocol and reason: "
                       f'{{"{name}": {{"25/tcp": "SMTP from other mail servers"}}}}']
    allowed, problems = set(), []
    for key, reason in entry.items():
        m = re.fullmatch(r"([0-9]{1,5})/(tcp|udp)(?:->([0-9]{1,5}))?", str(key))
        if not m or not all(1 <= int(g) <= 65535 for g in m.groups() if g and g.isdigit()):
            problems.append(f"allowedPorts for '{name}': '{key}' is not PORT/tcp or PORT/udp (e.g. 22000/udp; "
                            "PORT/tcp->INSIDE when the container listens on another port)")
        elif not isinstance(reason, str) or len(reason.strip()) < 3:
            problems.append(f"allowedPorts for '{name}': {key} has no reason; say why it bypasses the HTTPS proxy")
        else:
            allowed.add(key)
    return allowed, problems


@rule("proxy-serves-https-only",
      "Every hostname the proxy serves redirects HTTP to HTTPS, sends HSTS, allows TLS 1.2+ only and has an "
      "ACME contact (or the internal CA where allowed).",
      types=(T_CONTAINER,), minHstsMaxAge=31536000, allowInternalCa=False)
def proxy_serves_https_only(res: Res, cfg: dict) -> Iterable[str]:
    if _role(res) != "proxy":
        return
    name = _name(res)
    caddyfile = _uploads(res).get("/etc/caddy/Caddyfile")
    if caddyfile is None:
        yield f"Reverse proxy '{name}' has no /etc/caddy/Caddyfile; socle renders one: do not override uploads."
        return
    glob, _, sites = caddy_sites(caddyfile)
    g = " ".join(glob)
    auto_redirects = not re.search(r"auto_https\s+(off|disable_redirects)", g)
    global_email = re.search(r"(^|\s)email\s+\S+@\S+", g)
    global_internal = re.search(r"(^|\s)local_certs(\s|$)", g)
    min_age = int(cfg.get("minHstsMaxAge", 31536000))
    https_sites = {a: b for a, b in sites.items() if not a.startswith("http://")}
    for addr, body in sorted(https_sites.items()):
        host = addr.removeprefix("https://").split(":")[0]
        text = "\n".join(body)
        redirect = sites.get(f"http://{host}")
        if redirect is not None:
            if not any(re.match(r"redir\s+https://", line) for line in redirect):
                yield (f"Proxy '{name}': http://{host} does not redirect to HTTPS; make its only "
                       "directive `redir https://{host}{uri} 308`.")
        elif not auto_redirects:
            yield (f"Proxy '{name}': {host} has no HTTP-to-HTTPS redirect and automatic redirects are "
                   "disabled; add an http:// site with `redir https://{host}{uri} 308`.")
        m = re.search(r"Strict-Transport-Security\s+\"?max-age=(\d+)", text)
        if not m:
            yield f"Proxy '{name}': {host} sends no Strict-Transport-Security header; add HSTS (max-age={min_age})."
        elif int(m.group(1)) < min_age:
            yield (f"Proxy '{name}': {host} sends HSTS max-age={m.group(1)}, below the required {min_age}; "
                   f"raise socle:proxy.hstsMaxAge to {min_age}.")
        p = re.search(r"protocols\s+tls1\.(\d)", text)
        if p and int(p.group(1)) < 2:
            yield (f"Proxy '{name}': {host} accepts TLS 1.{p.group(1)}; set `protocols tls1.2 tls1.3`.")
        site_tls = re.search(r"^tls\s+(\S+)", text, re.M)
        internal = global_internal or (site_tls and site_tls.group(1) == "internal")
        acme = global_email or (site_tls and "@" in site_tls.group(1))
        if internal and not cfg.get("allowInternalCa"):
            yield (f"Proxy '{name}': {host} uses Caddy's internal CA, which visitors do not trust; use "
                   "Let's Encrypt by setting socle:proxy.acmeEmail on a public target.")
        elif not internal and not acme:
            yield (f"Proxy '{name}': {host} has no ACME contact; set socle:proxy.acmeEmail so Let's Encrypt "
                   "can warn about expiring certificates.")


def _record_rows(resources: list[Res]) -> list[tuple[Res, str, str, list]]:
    """(resource, record name, type, values) of every DNS record, Gandi or OVH."""
    rows = []
    for r in resources:
        if r.type == T_GANDI_RECORD:
            rows.append((r, r.props.get("name"), r.props.get("type"), r.props.get("values")))
        elif r.type == T_OVH_ZONE_RECORD:
            rows.append((r, r.props.get("subdomain") or "@", r.props.get("fieldtype"), [r.props.get("target")]))
    return rows


def _host_ip(host: str) -> str | None:
    """The IP address in a Docker host URL (ssh://user@203.0.113.10:4660), if it is one."""
    try:
        hostname = urlsplit(host or "").hostname
        return str(ipaddress.ip_address(hostname)) if hostname else None
    except ValueError:
        return None


@rule("dns-points-at-tls-terminator",
      "Every A/AAAA record points at an address that terminates TLS: a server running the HTTPS proxy, or a "
      "load balancer.", kind="stack", allowedAddresses=[])
def dns_points_at_tls_terminator(resources: list[Res], cfg: dict) -> Iterable[str]:
    by_urn = {r.urn: r for r in resources}
    terminators: set[str] = set(cfg.get("allowedAddresses") or [])
    pending: list[str] = []  # proxies whose server address is not known yet
    for c in resources:
        if c.type == T_CONTAINER and _role(c) == "proxy" and c.provider in by_urn:
            host = by_urn[c.provider].props.get("host")
            if is_unknown(host):
                pending.append(by_urn[c.provider].name)
            elif _host_ip(host):
                terminators.add(_host_ip(host))

    def check(row):
        rec, name, rtype, values = row
        if rtype not in ("A", "AAAA"):
            return
        if any(by_urn.get(d) is not None and by_urn[d].type == T_LB for d in rec.dependencies):
            return
        for v in known(values, f"values of DNS record {rec.name}"):
            if v in terminators:
                continue
            if pending:
                raise Unknown(f"the address of {', '.join(pending)} (to tell whether {v} runs the HTTPS proxy)",
                              rec.name)
            yield (f"DNS record {name} {rtype} points at {v}, which runs no HTTPS proxy; "
                   "point it at the app's server (give the app a hostname in socle:apps) or list the address "
                   "in this policy's allowedAddresses if it serves no HTTP.")

    yield from each(_record_rows(resources), check)


@rule("zone-has-caa",
      "The DNS zone carries a CAA record, so only the chosen certificate authority can issue for it.",
      kind="stack")
def zone_has_caa(resources: list[Res], cfg: dict) -> Iterable[str]:
    rows = _record_rows(resources)
    if not rows or any(t == "CAA" for _, _, t, _ in rows):
        return
    unsure = [r.name for r, _, t, _ in rows if is_unknown(t)]
    if unsure:
        yield Unknown(f"the type of DNS record {', '.join(unsure)}", unsure[0])
        return
    yield ("The DNS zone has records but no CAA record; keep socle:dns.caaIssuers non-empty "
           "(default: letsencrypt.org) so socle creates one.")


_DB_URL = re.compile(r"^(postgres(?:ql)?|mysql|mariadb)://(?:[^@/]*@)?([^:/?]+)(?::\d+)?/[^?]*(\?.*)?$")
_TLS_QUERY = re.compile(r"(sslmode=(require|verify-ca|verify-full))|(ssl-mode=(REQUIRED|VERIFY_CA|VERIFY_IDENTITY))|"
                        r"(ssl=(true|1))", re.I)


@rule("database-connections-use-tls",
      "Database URLs that leave the server (managed databases) require TLS.", types=(T_CONTAINER,))
def database_connections_use_tls(res: Res, cfg: dict) -> Iterable[str]:
    envs = known(res.props.get("envs") or [], f"envs of {res.name}") if is_unknown(res.props.get("envs")) \
        else res.props.get("envs") or []
    pending = [e for e in envs if is_unknown(e)]
    if pending:  # the known entries are judged below; these wait for the update
        yield Unknown(f"{len(pending)} of the environment entries of {res.name}", res.name)
    for entry in envs:
        if is_unknown(entry):
            continue
        var, _, value = entry.partition("=")
        m = _DB_URL.match(value)
        if not m:
            continue
        host, query = m.group(2), m.group(3) or ""
        if "." not in host:
            continue  # a container alias on the server's private network: never leaves the host
        if not _TLS_QUERY.search(query):
            yield (f"Container '{_name(res)}' connects to database host {host} without TLS ({var}); use the URL socle "
                   "generates for socle:apps.*.databases (it ends in ?sslmode=require), not a hand-written one.")


def _proxy_ports(resources: list[Res]) -> dict[int, int]:
    """Host port -> container port of every socle HTTPS proxy (80: redirects only, 443: HTTPS)."""
    out: dict[int, int] = {}
    for c in resources:
        if c.type == T_CONTAINER and _role(c) == "proxy":
            for p in known(c.props.get("ports") or [], f"ports of {c.name}"):
                out[int(p.get("external") or p.get("internal"))] = int(p.get("internal"))
    return out


@rule("load-balancer-listeners-https",
      "Load-balancer listeners speak HTTPS, HTTP only to redirect to HTTPS, or TCP only to pass 443 to the HTTPS "
      "proxies' HTTPS port and 80 to their redirecting HTTP port.", kind="stack")
def load_balancer_listeners_https(resources: list[Res], cfg: dict) -> Iterable[str]:
    redirects: set[str] = set()
    for p in resources:
        if p.type == T_LB_L7POLICY:
            action = known(p.props.get("action"), f"action of {p.name}")
            prefix = str(known(p.props.get("redirectPrefix") or p.props.get("redirectUrl") or "", f"redirect of {p.name}"))
            if action in ("REDIRECT_PREFIX", "REDIRECT_TO_URL") and prefix.startswith("https://"):
                redirects.update(p.dependencies)
    for lst in resources:
        if lst.type != T_LB_LISTENER:
            continue
        proto = known(lst.props.get("protocol"), f"protocol of listener {lst.name}")
        if proto in ("HTTPS", "TERMINATED_HTTPS"):
            continue
        if proto == "HTTP" and lst.urn in redirects:
            continue
        if proto == "TCP":
            yield from _tcp_passthrough(lst, resources)
            continue
        yield (f"Load-balancer listener '{lst.name}' speaks {proto}; use TERMINATED_HTTPS, or for HTTP add an L7 "
               "policy REDIRECT_PREFIX to https://.")


def _tcp_passthrough(lst: Res, resources: list[Res]) -> Iterable[str]:
    """A TCP listener passes TLS through: fine when it takes 443 (or 80) and every member of its
    pool is a proxy's port for 443 (or 80), where socle's Caddy terminates TLS (or only redirects)."""
    port = known(lst.props.get("protocolPort"), f"port of listener {lst.name}")
    port = int(port) if isinstance(port, (int, float)) else port
    if port not in (80, 443):
        yield (f"Load-balancer listener '{lst.name}' passes TCP port {port} through: only 443 (TLS, terminated by "
               "the servers' HTTPS proxies) and 80 (their redirect) may be passed through.")
        return
    pools = {r.urn for r in resources if r.type == T_LB_POOL and r.urn in lst.dependencies}
    members = [m for m in resources if m.type == T_LB_MEMBER and pools & set(m.dependencies)]
    if not members:
        yield f"Load-balancer listener '{lst.name}' passes TCP port {port} to a pool with no members socle made."
        return
    proxies = _proxy_ports(resources)
    for m in members:
        to = known(m.props.get("protocolPort"), f"port of pool member {m.name}")
        address = known(m.props.get("address"), f"address of pool member {m.name}")
        who = m.props.get("name") or m.name
        if not (address and _is_private(address)):
            yield (f"Load-balancer listener '{lst.name}' passes port {port} to member '{who}' at {address or 'no address'}, "
                   "outside the private network: only socle's servers, at their private addresses, may be members.")
        elif not isinstance(to, (int, float)) or proxies.get(int(to)) != port:
            yield (f"Load-balancer listener '{lst.name}' passes port {port} to port {to} of member "
                   f"'{who}', which is not a socle proxy's port {port}.")


# ---------------------------------------------------------------------------- backup rules


@rule("database-backups-offsite",
      "Every managed database has a backup time and keeps backups in a region other than its nodes'.",
      types=(T_OVH_DATABASE,))
def database_backups_offsite(res: Res, cfg: dict) -> Iterable[str]:
    label = res.props.get("description") or res.name
    if not known(res.props.get("backupTime"), f"backupTime of {res.name}"):
        yield f"Database '{label}' has no backupTime; set socle:databases.*.backupTime (e.g. '02:30:00')."
    regions = known(res.props.get("backupRegions") or [], f"backupRegions of {res.name}")
    nodes = {_location(n.get("region", "")) for n in known(res.props.get("nodes") or [], f"nodes of {res.name}")}
    if not {_location(r) for r in regions} - nodes:
        kept = ", ".join(regions) or "no region"
        yield (f"Database '{label}' keeps backups only in {kept}; add a second region to backupRegions "
               f"(set socle:ovh.backupRegion to another location, e.g. SBG5 for GRA11).")


@rule("database-deletion-protection",
      "Databases have deletion protection (enabled for production stacks).", types=(T_OVH_DATABASE,))
def database_deletion_protection(res: Res, cfg: dict) -> Iterable[str]:
    if known(res.props.get("deletionProtection"), f"deletionProtection of {res.name}") is not True:
        label = res.props.get("description") or res.name
        yield (f"Database '{label}' can be deleted by a mistaken destroy; set "
               "socle:databases.*.deletionProtection: true in this stack.")


@rule("bucket-versioning", "Every bucket keeps object versions.", types=(T_OVH_STORAGE, T_CONTAINER))
def bucket_versioning(res: Res, cfg: dict) -> Iterable[str]:
    if res.type == T_OVH_STORAGE:
        versioning = known(res.props.get("versioning") or {}, f"versioning of {res.name}")
        if str(versioning.get("status", "")).lower() != "enabled":
            yield (f"Bucket '{res.props.get('name') or res.name}' is not versioned, so an overwrite or a delete "
                   "loses data; set socle:buckets.*.versioning: true.")
    elif _role(res) == "bucket-create":
        command = " ".join(known(res.props.get("command") or [], f"command of {res.name}"))
        if "--with-versioning" not in command and "--with-lock" not in command:
            yield (f"Bucket created by '{_name(res)}' is not versioned, so an overwrite or a delete loses data; "
                   "set socle:buckets.*.versioning: true.")


_COVERAGE = re.compile(r"^COVERAGE = json\.loads\(r'''(\{.*\})'''\)$", re.M)


def declared_coverage(script: Any) -> dict | None:
    """The coverage a backup installer declares in its own text (components.render.backup.coverage),
    as a manifest of the same shape, or None. The installer refuses a manifest that covers anything
    else, so it is what will be installed, and it is known at preview."""
    if not isinstance(script, str) or is_unknown(script):
        return None
    m = _COVERAGE.search(script)
    if not m:
        return None
    c = json.loads(m.group(1))
    return {"host": c.get("host"), "volumes": [{"name": v} for v in c.get("volumes", [])],
            "databases": [dict(zip(("cluster", "database"), d.split("/", 1))) for d in c.get("databases", [])],
            "retention": c.get("retention") or {}, "watched": c.get("watched") or [],
            "targets": ([{"kind": k, "appendOnly": k == "append-only"} for k in c["targetKinds"]]
                        if "targetKinds" in c else [{}] * int(c.get("targets") or 0)),
            "check": {"maxAgeHours": c.get("maxAgeHours")}}


def backup_manifests(resources: list[Res], pending: list[str] | None = None) -> list[tuple[Res, dict]]:
    """The backup jobs' manifests: what each job dumps and snapshots, where, and for how long.
    The backup script reads the very same file, so this is what really runs, not a label.
    A job whose manifest is not known yet (it holds addresses known only at the update) is added to
    `pending` if given, else raises Unknown."""
    out = []
    for r in resources:
        try:
            text = None
            if r.type == T_CONTAINER and _role(r) == "backup":
                text = known(_uploads(r).get(BACKUP_MANIFEST_PATH), f"the backup manifest of {r.name}")
            elif r.type == T_REMOTE_COMMAND and r.name.endswith("-backup-install"):
                declared = declared_coverage(r.props.get("create"))
                if is_unknown(r.props.get("stdin")) and declared is not None:
                    text = json.dumps(declared)  # at preview: what the installer will accept
                else:
                    bundle = known(r.props.get("stdin"), f"the backup manifest of {r.name}")
                    text = json.dumps(json.loads(bundle)["manifest"]) if bundle else None
        except Unknown:
            if pending is None:
                raise
            pending.append(r.name)
            continue
        if text:
            out.append((r, json.loads(text)))
    return out


def _backup_server_parents(resources: list[Res]) -> set[str]:
    """The Server components whose security group says they are backup servers (socle writes it)."""
    return {r.parent or "" for r in resources if r.type == T_OVH_SECURITY_GROUP
            and str(r.props.get("description") or "").startswith("socle backup server")}


def _data_locations(resources: list[Res], pending: list[str]) -> set[str]:
    """Where the data lives: the app servers' and the managed databases' locations (the names of
    those whose region is not known yet are added to `pending`)."""
    backup_servers = _backup_server_parents(resources)
    locations: set[str] = set()
    for r in resources:
        try:
            if r.type == T_OVH_INSTANCE and (r.parent or "") not in backup_servers:
                locations.add(_location(known(r.props.get("region"), f"region of {r.name}")))
            elif r.type == T_OVH_DATABASE:
                locations |= {_location(known(n.get("region"), f"region of {r.name}"))
                              for n in known(r.props.get("nodes") or [], f"nodes of {r.name}")}
        except Unknown:
            pending.append(r.name)
    return locations


def _beside_the_data(loc: str, data: set[str], pending: list[str], res: Res) -> bool:
    """Whether a copy in `loc` sits where the data lives; Unknown while a data region is not known."""
    if loc in data:
        return True
    if pending:
        raise Unknown(f"the region of {', '.join(pending)}", res.name)
    return False


@rule("backup-server-offsite",
      "A backup server lives in another location than the data it keeps (socle:ovh.backupRegion), so that one "
      "site's loss does not take the data and its backups together.", kind="stack")
def backup_server_offsite(resources: list[Res], cfg: dict) -> Iterable[str]:
    backup_servers = _backup_server_parents(resources)
    pending: list[str] = []
    data = _data_locations(resources, pending)

    def check(vm):
        loc = _location(known(vm.props.get("region"), f"region of {vm.name}"))
        if _beside_the_data(loc, data, pending, vm):
            yield (f"Backup server '{vm.props.get('name') or vm.name}' is in {loc}, where the data it keeps "
                   "lives; set socle:ovh.backupRegion to another location (e.g. SBG5 for data in GRA).")

    yield from each([vm for vm in resources if vm.type == T_OVH_INSTANCE and (vm.parent or "") in backup_servers],
                    check)


@rule("backup-bucket-immutable-offsite",
      "A bucket holding backups has object lock in compliance mode for at least the minimum lock period and "
      "lives in another region than the data it protects.", kind="stack", minLockDays=30)
def backup_bucket_immutable_offsite(resources: list[Res], cfg: dict) -> Iterable[str]:
    pending: list[str] = []
    data_locations = _data_locations(resources, pending)
    min_days = int(cfg.get("minLockDays", 30))

    def check(b):
        tags = known(b.props.get("tags") or {}, f"tags of {b.name}")
        if tags.get("socle-purpose") != "backup":
            return
        name = b.props.get("name") or b.name
        lock = known(b.props.get("objectLock") or {}, f"objectLock of {b.name}")
        rule_ = lock.get("rule") or {}
        days = _days_of_iso_period(rule_.get("period", ""))
        if str(lock.get("status", "")).lower() != "enabled" or str(rule_.get("mode", "")).lower() != "compliance":
            yield (f"Backup bucket '{name}' has no object lock in compliance mode, so ransomware holding the keys "
                   f"can delete the backups; set objectLock {{mode: compliance, days: {min_days}}} on it.")
        elif days is None or days < min_days:
            yield (f"Backup bucket '{name}' locks objects for {days} days, below the required {min_days}; "
                   f"raise its objectLock.days to {min_days}.")
        loc = _location(known(b.props.get("regionName"), f"regionName of {b.name}"))
        if _beside_the_data(loc, data_locations, pending, b):
            yield (f"Backup bucket '{name}' is in {loc}, where the data it protects lives; put it in "
                   "socle:ovh.backupRegion (another location).")

    yield from each([b for b in resources if b.type == T_OVH_STORAGE], check)


@rule("stateful-data-backed-up",
      "Every stateful volume and every database is covered by a backup job whose retention meets the stack's "
      "minimum, and whose weekly check fails when the newest snapshot is older than maxBackupAgeHours.",
      kind="stack", minRetentionDays=7, minDailySnapshots=1, maxBackupAgeHours=48)
def stateful_data_backed_up(resources: list[Res], cfg: dict) -> Iterable[str]:
    pending: list[str] = []
    manifests = backup_manifests(resources, pending)
    volumes_covered: set[str] = set()
    dbs_covered: set[str] = set()
    min_days = int(cfg.get("minRetentionDays", 7))
    for job, m in manifests:
        volumes_covered |= {v["name"] for v in m.get("volumes", [])}
        dbs_covered |= {f"{d['cluster']}/{d['database']}" for d in m.get("databases", [])}
        days = retention_days(m.get("retention") or {})
        if days < min_days:
            yield (f"Backup job of server '{m.get('host', job.name)}' keeps snapshots for {days} days, below the stack's minimum of "
                   f"{min_days}; raise socle:backup.retention (e.g. yearly: {max(1, -(-min_days // 365))}).")
        daily, min_daily = int((m.get("retention") or {}).get("daily") or 0), int(cfg.get("minDailySnapshots", 1))
        if daily < min_daily:
            yield (f"Backup job of server '{m.get('host', job.name)}' keeps {daily} daily snapshots, below the stack's "
                   f"minimum of {min_daily}: with only weekly, monthly or yearly ones, each night's prune replaces the "
                   f"last good copy; set socle:backup.retention.daily to {min_daily} or more.")
        if not m.get("targets"):
            yield f"Backup job of server '{m.get('host', job.name)}' has no target; set socle:backup.targets."
        age, max_age = (m.get("check") or {}).get("maxAgeHours"), int(cfg.get("maxBackupAgeHours", 48))
        if age is not None and int(age) > max_age:
            yield (f"Backup job of server '{m.get('host', job.name)}' accepts a newest snapshot {age} hours old, above "
                   f"the stack's maximum of {max_age}: backups may run that rarely unnoticed; run socle:backup.schedule "
                   f"at least every {max_age} hours and lower socle:backup.maxAgeHours.")
    waiting = f"the backup manifest of {', '.join(pending)}"

    def volume(v):
        if v.label("socle.stateful") != "true":
            return
        name = known(v.props.get("name"), f"name of {v.name}")
        if name in volumes_covered:
            return
        if pending:  # a job not known yet may cover it: judged on the update
            raise Unknown(waiting, v.name)
        yield (f"Volume '{name}' holds state but no backup job covers it; keep socle:backup enabled for its "
               "server and do not set backup: false on the volume.")

    def database(c):
        if not (c.type == T_OVH_DATABASE or (c.type == T_CONTAINER and _role(c) == "database")):
            return
        cluster = c.label("socle.database") if c.type == T_CONTAINER else (c.props.get("description") or c.name)
        wanted = [d for d in (c.label("socle.databases") or "").split(",") if d] if c.type == T_CONTAINER else None
        covered = {d.split("/", 1)[1] for d in dbs_covered if d.split("/", 1)[0] == cluster}
        if wanted is None:  # managed cluster: its logical databases are separate resources
            wanted = sorted({r.props.get("name") for r in resources
                             if r.type.endswith("databaseInstance:DatabaseInstance") and r.parent == c.parent})
        missing = [d for d in wanted if d not in covered]
        if (missing or not covered) and pending:
            raise Unknown(waiting, c.name)
        if missing or not covered:
            yield (f"Database '{cluster}' is not dumped by any backup job ({', '.join(missing) or 'all'} missing); "
                   "every database an app uses is dumped by the backup job of that app's server.")

    yield from each([v for v in resources if v.type == T_VOLUME], volume)
    yield from each(resources, database)


@rule("backups-are-watched",
      "Every backup job reports each of its required jobs (run, check, drill) to a dead-man URL of its own, so "
      "that backups that stop, or a check that finds a stale repository, are noticed.",
      kind="stack", requiredPings=["run", "check"])
def backups_are_watched(resources: list[Res], cfg: dict) -> Iterable[str]:
    required = list(cfg.get("requiredPings", ["run", "check"]))
    keys = {"run": "pingUrl", "check": "checkPingUrl", "drill": "drillPingUrl"}
    pending: list[str] = []
    manifests = backup_manifests(resources, pending)
    for job in pending:
        yield Unknown(f"the backup manifest of {job}", job)
    for job, m in manifests:
        watched = set(m.get("watched") or [])
        missing = [j for j in required if j not in watched]
        if missing:
            yield (f"Backup job of server '{m.get('host', job.name)}' reports {', '.join(missing)} to no dead-man URL, "
                   "so backups that stop would go unnoticed; set "
                   + ", ".join(f"socle:backup.{keys.get(j, j)}" for j in missing)
                   + " (a Healthchecks-style URL each, {config: NAME} to keep it secret).")


@rule("backup-has-undeletable-copy",
      "Every backup job keeps a copy that its own server cannot delete: a bucket (whose object lock "
      "backup-bucket-immutable-offsite judges) or socle's append-only backup server. An external SFTP host "
      "or a local repository alone is lost with a compromised server.",
      kind="stack")
def backup_has_undeletable_copy(resources: list[Res], cfg: dict) -> Iterable[str]:
    pending: list[str] = []
    manifests = backup_manifests(resources, pending)
    for job in pending:
        yield Unknown(f"the backup manifest of {job}", job)
    for job, m in manifests:
        kinds = [_target_kind(t) for t in m.get("targets") or []]
        if kinds and set(kinds) == {"local"}:
            continue  # the local Docker engine (dev): nothing there is out of the machine's reach
        if any(k not in ("s3", "append-only", "sftp", "local") for k in kinds):
            yield Unknown(f"the kind of a backup target of {job.name}", job.name)
        elif kinds and not any(k in ("s3", "append-only") for k in kinds):
            yield (f"Backup job of server '{m.get('host', job.name)}' writes only to {', '.join(sorted(set(kinds)))} "
                   "targets, which that server can also delete from (ransomware on it would take the backups too); "
                   "add socle:backup.targets.bucket (object lock) or socle:backup.targets.server (append-only).")


def _target_kind(target: dict) -> str:
    """The twin of components.render.backup.target_kind."""
    return "append-only" if target.get("appendOnly") else str(target.get("kind"))


@rule("instance-backups",
      "Servers that hold state have OVH instance backups with at least the configured rotation.",
      kind="stack", minRotation=7)
def instance_backups(resources: list[Res], cfg: dict) -> Iterable[str]:
    by_urn = {r.urn: r for r in resources}
    stateful_parents: set[str] = set()
    for v in resources:
        if v.type == T_VOLUME and v.label("socle.stateful") == "true" and v.provider in by_urn:
            stateful_parents.add(by_urn[v.provider].parent or "")
    min_rotation = int(cfg.get("minRotation", 7))

    def check(vm):
        name = vm.props.get("name") or vm.name
        flows = [w for w in resources if w.type == T_OVH_WORKFLOW_BACKUP and w.parent == vm.parent]
        if not flows:
            yield (f"Server '{name}' holds state but has no instance backup; set socle:servers.*.autoBackup "
                   f"(rotation: {min_rotation}).")
            return
        rotation = max(int(known(w.props.get("rotation"), f"rotation of {w.name}")) for w in flows)
        if rotation < min_rotation:
            yield (f"Server '{name}' keeps {rotation} instance backups, below the required {min_rotation}; "
                   f"raise socle:servers.*.autoBackup.rotation to {min_rotation}.")

    yield from each([vm for vm in resources if vm.type == T_OVH_INSTANCE and vm.parent in stateful_parents], check)


# ---------------------------------------------------------------------------- operations


STATEFUL_CLOUD_TYPES = (T_OVH_INSTANCE, T_OVH_BLOCK_VOLUME, T_OVH_DATABASE, T_OVH_DATABASE_INSTANCE, T_OVH_STORAGE)


@rule("stateful-resources-protected",
      "Servers, data volumes, databases and buckets carry Pulumi's `protect` option, so that no destroy and no "
      "replacement deletes them without someone unlocking them by hand (enabled for production stacks).",
      types=STATEFUL_CLOUD_TYPES)
def stateful_resources_protected(res: Res, cfg: dict) -> Iterable[str]:
    if res.protect is not True:
        yield (f"'{_name(res)}' ({res.type.split(':')[-1]}) holds data but is not protected, so a destroy or a "
               "replacement would delete it without asking; set socle:protect: true in this stack.")


@rule("databases-managed",
      "Databases are managed clusters (backups with point-in-time recovery, failover, minor upgrades by OVH), "
      "not containers beside the apps (enabled for production stacks).", types=(T_CONTAINER,))
def databases_managed(res: Res, cfg: dict) -> Iterable[str]:
    if _role(res) == "database":
        yield (f"Database '{res.label('socle.database') or _name(res)}' runs as a container on an app server (the review "
               "profile's setting); in this stack a database is an OVH managed cluster: remove hosting: container "
               "from socle:databases.")


@rule("ssh-from-admin-networks-only",
      "A security group opens SSH (or any port other than 80 and 443) only to blocks no wider than /24 (IPv4) or "
      "/48 (IPv6), or to the stack's own private network: never to the whole Internet or an ISP's range, unless "
      "a container of that server publishes the port (which only-proxy-publishes-ports allows by name).",
      kind="stack", maxPrefixV4=24, maxPrefixV6=48)
def ssh_from_admin_networks_only(resources: list[Res], cfg: dict) -> Iterable[str]:
    # The stack's private network: the blocks of its vRack subnets (plain config, known at preview).
    private = [ipaddress.ip_network(str(r.props["cidr"]), strict=False) for r in resources
               if r.type == T_VRACK_SUBNET and not is_unknown(r.props.get("cidr")) and r.props.get("cidr")]
    published = _published_by_server(resources)
    providers_known = any(r.type.startswith("pulumi:providers:docker") for r in resources)
    yield from each([r for r in resources if r.type == T_OVH_SECURITY_GROUP],
                    lambda sg: _sg_exposure(sg, cfg, private, published.get(_server_of_sg(sg, providers_known))))


def _published_by_server(resources: list[Res]) -> dict[str | None, tuple[set[str], set[str]]]:
    """PORT/PROTOCOL bound publicly by containers, by the server they run on, and those that may be
    (bound on an address not known until the update): ({sure}, {maybe}). A container's server is
    the component its Docker provider belongs to, which is also the parent of the server's security
    group; when the provider is not among the resources (policy engines that leave providers out),
    socle's names give it: provider `<server>-docker`, security group `<server>-sg`."""
    parents = {r.urn: r.parent for r in resources}
    out: dict[str | None, tuple[set[str], set[str]]] = {}
    for r in resources:
        if r.type != T_CONTAINER or _role_or_none(r) == "proxy":
            continue
        server = parents.get(r.provider) if r.provider in parents else _server_of_provider(r.provider)
        sure, maybe = out.setdefault(server, (set(), set()))
        ports = r.props.get("ports") or []
        if is_unknown(ports):
            maybe.add(UNKNOWN_BINDING)
            continue
        for p in ports:
            if is_unknown(p) or any(is_unknown(p.get(k)) for k in ("external", "internal", "protocol")):
                maybe.add(UNKNOWN_BINDING)
            elif is_unknown(p.get("ip")):
                maybe.add(_port_protocol(_binding_key(p)))
            elif not (p.get("ip") and _is_private(p["ip"])):
                sure.add(_port_protocol(_binding_key(p)))
    return out


def _server_of_provider(urn: str | None) -> str | None:
    name = (urn or "").rsplit("::", 1)[-1]
    return f"name:{name[:-len('-docker')]}" if name.endswith("-docker") else None


def _server_of_sg(sg: Res, parents_known: bool) -> str | None:
    return sg.parent if parents_known else (f"name:{sg.name[:-3]}" if sg.name.endswith("-sg") else None)


UNKNOWN_BINDING = "?"


def _role_or_none(res: Res) -> str | None:
    try:
        return _role(res)
    except Unknown:
        return None


def _sg_exposure(res: Res, cfg: dict, private: list,
                 published: tuple[set[str], set[str]] | None = None) -> Iterable[str]:
    widest = {4: int(cfg.get("maxPrefixV4", 24)), 6: int(cfg.get("maxPrefixV6", 48))}
    rules_ = res.props.get("rules") or []
    if is_unknown(rules_):
        raise Unknown(f"rules of {res.name}")
    for r in rules_:
        if is_unknown(r) or is_unknown(r.get("remoteIpPrefix")) or is_unknown(r.get("portRangeMin")):
            yield Unknown(f"a rule of {res.name} (its source address)", res.name)
            continue
        port = int(r.get("portRangeMin") or 0)
        single = int(r.get("portRangeMax") or port) == port
        protocol = str(r.get("protocol") or "tcp").lower()
        if port in (80, 443) and single and protocol == "tcp":
            continue
        sure, maybe = published or (set(), set())
        if single and f"{port}/{protocol}" in sure:
            continue  # a container of this server publishes it: only-proxy-publishes-ports judges that
        try:
            net = ipaddress.ip_network(str(r.get("remoteIpPrefix") or "0.0.0.0/0"), strict=False)
        except ValueError:
            yield f"Security group '{_name(res)}' opens port {port} to '{r.get('remoteIpPrefix')}', which is not a block."
            continue
        if any(net.version == n.version and net.subnet_of(n) for n in private):
            continue  # inside the stack's private network: not the Internet
        if net.prefixlen < widest[net.version]:
            if UNKNOWN_BINDING in maybe or f"{port}/{protocol}" in maybe:
                yield Unknown(f"the ports a container of {res.name}'s server publishes", res.name)
                continue
            yield (f"Security group '{_name(res)}' opens port {port}/{protocol} to {net} ({net.num_addresses:,} "
                   f"addresses) and no container of its server publishes it; list only admin blocks of "
                   f"/{widest[net.version]} or narrower in socle:access.adminCidrs.")


# ---------------------------------------------------------------------------- running the rules


def rule_config(rule_: Rule, policy_config: dict) -> dict:
    """A rule's config: its defaults, overridden by its entry in a policy config file."""
    entry = policy_config.get(rule_.name)
    merged = dict(rule_.config)
    if isinstance(entry, dict):
        merged.update({k: v for k, v in entry.items() if k != "enforcementLevel"})
    return merged


def enforcement(rule_: Rule, policy_config: dict) -> str:
    entry = policy_config.get(rule_.name)
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and "enforcementLevel" in entry:
        return entry["enforcementLevel"]
    return policy_config.get("all", "advisory")


def _collect(rule_: Rule, resource: str, findings: Iterable) -> list[Finding]:
    """The findings of one rule run: what it judged is kept even when a later value is unknown."""
    out: list[Finding] = []

    def unknown(u: Unknown) -> Finding:
        return Finding(rule_.name, u.resource or resource, f"cannot check yet: {u.what} is not known until the "
                                                         "update; this rule runs again then.", unknown=True)
    try:
        for item in findings:
            out.append(unknown(item) if isinstance(item, Unknown) else Finding(rule_.name, resource, item))
    except Unknown as u:
        out.append(unknown(u))
    return out


def run_resource_rule(rule_: Rule, res: Res, cfg: dict) -> list[Finding]:
    return _collect(rule_, res.name, rule_.check(res, cfg))


def run_stack_rule(rule_: Rule, resources: list[Res], cfg: dict) -> list[Finding]:
    return _collect(rule_, "", rule_.check(resources, cfg))


@dataclass
class Verdict:
    finding: Finding
    level: str  # advisory | mandatory


def evaluate(resources: list[Res], policy_config: dict | None = None) -> list[Verdict]:
    """Every rule over a resource graph, with the enforcement level the policy config gives it."""
    policy_config = policy_config or {}
    out: list[Verdict] = []
    for r in RULES:
        level = enforcement(r, policy_config)
        if level == "disabled":
            continue
        cfg = rule_config(r, policy_config)
        if r.kind == "resource":
            for res in resources:
                if res.type in r.types:
                    out += [Verdict(f, level) for f in run_resource_rule(r, res, cfg)]
        else:
            out += [Verdict(f, level) for f in run_stack_rule(r, resources, cfg)]
    return out
