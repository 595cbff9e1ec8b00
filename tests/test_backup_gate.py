"""A deployment that changes the image of an app holding data backs it up first and stops if the
backup fails (components/socle_platform.py _backup_gates, render/backup.py render_backup_gate):
the gate in the graph, before the app's containers and its `before` hooks, on the servers whose
backup jobs keep its data; and the rendered script run against stand-in `sudo` and `systemctl`
(pass, fail, error), checked by shellcheck. Graph rules hold for whatever the stack files hold."""

from __future__ import annotations

import copy
import subprocess
import time

import pytest

from components.render.backup import GATE_DIR, IMAGES_DIR, LAST_RUN_OK, MANIFEST_PATH, render_backup_gate
from tests.conftest import run_values, stack_values
from tests.test_mail_dns import with_mail
from tests.tools import require

T_CONTAINER = "docker:index/container:Container"


def _holds_data(app: dict) -> bool:
    vols = app.get("volumes") or {}
    stateful = any((v if isinstance(v, dict) else {"path": v}).get("stateful", True) and
                   (v if isinstance(v, dict) else {}).get("backup", True) for v in vols.values())
    return stateful or bool(app.get("databases"))


def _holders(values: dict) -> dict[str, tuple[bool, str | None]]:
    """Every container of the stack file: whether it holds data, and its image where the stack
    file names it (apps and mail; a cache's image is socle's)."""
    out = {name: (_holds_data(app), app["image"]) for name, app in values.get("apps", {}).items()}
    for name, cache in (values.get("caches") or {}).items():
        out[name] = (bool(cache.get("persistent")), None)
    if values.get("mail"):
        out["mail"] = (True, values["mail"].get("image"))
    return out


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_every_container_holding_data_is_gated_and_waits(stack):
    values = stack_values(stack)
    run = run_values(values, stack=stack)
    gates = {r.name: r for r in run.resources if r.name.endswith("-backup-gate")}
    by_urn = {r.urn: r for r in run.resources}
    for name, (holds, image) in _holders(values).items():
        mine = [g for n, g in gates.items() if n.startswith(f"{name}-")]
        if not holds:
            assert not mine, f"{stack}: {name} holds no data but is gated"
            continue
        assert mine, f"{stack}: {name} holds data and changes image without a backup first"
        for g in mine:
            assert not g.plain.get("triggers"), f"{g.name} has triggers: an image change would replace it, and the " \
                "old copy's delete would erase the image record just written"
            assert image is None or image in g.plain["create"], g.name
        for c in run.of_type(T_CONTAINER):
            if c.name.endswith(f"-containers-{name}"):
                waits = {by_urn[d].name for d in c.dependencies if d in by_urn}
                assert {g.name for g in mine} <= waits, f"{c.name} does not wait for {[g.name for g in mine]}"


def test_mail_and_a_persistent_cache_are_gated_with_their_volumes():
    values = with_mail()
    server = values["mail"]["server"]
    values["caches"] = {**(values.get("caches") or {}), "sessions": {"engine": "valkey", "version": "8",
                                                                      "persistent": True, "server": server}}
    run = run_values(values)
    gates = {r.name: r for r in run.resources if r.name.endswith("-backup-gate")}
    for name, image, volume in (("sessions", "valkey/valkey:8-alpine", "sessions-data/_data"),
                                ("mail", values["mail"].get("image", "docker-mailserver:15.1.0"), "mail-data/_data")):
        gate = gates.get(f"{name}-{server}-backup-gate")
        assert gate is not None, f"no gate for {name}: {sorted(gates)}"
        assert image in gate.plain["create"] and volume in gate.plain["create"], gate.plain["create"][:400]


def test_no_gate_in_dev_or_without_backups():
    assert not [r for r in run_values(stack_values("dev"), stack="dev").resources if r.name.endswith("-backup-gate")]
    values = copy.deepcopy(stack_values("staging"))
    values["backup"] = {**values["backup"], "enabled": False}
    run = run_values(values, stack="staging")
    assert not [r for r in run.resources if r.name.endswith("-backup-gate")]


