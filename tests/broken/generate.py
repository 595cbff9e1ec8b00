"""Broken stack configs: each is the current stack file with one mistake, and the policy verdict it
must produce. The tests derive them at test time from whatever the stack files hold (so adding an
app needs nothing here); `python -m tests.broken.generate` writes them to tests/broken/*.yaml
(not tracked) to look at or to plan by hand.

Every rule that a stack file can break has a case here. Some cannot be broken from config and are
covered by crafted resources in tests/test_policy_rules.py instead: by construction,
proxy-serves-https-only's redirect/TLS/contact checks (the Caddyfile renderer always writes them)
and load-balancer-listeners-https (socle's load balancers always pass 80/443 to the proxies,
tests/test_scale_out.py); because the config
validation refuses the mistake first (exit 2, tests/corpus/cases.yaml), backup-server-offsite,
backup-bucket-immutable-offsite's region check, database-backups-offsite's region check and
ssh-from-admin-networks-only. The rules stay, for resources that code rather than config builds.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _set(path, value):
    """Set `path` (dotted; or a function of the stack values giving it) to `value`."""
    def patch(c):
        *parents, last = (path(c) if callable(path) else path).split(".")
        node = c
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(last)
        else:
            node[last] = value
    return patch


def _append(path: str, value):
    def patch(c):
        *parents, last = path.split(".")
        node = c
        for p in parents:
            node = node[p]
        node.setdefault(last, []).append(value)
    return patch


DELETE = object()


def _as_container(db: str, server: str):
    """The database as the review profile has it: a container on `server`, its logical databases kept."""
    def patch(c):
        d = c["databases"][db]
        c["databases"][db] = {"engine": d["engine"], "version": d["version"], "hosting": "container",
                              "server": server, "databases": d["databases"]}
    return patch


# Expected messages that depend on what the stack file holds are computed from it (the values of
# its socle: keys), so that adding an app, a database or a server keeps the cases true.

def _hostnames_on(values: dict, server: str) -> list[str]:
    """The hostnames the proxy of `server` serves, in the rule's order (sorted)."""
    return sorted({h for a in values.get("apps", {}).values() if server in (a.get("servers") or [a.get("server")])
                   for h in [a.get("hostname"), *(s["hostname"] for s in a.get("sites") or [])] if h})


def _stateful(values: dict, stack: str) -> list[tuple[str, str]]:
    """What stateful-resources-protected names in a stack deployed without protect: each server and
    its data volume, each managed database cluster and logical database, each bucket but the
    backups' (object-locked, retained by its lock)."""
    out = []
    for name, srv in values["servers"].items():
        out.append((f"socle-{stack}-{name}", "CloudInstance"))
        if srv.get("diskGb"):
            out.append((f"socle-{stack}-{name}-data", "CloudStorageBlockVolume"))
    for name, db in (values.get("databases") or {}).items():
        if db.get("hosting", "managed") == "managed":
            out += [(f"{name}-cluster", "Database"), *((n, "DatabaseInstance") for n in db["databases"])]
    backups = ((values.get("backup") or {}).get("targets") or {}).get("bucket")
    out += [(f"socle-{stack}-{b}", "Storage") for b in values.get("buckets") or {} if b != backups]
    return out


# What a case changes is chosen in the stack file as it is (the first app with a hostname, the
# first bucket that is not the backups', ...), so that renaming or adding apps, buckets or servers
# keeps the cases true.

def _app(v: dict) -> str:
    return sorted(n for n, a in v["apps"].items() if a.get("hostname"))[0]


def _any_app(v: dict) -> str:
    return sorted(v["apps"])[0]


def _db(v: dict) -> str:
    return sorted(v["databases"])[0]


def _backup_bucket(v: dict) -> str:
    return v["backup"]["targets"]["bucket"]


def _bucket(v: dict) -> str:
    return sorted(b for b in v.get("buckets") or {} if b != _backup_bucket(v))[0]


def _snapshotted(v: dict) -> str:
    return sorted(n for n, s in v["servers"].items() if s.get("autoBackup"))[0]


def _stateful_volume(v: dict) -> tuple[str, str]:
    for name in sorted(v["apps"]):
        for vol, spec in sorted((v["apps"][name].get("volumes") or {}).items()):
            spec = spec if isinstance(spec, dict) else {"path": spec}
            if spec.get("stateful", True) and spec.get("backup", True):
                return name, vol
    raise LookupError("no app has a backed-up stateful volume")


