"""socle:mail, rendered: the DNS records a mail domain needs, in presentation format (what a zone
file holds and what Gandi LiveDNS takes as TXT values), and the mail server's settings and files
(docker-mailserver). Pure."""

from __future__ import annotations

import shlex

from .caddyfile import LETS_ENCRYPT


def txt(value: str) -> str:
    """A TXT value as quoted character-strings of at most 255 bytes each (RFC 1035 §3.3: a 2048-bit
    DKIM key does not fit in one); receivers join them back without spaces (RFC 6376 §3.6.2.2)."""
    if any(c in value for c in '"\\\n'):
        raise ValueError(f"TXT value holds a quote, backslash or newline: {value[:60]!r}")
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join(f'"{c}"' for c in chunks)


def dkim_value(public_key_pem: str) -> str:
    """The DKIM key record (RFC 6376 §3.6.1): the RSA public key's SubjectPublicKeyInfo, base64,
    which is the body of its PEM."""
    body = "".join(line.strip() for line in public_key_pem.strip().splitlines() if not line.startswith("-----"))
    if not body:
        raise ValueError("empty public key")
    return f"v=DKIM1; k=rsa; p={body}"


def spf_value(includes: list[str]) -> str:
    """Only the domain's MX hosts (and the listed services) send its mail; everything else fails."""
    return " ".join(["v=spf1", "mx", *(f"include:{d}" for d in includes), "-all"])


def dmarc_value(policy: str, report_to: str | None) -> str:
    """Strict alignment of both SPF and DKIM with the From domain, the policy for the rest."""
    tags = ["v=DMARC1", f"p={policy}", "adkim=s", "aspf=s"]
    if report_to:
        tags.append(f"rua=mailto:{report_to}")
    return "; ".join(tags)


# ---------------------------------------------------------------------------- the mail server
# docker-mailserver (github.com/docker-mailserver/docker-mailserver, v15.1.0): one container with
# Postfix, Dovecot, OpenDKIM, OpenDMARC and policyd-spf, configured by environment variables
# (target/scripts/startup/variables-stack.sh) and by files in /tmp/docker-mailserver.

# The mail server's container name (no app, cache or database may take it: components/checks.py).
MAIL_APP = "mail"
# The ports the mail server publishes, with the reason the policy pack's allowedPorts asks for.
# Not 143 (IMAP) or 110/995 (POP3): mail clients read over 993, TLS from the first byte.
MAIL_PORTS = (
    (25, "SMTP: mail from other mail servers"),
    (465, "SMTP submission over TLS: mail clients sending"),
    (587, "SMTP submission with STARTTLS: mail clients sending"),
    (993, "IMAP over TLS: mail clients reading"),
)
# Mailboxes, the mail queue and Postfix/Dovecot state, and the accounts (postfix-accounts.cf,
# written by `setup email add`): all three backed up.
MAIL_VOLUMES = {"data": "/var/mail", "state": "/var/mail-state", "config": "/tmp/docker-mailserver"}
CONFIG_DIR = MAIL_VOLUMES["config"]
# The certificate Caddy keeps for the mail host, mounted read-only here (see mail_command).
TLS_DIR = "/etc/socle-tls"
def caddy_issuer_dir(ca_url: str) -> str:
    """The directory Caddy (CertMagic) files an ACME CA's certificates under: the URL's host and
    path, slashes made hyphens (certmagic acmeissuer.go issuerKey), then made safe for storage
    (StorageKeys.Safe: lower case, ':' to '-'). tests/test_mail_server_live.py checks it against
    a real Caddy and Pebble."""
    from urllib.parse import urlsplit

    url = urlsplit(ca_url)
    key = url.netloc
    path = url.path.replace("/", "-").replace("\\", "-").strip("-")
    return (f"{key}-{path}" if path else key).lower().replace(":", "-")


# Where Caddy stores a certificate from Let's Encrypt, under its data directory (/data): the mail
# host's route names Let's Encrypt as its only issuer (render/caddyfile.py).
LE_CERTIFICATES = f"caddy/certificates/{caddy_issuer_dir(LETS_ENCRYPT)}"


# The postmaster's password, uploaded into the container (never its environment): see mail_command.
POSTMASTER_PASSWORD = "/etc/socle-mail/postmaster.password"


