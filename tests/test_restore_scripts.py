"""The restore runbook's three commands, run against stand-in `pulumi`, `ssh` and `docker` commands
that record what they are asked: the real steps in order, and nothing that changes anything in
--dry-run. (The runner they call is tested for real in test_backup_live.py.)"""

import json
import os
import subprocess

import pytest

from tests.conftest import ROOT

OUTPUTS = {"servers": {"web": "203.0.113.10", "backup": "203.0.113.20"}, "ssh": {"user": "deploy", "port": 4660},
           "backups": ["web"]}
URN = "urn:pulumi:prod::socle::socle:platform:Platform$socle:compute:Server$ovh:index/cloudInstance:CloudInstance::web-vm"
P = "urn:pulumi:prod::socle::socle:platform:Platform$"
ROTATED = [P + "socle:storage:Bucket$ovh:CloudProject/s3Credential:S3Credential::backups-credentials",
           P + "socle:storage:Bucket$ovh:CloudProject/s3Credential:S3Credential::documents-credentials",
           P + "tls:index/privateKey:PrivateKey::web-backup-ssh-key"]
KEPT = [P + "tls:index/privateKey:PrivateKey::shop-backup-ssh-key",
        P + "random:index/randomPassword:RandomPassword::web-restic-password"]
STACK_URNS = "\n".join(f"    {u}" for u in [URN, *ROTATED, *KEPT])


@pytest.fixture
def fakes(tmp_path):
    log = tmp_path / "calls.log"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (tmp_path / "outputs.json").write_text(json.dumps(OUTPUTS))
    scripts = {
        "pulumi": f"""echo "pulumi $*" >> {log}
case "$1 $2" in
  "stack output") cat {tmp_path}/outputs.json ;;
  "stack --stack") printf '%s\\n' '{STACK_URNS}' ;;
esac""",
        "ssh": f"""echo "ssh $*" >> {log}
case "$*" in
  *"docker ps"*) printf 'c0ffee01\\nc0ffee02\\n' ;;
  *"backup.json"*) echo "s3:https://s3.sbg.io.cloud.ovh.net/socle-prod-backups/web" ;;
esac""",
        "docker": f'echo "docker $*" >> {log}',
    }
    for name, body in scripts.items():
        (bindir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bindir / name).chmod(0o755)

    def run(script, *args):
        res = subprocess.run(["bash", str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
                             env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}, timeout=60)
        calls = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return res, calls

    return run


def mutating(calls):
    words = ("docker stop", "docker start", "pulumi up", "pulumi refresh", "rclone copy", "pulumi config set")
    return [c for c in calls if any(w in c for w in words)
            or ("socle_backup.py" in c and "--dry-run" not in c and "snapshots" not in c)]


def test_restore_app_stops_the_volume_users_restores_and_starts_them(fakes):
    res, calls = fakes("restore-app.sh", "prod", "web", "--volume", "socle-prod-nextcloud-data", "--at", "2026-11-20")
    assert res.returncode == 0, res.stderr
    remote = [c for c in calls if c.startswith("ssh")]
    assert all("-p 4660" in c and "deploy@203.0.113.10" in c for c in remote), remote
    steps = [c.split("sudo ", 1)[1] for c in remote]
    assert steps == [
        "docker ps --quiet --filter volume=socle-prod-nextcloud-data ",
        "docker stop c0ffee01 c0ffee02 ",
        "python3 /usr/local/lib/socle/socle_backup.py restore --volume socle-prod-nextcloud-data --at 2026-11-20 ",
        "docker start c0ffee01 c0ffee02 ",
    ], steps


