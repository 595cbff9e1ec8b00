"""Caddyfile of the HTTPS reverse proxy: the only thing that publishes host ports."""

from __future__ import annotations

from dataclasses import dataclass

# Let's Encrypt's production ACME directory.
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"

MAINTENANCE_BODY = "This service is under maintenance. Please come back in a little while."
CERTIFICATE_ONLY_BODY = "Nothing is served over HTTPS here."


@dataclass(frozen=True)
class Route:
    hostname: str
    upstream: str  # "container:port" on the private network
    maintenance: bool = False
    # Served only so that Caddy gets and renews its certificate (the mail host's, which the mail
    # server reads): no upstream, a plain 404.
    certificate_only: bool = False
    # Behind a load balancer: the path its health checks ask for, which keeps answering during
    # maintenance (a 503 there would take every member out of the pool: visitors would get refused
    # connections, not the maintenance page).
    health_path: str | None = None


def render_caddyfile(
    routes: list[Route],
    *,
    acme_email: str | None,
    internal_ca: bool,
    hsts_max_age: int,
    http_port: int = 80,
    https_port: int = 443,
    public_https_port: int | None = None,
    default_sni: str | None = None,
) -> str:
    """Each hostname gets an explicit HTTP->HTTPS redirect site and an HTTPS site with HSTS and
    TLS 1.2+. `http_port`/`https_port` are where Caddy listens; `public_https_port` (default:
    https_port) is the port clients reach, used in redirects when the host maps ports. Redirects are written out (and Caddy's implicit ones disabled) so that the policy pack
    and a reader can see them in the file rather than trust a default."""
    if not internal_ca and not acme_email:
        raise ValueError("an ACME contact email is required unless the internal CA is used")
    issuer = "internal" if internal_ca else acme_email
    glob = [
        "\tadmin off",
        f"\thttp_port {http_port}",
        f"\thttps_port {https_port}",
        "\tauto_https disable_redirects",
        # TCP only: only 80/tcp and 443/tcp are published, so no HTTP/3 listener on UDP.
        "\tservers {",
        "\t\tprotocols h1 h2",
        "\t}",
    ]
    if default_sni:
        # Behind a load balancer: its HTTPS health checks send no SNI, and Caddy would refuse a
        # handshake it cannot match to a certificate (the member would be marked down).
        glob.append(f"\tdefault_sni {default_sni}")
    if internal_ca:
        # Caddy's own CA: no account, no public DNS; browsers must trust its root once.
        glob += ["\tlocal_certs", "\tskip_install_trust"]
    else:
        glob.append(f"\temail {acme_email}")
    out = ["{", *glob, "}", ""]
    out += [
        "(socle_https) {",
        f"\ttls {issuer} {{",
        "\t\tprotocols tls1.2 tls1.3",
        "\t}",
        "\theader {",
        f'\t\tStrict-Transport-Security "max-age={hsts_max_age}"',
        '\t\tX-Content-Type-Options "nosniff"',
        "\t\t-Server",
        "\t}",
        "}",
        "",
    ]
    public = public_https_port or https_port
    port_suffix = "" if public == 443 else f":{public}"
    for r in sorted(routes, key=lambda r: r.hostname):
        out += [f"http://{r.hostname} {{", f"\tredir https://{{host}}{port_suffix}{{uri}} 308", "}", ""]
        if r.certificate_only and not internal_ca:
            # Let's Encrypt only, not Caddy's default of Let's Encrypt then ZeroSSL: the mail
            # server reads the certificate from Let's Encrypt's directory of Caddy's storage.
            out += [f"{r.hostname} {{", "\ttls {", "\t\tprotocols tls1.2 tls1.3", "\t\tissuer acme {",
                    f"\t\t\tdir {LETS_ENCRYPT}", f"\t\t\temail {acme_email}", "\t\t}", "\t}", "\theader {",
                    f'\t\tStrict-Transport-Security "max-age={hsts_max_age}"', '\t\tX-Content-Type-Options "nosniff"',
                    "\t\t-Server", "\t}"]
        else:
            out += [f"{r.hostname} {{", "\timport socle_https"]
        if r.certificate_only:
            out.append(f'\trespond "{CERTIFICATE_ONLY_BODY}" 404')
        elif r.maintenance and r.health_path:
            out += [f"\thandle {r.health_path.split('?')[0]} {{", '\t\trespond "maintenance; the server is up" 200', "\t}",
                    "\thandle {", "\t\theader Retry-After 600", f'\t\trespond "{MAINTENANCE_BODY}" 503', "\t}"]
        elif r.maintenance:
            out += ["\theader Retry-After 600", f'\trespond "{MAINTENANCE_BODY}" 503']
        else:
            out.append(f"\treverse_proxy {r.upstream}")
        out += ["}", ""]
    return "\n".join(out)
