"""The one typed model of a socle stack, read from the `socle:` config namespace.

Validation happens here, once, at the edge: pydantic checks each value's shape (unknown keys are
rejected), then `_cross_check` checks what a field alone cannot (references between sections,
hostnames inside the domain, one hostname per app ...). Every problem becomes one line that names
the key path, the bad value and what is allowed, and all of them are reported together so a person
fixes a stack file in one pass. Components trust the typed result.

No Pulumi import here: the model is loaded from a plain dict, so tools and tests use it directly.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any, Literal, Union

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

NAMESPACE = "socle"

# A name that is safe as a Docker container / volume / DNS label and an OVH resource name.
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_HOST_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HHMMSS_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$")


class ConfigError(Exception):
    """Invalid stack config: `issues` is a list of (key path, message)."""

    def __init__(self, issues: list[tuple[str, str]]):
        self.issues = issues
        lines = [f"{NAMESPACE}:{path}: {msg}" if path else f"{NAMESPACE}: {msg}" for path, msg in issues]
        super().__init__(
            f"invalid stack config ({len(issues)} problem{'s' if len(issues) != 1 else ''}):\n  "
            + "\n  ".join(lines)
        )


# ---------------------------------------------------------------------------- field validators


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(
            f"'{value}' is not a CIDR block ({exc}); write it as address/prefix, e.g. 203.0.113.0/24"
        ) from None


def _cron(value: str) -> str:
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(
            f"'{value}' is not a 5-field cron expression (minute hour day month weekday), e.g. '0 3 * * *'"
        )
    return value


def _time_zone(value: str) -> str:
    """An IANA time zone name (Europe/Paris), as systemd's calendar specs and zoneinfo read it."""
    import difflib
    import zoneinfo

    zones = zoneinfo.available_timezones()
    if value == "UTC" or value in zones:
        target = _legacy_alias(value)
        if target:
            raise ValueError(f"'{value}' is an old alias of '{target}', which Debian 13 moved to the tzdata-legacy "
                             f"package: a server without it cannot read the backup timers; write '{target}'")
        return value
    if not zones:
        raise ValueError(f"'{value}': this machine has no time zone database; install it "
                         "(apt-get install tzdata) or use UTC")
    near = difflib.get_close_matches(value, sorted(zones), n=1)
    hint = f"did you mean '{near[0]}'?" if near else "e.g. Europe/Paris"
    raise ValueError(f"'{value}' is not a time zone of the IANA database; {hint}")


def _legacy_alias(name: str) -> str | None:
    """The zone a backward-compatibility alias (US/Eastern, Europe/Kiev) points at, or None for a
    zone's own name: the database's links (`L TARGET NAME` in tzdata.zi), except the ones a
    country still lists as its own (zone.tab: Europe/Busingen) and UTC."""
    from pathlib import Path

    base = Path("/usr/share/zoneinfo")
    if name in ("UTC", "Etc/UTC") or not (base / "tzdata.zi").is_file():
        return None
    listed = set()
    for tab in ("zone.tab", "zone1970.tab"):
        if (base / tab).is_file():
            listed |= {line.split("\t")[2] for line in (base / tab).read_text().splitlines()
                       if line and not line.startswith("#") and line.count("\t") >= 2}
    if name in listed:
        return None
    for line in (base / "tzdata.zi").read_text().splitlines():
        if line.startswith("L ") and line.split()[2:3] == [name]:
            return line.split()[1]
    return None


def _hhmmss(value: str) -> str:
    if not _HHMMSS_RE.match(value):
        raise ValueError(f"'{value}' is not a time of day; write it as HH:MM:SS in UTC, e.g. '03:00:00'")
    return value


def _name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"'{value}' is not a valid name; use lower-case letters, digits and '-', "
            "starting with a letter, at most 31 characters"
        )
    return value


def _domain(value: str) -> str:
    labels = value.split(".")
    if len(value) > 253 or len(labels) < 2 or not all(_HOST_LABEL_RE.match(lbl) for lbl in labels):
        raise ValueError(f"'{value}' is not a DNS domain; write it in lower case, e.g. example.org")
    return value


_KEY_TYPES = {
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
}


def _ssh_key(value: str) -> str:
    """One OpenSSH public key on one line: `type base64 [comment]`. The line goes into
    authorized_keys as it is, so anything that could add a second key or an option is refused
    (newlines by the control-character check in `load`, options such as `command=` here)."""
    import base64
    import binascii

    parts = value.split()
    if len(parts) < 2 or parts[0] not in _KEY_TYPES:
        raise ValueError("is not an OpenSSH public key; paste the one line of your ~/.ssh/id_ed25519.pub "
                         "(it starts with ssh-ed25519; no options such as command= or from= before it)")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the key data of this {parts[0]} key is not base64; paste the .pub line again, whole") from None
    if not _ssh_wire_ok(parts[0], blob):
        raise ValueError(f"the key data does not hold a whole {parts[0]} key (a truncated or mixed-up paste); "
                         "paste the .pub line again, whole")
    if any(p in _KEY_TYPES and q.startswith("AAAA") for p, q in zip(parts[2:], parts[3:])):
        raise ValueError("holds more than one key on one line; give each key its own list entry")
    return value


def _ssh_wire_ok(key_type: str, blob: bytes) -> bool:
    """The public key blob (RFC 4253 §6.6, RFC 8709, PROTOCOL.u2f) holds exactly the fields of its type."""
    fields, i = [], 0
    while i < len(blob):
        if i + 4 > len(blob):
            return False
        n = int.from_bytes(blob[i:i + 4], "big")
        if i + 4 + n > len(blob):
            return False
        fields.append(blob[i + 4:i + 4 + n])
        i += 4 + n
    if not fields or fields[0] != key_type.encode():
        return False
    expected = {"ssh-ed25519": 2, "ssh-rsa": 3, "sk-ssh-ed25519@openssh.com": 3,
                "sk-ecdsa-sha2-nistp256@openssh.com": 4}.get(key_type, 3)  # ecdsa: type, curve, point
    if len(fields) != expected:
        return False
    if key_type in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"):
        return len(fields[1]) == 32
    if key_type == "ssh-rsa":
        return len(fields[2]) * 8 >= 2048 - 8
    return len(fields[2]) > 32


# Users a Debian server already has, or that socle creates for itself (the backup server's restic
# user): the deploy user must be a fresh, unprivileged account.
_RESERVED_USERS = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
    "www-data", "backup", "list", "irc", "nobody", "systemd-network", "systemd-resolve",
    "systemd-timesync", "messagebus", "sshd", "_apt", "debian", "admin", "docker", "restic", "ubuntu",
})


def _deploy_user(value: str) -> str:
    if value in _RESERVED_USERS:
        raise ValueError(f"'{value}' is a system or reserved account; SSH logins as it would run with its rights "
                         "(root logins are refused by sshd): keep the default 'deploy' or choose a new name")
    return value


def _admin_cidr(value: str) -> str:
    """SSH is opened to these blocks only: a block wider than an office or a VPN (an ISP's or the
    whole Internet) turns the firewall rule into nothing."""
    net = ipaddress.ip_network(value, strict=True)
    widest = 24 if net.version == 4 else 48
    if net.prefixlen < widest:
        what = "the whole Internet" if net.prefixlen == 0 else f"{net.num_addresses:,} addresses (an ISP's range)"
        raise ValueError(
            f"'{value}' opens SSH to {what}; list only your office's or VPN's address or block "
            f"(at most /{widest}, e.g. 203.0.113.10/32), and use a bastion or VPN for everyone else")
    return value