def _served(v: dict) -> list[str]:
    """The servers whose proxy serves a hostname."""
    return sorted({s for a in v["apps"].values() if a.get("hostname") or a.get("sites")
                   for s in (a.get("servers") or [a.get("server")])})


def _jobs(v: dict, stack: str) -> list[str]:
    """The servers with a backup job (tools/dossier.py coverage, the rules of _backup_jobs)."""
    from components.config import load
    from tools.dossier import coverage

    return sorted(coverage(load(v)[0], stack))


def _backup_servers(v: dict) -> list[str]:
    return sorted(n for n, s in v["servers"].items() if s.get("role") == "backup")


def _drop_backup_servers(c: dict) -> None:
    for name in _backup_servers(c):
        del c["servers"][name]


def stack_values(base: str) -> dict:
    doc = yaml.safe_load((ROOT / f"Pulumi.{base}.yaml").read_text())
    return {k.split(":", 1)[1]: v for k, v in doc["config"].items()}


def expected_messages(name: str) -> tuple[str, ...]:
    """The start of each message the case must produce, read from the current stack file."""
    base, _, _, _, message = CASES[name]
    message = message(stack_values(base)) if callable(message) else message
    return message if isinstance(message, tuple) else (message,)

# name: (base stack, what is wrong, patches, policy, start of the expected message — or a tuple of
# them when the mistake shows in several places, e.g. once per hostname)
CASES = {
    "app-publishes-8080": ("prod", "an app container publishes 8080 on the host",
                           [_set(lambda v: f"apps.{_app(v)}.ports", [{"port": 8080, "reason": "the app's admin page"}])],
                           "only-proxy-publishes-ports",
                           lambda v: f"Container 'socle-prod-{_app(v)}' publishes host port 8080"),
    "proxy-on-8080": ("prod", "the proxy publishes 8080 instead of 80", [_set("proxy.httpPort", 8080)],
                      "only-proxy-publishes-ports",
                      lambda v: tuple(f"Reverse proxy 'socle-prod-{s}-proxy' publishes [443, 8080]" for s in _served(v))),
    "hsts-one-day-in-prod": ("prod", "HSTS max-age of one day in prod", [_set("proxy.hstsMaxAge", 86400)],
                             "proxy-serves-https-only",
                             lambda v: tuple(f"Proxy 'socle-prod-{s}-proxy': {h} sends HSTS max-age=86400, below the "
                                             "required 31536000" for s in _served(v) for h in _hostnames_on(v, s))),
    "record-to-plain-http-host": ("prod", "an A record to an address that runs no HTTPS proxy",
                                  [_append("dns.records", {"name": "shop", "type": "A", "values": ["198.51.100.7"]})],
                                  "dns-points-at-tls-terminator", "DNS record shop A points at 198.51.100.7"),
    "no-caa": ("prod", "no CAA record", [_set("dns.caaIssuers", [])], "zone-has-caa",
               "The DNS zone has records but no CAA record"),
    "database-url-without-tls": ("prod", "a hand-written database URL without TLS",
                                 [_set(lambda v: f"apps.{_any_app(v)}.env.LEGACY_DATABASE_URL",
                                       "postgresql://legacy@db.example.net:5432/legacy")],
                                 "database-connections-use-tls",
                                 lambda v: f"Container 'socle-prod-{_any_app(v)}' connects to database host db.example.net "
                                           "without TLS"),
    "no-deletion-protection-in-prod": ("prod", "the prod database can be deleted",
                                       [_set(lambda v: f"databases.{_db(v)}.deletionProtection", False)],
                                       "database-deletion-protection",
                                       lambda v: f"Database 'socle-prod-{_db(v)}' can be deleted"),
    "unversioned-bucket": ("prod", "a bucket without versioning",
                           [_set(lambda v: f"buckets.{_bucket(v)}.versioning", False)],
                           "bucket-versioning", lambda v: f"Bucket 'socle-prod-{_bucket(v)}' is not versioned"),
    "backup-bucket-unlocked": ("prod", "the backup bucket has no object lock",
                               [_set(lambda v: f"buckets.{_backup_bucket(v)}.objectLock", DELETE)],
                               "backup-bucket-immutable-offsite",
                               lambda v: f"Backup bucket 'socle-prod-{_backup_bucket(v)}' has no object lock in compliance mode"),
    "no-protect-in-prod": ("prod", "prod deployed without Pulumi's protect", [_set("protect", False)],
                           "stateful-resources-protected",
                           lambda v: tuple(f"'{n}' ({t}) holds data but is not protected" for n, t in _stateful(v, "prod"))),
    "container-database-in-prod": ("prod", "the review profile's container database in prod",
                                   [lambda c: _as_container(_db(c), _served(c)[0])(c)],
                                   "databases-managed",
                                   lambda v: f"Database 'socle-prod-{_db(v)}' runs as a container on an app server"),
    "retention-30-days-in-prod": ("prod", "backups kept 30 days in prod (minimum 1825)",
                                  [_set("backup.retention", {"daily": 30, "weekly": 0, "monthly": 0, "yearly": 0})],
                                  "stateful-data-backed-up",
                                  lambda v: tuple(f"Backup job of server '{s}' keeps snapshots for 30 days" for s in _jobs(v, "prod"))),
    "volume-left-out-of-backups": ("staging", "a stateful volume excluded from backups",
                                   [lambda c: _set("apps.{}.volumes.{}.backup".format(*_stateful_volume(c)), False)(c)],
                                   "stateful-data-backed-up",
                                   lambda v: "Volume 'socle-staging-{}-{}' holds state but no backup job covers it".format(
                                       *_stateful_volume(v))),
    "backups-not-watched-in-prod": ("prod", "no dead-man URL for the nightly run",
                                    [_set("backup.pingUrl", DELETE)], "backups-are-watched",
                                    lambda v: tuple(f"Backup job of server '{s}' reports run to no dead-man URL"
                                                    for s in _jobs(v, "prod"))),
    "backups-only-on-an-sftp-host": ("prod", "the bucket and the backup server traded for an SFTP host",
                                     [_set("backup.targets", {"sftp": {
                                         "host": "backup.example.org", "port": 4660, "user": "socle",
                                         "path": "/srv/backups",
                                         "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE5lGM2dxmmYaTiHi9/"
                                                    "T5AsDtp2i0EalI5n2SlItHHa7"}}),
                                      _drop_backup_servers],
                                     "backup-has-undeletable-copy",
                                     lambda v: tuple(f"Backup job of server '{s}' writes only to sftp targets"
                                                     for s in _jobs(v, "prod"))),
    "no-instance-backup": ("prod", "a stateful server without instance backups",
                           [_set(lambda v: f"servers.{_snapshotted(v)}.autoBackup", DELETE)],
                           "instance-backups",
                           lambda v: f"Server 'socle-prod-{_snapshotted(v)}' holds state but has no instance backup"),
    "instance-backup-rotation-3-in-prod": ("prod", "3 instance backups kept in prod (minimum 7)",
                                           [_set(lambda v: f"servers.{_snapshotted(v)}.autoBackup.rotation", 3)],
                                           "instance-backups",
                                           lambda v: f"Server 'socle-prod-{_snapshotted(v)}' keeps 3 instance backups"),
}


def render(name: str) -> str:
    base, what, patches, policy, _ = CASES[name]
    cfg = copy.deepcopy(stack_values(base))
    for p in patches:
        p(cfg)
    body = yaml.safe_dump({"config": {f"socle:{k}": v for k, v in cfg.items()}}, sort_keys=False, width=120)
    rules = " and ".join(policy) if isinstance(policy, tuple) else policy
    return (f"# Broken on purpose ({base} with {what}): the policy pack must refuse it with {rules}.\n"
            f"# Generated by tests/broken/generate.py from Pulumi.{base}.yaml; do not edit by hand.\n" + body)


def write(name: str, directory: Path) -> Path:
    """The broken stack file of case `name`, derived from the current stack file, in `directory`."""
    path = directory / f"{name}.yaml"
    path.write_text(render(name))
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tests.broken.generate", description=__doc__,
                                 epilog="Exit status: 0 written, 2 bad arguments.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE, help="where to write them (default: tests/broken/)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in CASES:
        write(name, args.out)
    print(f"wrote {len(CASES)} broken stack files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
