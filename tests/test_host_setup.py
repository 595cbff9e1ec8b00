"""Host setup for real: the rendered bundle applied by host/socle_host_setup.py to a scratch root
(files, modes, idempotence, sshd check and roll-back), the bundle's sshd drop-in accepted by sshd,
and the shell wrapper run over SSH accepted by shellcheck."""

import getpass
import json
import os
import subprocess
import sys

import pytest

from components.render.cloudinit import SSHD_DROPIN
from components.render.host_setup import authorized_keys, render_host_bundle, render_host_setup_command
from tests.conftest import ROOT
from tests.tools import require, run

PROGRAM = ROOT / "host" / "socle_host_setup.py"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm0vYb6sP0bK8yQm8ZC1vZ5eQvB1pC3dT5oX2Yq1n7a admin@example.org"
KEY2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO5mK5h3pWq9n1xV3m4Yb6cTz0aQ7fJ2rL8sE1dG4hUk other@example.org"
USER = getpass.getuser()  # the owner must exist on this machine


def setup(tmp_path, bundle: str, *extra):
    path = tmp_path / "bundle.json"
    path.write_text(bundle)
    return subprocess.run([sys.executable, str(PROGRAM), "--bundle", str(path), "--root", str(tmp_path / "root"),
                           *extra], capture_output=True, text=True, timeout=60)


def bundle(keys=(KEY,), port=4660, role="app"):
    return render_host_bundle(role=role, deploy_user=USER, admin_keys=list(keys), ssh_port=port)


def test_applies_every_file_with_its_mode_then_changes_nothing(tmp_path):
    res = setup(tmp_path, bundle(), "--sshd-test", "true")
    assert res.returncode == 0, res.stderr
    root = tmp_path / "root"
    keys = root / "home" / USER / ".ssh" / "authorized_keys"
    assert keys.read_text() == KEY + "\n" and oct(keys.stat().st_mode & 0o777) == "0o600"
    assert oct(keys.parent.stat().st_mode & 0o777) == "0o700", "~/.ssh must be 0700"
    dropin = root / SSHD_DROPIN.lstrip("/")
    assert "Port 4660" in dropin.read_text() and "PasswordAuthentication no" in dropin.read_text()
    assert (root / "etc/apt/apt.conf.d/20auto-upgrades").exists()
    again = setup(tmp_path, bundle(), "--sshd-test", "true")
    assert again.returncode == 0 and "the host was already up to date" in again.stdout, again.stdout


def test_a_new_key_and_port_are_applied_in_place(tmp_path):
    assert setup(tmp_path, bundle(), "--sshd-test", "true").returncode == 0
    res = setup(tmp_path, bundle(keys=(KEY, KEY2), port=2222), "--sshd-test", "true")
    assert res.returncode == 0, res.stderr
    root = tmp_path / "root"
    assert (root / "home" / USER / ".ssh" / "authorized_keys").read_text() == f"{KEY}\n{KEY2}\n"
    assert "Port 2222" in (root / SSHD_DROPIN.lstrip("/")).read_text()
    assert "tcp dport { 80, 443, 2222 } accept" in (root / "etc/socle/firewall.nft").read_text(), \
        "the host firewall does not follow the new SSH port"
    assert "3 file(s) changed" in res.stdout, res.stdout


def test_an_sshd_config_that_sshd_refuses_is_rolled_back(tmp_path):
    assert setup(tmp_path, bundle(), "--sshd-test", "true").returncode == 0
    dropin = tmp_path / "root" / SSHD_DROPIN.lstrip("/")
    before = dropin.read_text()
    res = setup(tmp_path, bundle(port=2222), "--sshd-test", "false")
    assert res.returncode == 1 and "back as they were before this run" in res.stderr, res.stderr
    assert dropin.read_text() == before, "a refused sshd drop-in must not stay in place"