def _private_cidr(value: str) -> str:
    """The private network: an RFC 1918 IPv4 block, /16 to /24 (room for the servers, the load
    balancers' ports and the file storage, and a split between two regions), off Docker's ranges."""
    net = ipaddress.ip_network(value, strict=True)
    rfc1918 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
    if net.version != 4 or not any(net.subnet_of(r) for r in rfc1918):
        raise ValueError(f"'{value}' is not a private IPv4 block; use one inside 10.0.0.0/8 or 192.168.0.0/16, "
                         "e.g. 10.42.0.0/16")
    if not 16 <= net.prefixlen <= 24:
        raise ValueError(f"'{value}' is a /{net.prefixlen}; use a /16 to /24, e.g. 10.42.0.0/16")
    if net.overlaps(ipaddress.ip_network("172.16.0.0/12")):
        raise ValueError(f"'{value}' overlaps 172.16.0.0/12, where Docker puts its own networks; "
                         "use one inside 10.0.0.0/8, e.g. 10.42.0.0/16")
    return value


def _email(value: str) -> str:
    # Written into the Caddyfile's `email` option: a strict shape, no spaces, quotes or braces.
    if not re.fullmatch(r"[A-Za-z0-9._%+-]+@(?!-)[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,63}", value):
        raise ValueError(f"'{value}' is not an e-mail address (letters, digits and ._%+- before the @, a domain after; "
                         "no spaces, quotes or braces), e.g. admin@example.org")
    return value


# Docker image reference: [registry[:port]/]path[:tag][@sha256:digest], lower-case path.
_IMAGE_RE = re.compile(
    r"(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?")


def _image(value: str) -> str:
    m = _IMAGE_RE.fullmatch(value)
    registry = m.group("registry") if m else None
    # Docker reads the first component as a registry only if it has a dot or a port or is localhost;
    # otherwise it is part of the repository path, which is lower case.
    if not m or (registry and not re.search(r"[.:]", registry) and registry != "localhost"
                 and registry != registry.lower()):
        raise ValueError(f"'{value}' is not a Docker image reference; write NAME:TAG, e.g. nginx:1.27-alpine")
    if not m.group("tag") and not m.group("digest"):
        raise ValueError(f"'{value}' has no tag, so every deployment may pull a different image; pin a version, "
                         f"e.g. {value}:1.2.3 (or @sha256:DIGEST)")
    if m.group("tag") in ("latest", "stable", "main", "master", "edge", "nightly") and not m.group("digest"):
        raise ValueError(f"'{value}' uses the moving tag '{m.group('tag')}', so every deployment may pull a different "
                         "image; pin a version, e.g. nginx:1.27-alpine (or @sha256:DIGEST)")
    return value


def _https_url(value: str) -> str:
    # Written into an environment file read by systemd and a shell: no quotes, spaces, $ or backticks.
    from urllib.parse import urlsplit

    if not re.fullmatch(r"https://[A-Za-z0-9._~:/?#@!&*+,;=%-]+", value) or not urlsplit(value).hostname:
        raise ValueError(f"'{value}' is not an https:// URL of plain characters (no spaces, quotes, $ or backticks)")
    if urlsplit(value).password:
        raise ValueError("holds a password in the URL, which would be readable in the stack file and the plan; keep "
                         "the URL secret instead: {config: NAME} with `pulumi config set --secret`")
    return value


def _caa_issuer(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", value):
        raise ValueError(f"'{value}' is not a certificate authority's domain, e.g. letsencrypt.org")
    return value


def _secret_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value):
        raise ValueError(f"'{value}' is not a key of socle:secrets (letters, digits and _, starting with a letter), "
                         f"e.g. {re.sub(r'[^A-Za-z0-9_]', '_', value).lstrip('_0123456789') or 'admin_password'}")
    return value


def _database_use(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9-]*\.[a-z][a-z0-9-]*", value):
        raise ValueError(f"'{value}' is not DATABASE.LOGICAL; write the name under socle:databases, a dot and one of "
                         "its databases, e.g. main.nextcloud")
    return value


def _container_path(value: str) -> str:
    if not value.startswith("/") or re.search(r"[\x00-\x1f:]", value):
        raise ValueError(f"'{value}' is not an absolute path in the container; write it from the root, e.g. /{value.lstrip('/')}")
    return value


def _env_name(value: str) -> str:
    if not _ENV_RE.match(value):
        raise ValueError(f"'{value}' is not a valid environment variable name")
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
Cron = Annotated[str, AfterValidator(_cron)]
TimeOfDay = Annotated[str, AfterValidator(_hhmmss)]
Name = Annotated[str, AfterValidator(_name)]
SshPublicKey = Annotated[str, AfterValidator(_ssh_key)]
AdminCidr = Annotated[str, AfterValidator(_cidr), AfterValidator(_admin_cidr)]
Email = Annotated[str, AfterValidator(_email)]
Image = Annotated[str, AfterValidator(_image)]
HttpsUrl = Annotated[str, AfterValidator(_https_url)]
CaaIssuer = Annotated[str, AfterValidator(_caa_issuer)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        use_attribute_docstrings=True,
    )


# ---------------------------------------------------------------------------- sections


class OvhSettings(_Model):
    project_id: str = Field(min_length=1)
    """OVH Public Cloud project id (the `serviceName` of every OVH resource)."""
    region: str = Field(min_length=2)
    """Region of servers, databases and buckets, e.g. GRA11 (instances) — databases use its prefix (GRA)."""
    backup_region: str = Field(min_length=2)
    """A second region for off-site copies (database backups, backup bucket), e.g. SBG5."""


class Access(_Model):
    admin_ssh_keys: list[SshPublicKey] = Field(default_factory=list)
    """OpenSSH public keys of the administrators, installed for the deploy user."""
    ci_ssh_key: SshPublicKey | None = None
    """Public half of this environment's own CI deploy key (the DEPLOY_SSH_KEY secret of its GitHub environments), installed like adminSshKeys; a review stack's must be authorised on no other stack."""
    admin_cidrs: list[AdminCidr] = Field(default_factory=list)
    """CIDR blocks allowed to reach SSH (the machine that runs `pulumi up` must be in one)."""
    ssh_port: Port = 22
    """SSH port of every server (a non-standard port cuts log noise; the security group follows it)."""
    extra_ssh_ports: list[Port] = Field(default_factory=list)
    """Ports sshd also listens on, opened like sshPort: how sshPort moves on running servers, in two deployments (add the new port here; then make it sshPort and remove it here)."""
    deploy_user: Annotated[Name, AfterValidator(_deploy_user)] = "deploy"
    """Non-root user created by cloud-init; Docker is driven over SSH as this user."""

    def authorized_keys(self) -> list[str]:
        """Every key the deploy user accepts: the administrators', then CI's."""
        return [*self.admin_ssh_keys, *([self.ci_ssh_key] if self.ci_ssh_key else [])]


class DnsRecord(_Model):
    name: str = Field(min_length=1)
    """Record name relative to the domain ('@' for the apex)."""
    type: Literal["A", "AAAA", "CNAME", "MX", "TXT", "CAA", "SRV", "NS"]
    """Record type."""
    values: list[str] = Field(min_length=1)
    """Record values, exactly as the DNS provider expects them."""
    ttl: int | None = Field(default=None, ge=60, le=604800)
    """TTL in seconds (default: dns.ttl)."""


class Dns(_Model):
    provider: Literal["gandi", "ovh", "none"] = "none"
    """Who serves the zone: gandi (LiveDNS), ovh, or none (target local: *.localhost needs no DNS)."""
    zone: str | None = None
    """The DNS zone the records go in (default: domain), e.g. example.org for domain staging.example.org."""
    ttl: int = Field(default=300, ge=60, le=604800)
    """Default TTL of the records socle creates."""
    records: list[DnsRecord] = Field(default_factory=list)
    """Extra records (MX, TXT, CAA ...) besides the app records socle derives."""
    caa_issuers: list[CaaIssuer] = Field(default_factory=lambda: ["letsencrypt.org"])
    """Certificate authorities allowed by the CAA record at the domain (empty: no CAA record, refused by the policy pack)."""


