"""cloud-init user data for a socle server (Debian 12)."""

from __future__ import annotations

import yaml

# Debian's own docker.io package: security updates arrive through unattended-upgrades with the rest
# of the system, which a third-party apt repository would not give.
_APP_PACKAGES = ["docker.io", "unattended-upgrades", "apt-listchanges", "ca-certificates", "curl"]
_BACKUP_PACKAGES = ["restic", "unattended-upgrades", "apt-listchanges", "ca-certificates"]


def render_sshd_config(*, port: int, allow_users: list[str], sftp_users: list[str] | None = None) -> str:
    """sshd drop-in. sshd keeps the first value it reads for a keyword and Debian includes
    sshd_config.d/*.conf at the top of sshd_config, so this file (10-) wins over later ones,
    cloud-init's own 50-cloud-init.conf included."""
    return "\n".join(
        [
            "# Managed by socle: key-only SSH, no root, no passwords.",
            f"Port {port}",
            "PermitRootLogin no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "AuthenticationMethods publickey",
            "PermitEmptyPasswords no",
            "X11Forwarding no",
            "MaxAuthTries 3",
            "LoginGraceTime 30",
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
            "",
        ]
    )


_AUTO_UPGRADES = 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n'

# Reboot at night when an upgrade (a kernel, libc) needs it; containers restart by their policy.
_UNATTENDED = (
    'Unattended-Upgrade::Origins-Pattern { "origin=Debian,codename=${distro_codename}-security,label=Debian-Security"; '
    '"origin=Debian,codename=${distro_codename},label=Debian"; };\n'
    'Unattended-Upgrade::Automatic-Reboot "true";\n'
    'Unattended-Upgrade::Automatic-Reboot-Time "04:30";\n'
)


def render_cloud_init(
    *,
    hostname: str,
    role: str,
    deploy_user: str,
    admin_keys: list[str],
    ssh_port: int,
    extra_users: list[dict] | None = None,
) -> str:
    """#cloud-config for an `app` server (Docker, driven over SSH by the deploy user) or a `backup`
    server (no Docker, no HTTP: SSH only)."""
    deploy: dict = {
        "name": deploy_user,
        "gecos": "socle deploy user",
        "shell": "/bin/bash",
        "lock_passwd": True,
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "ssh_authorized_keys": list(admin_keys),
    }
    if role == "app":
        # Docker group membership is root-equivalent; it is what lets `pulumi up` drive the
        # engine over SSH without exposing the Docker API on the network.
        deploy["groups"] = ["docker"]
    users: list = [deploy]
    sftp_users = []
    if role == "backup":
        # restic's own user: SFTP only, no shell; the app servers' backup keys are added by their
        # BackupJob over SSH, so adding a server never changes this user data.
        users.append({"name": "restic", "gecos": "socle restic repositories", "homedir": "/srv/restic",
                      "shell": "/usr/sbin/nologin", "lock_passwd": True, "system": True})
        sftp_users.append("restic")
    for extra in extra_users or []:
        users.append(extra)
    allow = [u["name"] for u in users]
    runcmd: list = []
    if role == "app":
        runcmd.append(["systemctl", "enable", "--now", "docker"])
    runcmd += [
        ["systemctl", "enable", "--now", "unattended-upgrades"],
        ["systemctl", "restart", "ssh"],
    ]
    doc = {
        "hostname": hostname,
        "preserve_hostname": False,
        "package_update": True,
        "package_upgrade": True,
        "packages": _APP_PACKAGES if role == "app" else _BACKUP_PACKAGES,
        "disable_root": True,
        "ssh_pwauth": False,
        "users": users,
        "write_files": [
            {
                "path": "/etc/ssh/sshd_config.d/10-socle.conf",
                "permissions": "0644",
                "content": render_sshd_config(port=ssh_port, allow_users=allow, sftp_users=sftp_users),
            },
            {"path": "/etc/apt/apt.conf.d/20auto-upgrades", "permissions": "0644", "content": _AUTO_UPGRADES},
            {"path": "/etc/apt/apt.conf.d/52socle-unattended", "permissions": "0644", "content": _UNATTENDED},
        ],
        "runcmd": runcmd,
        "final_message": "socle: cloud-init finished after $UPTIME seconds",
    }
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)