def test_migrations_run_after_the_backup():
    values = copy.deepcopy(stack_values("prod"))
    app = next(n for n, a in values["apps"].items() if a.get("databases"))
    values["apps"][app]["hooks"] = {"before": [["python", "manage.py", "migrate"]]}
    run = run_values(values, stack="prod")
    by_urn = {r.urn: r for r in run.resources}
    hook = next(r for r in run.resources if r.name == f"{app}-hooks-before-0")
    assert any(by_urn[d].name.endswith("-backup-gate") for d in hook.dependencies if d in by_urn), \
        "the migration does not wait for the backup"


# ---------------------------------------------------------------------------- the script


@pytest.fixture
def host(tmp_path):
    """Stand-ins: sudo runs its command; systemctl knows the backup service (or not), and its start
    passes (writing the runner's last-run-ok stamp, as backup/socle_backup.py does) or fails; the
    images directory, the stamp and the lock are in tmp_path."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bindir / "systemctl").write_text(
        "#!/bin/sh\necho \"systemctl $*\" >> \"$CALLS\"\n"
        'case "$1" in\n'
        '  cat) [ "$HAS_JOB" = 1 ];;\n'
        '  start) sleep "$TAKES"; [ "$BACKUP_OK" = 1 ] || exit 1\n'
        # A run the timer had started long before (joined): its stamp says so, once.
        '    if [ -e "$JOINED" ]; then rm "$JOINED"; now=$(( $(date +%s) - 7200 )); else now=$(date +%s); fi\n'
        '    sum=$(sha256sum "$MANIFEST"); echo "$now $(date +%s) ${sum%% *}" > "$STAMP";;\n'
        '  *) exit 2;;\n'
        'esac\n')
    for f in bindir.iterdir():
        f.chmod(0o755)
    stamp = tmp_path / "work" / "last-run-ok"
    stamp.parent.mkdir()
    manifest = tmp_path / "backup.json"
    manifest.write_text('{"version": 1}')

    def script(app: str, image: str, data_paths=()) -> str:
        return (render_backup_gate(app, image, list(data_paths)).replace(IMAGES_DIR, str(tmp_path / "images"))
                .replace(LAST_RUN_OK, str(stamp)).replace(GATE_DIR, str(tmp_path / "run-socle"))
                .replace(MANIFEST_PATH, str(manifest)).replace("-o root ", ""))

    def env(has_job: bool, backup_ok: bool, takes: float) -> dict:
        return {"PATH": f"{bindir}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls"), "STAMP": str(stamp),
                "HAS_JOB": "1" if has_job else "0", "BACKUP_OK": "1" if backup_ok else "0", "TAKES": str(takes),
                "JOINED": str(tmp_path / "joined"), "MANIFEST": str(manifest)}

    def run(app: str, image: str, *, has_job: bool = True, backup_ok: bool = True, data_paths=(), takes: float = 0):
        return subprocess.run(["sh", "-c", script(app, image, data_paths)], capture_output=True, text=True,
                              env=env(has_job, backup_ok, takes))

    def start(app: str, image: str, takes: float = 0, backup_ok: bool = True):
        return subprocess.Popen(["sh", "-c", script(app, image)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env(True, backup_ok, takes))

    def calls() -> list[str]:
        path = tmp_path / "calls"
        return path.read_text().splitlines() if path.exists() else []

    run.start = start
    run.calls = calls
    run.backups = lambda: calls().count("systemctl start socle-backup.service")
    run.marker = lambda app: (tmp_path / "images" / app).read_text().strip()
    run.stamp = stamp
    run.joined = tmp_path / "joined"
    run.manifest = manifest
    run.lock = tmp_path / "run-socle" / "backup-gate.lock"
    run.tmp = tmp_path
    return run


def test_first_deployment_and_same_image_back_up_nothing(host):
    assert host("web", "ghcr.io/example/web:1").returncode == 0
    assert host("web", "ghcr.io/example/web:1").returncode == 0
    assert host.calls() == [] and host.marker("web") == "ghcr.io/example/web:1"


def test_a_new_image_is_deployed_only_after_a_backup_that_passed(host):
    host("web", "ghcr.io/example/web:1")
    res = host("web", "ghcr.io/example/web:2")
    assert res.returncode == 0 and host.calls() == ["systemctl cat socle-backup.service",
                                                   "systemctl start socle-backup.service"], res.stderr
    assert "web:1 -> ghcr.io/example/web:2; backing up first" in res.stdout and host.marker("web") == "ghcr.io/example/web:2"


def test_every_later_image_change_backs_up_too(host):
    """The record survives each update: three image changes, three backups (a gate replaced on
    each change would have its old copy's delete erase the record, and skip every other one)."""
    host("web", "ghcr.io/example/web:1")
    for n in (2, 3, 4):
        host.stamp.unlink(missing_ok=True)  # each deployment on another day: no fresh run to rely on
        assert host("web", f"ghcr.io/example/web:{n}").returncode == 0
    assert host.backups() == 3, host.calls()


def test_a_failed_backup_stops_the_update_and_keeps_the_old_image_recorded(host):
    host("web", "ghcr.io/example/web:1")
    res = host("web", "ghcr.io/example/web:2", backup_ok=False)
    assert res.returncode == 1 and "the backup before updating web failed" in res.stderr, res.stderr
    assert host.marker("web") == "ghcr.io/example/web:1", "a failed gate recorded the new image: the next run would skip the backup"
    again = host("web", "ghcr.io/example/web:2")
    assert again.returncode == 0 and host.backups() == 2


def test_no_backup_job_is_an_error_not_a_silent_update(host):
    host("web", "ghcr.io/example/web:1")
    res = host("web", "ghcr.io/example/web:2", has_job=False)
    assert res.returncode == 1 and "has no backup job; refusing" in res.stderr, res.stderr


def test_no_record_but_the_apps_volume_holds_files_backs_up(host):
    """The app's data reached this server's backup job before its gate did (a server that predates
    the gates, a gate that moved): no record to compare with, so it backs up."""
    volume = host.tmp / "volumes" / "web-data"
    volume.mkdir(parents=True)
    (volume / "config.php").write_text("<?php")
    res = host("web", "ghcr.io/example/web:2", data_paths=[str(volume)])
    assert res.returncode == 0 and host.backups() == 1 and "no image recorded here" in res.stdout, res.stdout


def test_a_new_servers_empty_volume_is_no_data(host):
    """Docker made the volume before the gate ran (it waits for nothing but the host): empty, it
    holds nothing to back up, and a first deployment must not wait on a backup (an SFTP host that
    does not know the server's key yet would stop it)."""
    volume = host.tmp / "volumes" / "web-data"
    volume.mkdir(parents=True)
    res = host("web", "ghcr.io/example/web:1", data_paths=[str(volume), str(host.tmp / "volumes" / "absent")])
    assert res.returncode == 0 and host.backups() == 0, res.stdout + res.stderr


def test_the_lock_is_the_deploy_users_in_a_directory_only_root_writes(host):
    import os
    import stat

    host("web", "ghcr.io/example/web:1")
    host.stamp.unlink(missing_ok=True)
    assert host("web", "ghcr.io/example/web:2").returncode == 0
    st = host.lock.stat()
    assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert stat.S_IMODE(host.lock.parent.stat().st_mode) == 0o755


def test_no_record_on_a_server_that_backed_up_before_backs_up(host):
    """A managed database's dumping server changes: the new one has no record, but dumps it now."""
    host.stamp.write_text("1000 1100\n")
    res = host("shop", "ghcr.io/example/shop:7")
    assert res.returncode == 0 and host.backups() == 1, res.stdout


def test_one_backup_serves_every_app_of_the_server_in_a_deployment(host):
    for app in ("web", "shop", "wiki"):
        host(app, f"ghcr.io/example/{app}:1")
    for app in ("web", "shop", "wiki"):
        res = host(app, f"ghcr.io/example/{app}:2")
        assert res.returncode == 0, res.stderr
    assert host.backups() == 1, f"one deployment of three apps ran {host.backups()} backups"
    assert "serves wiki too" in res.stdout and host.marker("wiki") == "ghcr.io/example/wiki:2"


def test_gates_started_together_take_turns_and_share_one_backup(host):
    for app in ("web", "shop"):
        host(app, f"ghcr.io/example/{app}:1")
    procs = [host.start(app, f"ghcr.io/example/{app}:2", takes=1) for app in ("web", "shop")]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert host.backups() == 1, f"two gates at once ran {host.backups()} backups: {outs}"


def test_an_old_backup_serves_no_later_deployment(host):
    host("web", "ghcr.io/example/web:1")
    host.stamp.write_text(f"{int(time.time()) - 3600} {int(time.time()) - 3000}\n")
    assert host("web", "ghcr.io/example/web:2").returncode == 0 and host.backups() == 1


def test_a_recent_run_with_another_manifest_serves_no_gate(host):
    """This deployment's installer rewrote the manifest (a volume or a database added): a run that
    passed a minute ago with the old one does not hold the new data."""
    host("web", "ghcr.io/example/web:1")
    host.stamp.write_text(f"{int(time.time()) - 60} {int(time.time()) - 30} {'0' * 64}\n")
    res = host("web", "ghcr.io/example/web:2")
    assert res.returncode == 0 and host.backups() == 1 and "backing up first" in res.stdout, res.stdout


def test_a_stamp_from_the_future_serves_no_gate(host):
    import hashlib

    host("web", "ghcr.io/example/web:1")
    sha = hashlib.sha256(host.manifest.read_bytes()).hexdigest()
    host.stamp.write_text(f"{int(time.time()) + 86400} {int(time.time()) + 86500} {sha}\n")
    assert host("web", "ghcr.io/example/web:2").returncode == 0 and host.backups() == 1


def test_after_a_failed_backup_the_gates_waiting_stop_at_once(host):
    for app in ("web", "shop"):
        host(app, f"ghcr.io/example/{app}:1")
    procs = [host.start(app, f"ghcr.io/example/{app}:2", takes=1, backup_ok=False) for app in ("web", "shop")]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 1 for p in procs), outs
    assert host.backups() == 1, f"the second gate ran the failing backup again: {outs}"
    assert any("another update of this deployment" in err for _, err in outs), outs


