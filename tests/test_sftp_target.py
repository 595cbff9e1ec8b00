"""backup.targets.sftp: an existing SFTP host that socle does not create (Skills Hub's 4 TB disk,
SSH on 4660): each server backs up with its own key, the host key is pinned from the config and
never trusted on first use. The live half (a real sshd, a pinned and an impostor key) is in
tests/test_backup_live.py."""

from __future__ import annotations

import json

import pytest

from components.config import load
from components.render.backup import SFTP_KNOWN_HOSTS
from tests.conftest import errors_of, run_values, stack_values

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE5lGM2dxmmYaTiHi9/T5AsDtp2i0EalI5n2SlItHHa7"
SKILLS = {"host": "backup.skills.example.org", "port": 4660, "user": "socle", "path": "/srv/tc-data/backups",
          "hostKey": HOST_KEY}


def prod_with(sftp: dict) -> dict:
    v = stack_values("prod")
    v["backup"]["targets"]["sftp"] = sftp
    return v



def test_each_backed_up_server_pins_the_host_key_and_gets_a_target_beside_the_others():
    run = run_values(prod_with(SKILLS), stack="prod")
    installs = [r for r in run.of_type("command:remote:Command") if r.name.endswith("backup-install")]
    assert installs, "no backup job in prod"
    for r in installs:
        server = "socle-prod-" + r.name.removesuffix("-backup-install")
        bundle = json.loads(r.plain["stdin"])
        assert bundle["files"][SFTP_KNOWN_HOSTS]["content"] == f"[backup.skills.example.org]:4660 {HOST_KEY}\n", \
            f"{r.name}: the known_hosts line is not the pinned key"
        targets = {t["name"]: t for t in bundle["manifest"]["targets"]}
        assert {"bucket", "backup-server", "sftp"} <= set(targets), f"{r.name}: targets {sorted(targets)}"
        sftp = targets["sftp"]
        assert sftp["repository"] == f"sftp:socle@backup.skills.example.org:/srv/tc-data/backups/{server}"
        assert sftp["port"] == 4660 and sftp["sshHost"] == "socle@backup.skills.example.org"
        options = " ".join(sftp["sshOptions"])
        assert "StrictHostKeyChecking=yes" in options and f"UserKnownHostsFile={SFTP_KNOWN_HOSTS}" in options
        assert "accept-new" not in options and "GlobalKnownHostsFile=/dev/null" in options, options
    keys = run.exports["sftpAuthorizedKeys"]
    assert set(keys) == {r.name.removesuffix("-backup-install") for r in installs}, keys
    for name, line in keys.items():
        address = run.exports["servers"][name]
        assert line.startswith(f'restrict,from="{address}" ssh-ed25519 AAAA'), line
        assert line.endswith(f" socle-prod-{name}"), line
    assert "sftpAuthorizedKeys" in run.export_secrets or all("PRIVATE" not in k for k in keys.values())


def test_without_an_sftp_target_nothing_changes():
    run = run_values(stack_values("prod"), stack="prod")
    assert "sftpAuthorizedKeys" not in run.exports
    for r in run.of_type("command:remote:Command"):
        if r.name.endswith("backup-install"):
            assert SFTP_KNOWN_HOSTS not in json.loads(r.plain["stdin"])["files"]


def test_an_ssh_keyscan_line_is_accepted_as_the_key_it_holds():
    cfg, _ = load(prod_with({**SKILLS, "hostKey": f"[backup.skills.example.org]:4660 {HOST_KEY}"}), frozenset())
    assert cfg.backup.targets.sftp.host_key == HOST_KEY


@pytest.mark.parametrize("change,says", [
    ({"hostKey": "SHA256:3q2+7w7d0eE"}, "socle:backup.targets.sftp.hostKey: is not an SSH host key"),
    ({"hostKey": HOST_KEY[:-8]}, "socle:backup.targets.sftp.hostKey"),
    ({"path": "/srv/../etc"}, "socle:backup.targets.sftp.path"),
    ({"path": "srv/backups"}, "socle:backup.targets.sftp.path"),
    ({"host": "backup server"}, "'backup server' is neither a host name nor an IP address"),
    ({"user": "root; rm"}, "socle:backup.targets.sftp.user"),
    ({"host": "203.0.113"}, "'203.0.113' is neither a host name nor an IP address"),
    ({"host": "2001:db8::9"}, "'2001:db8::9' is an IPv6 address"),
    ({"hostKey": f"[other.example.org]:4660 {HOST_KEY}"},
     "hostKey is the key of '[other.example.org]:4660', not of [backup.skills.example.org]:4660"),
    ({"hostKey": None}, "socle:backup.targets.sftp.hostKey"),
])
def test_bad_sftp_settings_are_named(change, says):
    sftp = {k: v for k, v in {**SKILLS, **change}.items() if v is not None}
    msg = errors_of(prod_with(sftp))
    assert says in msg, msg


def test_sftp_is_for_servers_not_the_local_engine():
    v = stack_values("dev")
    v.setdefault("backup", {}).setdefault("targets", {})["sftp"] = SKILLS
    assert "socle:backup.targets.sftp: only on target ovh" in errors_of(v)
