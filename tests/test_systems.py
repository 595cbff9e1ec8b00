"""The model must express the five systems socle was written for (DESIGN.md). These are compact
sketches of each, checked by the same loader and program the real stacks use, and reused by other
tests as fixtures; the ready-to-copy stacks, with their sizes, schedules and policies, are in
examples/ (tests/test_examples.py). What the model cannot express yet is listed in the README's
"Known gaps"."""

import copy

import pytest

from components.config import load
from tests.conftest import run_values

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm0vYb6sP0bK8yQm8ZC1vZ5eQvB1pC3dT5oX2Yq1n7a admin@example.org"
BASE = {
    "target": "ovh",
    "ovh": {"projectId": "p", "region": "GRA11", "backupRegion": "SBG5"},
    "access": {"adminSshKeys": [KEY], "adminCidrs": ["198.51.100.0/24"], "sshPort": 4660},
    "dns": {"provider": "gandi"},
    "proxy": {"acmeEmail": "admin@example.org"},
}


def system(**parts):
    """A sketch on OVH, backed up to a locked bucket in the second region unless it says otherwise."""
    v = copy.deepcopy(BASE)
    v.update(parts)
    if "backup" not in v:
        v.setdefault("buckets", {})["backups"] = {"objectLock": {"mode": "compliance", "days": 30}}
        v["backup"] = {"targets": {"bucket": "backups"}}
    return v


LE_PIC = system(
    domain="lepic.example.org",
    servers={"dbauth": {"flavor": "b3-8"}, "http": {"flavor": "b3-8", "diskGb": 100},
             "cloud": {"flavor": "b3-16", "diskGb": 500}, "surveys": {"flavor": "d2-4", "diskGb": 20},
             "preprod": {"flavor": "d2-4"}, "backup": {"role": "backup", "flavor": "d2-4", "diskGb": 2000}},
    databases={"main": {"engine": "mysql", "version": "8",
                        "databases": [*(f"spip{i:02d}" for i in range(1, 41)), "nextcloud", "limesurvey"]}},
    apps={
        # One SPIP engine, 40 sites: each its hostname, its volume and its database (and user).
        "spip": {"image": "ipeos/spip:4.3", "server": "http", "port": 80, "sitesPath": "/var/www/sites",
                 "sites": [{"name": f"site{i:02d}", "hostname": f"site{i:02d}.lepic.example.org",
                            "database": f"main.spip{i:02d}"} for i in range(1, 41)]},
        "nextcloud": {"image": "nextcloud:29-apache", "server": "cloud", "hostname": "cloud.lepic.example.org",
                      "port": 80, "volumes": {"data": "/var/www/html"}, "databases": [{"use": "main.nextcloud"}]},
        "etherpad": {"image": "etherpad/etherpad:2.2.6", "server": "cloud", "hostname": "pad.lepic.example.org", "port": 9001},
        "limesurvey": {"image": "martialblog/limesurvey:6-apache", "server": "surveys", "port": 8080,
                       "hostname": "sondages.lepic.example.org", "databases": [{"use": "main.limesurvey"}]},
    },
)

HISTOLOGE = system(
    domain="histologe.example.org",
    # The web containers on two servers behind a load balancer; worker and async scale apart.
    servers={"app1": {"flavor": "b3-16", "diskGb": 20, "autoBackup": {"cron": "0 1 * * *", "rotation": 7}},
             "app2": {"flavor": "b3-16"}},
    databases={"main": {"engine": "mysql", "version": "8", "plan": "business", "nodes": 2,
                        "deletionProtection": True, "databases": ["histologe"]}},
    # Sessions shared by every web container: kept on disk, never evicted.
    caches={"redis": {"server": "app1", "persistent": True}},
    buckets={"documents": {"lifecycle": [{"noncurrentExpireDays": 365}]}},
    apps={n: {"image": "ghcr.io/example/histologe:1.0", **where, "command": cmd,
              "databases": [{"use": "main.histologe"}], "caches": [{"use": "redis"}], "buckets": [{"use": "documents"}],
              **({"hostname": "histologe.example.org", "port": 8080, "maintenance": False} if n == "webapp" else {})}
          for n, cmd, where in [("webapp", None, {"servers": ["app1", "app2"]}),
                                ("worker", ["bin/console", "messenger:consume"], {"server": "app2"}),
                                ("async", ["bin/cron"], {"server": "app2"})]},
)

