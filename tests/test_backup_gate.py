"""A deployment that changes the image of an app holding data backs it up first and stops if the
backup fails (components/socle_platform.py _backup_gates, render/backup.py render_backup_gate):
the gate in the graph, before the app's containers and its `before` hooks, on the servers whose
backup jobs keep its data; and the rendered script run against stand-in `sudo` and `systemctl`
(pass, fail, error), checked by shellcheck. Graph rules hold for whatever the stack files hold."""

from __future__ import annotations

import copy
import subprocess

import pytest

from components.render.backup import IMAGES_DIR, render_backup_gate
from tests.conftest import run_values, stack_values
from tests.tools import require

T_CONTAINER = "docker:index/container:Container"


def _holds_data(app: dict) -> bool:
    vols = app.get("volumes") or {}
    stateful = any((v if isinstance(v, dict) else {"path": v}).get("stateful", True) and
                   (v if isinstance(v, dict) else {}).get("backup", True) for v in vols.values())
    return stateful or bool(app.get("databases"))


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_every_app_holding_data_is_gated_and_its_containers_wait(stack):
    values = stack_values(stack)
    run = run_values(values, stack=stack)
    gates = {r.name: r for r in run.resources if r.name.endswith("-backup-gate")}
    by_urn = {r.urn: r for r in run.resources}
    for aname, app in values["apps"].items():
        mine = [g for n, g in gates.items() if n.startswith(f"{aname}-")]
        if not _holds_data(app):
            assert not mine, f"{stack}: {aname} holds no data but is gated"
            continue
        assert mine, f"{stack}: {aname} holds data and changes image without a backup first"
        for g in mine:
            assert g.plain["triggers"] == [app["image"]] and app["image"] in g.plain["create"], g.name
        for c in run.of_type(T_CONTAINER):
            if c.name.endswith(f"-containers-{aname}"):
                waits = {by_urn[d].name for d in c.dependencies if d in by_urn}
                assert {g.name for g in mine} <= waits, f"{c.name} does not wait for {[g.name for g in mine]}"


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
    """Stand-ins: sudo runs its command; systemctl knows the backup service (or not) and its start
    passes (or fails); the images directory is in tmp_path."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bindir / "systemctl").write_text(
        "#!/bin/sh\necho \"systemctl $*\" >> \"$CALLS\"\n"
        'case "$1" in cat) [ "$HAS_JOB" = 1 ];; start) [ "$BACKUP_OK" = 1 ];; *) exit 2;; esac\n')
    for f in bindir.iterdir():
        f.chmod(0o755)

    def run(app: str, image: str, *, has_job: bool = True, backup_ok: bool = True):
        script = render_backup_gate(app, image).replace(IMAGES_DIR, str(tmp_path / "images"))
        return subprocess.run(["sh", "-c", script], capture_output=True, text=True, env={
            "PATH": f"{bindir}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls"), "HAS_JOB": "1" if has_job else "0",
            "BACKUP_OK": "1" if backup_ok else "0"})

    def calls() -> list[str]:
        path = tmp_path / "calls"
        return path.read_text().splitlines() if path.exists() else []

    run.calls = calls
    run.marker = lambda app: (tmp_path / "images" / app).read_text().strip()
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


def test_a_failed_backup_stops_the_update_and_keeps_the_old_image_recorded(host):
    host("web", "ghcr.io/example/web:1")
    res = host("web", "ghcr.io/example/web:2", backup_ok=False)
    assert res.returncode == 1 and "the backup before updating web failed" in res.stderr, res.stderr
    assert host.marker("web") == "ghcr.io/example/web:1", "a failed gate recorded the new image: the next run would skip the backup"
    again = host("web", "ghcr.io/example/web:2")
    assert again.returncode == 0 and host.calls().count("systemctl start socle-backup.service") == 2


def test_no_backup_job_is_an_error_not_a_silent_update(host):
    host("web", "ghcr.io/example/web:1")
    res = host("web", "ghcr.io/example/web:2", has_job=False)
    assert res.returncode == 1 and "has no backup job; refusing" in res.stderr, res.stderr


def test_the_script_passes_shellcheck(tmp_path):
    path = tmp_path / "gate.sh"
    path.write_text(render_backup_gate("web", "ghcr.io/example/web:2"))
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
