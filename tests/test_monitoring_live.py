"""socle:monitoring for real on 127.0.0.1, with Debian's own binaries and socle's rendered files:
Prometheus scrapes a real node_exporter (with the backup runner's textfile) and has the blackbox
exporter probe a real Caddy (socle's Caddyfile, its internal CA) in front of a backend; the
Watchdog reaches the heartbeat URL; the backend stops, EndpointDown fires and Alertmanager
delivers it to the chat webhook, a local HTTP server this test reads, and by e-mail to a local
SMTP server (STARTTLS with a certificate Alertmanager verifies, AUTH PLAIN) this test reads too.

Changed from the rendered files, for loopback and for time: listening ports (free ones instead of
9090/9093/9115/9100), scrape and evaluation every second instead of 30 s, EndpointDown's `for` and
Alertmanager's group wait cut to a second, the webhooks on plain HTTP (the local inbox), and the
blackbox exporter told to trust Caddy's internal CA, Alertmanager told to trust the SMTP server's
certificate (SSL_CERT_FILE, which Go reads). The rules' own timing is proved by promtool in
tests/test_monitoring_rules.py. Not run here: a real mail provider, and OVH's network."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from components.render import monitoring as mon
from components.render.caddyfile import Route, render_caddyfile
from tests.services import SmtpSink, free_port, shared_dir, wait_port
from tests.tools import require


class Inbox(http.server.ThreadingHTTPServer):
    """Records every POST body: the chat webhook and the heartbeat URL."""

    def __init__(self):
        self.posts: list[tuple[str, dict]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(h):  # noqa: N805
                body = h.rfile.read(int(h.headers.get("Content-Length", 0)))
                self.posts.append((h.path, json.loads(body or b"{}")))
                h.send_response(200)
                h.end_headers()
                h.wfile.write(b"ok")

            def log_message(h, *a):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def alerts(self, path: str) -> list[dict]:
        return [p for where, p in self.posts if where == path]


class Backend(http.server.ThreadingHTTPServer):
    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(h):  # noqa: N805
                h.send_response(200)
                h.end_headers()
                h.wfile.write(b"hello")

            def log_message(h, *a):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def _fast(rendered: str, ports: dict[str, int]) -> str:
    """The rendered Prometheus config on free ports, every second."""
    doc = json.loads(rendered.replace(mon.PROMETHEUS_ADDRESS, f"127.0.0.1:{ports['prometheus']}")
                     .replace(mon.ALERTMANAGER_ADDRESS, f"127.0.0.1:{ports['alertmanager']}")
                     .replace(mon.BLACKBOX_ADDRESS, f"127.0.0.1:{ports['blackbox']}"))
    doc["global"].update(scrape_interval="1s", evaluation_interval="1s")
    for job in doc["scrape_configs"]:
        job.pop("scrape_interval", None)
        job["scrape_timeout"] = "1s"
    return json.dumps(doc)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    exes = {name: require(name, package) for name, package in (
        ("prometheus", "prometheus"), ("prometheus-alertmanager", "prometheus-alertmanager"),
        ("prometheus-blackbox-exporter", "prometheus-blackbox-exporter"),
        ("prometheus-node-exporter", "prometheus-node-exporter"), ("caddy", "caddy"))}
    d = shared_dir(None)
    ports = {k: free_port() for k in ("prometheus", "alertmanager", "blackbox", "node", "http", "https")}
    procs: list[subprocess.Popen] = []

    def start(name: str, args: list[str], port: int, **kw) -> None:
        log = open(d / f"{name}.log", "w")
        procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **kw))
        wait_port(port, procs[-1], seconds=60, log=d / f"{name}.log")

    inbox, backend, smtp = Inbox(), Backend(), SmtpSink(d)
    try:
        # Caddy, socle's Caddyfile, its internal CA, in front of the backend.
        caddyfile = render_caddyfile([Route("localhost", f"127.0.0.1:{backend.server_address[1]}")], acme_email=None,
                                     internal_ca=True, hsts_max_age=31536000, http_port=ports["http"],
                                     https_port=ports["https"])
        (d / "Caddyfile").write_text(caddyfile)
        start("caddy", [exes["caddy"], "run", "--config", str(d / "Caddyfile"), "--adapter", "caddyfile"],
              ports["https"], env={"HOME": str(d), "XDG_DATA_HOME": str(d / "caddy-data"),
                                   "XDG_CONFIG_HOME": str(d / "caddy-config"), "PATH": "/usr/bin:/bin"})
        root = d / "caddy-data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        deadline = time.monotonic() + 30
        while not root.exists() and time.monotonic() < deadline:
            time.sleep(0.2)

        # node_exporter with the backup runner's textfile.
        textfile = d / "textfile"
        textfile.mkdir()
        (textfile / "socle_backup.prom").write_text('socle_backup_last_status{task="run"} 1\n')
        start("node", [exes["prometheus-node-exporter"], f"--web.listen-address=127.0.0.1:{ports['node']}",
                       f"--collector.textfile.directory={textfile}"], ports["node"])

        # The blackbox exporter: the rendered modules, trusting Caddy's internal CA.
        blackbox = json.loads(mon.render_blackbox())
        blackbox["modules"]["https_2xx"]["http"]["tls_config"] = {"ca_file": str(root)}
        (d / "blackbox.yml").write_text(json.dumps(blackbox))
        start("blackbox", [exes["prometheus-blackbox-exporter"], f"--config.file={d / 'blackbox.yml'}",
                           f"--web.listen-address=127.0.0.1:{ports['blackbox']}"], ports["blackbox"])

        # Alertmanager: the rendered config, ops to the chat webhook, the Watchdog to the heartbeat.
        # (Rendered with https:// URLs, as socle requires; the local inbox speaks plain HTTP.)
        # And e-mail through the local SMTP server, as rendered (STARTTLS required, AUTH).
        am = json.loads(mon.render_alertmanager(mon.Receivers(
            webhook_url="https://inbox.invalid/chat", heartbeat_url="https://inbox.invalid/heartbeat",
            emails=("ops@example.org", "oncall@example.org"), email_from="alerts@example.org",
            smarthost=f"localhost:{smtp.port}", smtp_password="smtp-secret"))
                        .replace("https://inbox.invalid/", inbox.url("/")))
        am["route"].update(group_wait="1s", group_interval="2s")
        (d / "alertmanager.yml").write_text(json.dumps(am))
        start("alertmanager", [exes["prometheus-alertmanager"], f"--config.file={d / 'alertmanager.yml'}",
                               f"--web.listen-address=127.0.0.1:{ports['alertmanager']}", "--cluster.listen-address=",
                               f"--storage.path={d / 'am-data'}"], ports["alertmanager"],
              env={"SSL_CERT_FILE": str(smtp.cert), "PATH": "/usr/bin:/bin"})

        # Prometheus: the rendered config and rules.
        watched = mon.Watched(nodes={"web": f"127.0.0.1:{ports['node']}"},
                              endpoints={f"https://localhost:{ports['https']}/": "web"}, backed_up=("web",))
        rules = json.loads(mon.render_rules(mon.Thresholds(), watched))
        for group in rules["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == "EndpointDown":
                    rule["for"] = "1s"
        (d / "rules.yml").write_text(json.dumps(rules))
        (d / "prometheus.yml").write_text(_fast(mon.render_prometheus(watched, stack="live", retention_days=2), ports)
                                          .replace(mon.RULES, str(d / "rules.yml")))
        start("prometheus", [exes["prometheus"], f"--config.file={d / 'prometheus.yml'}",
                             f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                             f"--storage.tsdb.path={d / 'tsdb'}"], ports["prometheus"])
        # Listening is not serving: queries get 503 until its storage is open (as host setup
        # waits on the servers, host/socle_host_setup.py wait_ready).
        for name in ("prometheus", "alertmanager"):
            _ready(f"http://127.0.0.1:{ports[name]}/-/ready", d / f"{name}.log")
        yield {"dir": d, "ports": ports, "inbox": inbox, "backend": backend, "smtp": smtp}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        backend.shutdown()
        inbox.shutdown()
        smtp.shutdown()


def _ready(url: str, log: Path, seconds: float = 60) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready within {seconds:.0f} s:\n{log.read_text()[-2000:]}")
        time.sleep(0.3)


def _query(stack, expr: str) -> list[dict]:
    import urllib.parse
    import urllib.request

    url = f"http://127.0.0.1:{stack['ports']['prometheus']}/api/v1/query?query={urllib.parse.quote(expr)}"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)["data"]["result"]


def _wait(what: str, check, stack, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.name}:\n{p.read_text()[-1500:]}" for p in sorted(Path(stack["dir"]).glob("*.log")))
    raise AssertionError(f"{what} did not happen within {seconds:.0f} s\n{logs}")


def test_prometheus_scrapes_node_exporter_with_the_backup_metrics(stack):
    got = _wait("node_exporter's metrics in Prometheus", lambda: _query(stack, 'socle_backup_last_status{server="web"}'), stack)
    assert got[0]["value"][1] == "1"
    assert _query(stack, 'up{job="node",server="web"}')[0]["value"][1] == "1"


def test_the_probe_passes_through_caddy_then_the_watchdog_reaches_the_heartbeat(stack):
    got = _wait("a passing HTTPS probe", lambda: [r for r in _query(stack, 'probe_success{job="https"}')
                                                  if r["value"][1] == "1"], stack)
    assert got[0]["metric"]["app"] == "web"
    beats = _wait("the Watchdog at the heartbeat URL", lambda: stack["inbox"].alerts("/heartbeat"), stack)
    assert beats[0]["alerts"][0]["labels"]["alertname"] == "Watchdog"
    assert not [p for p in stack["inbox"].alerts("/chat") if "Watchdog" in json.dumps(p)], \
        "the Watchdog must go to the heartbeat only, not wake anyone"


def test_a_stopped_backend_fires_endpoint_down_to_the_chat(stack):
    _wait("a passing HTTPS probe", lambda: [r for r in _query(stack, 'probe_success{job="https"}')
                                            if r["value"][1] == "1"], stack)
    stack["backend"].shutdown()
    stack["backend"].server_close()
    posts = _wait("EndpointDown in the chat", lambda: [p for p in stack["inbox"].alerts("/chat")
                                                      if "EndpointDown" in json.dumps(p)], stack, seconds=90)
    text = json.dumps(posts[0])
    assert f"localhost:{stack['ports']['https']}" in text and "FIRING" in text, text
    mails = _wait("EndpointDown by e-mail", lambda: [m for m in stack["smtp"].messages if "EndpointDown" in m["data"]],
                  stack, seconds=60)
    mail = mails[0]
    assert mail["tls"] and mail["login"] == ["alerts@example.org", "smtp-secret"], \
        f"sent without STARTTLS or without the configured login: {mail['tls']} {mail['login']}"
    assert "alerts@example.org" in mail["from"] and sorted(mail["to"]) == [
        "RCPT TO:<oncall@example.org>", "RCPT TO:<ops@example.org>"], mail
    assert f"localhost:{stack['ports']['https']}" in mail["data"], mail["data"][:2000]
    assert not [m for m in stack["smtp"].messages if "Watchdog" in m["data"].split("\n\n", 1)[0]], \
        "the Watchdog must not be mailed"


def test_the_readiness_urls_the_bundles_give_answer_on_the_real_services(stack):
    """host/socle_host_setup.py waits for these after a restart: each must exist on Debian's versions."""
    import urllib.request

    ports = stack["ports"]
    where = {mon.PROMETHEUS_ADDRESS: ports["prometheus"], mon.ALERTMANAGER_ADDRESS: ports["alertmanager"],
             mon.BLACKBOX_ADDRESS: ports["blackbox"], f"127.0.0.1:{mon.NODE_PORT}": ports["node"]}
    from tests.test_monitoring import _monitoring_bundle

    urls = {**json.loads(_monitoring_bundle())["ready"], **mon.node_exporter_part("app")["ready"]}
    for unit, url in urls.items():
        for address, port in where.items():
            url = url.replace(f"//{address}/", f"//127.0.0.1:{port}/")
        with urllib.request.urlopen(url, timeout=5) as res:
            assert res.status == 200, f"{unit}: {url} answered {res.status}"



