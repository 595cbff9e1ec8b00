"""cloud-init user data for a socle server (Debian 12)."""

from __future__ import annotations

import yaml

from .firewall import FIREWALL_UNIT, firewall_files

# Debian's own docker.io package: security updates arrive through unattended-upgrades with the rest
# of the system, which a third-party apt repository would not give.
# nftables: the host firewall (render/firewall.py).
_APP_PACKAGES = ["docker.io", "unattended-upgrades", "apt-listchanges", "ca-certificates", "curl", "nftables"]
_BACKUP_PACKAGES = ["restic", "rclone", "python3", "unattended-upgrades", "apt-listchanges", "ca-certificates",
                    "nftables"]


# Outside /etc/socle (0700): sshd reads a user's authorized keys with that user's rights, and
# restic cannot enter /etc/socle (found in the test VM: every backup refused with "publickey").
RESTIC_KEYS = "/etc/ssh/socle_restic_authorized_keys"


def render_sshd_config(*, port: int, allow_users: list[str], sftp_users: list[str] | None = None,
                       keyed_users: dict[str, str] | None = None, extra_ports: tuple[int, ...] = ()) -> str:
    """sshd drop-in. sshd keeps the first value it reads for a keyword and Debian includes
    sshd_config.d/*.conf at the top of sshd_config, so this file (10-) wins over later ones,
    cloud-init's own 50-cloud-init.conf included.

    sftp_users get SFTP only. keyed_users (user -> a root-owned authorized_keys file) get no TTY and
    no forwarding, and only what each of their keys' forced command allows (socle's backup server:
    `rclone serve restic --stdio --append-only` in the client's own directory). No ForceCommand for
    them: it would override the keys' own commands."""
    return "\n".join(
        [
            "# Managed by socle: key-only SSH, no root, no passwords.",
            *[f"Port {p}" for p in (port, *extra_ports)],
            "PermitRootLogin no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "AuthenticationMethods publickey",
            "PermitEmptyPasswords no",
            "X11Forwarding no",
            "MaxAuthTries 3",
            "LoginGraceTime 30",
            # Algorithms of the ssh-audit hardening guide for Debian 12 (OpenSSH 9.2): no NIST
            # curves, no SHA-1, no encrypt-and-MAC, no 64-bit tags; the post-quantum hybrid key
            # exchange first. curve25519 stays for Go's x/crypto/ssh (pulumi-command's client, and
            # rclone's), which has no sntrup761; ssh-audit warns that it is not post-quantum.
            # Client keys are not restricted (an admin's ECDSA key still logs in).
            "KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org",
            "Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,"
            "aes192-ctr,aes128-ctr",
            "MACs hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,umac-128-etm@openssh.com",
            "HostKeyAlgorithms ssh-ed25519,rsa-sha2-512,rsa-sha2-256",
            "RequiredRSASize 3072",
            f"AllowUsers {' '.join(allow_users)}",
            # A Match block inside an included file ends with that file.
            *[line for u in sftp_users or [] for line in (
                f"Match User {u}",
                "\tForceCommand internal-sftp",
                "\tAllowTcpForwarding no",
                "\tAllowAgentForwarding no",
                "\tPermitTTY no",
                "\tX11Forwarding no",
            )],
            *[line for u, keys in (keyed_users or {}).items() for line in (
                f"Match User {u}",
                f"\tAuthorizedKeysFile {keys}",
                "\tPermitTTY no",
                "\tDisableForwarding yes",
            )],
            "",
        ]
    )


_AUTO_UPGRADES = 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n'

# unattended-upgrades never reboots by itself: its reboot at a fixed time could kill a long
# backup. socle-reboot.timer reboots when an upgrade (a kernel, libc) needs it and no backup job
# runs; the backup jobs also hold a shutdown inhibitor that it respects.
_UNATTENDED = (
    'Unattended-Upgrade::Origins-Pattern { "origin=Debian,codename=${distro_codename}-security,label=Debian-Security"; '
    '"origin=Debian,codename=${distro_codename},label=Debian"; };\n'
    'Unattended-Upgrade::Automatic-Reboot "false";\n'
)

REBOOT_SCRIPT = "/usr/local/sbin/socle-reboot"
BACKUP_UNITS = ["socle-backup.service", "socle-backup-check.service", "socle-backup-drill.service",
                "socle-prune.service"]
_REBOOT = """#!/bin/sh
# socle: reboot when an upgrade needs it, never while a backup job runs (socle-reboot.timer).
set -eu
required=${SOCLE_REBOOT_REQUIRED:-/var/run/reboot-required}
[ -f "$required" ] || exit 0
for unit in %s; do
  if systemctl is-active --quiet "$unit"; then
    echo "socle-reboot: $unit is running; the reboot waits for the next window"
    exit 0
  fi
done
echo "socle-reboot: rebooting for: $(tr '\\n' ' ' < "$required.pkgs" 2>/dev/null || true)"
# Non-interactive systemctl ignores inhibitors unless asked: a backup's inhibitor must hold.
exec systemctl reboot --check-inhibitors=yes
""" % " ".join(BACKUP_UNITS)
_REBOOT_SERVICE = f"""[Unit]
Description=socle: reboot for a pending upgrade, outside backup jobs

[Service]
Type=oneshot
ExecStart={REBOOT_SCRIPT}
"""
_REBOOT_TIMER = """[Unit]
Description=socle: reboot windows (every 30 minutes from 04:00 to 06:30 UTC)

[Timer]
OnCalendar=*-*-* 04..06:00,30:00 UTC
Persistent=false

[Install]
WantedBy=timers.target
"""


