#!/usr/bin/env python3
"""socle host setup: applies what changes in a server's normal life to the running host.

    sudo python3 socle_host_setup.py --bundle BUNDLE.json [--root DIR] [--dry-run]

The bundle (rendered by components/render/host_setup.py, no secret in it) names the data volume to
mount (formatted only when blank), lists the packages that must be installed and the files socle manages (the deploy user's authorized keys, the sshd drop-in,
the unattended-upgrades settings, Docker's daemon.json ...), each with its mode and owner. The run
is idempotent: a file whose content and mode are already right is left alone, so running it again
changes nothing and says so. The sshd drop-in is checked with `sshd -t` before sshd is reloaded,
and the host firewall with `nft -c` before it is loaded; if a check fails, the previous file is put
back and the run fails, so a bad setting never locks the administrators out.

This is what keeps routine edits (an admin key, sshd settings, packages) away from the instance's
user data, whose change would reinstall the server and wipe its root disk.

Exit status: 0 applied (or nothing to do), 1 a step failed (the message says which), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def log(msg: str) -> None:
    print(f"socle-host-setup: {msg}", flush=True)


class SetupError(Exception):
    pass


def _owner(spec: str) -> tuple[int, int]:
    user, _, group = spec.partition(":")
    pw = pwd.getpwnam(user)
    if not group or group == user:
        return pw.pw_uid, pw.pw_gid
    import grp

    return pw.pw_uid, grp.getgrnam(group).gr_gid


def _write(path: Path, content: str, mode: int, owner: str | None, dry_run: bool) -> bool:
    """Write `content` atomically (temp file + rename) if it differs; True if anything changed."""
    current = path.read_text() if path.exists() else None
    same_mode = path.exists() and (path.stat().st_mode & 0o7777) == mode
    if current == content and same_mode:
        return False
    if dry_run:
        log(f"would write {path} (mode {mode:04o})")
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.chmod(tmp, mode)
        if owner:
            os.chown(tmp, *_owner(owner))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log(f"wrote {path} (mode {mode:04o})")
    return True


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def apply(bundle: dict, root: Path, dry_run: bool = False, sshd_test: list[str] | None = None,
          reload: bool = True, device_dir: Path = Path("/dev/disk/by-id"), nft_test: list[str] | None = None) -> list[str]:
    """Apply the bundle under `root` ("/" on a server); returns the paths it changed."""
    if bundle.get("volume"):
        log(mount_volume(bundle["volume"], root, device_dir, on_host=reload, dry_run=dry_run))
    missing = [p for p in bundle.get("packages", []) if not _installed(p)] if reload else []
    if missing:
        if dry_run:
            log(f"would install {' '.join(missing)}")
        else:
            # No recommends (the collectors' would bring smartd and ipmitool to a VM); wait for
            # the dpkg lock that unattended-upgrades may hold.
            res = _run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q", "--no-install-recommends",
                        *missing])
            if res.returncode != 0:
                raise SetupError(f"apt-get install {' '.join(missing)} failed: {res.stderr.strip()[-800:]}")
            log(f"installed {' '.join(missing)}")
    changed: list[str] = []
    sshd_dropin = bundle.get("sshd_dropin")
    firewall = bundle.get("firewall") or {}
    checked = {sshd_dropin: sshd_test or ["sshd", "-t"]} if sshd_dropin else {}
    # A service's files checked by its own tool ({path} is the file), e.g. promtool check config.
    for rel, cmd in bundle.get("checks", {}).items():
        checked[rel] = [c.replace("{path}", str(root / rel.lstrip("/"))) for c in cmd]
    if firewall and (reload or nft_test):
        checked[firewall["path"]] = [*(nft_test or ["nft", "-c", "-f"]), str(root / firewall["path"].lstrip("/"))]
    previous: dict[str, str | None] = {}
    for rel, spec in sorted(bundle.get("files", {}).items()):
        path = root / rel.lstrip("/")
        previous[rel] = path.read_text() if path.exists() else None
        if spec.get("dir_mode") and not dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path.parent, int(spec["dir_mode"], 8))
            if spec.get("owner"):
                os.chown(path.parent, *_owner(spec["owner"]))
        if _write(path, spec["content"], int(spec["mode"], 8), spec.get("owner"), dry_run):
            changed.append(rel)
    # The sshd drop-in, the firewall and the services' files with a checking tool are checked
    # before anything is loaded. A run is all or nothing: if any is refused, every file this run
    # changed goes back to its previous content (a port open in sshd and not in the firewall locks
    # the administrators out; a changed /etc/default left behind would never get its restart,
    # since the next run would find it unchanged).
    if not dry_run and any(rel in changed for rel in checked):
        secret = {rel for rel, spec in bundle.get("files", {}).items() if spec.get("secret")}
        refused = [err for rel, cmd in checked.items() if (err := _refused(cmd, quiet=rel in secret))]
        if refused:
            for rel in changed:
                _restore(root / rel.lstrip("/"), previous[rel])
            raise SetupError("; ".join(refused) + "; the files are back as they were before this run, nothing was loaded")
    disable = bundle.get("disable") or {}
    marked = bool(disable) and (root / disable["if"].lstrip("/")).exists()
    # Files socle no longer wants (a setting taken out), removed once the rest passed its checks.
    for rel in bundle.get("absent", []):
        path = root / rel.lstrip("/")
        if path.exists() or path.is_symlink():
            if not dry_run:
                path.unlink()
            changed.append(rel)
            log(f"{'would remove' if dry_run else 'removed'} {rel}")
    if reload and not dry_run:
        # Loaded on every run, not only when changed: a file left by an interrupted run, or a
        # table someone flushed, is loaded again. Both reloads keep existing connections, and
        # the firewall's replaces its table atomically (no moment without a filter).
        _check(["systemctl", "daemon-reload"], "reload systemd's units")
        if sshd_dropin:
            _check(["systemctl", "reload-or-restart", "ssh"], "reload sshd")
        if firewall:
            _check(["systemctl", "reload-or-restart", firewall["unit"]], "load the firewall")
    for user, groups in sorted(bundle.get("groups", {}).items()) if reload and not dry_run else []:
        missing_groups = [g for g in groups if not _is_member(user, g)]
        if missing_groups:
            _check(["usermod", "-a", "-G", ",".join(missing_groups), user],
                   f"add {user} to {', '.join(missing_groups)}")
            log(f"{user} added to {', '.join(missing_groups)}")
    # A service whose files changed starts again with them (a restart: its command-line flags
    # live in /etc/default, which a reload does not read).
    for unit, paths in sorted(bundle.get("restart", {}).items()) if reload and not dry_run else []:
        if any(p in changed for p in paths):
            _check(["systemctl", "restart", unit], f"restart {unit}")
            log(f"{unit} restarted")
    for unit in bundle.get("enable", []) if reload and not dry_run else []:
        res = _run(["systemctl", "enable", "--now", unit])
        if res.returncode != 0:
            raise SetupError(f"systemctl enable --now {unit} failed: {res.stderr.strip()[-500:]}")
    # Started is not serving: each service with a readiness URL must answer it (a config that
    # passed its check can still fail at start, e.g. a port in use).
    for unit, url in sorted(bundle.get("ready", {}).items()) if reload and not dry_run else []:
        wait_ready(unit, url)
    # Units socle started for a setting taken out, stopped where its marker said they were socle's.
    for unit in disable.get("units", []) if marked and reload and not dry_run else []:
        if _run(["systemctl", "cat", unit]).returncode == 0:
            _check(["systemctl", "disable", "--now", unit], f"stop {unit}")
            log(f"{unit} stopped (no longer used)")
    return changed


def wait_ready(unit: str, url: str, seconds: float = 90, pause: float = 1) -> None:
    """Until `url` answers 200, at most `seconds`; else a SetupError naming the unit."""
    import urllib.error
    import urllib.request

    deadline, last = time.monotonic() + seconds, "no answer"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as res:
                if res.status == 200:
                    return
                last = f"HTTP {res.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (OSError, ValueError) as e:
            last = str(getattr(e, "reason", e))
        if time.monotonic() >= deadline:
            raise SetupError(f"{unit} is not ready: {url} answered {last} for {seconds:.0f} s "
                             f"(journalctl -u {unit})")
        time.sleep(pause)


LABEL = "socle-data"


def mount_volume(spec: dict, root: Path, device_dir: Path, on_host: bool, dry_run: bool = False) -> str:
    """Mount the server's data volume (an OVH block storage volume) at spec["mount"], by label.

    A blank volume is formatted (ext4, label socle-data); a volume that already has a filesystem is
    never formatted: with the socle-data label it is mounted as it is (after a rebuild the new
    instance gets the old volume, data intact), with anything else the run stops. What the mount
    point already holds (Docker's first-boot state) is copied onto a new volume first."""
    mount = root / spec["mount"].lstrip("/")
    device = device_dir / f"virtio-{spec['idPrefix']}"
    for _ in range(60):
        if device.exists():
            break
        time.sleep(1)
    else:
        raise SetupError(f"the data volume {spec['idPrefix']}… is not attached ({device} does not exist)")
    real = str(device.resolve())
    if _run(["findmnt", "-n", "-S", real, "-M", str(mount)]).returncode == 0:
        return f"data volume already mounted at {mount}"
    fstype = _run(["blkid", "-o", "value", "-s", "TYPE", real]).stdout.strip()
    label = _run(["blkid", "-o", "value", "-s", "LABEL", real]).stdout.strip()
    if dry_run:
        return f"would {'format and ' if not fstype else ''}mount {real} at {mount}"
    if not fstype:
        res = _run(["mkfs.ext4", "-q", "-L", LABEL, real])
        if res.returncode != 0:
            raise SetupError(f"mkfs.ext4 {real} failed: {res.stderr.strip()[-400:]}")
        label, fresh = LABEL, True
    elif fstype != "ext4" or label != LABEL:
        raise SetupError(f"{real} holds a {fstype} filesystem labelled '{label}', not socle's data volume; "
                         "nothing was formatted or mounted: check which volume is attached")
    else:
        fresh = False
    for unit in spec.get("stop", []) if on_host else []:
        _run(["systemctl", "stop", unit])
    mount.mkdir(parents=True, exist_ok=True)
    if fresh and any(mount.iterdir()):
        scratch = Path(tempfile.mkdtemp(prefix="socle-data-"))
        try:
            _check(["mount", real, str(scratch)], "mount the new volume")
            _check(["cp", "-a", f"{mount}/.", str(scratch)], "copy the existing data onto the volume")
        finally:
            _run(["umount", str(scratch)])
            scratch.rmdir()
    fstab = root / "etc" / "fstab"
    line = f"LABEL={LABEL} {spec['mount']} ext4 defaults,nofail 0 2\n"
    lines = [ln for ln in (fstab.read_text().splitlines(keepends=True) if fstab.exists() else [])
             if not ln.startswith(f"LABEL={LABEL} ")]
    fstab.parent.mkdir(parents=True, exist_ok=True)
    fstab.write_text("".join(lines) + line)
    _check(["mount", real, str(mount)], f"mount the data volume at {mount}")
    for unit in reversed(spec.get("stop", [])) if on_host else []:
        _run(["systemctl", "start", unit])
    return f"data volume {'formatted and ' if fresh else ''}mounted at {mount}"


def _refused(cmd: list[str], quiet: bool = False) -> str | None:
    """None when the check passes, else what the checking tool said (not for a file that holds
    secrets: the tool may quote them)."""
    res = _run(cmd)
    if res.returncode == 0:
        return None
    if quiet:
        return f"{' '.join(cmd)} refused it (its output is not shown: the file holds secrets; run it on the server)"
    return f"{' '.join(cmd)} refused it: {(res.stderr or res.stdout).strip()[-500:]}"


def _restore(path: Path, previous: str | None) -> None:
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(previous)


def _is_member(user: str, group: str) -> bool:
    import grp

    try:
        g = grp.getgrnam(group)
    except KeyError:
        raise SetupError(f"the group {group} does not exist (is its package installed?)") from None
    return user in g.gr_mem or pwd.getpwnam(user).pw_gid == g.gr_gid


def _check(cmd: list[str], what: str) -> None:
    res = _run(cmd)
    if res.returncode != 0:
        raise SetupError(f"could not {what}: {res.stderr.strip()[-400:]}")


def _installed(package: str) -> bool:
    res = _run(["dpkg-query", "-W", "-f=${Status}", package])
    return res.returncode == 0 and "install ok installed" in res.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="socle_host_setup.py", description=__doc__.splitlines()[0],
                                 epilog="Exit status: 0 applied or nothing to do, 1 a step failed, 2 bad usage.")
    ap.add_argument("--bundle", required=True, type=Path, help="the JSON bundle rendered by socle")
    ap.add_argument("--root", type=Path, default=Path("/"),
                    help="write under this directory instead of / (tests); skips apt, systemctl and reloads")
    ap.add_argument("--sshd-test", default=None, help="command that validates sshd's configuration (default: sshd -t)")
    ap.add_argument("--nft-test", default=None,
                    help="command that validates the firewall, given its path (default on the host: nft -c -f)")
    ap.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    ap.add_argument("--device-dir", type=Path, default=Path("/dev/disk/by-id"),
                    help="where the data volume's virtio-<id> link is (tests)")
    args = ap.parse_args(argv)
    try:
        bundle = json.loads(args.bundle.read_text())
    except (OSError, ValueError) as e:
        print(f"socle-host-setup: cannot read the bundle {args.bundle}: {e}", file=sys.stderr)
        return 2
    on_host = args.root == Path("/")
    try:
        changed = apply(bundle, args.root, args.dry_run, args.sshd_test.split() if args.sshd_test else None,
                        reload=on_host, device_dir=args.device_dir,
                        nft_test=args.nft_test.split() if args.nft_test else None)
    except (SetupError, KeyError, OSError) as e:
        print(f"socle-host-setup: {e}", file=sys.stderr)
        return 1
    log(f"{len(changed)} file(s) changed" + (f": {', '.join(changed)}" if changed else "; the host was already up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