# ---------------------------------------------------------------------------- unattended-upgrades' reports


def test_an_upgrade_report_reaches_the_alert_addresses_through_msmtp_over_starttls(tmp_path):
    """The rendered msmtprc and aliases, the real msmtp (Debian's, as msmtp-mta's sendmail), fed the
    message unattended-upgrades 2.9 builds (send_summary_mail: -oi -t, the recipients in To), a
    password that needs quoting; and apt-config parses the apt settings."""
    from email.message import Message

    msmtp = require("msmtp", "msmtp")
    smtp = SmtpSink(tmp_path)
    try:
        password = ' "p "w\\ #1 x" '
        part = mon.upgrade_mail_part(mon.Receivers(
            emails=("ops@example.org", "oncall@example.org"), email_from="alerts@example.org",
            smarthost=f"localhost:{smtp.port}", smtp_password=password))
        files = part["files"]
        assert files[mon.SMTP_PASSWORD]["mode"] == "0600" and files[mon.SMTP_PASSWORD]["secret"]
        assert password not in files[mon.MSMTPRC]["content"]
        aliases, secret = tmp_path / "aliases", tmp_path / "password"
        aliases.write_text(files[mon.MSMTP_ALIASES]["content"])
        secret.write_text(files[mon.SMTP_PASSWORD]["content"])
        rc = tmp_path / "msmtprc"
        rc.write_text(files[mon.MSMTPRC]["content"].replace(mon.TRUST_FILE, str(smtp.cert))
                      .replace(mon.MSMTP_ALIASES, str(aliases)).replace(mon.SMTP_PASSWORD, str(secret))
                      .replace("syslog LOG_MAIL", "syslog off"))
        rc.chmod(0o600)
        conf = tmp_path / "apt.conf"
        conf.write_text(files[mon.UPGRADE_MAIL_CONF]["content"])
        dump = subprocess.run(["apt-config", "-c", str(conf), "dump", "Unattended-Upgrade"], capture_output=True,
                              text=True, check=True).stdout
        to = dump.split('Unattended-Upgrade::Mail "')[1].split('"')[0]
        assert 'Unattended-Upgrade::MailReport "on-change";' in dump and 'Sender "alerts@example.org"' in dump, dump
        msg = Message()  # as unattended-upgrades' _send_mail_using_sendmail
        msg["Subject"] = "unattended-upgrades result for web: SUCCESS"
        msg["From"] = "alerts@example.org"
        msg["To"] = to
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_payload("Packages that were upgraded:\n openssl\n")
        res = subprocess.run([msmtp, "-C", str(rc), "-oi", "-t"], input=msg.as_string(), capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        # apt-listchanges' news go to root: the alias sends them to the same addresses.
        res = subprocess.run([msmtp, "-C", str(rc), "root"], input="Subject: news\n\nNEWS.Debian\n",
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
    finally:
        smtp.shutdown()
    report, news = smtp.messages
    for mail in (report, news):
        assert mail["tls"] and mail["login"] == ["alerts@example.org", password], (mail["tls"], mail["login"])
        assert sorted(mail["to"]) == ["RCPT TO:<oncall@example.org>", "RCPT TO:<ops@example.org>"], mail["to"]
    assert "openssl" in report["data"] and "NEWS.Debian" in news["data"]


def test_msmtp_refuses_a_server_without_starttls_rather_than_send_in_clear(tmp_path):
    msmtp = require("msmtp", "msmtp")
    plain = SmtpSink(tmp_path, starttls=False)
    try:
        part = mon.upgrade_mail_part(mon.Receivers(emails=("ops@example.org",), email_from="alerts@example.org",
                                                   smarthost=f"localhost:{plain.port}", smtp_password="pw"))
        rc = tmp_path / "msmtprc"
        (tmp_path / "password").write_text("pw")
        rc.write_text(part["files"][mon.MSMTPRC]["content"].replace(mon.TRUST_FILE, str(plain.cert))
                      .replace("syslog LOG_MAIL", "syslog off").replace(f"aliases {mon.MSMTP_ALIASES}", "")
                      .replace(mon.SMTP_PASSWORD, str(tmp_path / "password")))
        rc.chmod(0o600)
        res = subprocess.run([msmtp, "-C", str(rc), "ops@example.org"], input="Subject: x\n\nx\n",
                             capture_output=True, text=True, timeout=60)
    finally:
        plain.shutdown()
    assert res.returncode != 0 and "TLS" in res.stderr, res.stderr
    assert not plain.messages, "sent without TLS"
