"""socle:mail's server, the parts a real tool can run on loopback:

1. The certificate. The HTTPS proxy (a real Caddy, socle's rendered Caddyfile with the mail host's
   certificate-only route) gets the mail host's certificate from an ACME CA (Pebble, Let's
   Encrypt's test server), and files it exactly where the mail container's read-only mount and
   SSL_CERT_PATH/SSL_KEY_PATH say (components/render/mail.py). The container's start-up script
   (mail_command) waits while the files are missing and goes on once they are there.
2. Postfix. A real Postfix (Debian's 3.7) with socle's postfix-main.cf settings on top of a minimal
   base, using that very certificate: `postfix check` accepts it; over SMTP on 127.0.0.1 it offers
   STARTTLS with the mail host's certificate, accepts mail for the domain and delivers it,
   refuses to relay for another domain (5xx, not a retry) and answers no VRFY.

What loopback cannot show: docker-mailserver's own start-up (no Docker engine here: its env
variables and files follow its v15.1.0 source, cited in render/mail.py), Dovecot and OpenDKIM in
that image, and mail from the Internet (port 25 reputation, the reverse DNS OVH sets)."""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from components.render.caddyfile import Route, render_caddyfile
from components.render.caddyfile import LETS_ENCRYPT
from components.render.mail import CONFIG_DIR, POSTMASTER_PASSWORD, caddy_issuer_dir, mail_command, postfix_overrides
from tests.services import free_port, shared_dir, wait_port
from tests.test_shared_certificates_live import Caddy, _served_certificate, acme  # noqa: F401  (fixture)
from tests.tools import require

DOMAIN = "socle.test"
HOST = f"mail.{DOMAIN}"


def _caddyfile(acme: dict) -> str:
    """socle's Caddyfile with the mail host's route, its pinned issuer pointed at Pebble instead of
    Let's Encrypt (and Pebble's root trusted)."""
    text = render_caddyfile([Route(HOST, "", certificate_only=True)], acme_email=f"admin@{DOMAIN}",
                            internal_ca=False, hsts_max_age=31536000,
                            http_port=acme["ports"]["lb_http"], https_port=acme["ports"]["lb_tls"])
    assert f"dir {LETS_ENCRYPT}" in text, text
    return text.replace(f"dir {LETS_ENCRYPT}", f"dir https://127.0.0.1:{acme['ports']['acme']}/dir\n"
                                               f"\t\t\ttrusted_roots {acme['root']}")


def _startup(where: Path, tmp: Path, accounts: str | None) -> str:
    """The container's start-up script, run by sh with the certificate mount at `where`, the
    config volume and the password file in `tmp`, and stand-ins for the image's commands: what it
    printed, the stand-in addmailuser's arguments included."""
    (tmp / "bin").mkdir(parents=True, exist_ok=True)
    (tmp / "bin" / "addmailuser").write_text('#!/bin/sh\necho "addmailuser $1 $2"\n')
    (tmp / "bin" / "addmailuser").chmod(0o755)
    (tmp / "config").mkdir(exist_ok=True)
    if accounts is not None:
        (tmp / "config" / "postfix-accounts.cf").write_text(accounts)
    (tmp / "password").write_text("s3cret-from-pulumi")
    script = mail_command(HOST, f"postmaster@{DOMAIN}")[2]
    for real, here in (("/etc/socle-tls", str(where)), (CONFIG_DIR, str(tmp / "config")),
                       (POSTMASTER_PASSWORD, str(tmp / "password")), ("sleep 10", "sleep 0.2"),
                       ("exec supervisord -c /etc/supervisor/supervisord.conf", "echo started")):
        assert real in script, f"{real} is not in the start-up script any more: {script}"
        script = script.replace(real, here)
    env = {"PATH": f"{tmp / 'bin'}:/usr/bin:/bin"}
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=120).stdout


@pytest.fixture(scope="module")
def certificate(acme):
    """Caddy running socle's Caddyfile, once it holds the mail host's certificate: (the directory
    the mail container mounts, the Caddy process, the start-up script's result)."""
    tmp, ports = acme["tmp"], acme["ports"]
    storage = tmp / "caddy-data"
    # Where the mail container's mount points: Caddy's storage, then the issuer's directory.
    where = storage / "caddy" / "certificates" / caddy_issuer_dir(f"https://127.0.0.1:{ports['acme']}/dir") / HOST
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        # Started before Caddy: it must wait, then go on once the files are there.
        waiting = pool.submit(_startup, where, tmp / "first-start", None)
        caddy = Caddy("mail-proxy", tmp, storage, _caddyfile(acme), ports["lb_http"], ports["lb_tls"])
        try:
            _served_certificate(ports["lb_tls"], HOST, seconds=90)
            yield where, caddy, waiting.result(timeout=60)
        finally:
            caddy.stop()