def _spf_domain(value: str) -> str:
    """A domain an SPF include: names (underscores allowed: _spf.google.com)."""
    labels = value.split(".")
    if len(value) > 253 or len(labels) < 2 or not all(re.fullmatch(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?", lbl)
                                                      for lbl in labels):
        raise ValueError(f"'{value}' is not a domain for an SPF include; write it in lower case, e.g. _spf.example.net")
    return value


class Dmarc(_Model):
    policy: Literal["none", "quarantine", "reject"] = "quarantine"
    """What receivers do with mail that fails SPF and DKIM alignment: start with none or quarantine, then reject."""
    report_to: Email | None = None
    """Where receivers send aggregate reports (rua), e.g. dmarc@example.org."""


class Mail(_Model):
    """Mail for the stack's domain, received and sent by a server of the stack: the mail server
    (docker-mailserver, its ports opened on that server only, the proxy's certificate), the DNS
    records it needs (MX, SPF, DKIM, DMARC) and the reverse DNS, the DKIM key made and kept secret."""

    server: Name
    """The server that receives and sends the mail (its public address gets the MX host's A record)."""
    hostname: str | None = None
    """The mail host's name, inside domain (default: mail.<domain>); the MX record points at it."""
    dkim_selector: str = Field(default="socle", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    """DKIM selector: the key is published at <selector>._domainkey.<domain>. Change it to rotate the key (the old key and record go)."""
    spf_include: list[Annotated[str, AfterValidator(_spf_domain)]] = Field(default_factory=list)
    """Other senders for the domain (include: mechanisms), e.g. a newsletter service's SPF domain."""
    dmarc: Dmarc = Field(default_factory=Dmarc)
    """The DMARC policy."""
    image: Image = "ghcr.io/docker-mailserver/docker-mailserver:15.1.0"
    """The mail server: docker-mailserver (Postfix, Dovecot IMAP, OpenDKIM, OpenDMARC, SPF checks), pinned; it gets ports 25, 465, 587 and 993 of its server."""
    postmaster: Email | None = None
    """Who gets bounces and the mail server's reports (default: postmaster@<domain>)."""
    aliases: dict[Email, list[Email]] = Field(default_factory=dict)
    """Addresses of the domain that forward to others: a contact address, or a small list (`listes@example.org: [a@example.org, b@example.net]`). Declared here, they replace any made by hand in the container."""
    max_message_mb: int = Field(default=25, ge=1, le=100)
    """The largest message accepted, in MB (attachments grow a third when encoded)."""
    reverse_dns: bool = True
    """Point the mail server's public IPv4 address back at the mail host (OVH IP reverse): many receivers refuse mail from an address without it."""


class Proxy(_Model):
    acme_email: Email | None = None
    """Contact address for Let's Encrypt (required on target ovh)."""
    image: Image = "caddy:2.8-alpine"
    """Caddy image of the reverse proxy."""
    hsts_max_age: int = Field(default=31536000, ge=86400, le=63072000)
    """Strict-Transport-Security max-age in seconds (at least one day)."""
    http_port: Port = 80
    """Host port of the HTTP listener (it only redirects to HTTPS)."""
    https_port: Port = 443
    """Host port of the HTTPS listener."""


class Network(_Model):
    cidr: Annotated[str, AfterValidator(_cidr), AfterValidator(_private_cidr)] = "10.42.0.0/16"
    """Target ovh: the stack's private network (OVH vRack), every server attached. An RFC 1918 IPv4 block from /16 to /24; the servers, the load balancers and the shared file storage take their private addresses in it."""
    vlan_id: int | None = Field(default=None, ge=2, le=4000)
    """vRack VLAN of the network (default: derived from the project and stack names). The same VLAN in both regions joins them into one network; two stacks must never share one (their networks would join)."""


class LoadBalancing(_Model):
    flavor: Literal["small", "medium", "large", "xl"] = "small"
    """OVH Public Cloud load balancer size, in front of every app that runs on several servers."""
    shared_storage_gb: int = Field(default=150, ge=150, le=10240)
    """Size of the OVH File Storage (NFS) share the proxies of load-balanced servers keep their certificates in (150 GB is OVH's minimum)."""


class AutoBackup(_Model):
    cron: Cron = "0 2 * * *"
    """When OVH snapshots the instance (cron, UTC whatever timeZone says: OVH's API takes UTC)."""
    rotation: int = Field(default=7, ge=1, le=100)
    """How many instance snapshots OVH keeps."""


class Server(_Model):
    role: Literal["app", "backup"] = "app"
    """app: runs containers behind the HTTPS proxy; backup: an isolated SSH-only backup host."""
    flavor: str | None = None
    """OVH instance flavor, e.g. b3-8 (required on target ovh)."""
    image: str = "Debian 12"
    """OVH image name; socle's cloud-init targets Debian 12."""
    disk_gb: int | None = Field(default=None, ge=10, le=12000)
    """Size in GB of the server's data volume: OVH block storage, apart from the root disk, holding Docker's data (the apps' volumes) or the backup repositories; it survives a rebuild and a destroy. Required on target ovh for a server that holds state."""
    auto_backup: AutoBackup | None = None
    """OVH instance snapshots; set it on servers holding state."""
    rebuild: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    """Set or change it (e.g. a date, '2026-11-25') to rebuild this server from a fresh image on purpose: the only edit that replaces an instance (its root disk is wiped; the plan says so). Nothing else does: user data and image are kept from creation, host setup applies the rest in place."""


class Database(_Model):
    engine: Literal["postgresql", "mysql"]
    """Database engine."""
    version: str = Field(pattern=r"^[0-9]+(\.[0-9]+)?$")
    """Major engine version, e.g. '16' for PostgreSQL or '8' for MySQL."""
    hosting: Literal["managed", "container"] | None = None
    """managed: an OVH managed cluster; container: a container on `server`. Default: managed on ovh, container on local."""
    server: Name | None = None
    """Server that runs the container (hosting container); default: the only app server."""
    plan: Literal["essential", "business", "enterprise"] = "essential"
    """OVH plan; business and enterprise are multi-node."""
    flavor: str = "db1-4"
    """OVH database flavor."""
    nodes: int = Field(default=1, ge=1, le=3)
    """Number of nodes of the managed cluster."""
    disk_gb: int | None = Field(default=None, ge=10, le=12000)
    """Disk size of the managed cluster in GB (default: the flavor's)."""
    backup_time: TimeOfDay = "02:00:00"
    """When OVH takes the daily backup (HH:MM:SS, UTC)."""
    maintenance_time: TimeOfDay = "04:00:00"
    """When OVH may start maintenance (minor upgrades) every day (HH:MM:SS, UTC): away from backupTime and backup.schedule."""
    deletion_protection: bool = False
    """Refuse to delete the cluster (set it in prod)."""
    databases: list[Name] = Field(min_length=1)
    """Logical databases; each gets an owner user of the same name."""


class LifecycleRule(_Model):
    prefix: str = ""
    """Objects whose key starts with this prefix."""
    expire_days: int | None = Field(default=None, ge=1, le=36500)
    """Delete current versions after this many days."""
    noncurrent_expire_days: int | None = Field(default=None, ge=1, le=36500)
    """Delete non-current (overwritten/deleted) versions after this many days."""


class ObjectLock(_Model):
    mode: Literal["compliance", "governance"] = "compliance"
    """compliance: nobody, not even the owner, can shorten the lock."""
    days: int = Field(ge=1, le=36500)
    """Default retention of every new object version."""


class Bucket(_Model):
    versioning: bool = True
    """Keep every version of every object."""
    encryption: bool = True
    """Server-side encryption (AES256)."""
    object_lock: ObjectLock | None = None
    """Write-once retention; cannot be added or removed later without replacing the bucket."""
    lifecycle: list[LifecycleRule] = Field(default_factory=list)
    """Expiry rules."""
    region: str | None = None
    """OVH region (default: ovh.region)."""
    server: Name | None = None
    """Server that runs the S3-compatible container on target local; default: the only app server."""


class Cache(_Model):
    engine: Literal["redis", "valkey"] = "redis"
    """Cache engine (a container beside the apps)."""
    version: str = Field(default="7", pattern=r"^[0-9]+(\.[0-9]+){0,2}$")
    """Major (or major.minor) version: the image is redis:VERSION-alpine / valkey/valkey:VERSION-alpine."""
    server: Name | None = None
    """Server that runs it; default: the only app server."""
    max_memory_mb: int = Field(default=256, ge=16, le=1048576)
    """Memory limit: beyond it keys are evicted LRU, or (persistent) writes are refused."""
    persistent: bool = False
    """Holds data that must survive (sessions): an append-only file on a backed-up volume, and no key ever evicted (writes fail when maxMemoryMb is reached); false: a pure cache, nothing on disk."""


class GeneratedSecret(_Model):
    generate: int = Field(ge=16, le=128)
    """Length of a random secret generated by pulumi-random and kept in the state, encrypted."""
    shared: Name | None = None
    """Apps giving the same `shared` name get the same value (e.g. one SECRET_KEY for web and worker)."""


class ConfigSecret(_Model):
    config: Annotated[str, AfterValidator(_secret_name)]
    """Key inside `socle:secrets`, set with `pulumi config set --secret --path 'socle:secrets.KEY'`."""


class AlertEmail(_Model):
    to: list[Email] = Field(min_length=1)
    """Who gets the alerts."""
    sender: Email = Field(alias="from")
    """The From address of the alerts."""
    smarthost: Annotated[str, Field(pattern=r"^[a-z0-9.-]+:[0-9]{1,5}$")]
    """The SMTP server that sends them, host:port (587: STARTTLS, required)."""
    username: str | None = None
    """SMTP login (default: the From address)."""
    password: ConfigSecret
    """SMTP password: {config: NAME}, a key of socle:secrets."""


class DiskThresholds(_Model):
    warning_percent: int = Field(default=80, ge=50, le=98)
    """A filesystem this full warns (OC-Pizza's morning check)."""
    critical_percent: int = Field(default=90, ge=60, le=99)
    """A filesystem this full is critical."""
    full_in_hours: int = Field(default=24, ge=1, le=168)
    """Warn when the last six hours' trend fills a filesystem within this many hours."""


class Monitoring(_Model):
    """Prometheus, Alertmanager and the blackbox exporter on one server, node_exporter on every
    server (components/render/monitoring.py): alerts that wake someone, by e-mail and/or a chat
    webhook, and a dead-man heartbeat so that a dead monitoring server is noticed too."""

    server: Name
    """The server that watches the others (the backup server is a good choice: another region, and it outlives an app server's failure). It probes every public hostname over HTTPS from there."""
    email: AlertEmail | None = None
    """Alerts by e-mail."""
    webhook_url: Union[HttpsUrl, ConfigSecret, None] = None
    """Alerts to a Slack-compatible incoming webhook (Mattermost, Rocket.Chat, Slack; Matrix through a hookshot bridge): {config: NAME} keeps its token secret."""
    heartbeat_url: Union[HttpsUrl, ConfigSecret, None] = None
    """A dead-man URL (Healthchecks-style) that Alertmanager calls every minute while the monitoring works: set up the service to alert when the calls stop."""
    latency_ms: int = Field(default=400, ge=50, le=10000)
    """An HTTPS endpoint slower than this (over 10 minutes) alerts (Histologe: < 400 ms)."""
    availability_percent: float = Field(default=99.9, ge=90, le=99.999)
    """The availability objective of every public endpoint; its error budget burning too fast alerts (Histologe: 99.95)."""
    disk: DiskThresholds = Field(default_factory=DiskThresholds)
    """Disk space thresholds."""
    retention_days: int = Field(default=30, ge=7, le=400)
    """How long Prometheus keeps its measurements (at least a week: the slowest burn-rate alert looks three days back)."""
    upgrade_reports: Literal["on-change", "only-on-error", "off"] = "on-change"
    """With `email`: each server's unattended-upgrades mails its report to the alert addresses (on-change: whenever it installs something or fails; only-on-error), through msmtp with the same SMTP login, kept on each server readable by root only. Use an SMTP account for alerts only; off keeps the login on the monitoring server alone."""


def _secret_form(value: Any) -> str | None:
    """Which form a secret is written in: the tag of its model, or None (then one message says
    what a secret looks like, instead of one error per form)."""
    if isinstance(value, dict):
        if "generate" in value and "config" not in value:
            return "generate"
        if "config" in value and "generate" not in value:
            return "config"
    if isinstance(value, (GeneratedSecret, ConfigSecret)):
        return "generate" if isinstance(value, GeneratedSecret) else "config"
    return None


SecretSource = Annotated[
    Union[Annotated[GeneratedSecret, Tag("generate")], Annotated[ConfigSecret, Tag("config")]],
    Discriminator(_secret_form, custom_error_type="secret_form",
                  custom_error_message="a secret is written {generate: LENGTH} or {config: NAME}, one of the two"),
]


class DatabaseUse(_Model):
    use: Annotated[str, AfterValidator(_database_use)]
    """'<database>.<logical database>', e.g. main.nextcloud."""
    env: dict[Literal["url", "host", "port", "address", "name", "user", "password"], EnvName] = Field(
        default_factory=lambda: {"url": "DATABASE_URL"}
    )
    """Which connection fields to pass, under which variable names (address: host:port in one, for apps such as Nextcloud that take both in one setting; an OVH managed database listens on a port of its own)."""


class BucketUse(_Model):
    use: Name
    """Bucket name."""
    env: dict[Literal["endpoint", "bucket", "region", "accessKey", "secretKey"], EnvName] = Field(
        default_factory=lambda: {
            "endpoint": "S3_ENDPOINT",
            "bucket": "S3_BUCKET",
            "region": "S3_REGION",
            "accessKey": "S3_ACCESS_KEY",
            "secretKey": "S3_SECRET_KEY",
        }
    )
    """Which fields to pass, under which variable names."""


class AppPort(_Model):
    """A port the app serves to the Internet without the HTTPS proxy (SMTP, Syncthing, a game
    server): published on its server's public address and opened in its security group."""

    port: Port
    """Host port, on the server's public address (IPv4 and IPv6)."""
    protocol: Literal["tcp", "udp"] = "tcp"
    """tcp or udp (a service on both lists the port twice)."""
    container_port: Port | None = None
    """Port inside the container (default: the same as port)."""
    reason: str = Field(min_length=3, max_length=120, pattern=r"^[^\n]+$")
    """Why it bypasses the HTTPS proxy, e.g. "Syncthing sync protocol"; the policy pack's allowedPorts entry for this container gives the same port with its own reason."""

    def key(self) -> str:
        return f"{self.port}/{self.protocol}"


_FORBIDDEN_FILE_ROOTS = ("/proc", "/sys", "/dev")


def _container_file_path(value: str) -> str:
    parts = value.split("/")
    if (not value.startswith("/") or value.endswith("/") or ".." in parts or "" in parts[1:]
            or len(value) > 255 or not re.fullmatch(r"[A-Za-z0-9._/@+-]+", value)):
        raise ValueError(f"'{value}' is not an absolute file path in the container (letters, digits, . _ - @ + and "
                         "/, no .., no trailing /); e.g. /app/config/settings.ini")
    if any(value == r or value.startswith(r + "/") for r in _FORBIDDEN_FILE_ROOTS):
        raise ValueError(f"'{value}' is under {value.split('/')[1] and '/' + value.split('/')[1]}, which the kernel "
                         "provides; choose a path of the app's own")
    return value


class AppFile(_Model):
    """A file put into the app's containers: inline `content`, or `source`, a file of this
    repository. `${VAR}` takes the value of one of the app's environment variables (a secret one
    makes the whole file secret); `$${` writes a literal `${`."""

    content: str | None = Field(default=None, max_length=65536)
    """The file's text (at most 64 KiB)."""
    source: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-][A-Za-z0-9._/-]*$")
    """A file of the repository, relative to its root (e.g. files/shop/settings.ini; at most 64 KiB of UTF-8)."""
    executable: bool = False
    """Mode 0555 instead of 0444 (both owned by root, read-only to the app's user)."""

    @model_validator(mode="after")
    def _one_of(self) -> "AppFile":
        if (self.content is None) == (self.source is None):
            raise ValueError("give either content (the text itself) or source (a file of this repository), not both")
        return self


class CacheUse(_Model):
    use: Name
    """Cache name."""
    env: dict[Literal["url", "host", "port", "password"], EnvName] = Field(
        default_factory=lambda: {"url": "REDIS_URL"}
    )
    """Which fields to pass, under which variable names."""


class Volume(_Model):
    path: Annotated[str, AfterValidator(_container_path)]
    """Mount path inside the container."""
    stateful: bool = True
    """Holds data that must be backed up (uploads, app data)."""
    include: list[str] = Field(default_factory=list)
    """Back up only these paths inside the volume (default: all of it), e.g. data/."""
    exclude: list[str] = Field(default_factory=list)
    """Backup exclude patterns (restic syntax), e.g. cache/."""
    backup: bool = True
    """Include it in the server's backup job; false on a stateful volume is refused by the policy pack."""


HookCommand = Annotated[list[Annotated[str, Field(min_length=1, max_length=1000)]], Field(min_length=1, max_length=64)]


class Hooks(_Model):
    """One-off commands run with the app's image, environment, network and volumes, on its first
    server: `before` its containers change (migrations: a failure stops the deployment and the
    running containers stay), `after` they all did (collectstatic, cache warm-up)."""

    before: list[HookCommand] = Field(default_factory=list, max_length=10)
    """Commands (each a list: program and arguments), in order, e.g. [[python, manage.py, migrate, --noinput]]."""
    after: list[HookCommand] = Field(default_factory=list, max_length=10)
    """Commands run once the app's containers run the new version, in order."""
    timeout_minutes: int = Field(default=30, ge=1, le=360)
    """How long each may take before the deployment gives up on it."""


class Healthcheck(_Model):
    test: list[str] = Field(min_length=1)
    """Docker healthcheck, e.g. ["CMD", "curl", "-fsS", "http://localhost/"]."""
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m|h)$")
    """Time between checks."""
    retries: int = Field(default=3, ge=1, le=100)
    """Failures before the container is unhealthy."""
    start_period: str = Field(default="60s", pattern=r"^[0-9]+(ms|s|m|h)$")
    """Grace period after start."""