SKILLS_HUB = system(
    domain="skills.example.org",
    # "3h00 du matin", kept 1825 days, pushed over SSH (port 4660, key-only) to the server with the
    # 4 TB disk the school already has (/srv/tc-data/backups): socle does not create it.
    timeZone="Europe/Paris",
    backup={"schedule": "0 3 * * *", "retention": {"daily": 7, "weekly": 4, "monthly": 12, "yearly": 5},
            "targets": {"sftp": {"host": "tc-data.skills.example.org", "port": 4660, "user": "socle",
                                 "path": "/srv/tc-data/backups",
                                 "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE5lGM2dxmmYaTiHi9/T5AsDtp2i0EalI5n2SlItHHa7"}}},
    servers={"prod": {"flavor": "b3-16", "diskGb": 200}},
    databases={"main": {"engine": "postgresql", "version": "16", "hosting": "container", "server": "prod",
                        "databases": ["app", "keycloak", "odoo", "mattermost"]}},
    apps={
        "app": {"image": "ghcr.io/example/skills:2", "server": "prod", "hostname": "skills.example.org", "port": 3000,
                "volumes": {"uploads": "/app/uploads"}, "databases": [{"use": "main.app"}]},
        "keycloak": {"image": "quay.io/keycloak/keycloak:25.0", "server": "prod", "hostname": "sso.skills.example.org",
                     "port": 8080, "command": ["start"], "databases": [{"use": "main.keycloak", "env": {"host": "KC_DB_URL_HOST"}}]},
        "odoo": {"image": "odoo:17", "server": "prod", "hostname": "erp.skills.example.org", "port": 8069,
                 "databases": [{"use": "main.odoo", "env": {"host": "HOST", "user": "USER", "password": "PASSWORD"}}]},
        "mattermost": {"image": "mattermost/mattermost-team-edition:9.11", "server": "prod", "port": 8065,
                       "hostname": "chat.skills.example.org", "databases": [{"use": "main.mattermost", "env": {"url": "MM_SQLSETTINGS_DATASOURCE"}}]},
    },
)

CAPLIBRE = system(
    domain="caplibre.example.org",
    servers={"cloud1": {"flavor": "b3-32"}, "cloud2": {"flavor": "b3-32"}, "sync": {"flavor": "b3-8", "diskGb": 500}},
    databases={"cluster": {"engine": "postgresql", "version": "16", "plan": "business", "nodes": 3, "databases": ["nextcloud"]}},
    buckets={"files": {}},
    apps={
        "nextcloud": {"image": "nextcloud:29-apache", "servers": ["cloud1", "cloud2"],
                      "hostname": "cloud.caplibre.example.org", "port": 80,
                      "databases": [{"use": "cluster.nextcloud"}], "buckets": [{"use": "files"}]},
        "syncthing": {"image": "syncthing/syncthing:1.27", "server": "sync", "hostname": "sync.caplibre.example.org",
                      "port": 8384, "volumes": {"data": "/var/syncthing"},
                      # Devices sync over 22000 (TCP, and QUIC over UDP) and find each other on 21027/udp.
                      "ports": [{"port": 22000, "protocol": "tcp", "reason": "Syncthing sync protocol"},
                                {"port": 22000, "protocol": "udp", "reason": "Syncthing sync protocol over QUIC"},
                                {"port": 21027, "protocol": "udp", "reason": "Syncthing local discovery"}]},
    },
)

OC_PIZZA = system(
    domain="ocpizza.example.org",
    servers={"web": {"flavor": "d2-2", "diskGb": 10, "autoBackup": {"cron": "0 2 * * *", "rotation": 7}}},  # 1 vCPU, 2 GB
    databases={"main": {"engine": "postgresql", "version": "16", "databases": ["shop"]}},
    apps={"shop": {"image": "ghcr.io/example/ocpizza:1.0", "server": "web", "hostname": "ocpizza.example.org", "port": 8000,
                   "env": {"DJANGO_SETTINGS_MODULE": "ocpizza.settings.production"},
                   "secrets": {"SECRET_KEY": {"generate": 50}}, "databases": [{"use": "main.shop"}], "maintenance": False,
                   # The Django settings directory, filled from the app's environment (a secret file).
                   "files": {"/app/config/production.ini": {"source": "examples/oc-pizza/config/production.ini"}},
                   # At each release: migrations before the new containers, static files after.
                   "hooks": {"before": [["python", "manage.py", "migrate", "--noinput"]],
                             "after": [["python", "manage.py", "collectstatic", "--noinput"]]}}},
)


@pytest.mark.parametrize("values", [LE_PIC, HISTOLOGE, SKILLS_HUB, CAPLIBRE, OC_PIZZA],
                         ids=["le-pic", "histologe", "skills-hub", "caplibre", "oc-pizza"])
def test_system_is_expressible_and_evaluates(values):
    load(values)
    run = run_values(values)
    hostnames = {a["hostname"] for a in values["apps"].values() if a.get("hostname")} | \
        {site["hostname"] for a in values["apps"].values() for site in a.get("sites", [])}
    routed = {r.plain["name"] for r in run.of_type("livedns/record:Record") if r.plain["type"] == "A"}
    assert len(routed) == len(hostnames), f"{len(hostnames)} hostnames but {len(routed)} A records"


def test_ovh_can_serve_the_dns_zone_instead_of_gandi():
    v = copy.deepcopy(OC_PIZZA)
    v["dns"] = {"provider": "ovh", "records": [{"name": "@", "type": "MX", "values": ["10 mx1.example.net.", "20 mx2.example.net."]}]}
    run = run_values(v)
    recs = [r.plain for r in run.of_type("ovh:Domain/zoneRecord:ZoneRecord")]
    assert not run.of_type("livedns/record:Record"), "Gandi records created although dns.provider is ovh"
    assert sorted((r["fieldtype"], r["subdomain"], r["target"]) for r in recs if r["fieldtype"] == "MX") == [
        ("MX", "", "10 mx1.example.net."), ("MX", "", "20 mx2.example.net.")], recs
    assert any(r["fieldtype"] == "CAA" and r["target"] == '0 issue "letsencrypt.org"' for r in recs), recs
    assert any(r["fieldtype"] == "A" and r["subdomain"] == "" for r in recs), "no A record for the apex app"
