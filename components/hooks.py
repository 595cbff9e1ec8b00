"""Deployment hooks (apps.*.hooks): one-off containers of the app's image, with its environment
and network, on its first server. `before` hooks run before any of the app's containers change
and gate them: a failing migration stops the deployment with the old containers still running.
`after` hooks run once the app's containers on every server are the new ones.

Each hook is a pulumi-command Command running `docker run` on the server (over SSH on OVH, on the
local engine in dev), so its exit status is the deployment's: the Docker provider's own
one-off containers (`must_run: false`, `attach`) record an `exit_code` but do not fail on it
(hashicorp/terraform-provider-docker#106, which added them: "catch the container exit code with
the exit_code attribute"). The
environment goes in on stdin as an env file (a Pulumi secret), never on the command line, which
Pulumi keeps in plain text. A hook runs again when its command, the app's image or its
environment changes (those are its inputs); an `after` hook also whenever the app's containers
are replaced."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from .outputs import resolved
from .render.hooks import render_env_file, render_hook


@dataclass
class DeployHooksArgs:
    target: str                                   # "ovh" | "local"
    physical_name: str                            # the app's
    image: str
    network: pulumi.Input[str]
    env: dict[str, pulumi.Input[str]]             # plain and secret, as the app's containers get it
    before: list[list[str]] = field(default_factory=list)
    after: list[list[str]] = field(default_factory=list)
    user: str | None = None
    volumes: dict[str, str] = field(default_factory=dict)   # Docker volume name -> path (after hooks)
    timeout_minutes: int = 30
    address: pulumi.Input[str] | None = None      # ovh: the server, over SSH
    ssh_port: int = 22
    deploy_user: str = "deploy"
    ready: list[pulumi.Resource] = field(default_factory=list)  # Docker and the app's network exist


class DeployHooks(pulumi.ComponentResource):
    """`done`: what the app's containers wait for (the last `before` hook)."""

    done: list[pulumi.Resource]

    def __init__(self, name: str, args: DeployHooksArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:containers:DeployHooks", name, None, opts)
        self._name, self._args = name, args
        self._env = pulumi.Output.secret(resolved(dict(args.env)).apply(render_env_file))
        self.done = []
        previous: list[pulumi.Resource] = list(args.ready)
        for i, cmd in enumerate(args.before):
            hook = self._hook(name, "before", i, cmd, volumes={}, after=previous)
            previous = [hook]
            self.done = [hook]
        self.register_outputs({})

    def run_after(self, containers: list[pulumi.Resource]) -> None:
        """The `after` hooks, once `containers` (the app's, on every server) are up; again each time
        one of them is replaced."""
        previous = list(containers)
        for i, cmd in enumerate(self._args.after):
            previous = [self._hook(self._name, "after", i, cmd, volumes=self._args.volumes, after=previous,
                                   triggers=[c.id for c in containers])]

    def _hook(self, prefix: str, when: str, i: int, cmd: list[str], *, volumes: dict[str, str],
              after: list[pulumi.Resource], triggers: list | None = None) -> pulumi.Resource:
        import pulumi_command as command

        a = self._args
        # `before` hooks mount no volume: `docker run` would create a missing one without the labels
        # the app's own volume gets; migrations go to the database.
        name = f"{prefix}-{when}-{i}"
        script = pulumi.Output.from_input(a.network).apply(lambda net: render_hook(
            name=f"{a.physical_name}-hook-{when}-{i}", image=a.image, network=net, command=cmd, user=a.user,
            volumes=volumes))
        opts = pulumi.ResourceOptions(parent=self, depends_on=after, custom_timeouts=pulumi.CustomTimeouts(
            create=f"{a.timeout_minutes}m", update=f"{a.timeout_minutes}m"))
        if a.target == "ovh":
            conn = command.remote.ConnectionArgs(host=a.address, port=a.ssh_port, user=a.deploy_user,
                                                 dial_error_limit=30)
            return command.remote.Command(name, connection=conn, create=script, stdin=self._env,
                                          triggers=triggers, opts=opts)
        return command.local.Command(name, create=script, stdin=self._env, triggers=triggers,
                                     interpreter=["/bin/sh", "-c"], opts=opts)
