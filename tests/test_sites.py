"""Many sites on one engine (apps.*.sites: Le PIC's SPIP sites): each site a hostname with its DNS
record and HTTPS route, its own volume and its own database (with its own user), all backed up,
declared in one short line each."""

from __future__ import annotations

import copy
import json
import time

import pytest


from tests.conftest import errors_of, run_values
from tests.test_renderers import caddy_validate
from tests.test_systems import LE_PIC

SITES = LE_PIC["apps"]["spip"]["sites"]



@pytest.fixture(scope="module")
def run():
    return run_values(copy.deepcopy(LE_PIC))


def test_each_site_gets_its_record_route_volume_and_database(run, tmp_path):
    records = {r.plain["name"]: r.plain["values"] for r in run.of_type("livedns/record:Record") if r.plain["type"] == "A"}
    http = run.exports["servers"]["http"]
    for site in SITES:
        rel = site["hostname"].removesuffix(".lepic.example.org")
        assert records.get(rel) == [http], f"{site['name']}: no A record to the engine's server ({records.get(rel)})"
    proxy = next(r for r in run.of_type("docker:index/container:Container") if r.name == "http-containers-proxy")
    caddyfile = next(u["content"] for u in proxy.plain["uploads"] if u["file"] == "/etc/caddy/Caddyfile")
    for site in SITES:
        assert f"\n{site['hostname']} {{" in caddyfile, f"no HTTPS route for {site['hostname']}"
    assert caddyfile.count("reverse_proxy spip:80") == len(SITES), "every site goes to the one engine"
    res = caddy_validate(tmp_path, caddyfile)
    assert res.returncode == 0, res.stderr

    engine = next(r for r in run.of_type("docker:index/container:Container") if r.name == "http-containers-spip")
    mounts = {m["containerPath"]: m["volumeName"] for m in engine.plain["volumes"]}
    for site in SITES:
        assert mounts.get(f"/var/www/sites/{site['name']}") == f"socle-test-spip-site-{site['name']}", site
    env = engine.plain["envs"]
    urls = {e.split("=", 1)[0]: e.split("=", 1)[1] for e in env}
    for site in SITES:
        var = f"SITE_{site['name'].upper()}_DATABASE_URL"
        logical = site["database"].split(".")[1]
        assert var in urls and f"/{logical}?" in urls[var] + "?" and urls[var].split("://")[1].startswith(f"{logical}:"), \
            f"{site['name']}: {var} is not its own database and user"
    assert len({u.split("@")[0] for u in urls.values() if "://" in u}) == len(SITES), "two sites share a database user"


def test_every_site_is_backed_up(run):
    (job,) = [r for r in run.of_type("command:remote:Command") if r.name == "http-backup-install"]
    volumes = {v["name"] for v in json.loads(job.plain["stdin"])["manifest"]["volumes"]}
    # A managed database is dumped by one server's job (the first that uses it).
    dumps = {d["database"] for r in run.of_type("command:remote:Command") if r.name.endswith("-backup-install")
             for d in json.loads(r.plain["stdin"])["manifest"]["databases"]}
    for site in SITES:
        assert f"socle-test-spip-site-{site['name']}" in volumes, f"{site['name']}'s files are not backed up"
        assert site["database"].split(".")[1] in dumps, f"{site['name']}'s database is not dumped"


def test_two_hundred_sites_are_two_hundred_lines_and_evaluate_in_seconds():
    v = copy.deepcopy(LE_PIC)
    v["databases"]["main"]["databases"] = [f"s{i:03d}" for i in range(200)] + ["nextcloud", "limesurvey"]
    v["apps"]["spip"]["sites"] = [{"name": f"s{i:03d}", "hostname": f"s{i:03d}.lepic.example.org",
                                   "database": f"main.s{i:03d}"} for i in range(200)]
    t0 = time.perf_counter()
    run = run_values(v)
    took = time.perf_counter() - t0
    assert len([r for r in run.of_type("livedns/record:Record") if r.plain["name"].startswith("s")]) >= 200
    print(f"200 sites: {len(run.resources)} resources in {took:.1f} s")


@pytest.mark.parametrize("change,says", [
    (lambda a: a["spip"]["sites"].append({"name": "dup", "hostname": "pad.lepic.example.org"}),
     "socle:apps.etherpad.hostname: 'pad.lepic.example.org' is already served by site 'dup' of app 'spip'"),
    (lambda a: a["spip"]["sites"].append({"name": "site01", "hostname": "other.lepic.example.org"}),
     "socle:apps.spip.sites.40.name: 'site01' is already a site of this app"),
    (lambda a: a["spip"]["sites"].append({"name": "out", "hostname": "out.example.net"}),
     "socle:apps.spip.sites.40.hostname: 'out.example.net' is outside the stack's domain"),
    (lambda a: a["spip"]["sites"].append({"name": "nodb", "hostname": "nodb.lepic.example.org", "database": "main.nope"}),
     "no logical database 'nope'"),
    (lambda a: a["spip"].pop("port"), "socle:apps.spip.port: required with hostname or sites"),
    (lambda a: a["spip"]["sites"].append({"name": "Bad_Name", "hostname": "b.lepic.example.org"}),
     "socle:apps.spip.sites.40.name"),
])
def test_site_mistakes_are_named(change, says):
    v = copy.deepcopy(LE_PIC)
    change(v["apps"])
    msg = errors_of(v)
    assert says in msg, msg
