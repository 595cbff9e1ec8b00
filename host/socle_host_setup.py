#!/usr/bin/env python3
"""socle host setup: applies what changes in a server's normal life to the running host.

    sudo python3 socle_host_setup.py --bundle BUNDLE.json [--root DIR] [--dry-run]

The bundle (rendered by components/render/host_setup.py, no secret in it) lists the packages that
must be installed and the files socle manages (the deploy user's authorized keys, the sshd drop-in,
the unattended-upgrades settings, Docker's daemon.json ...), each with its mode and owner. The run
is idempotent: a file whose content and mode are already right is left alone, so running it again
changes nothing and says so. The sshd drop-in is checked with `sshd -t` before sshd is reloaded;
if the check fails, the previous drop-in is put back and the run fails, so a bad setting never
locks the administrators out.

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
          reload: bool = True) -> list[str]:
    """Apply the bundle under `root` ("/" on a server); returns the paths it changed."""
    missing = [p for p in bundle.get("packages", []) if not _installed(p)] if reload else []
    if missing:
        if dry_run:
            log(f"would install {' '.join(missing)}")
        else:
            res = _run(["apt-get", "install", "-y", "-q", *missing])
            if res.returncode != 0:
                raise SetupError(f"apt-get install {' '.join(missing)} failed: {res.stderr.strip()[-800:]}")
            log(f"installed {' '.join(missing)}")
    changed: list[str] = []
    sshd_dropin = bundle.get("sshd_dropin")
    backup: tuple[Path, str | None] | None = None
    for rel, spec in sorted(bundle.get("files", {}).items()):
        path = root / rel.lstrip("/")
        if rel == sshd_dropin:
            backup = (path, path.read_text() if path.exists() else None)
        if spec.get("dir_mode") and not dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path.parent, int(spec["dir_mode"], 8))
            if spec.get("owner"):
                os.chown(path.parent, *_owner(spec["owner"]))
        if _write(path, spec["content"], int(spec["mode"], 8), spec.get("owner"), dry_run):
            changed.append(rel)
    if sshd_dropin in changed and not dry_run:
        res = _run(sshd_test or ["sshd", "-t"])
        if res.returncode != 0:
            path, previous = backup
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(previous)
            raise SetupError(f"sshd -t refused the new {sshd_dropin}, the previous one is back in place: "
                             f"{(res.stderr or res.stdout).strip()[-500:]}")
        if reload:
            res = _run(["systemctl", "reload-or-restart", "ssh"])
            if res.returncode != 0:
                raise SetupError(f"reloading sshd failed: {res.stderr.strip()[-500:]}")
            log("sshd reloaded")
    if reload and not dry_run and any(p.startswith("/etc/systemd/system/") for p in changed):
        res = _run(["systemctl", "daemon-reload"])
        if res.returncode != 0:
            raise SetupError(f"systemctl daemon-reload failed: {res.stderr.strip()[-500:]}")
    for unit in bundle.get("enable", []) if reload and not dry_run else []:
        res = _run(["systemctl", "enable", "--now", unit])
        if res.returncode != 0:
            raise SetupError(f"systemctl enable --now {unit} failed: {res.stderr.strip()[-500:]}")
    return changed


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
    ap.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    args = ap.parse_args(argv)
    try:
        bundle = json.loads(args.bundle.read_text())
    except (OSError, ValueError) as e:
        print(f"socle-host-setup: cannot read the bundle {args.bundle}: {e}", file=sys.stderr)
        return 2
    on_host = args.root == Path("/")
    try:
        changed = apply(bundle, args.root, args.dry_run, args.sshd_test.split() if args.sshd_test else None,
                        reload=on_host)
    except (SetupError, KeyError, OSError) as e:
        print(f"socle-host-setup: {e}", file=sys.stderr)
        return 1
    log(f"{len(changed)} file(s) changed" + (f": {', '.join(changed)}" if changed else "; the host was already up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
