"""DnsRecords: Gandi LiveDNS (or OVH zone) records for one zone."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi


@dataclass
class Record:
    key: str                               # stable logical name: the same in every stack
    name: str                              # relative to the zone, "@" for the apex
    type: str
    values: list[pulumi.Input[str]]
    ttl: int
    # Published only once these exist (a load balancer: the policy pack then knows the record
    # points at a TLS terminator).
    after: list[pulumi.Resource] = field(default_factory=list)


@dataclass
class DnsRecordsArgs:
    provider: str                          # "gandi" | "ovh"
    zone: str
    records: list[Record] = field(default_factory=list)


def relative_name(hostname: str, zone: str) -> str:
    return "@" if hostname == zone else hostname[: -(len(zone) + 1)]


def caa_values(issuers: list[str], contact: str | None) -> list[str]:
    """Only these CAs may issue for the zone; wildcard issuance is refused."""
    values = [f'0 issue "{ca}"' for ca in issuers] + ['0 issuewild ";"']
    if contact:
        values.append(f'0 iodef "mailto:{contact}"')
    return values


class DnsRecords(pulumi.ComponentResource):
    fqdns: list[str]
    records: dict[str, list[pulumi.CustomResource]]   # by Record.key: what to wait for

    def __init__(self, name: str, args: DnsRecordsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:dns:DnsRecords", name, None, opts)
        self.fqdns = []
        self.records = {}
        for rec in args.records:
            child = pulumi.ResourceOptions(parent=self, depends_on=rec.after)
            key = f"{name}-{rec.key}"
            fqdn = args.zone if rec.name == "@" else f"{rec.name}.{args.zone}"
            self.fqdns.append(fqdn)
            if args.provider == "gandi":
                import pulumiverse_gandi as gandi

                self.records[rec.key] = [gandi.livedns.Record(key, zone=args.zone, name=rec.name, type=rec.type,
                                                              ttl=rec.ttl, values=rec.values, opts=child)]
            elif args.provider == "ovh":
                import pulumi_ovh as ovh

                # OVH holds one record per value. A TXT value goes as the zone file writes it, in
                # quotes (render/mail.py txt()): OVH quotes an unquoted one itself, and stores a
                # quoted one as given (terraform-provider-ovh dd234d78, "Ignore unquoted TXT
                # changes": the API "silently quotes TXT fields"); unverified against the live API.
                self.records[rec.key] = [
                    ovh.domain.ZoneRecord(f"{key}-{i}", zone=args.zone, subdomain="" if rec.name == "@" else rec.name,
                                          fieldtype=rec.type, target=value, ttl=rec.ttl, opts=child)
                    for i, value in enumerate(rec.values)]
            else:
                raise ValueError(f"unknown DNS provider {args.provider!r}")
        self.register_outputs({"fqdns": self.fqdns})
