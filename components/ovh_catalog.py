"""What OVH offers, as socle validates it: regions and managed-database engine versions.

One table, checked when a stack file is loaded, so that a typo (`GRA-11`, PostgreSQL `9.6`) is a
config error naming the key before anything is created, instead of an OVH API error halfway through
a deployment. OVH adds regions and versions over time: when it does, add them here in a pull
request (the message of a refused value says so); the tests check the table's shape, not its size.

Sources (read 2026-11):
- Public Cloud regions: https://www.ovhcloud.com/en/public-cloud/regions-availability/ and the API's
  region enums (`/cloud/project/{serviceName}/region`; e.g. CloudKubeRegionEnum: BHS5, DE1, GRA5,
  GRA7, GRA9, SBG5, SGP1, SYD1, UK1, US-EAST-VA-1, US-WEST-OR-1, WAW1). 3-AZ regions (EU-WEST-PAR,
  EU-SOUTH-MIL) are locations of their own (components.naming.ovh_location).
- Managed databases: https://help.ovhcloud.com/csm/en-public-cloud-databases-lifecycle-policy and
  the `ovh_cloud_project_database` docs (version is the major version as a string: "16", "8").
  PostgreSQL 13 reached its end of life at OVH in November 2025; MySQL is offered as 8 only.
"""

from __future__ import annotations

import difflib

# Instance regions (servers, block storage); a server's region and ovh.backupRegion are one of these.
INSTANCE_REGIONS = frozenset({
    "BHS5", "DE1", "GRA5", "GRA7", "GRA9", "GRA11", "SBG5", "SBG7", "UK1", "WAW1",
    "SGP1", "SYD1", "US-EAST-VA-1", "US-WEST-OR-1", "CA-EAST-TOR",
    "EU-WEST-PAR", "EU-SOUTH-MIL", "AP-SOUTH-MUM",
})

# Object storage and database locations: an instance region's letters (GRA11 -> GRA), or a 3-AZ region.
LOCATIONS = frozenset({
    "BHS", "DE", "GRA", "SBG", "UK", "WAW", "SGP", "SYD", "RBX",
    "US-EAST-VA", "US-WEST-OR", "CA-EAST-TOR", "EU-WEST-PAR", "EU-SOUTH-MIL", "AP-SOUTH-MUM",
})

# Major versions OVH's managed databases offer, per engine (the API's `version` string).
MANAGED_VERSIONS = {
    "postgresql": ("14", "15", "16", "17", "18"),
    "mysql": ("8",),
}

# Versions of the official images socle runs as containers (hosting: container): postgres:<v>-alpine,
# and for engine mysql the MariaDB image, mariadb:<v> (components/database.py), whose tags are MariaDB's.
CONTAINER_VERSIONS = {
    "postgresql": ("13", "14", "15", "16", "17", "18"),
    "mysql": ("10.6", "10.11", "11", "11.4", "11.8"),
}


def suggest(value: str, known) -> str:
    """' (did you mean X?)' for the closest known value, or ''."""
    normal = value.upper().replace("_", "-")
    for k in known:
        if normal == k or normal.replace("-", "") == k.replace("-", ""):
            return f"; did you mean '{k}'?"
    close = difflib.get_close_matches(normal, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def region_problem(value: str, *, locations_too: bool = False) -> str | None:
    """Why `value` is not an OVH region (or, with locations_too, a location), or None."""
    known = INSTANCE_REGIONS | (LOCATIONS if locations_too else frozenset())
    if value in known:
        return None
    return (f"'{value}' is not an OVH Public Cloud region{' or location' if locations_too else ''}"
            f"{suggest(value, known)} (known: {', '.join(sorted(known))}; if OVH opened a new one, add it to "
            "components/ovh_catalog.py)")


def version_problem(engine: str, version: str, hosting: str) -> str | None:
    table = MANAGED_VERSIONS if hosting == "managed" else CONTAINER_VERSIONS
    offered = table.get(engine, ())
    if version in offered:
        return None
    where = "OVH's managed" if hosting == "managed" else (
        "socle's container (the MariaDB image)" if engine == "mysql" else "socle's container")
    return (f"'{version}' is not a {engine} version {where} databases offer (offered: {', '.join(offered)}; "
            "write the major version in quotes, e.g. '16'; if OVH added one, add it to components/ovh_catalog.py)")