def mail_env(*, hostname: str, postmaster: str, max_message_mb: int, time_zone: str,
             forwards_out: bool = False) -> dict[str, str]:
    """docker-mailserver's settings. What differs from its defaults, and why:
    - SSL_TYPE=manual: the certificate Caddy already gets and renews for the mail host (its change
      detector reloads Postfix and Dovecot when the files change);
    - PERMIT_DOCKER=none (its default, written out): no Docker network may relay without a login;
    - SPOOF_PROTECTION=1: a logged-in user sends only as their own addresses;
    - ENABLE_AMAVIS=0, no ClamAV, SpamAssassin or Rspamd: they need 1-4 GB of memory these servers
      do not have; OpenDKIM, OpenDMARC and policyd-spf stay on (its defaults);
    - ENABLE_FAIL2BAN=0: it needs NET_ADMIN on the host's firewall, which socle owns (render/firewall.py);
    - ENABLE_POP3=0: IMAP only; ENABLE_UPDATE_CHECK=0: the image is pinned, updates come by pull request;
    - ENABLE_SRS=1 when an alias forwards outside the domain: the forwarded mail's sender is
      rewritten into the domain, or it fails SPF at the destination (and bounces at p=reject)."""
    return {
        "POSTMASTER_ADDRESS": postmaster,
        "SSL_TYPE": "manual",
        "SSL_CERT_PATH": f"{TLS_DIR}/{hostname}.crt",
        "SSL_KEY_PATH": f"{TLS_DIR}/{hostname}.key",
        "PERMIT_DOCKER": "none",
        "SPOOF_PROTECTION": "1",
        "ENABLE_OPENDKIM": "1",
        "ENABLE_OPENDMARC": "1",
        "ENABLE_POLICYD_SPF": "1",
        "ENABLE_AMAVIS": "0",
        "ENABLE_CLAMAV": "0",
        "ENABLE_SPAMASSASSIN": "0",
        "ENABLE_RSPAMD": "0",
        "ENABLE_FAIL2BAN": "0",
        "ENABLE_POP3": "0",
        "ENABLE_IMAP": "1",
        "ENABLE_UPDATE_CHECK": "0",
        "ENABLE_SRS": "1" if forwards_out else "0",
        "POSTFIX_MESSAGE_SIZE_LIMIT": str(max_message_mb * 1024 * 1024),
        "LOG_LEVEL": "info",
        "TZ": time_zone,
    }


def mail_command(hostname: str, postmaster_mailbox: str) -> list[str]:
    """The image's own command (supervisord), once Caddy holds the mail host's certificate:
    docker-mailserver stops at start-up when SSL_TYPE=manual finds no files
    (target/scripts/helpers/ssl.sh), and on a first deployment Caddy gets the certificate only
    once the mail host's DNS record points at the server. With no mailbox yet, the postmaster's is
    made first (its password from the uploaded file): docker-mailserver shuts down after two
    minutes without one (target/scripts/startup/setup.d/dovecot.sh), so a first deployment would
    otherwise refuse all mail until someone made a mailbox in that window."""
    cert, key = shlex.quote(f"{TLS_DIR}/{hostname}.crt"), shlex.quote(f"{TLS_DIR}/{hostname}.key")
    waiting = shlex.quote(f"socle: waiting for the HTTPS proxy to get the certificate of {hostname} "
                          "(Let's Encrypt, once its DNS record points here)")
    script = (f"until [ -s {cert} ] && [ -s {key} ]; do echo {waiting}; sleep 10; done; "
              f"if ! grep -qE '.+@.+[|]' {CONFIG_DIR}/postfix-accounts.cf 2>/dev/null; then "
              f"addmailuser {shlex.quote(postmaster_mailbox)} \"$(cat {POSTMASTER_PASSWORD})\" || exit 1; fi; "
              "exec supervisord -c /etc/supervisor/supervisord.conf")
    return ["sh", "-c", script]


def postfix_overrides() -> str:
    """postfix-main.cf: the settings docker-mailserver appends to Postfix's main.cf, written out
    here because they are the ones an attacker probes (tests/test_mail_server.py runs them in a
    real Postfix). Mail to other domains needs a login: refused outright (5xx), not deferred as
    the image's default `defer_unauth_destination` does, so that a misconfiguration shows at once
    and a relay probe gets no queue slot."""
    return "\n".join([
        "# socle: written by socle (components/render/mail.py); changes here are replaced at the next deployment.",
        "mynetworks = 127.0.0.0/8 [::1]/128",
        "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
        "smtpd_tls_protocols = >=TLSv1.2",
        "smtpd_tls_mandatory_protocols = >=TLSv1.2",
        "smtp_tls_protocols = >=TLSv1.2",
        "smtpd_tls_auth_only = yes",
        "disable_vrfy_command = yes",
        "smtpd_helo_required = yes",
        # Password guessing and floods: per client, per minute (anvil; the container's own
        # loopback is exempt, smtpd_client_event_limit_exceptions = $mynetworks).
        "smtpd_client_connection_rate_limit = 30",
        "smtpd_client_auth_rate_limit = 10",
        "smtpd_client_message_rate_limit = 100",
        "",
    ])


def opendkim_files(domain: str, selector: str) -> dict[str, str]:
    """OpenDKIM's tables for one domain and selector, as docker-mailserver copies them from
    /tmp/docker-mailserver/opendkim (target/scripts/startup/setup.d/dmarc_dkim_spf.sh): the key
    itself goes beside them, at dkim_key_path()."""
    record = f"{selector}._domainkey.{domain}"
    return {
        f"{CONFIG_DIR}/opendkim/KeyTable": f"{record} {domain}:{selector}:/etc/opendkim/keys/{domain}/{selector}.private\n",
        f"{CONFIG_DIR}/opendkim/SigningTable": f"*@{domain} {record}\n",
        f"{CONFIG_DIR}/opendkim/TrustedHosts": "127.0.0.1\nlocalhost\n",
    }


def dkim_key_path(domain: str, selector: str) -> str:
    return f"{CONFIG_DIR}/opendkim/keys/{domain}/{selector}.private"


def virtual_aliases(aliases: dict[str, list[str]]) -> str:
    """postfix-virtual.cf: one line per address, its recipients comma-separated (Postfix
    virtual(5)); sorted, so that the file (and the container) changes only when the list does.
    Written even when empty: it lives on the config volume, and the last alias removed must go."""
    return "".join(f"{address} {','.join(sorted(set(to)))}\n" for address, to in sorted(aliases.items()))
