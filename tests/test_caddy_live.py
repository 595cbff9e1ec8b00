"""Caddy, run for real on loopback ports with the rendered Caddyfile (internal CA) in front of a
small local HTTP backend: HTTP must redirect to HTTPS, HTTPS must serve the backend with HSTS,
TLS below 1.2 must be refused, and a maintenance route must answer 503."""

import http.client
import http.server
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

from components.render.caddyfile import Route, render_caddyfile
from tests.tools import require

HOST, MAINT, LB_MAINT = "app.socle.localhost", "down.socle.localhost", "lb-down.socle.localhost"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from backend, path={self.path}, proto={self.headers.get('X-Forwarded-Proto')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def caddy(tmp_path_factory):
    exe = require("caddy")
    tmp = tmp_path_factory.mktemp("caddy")
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    http_port, https_port = free_port(), free_port()
    text = render_caddyfile(
        [Route(HOST, f"127.0.0.1:{backend.server_address[1]}"), Route(MAINT, "127.0.0.1:9", maintenance=True),
         Route(LB_MAINT, "127.0.0.1:9", maintenance=True, health_path="/healthz?full=1")],
        acme_email=None, internal_ca=True, hsts_max_age=31536000, http_port=http_port, https_port=https_port,
    )
    (tmp / "Caddyfile").write_text(text)
    env = {"HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data"), "XDG_CONFIG_HOME": str(tmp / "cfg"), "PATH": "/usr/bin:/bin"}
    log = open(tmp / "caddy.log", "w")
    proc = subprocess.Popen([exe, "run", "--config", str(tmp / "Caddyfile"), "--adapter", "caddyfile"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    root = tmp / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    deadline = time.monotonic() + 30
    ctx = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"caddy exited with {proc.returncode}:\n{(tmp / 'caddy.log').read_text()[-3000:]}")
        if root.exists():
            try:
                ctx = ssl.create_default_context(cafile=str(root))
                get("127.0.0.1", https_port, HOST, ctx)
                break
            except (OSError, ssl.SSLError):
                pass
        time.sleep(0.2)
    else:
        proc.terminate()
        pytest.fail(f"caddy did not serve HTTPS within 30 s:\n{(tmp / 'caddy.log').read_text()[-3000:]}")
    yield {"http": http_port, "https": https_port, "ctx": ctx, "root": root}
    proc.terminate()
    proc.wait(10)
    backend.shutdown()
    log.close()


def get(ip, port, host, ctx=None, path="/"):
    """One request to ip:port for `host` (SNI and Host header), without any DNS lookup."""
    raw = socket.create_connection((ip, port), timeout=5)
    if ctx is not None:
        sock = ctx.wrap_socket(raw, server_hostname=host)
        conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=5)
    else:
        sock = raw
        conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.sock = sock
    conn.request("GET", path, headers={"Host": host if port in (80, 443) else f"{host}:{port}"})
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp, body


def test_http_redirects_to_https_with_the_same_host_and_path(caddy):
    resp, _ = get("127.0.0.1", caddy["http"], HOST, path="/some/page?x=1")
    assert resp.status == 308, f"HTTP answered {resp.status}, expected a permanent redirect"
    assert resp.getheader("Location") == f"https://{HOST}:{caddy['https']}/some/page?x=1", resp.getheader("Location")


def test_https_serves_the_backend_with_hsts_under_a_certificate_from_the_internal_ca(caddy):
    resp, body = get("127.0.0.1", caddy["https"], HOST, caddy["ctx"], path="/hello")
    assert resp.status == 200 and body.startswith("hello from backend, path=/hello"), (resp.status, body)
    assert "proto=https" in body, f"the backend was not told the request came over HTTPS: {body}"
    assert resp.getheader("Strict-Transport-Security") == "max-age=31536000", resp.getheaders()
    assert resp.getheader("Server") is None, "the Server header should be removed"


def test_https_is_not_trusted_without_the_internal_ca_root(caddy):
    with pytest.raises(ssl.SSLCertVerificationError):
        get("127.0.0.1", caddy["https"], HOST, ssl.create_default_context())


def test_tls_1_2_and_1_3_are_accepted(caddy):
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=str(caddy["root"]))
        ctx.minimum_version = ctx.maximum_version = version
        resp, _ = get("127.0.0.1", caddy["https"], HOST, ctx)
        assert resp.status == 200, version


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_below_1_2_is_refused_by_the_server(caddy):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Let the client offer TLS 1.0/1.1 (OpenSSL forbids them at the default security level), so a
    # failed handshake is the server's refusal, not the client's.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError) as exc:
        get("127.0.0.1", caddy["https"], HOST, ctx)
    # An alert *received* from the server: Caddy refused the version (a client-side refusal would
    # read NO_PROTOCOLS_AVAILABLE).
    assert "ALERT_PROTOCOL_VERSION" in str(exc.value), exc.value


def test_maintenance_route_answers_503_over_https(caddy):
    resp, body = get("127.0.0.1", caddy["https"], MAINT, caddy["ctx"])
    assert resp.status == 503 and "maintenance" in body, (resp.status, body)
    assert resp.getheader("Strict-Transport-Security"), "HSTS missing on the maintenance page"


def test_behind_a_load_balancer_the_health_path_stays_up_during_maintenance(caddy):
    resp, body = get("127.0.0.1", caddy["https"], LB_MAINT, caddy["ctx"], path="/healthz?full=1")
    assert resp.status == 200, (resp.status, body)
    resp, body = get("127.0.0.1", caddy["https"], LB_MAINT, caddy["ctx"], path="/")
    assert resp.status == 503 and "maintenance" in body and resp.getheader("Retry-After") == "600", (resp.status, body)
    assert resp.getheader("Strict-Transport-Security"), "HSTS missing on the maintenance page"


def test_unknown_hostname_gets_no_certificate(caddy):
    ctx = ssl.create_default_context(cafile=str(caddy["root"]))
    with pytest.raises(ssl.SSLError):
        get("127.0.0.1", caddy["https"], "other.socle.localhost", ctx)