def test_dry_run_changes_nothing_and_bad_input_is_exit_2(tmp_path):
    res = setup(tmp_path, bundle(), "--dry-run")
    assert res.returncode == 0 and "would write" in res.stdout, res.stdout
    assert not (tmp_path / "root").exists(), "--dry-run wrote files"
    (tmp_path / "bad.json").write_text("{not json")
    bad = subprocess.run([sys.executable, str(PROGRAM), "--bundle", str(tmp_path / "bad.json")], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "cannot read the bundle" in bad.stderr
    help_ = subprocess.run([sys.executable, str(PROGRAM), "--help"], capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and "Exit status" in help_.stdout


def test_a_key_that_smuggles_a_second_line_is_refused():
    assert authorized_keys([KEY, KEY2]) == f"{KEY}\n{KEY2}\n"
    with pytest.raises(ValueError, match="line break"):
        authorized_keys([KEY + "\n" + KEY2])


@pytest.mark.parametrize("role", ["app", "backup"])
def test_the_bundles_sshd_dropin_passes_sshd(tmp_path, role):
    sshd = require("sshd", "openssh-server")
    doc = json.loads(render_host_bundle(role=role, deploy_user=USER, admin_keys=[KEY], ssh_port=4660,
                                        extra_ports=(2222,)))
    dropin = tmp_path / "10-socle.conf"
    dropin.write_text(doc["files"][SSHD_DROPIN]["content"])
    host_key = tmp_path / "hostkey"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
    main = tmp_path / "sshd_config"
    main.write_text(f"Include {dropin}\nHostKey {host_key}\n")
    res = run([sshd, "-t", "-f", str(main)])
    assert res.returncode == 0, res.stderr
    effective = run([sshd, "-T", "-f", str(main), "-C", f"user={USER},host=x,addr=127.0.0.1"]).stdout
    assert "port 4660" in effective and "port 2222" in effective, "sshd must listen on both while the port moves"


def test_the_wrapper_run_over_ssh_passes_shellcheck(tmp_path):
    script = tmp_path / "host-setup.sh"
    script.write_text("#!/usr/bin/env bash\n" + render_host_setup_command())
    res = run([require("shellcheck"), str(script)])
    assert res.returncode == 0, res.stdout


def reboot_files():
    from components.render.cloudinit import REBOOT_SCRIPT, managed_files

    files = managed_files(role="app", deploy_user="deploy", ssh_port=4660)
    return files, REBOOT_SCRIPT


def test_reboot_units_and_script_pass_systemd_and_shellcheck(tmp_path):
    files, script = reboot_files()
    # systemd-analyze checks that ExecStart exists: the script sits in the scratch directory here.
    (tmp_path / "socle-reboot").write_text(files[script])
    (tmp_path / "socle-reboot").chmod(0o755)
    (tmp_path / "socle-reboot.service").write_text(
        files["/etc/systemd/system/socle-reboot.service"].replace(script, str(tmp_path / "socle-reboot")))
    (tmp_path / "socle-reboot.timer").write_text(files["/etc/systemd/system/socle-reboot.timer"])
    res = run([require("systemd-analyze", "systemd"), "verify", str(tmp_path / "socle-reboot.timer"),
               str(tmp_path / "socle-reboot.service")], cwd=tmp_path)
    assert res.returncode == 0 and "socle-reboot" not in res.stderr, res.stderr
    (tmp_path / "reboot.sh").write_text(files[script])
    res = run([require("shellcheck"), str(tmp_path / "reboot.sh")])
    assert res.returncode == 0, res.stdout
    assert 'Automatic-Reboot "false"' in files["/etc/apt/apt.conf.d/52socle-unattended"], \
        "unattended-upgrades must not reboot by itself at a fixed time"


@pytest.mark.parametrize("pending,active,rebooted", [
    (False, [], False),                           # nothing to do
    (True, ["socle-backup.service"], False),      # a backup runs: wait for the next window
    (True, ["socle-prune.service"], False),
    (True, [], True),                             # reboot, honouring inhibitors
])
def test_the_reboot_waits_for_running_backups(tmp_path, pending, active, rebooted):
    files, script = reboot_files()
    (tmp_path / "reboot.sh").write_text(files[script])
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "systemctl.log"
    (bindir / "systemctl").write_text(
        f'#!/bin/sh\necho "$*" >> {log}\ncase "$*" in\n'
        + "".join(f'  "is-active --quiet {u}") exit 0 ;;\n' for u in active)
        + '  is-active*) exit 3 ;;\nesac\nexit 0\n')
    (bindir / "systemctl").chmod(0o755)
    required = tmp_path / "reboot-required"
    if pending:
        required.write_text("*** System restart required ***\n")
        (tmp_path / "reboot-required.pkgs").write_text("linux-image-cloud-amd64\n")
    res = run(["sh", str(tmp_path / "reboot.sh")],
              env={"PATH": f"{bindir}:/usr/bin:/bin", "SOCLE_REBOOT_REQUIRED": str(required)})
    assert res.returncode == 0, res.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    assert ("reboot --check-inhibitors=yes" in calls) == rebooted, calls
    if active:
        assert f"{active[0]} is running" in res.stdout


# ---------------------------------------------------------------- the data volume, on a real loop device

VOLUME_ID = "0f9c3a52-6b1e-4b7d-9a44-2d8f0e6c1b77"


@pytest.fixture
def loop(tmp_path):
    """A 64 MB block device standing in for the OVH volume, linked as /dev/disk/by-id would link it."""
    if os.geteuid() != 0:
        pytest.fail("the data-volume test attaches a loop device and mounts it: run it as root (CI does)")
    img = tmp_path / "volume.img"
    with open(img, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    dev = subprocess.run(["losetup", "--find", "--show", str(img)], capture_output=True, text=True)
    assert dev.returncode == 0, dev.stderr
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / f"virtio-{VOLUME_ID[:20]}").symlink_to(dev.stdout.strip())
    mounted = []
    yield dev.stdout.strip(), by_id, mounted
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)
    subprocess.run(["losetup", "-d", dev.stdout.strip()], capture_output=True)


def apply_volume(tmp_path, by_id, role="app"):
    bundle = render_host_bundle(role=role, deploy_user=USER, admin_keys=[KEY], ssh_port=4660, volume_id=VOLUME_ID)
    return setup(tmp_path, bundle, "--sshd-test", "true", "--device-dir", str(by_id))


def test_a_blank_volume_is_formatted_mounted_and_keeps_what_was_there(tmp_path, loop):
    dev, by_id, mounted = loop
    docker_root = tmp_path / "root" / "var" / "lib" / "docker"
    docker_root.mkdir(parents=True)
    (docker_root / "first-boot-state").write_text("docker's first boot\n")
    mounted.append(docker_root)
    res = apply_volume(tmp_path, by_id)
    assert res.returncode == 0, res.stderr
    assert "data volume formatted and mounted at" in res.stdout, res.stdout
    assert run(["findmnt", "-n", "-S", dev, "-M", str(docker_root)]).returncode == 0, "not mounted"
    assert (docker_root / "first-boot-state").read_text() == "docker's first boot\n", "the existing data was lost"
    assert run(["blkid", "-o", "value", "-s", "LABEL", dev]).stdout.strip() == "socle-data"
    assert "LABEL=socle-data /var/lib/docker ext4 defaults,nofail 0 2" in (tmp_path / "root/etc/fstab").read_text()
    again = apply_volume(tmp_path, by_id)
    assert again.returncode == 0 and "data volume already mounted" in again.stdout, again.stdout


def test_after_a_rebuild_the_same_volume_is_mounted_with_its_data_never_formatted(tmp_path, loop):
    dev, by_id, mounted = loop
    run(["mkfs.ext4", "-q", "-L", "socle-data", dev])
    scratch = tmp_path / "old-server"
    scratch.mkdir()
    run(["mount", dev, str(scratch)])
    (scratch / "volumes").mkdir()
    (scratch / "volumes" / "uploads.txt").write_text("a year of uploads\n")
    run(["umount", str(scratch)])
    target = tmp_path / "root" / "srv" / "restic"
    mounted.append(target)
    res = apply_volume(tmp_path, by_id, role="backup")   # a new instance, its root disk fresh
    assert res.returncode == 0 and "data volume mounted at" in res.stdout and "formatted" not in res.stdout, res.stdout
    assert (target / "volumes" / "uploads.txt").read_text() == "a year of uploads\n"


def test_a_foreign_filesystem_is_neither_formatted_nor_mounted(tmp_path, loop):
    dev, by_id, mounted = loop
    run(["mkfs.ext4", "-q", "-L", "someone-else", dev])
    target = tmp_path / "root" / "var" / "lib" / "docker"
    mounted.append(target)
    res = apply_volume(tmp_path, by_id)
    assert res.returncode == 1 and "not socle's data volume" in res.stderr, res.stderr
    assert run(["blkid", "-o", "value", "-s", "LABEL", dev]).stdout.strip() == "someone-else", "it was formatted"
    assert run(["findmnt", "-n", "-S", dev]).returncode != 0, "it was mounted"


def test_a_volume_that_is_not_attached_is_a_clear_failure(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("socle_host_setup", PROGRAM)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod.time, "sleep", lambda s: None)  # the minute it waits for the device
    with pytest.raises(mod.SetupError, match="is not attached"):
        mod.mount_volume({"idPrefix": VOLUME_ID[:20], "mount": "/var/lib/docker"}, tmp_path, tmp_path, False)
    bundle = json.loads(render_host_bundle(role="app", deploy_user=USER, admin_keys=[KEY], ssh_port=4660,
                                           volume_id=VOLUME_ID))
    assert bundle["volume"] == {"idPrefix": VOLUME_ID[:20], "mount": "/var/lib/docker",
                                "stop": ["docker.socket", "docker.service"]}


@pytest.mark.parametrize("refuse", ["--sshd-test", "--nft-test"])
def test_sshd_and_the_firewall_move_together_or_not_at_all(tmp_path, refuse):
    """Adding an SSH port changes both files; if either check refuses, both go back: sshd on a
    port the firewall drops (or the reverse) would lock the administrators out."""
    ok = ["--sshd-test", "true", "--nft-test", "true"]
    assert setup(tmp_path, bundle(), *ok).returncode == 0
    root = tmp_path / "root"
    files = [root / "etc/socle/firewall.nft", root / SSHD_DROPIN.lstrip("/")]
    before = [f.read_text() for f in files]
    args = [a if a != "true" or ok[i - 1] != refuse else "false" for i, a in enumerate(ok)]
    res = setup(tmp_path, bundle(port=2222), *args)
    assert res.returncode == 1 and "refused it" in res.stderr and "back as they were" in res.stderr, res.stderr
    assert [f.read_text() for f in files] == before, f"{refuse} refused, yet a new file stayed in place"
    again = setup(tmp_path, bundle(port=2222), *ok)
    assert again.returncode == 0 and all("2222" in f.read_text() for f in files), again.stderr