class AppSite(_Model):
    """One site of a multi-site engine (Le PIC's SPIP sites): its hostname, its own database and
    its own volume (apps.*.sitesPath), backed up like any other."""

    name: Name
    """The site's name: its volume is site-<name>, its database URL SITE_<NAME>_DATABASE_URL."""
    hostname: str
    """Public hostname, inside domain: a DNS record and an HTTPS route to the engine."""
    database: Annotated[str, AfterValidator(_database_use)] | None = None
    """'<database>.<logical database>' of this site alone (each logical database has its own user)."""


def _short_volume(value: Any) -> Any:
    return {"path": value} if isinstance(value, str) else value


class App(_Model):
    image: Image
    """Container image, pinned to a tag (or a digest); `latest` and untagged images are refused."""
    server: Name | None = None
    """Server it runs on (or `servers`)."""
    servers: list[Name] = Field(default_factory=list)
    """Target ovh: the servers it runs on, the same containers on each; with a hostname, a load balancer spreads its traffic over them. The app must be stateless (no stateful volume): files go to a bucket or the database, sessions to a persistent cache or the database."""
    command: list[str] | None = None
    """Overrides the image's command."""
    hostname: str | None = None
    """Public hostname, inside `domain`; omit for workers with no HTTP."""
    port: Port | None = None
    """Port the app listens on inside its container (required with hostname)."""
    env: dict[EnvName, str] = Field(default_factory=dict)
    """Plain, non-secret environment."""
    secrets: dict[EnvName, SecretSource] = Field(default_factory=dict)
    """Secret environment: {generate: LENGTH} or {config: KEY-in-socle:secrets}; never plain text."""
    volumes: dict[Name, Annotated[Volume, BeforeValidator(_short_volume)]] = Field(default_factory=dict)
    """Named volumes: NAME: /path, or NAME: {path, stateful, exclude}."""
    databases: list[DatabaseUse] = Field(default_factory=list)
    """Logical databases it connects to."""
    buckets: list[BucketUse] = Field(default_factory=list)
    """Buckets it uses."""
    caches: list[CacheUse] = Field(default_factory=list)
    """Caches it uses."""
    hooks: Hooks = Field(default_factory=Hooks)
    """Deployment hooks: one-off containers before or after the app's containers change."""
    healthcheck: Healthcheck | None = None
    """Container healthcheck."""
    health_path: str = Field(default="/", pattern=r"^/[A-Za-z0-9._~/?=&%-]*$")
    """On several servers: the path the load balancer requests (HTTPS, through each server's proxy) to tell whether that server serves the app; any answer below 400 is healthy."""
    restart: Literal["unless-stopped", "always", "on-failure"] = "unless-stopped"
    """Restart policy."""
    maintenance: bool = False
    """Serve a 503 maintenance page instead of the app (the site on/off switch)."""
    files: dict[Annotated[str, AfterValidator(_container_file_path)], AppFile] = Field(default_factory=dict)
    """Files in its containers, by absolute path (configuration directories, Postfix maps…): root-owned and read-only, never written on the host; a file that refers to a secret is a Pulumi secret. A changed file replaces the containers, as a new image does."""
    sites: list[AppSite] = Field(default_factory=list, max_length=2000)
    """Many sites on this one engine: each a hostname (DNS record, HTTPS route), and its own volume and database; 200 sites are 200 short entries, not 200 apps."""
    sites_path: Annotated[str, AfterValidator(_container_path)] | None = None
    """Where each site's own volume is mounted in the engine: <sitesPath>/<site name> (omit for sites without files)."""
    ports: list[AppPort] = Field(default_factory=list)
    """Ports served to the Internet without the HTTPS proxy (TCP or UDP), each with its reason; opened in the security group of the app's server only, and refused by the policy pack unless its allowedPorts lists them for this container."""
    publish: Any = Field(default=None, exclude=True)
    """Replaced by ports: `ports: [{port: 25, protocol: tcp, reason: "SMTP from other mail servers"}]`."""

    @field_validator("publish")
    @classmethod
    def _publish_is_replaced(cls, value: Any) -> None:
        if value is not None:
            examples = ", ".join(f'{{port: {p}, protocol: tcp, reason: "…"}}' for p in
                                 (value if isinstance(value, list) else [value])[:3])
            raise ValueError(f"publish is replaced by ports, which gives each port its protocol and the reason it "
                             f"bypasses the HTTPS proxy: ports: [{examples}]")
        return None
    user: str | None = None
    """Run as this uid[:gid] inside the container."""

    @model_validator(mode="after")
    def _expand_sites(self) -> "App":
        """Each site's volume and database become the app's own (volume site-<name>, variable
        SITE_<NAME>_DATABASE_URL): placement, backups, policy and dumps then treat them as any other."""
        for site in self.sites:
            if self.sites_path:
                self.volumes.setdefault(f"site-{site.name}", Volume(path=f"{self.sites_path}/{site.name}"))
            if site.database:
                var = f"SITE_{site.name.upper().replace('-', '_')}_DATABASE_URL"
                if not any(u.use == site.database and var in u.env.values() for u in self.databases):
                    self.databases.append(DatabaseUse(use=site.database, env={"url": var}))
        return self

    def hostnames(self) -> list[str]:
        """Every hostname it serves: its own and its sites'."""
        return ([self.hostname] if self.hostname else []) + [s.hostname for s in self.sites]

    def env_names(self) -> dict[str, bool]:
        """Every environment variable the app's containers get, and whether it is secret: its env and
        secrets, and what its databases, buckets and caches give it (components/socle_platform.py)."""
        names = {k: False for k in self.env} | {k: True for k in self.secrets}
        for use in self.databases:
            names |= {var: fld in ("password", "url") for fld, var in use.env.items()}
        for use in self.buckets:
            names |= {var: fld in ("accessKey", "secretKey") for fld, var in use.env.items()}
        for use in self.caches:
            names |= {var: fld in ("password", "url") for fld, var in use.env.items()}
        return names

    def hosts(self) -> list[str]:
        """The servers it runs on."""
        return list(self.servers) if self.servers else [self.server] if self.server else []


