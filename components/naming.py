"""The one naming helper for physical names: <project>-<stack>-<name>."""

from __future__ import annotations

import re


def physical_name(project: str, stack: str, *parts: str) -> str:
    return "-".join([project, stack, *parts])


def ovh_location(region: str) -> str:
    """OVH database and object-storage regions are locations (GRA); instance regions are numbered
    (GRA11). A 3-AZ region (EU-WEST-PAR) is its own location and keeps its whole name."""
    if region.count("-") >= 2:  # EU-WEST-PAR; US-EAST-VA-1 is in the location US-EAST-VA
        return re.sub(r"-[0-9]+$", "", region.upper())
    letters = ""
    for ch in region:
        if not ch.isalpha():
            break
        letters += ch
    return (letters or region).upper()