def test_restore_app_dry_run_changes_nothing(fakes):
    res, calls = fakes("restore-app.sh", "prod", "web", "--database", "socle-prod-main/nextcloud", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert not mutating(calls), mutating(calls)
    assert any("socle_backup.py --dry-run restore --database socle-prod-main/nextcloud" in c for c in calls), calls
    assert "dry run: nothing was changed" in res.stderr


def test_restore_app_refuses_an_unknown_server_and_missing_arguments(fakes):
    res, _ = fakes("restore-app.sh", "prod", "nope", "--volume", "x")
    assert res.returncode == 2 and "stack prod has no server nope" in res.stderr, res.stderr
    res, _ = fakes("restore-app.sh", "prod", "web", "--at", "2026-11-20")
    assert res.returncode == 2 and "say what to restore" in res.stderr, res.stderr
    res, _ = fakes("restore-app.sh", "prod", "backup", "--volume", "x")
    assert res.returncode == 2 and "has no backup job" in res.stderr, res.stderr


def test_restore_server_recreates_then_restores_everything(fakes):
    res, calls = fakes("restore-server.sh", "prod", "web")
    assert res.returncode == 0, res.stderr
    order = [c for c in calls if "pulumi up" in c or "pulumi refresh" in c or "restore --all" in c or "docker st" in c]
    assert [o.split(" ")[1] if o.startswith("pulumi") else o.split("sudo ", 1)[1] for o in order] == [
        "refresh", "up", "docker stop c0ffee01 c0ffee02 ", "python3 /usr/local/lib/socle/socle_backup.py restore --all ",
        "docker start c0ffee01 c0ffee02 "], order


def test_restore_server_dry_run_changes_nothing(fakes):
    res, calls = fakes("restore-server.sh", "prod", "web", "--at", "2026-11-19", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert not mutating(calls), mutating(calls)
    assert f"[dry-run] would run: pulumi up --stack prod --yes --policy-pack {ROOT}/policy " \
           f"--policy-pack-config {ROOT}/policy/config/prod.json" in res.stderr, res.stderr
    assert any("--dry-run restore --all --at 2026-11-19" in c for c in calls), calls


def test_a_restore_without_a_policy_config_for_the_stack_stops_before_any_change(fakes):
    for script in ("restore-server.sh", "restore-ransomware.sh"):
        res, calls = fakes(script, "qa", "web", *(["--before", "2026-11-20T00:00:00Z"] if "ransom" in script else []))
        assert res.returncode == 2 and "no policy config" in res.stderr and "policy/config/qa.json" in res.stderr, \
            (script, res.stderr)
        assert not any("pulumi up" in c or "pulumi refresh" in c for c in calls), (script, calls)


def test_ransomware_rebuilds_the_server_and_restores_from_the_locked_bucket_as_it_was(fakes):
    res, calls = fakes("restore-ransomware.sh", "prod", "web", "--before", "2026-11-20T00:00:00Z")
    assert res.returncode == 0, res.stderr
    policy = f"--policy-pack {ROOT}/policy --policy-pack-config {ROOT}/policy/config/prod.json"
    replace = " ".join(f"--replace {u}" for u in [URN, *sorted(ROTATED)])
    ups = [c for c in calls if c.startswith("pulumi up")]
    assert ups == [f"pulumi up --stack prod {replace} --yes {policy}"], ups
    rotation = [c for c in calls if c.startswith("pulumi config set --stack prod socle:credentialsRotation ransomware-")]
    assert rotation and calls.index(rotation[0]) < calls.index(ups[0]), "managed DB passwords must be reset too"
    assert not any(k in ups[0] for k in KEPT), "another server's key or the restic password was replaced"
    rclone = [c for c in calls if "rclone" in c]
    assert len(rclone) == 1 and "2026-11-20T00:00:00Z" in rclone[0] and "s3.sbg.io.cloud.ovh.net" in rclone[0] \
        and "socle-prod-backups/web" in rclone[0], rclone
    assert any("restore --all --from-repo /var/lib/socle-backup/recovered" in c for c in calls)


def test_ransomware_dry_run_changes_nothing_and_checks_the_timestamp(fakes):
    res, calls = fakes("restore-ransomware.sh", "prod", "web", "--before", "2026-11-20T00:00:00Z", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert not mutating(calls), mutating(calls)
    res, _ = fakes("restore-ransomware.sh", "prod", "web", "--before", "yesterday")
    assert res.returncode == 2 and "UTC timestamp" in res.stderr
