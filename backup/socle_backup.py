#!/usr/bin/env python3
"""socle-backup: dumps, restic snapshots, retention, checks, restore drills and restores.

Installed on each server that holds state (or in its backup container on target local) by the
BackupJob component, with two files beside it:

- /etc/socle/backup.json  the manifest (no secret): what to dump and snapshot, where, for how long.
  The policy pack reads the very same manifest from the resource graph.
- /etc/socle/backup.env   the secrets (mode 0600): RESTIC_PASSWORD, per-target credentials,
  SOCLE_DB_PASSWORD_<n>, and the dead-man URLs SOCLE_PING_URL (run), SOCLE_PING_URL_CHECK,
  SOCLE_PING_URL_DRILL: each job reports to its own, so a weekly check's success never hides
  stopped nightly runs.

Exit status is 0 only when everything asked for succeeded. A failed dump stops the run before
any snapshot is taken, so a partial dump is never presented as a good backup; every failure,
including a crash before any work (an unreadable manifest), is signalled to the job's ping URL
(URL/fail) and recorded by the scheduler through the exit status.

A repository is created once, on purpose, by `init` (the installer runs it). The nightly run never
creates one: a repository that has disappeared (wiped by someone holding a server's key, or by a
mistake) makes the run fail loudly instead of starting an empty history that would hide the loss.
`check` also fails when the newest snapshot is older than the manifest's check.maxAgeHours.

restic 0.14 (Debian 12) has no --retry-lock: a repository locked by another restic (the weekly
check, a prune on the backup server, a deployment's backup) makes every command fail at once. The
runner retries such a command for up to SOCLE_BACKUP_LOCK_WAIT seconds (30 minutes by default),
saying so, then fails naming the lock. A run that passed leaves WORK/last-run-ok (when it
started and ended, and its manifest's sha256), which a deployment's backup gate reads
(components/render/backup.py render_backup_gate).

Standard library only: it runs on a bare Debian 12 server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import re
import time
import urllib.request
from pathlib import Path

MANIFEST = Path(os.environ.get("SOCLE_BACKUP_MANIFEST", "/etc/socle/backup.json"))
ENV_FILE = Path(os.environ.get("SOCLE_BACKUP_ENV", "/etc/socle/backup.env"))
WORK = Path(os.environ.get("SOCLE_BACKUP_WORK", "/var/lib/socle-backup"))
def _seconds(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value else default
    except ValueError:  # a typo in the unit's environment must not crash the run before it can report
        return default


LOCK_WAIT = _seconds(os.environ.get("SOCLE_BACKUP_LOCK_WAIT"), 1800.0)
LAST_RUN_OK = "last-run-ok"
DUMP_TAIL = {"postgresql": b"-- PostgreSQL database dump complete", "mysql": b"-- Dump completed"}


class BackupError(Exception):
    pass


def log(msg: str) -> None:
    print(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} socle-backup: {msg}", flush=True)


def load_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    if not path.exists():
        return env
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        env[key.strip()] = shlex.split(value)[0] if value.strip() else ""
    return env


class Job:
    def __init__(self, manifest: dict, secrets: dict[str, str], dry_run: bool = False):
        self.m = manifest
        self.secrets = secrets
        self.dry_run = dry_run
        self.work = Path(manifest.get("workDir") or WORK)

    # ------------------------------------------------------------------ process helpers

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update({k: v for k, v in self.secrets.items() if not k.startswith("SOCLE_")})
        env.update(extra or {})
        return env

    def sh(self, cmd: list[str], *, env: dict | None = None, stdout=None, stdin=None, check: bool = True,
           capture: bool = False, mutating: bool = True) -> subprocess.CompletedProcess:
        shown = " ".join(shlex.quote(c) for c in cmd)
        if self.dry_run and mutating:
            log(f"[dry-run] would run: {shown}")
            return subprocess.CompletedProcess(cmd, 0, "", "")
        res = subprocess.run(cmd, env=self._env(env), stdout=stdout if stdout is not None else
                             (subprocess.PIPE if capture else None), stdin=stdin, stderr=subprocess.PIPE,
                             text=stdout is None)
        if check and res.returncode != 0:
            err = res.stderr if isinstance(res.stderr, str) else res.stderr.decode(errors="replace")
            raise BackupError(f"{cmd[0]} failed with status {res.returncode}: {err.strip()[-800:]}")
        return res

    def restic(self, target: dict, *args: str, capture: bool = False, mutating: bool = True,
               check: bool = True) -> subprocess.CompletedProcess:
        env = {"RESTIC_REPOSITORY": target["repository"]}
        for key in target.get("env", []):
            env[key] = self.secrets.get(key, "")
        if target.get("passwordEnv"):  # a server-side prune holds one password per client repository
            env["RESTIC_PASSWORD"] = self.secrets.get(target["passwordEnv"], "")
        extra = []
        if target.get("kind") == "sftp":
            opts = target.get("sshOptions") or []
            ssh = ["ssh", *opts, "-p", str(target.get("port", 22)), target["sshHost"], "-s", "sftp"]
            extra = ["-o", "sftp.command=" + " ".join(shlex.quote(p) for p in ssh)]
        elif target.get("kind") == "rclone-ssh":
            # socle's backup server: this key's forced command is `rclone serve restic --stdio
            # --append-only <its own directory>`; what restic asks ssh to run is ignored there.
            opts = target.get("sshOptions") or []
            ssh = ["ssh", *opts, "-p", str(target.get("port", 22)), target["sshHost"]]
            extra = ["-o", "rclone.program=" + " ".join(shlex.quote(p) for p in ssh)]
        deadline, pause = time.monotonic() + LOCK_WAIT, 5.0
        while True:
            res = self.sh(["restic", *extra, *args], env=env, capture=capture, mutating=mutating, check=False)
            err = res.stderr if isinstance(res.stderr, str) else (res.stderr or b"").decode(errors="replace")
            if res.returncode != 0 and self._locked(err):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BackupError(f"repository {target.get('name', '?')} stayed locked for {LOCK_WAIT:.0f} s by "
                                      f"another restic: {self._locked(err)} (a check or prune still running? "
                                      "`restic list locks`; `restic unlock` removes only stale locks)")
                log(f"repository {target.get('name', '?')} is locked by another restic ({self._locked(err)}); "
                    f"trying again in {min(pause, left):.0f} s")
                time.sleep(min(pause, left))
                pause = min(pause * 2, 60.0)
                continue
            if check and res.returncode != 0:
                raise BackupError(f"restic failed with status {res.returncode}: {err.strip()[-800:]}"
                                  f"{self._ssh_diagnosis(target)}")
            return res

    @staticmethod
    def _locked(err: str) -> str:
        """restic's line for a lock held by another process ("repository is already locked
        [exclusively] by PID … on HOST by USER"), or ""."""
        return next((ln.strip() for ln in err.splitlines() if "is already locked" in ln), "")

    def _ssh_diagnosis(self, target: dict) -> str:
        """restic reports a failed SSH session as "unable to start the sftp session" whatever the
        cause; ssh itself says which (a host key that is not the pinned one, a refused key, no
        route). One short try, nothing sent; "" for a target not reached over SSH."""
        if target.get("kind") not in ("sftp", "rclone-ssh"):
            return ""
        cmd = ["ssh", *(target.get("sshOptions") or []), "-o", "ConnectTimeout=10", "-p",
               str(target.get("port", 22)), target["sshHost"], "-s", "sftp"]
        try:
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        lines = [ln.strip() for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("@")]
        return f" (ssh says: {lines[-1]})" if res.returncode == 255 and lines else ""

    # ------------------------------------------------------------------ databases

    def _db_password(self, db: dict) -> str:
        return self.secrets.get(db["passwordEnv"], "")

    def _db_cmd(self, db: dict, tool: str, *args: str) -> tuple[list[str], dict]:
        """A client command for `db`: over TCP (managed: TLS required), or docker exec into its container."""
        engine = db["engine"]
        if engine == "postgresql":
            env = {"PGPASSWORD": self._db_password(db), "PGSSLMODE": "require" if db.get("tls") else "disable",
                   "PGCONNECT_TIMEOUT": "10"}
            conn = ["-h", db["host"], "-p", str(db["port"]), "-U", db["user"]]
        else:
            env = {"MYSQL_PWD": self._db_password(db)}
            conn = ["-h", db["host"], "-P", str(db["port"]), "-u", db["user"], "--protocol=TCP"]
            if db.get("tls"):
                conn.append("--ssl-verify-server-cert" if db.get("verifyCert") else "--ssl")
        envs = [f"--env={k}" for k in env]
        if db.get("mode") == "exec":
            return ["docker", "exec", "-i", *envs, db["container"], tool, *conn, *args], env
        if db.get("clientImage"):
            # The engine's own client at the server's major version (e.g. postgres:16): pg_dump refuses
            # to dump a server newer than itself, and Debian 12 ships pg_dump 15. Host network: the
            # managed database is reached exactly as from the host (TLS, IP restriction).
            return ["docker", "run", "--rm", "-i", "--network", "host", *envs, db["clientImage"], tool, *conn, *args], env
        return [tool, *conn, *args], env

    def dump(self, db: dict, dest: Path) -> dict:
        """Dump one logical database to `dest` (plain SQL: deduplicates well night after night) and
        return its per-table row counts. Raises if the dump is incomplete in any way."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_suffix(".partial")
        if db["engine"] == "postgresql":
            cmd, env = self._db_cmd(db, "pg_dump", "--no-owner", "--no-privileges", "--clean", "--if-exists",
                                    db["database"])
        else:
            cmd, env = self._db_cmd(db, "mysqldump", "--single-transaction", "--routines", "--triggers",
                                    "--no-tablespaces", db["database"])
        if self.dry_run:
            log(f"[dry-run] would dump {db['cluster']}/{db['database']} with {cmd[0] if cmd[0] != 'docker' else 'docker exec'}")
            return {}
        with open(partial, "wb") as out:
            res = subprocess.run(cmd, env=self._env(env), stdout=out, stderr=subprocess.PIPE)
        if res.returncode != 0:
            partial.unlink(missing_ok=True)
            raise BackupError(f"dump of {db['cluster']}/{db['database']} failed ({cmd[0]} status {res.returncode}): "
                              f"{res.stderr.decode(errors='replace').strip()[-500:]}")
        with open(partial, "rb") as f:
            f.seek(max(0, partial.stat().st_size - 4096))
            tail = f.read()
        if DUMP_TAIL[db["engine"]] not in tail:
            partial.unlink(missing_ok=True)
            raise BackupError(f"dump of {db['cluster']}/{db['database']} is incomplete (no end marker)")
        counts = self.row_counts(db, db["database"])
        os.replace(partial, dest)
        return counts

    def sql(self, db: dict, database: str, query: str, *, mutating: bool = False) -> str:
        if db["engine"] == "postgresql":
            cmd, env = self._db_cmd(db, "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", query)
        else:
            cmd, env = self._db_cmd(db, "mysql", "-N", "-B", "-e", query, database)
        if self.dry_run and mutating:
            log(f"[dry-run] would run on {db['cluster']}/{database}: {query}")
            return ""
        res = subprocess.run(cmd, env=self._env(env), capture_output=True, text=True)
        if res.returncode != 0:
            raise BackupError(f"{cmd[0]} on {db['cluster']}/{database} failed: {res.stderr.strip()[-500:]}")
        return res.stdout

    def row_counts(self, db: dict, database: str) -> dict[str, int]:
        if db["engine"] == "postgresql":
            tables = self.sql(db, database, "SELECT quote_ident(schemaname)||'.'||quote_ident(tablename) FROM pg_tables "
                                            "WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1")
        else:
            tables = self.sql(db, database, "SELECT CONCAT('`',table_name,'`') FROM information_schema.tables "
                                            "WHERE table_schema = DATABASE() AND table_type='BASE TABLE' ORDER BY 1")
        names = [t for t in tables.split() if t]
        if not names:
            return {}
        query = " UNION ALL ".join(f"SELECT '{n.replace(chr(39), '')}', COUNT(*) FROM {n}" for n in names)
        out = self.sql(db, database, query)
        counts = {}
        for line in out.splitlines():
            if line.strip():
                name, _, n = line.replace("|", "\t").partition("\t")
                counts[name] = int(n)
        return counts

    def _admin(self, db: dict, verb: str, database: str) -> None:
        """CREATE DATABASE or DROP DATABASE IF EXISTS, from the engine's maintenance database."""
        pg = db["engine"] == "postgresql"
        quoted = f'"{database}"' if pg else f"`{database}`"
        self.sql(db, "postgres" if pg else "mysql", f"{verb} {quoted}", mutating=True)

    def load(self, db: dict, database: str, dump: Path) -> None:
        """Load a dump into `database` (created empty first; dropped if it exists)."""
        self._admin(db, "DROP DATABASE IF EXISTS", database)
        self._admin(db, "CREATE DATABASE", database)
        if db["engine"] == "postgresql":
            cmd, env = self._db_cmd(db, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database)
        else:
            cmd, env = self._db_cmd(db, "mysql", database)
        if self.dry_run:
            log(f"[dry-run] would load {dump.name} into {db['cluster']}/{database}")
            return
        with open(dump, "rb") as f:
            res = subprocess.run(cmd, env=self._env(env), stdin=f, capture_output=True)
        if res.returncode != 0:
            raise BackupError(f"loading {dump.name} into {database} failed: {res.stderr.decode(errors='replace')[-500:]}")

    # ------------------------------------------------------------------ commands

    def dump_dir(self) -> Path:
        return self.work / "dumps"

    def run(self, targets: list[dict] | None = None, at: str | None = None) -> None:
        """Nightly: dump every database, then snapshot dumps + volumes to every target, then prune."""
        targets = targets or self.m["targets"]
        if not targets:
            raise BackupError("no backup target in the manifest")
        self._keep_args()  # refuse a policy that keeps nothing before doing any work
        dumps = self.dump_dir()
        if dumps.exists() and not self.dry_run:
            shutil.rmtree(dumps)
        counts: dict[str, dict] = {}
        for db in self.m.get("databases", []):
            key = f"{db['cluster']}/{db['database']}"
            log(f"dumping {key}")
            counts[key] = self.dump(db, dumps / db["cluster"] / f"{db['database']}.sql")
        if not self.dry_run:
            dumps.mkdir(parents=True, exist_ok=True)
            (dumps / "row-counts.json").write_text(json.dumps(counts, indent=1, sort_keys=True))
        paths = [str(dumps)]
        for v in self.m.get("volumes", []):
            # `include` narrows a volume to some of its paths; missing ones are skipped, not errors.
            inside = [os.path.join(v["path"], i) for i in v.get("include") or []]
            paths += [p for p in inside if os.path.exists(p)] if inside else [v["path"]]
        excludes = [x for v in self.m.get("volumes", []) for x in
                    (f"--exclude={os.path.join(v['path'], e)}" for e in v.get("exclude", []))]
        failures = []
        for t in targets:
            try:
                args = ["backup", "--host", self.m["host"], "--tag", "socle", *excludes, *paths]
                if at:
                    args[1:1] = ["--time", at]
                log(f"snapshot to {t['name']}")
                self._backup(t, args)
                if t.get("appendOnly"):
                    log(f"{t['name']} is append-only: its retention is applied by the backup server itself")
                else:
                    self.forget(t)
            except BackupError as e:
                failures.append(f"{t['name']}: {e}")
                log(f"target {t['name']} FAILED: {e}")
        if not self.dry_run:
            shutil.rmtree(dumps, ignore_errors=True)  # snapshotted (or failed): no copy left on disk
        if failures:
            raise BackupError("; ".join(failures))

    def forget(self, t: dict) -> None:
        """Apply the retention policy, then prune. On an object-locked bucket the deleted objects
        only become delete markers: their locked versions stay until the lock expires."""
        keep = self._keep_args()
        host = t.get("host") or self.m["host"]
        log(f"forget --prune on {t['name']} for {host} ({' '.join(keep)})")
        # Group by host only: restic groups by host and paths by default, so a volume added to the
        # manifest would start a new group and the old one would escape the retention policy.
        self.restic(t, "forget", "--host", host, "--group-by", "host", "--prune", *keep)

    def prune(self) -> None:
        """On the backup server: the retention of every client's repository (clients append only)."""
        failures = []
        for t in self.m["targets"]:
            try:
                self.forget(t)
            except BackupError as e:
                failures.append(f"{t['name']}: {e}")
                log(f"prune of {t['name']} FAILED: {e}")
        if failures:
            raise BackupError("; ".join(failures))

    def _keep_args(self) -> list[str]:
        r = self.m.get("retention") or {}
        keep = [f"--keep-{k}={r[k]}" for k in ("daily", "weekly", "monthly", "yearly") if r.get(k)]
        if not keep:
            raise BackupError("the retention policy keeps nothing; refusing to forget every snapshot")
        return keep

    @staticmethod
    def _missing(err: str) -> bool:
        """restic's words for a repository that is not there (restic exits 10 for it since 0.17)."""
        return any(s in err.lower() for s in ("does not exist", "is there a repository", "no such file",
                                              "not found", "unable to open config file"))

    def _backup(self, t: dict, args: list[str]) -> None:
        """restic backup into an existing repository; a missing one is a failure, never re-created."""
        res = self.restic(t, *args, check=False)
        if res.returncode == 0:
            return
        err = res.stderr or ""
        if "wrong password" in err.lower() or "no key found" in err.lower():
            raise BackupError(f"repository {t['name']} refuses the password; check RESTIC_PASSWORD in {ENV_FILE}")
        if self._missing(err) and self._pending(t).exists():
            # Never created (the host did not accept this server's key at install): created now,
            # once; from then on a missing repository is a loss, as below.
            log(f"creating repository {t['name']} (pending since the installation)")
            self.restic(t, "init")
            self._pending(t).unlink(missing_ok=True)
            return self._backup(t, args)
        if self._missing(err):
            raise BackupError(f"repository {t['name']} does not exist any more ({t['repository']}): it was created at "
                              "install and a nightly run never re-creates it, since an empty new repository would hide "
                              "the loss of every snapshot. Find out who or what removed it (a compromised server?), "
                              "restore it from the other target or the bucket's versions, or run `init` on purpose.")
        raise BackupError(f"backup to {t['name']} failed (restic status {res.returncode}): {err.strip()[-600:]}"
                          f"{self._ssh_diagnosis(t)}")

    def _pending(self, t: dict) -> Path:
        """The mark of a repository the installer could not create yet (an external SFTP host that
        does not accept this server's key until its owner adds it): the next run creates it, once."""
        return self.work / f"pending-{t['name']}"

    def init(self) -> None:
        """Create every target's repository that does not exist yet; leave existing ones alone. An
        external SFTP host that cannot be reached yet is marked pending, not a failure: its owner
        adds this server's key after the deployment that made it (stack output sftpAuthorizedKeys)."""
        for t in self.m["targets"]:
            probe = self.restic(t, "cat", "config", capture=True, mutating=False, check=False)
            if probe.returncode == 0:
                log(f"repository {t['name']} exists")
                self._pending(t).unlink(missing_ok=True)
                continue
            if not self._missing(probe.stderr or ""):
                why = f"{(probe.stderr or '').strip()[-400:]}{self._ssh_diagnosis(t)}"
                if t.get("kind") == "sftp" and t.get("external"):
                    if not self.dry_run:
                        self.work.mkdir(parents=True, exist_ok=True)
                        self._pending(t).write_text(why + "\n")
                    log(f"repository {t['name']} cannot be reached yet ({why.splitlines()[-1] if why else '?'}); "
                        "add this server's line of the stack output sftpAuthorizedKeys on that host: the next "
                        "run creates the repository there")
                    continue
                raise BackupError(f"cannot tell whether repository {t['name']} exists: {why}")
            log(f"creating repository {t['name']}")
            self.restic(t, "init")
            self._pending(t).unlink(missing_ok=True)

    def check(self, now: dt.datetime | None = None) -> None:
        """restic check on every target, then the age of the newest snapshot: a repository that is
        sound but no longer written to must fail too."""
        subset = self.m.get("check", {}).get("subset", "5%")
        max_age = self.m.get("check", {}).get("maxAgeHours")
        now = now or dt.datetime.now(dt.timezone.utc)
        stale = []
        for t in self.m["targets"]:
            log(f"restic check --read-data-subset={subset} on {t['name']}")
            self.restic(t, "check", f"--read-data-subset={subset}", mutating=False)
            if max_age:
                snaps = self.snapshots(t)
                if not snaps:
                    stale.append(f"{t['name']} holds no snapshot of {self.m['host']}")
                    continue
                newest = dt.datetime.fromisoformat(snaps[-1]["time"][:19]).replace(tzinfo=dt.timezone.utc)
                age = (now - newest).total_seconds() / 3600
                log(f"newest snapshot on {t['name']}: {snaps[-1]['time'][:19]} ({age:.1f} h old, limit {max_age} h)")
                if age > max_age:
                    stale.append(f"the newest snapshot on {t['name']} is {age:.0f} h old (limit {max_age} h): "
                                 "the nightly runs have stopped or fail")
        if stale:
            raise BackupError("; ".join(stale))

    def snapshots(self, target: dict) -> list[dict]:
        out = self.restic(target, "snapshots", "--json", "--host", self.m["host"], capture=True, mutating=False).stdout
        return sorted(json.loads(out or "[]"), key=lambda s: s["time"])

    def pick_snapshot(self, target: dict, at: str | None) -> dict:
        snaps = self.snapshots(target)
        if at:
            day_end = at if "T" in at or " " in at else f"{at}T23:59:59"
            snaps = [s for s in snaps if s["time"][:19] <= day_end.replace(" ", "T")[:19]]
        if not snaps:
            raise BackupError(f"no snapshot of {self.m['host']} on {target['name']}" + (f" on or before {at}" if at else ""))
        return snaps[-1]

    def restore_to(self, target: dict, snap: dict, dest: Path, includes: list[str] | None = None) -> None:
        args = ["restore", snap["id"], "--target", str(dest)]
        for inc in includes or []:
            args += ["--include", inc]
        self.restic(target, *args, mutating=False)

    def _scratch(self, db: dict) -> tuple[dict, str | None]:
        """Where a drill loads a dump: the same server under another name ("same": dev, tests), or
        a throw-away database container on this server ("docker": production data is never touched)."""
        kind = (self.m.get("drill") or {}).get("scratch", {}).get("kind", "same")
        if kind == "same":
            return db, None
        name = f"socle-drill-{db['engine']}"
        password = os.urandom(12).hex()
        self.secrets["SOCLE_DRILL_PASSWORD"] = password
        if db["engine"] == "postgresql":
            env, user, ready = ["-e", "POSTGRES_PASSWORD"], "postgres", ["pg_isready", "-U", "postgres", "-h", "127.0.0.1"]
        else:
            env, user, ready = ["-e", "MARIADB_ROOT_PASSWORD", "-e", "MYSQL_ROOT_PASSWORD"], "root", \
                ["sh", "-c", 'mariadb-admin ping -h 127.0.0.1 -uroot -p"$MARIADB_ROOT_PASSWORD" || '
                             'mysqladmin ping -h 127.0.0.1 -uroot -p"$MYSQL_ROOT_PASSWORD"']
        self.sh(["docker", "rm", "-f", name], check=False)
        self.sh(["docker", "run", "-d", "--rm", "--name", name, "--network", "none", *env, db["scratchImage"]],
                env={"POSTGRES_PASSWORD": password, "MARIADB_ROOT_PASSWORD": password, "MYSQL_ROOT_PASSWORD": password})
        for _ in range(90):
            if self.sh(["docker", "exec", name, *ready], check=False, capture=True).returncode == 0:
                break
            time.sleep(2)
        else:
            raise BackupError(f"drill: the scratch {db['engine']} container did not start")
        scratch = {**db, "mode": "exec", "container": name, "host": "127.0.0.1", "tls": False, "user": user,
                   "port": 5432 if db["engine"] == "postgresql" else 3306, "passwordEnv": "SOCLE_DRILL_PASSWORD"}
        return scratch, name

    def drill(self) -> dict:
        """Restore the latest snapshot into a scratch directory, load each dump into a scratch
        database and compare row counts with those recorded when the dump was taken."""
        t = self.m["targets"][0]
        snap = self.pick_snapshot(t, None)
        report = {"snapshot": snap["id"], "time": snap["time"], "databases": {}, "files": 0}
        with tempfile.TemporaryDirectory(prefix="socle-drill-", dir=self.work if self.work.exists() else None) as tmp:
            self.restore_to(t, snap, Path(tmp))
            restored_dumps = Path(tmp) / str(self.dump_dir()).lstrip("/")
            recorded = json.loads((restored_dumps / "row-counts.json").read_text())
            for db in self.m.get("databases", []):
                key = f"{db['cluster']}/{db['database']}"
                dump = restored_dumps / db["cluster"] / f"{db['database']}.sql"
                if key not in recorded or not dump.is_file():
                    raise BackupError(f"drill: the latest snapshot holds no dump of {key}; was it added after that backup?")
                scratch_db, container = self._scratch(db)
                name = f"{db['database']}_socle_drill"
                try:
                    self.load(scratch_db, name, dump)
                    got = self.row_counts(scratch_db, name)
                finally:
                    if container:
                        self.sh(["docker", "rm", "-f", container], check=False)
                    else:
                        self._admin(db, "DROP DATABASE IF EXISTS", name)
                if got != recorded.get(key):
                    raise BackupError(f"drill: {key} restored with row counts {got}, dump recorded {recorded.get(key)}")
                report["databases"][key] = sum(got.values())
            report["files"] = sum(len(f) for _, _, f in os.walk(tmp))
        log(f"drill OK: snapshot {snap['id'][:8]} of {snap['time'][:19]}, {report['files']} files, "
            f"databases {report['databases']}")
        return report

    def restore(self, *, volumes: list[str], databases: list[str], at: str | None, target_name: str | None,
                from_repo: str | None = None) -> None:
        """Put volumes and databases back as they were at `at` (default: the latest snapshot).
        Scenario A restores one of them; B and C restore all (`--all`), B from a recovered copy
        of the repository (`--from-repo`)."""
        if from_repo:
            t = {"name": "recovered", "kind": "local", "repository": from_repo}
        else:
            targets = [t for t in self.m["targets"] if target_name in (None, t["name"])]
            if not targets:
                raise BackupError(f"no target named {target_name} "
                                  f"(known: {', '.join(t['name'] for t in self.m['targets'])})")
            t = targets[0]
        vols = {v["name"]: v for v in self.m.get("volumes", [])}
        dbs = {f"{d['cluster']}/{d['database']}": d for d in self.m.get("databases", [])}
        for v in volumes:
            if v not in vols:
                raise BackupError(f"unknown volume {v} (known: {', '.join(vols) or 'none'})")
        for d in databases:
            if d not in dbs:
                raise BackupError(f"unknown database {d} (known: {', '.join(dbs) or 'none'})")
        snap = self.pick_snapshot(t, at)
        log(f"using snapshot {snap['id'][:8]} of {snap['time'][:19]} from {t['name']}")
        with tempfile.TemporaryDirectory(prefix="socle-restore-") as tmp:
            for v in volumes:
                path = vols[v]["path"]
                self.restore_to(t, snap, Path(tmp), [path])
                src = Path(tmp) / path.lstrip("/")
                if not src.is_dir():
                    raise BackupError(f"snapshot {snap['id'][:8]} holds nothing for volume {v}")
                log(f"restoring volume {v} into {path}")
                self.sh(["rsync", "-a", "--delete", f"{src}/", f"{path}/"])
            for d in databases:
                db = dbs[d]
                dump_path = str(self.dump_dir() / db["cluster"] / f"{db['database']}.sql")
                self.restore_to(t, snap, Path(tmp), [dump_path])
                dump = Path(tmp) / dump_path.lstrip("/")
                if not dump.is_file():
                    raise BackupError(f"snapshot {snap['id'][:8]} holds no dump of {d}")
                log(f"loading {d} from the dump of {snap['time'][:19]}")
                self.load(db, db["database"], dump)


