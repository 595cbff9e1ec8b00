"""What a backup job installs, checked by the tools that consume it: systemd (timers, units),
shellcheck (installers), croniter (the local crontab); and the runner reading its env file back."""

import datetime as dt
import re
import subprocess
import sys

import pytest
from croniter import croniter

from components.config import load
from components.render.backup import (
    ScheduleError,
    cron_to_oncalendar,
    render_crontab,
    render_env,
    render_installer,
    render_restic_access,
    render_secrets_installer,
    render_systemd_units,
)
from tests.conftest import ROOT, program, run_values, stack_values
from tests.tools import require, run

SCHEDULES = {"run": "0 3 * * *", "check": "30 5 * * 0", "drill": "0 6 1 * *"}


@pytest.mark.parametrize("cron", ["0 3 * * *", "30 5 * * 0", "0 6 1 * *", "0 */6 * * *", "15 2 * * 1-5",
                                  "0 0 1,15 * *", "0 4 * 1,7 *",
                                  # steps on days and months start at 1; weekday ranges and names spelt out
                                  "0 3 */2 * *", "0 6 1 */3 *", "0 3 * * 0-6", "30 5 * * SUN", "0 7 * * 5-7",
                                  "*/15 2 * JAN-MAR *"])
def test_systemd_elapses_when_cron_would(cron):
    cal = cron_to_oncalendar(cron)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    res = run([require("systemd-analyze", "systemd"), "calendar", "--iterations=3", cal])
    assert res.returncode == 0, f"systemd rejects OnCalendar={cal}: {res.stderr}"
    got = [dt.datetime.strptime(m, "%Y-%m-%d %H:%M:%S")
           for m in re.findall(r"(?:Next elapse|Iter\. #\d): \w+ (\S+ \S+) UTC", res.stdout)]
    it = croniter(cron, now)
    want = [it.get_next(dt.datetime) for _ in range(3)]
    assert got == want, f"{cron} -> {cal}: systemd {got}, cron {want}"


def test_schedules_systemd_cannot_express_are_refused_with_the_key():
    with pytest.raises(ScheduleError, match="sets both day-of-month and day-of-week"):
        cron_to_oncalendar("0 3 1 * 1")
    with pytest.raises(ScheduleError, match="weekday steps are not supported"):
        cron_to_oncalendar("0 6 * * */2")
    v = stack_values("prod")
    v["backup"]["drillSchedule"] = "0 3 1 * 1"
    with pytest.raises(Exception) as exc:
        load(v)
    assert "socle:backup.drillSchedule: '0 3 1 * 1' sets both day-of-month and day-of-week" in str(exc.value)


def test_units_pass_systemd_analyze_verify(tmp_path):
    units = render_systemd_units(SCHEDULES)
    for path, content in units.items():
        (tmp_path / path.rsplit("/", 1)[1]).write_text(content)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{n}.{k}" for n in ("socle-backup", "socle-backup-check", "socle-backup-drill") for k in ("service", "timer"))
    res = run([require("systemd-analyze", "systemd"), "verify", *sorted(str(p) for p in tmp_path.iterdir())], cwd=tmp_path)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    timer = units["/etc/systemd/system/socle-backup.timer"]
    assert "OnCalendar=*-*-* 3:0:00 UTC" in timer and "Persistent=true" in timer, "a missed night runs at next boot"
    service = units["/etc/systemd/system/socle-backup.service"]
    assert "Type=oneshot" in service and "socle_backup.py run" in service
    assert all("UMask=0077" in c for p, c in units.items() if p.endswith(".service")), "dumps must be root-only"


def test_the_installer_creates_repositories_once_and_the_nightly_run_never_does():
    script = render_installer(["socle-backup"])
    assert "socle_backup.py init" in script and script.index("socle_backup.py init") < script.index("enable --now")
    units = render_systemd_units(SCHEDULES)
    assert not any(" init" in c for c in units.values()), "a scheduled job must never create a repository"


@pytest.mark.parametrize("script", [render_installer(["socle-backup", "socle-backup-check"], {
                                        "host": "web", "volumes": ["v"], "databases": ["c/d"], "retention": {"daily": 7},
                                        "watched": ["run"], "targets": 1}), render_secrets_installer(),
                                    render_restic_access()], ids=["installer", "secrets", "restic-access"])
def test_installers_pass_shellcheck(tmp_path, script):
    f = tmp_path / "s.sh"
    f.write_text(script)
    res = run([require("shellcheck"), "-s", "bash", str(f)])
    assert res.returncode == 0, res.stdout


