"""Scale mode of the evaluation benchmark (`python -m tools.bench_eval --scale`): figures, not a test.

Three measures, in one run, under the same Pulumi mocks as the tests:

1. Evaluation time against resource count: a hosting co-op's stack (10 sites per server, each site
   an app with its hostname, volume and logical database) from 1 site to `--sites`, and the Caplibre
   example; the growth exponent is the slope of log(time) against log(resources) (1.0 is linear).
2. The program's overhead against the SDK's own cost: the recorded registrations (same types,
   inputs, parents, providers and dependencies, through the same generated classes) replayed as a
   bare program under the same mocks; the ratio of the two times (goal: at most 1.2). The replay
   checks itself: it must register the same graph, input for input (`same_graph`).
3. The deployment's critical path (tools/plan.py's, as `python -m tools.plan` prints it): the
   longest chain of resources created one after another, against the physical minimum (below).
"""

from __future__ import annotations

import gc
import math
import statistics
import time

from tools.harness import ROOT, Run, run_program
from tools.plan import critical_path

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm0vYb6sP0bK8yQm8ZC1vZ5eQvB1pC3dT5oX2Yq1n7a admin@example.org"
DEFAULT_GC = gc.get_threshold()
# The chain no deployment can shorten: the private network and its subnet (or, without them, the
# security group), the instance, cloud-init, host setup, the Docker provider (SSH to the host), the
# host's Docker network, a container. DNS records need only the address, beside it.
PHYSICAL_MINIMUM = 8


