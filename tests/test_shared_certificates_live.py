"""The certificate scheme behind a load balancer (components/load_balancer.py), run for real on
loopback: Pebble (Let's Encrypt's test ACME server, a Debian package) as the certificate
authority, two Caddy processes with socle's rendered Caddyfile sharing one Caddy storage
directory (the NFS share in production), and a TCP pass-through "load balancer" in front.

- Both run the same Caddyfile, as every server of a load-balanced set does. One of them takes the
  storage lock and asks for the certificate; the load balancer here is the worst possible one: it
  sends every validation request to the *other* proxy. The certificate is issued only if that one
  answers the challenge from the shared storage.
- The other then serves the very certificate the first obtained: the CA is asked once.

What loopback cannot show: OVH's load balancer itself, NFS locking across machines (CertMagic
documents its file storage for shared network file systems), and Let's Encrypt's validation
from several vantage points (Pebble validates from one)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from components.render.caddyfile import Route, render_caddyfile
from tests.services import free_port, wait_port
from tests.tools import require

NAME, OTHER = "cloud.socle.test", "other.socle.test"


class PassThrough(socketserver.ThreadingTCPServer):
    """A TCP load balancer in pass-through mode, like the listeners socle creates: bytes in, bytes
    out, TLS untouched. It sends every connection to `backend` and counts them."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, choose):
        self.choose, self.connections = choose, []
        super().__init__(("127.0.0.1", port), _Pipe)


class _Pipe(socketserver.BaseRequestHandler):
    def handle(self):
        name, port = self.server.choose()
        self.server.connections.append(name)
        up = socket.create_connection(("127.0.0.1", port), 5)

        def pump(a, b):
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        t = threading.Thread(target=pump, args=(up, self.request), daemon=True)
        t.start()
        pump(self.request, up)
        t.join(10)
        up.close()


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    """Pebble and its DNS (every name resolves to 127.0.0.1), validating on the load balancer's ports."""
    tmp = tmp_path_factory.mktemp("acme")
    pebble, challtest = require("pebble", "pebble"), require("pebble-challtestsrv", "pebble")
    openssl = require("openssl", "openssl")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=pebble", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem")], check=True, capture_output=True)
    ports = {k: free_port() for k in ("acme", "mgmt", "dns", "dnsmgmt", "lb_http", "lb_tls")}
    (tmp / "pebble.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{ports['acme']}", "managementListenAddress": f"127.0.0.1:{ports['mgmt']}",
        "certificate": str(tmp / "cert.pem"), "privateKey": str(tmp / "key.pem"),
        # Where Pebble connects to validate: the load balancer's ports (80 and 443 in production).
        "httpPort": ports["lb_http"], "tlsPort": ports["lb_tls"], "ocspResponderURL": "",
        "externalAccountBindingRequired": False}}))
    procs = []
    try:
        dns_log = tmp / "dns.log"
        procs.append(subprocess.Popen([challtest, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                                       "-dns01", f"127.0.0.1:{ports['dns']}", "-http01", "", "-https01", "",
                                       "-tlsalpn01", "", "-management", f"127.0.0.1:{ports['dnsmgmt']}"],
                                      stdout=open(dns_log, "w"), stderr=subprocess.STDOUT))
        log = tmp / "pebble.log"
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        procs.append(subprocess.Popen([pebble, "-config", str(tmp / "pebble.json"), "-dnsserver",
                                       f"127.0.0.1:{ports['dns']}"], stdout=open(log, "w"),
                                      stderr=subprocess.STDOUT, env=env))
        wait_port(ports["acme"], procs[-1], log=log)
        yield {"tmp": tmp, "ports": ports, "root": tmp / "cert.pem", "log": log}
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def _caddyfile(hostname: str, backend: int, http_port: int, https_port: int, acme: dict) -> str:
    """socle's rendered Caddyfile, pointed at Pebble instead of Let's Encrypt (two global options)."""
    text = render_caddyfile([Route(hostname, f"127.0.0.1:{backend}")], acme_email="admin@socle.test",
                            internal_ca=False, hsts_max_age=31536000, http_port=http_port, https_port=https_port,
                            default_sni=hostname)
    return text.replace("{\n", f"{{\n\tacme_ca https://127.0.0.1:{acme['ports']['acme']}/dir\n"
                               f"\tacme_ca_root {acme['root']}\n", 1)


class Caddy:
    def __init__(self, name: str, tmp: Path, storage: Path, text: str, http_port: int, https_port: int):
        self.dir = tmp / name
        self.dir.mkdir(exist_ok=True)
        (self.dir / "Caddyfile").write_text(text)
        self.log = self.dir / "caddy.log"
        self.http_port, self.https_port = http_port, https_port
        # Caddy's storage is $XDG_DATA_HOME/caddy: the same directory for every proxy of the set,
        # as /data (the NFS share) is for the containers in production.
        env = {"HOME": str(self.dir), "XDG_DATA_HOME": str(storage), "XDG_CONFIG_HOME": str(self.dir / "cfg"),
               "PATH": "/usr/bin:/bin"}
        self.proc = subprocess.Popen([require("caddy"), "run", "--config", str(self.dir / "Caddyfile"),
                                      "--adapter", "caddyfile"], env=env, stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT)
        wait_port(https_port, self.proc, log=self.log)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def _served_certificate(port: int, hostname: str, seconds: float = 60) -> bytes:
    """The DER certificate served for `hostname` on `port`, once it is not Caddy's placeholder."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 5) as s, ctx.wrap_socket(s, server_hostname=hostname) as t:
                der = t.getpeercert(binary_form=True)
                if der:
                    return der
        except (OSError, ssl.SSLError):
            pass
        time.sleep(1)
    raise TimeoutError(f"no certificate for {hostname} on port {port} after {seconds} s")


def _health_check(port: int, host: str) -> int:
    """As OVH's (Octavia's) HTTPS health monitor asks: TLS without SNI and without verifying the
    certificate, then `GET /` with the app's Host header. The status code."""
    import http.client

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), 5)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    conn.sock = ctx.wrap_socket(raw)  # no server_hostname: no SNI
    conn.request("GET", "/", headers={"Host": host})
    status = conn.getresponse().status
    conn.close()
    return status


def _issuer(der: bytes, tmp: Path) -> str:
    pem = tmp / "served.pem"
    pem.write_text(ssl.DER_cert_to_PEM_cert(der))
    return subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-issuer", "-serial", "-ext",
                           "subjectAltName"], capture_output=True, text=True, check=True).stdout


SOLVING = '"msg":"trying to solve challenge"'


def test_the_proxy_that_did_not_ask_answers_the_challenge_and_both_serve_one_certificate(acme):
    tmp, ports = acme["tmp"], acme["ports"]
    storage = tmp / "shared-storage"
    (tmp / "site").mkdir()
    backend = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp / "site")))
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    app = backend.server_address[1]
    proxies: dict[str, Caddy] = {}
    plan = {n: (free_port(), free_port()) for n in ("a", "b")}

    def other(kind: int):
        def choose():
            # Wait (Pebble waits too) until both run and the one solving has said so in its log.
            deadline = time.monotonic() + 5
            while True:
                asking = [n for n, c in list(proxies.items()) if SOLVING in c.log.read_text()]
                if (len(proxies) == 2 and len(asking) == 1) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            target = next((n for n in plan if n not in asking), "a")
            return target, plan[target][kind]
        return choose

    lbs = [PassThrough(ports["lb_http"], other(0)), PassThrough(ports["lb_tls"], other(1))]
    for lb in lbs:
        threading.Thread(target=lb.serve_forever, daemon=True).start()
    try:
        for n, (http_port, https_port) in plan.items():
            proxies[n] = Caddy(n, tmp, storage, _caddyfile(NAME, app, http_port, https_port, acme), http_port, https_port)
        certs = {n: _served_certificate(plan[n][1], NAME) for n in proxies}
        info = {n: _issuer(der, tmp) for n, der in certs.items()}
        logs = "\n".join(f"--- {n}:\n{c.log.read_text()[-2500:]}" for n, c in proxies.items())
        asked = [n for n, c in proxies.items() if SOLVING in c.log.read_text()]
        assert len(asked) == 1, f"proxies that asked the CA: {asked} (expected exactly one)\n{logs}"
        for n in proxies:
            assert "Pebble" in info[n] and NAME in info[n], f"{n} serves no certificate from the CA:\n{info[n]}\n{logs}"
        assert certs["a"] == certs["b"], f"the proxies serve different certificates:\n{info}"
        reached = {n for lb in lbs for n in lb.connections}
        assert reached and asked[0] not in reached, \
            f"validation reached {reached}: the test did not route it away from {asked[0]}"
        assert len(list(storage.rglob(f"{NAME}.crt"))) == 1, "the certificate is not in the shared storage"
        assert acme["log"].read_text().count("POST /finalize-order") <= 1, "the CA was asked more than once"
        for n in proxies:
            status = _health_check(plan[n][1], NAME)
            assert status < 400, f"{n} fails the load balancer's HTTPS health check (no SNI): {status}\n{logs}"
    finally:
        for c in proxies.values():
            c.stop()
        for lb in lbs:
            lb.shutdown()
            lb.server_close()
        backend.shutdown()