def sshd_users(role: str, deploy_user: str) -> tuple[list[str], dict[str, str]]:
    """(users sshd allows, forced-command users with their keys file): the deploy user, and on a
    backup server restic, whose every key runs only its client's append-only repository server."""
    return ([deploy_user, "restic"], {"restic": RESTIC_KEYS}) if role == "backup" else ([deploy_user], {})


def managed_files(*, role: str, deploy_user: str, ssh_port: int, extra_ports: tuple[int, ...] = (),
                  private: tuple[str, tuple[int, ...]] | None = None, web: bool = True) -> dict[str, str]:
    """The configuration files socle owns on a server, the same at first boot and in host setup
    (`private`, the ports only the private network reaches, is known to host setup only)."""
    allow, keyed = sshd_users(role, deploy_user)
    return {
        SSHD_DROPIN: render_sshd_config(port=ssh_port, allow_users=allow, keyed_users=keyed, extra_ports=extra_ports),
        "/etc/apt/apt.conf.d/20auto-upgrades": _AUTO_UPGRADES,
        "/etc/apt/apt.conf.d/52socle-unattended": _UNATTENDED,
        REBOOT_SCRIPT: _REBOOT,
        "/etc/systemd/system/socle-reboot.service": _REBOOT_SERVICE,
        "/etc/systemd/system/socle-reboot.timer": _REBOOT_TIMER,
        **firewall_files(role=role, ssh_ports=(ssh_port, *extra_ports), private=private, web=web),
    }


def packages(role: str) -> list[str]:
    return list(_APP_PACKAGES if role == "app" else _BACKUP_PACKAGES)


SSHD_DROPIN = "/etc/ssh/sshd_config.d/10-socle.conf"
_PACKAGE_CHECK = ("for p in {packages}; do dpkg-query -W -f='${{Status}}' \"$p\" 2>/dev/null | grep -q 'install ok installed' "
                  "|| {{ echo \"socle: package $p is not installed: the first boot could not install its packages\" >&2; "
                  "exit 1; }}; done")
# Files socle manages whose mode is not 0644.
MODES = {REBOOT_SCRIPT: "0755"}


def render_cloud_init(
    *,
    hostname: str,
    role: str,
    deploy_user: str,
    admin_keys: list[str],
    ssh_port: int,
) -> str:
    """#cloud-config for an `app` server (Docker, driven over SSH by the deploy user) or a `backup`
    server (no Docker, no HTTP: SSH only).

    First boot only: the instance ignores later changes of its user data (a change would reinstall
    it and wipe its root disk, pulumi-ovh CloudInstance docs), so what changes in normal life is
    applied by host setup (render/host_setup.py) over SSH; the files it manages are the same."""
    deploy: dict = {
        "name": deploy_user,
        "gecos": "socle deploy user",
        "shell": "/bin/bash",
        "lock_passwd": True,
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "ssh_authorized_keys": list(admin_keys),
    }
    users: list = [deploy]
    if role == "backup":
        # restic's own user. Its keys (root-owned, RESTIC_KEYS) each force `rclone serve restic
        # --stdio --append-only` in one client's directory; sshd runs a forced command through the
        # user's shell, hence /bin/sh. The keys are installed over SSH (restic-access), so adding a
        # server never changes this user data.
        users.append({"name": "restic", "gecos": "socle restic repositories", "homedir": "/srv/restic",
                      "shell": "/bin/sh", "lock_passwd": True, "system": True})
    runcmd: list = [
        ["systemctl", "daemon-reload"],
        # The host firewall first (render/firewall.py); it then starts before the network at every boot.
        ["systemctl", "enable", "--now", FIREWALL_UNIT],
    ]
    if role == "app":
        # Docker group membership is root-equivalent; it is what lets `pulumi up` drive the engine
        # over SSH without exposing the Docker API on the network. Granted here, once docker.io
        # has created its group as a system group: `users: groups:` runs before the packages are
        # installed and would create `docker` as an ordinary group first (seen in the test VM).
        runcmd += [["usermod", "-a", "-G", "docker", deploy_user], ["systemctl", "enable", "--now", "docker"]]
    runcmd += [
        ["systemctl", "enable", "--now", "unattended-upgrades", "socle-reboot.timer"],
        ["systemctl", "restart", "ssh"],
        # Last, so that it decides the script's exit status: with no package mirror reachable at
        # first boot, cloud-init only warns about `packages` and still says `done`; this makes the
        # first boot end in `status: error`, which stops the deployment at its readiness gate.
        ["sh", "-c", _PACKAGE_CHECK.format(packages=" ".join(packages(role)))],
    ]
    doc = {
        "hostname": hostname,
        "preserve_hostname": False,
        # The hostname resolves (sudo otherwise says "unable to resolve host" on every call).
        "manage_etc_hosts": True,
        # Always present on Debian: cloud-init's default, en_US.UTF-8, needs locale-gen and the
        # `locales` package, which a minimal image lacks, and then ends the first boot in error.
        "locale": "C.UTF-8",
        "package_update": True,
        "package_upgrade": True,
        "packages": packages(role),
        "disable_root": True,
        "ssh_pwauth": False,
        "users": users,
        "write_files": [{"path": path, "permissions": MODES.get(path, "0644"), "content": content}
                        for path, content in managed_files(role=role, deploy_user=deploy_user, ssh_port=ssh_port).items()],
        "runcmd": runcmd,
        "final_message": "socle: cloud-init finished after $UPTIME seconds",
    }
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)