def test_joining_a_run_that_began_before_the_deployment_backs_up_once_more(host):
    host("web", "ghcr.io/example/web:1")
    host.joined.write_text("")
    res = host("web", "ghcr.io/example/web:2")
    assert res.returncode == 0 and host.backups() == 2 and "once more" in res.stdout, res.stdout


@pytest.mark.parametrize("content", ["", "garbage\n", "12ab 13\n"])
def test_an_unreadable_stamp_counts_as_no_recent_backup(host, content):
    host("web", "ghcr.io/example/web:1")
    host.stamp.write_text(content)
    res = host("web", "ghcr.io/example/web:2")
    assert res.returncode == 0 and host.backups() == 1, res.stderr


def test_the_script_passes_shellcheck(tmp_path):
    path = tmp_path / "gate.sh"
    path.write_text(render_backup_gate("web", "ghcr.io/example/web:2", ["/var/lib/docker/volumes/a b/_data"]))
    res = subprocess.run([require("shellcheck", "shellcheck"), "-s", "sh", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def test_the_gate_runs_the_backup_job_this_deployment_installs():
    """A deployment that changes an image and the backup manifest (a new volume, a new runner)
    backs up with the new one: the gate waits for that server's backup installer."""
    run = run_values(stack_values("prod"), stack="prod")
    by_urn = {r.urn: r for r in run.resources}
    for gate in (r for r in run.resources if r.name.endswith("-backup-gate")):
        server = gate.name.removesuffix("-backup-gate").rsplit("-", 1)[1]
        waits = {by_urn[d].name for d in gate.dependencies if d in by_urn}
        assert f"{server}-backup-install" in waits, f"{gate.name} does not wait for {server}'s backup installer ({sorted(waits)})"