class Retention(_Model):
    daily: int = Field(default=7, ge=0, le=10000)
    """Keep the last snapshot of this many days."""
    weekly: int = Field(default=4, ge=0, le=10000)
    """... of this many weeks."""
    monthly: int = Field(default=12, ge=0, le=10000)
    """... of this many months."""
    yearly: int = Field(default=0, ge=0, le=100)
    """... of this many years (prod: 5, i.e. 1825 days covered)."""

    def days(self) -> int:
        """How far back the oldest kept snapshot reaches (days); policy.rules.retention_days is its twin."""
        return max(self.daily, 7 * self.weekly, 30 * self.monthly, 365 * self.yearly)


def _host_or_ip(value: str) -> str:
    """A DNS name (lower case) or an IPv4/IPv6 address."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    labels = value.split(".")
    if (len(value) > 253 or len(labels) < 2 or not all(_HOST_LABEL_RE.match(lbl) for lbl in labels)
            or labels[-1].isdigit()):  # 203.0.113 is no name, and ssh would read it as 203.0.0.113
        raise ValueError(f"'{value}' is neither a host name nor an IP address; e.g. backup.example.org or 203.0.113.9")
    return value


def _absolute_dir(value: str) -> str:
    if not re.fullmatch(r"/[A-Za-z0-9._/-]*", value) or ".." in value.split("/"):
        raise ValueError(f"'{value}' is not an absolute directory (letters, digits, . _ - and /, no ..); "
                         "e.g. /srv/backups")
    return value


_HOST_KEY_TYPES = {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"}


def _host_key(value: str) -> str:
    """An SSH host key, `type base64` as in /etc/ssh/ssh_host_ed25519_key.pub, or a line of
    `ssh-keyscan` (`[host]:port type base64`): kept as `type base64`, what known_hosts pins."""
    parts = value.split()
    if len(parts) >= 3 and parts[0] not in _HOST_KEY_TYPES and parts[1] in _HOST_KEY_TYPES:
        parts = parts[1:]  # an ssh-keyscan line: the host part goes, the server's address is in `host`
    if len(parts) < 2 or parts[0] not in _HOST_KEY_TYPES:
        raise ValueError("is not an SSH host key; on the backup host, paste the line of "
                         "/etc/ssh/ssh_host_ed25519_key.pub (it starts with ssh-ed25519), or from your machine "
                         "`ssh-keyscan -p PORT -t ed25519 HOST` after checking its fingerprint with the host's owner")
    _ssh_key(" ".join(parts[:2]))
    return " ".join(parts[:2])


class SftpTarget(_Model):
    """A backup host socle does not create (an existing server with a big disk): restic over SFTP
    with this server's own key, the host's key pinned here (never trusted on first use)."""

    host: Annotated[str, AfterValidator(_host_or_ip)]
    """DNS name or IP address of the backup host."""
    port: Port = 22
    """Its SSH port."""
    user: str = Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    """The account the servers log in as (give it only SFTP: `ForceCommand internal-sftp`)."""
    path: Annotated[str, AfterValidator(_absolute_dir)]
    """Directory on the host, as the account sees it (inside its ChrootDirectory, if any); each server keeps its repository in PATH/<stack's name for the server>, e.g. PATH/socle-prod-web."""
    host_key: Annotated[str, AfterValidator(_host_key)]
    """The host's public SSH key (`ssh-ed25519 AAAA…`), pinned: a host answering with another key gets no backup."""

    @field_validator("host")
    @classmethod
    def _not_v6(cls, value: str) -> str:
        if ":" in value:  # restic's sftp:user@host:/path cannot hold an IPv6 address
            raise ValueError(f"'{value}' is an IPv6 address; give the host's DNS name (or its IPv4 address)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _keyscan_line_of_this_host(cls, data: Any) -> Any:
        """A pasted `ssh-keyscan` line names the host it came from: it must be this one."""
        if isinstance(data, dict) and isinstance(data.get("hostKey"), str):
            parts = data["hostKey"].split()
            if len(parts) >= 3 and parts[0] not in _HOST_KEY_TYPES and not parts[0].startswith("|1|"):
                port = data.get("port", 22)
                expected = {str(data.get("host")), f"[{data.get('host')}]:{port}"} if port == 22 \
                    else {f"[{data.get('host')}]:{port}"}
                if parts[0] not in expected:
                    raise ValueError(f"hostKey is the key of '{parts[0]}', not of {sorted(expected)[-1]}: "
                                     "scan the host and port the servers will use")
        return data


class BackupTargets(_Model):
    bucket: Name | None = None
    """A socle bucket for the restic repository (on ovh: in ovh.backupRegion, with objectLock)."""
    server: Name | None = None
    """A server with role backup: restic over SFTP on access.sshPort, key-only, its own restic user."""
    sftp: SftpTarget | None = None
    """Target ovh: an existing SFTP host (not created by socle), host key pinned; the stack output sftpAuthorizedKeys gives the line to add for each server."""
    local_path: str | None = Field(default=None, pattern=r"^/")
    """Target local only: a repository in a Docker volume mounted at this path in the backup container."""


class Backup(_Model):
    enabled: bool = True
    """Back up every server that holds state (volumes, databases)."""
    schedule: Cron = "0 3 * * *"
    """Nightly backup: dumps, then a restic snapshot, then forget --prune (cron, in timeZone: UTC unless set)."""
    retention: Retention = Field(default_factory=Retention)
    """restic forget --keep-* policy."""
    check_schedule: Cron = "30 5 * * 0"
    """Weekly `restic check --read-data-subset`."""
    check_subset: str = Field(default="5%", pattern=r"^([1-9][0-9]?(\.[0-9]+)?%|[0-9]+/[0-9]+)$")
    """Share of the data read back by each check, e.g. 5% or 1/10."""
    drill_schedule: Cron = "0 6 1 * *"
    """Monthly restore drill: restore the latest snapshot, load the dumps, compare with the source."""
    prune_schedule: Cron = "0 7 * * *"
    """On a backup server (targets.server): when it applies the retention to every client's repository; the clients can only append."""
    ping_url: Union[HttpsUrl, ConfigSecret, None] = None
    """Dead-man URL of the nightly run (Healthchecks-style: pinged on success, URL/fail on any failure); {config: KEY} keeps it secret. Required by the policy pack in staging and prod."""
    check_ping_url: Union[HttpsUrl, ConfigSecret, None] = None
    """Dead-man URL of the weekly check, a check of its own (never the run's: a weekly success must not hide stopped nightly runs)."""
    drill_ping_url: Union[HttpsUrl, ConfigSecret, None] = None
    """Dead-man URL of the monthly restore drill."""
    max_age_hours: int = Field(default=36, ge=2, le=8760)
    """The weekly check fails when the newest snapshot is older than this (a sound repository nobody writes to any more)."""
    targets: BackupTargets = Field(default_factory=BackupTargets)
    """Where the restic repositories live (one or both)."""


class StackConfig(_Model):
    """The whole platform of one organisation for one stack."""

    domain: Annotated[str, AfterValidator(_domain)]
    """DNS domain every hostname lives under, e.g. example.org (dev: socle.localhost)."""
    target: Literal["local", "ovh"] = "local"
    """local: everything on the local Docker engine; ovh: OVH Public Cloud."""
    time_zone: Annotated[str, AfterValidator(_time_zone)] = "UTC"
    """Time zone of the schedules servers run (backup.schedule, checkSchedule, drillSchedule, pruneSchedule), e.g. Europe/Paris; systemd follows its daylight-saving changes. OVH-side times (databases.*.backupTime and maintenanceTime, servers.*.autoBackup.cron) stay UTC: OVH's API takes UTC."""
    protect: bool = False
    """Pulumi `protect` on servers, databases and buckets: a `pulumi destroy` must be unlocked by hand."""
    credentials_rotation: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    """Change it (e.g. to a timestamp) to have OVH generate new passwords for every managed database user, in place; scripts/restore-ransomware.sh sets it."""
    ovh: OvhSettings | None = None
    """OVH settings (required on target ovh)."""
    network: Network = Field(default_factory=Network)
    """Target ovh: the private network every server is attached to."""
    load_balancing: LoadBalancing = Field(default_factory=LoadBalancing)
    """Target ovh: the load balancers in front of apps on several servers."""
    access: Access = Field(default_factory=Access)
    """Administrator access."""
    dns: Dns = Field(default_factory=Dns)
    """DNS zone."""
    maintenance: bool = False
    """The whole platform's on/off switch: every hostname answers 503 with the maintenance page (apps.*.maintenance does it for one app); containers, databases, backups and monitoring keep running. Toggle with `python -m tools.maintenance on|off`."""
    mail: Mail | None = None
    """Target ovh: mail for the domain; the DNS records it needs (MX, SPF, DKIM, DMARC)."""
    monitoring: Monitoring | None = None
    """Target ovh: monitoring and alerting (Prometheus, Alertmanager, blackbox and node exporters)."""
    proxy: Proxy = Field(default_factory=Proxy)
    """HTTPS reverse proxy."""
    servers: dict[Name, Server] = Field(min_length=1)
    """Servers by name."""
    databases: dict[Name, Database] = Field(default_factory=dict)
    """Databases by name."""
    buckets: dict[Name, Bucket] = Field(default_factory=dict)
    """Object-storage buckets by name."""
    caches: dict[Name, Cache] = Field(default_factory=dict)
    """Caches (Redis/Valkey containers) by name."""
    apps: dict[Name, App] = Field(default_factory=dict)
    """Apps (containers) by name."""
    backup: Backup = Field(default_factory=Backup)
    """Backups of every server holding state."""

    @model_validator(mode="after")
    def _place_unplaced_apps(self) -> "StackConfig":
        """An app that names no server runs on the only app server (with several, the cross checks
        ask which)."""
        only = self.app_servers()
        if len(only) == 1:
            for name, app in list(self.apps.items()):
                if not app.server and not app.servers:
                    self.apps[name] = app.model_copy(update={"server": only[0]})
        return self

    # ------------------------------------------------------------------ derived, used by components

    def dns_zone(self) -> str:
        return self.dns.zone or self.domain

    def mail_host(self) -> str | None:
        """socle:mail's host name (default mail.<domain>), or None without mail."""
        return (self.mail.hostname or f"mail.{self.domain}") if self.mail is not None else None

    def backup_bucket(self) -> str | None:
        return self.backup.targets.bucket if self.backup.enabled else None

    def app_servers(self) -> list[str]:
        return [n for n, s in self.servers.items() if s.role == "app"]

    def database_hosting(self, name: str) -> str:
        db = self.databases[name]
        return db.hosting or ("managed" if self.target == "ovh" else "container")

    def host_of(self, section: str, name: str) -> str:
        """Server running a container-hosted database, bucket (local) or cache."""
        item = getattr(self, section)[name]
        return item.server or self.app_servers()[0]

    def balanced_sets(self) -> list[tuple[str, ...]]:
        """Each distinct set of servers (two or more) that serves a hostname: one load balancer each."""
        return sorted({tuple(sorted(a.hosts())) for a in self.apps.values() if a.hostnames() and len(a.hosts()) > 1})

    def dumping_server(self, name: str) -> str:
        """The server whose backup job dumps database `name`: the one that runs it as a container,
        else the first server of an app using it (the first app server when none does)."""
        if self.database_hosting(name) == "container":
            return self.host_of("databases", name)
        return (self.servers_using("databases", name) or self.app_servers())[0]

    def backed_up_volumes(self) -> list[tuple[str, str, str, Any]]:
        """(server, owner, volume, its Volume spec or None) for every Docker volume a backup job
        keeps, in the jobs' order: the apps' stateful volumes not excluded from backups, the mail
        server's (mailboxes, queue and state, accounts), each persistent cache's append-only file.
        The owner is the container's name: the volume is <project>-<stack>-<owner>-<volume>."""
        from .render.mail import MAIL_APP, MAIL_VOLUMES

        out: list[tuple[str, str, str, Any]] = []
        for aname, app in self.apps.items():
            # (a stateful volume is refused on an app on several servers: one host here)
            out += [(app.hosts()[0], aname, v, spec) for v, spec in app.volumes.items() if spec.stateful and spec.backup]
        if self.mail is not None:
            out += [(self.mail.server, MAIL_APP, v, None) for v in MAIL_VOLUMES]
        out += [(self.host_of("caches", c), c, "data", None) for c, cache in self.caches.items() if cache.persistent]
        return out

    def servers_using(self, section: str, name: str) -> list[str]:
        """Servers running an app that uses a database / bucket / cache, sorted."""
        return sorted({s for a in self.users_of(section, name) for s in self.apps[a].hosts()})

    def users_of(self, section: str, name: str) -> list[str]:
        """Apps using a database / bucket / cache, sorted."""
        out = []
        for app_name, app in self.apps.items():
            for use in getattr(app, section):
                if use.use.split(".")[0] == name:
                    out.append(app_name)
        return sorted(set(out))


# ---------------------------------------------------------------------------- loading


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith("function-"))