def test_local_crontab_runs_each_job_on_its_schedule():
    lines = [ln for ln in render_crontab(SCHEDULES).splitlines() if not ln.startswith("#")]
    assert len(lines) == 3
    for line, (job, cron) in zip(lines, SCHEDULES.items()):
        fields = line.split()
        assert " ".join(fields[:5]) == cron and croniter.is_valid(cron)
        assert fields[5:8] == ["python3", "/usr/local/lib/socle/socle_backup.py", job], line


def test_env_file_round_trips_through_the_runner():
    sys.path.insert(0, str(ROOT / "backup"))
    import socle_backup

    values = {"RESTIC_PASSWORD": "a b'c\"d$e`f\\g", "SOCLE_PING_URL": "https://hc.example.org/ping/x?y=1&z=2", "EMPTY": ""}
    path = ROOT / ".pytest_env_roundtrip"
    try:
        path.write_text(render_env(values))
        assert socle_backup.load_env(path) == values
    finally:
        path.unlink(missing_ok=True)


def test_changing_backup_settings_updates_the_job_in_place_and_never_touches_a_server():
    before = program("prod")
    v = stack_values("prod")
    v["backup"].update({"schedule": "30 1 * * *", "retention": {"daily": 14, "weekly": 8, "monthly": 24, "yearly": 6}})
    after = run_values(v, stack="prod")
    a = {r.urn: r for r in before.resources}
    b = {r.urn: r for r in after.resources}
    assert set(a) == set(b), f"resources added or removed: {set(a) ^ set(b)}"
    changed = sorted(u.rsplit("::", 1)[1] for u in a if a[u].inputs != b[u].inputs)
    # The job on each server that backs up, and the retention the backup server applies (the
    # schedule alone changes only the former); whatever the stack file names them.
    names = [u.rsplit("::", 1)[1] for u in a]
    jobs = sorted(n for n in names if n.endswith(("-backup-install", "-restic-access")))
    assert any(n.endswith("-backup-install") for n in jobs), "prod has no backup job"
    assert changed == jobs, f"a backup setting changed {changed}, not the backup jobs {jobs}"
    for u in a:
        if "cloudInstance" in u or "cloudSecurityGroup" in u:
            assert a[u].inputs == b[u].inputs, f"{u} changed with the backup settings"


def test_every_stateful_volume_and_database_is_in_a_manifest(run):
    import json

    from policy.rules import backup_manifests
    from tools.policy_graph import resources

    manifests = backup_manifests(resources(run))
    assert manifests, f"{run.stack} has no backup job"
    covered = {v["name"] for _, m in manifests for v in m["volumes"]}
    stateful = {r.plain["name"] for r in run.of_type("docker:index/volume:Volume")
                if {"label": "socle.stateful", "value": "true"} in r.plain.get("labels", [])}
    assert stateful and stateful <= covered, stateful - covered
    dbs = {f"{d['cluster']}/{d['database']}" for _, m in manifests for d in m["databases"]}
    cfg, _ = load(stack_values(run.stack))
    declared = {f"socle-{run.stack}-{name}/{logical}" for name, db in cfg.databases.items() for logical in db.databases}
    assert dbs == declared, f"dumped {sorted(dbs)}, declared in socle:databases {sorted(declared)}"
    assert "RESTIC_PASSWORD" not in json.dumps([m for _, m in manifests]), "a secret in the manifest"


def test_managed_databases_are_dumped_with_the_client_of_their_own_version(ovh_run):
    from policy.rules import backup_manifests
    from tools.policy_graph import resources

    cfg, _ = load(stack_values(ovh_run.stack))
    managed = {f"socle-{ovh_run.stack}-{name}": db for name, db in cfg.databases.items()
               if cfg.database_hosting(name) == "managed"}
    entries = [d for _, m in backup_manifests(resources(ovh_run)) for d in m["databases"] if d["cluster"] in managed]
    assert entries, f"{ovh_run.stack}: no managed database is dumped"
    for d in entries:
        db = managed[d["cluster"]]
        want = f"postgres:{db.version}" if db.engine == "postgresql" else f"mysql:{db.version}"
        assert d.get("clientImage") == want, f"{d['cluster']}/{d['database']} is dumped with {d.get('clientImage')}, not {want}"


def test_backup_server_keys_force_an_append_only_server_in_each_clients_own_directory():
    from components.render.backup import render_restic_keys

    keys = render_restic_keys([("web", "ssh-ed25519 AAAAC3Nza web-key\n"), ("shop", "ssh-ed25519 AAAAC3Nzb x")])
    lines = keys.splitlines()
    assert lines == [
        'restrict,command="/usr/bin/rclone serve restic --stdio --append-only /srv/restic/web" '
        "ssh-ed25519 AAAAC3Nza socle-backup-web",
        'restrict,command="/usr/bin/rclone serve restic --stdio --append-only /srv/restic/shop" '
        "ssh-ed25519 AAAAC3Nzb socle-backup-shop"]
    for bad in ((("../etc", "ssh-ed25519 AAAA k"),), (("web", "ssh-ed25519 AAAA\nssh-ed25519 BBBB"),)):
        with pytest.raises(ValueError):
            render_restic_keys(list(bad))