PING_ENV = {"run": "SOCLE_PING_URL", "check": "SOCLE_PING_URL_CHECK", "drill": "SOCLE_PING_URL_DRILL",
            "prune": "SOCLE_PING_URL_PRUNE"}


# node_exporter's textfile collector (socle:monitoring): the scheduled jobs' results as metrics.
TEXTFILE_DIR = Path("/var/lib/prometheus/node-exporter")
METRIC_TASKS = ("run", "check", "drill")


def write_metrics(task: str, ok: bool, seconds: float, now: float | None = None,
                  directory: Path = TEXTFILE_DIR) -> Path | None:
    """socle_backup_<task>.prom, one file per task (run, check and drill may overlap): the last
    status (1 passed, 0 failed), when it last passed and how long the last one took. The last
    success of a task that failed now is kept from its file, so that the backup's age keeps
    growing while it fails. Written to a temporary file, then renamed: node_exporter never reads
    half a file. Nothing if node_exporter is not there."""
    if task not in METRIC_TASKS or not directory.is_dir():
        return None
    path = directory / f"socle_backup_{task}.prom"
    values: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            m = re.match(r'socle_backup_(last_success_timestamp_seconds)\{task="\w+"\} ([0-9.e+-]+)$', line)
            if m:
                values[m.group(1)] = float(m.group(2))
    values["last_status"] = 1 if ok else 0
    values["last_duration_seconds"] = round(seconds, 3)
    if ok:
        values["last_success_timestamp_seconds"] = round(now if now is not None else time.time(), 3)
    helps = {"last_status": "1 if the last run of the task passed, 0 if it failed.",
             "last_success_timestamp_seconds": "When the task last passed (Unix time).",
             "last_duration_seconds": "How long the last run of the task took."}
    out = []
    for metric, text in helps.items():
        if metric in values:
            out += [f"# HELP socle_backup_{metric} {text}", f"# TYPE socle_backup_{metric} gauge",
                    f'socle_backup_{metric}{{task="{task}"}} {values[metric]:.15g}']
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(out) + "\n")
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def ping(url: str | None, ok: bool, message: str) -> None:
    if not url:
        return
    try:
        req = urllib.request.Request(url if ok else url.rstrip("/") + "/fail", data=message[-10000:].encode(),
                                     method="POST")
        urllib.request.urlopen(req, timeout=10).read()
    except OSError as e:  # a monitoring outage must not hide the backup's own status
        log(f"could not ping the healthcheck URL: {e}")


