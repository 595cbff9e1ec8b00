"""The zone file of the DNS records a recorded run publishes (components/render/zone.py), for the
real zone checker and DNS server in the tests."""

from __future__ import annotations

from components.render.zone import render_zone
from tools.harness import Run


def zone_of(run: Run, zone: str) -> str:
    records = []
    for r in run.resources:
        if r.type == "gandi:livedns/record:Record" and r.plain.get("zone") == zone:
            records.append((r.plain["name"], r.plain["type"], int(r.plain.get("ttl") or 300), list(r.plain["values"])))
        elif r.type == "ovh:Domain/zoneRecord:ZoneRecord" and r.plain.get("zone") == zone:
            records.append((r.plain.get("subdomain") or "@", r.plain["fieldtype"], int(r.plain.get("ttl") or 300),
                            [r.plain["target"]]))
    return render_zone(zone, sorted(records))
