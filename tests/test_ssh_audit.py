"""The rendered sshd configuration, audited by ssh-audit against a real sshd on 127.0.0.1.

sshd is OpenSSH 9.2 of Debian 12, as on the servers, started as Debian starts it: the drop-in
included first, and the three host keys Debian generates (RSA 3072, ECDSA, Ed25519). ssh-audit
(pinned from PyPI: Debian 12's 2.5.0 knows neither kex-strict nor sntrup761) must find no failure.
Its only warnings are the two curve25519 key exchanges, kept on purpose for Go's SSH client
(pulumi-command, rclone), which has no post-quantum key exchange; the test names them, so any
other warning fails it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.render.cloudinit import render_sshd_config, sshd_users
from tests.services import free_port, wait_port
from tests.tools import require, run

EXPECTED_WARNINGS = {("kex", "curve25519-sha256"), ("kex", "curve25519-sha256@libssh.org")}


@pytest.mark.parametrize("role", ["app", "backup"])
def test_ssh_audit_finds_no_failure_in_the_rendered_sshd(tmp_path, role):
    sshd, keygen = require("sshd", "openssh-server"), require("ssh-keygen", "openssh-client")
    for kind, bits in (("rsa", ["-b", "3072"]), ("ecdsa", []), ("ed25519", [])):
        subprocess.run([keygen, "-q", "-t", kind, *bits, "-N", "", "-f", str(tmp_path / f"host_{kind}")], check=True)
    port = free_port()
    allow, keyed = sshd_users(role, "deploy")
    (tmp_path / "10-socle.conf").write_text(render_sshd_config(port=port, allow_users=allow, keyed_users=keyed))
    (tmp_path / "sshd_config").write_text(
        f"Include {tmp_path}/10-socle.conf\n"
        + "".join(f"HostKey {tmp_path}/host_{k}\n" for k in ("rsa", "ecdsa", "ed25519"))
        + f"PidFile {tmp_path}/sshd.pid\nListenAddress 127.0.0.1\nUsePAM no\nSubsystem sftp internal-sftp\n")
    os.makedirs("/run/sshd", exist_ok=True)
    log = tmp_path / "sshd.log"
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(tmp_path / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    try:
        wait_port(port, proc, log=log)
        audit = Path(sys.executable).parent / "ssh-audit"
        res = run([str(audit), "-j", "-p", str(port), "127.0.0.1"])
        report = json.loads(res.stdout)
    finally:
        proc.terminate()
        proc.wait(10)
    fails = [(s, a["algorithm"], a["notes"]["fail"]) for s in ("kex", "key", "enc", "mac")
             for a in report.get(s, []) if a.get("notes", {}).get("fail")]
    warns = {(s, a["algorithm"]) for s in ("kex", "key", "enc", "mac")
             for a in report.get(s, []) if a.get("notes", {}).get("warn")}
    assert not fails, f"ssh-audit fails the {role} server's sshd on: {fails}"
    assert warns == EXPECTED_WARNINGS, f"ssh-audit warnings changed: {sorted(warns)}"
    assert not report.get("cves"), f"ssh-audit lists CVEs for this sshd: {report['cves']}"
    offered = {a["algorithm"] for a in report["kex"]}
    assert "sntrup761x25519-sha512@openssh.com" in offered, "the post-quantum key exchange is not offered"
    assert {a["algorithm"] for a in report["key"]} <= {"ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"}