def drop_to(user: str) -> None:
    """Become `user` for good (groups, gid, uid), with its home as HOME (restic's cache)."""
    import pwd

    pw = pwd.getpwnam(user)
    os.setgroups(os.getgrouplist(pw.pw_name, pw.pw_gid))
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    os.environ.update({"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name})
    os.environ.pop("XDG_CACHE_HOME", None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="socle-backup", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--env-file", type=Path, default=ENV_FILE)
    ap.add_argument("--run-as", metavar="USER",
                    help="read the manifest and the env file, then drop to this user (the backup server's "
                         "prune: root-only files, repositories owned by restic)")
    sub = ap.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="dump, snapshot, prune (the nightly job)")
    p_run.add_argument("--time", help=argparse.SUPPRESS)  # snapshot time, for retention tests
    sub.add_parser("init", help="create the repositories that do not exist yet (the installer runs it once)")
    sub.add_parser("prune", help="on the backup server: apply the retention to every client's repository")
    sub.add_parser("check", help="restic check --read-data-subset, and the newest snapshot's age")
    sub.add_parser("drill", help="restore the latest snapshot and the dumps into scratch, compare")
    p_snap = sub.add_parser("snapshots", help="list snapshots per target")
    p_snap.add_argument("--target")
    p_res = sub.add_parser("restore", help="put volumes and/or databases back as of a day")
    p_res.add_argument("--volume", action="append", default=[], help="volume name (repeatable)")
    p_res.add_argument("--database", action="append", default=[], help="CLUSTER/DATABASE (repeatable)")
    p_res.add_argument("--all", action="store_true", help="every volume and database of this server")
    p_res.add_argument("--from-repo", help="a recovered copy of the repository (ransomware scenario)")
    p_res.add_argument("--at", help="YYYY-MM-DD (the last snapshot of that day) or a full timestamp; default: latest")
    p_res.add_argument("--target", help="repository to restore from (default: the first)")
    args = ap.parse_args(argv)

    # Dead-man pings for the scheduled jobs, each to its own URL; read first so that even a crash
    # on reading the manifest is reported.
    secrets: dict[str, str] = {}
    try:
        secrets = load_env(args.env_file)
    except (OSError, ValueError) as e:
        log(f"cannot read {args.env_file}: {e}")
    url = secrets.get(PING_ENV[args.command]) if args.command in PING_ENV and not args.dry_run else None
    started, started_at = time.monotonic(), time.time()
    try:
        os.umask(0o077)  # dumps and scratch files: root only, whatever the caller's umask
        manifest_bytes = args.manifest.read_bytes()
        manifest = json.loads(manifest_bytes)
        if args.run_as:
            drop_to(args.run_as)
        job = Job(manifest, secrets, dry_run=args.dry_run)
        if args.command == "init":
            job.init()
        elif args.command == "prune":
            job.prune()
        elif args.command == "run":
            job.run(at=args.time)
        elif args.command == "check":
            job.check()
        elif args.command == "drill":
            job.drill()
        elif args.command == "snapshots":
            for t in manifest["targets"]:
                if args.target in (None, t["name"]):
                    for s in job.snapshots(t):
                        print(f"{t['name']}\t{s['id'][:8]}\t{s['time'][:19]}\t{' '.join(s.get('paths', []))}")
        elif args.command == "restore":
            volumes, databases = args.volume, args.database
            if args.all:
                volumes = [v["name"] for v in manifest.get("volumes", [])]
                databases = [f"{d['cluster']}/{d['database']}" for d in manifest.get("databases", [])]
            if not (volumes or databases):
                ap.error("restore needs --volume NAME, --database CLUSTER/DATABASE or --all")
            job.restore(volumes=volumes, databases=databases, at=args.at, target_name=args.target,
                        from_repo=args.from_repo)
    except Exception as e:  # noqa: BLE001 — any failure, expected or not, must be signalled
        what = str(e) if isinstance(e, BackupError) else f"unexpected {type(e).__name__}: {e}"
        log(f"FAILED {args.command}: {what}")
        ping(url, False, f"{args.command} failed: {what}")
        if not args.dry_run:
            _metrics(args.command, False, time.monotonic() - started)
        if not isinstance(e, (BackupError, OSError, ValueError, KeyError)):
            raise
        return 1
    took = time.monotonic() - started
    log(f"{args.command} OK in {took:.1f} s")
    if args.command == "run" and not args.dry_run:
        _stamp(Path(manifest.get("workDir") or WORK), started_at, hashlib.sha256(manifest_bytes).hexdigest())
    ping(url, True, f"{args.command} OK in {took:.1f} s")
    if not args.dry_run:
        _metrics(args.command, True, took)
    return 0


def _stamp(work: Path, started_at: float, manifest_sha256: str) -> None:
    """WORK/last-run-ok: when the last run that passed started and ended (Unix times), and the
    sha256 of the manifest it ran with. A deployment's backup gate needs no run of its own when one
    started shortly before it with the manifest installed now, and backs up an app it has no image
    record for when this server has backed up before."""
    try:
        work.mkdir(parents=True, exist_ok=True)
        tmp = work / f".{LAST_RUN_OK}.{os.getpid()}"
        tmp.write_text(f"{int(started_at)} {int(time.time())} {manifest_sha256}\n")
        tmp.replace(work / LAST_RUN_OK)
    except OSError as e:  # the backup passed; the stamp only saves a later gate a run
        log(f"could not record the run in {work}: {e}")


def _metrics(task: str, ok: bool, seconds: float) -> None:
    try:
        write_metrics(task, ok, seconds)
    except OSError as e:  # the backup itself passed or failed already; its metrics must not change that
        log(f"could not write the metrics for node_exporter: {e}")


if __name__ == "__main__":
    sys.exit(main())
