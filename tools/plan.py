"""The offline plan: what a stack would create, whether the policy pack accepts it, and the longest
chain of dependencies a deployment has to walk — with no Pulumi CLI, Docker or credentials.

    python -m tools.plan STACK [--config-file PATH] [--policy-config PATH] [--json | --mermaid]
    python -m tools.plan STACK --diff-from REF [--config-file PATH]

It runs the real program under Pulumi mocks (tools.harness) with Pulumi.STACK.yaml (or the file
given), then the policy rules with policy/config/STACK.json (staging's for a stack without one).
Values that only the cloud knows (IP addresses, generated passwords, IDs) are the mocks' stand-ins.

With --diff-from (a git ref, evaluated with its own code, or a stack file) it prints instead what
would be created, updated in place, replaced, rebuilt or deleted (tools/diff.py).

Exit status: 0 no mandatory violation (with --diff-from: no stateful resource of a protected stack
replaced, rebuilt or deleted without the stack file asking), 1 the opposite, 2 an invalid stack
file, config, REF or command line (each problem as FILE:LINE: socle:KEY: what to do).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tools.harness import ROOT, SECRET_SIG, SECRET_SIG_KEY, Resource, Run, run_program

COMPONENT_LABELS = {
    "socle:compute:Server": "Server",
    "socle:data:Database": "Database",
    "socle:storage:Bucket": "Bucket",
    "socle:containers:ContainerStack": "Containers",
    "socle:dns:DnsRecords": "DNS",
    "socle:backup:BackupJob": "Backup job",
    "socle:network:PrivateNetwork": "Private network",
    "socle:network:LoadBalancer": "Load balancer",
    "socle:storage:SharedStorage": "Shared storage",
}


def mask(v, fingerprint: bool = False):
    """Inputs with every secret replaced by [secret] or, for the diff, by [secret:<digest>]: the
    values are the mocks' stand-ins (never a real secret: the plan has no passphrase), and the digest
    lets two evaluations tell a changed secret input (user data, an env file) from an unchanged one."""
    if isinstance(v, dict):
        if v.get(SECRET_SIG_KEY) == SECRET_SIG:
            if not fingerprint:
                return "[secret]"
            import hashlib

            digest = hashlib.sha256(json.dumps(v.get("value"), sort_keys=True, default=str).encode()).hexdigest()
            return f"[secret:{digest[:16]}]"
        return {k: mask(x, fingerprint) for k, x in v.items()}
    if isinstance(v, list):
        return [mask(x, fingerprint) for x in v]
    return v


def summary(r: Resource) -> str:
    """The settings of a resource a reviewer looks at first."""
    p = mask(r.inputs)
    t = r.type
    labels = {lbl.get("label"): lbl.get("value") for lbl in p.get("labels") or [] if isinstance(lbl, dict)}
    if t.endswith("container:Container"):
        ports = ",".join(f"{int(x.get('external', x['internal']))}" for x in p.get("ports") or [])
        nets = ",".join(n["name"] for n in p.get("networksAdvanced") or [])
        parts = [f"role={labels.get('socle.role', 'app')}", f"name={p.get('name')}"]
        if ports:
            parts.append(f"ports={ports}")
        parts.append(f"network={nets}")
        if p.get("restart"):
            parts.append(f"restart={p['restart']}")
        if p.get("healthcheck"):
            parts.append("healthcheck")
        if p.get("envs") == "[secret]":
            parts.append("env=[secret]")
        return " ".join(parts)
    if t.endswith("remoteImage:RemoteImage"):
        return f"image={p.get('name')}"
    if t.endswith("volume:Volume"):
        return f"name={p.get('name')} stateful={labels.get('socle.stateful')}" + (
            f" backup={labels['socle.backup']}" if "socle.backup" in labels else "")
    if t.endswith("network:Network"):
        return f"name={p.get('name')} driver={p.get('driver')}"
    if t == "pulumi:providers:docker":
        return f"host={p.get('host')}"
    if t.endswith("cloudInstance:CloudInstance"):
        return f"name={p.get('name')} region={p.get('region')} flavor={p.get('flavorId')} image={p.get('imageId')}"
    if t.endswith("cloudSecurityGroup:CloudSecurityGroup"):
        rules = [f"{int(x['portRangeMin'])}<-{x['remoteIpPrefix']}" for x in p.get("rules") or []]
        return "ingress " + ", ".join(rules)
    if t.endswith("workflowBackup:WorkflowBackup"):
        return f"cron='{p.get('cron')}' rotation={int(p.get('rotation', 0))}"
    if t.endswith("/database:Database"):
        return (f"{p.get('engine')} {p.get('version')} plan={p.get('plan')} nodes={len(p.get('nodes') or [])} "
                f"backup={p.get('backupTime')} in {','.join(p.get('backupRegions') or [])} "
                f"deletionProtection={p.get('deletionProtection', False)} allowed={','.join(x['ip'] for x in p.get('ipRestrictions') or [])}")
    if t.endswith("databaseInstance:DatabaseInstance") or t.endswith("SqlUser") or t.endswith("/user:User"):
        return f"name={p.get('name')}" if p.get("name") else f"{p.get('description')} roles={','.join(p.get('roleNames') or [])}"
    if t.endswith("storage:Storage"):
        lock = (p.get("objectLock") or {}).get("rule") or {}
        return (f"name={p.get('name')} region={p.get('regionName')} versioning={(p.get('versioning') or {}).get('status')} "
                f"encryption={(p.get('encryption') or {}).get('sseAlgorithm')}"
                + (f" lock={lock.get('mode')} {lock.get('period')}" if lock else ""))
    if t.endswith("s3Policy:S3Policy"):
        try:
            res = sorted({x for s in json.loads(p["policy"])["Statement"] for x in s["Resource"]})
            return "resources=" + ",".join(res)
        except (KeyError, ValueError, TypeError):
            return ""
    if t.startswith("gandi:") or t.endswith("zoneRecord:ZoneRecord"):
        name = p.get("name", p.get("subdomain"))
        values = p.get("values") or [p.get("target")]
        return f"{name or '@'} {p.get('type', p.get('fieldtype'))} {' '.join(map(str, values))}"
    if t.endswith("randomPassword:RandomPassword"):
        return f"length={int(p.get('length', 0))} (value secret)"
    if t.endswith("remote:Command"):
        conn = r.plain.get("connection") or {}  # pulumi-command keeps the whole connection secret
        return f"over SSH to {conn.get('user')}@{conn.get('host')}:{int(conn.get('port', 22))}"
    if t.endswith("reverse:Reverse"):  # pulumi-ovh names ip_reverse and reverse so
        return f"{p.get('ReverseIp')} -> {p.get('ReverseValue')} (reverse DNS)"
    if t.endswith("PrivateKey"):
        return f"algorithm={p.get('algorithm')} (private key secret)"
    if t.endswith("LifecycleConfiguration"):
        return f"{len(p.get('rules') or [])} rule(s)"
    if t.endswith("CloudNetworkPrivateVrack"):
        return f"name={p.get('name')} region={p.get('region')} vlan={int(p.get('vlanId') or 0)}"
    if t.endswith("CloudNetworkPrivateVrackSubnet"):
        pools = ",".join(f"{x.get('start')}-{x.get('end')}" for x in p.get("allocationPools") or [])
        return f"cidr={p.get('cidr')} region={p.get('region')} dhcp={pools}"
    if t.endswith("cloudLoadbalancer:CloudLoadbalancer"):
        return f"name={p.get('name')} flavor={p.get('flavorName')} vip={(p.get('network') or {}).get('ip')}"
    if t.endswith("CloudLoadbalancerListener"):
        return f"{p.get('protocol')} :{int(p.get('protocolPort') or 0)}"
    if t.endswith("CloudLoadbalancerPool"):
        hm = p.get("healthMonitor") or {}
        return (f"{p.get('protocol')} {p.get('algorithm')} health={hm.get('type')} "
                f"{hm.get('domainName') or ''}{hm.get('urlPath') or ''} expects {hm.get('expectedCodes')}")
    if t.endswith("CloudLoadbalancerPoolMember"):
        return f"{p.get('name')} at {p.get('address')}:{int(p.get('protocolPort') or 0)}"
    if t.endswith("CloudStorageFileShare"):
        return f"name={p.get('name')} {p.get('protocol')} {int(p.get('size') or 0)} GB"
    if t.endswith("CloudStorageFileShareAcl"):
        return f"{p.get('accessLevel')} for {p.get('accessTo')}"
    return ""


def group_of(r: Resource, by_urn: dict[str, Resource]) -> str:
    """The socle component a resource belongs to: 'Server web', 'Database main' …"""
    cur = r
    while cur is not None:
        if cur.type in COMPONENT_LABELS:
            return f"{COMPONENT_LABELS[cur.type]} {cur.name}"
        cur = by_urn.get(cur.parent) if cur.parent else None
    return "Platform"


def critical_path(run: Run) -> list[Resource]:
    """The longest chain of dependencies between resources that a deployment creates one after
    the other (a dependency on a component counts as one on each resource inside it)."""
    by_urn = run.by_urn()
    children: dict[str, list[str]] = {}
    for r in run.resources:
        if r.parent:
            children.setdefault(r.parent, []).append(r.urn)

    def expand(urn: str) -> list[str]:
        r = by_urn.get(urn)
        if r is None:
            return []
        if r.custom or r.type.startswith("pulumi:providers:"):
            return [urn]
        return [u for c in children.get(urn, []) for u in expand(c)]

    nodes = {r.urn: r for r in run.objects()}
    deps: dict[str, set[str]] = {}
    for urn, r in nodes.items():
        d = {u for dep in r.dependencies for u in expand(dep)}
        if r.provider:
            d.add(r.provider)
        deps[urn] = {u for u in d if u in nodes and u != urn}
    memo: dict[str, list[str]] = {}

    def longest(urn: str, seen: frozenset = frozenset()) -> list[str]:
        if urn in memo:
            return memo[urn]
        best: list[str] = []
        for d in sorted(deps[urn]):  # sorted, and the first longest kept: two runs print the same path
            if d not in seen:
                chain = longest(d, seen | {urn})
                if len(chain) > len(best):
                    best = chain
        memo[urn] = best + [urn]
        return memo[urn]

    path: list[str] = []
    for u in sorted(nodes):
        chain = longest(u)
        if len(chain) > len(path):
            path = chain
    return [nodes[u] for u in path]


def mermaid(run: Run, cfg) -> str:
    """Servers with their apps, databases, buckets and DNS names, and who uses what."""
    lines = ["flowchart LR"]
    addresses = run.exports.get("servers", {})
    for sname, srv in cfg.servers.items():
        lines.append(f'  subgraph srv_{sname}["server {sname} ({srv.role}) {addresses.get(sname, "")}"]')
        for aname, app in cfg.apps.items():
            if app.hosts()[:1] == [sname]:  # an app on several servers: drawn once, naming them
                label = f"{aname}<br/>{app.image}" + (f"<br/>on {', '.join(app.hosts())}" if len(app.hosts()) > 1 else "")
                lines.append(f'    app_{aname}["{label}"]')
        for cname in cfg.caches:
            if cfg.host_of("caches", cname) == sname:
                lines.append(f'    cache_{cname}(["cache {cname}"])')
        lines.append("  end")
    for members in cfg.balanced_sets():
        lines.append(f'  lb_{"_".join(members)}{{{{"load balancer<br/>{", ".join(members)}"}}}}')
    for dname, db in cfg.databases.items():
        lines.append(f'  db_{dname}[("{db.engine} {db.version} {dname}<br/>{cfg.database_hosting(dname)}")]')
    for bname in cfg.buckets:
        lines.append(f'  bucket_{bname}[("bucket {bname}")]')
    for aname, app in cfg.apps.items():
        if app.hostname:
            dns = app.hostname.replace(".", "_").replace("-", "_")
            via = f"lb_{'_'.join(sorted(app.hosts()))} --> " if len(app.hosts()) > 1 else ""
            lines.append(f'  dns_{dns}{{{{"https://{app.hostname}"}}}} --> {via}app_{aname}')
        if app.sites:  # one node for an engine's sites, however many
            first = app.sites[0].hostname
            more = f" … ({len(app.sites)} sites)" if len(app.sites) > 1 else ""
            lines.append(f'  sites_{aname}{{{{"https://{first}{more}"}}}} --> app_{aname}')
        for use in app.databases:
            lines.append(f"  app_{aname} --> db_{use.use.split('.')[0]}")
        for use in app.buckets:
            lines.append(f"  app_{aname} --> bucket_{use.use}")
        for use in app.caches:
            lines.append(f"  app_{aname} --> cache_{use.use}")
    b = cfg.backup
    if b.enabled:
        for target in filter(None, [b.targets.bucket and f"bucket_{b.targets.bucket}",
                                    b.targets.server and f"srv_{b.targets.server}"]):
            for sname in run.exports.get("backups") or cfg.app_servers():
                lines.append(f"  srv_{sname} -. restic .-> {target}")
    # An edge once (an engine's sites share a database); every other line as it is (each subgraph's `end`).
    seen: set[str] = set()
    kept = [ln for ln in lines if "->" not in ln or not (ln in seen or seen.add(ln))]
    return "\n".join(kept) + "\n"


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(line.rstrip() for line in out)


def main(argv: list[str] | None = None) -> int:
    from tools.cli import SIGNALS

    ap = argparse.ArgumentParser(prog="python -m tools.plan", description=__doc__, epilog=SIGNALS,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stack", help="stack name: reads Pulumi.STACK.yaml and policy/config/STACK.json")
    ap.add_argument("--config-file", type=Path, help="a stack file of the same form to plan instead")
    ap.add_argument("--policy-config", type=Path, help="policy config file (default: policy/config/STACK.json)")
    out = ap.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document")
    out.add_argument("--mermaid", action="store_true", help="print a Mermaid diagram of the platform")
    out.add_argument("--diff-from", metavar="REF", help="compare with a git ref or a stack file instead of planning")
    args = ap.parse_args(argv)
    if args.diff_from and args.policy_config:
        ap.error("--diff-from compares resources and runs no policy: --policy-config does not apply")

    import pulumi

    from components.config import ConfigError, decode
    from components.profiles import load_stack, review_number
    from components.stack_file import StackFileError, read
    from tools.harness import stack_config
    from tools.policy_graph import policy_config, policy_config_path, policy_config_problems, verdicts
    from tools.cli import config_problems

    path = args.config_file or ROOT / f"Pulumi.{args.stack}.yaml"
    review = review_number(args.stack) is not None
    if args.config_file and not args.config_file.exists():
        print(f"plan: {args.config_file}: no such file", file=sys.stderr)
        return 2
    if not path.exists() and not review:
        print(f"plan: no stack file {path}; create it or pass --config-file", file=sys.stderr)
        return 2
    stack_file = None
    try:
        stack_file = read(path) if path.exists() else None
        config, secret_keys = stack_config(path) if path.exists() else ({}, [])
        # The config alone first, so its problems carry the stack file's line numbers (inside the
        # program they would arrive as the engine's RunError text).
        cfg = load_stack(args.stack, {k.split(":", 1)[1]: decode(v) for k, v in config.items()
                                      if k.startswith("socle:")}, {k.split(":", 1)[1] for k in secret_keys})[0]
        run = run_program(args.stack, config=config, secret_keys=secret_keys)
    except (StackFileError, ConfigError) as err:
        print(config_problems(err, stack_file), file=sys.stderr)
        return 2
    except pulumi.RunError as err:
        print(str(err), file=sys.stderr)
        return 2
    ppath = policy_config_path(args.stack, args.policy_config)
    if not args.diff_from and not ppath.exists():
        print(f"plan: no policy config {ppath}; pass --policy-config or create it", file=sys.stderr)
        return 2
    if args.diff_from:
        from tools import diff

        try:
            base = diff.base_resources(args.stack, args.diff_from, ROOT)
        except diff.DiffError as err:
            print(f"plan: {err}", file=sys.stderr)
            return 2
        changes = diff.compare(base, run.resources, lambda inputs: mask(inputs, fingerprint=True))
        print(diff.render(args.stack, args.diff_from, changes))
        return 1 if diff.dangerous(changes) else 0
    try:
        pconf = policy_config(args.stack, ppath)
        problems = policy_config_problems(pconf)
    except (OSError, ValueError) as err:
        problems = [f"cannot be read as JSON ({err})"]
    if problems:
        print(f"plan: policy config {ppath}:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    found = verdicts(run, pconf)
    mandatory = [v for v in found if v.level == "mandatory" and not v.finding.unknown]
    chain = critical_path(run)
    by_urn = run.by_urn()

    if args.json:
        doc = {
            "stack": args.stack,
            "configFile": str(path),
            "resources": [{"type": r.type, "name": r.name, "urn": r.urn, "parent": r.parent,
                           "inputs": mask(r.inputs, fingerprint=True), "dependencies": r.dependencies,
                           "provider": r.provider, "custom": r.custom, "options": r.options}
                          for r in run.resources],
            "policyConfig": str(ppath),
            "violations": [{"policy": v.finding.policy, "level": v.level, "resource": v.finding.resource,
                            "message": v.finding.message, "unknown": v.finding.unknown} for v in found],
            "criticalPath": {"length": len(chain), "resources": [r.urn for r in chain]},
            "outputs": mask(run.exports),
        }
        print(json.dumps(doc, indent=1))
    elif args.mermaid:
        print(mermaid(run, cfg), end="")
    else:
        resources = run.objects()
        source = path.name if not review else "review profile" + (f" + {path.name}" if path.exists() else "")
        print(f"socle plan for stack '{args.stack}' ({source}), evaluated offline under Pulumi mocks:")
        print(f"{run.count_line()} would be created; addresses and IDs below are stand-ins.\n")
        groups: dict[str, list[Resource]] = {}
        for r in resources:
            groups.setdefault(group_of(r, by_urn), []).append(r)
        for g in sorted(groups):
            print(f"{g}")
            rows = sorted([r.type.split(":")[-1] if r.type.startswith(("docker:", "ovh:", "gandi:", "random:", "command:", "tls:"))
                           else r.type, r.name, summary(r)] for r in groups[g])
            print("  " + table(rows, ["type", "name", "settings"]).replace("\n", "\n  ") + "\n")
        levels = {}
        for v in found:
            levels[v.level] = levels.get(v.level, 0) + 1
        shown = ppath.relative_to(ROOT) if ppath.is_relative_to(ROOT) else ppath
        counts = ", ".join(f"{n} {lvl}" for lvl, n in sorted(levels.items()))
        print(f"Policy verdicts ({shown}){': ' + counts if counts else ''}:")
        if not found:
            print("  all rules pass.")
        for v in found:
            tag = "UNKNOWN" if v.finding.unknown else v.level.upper()
            print(f"  [{tag}] {v.finding.policy}: {v.finding.message}")
        print()
        print(f"Critical path: {len(chain)} resources created one after the other:")
        print("  " + "\n  -> ".join(f"{r.type.split(':')[-1]} {r.name}" for r in chain))
        print()
        print(f"Outputs: {json.dumps(mask(run.exports))}")
    return 1 if mandatory else 0


if __name__ == "__main__":
    from tools.cli import main_guard

    main_guard(main)