def coop(sites: int, per_server: int = 10) -> dict:
    """A hosting co-op on OVH: `sites` WordPress-like sites, `per_server` per server, one managed
    MySQL cluster per 50 sites, backups to a locked bucket."""
    import json

    servers = max(1, math.ceil(sites / per_server))
    clusters = max(1, math.ceil(sites / 50))
    values = {
        "domain": "coop.example.org", "target": "ovh",
        "ovh": {"projectId": "p" * 32, "region": "GRA11", "backupRegion": "SBG5"},
        "access": {"adminSshKeys": [KEY], "adminCidrs": ["203.0.113.0/28"], "sshPort": 4660},
        "dns": {"provider": "gandi", "zone": "example.org"},
        "proxy": {"acmeEmail": "admin@example.org"},
        "servers": {f"s{i:02d}": {"flavor": "b3-8", "diskGb": 100} for i in range(servers)},
        "databases": {f"db{c}": {"engine": "mysql", "version": "8",
                                 "databases": [f"site{n:03d}" for n in range(sites) if n // 50 == c]}
                      for c in range(clusters)},
        "buckets": {"backups": {"objectLock": {"mode": "compliance", "days": 30}}},
        "backup": {"targets": {"bucket": "backups"},
                   "pingUrl": "https://hc-ping.com/1", "checkPingUrl": "https://hc-ping.com/2",
                   "drillPingUrl": "https://hc-ping.com/3"},
        "apps": {f"site{n:03d}": {"image": "wordpress:6.6-apache", "server": f"s{n // per_server:02d}",
                                  "hostname": f"site{n:03d}.coop.example.org", "port": 80,
                                  "volumes": {"content": "/var/www/html/wp-content"},
                                  "databases": [{"use": f"db{n // 50}.site{n:03d}",
                                                 "env": {"host": "WORDPRESS_DB_HOST", "name": "WORDPRESS_DB_NAME",
                                                         "user": "WORDPRESS_DB_USER",
                                                         "password": "WORDPRESS_DB_PASSWORD"}}]}
                 for n in range(sites)},
    }
    return {f"socle:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def timed(fn, runs: int) -> tuple[float, object]:
    """Median wall time of `runs` calls (and the last result), each from the interpreter's default
    collector settings (the program sets its own)."""
    times, out = [], None
    for _ in range(runs):
        gc.set_threshold(*DEFAULT_GC)
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def replay(run: Run):
    """A bare program registering exactly the recorded resources: same types, names, inputs,
    parents, providers and dependencies, and nothing else.

    Each custom resource is an instance of the class the program used (pulumi_ovh's, pulumi_docker's…),
    handed a property bag of the same class with the same properties set (the recorded plain
    inputs) and the others None, from one constructor frame as a generated class is: what the SDK
    does for any program using these providers (an Output per declared property, translation by
    the classes' type metadata, a source position per registration) is the SDK's cost, not the
    program's. Values are plain: no Output flows from one resource into another."""
    import pulumi

    def __init__(res, r: Run, props, opts):  # the SDK's source positions count __init__ frames
        if r.type.startswith("pulumi:providers:"):
            pulumi.ProviderResource.__init__(res, r.type.split(":")[-1], r.name, props, opts)
        else:
            pulumi.CustomResource.__init__(res, r.type, r.name, props, opts)

    def bag(r):
        values = {key: r.plain.get(_camel(key)) for key in r.declared}
        if r.props_class is None or r.props_class is dict:
            return values
        props = r.props_class.__new__(r.props_class)
        props.__dict__.update(values)
        return props

    def program():
        gc.set_threshold(100_000, 50, 100)  # as __main__.py does: the same collector for both
        made: dict[str, pulumi.Resource] = {}
        for r in run.resources:
            if r.type == "pulumi:pulumi:Stack":
                continue
            opts = pulumi.ResourceOptions(
                parent=made.get(r.parent), provider=made.get(r.provider) if r.provider else None,
                depends_on=[made[d] for d in r.dependencies if d in made])
            if r.custom and r.python_class is not None:
                res = r.python_class.__new__(r.python_class)
                __init__(res, r, bag(r), opts)
            elif r.custom:
                res = pulumi.CustomResource(r.type, r.name, dict(r.plain), opts)
            else:
                res = pulumi.ComponentResource(r.type, r.name, None, opts)
            made[r.urn] = res
    return program


def same_graph(run: Run, replayed: Run) -> list[str]:
    """What the replay registered differently from the program (URNs, inputs, dependencies): empty
    when the replay is faithful, as the overhead figure assumes."""
    import json

    ours, theirs = run.by_urn(), replayed.by_urn()
    out = [f"only in the program: {u}" for u in sorted(set(ours) - set(theirs))]
    out += [f"only in the replay: {u}" for u in sorted(set(theirs) - set(ours))]
    for urn in sorted(set(ours) & set(theirs)):
        a, b = ours[urn], theirs[urn]
        if json.dumps(a.plain, sort_keys=True) != json.dumps(b.plain, sort_keys=True):
            out.append(f"inputs differ: {urn}")
        if sorted(a.dependencies) != sorted(b.dependencies):
            out.append(f"dependencies differ: {urn}")
    return out


def report(sites: int, runs: int) -> None:
    sizes = sorted({s for s in (1, 5, 25, 100, 250, sites) if s <= sites})
    print("evaluation time against resource count (in-process, median of "
          f"{runs}; the co-op: 10 sites per server, 50 sites per database cluster)")
    print(f"{'sites':>6}{'servers':>9}{'resources':>11}{'seconds':>9}{'ms/resource':>13}")
    points = []
    for n in sizes:
        config = coop(n)
        seconds, run = timed(lambda: run_program("prod", config=config), runs)
        points.append((len(run.resources), seconds))
        print(f"{n:>6}{math.ceil(n / 10):>9}{len(run.resources):>11}{seconds:>9.2f}{1000 * seconds / len(run.resources):>13.2f}")
    if len(points) >= 2:
        big = [p for p in points if p[0] >= 100] or points
        slope = (math.log(big[-1][1]) - math.log(big[0][1])) / (math.log(big[-1][0]) - math.log(big[0][0])) \
            if len(big) >= 2 else float("nan")
        print(f"growth: time ~ resources^{slope:.2f} from {big[0][0]} to {big[-1][0]} resources (1.00 is linear)")

    example = ROOT / "examples" / "caplibre-large" / "Pulumi.prod.yaml"
    for label, kwargs in ((f"co-op, {sites} sites", {"config": coop(sites)}),
                          ("Caplibre example", {"config_file": example})):
        run = run_program("prod", **kwargs)
        wrong = same_graph(run, run_program("prod", program=replay(run), **kwargs))
        if wrong:
            raise SystemExit(f"the bare replay is not the program's graph: {wrong[:5]}")
        program, bare = [], []
        # Interleaved, and the fastest of each kept: on a shared machine noise only ever adds.
        for _ in range(max(runs, 3)):
            program.append(timed(lambda: run_program("prod", **kwargs), 1)[0])
            bare.append(timed(lambda: run_program("prod", program=replay(run), **kwargs), 1)[0])
        path = [f"{r.type.split(':')[-1]} {r.name}" for r in critical_path(run)]
        print(f"\n{label}: {len(run.resources)} resources, program {min(program):.2f} s, bare replay "
              f"{min(bare):.2f} s, overhead {min(program) / min(bare):.2f} (goal <= 1.20; fastest of "
              f"{len(program)} interleaved runs each)")
        print(f"critical path: {len(path)} objects (physical minimum {PHYSICAL_MINIMUM}): {' -> '.join(path)}")


if __name__ == "__main__":
    report(500, 1)
