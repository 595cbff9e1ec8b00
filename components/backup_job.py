"""BackupJob: the restic backup of one server that holds state.

On `ovh` it is installed on the server over SSH (systemd timers); on `local` it is a container on
the server's private network. Either way it runs backup/socle_backup.py with a manifest (what to
dump and snapshot, where, how long) that the policy pack reads from this resource graph.

Changing the backup settings re-runs the installer in place: nothing here is part of the
server's user data, so no setting of this component can replace a server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_docker as docker

from .outputs import resolved
from .render.backup import (
    ENV_PATH,
    MANIFEST_PATH,
    RUNNER_PATH,
    render_bundle,
    render_crontab,
    render_env,
    render_installer,
    render_secrets_installer,
    render_systemd_units,
    coverage,
    secrets_bundle,
)

RUNNER_SOURCE = (Path(__file__).resolve().parent.parent / "backup" / "socle_backup.py").read_text()
LOCAL_IMAGE = "python:3.12-alpine"


@dataclass
class BackupJobArgs:
    target: str                                   # "ovh" | "local"
    host: str                                     # logical server name (restic --host)
    physical_name: str
    manifest: dict                                # everything but the targets (no secret; may hold outputs)
    targets: list[pulumi.Input[dict]]             # restic repositories (may hold outputs: addresses)
    secret_env: dict[str, pulumi.Input[str]]      # -> /etc/socle/backup.env
    schedules: dict[str, str]                     # run / check / drill -> cron
    time_zone: str = "UTC"                        # of the schedules (IANA name)
    files: dict[str, str] = field(default_factory=dict)  # more files for the server (no secret), by path
    target_kinds: list[str] = field(default_factory=list)  # render.backup.target_kind of each target, plain
    ssh_key: pulumi.Input[str] | None = None      # private key for an SFTP target
    # ovh
    address: pulumi.Input[str] | None = None
    ssh_port: int = 22
    deploy_user: str = "deploy"
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    # The installer only: what must exist before it runs `restic init` (the backup server's access).
    install_after: list[pulumi.Resource] = field(default_factory=list)
    # local
    docker: docker.Provider | None = None
    network_name: pulumi.Input[str] | None = None
    volume_mounts: list[tuple[pulumi.Input[str], str]] = field(default_factory=list)


class BackupJob(pulumi.ComponentResource):
    manifest: pulumi.Output[str]

    def __init__(self, name: str, args: BackupJobArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:backup:BackupJob", name, None, opts)
        self.manifest = resolved({**args.manifest, "targets": list(args.targets)}).apply(
            lambda m: json.dumps(m, indent=1, sort_keys=True))
        env_text = pulumi.Output.secret(resolved(dict(args.secret_env)).apply(render_env))
        if args.target == "ovh":
            self._on_server(name, args, env_text)
        else:
            self._in_container(name, args, env_text)
        self.register_outputs({"manifest": self.manifest})

    def _on_server(self, name: str, args: BackupJobArgs, env_text: pulumi.Output[str]) -> None:
        import pulumi_command as command

        conn = command.remote.ConnectionArgs(host=args.address, port=args.ssh_port, user=args.deploy_user,
                                             dial_error_limit=30)
        units = render_systemd_units(args.schedules, args.time_zone)
        # The coverage is plain config (names, counts), known at preview: written into the
        # installer for the policy pack, which the installer holds the real manifest to.
        declared = coverage({**args.manifest, "targets": args.targets}, args.target_kinds)
        bundle = self.manifest.apply(lambda m: render_bundle(json.loads(m), RUNNER_SOURCE, {**units, **args.files}))
        timers = ["socle-backup" if j == "run" else f"socle-backup-{j}" for j in args.schedules]
        secrets = command.remote.Command(
            f"{name}-backup-secrets",
            connection=conn,
            create=render_secrets_installer(),
            stdin=pulumi.Output.secret(pulumi.Output.all(env_text, args.ssh_key).apply(
                lambda v: secrets_bundle(v[0], v[1]))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
        )
        command.remote.Command(
            f"{name}-backup-install",
            connection=conn,
            create=render_installer(timers, declared),
            update=render_installer(timers, declared),
            delete="sudo systemctl disable --now " + " ".join(f"{t}.timer" for t in timers) + " || true",
            stdin=bundle,
            # After its secrets (the env file and key it reads), and after the backup server
            # accepts its key (its first run creates the repository there).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[secrets, *args.depends_on, *args.install_after]),
        )

    def _in_container(self, name: str, args: BackupJobArgs, env_text: pulumi.Output[str]) -> None:
        on_host = pulumi.ResourceOptions(parent=self, provider=args.docker)
        image = docker.RemoteImage(f"{name}-backup-image", name=LOCAL_IMAGE, keep_locally=True, opts=on_host)
        uploads = [
            {"file": RUNNER_PATH, "content": RUNNER_SOURCE, "executable": True},
            {"file": MANIFEST_PATH, "content": self.manifest},
            {"file": "/etc/crontabs/root", "content": render_crontab(args.schedules, args.time_zone)},
            {"file": ENV_PATH, "content": env_text},
        ]
        docker.Container(
            f"{name}-backup",
            name=f"{args.physical_name}-backup",
            image=image.image_id,
            # Alpine's own restic and database clients; busybox crond runs the schedules.
            # Another time zone than UTC: crond reads the schedules in TZ, with Alpine's tzdata.
            command=["sh", "-c", "apk add --no-cache restic postgresql16-client mariadb-client rsync"
                     + ("" if args.time_zone == "UTC" else " tzdata") + " >/dev/null && exec crond -f -l 8"],
            envs=None if args.time_zone == "UTC" else [f"TZ={args.time_zone}"],
            uploads=uploads,
            networks_advanced=[{"name": args.network_name}],
            # Read-write: this container is also the restore tool of the dev stack.
            volumes=[{"volume_name": vol, "container_path": path} for vol, path in args.volume_mounts],
            restart="unless-stopped",
            labels=[{"label": "socle.role", "value": "backup"}],
            log_opts={"max-size": "10m", "max-file": "3"},
            opts=pulumi.ResourceOptions(parent=self, provider=args.docker, depends_on=args.depends_on),
        )
