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

import base64
import http.server
import json
import socketserver
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from components.render import monitoring as mon
from components.render.caddyfile import Route, render_caddyfile
from tests.services import free_port, shared_dir, wait_port
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


class SmtpSink(socketserver.ThreadingTCPServer):
    """An SMTP server on 127.0.0.1 that offers STARTTLS and AUTH PLAIN (after TLS only, as a mail
    provider's submission port does) and keeps every message with how it came."""
    daemon_threads = True

    def __init__(self, directory: Path):
        self.cert = directory / "smtp.crt"
        key = directory / "smtp.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(self.cert)],
                       check=True, capture_output=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(self.cert, key)
        self.messages: list[dict] = []
        super().__init__(("127.0.0.1", 0), _SmtpSession)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


class _SmtpSession(socketserver.BaseRequestHandler):
    def handle(self):
        sock, tls, login, mail = self.request, False, None, None
        reader = sock.makefile("rb")

        def send(*lines: str) -> None:
            sock.sendall("".join(f"{ln}\r\n" for ln in lines).encode())

        send("220 localhost ESMTP socle test sink")
        while line := reader.readline():
            cmd = line.decode().strip()
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                send("250-localhost", *(["250 AUTH PLAIN"] if tls else ["250 STARTTLS"]))
            elif verb == "STARTTLS":
                send("220 ready")
                sock = self.server.ctx.wrap_socket(sock, server_side=True)
                reader, tls = sock.makefile("rb"), True
            elif verb == "AUTH" and tls:
                blob = cmd.split(" ")[2] if cmd.count(" ") >= 2 else (send("334 "), reader.readline().decode().strip())[1]
                login = [x.decode() for x in base64.b64decode(blob).split(b"\0")[1:]]
                send("235 authenticated")
            elif verb == "MAIL":
                mail = {"from": cmd, "to": [], "tls": tls, "login": login}
                send("250 ok")
            elif verb == "RCPT" and mail is not None:
                mail["to"].append(cmd)
                send("250 ok")
            elif verb == "DATA" and mail is not None:
                send("354 end with a dot")
                body = []
                while (part := reader.readline()) not in (b".\r\n", b".\n", b""):
                    body.append(part)
                mail["data"] = b"".join(body).decode(errors="replace")
                self.server.messages.append(mail)
                mail = None
                send("250 queued")
            elif verb == "QUIT":
                send("221 bye")
                return
            elif verb in ("RSET", "NOOP"):
                send("250 ok")
            else:
                send("530 STARTTLS first" if not tls else "502 not here")


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
    urls = {**json.loads(_bundle())["ready"], **mon.node_exporter_part("app")["ready"]}
    for unit, url in urls.items():
        for address, port in where.items():
            url = url.replace(f"//{address}/", f"//127.0.0.1:{port}/")
        with urllib.request.urlopen(url, timeout=5) as res:
            assert res.status == 200, f"{unit}: {url} answered {res.status}"


def _bundle() -> str:
    w = mon.Watched(nodes={"web": "10.42.0.5:9100"})
    return mon.monitoring_bundle(prometheus=mon.render_prometheus(w, stack="t", retention_days=2),
                                 rules=mon.render_rules(mon.Thresholds(), w), alertmanager=mon.render_alertmanager(
                                     mon.Receivers(webhook_url="https://chat.example.org/x")),
                                 blackbox=mon.render_blackbox(), retention_days=2)