_TYPE_ERRORS = ("string_type", "int_type", "int_parsing", "bool_type", "bool_parsing", "literal_error",
                "dict_type", "list_type", "model_type", "model_attributes_type", "float_type", "enum")


def _all_keys(model=None, seen=None) -> set[str]:
    """Every key (camelCase) the config model knows, at any depth: the candidates of "did you mean"."""
    import typing

    model = model or StackConfig
    seen = set() if seen is None else seen
    if model in seen:
        return set()
    seen.add(model)
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(field.alias or name)
        stack = [field.annotation]
        while stack:
            t = stack.pop()
            if isinstance(t, type) and issubclass(t, BaseModel):
                keys |= _all_keys(t, seen)
            stack.extend(typing.get_args(t))
    return keys


def _hint_for(e: dict) -> str:
    """Why a value of the wrong type was probably written so: YAML's implicit typing."""
    value = e.get("input")
    if isinstance(value, bool) and e["type"] in ("string_type", "literal_error"):
        return ("; YAML 1.1 reads yes/no/on/off as true/false: write the value in quotes, e.g. 'no'")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and e["type"] in ("string_type", "literal_error"):
        return f"; write it in quotes: '{value}'"
    return ""


def _pydantic_issues(err: ValidationError) -> list[tuple[str, str]]:
    import difflib

    out = []
    errors = err.errors(include_url=False)
    # A union (a secret's two forms, a URL or {config: NAME}) reports one error per member; where
    # one member gave a reason, the others' "wrong type" errors are noise: one problem, one line.
    def clean(loc):
        if len(loc) > 4 and loc[0] == "apps" and loc[2] == "secrets" and loc[4] in ("generate", "config"):
            loc = loc[:4] + loc[5:]  # the tagged union's tag: apps.A.secrets.V.<tag>.field
        return _loc(tuple(p for p in loc if p not in ("GeneratedSecret", "ConfigSecret")))

    reasons = {clean(e["loc"]) for e in errors if e["type"] not in _TYPE_ERRORS}
    for e in errors:
        path = clean(e["loc"])
        e = {**e, "loc": tuple(path.split("."))}
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] in _TYPE_ERRORS and path in reasons and e["type"] != "extra_forbidden":
            continue
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            close = difflib.get_close_matches(key, sorted(_all_keys()), n=1, cutoff=0.7)
            msg = (f"unknown key '{key}'" + (f"; did you mean '{close[0]}'?" if close else "")
                   + " (the README's config reference lists every key)")
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"] == "secret_form" and isinstance(e.get("input"), dict):
            msg = (f"{msg}, not {json.dumps(e['input'])}: generate makes a random value of that length, config "
                   "reads one you stored with `pulumi config set --secret --path 'socle:secrets.NAME' VALUE`")
        elif e["type"] in ("model_type", "model_attributes_type", "secret_form") and _is_secret_path(e["loc"]):
            msg = (
                "a secret must not be written in plain text; use {generate: LENGTH} or store it with "
                "`pulumi config set --secret --path 'socle:secrets.NAME' VALUE` and write {config: NAME}"
            )
        elif "input" in e and e["type"] not in ("value_error",) and not isinstance(e["input"], dict):
            msg = f"{msg} (got {json.dumps(e['input'], default=str)}){_hint_for(e)}"
        out.append((path, msg))
    seen, unique = set(), []
    for item in out:
        if item not in seen:
            seen.add(item)
            unique.append(item)
    return unique


