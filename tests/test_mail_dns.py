"""socle:mail's DNS records (MX, SPF, DKIM, DMARC and the mail host) in the zone socle would
publish: rendered as a zone file and checked by BIND's named-checkzone, then served by a real BIND
on 127.0.0.1 and judged from there by checkdmarc (SPF, DMARC) and dkimpy (a message signed with
the generated key verifies against the published record)."""

from __future__ import annotations

import copy
import subprocess
import time

import dns.message
import dns.query
import dns.resolver
import pytest

from components.config import ConfigError, load
from tests.conftest import run_values
from tests.services import free_port, shared_dir
from tests.test_systems import LE_PIC
from tests.tools import require
from tools.zone import zone_of

ZONE = LE_PIC["domain"]  # lepic.example.org, its own zone
MAIL = {"server": "http", "dmarc": {"policy": "quarantine", "reportTo": "dmarc@lepic.example.org"},
        "spfInclude": ["_spf.newsletter.example.net"]}


def with_mail(mail: dict | None = None, **extra) -> dict:
    v = copy.deepcopy(LE_PIC)
    v["mail"] = mail or MAIL
    v.update(extra)
    return v


@pytest.fixture(scope="module")
def published():
    run = run_values(with_mail())
    return run, zone_of(run, ZONE)


def test_named_checkzone_accepts_the_zone(published, tmp_path):
    _, zone = published
    (tmp_path / "zone").write_text(zone)
    res = subprocess.run([require("named-checkzone", "bind9-utils"), "-k", "fail", "-m", "fail", "-M", "fail",
                          "-n", "fail", ZONE, str(tmp_path / "zone")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr + zone


@pytest.fixture(scope="module")
def bind(published):
    """BIND serving the rendered zone on 127.0.0.1 (authoritative only)."""
    _, zone = published
    named = require("named", "bind9")
    d = shared_dir(None)
    port = free_port()
    (d / "zone").write_text(zone)
    (d / "named.conf").write_text(
        f'options {{ directory "{d}"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};\n'
        f'  pid-file none; recursion no; dnssec-validation no; }};\n'
        'controls { };\n'  # no rndc channel (its key file is bind's own)
        f'zone "{ZONE}" {{ type primary; file "{d}/zone"; }};\n')
    log = open(d / "named.log", "w")
    proc = subprocess.Popen([named, "-g", "-c", str(d / "named.conf")], stdout=log, stderr=subprocess.STDOUT)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port, resolver.lifetime = ["127.0.0.1"], port, 2.0
    deadline = time.monotonic() + 20
    while True:
        try:
            resolver.resolve(ZONE, "SOA")
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"named did not serve the zone:\n{(d / 'named.log').read_text()[-3000:]}")
            time.sleep(0.2)
    yield resolver
    proc.terminate()
    proc.wait(10)


def txt(resolver, name) -> list[str]:
    return [b"".join(r.strings).decode() for r in resolver.resolve(name, "TXT")]


def test_bind_serves_mx_and_the_mail_host_at_the_servers_address(bind, published):
    run, _ = published
    (mx,) = bind.resolve(ZONE, "MX")
    assert (mx.preference, str(mx.exchange)) == (10, f"mail.{ZONE}.")
    (a,) = bind.resolve(f"mail.{ZONE}", "A")
    assert str(a) == run.exports["servers"]["http"], "the MX host does not point at the mail server"


def test_checkdmarc_parses_spf_and_dmarc_as_published(bind):
    from checkdmarc.dmarc import parse_dmarc_record
    from checkdmarc.spf import parse_spf_record

    (spf,) = [t for t in txt(bind, ZONE) if t.startswith("v=spf1")]
    assert spf == "v=spf1 mx include:_spf.newsletter.example.net -all"
    mx_only = spf.replace(" include:_spf.newsletter.example.net", "")  # the include lives outside this zone
    parsed = parse_spf_record(mx_only, ZONE, resolver=bind)
    assert parsed["parsed"]["all"] == "fail" and not parsed["warnings"], parsed
    (mx,) = parsed["parsed"]["mechanisms"]
    assert (mx["action"], mx["mechanism"]) == ("pass", "mx"), mx
    assert [h["hostname"] for h in mx["hosts"]] == [f"mail.{ZONE}"], "checkdmarc did not follow the MX through BIND"
    (dmarc,) = txt(bind, f"_dmarc.{ZONE}")
    tags = parse_dmarc_record(dmarc, ZONE, resolver=bind)["tags"]
    assert {k: tags[k]["value"] for k in ("p", "adkim", "aspf")} == {"p": "quarantine", "adkim": "s", "aspf": "s"}
    assert tags["rua"]["value"][0]["address"] == "dmarc@lepic.example.org", tags["rua"]


def test_a_message_signed_with_the_generated_key_verifies_against_the_published_record(bind, published):
    import dkim

    run, _ = published
    (key,) = [r for r in run.resources if r.type.endswith("PrivateKey") and r.name == "mail-dkim-socle"]
    assert key.plain["algorithm"] == "RSA" and int(key.plain["rsaBits"]) == 2048
    private = key.outputs["privateKeyPem"].encode()
    message = (b"From: Le PIC <contact@lepic.example.org>\r\nTo: someone@example.net\r\n"
               b"Subject: hello\r\nDate: Thu, 26 Nov 2026 03:00:00 +0100\r\n\r\nBonjour.\r\n")
    signature = dkim.sign(message, b"socle", ZONE.encode(), private, include_headers=[b"from", b"to", b"subject"])

    def dnsfunc(name, timeout=5):
        return b"".join(b"".join(r.strings) for r in bind.resolve(name.decode().rstrip("."), "TXT"))

    assert dkim.verify(signature + message, dnsfunc=dnsfunc), "the published DKIM record does not verify"
    assert not dkim.verify(signature + message.replace(b"Bonjour", b"Payez"), dnsfunc=dnsfunc)


def test_the_dkim_key_is_a_secret_and_long_records_are_split(published):
    run, zone = published
    (key,) = [r for r in run.resources if r.name == "mail-dkim-socle"]
    assert key.options.get("protect") in (None, True)  # protected with the stack's other stateful resources
    assert key.outputs["privateKeyPem"].splitlines()[1] in run.secret_values
    (line,) = [ln for ln in zone.splitlines() if ln.startswith("socle._domainkey")]
    strings = line.split(" TXT ", 1)[1].split('" "')
    assert len(strings) >= 2 and all(len(s.strip('"')) <= 255 for s in strings), line


@pytest.mark.parametrize("change,says", [
    ({"mail": {**MAIL, "server": "nope"}}, "socle:mail.server: unknown server 'nope'"),
    ({"mail": {**MAIL, "server": "backup"}}, "socle:mail.server: server 'backup' has role backup"),
    ({"mail": {**MAIL, "hostname": "mail.example.net"}}, "'mail.example.net' is not a name directly under the domain"),
    ({"mail": {**MAIL, "dmarc": {"policy": "block"}}}, "socle:mail.dmarc.policy"),
    ({"dns": {"provider": "gandi", "records": [{"name": "@", "type": "TXT", "values": ['"v=spf1 a -all"']}]}},
     "socle:dns.records.0: socle:mail generates the SPF record"),
    ({"dns": {"provider": "gandi", "records": [{"name": "@", "type": "MX", "values": ["10 mx.example.net."]}]}},
     "socle:dns.records.0: socle:mail generates the MX record"),
])
def test_bad_mail_settings_are_named(change, says):
    v = with_mail()
    v.update(change)
    with pytest.raises(ConfigError) as exc:
        load(v, frozenset())
    assert says in str(exc.value), str(exc.value)
