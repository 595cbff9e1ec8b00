"""MonitoringHost: socle:monitoring's server part, applied over SSH by the same program as host
setup (host/socle_host_setup.py) with the bundle of components/render/monitoring.py: Debian's
Prometheus, Alertmanager and blackbox exporter, their files checked by their own tools before
they are restarted. node_exporter, on every server, is part of each server's own host setup."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from .render.host_setup import host_setup_stdin, render_host_setup_command


@dataclass
class MonitoringHostArgs:
    address: pulumi.Input[str]
    ssh_port: int
    deploy_user: str
    bundle: pulumi.Input[str]                      # monitoring_bundle(), a secret (SMTP password)
    # After every server's host setup (node_exporter), the containers and the DNS records: started
    # earlier, it would page for servers and hostnames that are still being made.
    ready: list[pulumi.Resource] = field(default_factory=list)
    # The monitoring server's instance: a rebuilt one (a new root disk) is set up again.
    instance_id: pulumi.Input[str] | None = None


class MonitoringHost(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringHostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:monitoring:MonitoringHost", name, None, opts)
        import pulumi_command as command

        conn = command.remote.ConnectionArgs(host=args.address, port=args.ssh_port, user=args.deploy_user,
                                             dial_error_limit=30)
        self.setup = command.remote.Command(
            f"{name}-setup",
            connection=conn,
            create=render_host_setup_command(),
            update=render_host_setup_command(),
            # Monitoring taken out, or moved to another server: the old one stops (else it keeps
            # paging about servers that no longer open 9100 to it).
            delete="sudo systemctl disable --now prometheus prometheus-alertmanager prometheus-blackbox-exporter || true",
            stdin=pulumi.Output.secret(pulumi.Output.from_input(args.bundle).apply(host_setup_stdin)),
            triggers=[args.instance_id] if args.instance_id is not None else None,
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.ready, delete_before_replace=True),
        )
        self.register_outputs({})