def test_caddy_files_the_mail_hosts_certificate_where_the_mail_server_reads_it(certificate):
    where, caddy, _ = certificate
    found = sorted(str(p.relative_to(where.parents[3])) for p in where.parents[3].rglob(f"{HOST}.*"))
    assert (where / f"{HOST}.crt").is_file() and (where / f"{HOST}.key").is_file(), \
        f"not at {where}; Caddy filed: {found}\n{caddy.log.read_text()[-2000:]}"
    subject = subprocess.run(["openssl", "x509", "-in", str(where / f"{HOST}.crt"), "-noout", "-ext", "subjectAltName"],
                             capture_output=True, text=True, check=True).stdout
    assert f"DNS:{HOST}" in subject, subject


def test_the_mail_server_waits_for_the_certificate_then_makes_the_postmasters_mailbox_and_starts(certificate):
    _, _, out = certificate
    lines = out.strip().splitlines()
    assert lines[-2:] == [f"addmailuser postmaster@{DOMAIN} s3cret-from-pulumi", "started"], \
        f"no first mailbox, or no start, once the certificate was there: {out!r}"
    assert f"waiting for the HTTPS proxy to get the certificate of {HOST}" in out, \
        f"no word while it waited (a first deployment waits for Let's Encrypt): {out!r}"


def test_with_a_mailbox_already_there_the_start_up_makes_none(certificate, tmp_path):
    where, _, _ = certificate
    out = _startup(where, tmp_path, accounts="alice@socle.test|{SHA512-CRYPT}$6$x$y\n")
    assert out.strip().splitlines() == ["started"], out


def test_the_mail_hosts_https_route_serves_nothing(certificate):
    import http.client

    _, caddy, _ = certificate
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", caddy.https_port, context=ctx, timeout=5)
    conn.sock = ctx.wrap_socket(__import__("socket").create_connection(("127.0.0.1", caddy.https_port), 5),
                                server_hostname=HOST)
    conn.request("GET", "/", headers={"Host": HOST})
    assert conn.getresponse().status == 404


# ---------------------------------------------------------------------------- Postfix

# Only what a Postfix needs to run unprivileged-ish on loopback from a directory of its own; the
# settings under test are socle's, appended after it as docker-mailserver appends postfix-main.cf.
_MASTER = """\
{listen} inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
tlsmgr    unix - - n 1000? 1 tlsmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
local     unix - n n - - local
virtual   unix - n n - - virtual
lmtp      unix - - n - - lmtp
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


OUTSIDE = "127.0.0.2"
_LOOPBACK_ONLY = "mynetworks = 127.0.0.1/32"


def _base(d: Path, tls_dir: Path) -> str:
    nobody = pwd.getpwnam("nobody")
    return "\n".join([
        "compatibility_level = 3.6",
        f"queue_directory = {d}/queue",
        f"data_directory = {d}/data",
        f"maillog_file = {d}/maillog",
        f"maillog_file_prefixes = {d}",
        f"myhostname = {HOST}",
        f"mydomain = {DOMAIN}",
        "inet_interfaces = 127.0.0.1",
        "inet_protocols = ipv4",
        "mydestination =",
        "alias_maps =",
        "alias_database =",
        "smtputf8_enable = no",
        # A docker-mailserver keeps its mailboxes in Dovecot; here Postfix's own virtual(8) delivers.
        f"virtual_mailbox_domains = {DOMAIN}",
        f"virtual_mailbox_maps = texthash:{d}/etc/vmailbox",
        f"virtual_mailbox_base = {d}/mail",
        f"virtual_uid_maps = static:{nobody.pw_uid}",
        f"virtual_gid_maps = static:{nobody.pw_gid}",
        # The certificate the proxy got, from the directory the mail container mounts.
        f"smtpd_tls_chain_files = {tls_dir}/{HOST}.key, {tls_dir}/{HOST}.crt",
        "smtpd_tls_security_level = may",
        "smtpd_banner = $myhostname ESMTP",
        "",
    ])


@pytest.fixture(scope="module")
def postfix(certificate):
    if os.geteuid() != 0:
        pytest.skip("a real Postfix needs root to start (its daemons drop to the postfix user); .ci/run runs as root")
    exe = require("postfix", "postfix")
    tls_dir, _, _ = certificate
    d = shared_dir(None)
    port = free_port()
    conf = d / "etc"  # apart from the queue and mailboxes: `postfix check` wants it all root's
    conf.mkdir()
    # socle's mynetworks is the container's own loopback, which no Internet client can come from
    # (Docker forwards them with their own address); here the clients are on loopback too, so only
    # 127.0.0.1 stays "inside", and the Internet's clients come from 127.0.0.2 (OUTSIDE).
    (conf / "main.cf").write_text(_base(d, tls_dir) + postfix_overrides() + f"{_LOOPBACK_ONLY}\n")
    (conf / "master.cf").write_text(_MASTER.format(listen=f"127.0.0.1:{port}"))
    (conf / "vmailbox").write_text(f"alice@{DOMAIN} {DOMAIN}/alice/\n")
    # As docker-mailserver does with postfix-main.cf: appended, then `postconf -n` keeps the last of each.
    merged = subprocess.run(["postconf", "-c", str(conf), "-n"], capture_output=True, text=True, check=True)
    (conf / "main.cf").write_text(merged.stdout)
    (d / "queue").mkdir()
    (d / "data").mkdir()
    shutil.chown(d / "data", "postfix")
    (d / "mail").mkdir()
    shutil.chown(d / "mail", "nobody", "nogroup")
    check = subprocess.run([exe, "-c", str(conf), "check"], capture_output=True, text=True)
    log = (d / "maillog").read_text() if (d / "maillog").exists() else ""
    assert check.returncode == 0 and "warning" not in log + check.stderr, \
        f"postfix check refuses socle's settings:\n{check.stdout}{check.stderr}{log}"
    start = subprocess.run([exe, "-c", str(conf), "start"], capture_output=True, text=True)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        wait_port(port, seconds=30, log=d / "maillog")
        yield {"port": port, "dir": d, "conf": conf}
    finally:
        subprocess.run([exe, "-c", str(conf), "stop"], capture_output=True)
        time.sleep(0.5)
        shutil.rmtree(d, ignore_errors=True)


def test_postfix_takes_socles_settings_as_written(postfix):
    shown = subprocess.run(["postconf", "-c", str(postfix["conf"]), "-n"], capture_output=True, text=True, check=True)
    for line in postfix_overrides().splitlines():
        if line and not line.startswith("#") and not line.startswith("mynetworks"):
            name, value = (x.strip() for x in line.split("=", 1))
            assert f"{name} = {value}".rstrip() in shown.stdout, f"Postfix reads {name} otherwise:\n{shown.stdout}"


def _session(port: int) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.net", timeout=10,
                     source_address=(OUTSIDE, 0))
    s.ehlo()
    return s


def test_mynetworks_is_the_containers_own_loopback_only():
    """The one address range that may relay without a login: nothing Docker forwards comes from it."""
    import ipaddress

    line = next(x for x in postfix_overrides().splitlines() if x.startswith("mynetworks"))
    for net in line.split("=", 1)[1].split():
        assert ipaddress.ip_network(net.strip("[]").replace("]", "")).is_loopback, f"{net} may relay: {line}"


def test_starttls_with_the_certificate_of_the_mail_host_then_mail_for_the_domain_is_delivered(postfix):
    s = _session(postfix["port"])
    assert s.has_extn("starttls"), "STARTTLS is not offered"
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # Pebble's root; the name is checked below
    s.starttls(context=ctx)
    der = s.sock.getpeercert(binary_form=True)
    assert s.sock.version() in ("TLSv1.2", "TLSv1.3"), s.sock.version()
    text = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-ext", "subjectAltName"], input=der,
                          capture_output=True, check=True).stdout.decode()
    assert f"DNS:{HOST}" in text, f"Postfix serves another certificate: {text}"
    s.ehlo()
    s.sendmail("bob@example.net", [f"alice@{DOMAIN}"],
               f"From: bob@example.net\r\nTo: alice@{DOMAIN}\r\nSubject: socle test\r\n\r\nhello\r\n")
    s.quit()
    box = postfix["dir"] / "mail" / DOMAIN / "alice" / "new"
    deadline = time.monotonic() + 20
    while not (box.is_dir() and any(box.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert box.is_dir() and any(box.iterdir()), \
        f"accepted but not delivered:\n{(postfix['dir'] / 'maillog').read_text()[-2000:]}"


def test_relaying_to_another_domain_is_refused_outright(postfix):
    s = _session(postfix["port"])
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo()
    s.mail("spammer@example.net")
    code, msg = s.rcpt("victim@example.com")
    s.quit()
    assert code == 554 and b"Relay access denied" in msg, \
        f"a relay attempt got {code} {msg!r}: an open relay, or a deferral that keeps the attempt alive"


def test_unknown_recipients_of_the_domain_are_refused(postfix):
    s = _session(postfix["port"])
    s.mail("bob@example.net")
    code, msg = s.rcpt(f"nobody-here@{DOMAIN}")
    s.quit()
    assert code == 550, f"{code} {msg!r}"


def test_vrfy_tells_nothing(postfix):
    s = _session(postfix["port"])
    code, msg = s.verify(f"alice@{DOMAIN}")
    s.quit()
    assert code == 502 and b"disabled" in msg.lower(), f"{code} {msg!r}"


def test_auth_is_never_offered_on_the_mx_port(postfix):
    s = _session(postfix["port"])
    before = s.has_extn("auth")
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo()
    after = s.has_extn("auth")
    s.quit()
    assert not before and not after, "port 25 offers AUTH: passwords would be guessed there"