_FILE_CONTENT = re.compile(r"^apps\.[^.]+\.files\..+\.content$")


def _control_characters(values: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string of the stack config ends up in a rendered file (Caddyfile, authorized_keys,
    systemd units, environment files, restic's exclude lists): a newline or another control
    character there would start a new directive, key or entry. None is ever needed, so all are refused."""
    out = []
    if isinstance(values, dict):
        for k, v in values.items():
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and re.search(r"[\x00-\x1f\x7f]", k):
                out.append((sub, f"the key {json.dumps(k)} holds a control character; retype it"))
            out += _control_characters(v, sub)
    elif isinstance(values, list):
        for i, v in enumerate(values):
            out += _control_characters(v, f"{path}.{i}")
    elif isinstance(values, str) and _FILE_CONTENT.match(path):
        # A file's own text (apps.*.files.*.content) is lines by nature: it goes into that file only.
        if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", values):
            out.append((path, "holds a control character other than newline and tab; retype it"))
    elif isinstance(values, str) and re.search(r"[\x00-\x1f\x7f]", values):
        what = "a newline" if "\n" in values or "\r" in values else ("a tab" if "\t" in values else "a control character")
        out.append((path, f"{json.dumps(values)} holds {what}, which would start a new line in the file it is "
                          "written to (a second key, directive or URL); keep the value on one line"))
    return out


def _is_secret_path(loc: tuple) -> bool:
    return len(loc) >= 3 and loc[0] == "apps" and loc[2] == "secrets"


def load(values: dict[str, Any], secret_keys: set[str] | frozenset = frozenset()) -> tuple[StackConfig, dict]:
    """Build the model from the `socle:*` config values (key without namespace -> value).

    `secret_keys` names the keys Pulumi holds as secrets. Returns the model and the `secrets` map
    (values referenced by {config: KEY}), which must itself be a secret config key.
    """
    values = dict(values)
    secrets = values.pop("secrets", None) or {}
    issues: list[tuple[str, str]] = []
    if secrets and "secrets" not in secret_keys:
        issues.append(
            ("secrets", "holds plain text; set each entry with `pulumi config set --secret --path 'socle:secrets.NAME'`")
        )
    if not isinstance(secrets, dict):
        issues.append(("secrets", "must be a map of NAME: VALUE"))
        secrets = {}
    control = _control_characters(values)
    if control:  # reported alone: the value's own validator would only repeat it less clearly
        raise ConfigError(issues + control)
    try:
        cfg = StackConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError(issues + _pydantic_issues(err)) from None
    from .checks import cross_check

    issues += cross_check(cfg)
    refs = [(f"apps.{n}.secrets.{v}.config", s_) for n, a in cfg.apps.items() for v, s_ in a.secrets.items()]
    refs += [(f"backup.{k}.config", getattr(cfg.backup, f)) for k, f in
             (("pingUrl", "ping_url"), ("checkPingUrl", "check_ping_url"), ("drillPingUrl", "drill_ping_url"))]
    if cfg.monitoring is not None:
        m = cfg.monitoring
        refs += [("monitoring.webhookUrl.config", m.webhook_url), ("monitoring.heartbeatUrl.config", m.heartbeat_url),
                 ("monitoring.email.password.config", m.email.password if m.email else None)]
    for path, src in refs:
        if isinstance(src, ConfigSecret) and src.config not in secrets:
            issues.append((path, f"'{src.config}' is not set in socle:secrets; run "
                                 f"`pulumi config set --secret --path 'socle:secrets.{src.config}' VALUE`"))
    if cfg.monitoring is not None:  # the stored URLs, judged now rather than on the server (never shown)
        from .render.monitoring import ReceiverError, check_https_url as receiver_url

        for key, src in (("webhookUrl", cfg.monitoring.webhook_url), ("heartbeatUrl", cfg.monitoring.heartbeat_url)):
            if isinstance(src, ConfigSecret) and isinstance(secrets.get(src.config), str):
                try:
                    receiver_url(secrets[src.config], key)
                except ReceiverError as err:
                    issues.append((f"monitoring.{key}.config", str(err).split(": ", 1)[1]))
        e = cfg.monitoring.email
        if e is not None and any(c in str(secrets.get(e.password.config, "")) for c in "\n\r\0"):
            issues.append(("monitoring.email.password.config", "the SMTP password stored in socle:secrets holds a "
                           "line break: no mail client's configuration can carry it (not shown: it is a secret)"))
    if issues:
        raise ConfigError(issues)
    return cfg, secrets


def decode(raw: Any) -> Any:
    """Pulumi passes structured config values as JSON strings; plain strings stay strings."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw
