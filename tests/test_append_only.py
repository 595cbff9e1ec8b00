"""The backup server, for real, as a compromised app server sees it: an sshd on 127.0.0.1 with
socle's rendered drop-in and authorized keys (each key forced to `rclone serve restic --stdio
--append-only` in its client's own directory), restic and rclone from Debian.

A client key can add snapshots and read its own repository back; it cannot delete or forget a
snapshot, reach another client's repository, open a shell, read a file of the host or use SFTP.
The retention is applied by the backup server itself (the runner's `prune`), and a repository that
was wiped makes the next nightly run fail loudly instead of starting again empty."""

import json
import os
import pwd
import shutil
import subprocess
import sys

import pytest

from components.render.backup import render_restic_keys
from components.render.cloudinit import render_sshd_config
from tests.services import ROOT_USER, PingServer, free_port, shared_dir, wait_port
from tests.test_backup_live import RUNNER, failed, make_volume, ok
from tests.tools import require

USER = "socle-restic-ao"
CLIENTS = ("web", "shop")


@pytest.fixture(scope="module")
def server():
    if not ROOT_USER:
        pytest.fail("the backup-server test creates a system user and runs sshd: run it as root (CI does)")
    for tool, pkg in (("rclone", "rclone"), ("restic", "restic"), ("sshd", "openssh-server")):
        require(tool, pkg)
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh",
                        USER], check=True)
    # No password at all ('*'): without PAM, as here, sshd refuses locked ('!') accounts.
    subprocess.run(["usermod", "-p", "*", "-s", "/bin/sh", USER], check=True)
    d = shared_dir(None)
    repos = d / "repos"
    repos.mkdir()
    shutil.chown(repos, USER, USER)
    os.chmod(repos, 0o700)
    for name in ("host", *CLIENTS):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    keys = d / "restic_authorized_keys"
    keys.write_text(render_restic_keys([(c, (d / f"{c}.pub").read_text()) for c in CLIENTS], root=str(repos)))
    os.chmod(keys, 0o644)
    port = free_port()
    (d / "10-socle.conf").write_text(render_sshd_config(port=port, allow_users=[USER], keyed_users={USER: str(keys)}))
    (d / "sshd_config").write_text(f"HostKey {d}/host\nPidFile {d}/sshd.pid\nListenAddress 127.0.0.1\n"
                                   # /tmp is world-writable, which StrictModes refuses on the key file's path.
                                   f"Include {d}/10-socle.conf\nSubsystem sftp internal-sftp\nUsePAM no\nStrictModes no\n")
    os.makedirs("/run/sshd", exist_ok=True)
    log = d / "sshd.log"
    proc = subprocess.Popen([shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    wait_port(port, proc, log=log)

    class Server:
        pass

    srv = Server()
    srv.dir, srv.repos, srv.port, srv.log = d, repos, port, log

    def ssh_options(client):
        return ["-i", str(d / client), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]

    def target(client):  # as the platform renders it for an app server
        return {"name": "backup-server", "kind": "rclone-ssh", "repository": "rclone:", "appendOnly": True,
                "sshHost": f"{USER}@127.0.0.1", "port": port, "sshOptions": ssh_options(client)}

    srv.ssh_options, srv.target = ssh_options, target
    yield srv
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(d, ignore_errors=True)


def client_job(tmp, server, client, ping=None, password="pw-web"):
    tmp.chmod(0o755)
    vol = tmp / f"volume-{client}"
    if not vol.exists():
        vol.mkdir()
        make_volume(vol)
    manifest = {"version": 1, "host": client, "stack": "test", "workDir": str(tmp / f"work-{client}"),
                "volumes": [{"name": f"data-{client}", "path": str(vol)}], "databases": [],
                "targets": [server.target(client)], "retention": {"daily": 7},
                "check": {"subset": "100%", "maxAgeHours": 36}}
    (tmp / f"{client}.json").write_text(json.dumps(manifest))
    env = f"RESTIC_PASSWORD={password}\n" + (f"SOCLE_PING_URL={ping.url}\n" if ping else "")
    (tmp / f"{client}.env").write_text(env)

    def run(*args):
        return subprocess.run([sys.executable, str(RUNNER), "--manifest", str(tmp / f"{client}.json"),
                               "--env-file", str(tmp / f"{client}.env"), *args], capture_output=True, text=True,
                              timeout=300)
    return run


def restic(server, client, password, *args, timeout=120):
    program = " ".join(["ssh", *server.ssh_options(client), "-p", str(server.port), f"{USER}@127.0.0.1"])
    return subprocess.run(["restic", "-o", f"rclone.program={program}", "-r", "rclone:", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "RESTIC_PASSWORD": password})


@pytest.fixture
def ping():
    p = PingServer()
    yield p
    p.stop()


def test_a_client_adds_snapshots_and_cannot_delete_one(server, tmp_path):
    run = client_job(tmp_path, server, "web")
    ok(run("init"), "init over the append-only server")
    ok(run("run"), "first night")
    ok(run("run"), "second night")
    out = run("run").stdout
    assert "append-only: its retention is applied by the backup server itself" in out
    snaps = json.loads(restic(server, "web", "pw-web", "snapshots", "--json").stdout)
    assert len(snaps) == 3
    res = restic(server, "web", "pw-web", "forget", snaps[0]["id"], timeout=300)
    assert res.returncode != 0 and "403" in res.stderr, res.stderr[-800:]
    assert len(json.loads(restic(server, "web", "pw-web", "snapshots", "--json").stdout)) == 3, \
        "a client key deleted a snapshot"


def test_a_client_key_reaches_only_its_own_repository(server, tmp_path):
    ok(client_job(tmp_path, server, "web")("init"), "init of this client (or: it exists)")
    ok(client_job(tmp_path, server, "shop", password="pw-shop")("init"), "init of the other client")
    ok(client_job(tmp_path, server, "shop", password="pw-shop")("run"), "the other client's night")
    # With web's key, whatever the password or path asked for, it is web's repository that answers.
    res = restic(server, "web", "pw-shop", "snapshots")
    assert res.returncode != 0 and ("wrong password" in res.stderr or "no key found" in res.stderr.lower()), res.stderr
    # Whatever is asked, the forced command answers (rclone's HTTP/2, binary): bytes, not text.
    listing = subprocess.run(["ssh", *server.ssh_options("web"), "-p", str(server.port), f"{USER}@127.0.0.1",
                              "cat /etc/passwd; ls " + str(server.repos)], capture_output=True, timeout=60)
    assert b"root:" not in listing.stdout and b"shop" not in listing.stdout, listing.stdout[:300]
    sftp = subprocess.run(["sftp", "-b", "-", *server.ssh_options("web"),
                           "-P", str(server.port), f"{USER}@127.0.0.1"], input=b"ls /\nget /etc/passwd\n",
                          capture_output=True, timeout=60)
    assert sftp.returncode != 0 and b"root:" not in sftp.stdout, sftp.stdout[:300] + sftp.stderr[:300]


def test_the_backup_server_applies_the_retention_itself(server, tmp_path):
    run = client_job(tmp_path, server, "web", password="pw-web")
    ok(run("init"), "init")
    for day in range(1, 11):
        ok(run("run", "--time", f"2026-10-{day:02d} 03:00:00"), f"night {day}")
    before = len(json.loads(restic(server, "web", "pw-web", "snapshots", "--json").stdout))
    # As socle-prune.service does on the backup server: local repositories, one password each.
    manifest = {"version": 1, "host": "backup", "retention": {"daily": 3},
                "targets": [{"name": "web", "kind": "local", "repository": str(server.repos / "web"), "host": "web",
                             "passwordEnv": "SOCLE_RESTIC_PASSWORD_WEB"}]}
    # As the unit does: root reads the root-only manifest and passwords, then the runner drops to the
    # repositories' owner (--run-as) before touching them.
    conf = shared_dir(None)
    (conf / "prune.json").write_text(json.dumps(manifest))
    (conf / "prune.env").write_text("SOCLE_RESTIC_PASSWORD_WEB=pw-web\n")
    for f in ("prune.json", "prune.env"):
        os.chmod(conf / f, 0o600)
    shutil.copy(RUNNER, conf / "socle_backup.py")
    res = subprocess.run(["/usr/bin/python3", str(conf / "socle_backup.py"), "--manifest", str(conf / "prune.json"),
                          "--env-file", str(conf / "prune.env"), "--run-as", USER, "prune"],
                         capture_output=True, text=True, timeout=300, cwd="/")
    shutil.rmtree(conf, ignore_errors=True)
    ok(res, "server-side prune as the restic user")
    after = json.loads(restic(server, "web", "pw-web", "snapshots", "--json").stdout)
    assert before >= 10 and len(after) == 3, (before, len(after))
    import pwd

    uid = pwd.getpwnam(USER).pw_uid
    rooted = [str(f) for f in (server.repos / "web").rglob("*") if f.stat().st_uid != uid]
    assert not rooted, f"the prune wrote into the repository as another user than {USER}: {rooted[:5]}"
    ok(run("run"), "the client still appends after the server's prune")


def test_a_wiped_repository_fails_the_next_night_loudly_and_creates_nothing(server, tmp_path, ping):
    run = client_job(tmp_path, server, "web", ping=ping)
    ok(run("init"), "init")
    ok(run("run"), "a night")
    shutil.rmtree(server.repos / "web")
    out = failed(run("run"), "a night after the repository was wiped")
    assert "does not exist any more" in out, out[-1200:]
    assert ping.hits[-1] == "/ping/backup/fail"
    assert not (server.repos / "web").exists(), "the nightly run re-created an empty repository"