def test_prune_units_pass_systemd_analyze_and_run_as_the_restic_user(tmp_path):
    from components.render.backup import PRUNE_ENV, render_prune_units

    units = render_prune_units("0 7 * * *")
    for path, content in units.items():
        (tmp_path / path.rsplit("/", 1)[1]).write_text(content)
    res = run([require("systemd-analyze", "systemd"), "verify", *sorted(str(p) for p in tmp_path.iterdir())], cwd=tmp_path)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    service = units["/etc/systemd/system/socle-prune.service"]
    assert f"--env-file {PRUNE_ENV} --run-as restic prune" in service and "User=" not in service, \
        "the prune must read the root-only files as root, then drop to restic"


def test_app_servers_push_to_the_backup_server_append_only_and_it_lives_in_the_backup_region(ovh_run):
    from policy.rules import backup_manifests
    from tools.policy_graph import resources

    cfg = load(stack_values(ovh_run.stack))[0]
    if not cfg.backup.targets.server:
        pytest.skip(f"{ovh_run.stack} has no backup server")  # rule holds for any stack file
    for _, m in backup_manifests(resources(ovh_run)):
        server = [t for t in m["targets"] if t["name"] == "backup-server"]
        assert server and server[0]["kind"] == "rclone-ssh" and server[0]["appendOnly"] is True, server
    vm = next(r for r in ovh_run.of_type("CloudInstance") if r.name == f"{cfg.backup.targets.server}-vm")
    assert vm.plain["region"] == cfg.ovh.backup_region, vm.plain["region"]
    access = next(r for r in ovh_run.resources if r.name == f"{cfg.backup.targets.server}-restic-access")
    assert "stdin" in access.secret_paths(), "the backup server's bundle holds repository passwords: a secret"


def test_the_backup_benchmark_still_runs_end_to_end(tmp_path):
    """A tiny run of tools.bench_backup (its figures are for the README; here: it still works, e.g.
    after the runner stopped creating repositories on a nightly run)."""
    require("restic")
    res = subprocess.run([sys.executable, "-m", "tools.bench_backup", "--nights", "2", "--size-mb", "4",
                          "--workdir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "restored trees identical: yes" in res.stdout, res.stdout[-2000:]


def test_the_platform_and_the_runner_name_the_dead_man_urls_alike():
    from components.render.backup import PING_ENV

    sys.path.insert(0, str(ROOT / "backup"))
    import socle_backup

    assert {job: socle_backup.PING_ENV[job] for job in PING_ENV} == PING_ENV


def _installer_python(script: str) -> str:
    """The Python the installer runs as root (its heredoc), with the paths it writes moved aside."""
    return script.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]


def test_the_installer_declares_its_coverage_and_refuses_any_other_manifest(tmp_path):
    import json as _json
    import subprocess
    import sys

    from components.render.backup import coverage
    from policy.rules import declared_coverage

    m = {"host": "web", "volumes": [{"name": "socle-prod-nextcloud-data", "path": "/x"}],
         "databases": [{"cluster": "socle-prod-main", "database": "nextcloud", "host": "h"}],
         "retention": {"daily": 7, "weekly": 4}, "watched": ["check", "run"], "targets": [{"kind": "s3"}, {"kind": "sftp"}]}
    script = render_installer(["socle-backup"], coverage(m))
    # The policy pack reads back exactly what the manifest covers (its twin of coverage()).
    assert coverage(declared_coverage(script)) == coverage(m)
    # The installer refuses a manifest that covers less (a volume dropped after review) before writing anything.
    fewer = {**m, "volumes": []}
    bundle = tmp_path / "bundle.json"
    bundle.write_text(_json.dumps({"manifest": fewer, "files": {}}))
    code = _installer_python(script).replace("/etc/socle/backup.json", str(tmp_path / "backup.json"))
    res = subprocess.run([sys.executable, "-", str(bundle)], input=code, capture_output=True, text=True)
    assert res.returncode != 0 and "not what was reviewed" in res.stderr, res.stderr
    assert not (tmp_path / "backup.json").exists(), "the installer wrote a manifest it should have refused"
    # and installs the one it declared
    bundle.write_text(_json.dumps({"manifest": m, "files": {}}))
    res = subprocess.run([sys.executable, "-", str(bundle)], input=code, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert _json.loads((tmp_path / "backup.json").read_text()) == m
