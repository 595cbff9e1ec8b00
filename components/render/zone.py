"""The zone socle would publish, as an RFC 1035 zone file: not what is deployed (the DNS provider
keeps the zone), but the same records in the format every DNS tool reads, so a real zone checker
and a real DNS server can judge them (tests/test_mail_dns.py)."""

from __future__ import annotations


def render_zone(zone: str, records: list[tuple[str, str, int, list[str]]], *, serial: int = 1) -> str:
    """`records`: (name relative to the zone or "@", type, ttl, values in presentation format).
    SOA and NS are stand-ins: the provider's own servers answer for the real zone."""
    origin = zone.rstrip(".") + "."
    lines = [f"$ORIGIN {origin}", "$TTL 300",
             f"@ 3600 IN SOA ns1.{origin} hostmaster.{origin} {serial} 3600 900 1209600 300",
             f"@ 3600 IN NS ns1.{origin}",
             "ns1 3600 IN A 127.0.0.1"]
    for name, rtype, ttl, values in records:
        for value in values:
            lines.append(f"{name} {ttl} IN {rtype} {value}")
    return "\n".join(lines) + "\n"
