"""Host setup: what a running server must look like, as a bundle for host/socle_host_setup.py.

Pure: no Pulumi. The bundle is applied over SSH on every `pulumi up` whose settings changed (admin
keys, SSH port and sshd settings, packages, unattended upgrades), in place, so that no routine edit
ever touches the instance's user data (whose change reinstalls the server).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .cloudinit import MODES, SSHD_DROPIN, managed_files, packages
from .firewall import FIREWALL_RULES, FIREWALL_UNIT

PROGRAM = (Path(__file__).resolve().parents[2] / "host" / "socle_host_setup.py").read_text()


def authorized_keys(keys: list[str]) -> str:
    """One key per line; a key that holds a line break (a second key smuggled in) is refused."""
    for key in keys:
        if "\n" in key or "\r" in key:
            raise ValueError("an SSH public key holds a line break; each key must be one line")
    return "".join(f"{k.strip()}\n" for k in keys)


# Where a server's data volume is mounted: Docker's whole data root on an app server (its named
# volumes, so the apps' state), the restic repositories on a backup server.
DATA_MOUNT = {"app": "/var/lib/docker", "backup": "/srv/restic"}


def volume_spec(role: str, volume_id: str) -> dict:
    """OVH block storage shows up as /dev/disk/by-id/virtio-<the first 20 characters of its id>."""
    return {"idPrefix": volume_id[:20], "mount": DATA_MOUNT[role],
            "stop": ["docker.socket", "docker.service"] if role == "app" else []}


def mount_unit_name(where: str) -> str:
    """systemd's name for the mount unit of a path (systemd-escape --path), for the simple
    paths socle mounts: /srv/socle-shared/web -> srv-socle\\x2dshared-web.mount."""
    if not re.fullmatch(r"(/[a-z0-9][a-z0-9_-]*)+", where):
        raise ValueError(f"mount point {where!r}: socle mounts only simple absolute paths")
    return where.strip("/").replace("-", "\\x2d").replace("/", "-") + ".mount"


def render_nfs_mount(what: str, where: str) -> str:
    """A systemd mount unit for an NFS share (OVH File Storage): mounted once the network is up,
    `hard` so that a share that stops answering makes writers wait rather than fail half-way."""
    if not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+:/[A-Za-z0-9._/-]*", what):
        raise ValueError(f"NFS export {what!r} is not server:/path")
    return f"""# Managed by socle: shared storage (OVH File Storage, NFS) on the private network.
[Unit]
Description=socle shared storage at {where}
Wants=network-online.target
After=network-online.target

[Mount]
What={what}
Where={where}
Type=nfs
Options=vers=4.1,hard,noatime,_netdev
TimeoutSec=120

[Install]
WantedBy=remote-fs.target
"""


DOCKER_AFTER_MOUNTS = "/etc/systemd/system/docker.service.d/10-socle-shared-storage.conf"


def render_docker_after_mounts(paths: list[str]) -> str:
    return ("# Managed by socle: Docker waits for the shared storage its proxy uses.\n[Unit]\n"
            + "".join(f"RequiresMountsFor={p}\n" for p in paths))


def render_host_bundle(*, role: str, deploy_user: str, admin_keys: list[str], ssh_port: int,
                       volume_id: str | None = None, extra_ports: tuple[int, ...] = (),
                       private: tuple[str, tuple[int, ...]] | None = None,
                       nfs_mounts: list[tuple[str, str]] | tuple = (), web: bool = True,
                       node_exporter: bool = False, upgrade_mail: str | None = None) -> str:
    """`private`: (the private network's CIDR, ports only it reaches); `nfs_mounts`: (export, mount
    point); `web`: an app server that serves hostnames (80 and 443 open); `node_exporter`: watched
    by socle:monitoring; `upgrade_mail`: unattended-upgrades' reports by e-mail, the JSON of
    render/monitoring.py upgrade_mail_part (None: its files removed)."""
    files = {path: {"mode": MODES.get(path, "0644"), "content": content}
             for path, content in managed_files(role=role, deploy_user=deploy_user, ssh_port=ssh_port,
                                                extra_ports=extra_ports, private=private, web=web).items()}
    mounts = []
    for what, where in nfs_mounts:
        unit = mount_unit_name(where)
        files[f"/etc/systemd/system/{unit}"] = {"mode": "0644", "content": render_nfs_mount(what, where)}
        mounts.append(unit)
    if mounts:
        # Docker starts after the shares at boot: a proxy started before its share is mounted would
        # keep certificates in the empty directory underneath, apart from the other servers.
        files[DOCKER_AFTER_MOUNTS] = {"mode": "0644", "content": render_docker_after_mounts([w for _, w in nfs_mounts])}
    files[f"/home/{deploy_user}/.ssh/authorized_keys"] = {
        "mode": "0600", "dir_mode": "0700", "owner": deploy_user, "content": authorized_keys(admin_keys)}
    enable = (["docker"] if role == "app" else []) + ["unattended-upgrades", "socle-reboot.timer", FIREWALL_UNIT]
    doc = {"packages": packages(role) + (["nfs-common"] if mounts else []), "files": files,
           "sshd_dropin": SSHD_DROPIN, "enable": enable + mounts,
           "firewall": {"path": FIREWALL_RULES, "unit": FIREWALL_UNIT},
           "groups": {deploy_user: ["docker"]} if role == "app" else {}}
    if node_exporter:
        from .monitoring import node_exporter_part

        part = node_exporter_part(role)
        doc["packages"] += part["packages"]
        doc["files"].update(part["files"])
        doc["restart"] = part["restart"]
        doc["enable"] += part["enable"]
        doc["ready"] = part["ready"]
    else:  # not watched (any more): what monitoring started is stopped, where socle started it
        from .monitoring import NODE_UNITS, WATCHED_MARKER

        doc["disable"] = {"units": NODE_UNITS, "if": WATCHED_MARKER}
    from .monitoring import WATCHED_MARKER, upgrade_mail_part

    mail = json.loads(upgrade_mail) if upgrade_mail else upgrade_mail_part(None)
    doc["packages"] += mail["packages"]
    doc["files"].update(mail["files"])
    doc["absent"] = mail["absent"] + ([] if node_exporter else [WATCHED_MARKER])
    if volume_id:
        doc["volume"] = volume_spec(role, volume_id)
    return json.dumps(doc, sort_keys=True)


def render_host_setup_command() -> str:
    """Run over SSH as the deploy user, with {"program": ..., "bundle": ...} on stdin."""
    return """set -eu
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/in.json"
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
open(sys.argv[2], "w").write(d["program"])
json.dump(d["bundle"], open(sys.argv[3], "w"))' "$work/in.json" "$work/setup.py" "$work/bundle.json"
sudo python3 "$work/setup.py" --bundle "$work/bundle.json"
"""


def host_setup_stdin(bundle: str) -> str:
    return json.dumps({"program": PROGRAM, "bundle": json.loads(bundle)}, sort_keys=True)
