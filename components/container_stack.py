"""ContainerStack: on one server, the Caddy HTTPS proxy and the app containers behind it.

Only the proxy publishes host ports (80, which only redirects, and 443). Apps sit on the server's
private Docker network and are reached through the proxy by their network alias.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from .render.caddyfile import Route, render_caddyfile


@dataclass
class AppSpec:
    name: str
    image: str
    physical_name: str
    command: list[str] | None = None
    env: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    secret_env: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    # Files copied into the container before it starts (Docker uploads): {file, content, permissions}.
    files: list[dict] = field(default_factory=list)
    volumes: dict[str, str] = field(default_factory=dict)        # volume name -> mount path
    stateful_volumes: set[str] = field(default_factory=set)
    hostname: str | None = None
    sites: list[str] = field(default_factory=list)                 # more hostnames, the same upstream
    port: int | None = None
    maintenance: bool = False
    healthcheck: dict | None = None
    restart: str = "unless-stopped"
    user: str | None = None
    role: str = "app"                                              # app | cache | mail
    container_hostname: str | None = None                          # the container's own host name
    # A hostname the proxy only gets a certificate for (no upstream): the mail host. The container
    # reads that certificate from the proxy's storage, read-only, at `tls_dir`.
    certificate_only: bool = False
    tls_dir: str | None = None
    health_path: str | None = None                                 # behind a load balancer: its health checks
    # On a Docker network of its own, not the server's (the mail server: reachable only through
    # its published ports, and reaching no database or cache).
    own_network: bool = False
    stop_seconds: int | None = None                                # grace before SIGKILL when replaced
    # Host ports bypassing the proxy: (host port, protocol, container port), on every address.
    publish: list[tuple[int, str, int]] = field(default_factory=list)
    private_publish: list[int] = field(default_factory=list)       # published on the private address only
    # One server at a time (an app on several servers): replaced only once these are done, and
    # done only once healthy (its healthcheck), so a `pulumi up` never replaces it everywhere at once.
    after: list[pulumi.Resource] = field(default_factory=list)
    wait_healthy: bool = False


@dataclass
class ProxySettings:
    image: str
    internal_ca: bool
    acme_email: str | None
    hsts_max_age: int
    http_port: int = 80
    https_port: int = 443
    # Behind a load balancer: a host directory on the shared storage (NFS) that every proxy of the
    # set uses as Caddy's storage (/data), instead of a volume of its own.
    shared_data: str | None = None
    # Behind a load balancer: the name served to TLS clients that send none (its health checks).
    default_sni: str | None = None
    # Behind a load balancer: the previous server's proxy, replaced first (one server at a time).
    after: list[pulumi.Resource] = field(default_factory=list)


@dataclass
class ContainerStackArgs:
    physical_name: str
    docker: docker.Provider
    network_name: pulumi.Input[str]
    proxy: ProxySettings
    apps: list[AppSpec] = field(default_factory=list)
    private_address: pulumi.Input[str] | None = None   # the server's address on the private network


def routes_for(apps: list[AppSpec]) -> list[Route]:
    return [Route(h, "" if a.certificate_only else f"{a.name}:{a.port}", a.maintenance, a.certificate_only,
                  a.health_path) for a in apps for h in ([a.hostname] if a.hostname else []) + a.sites]


def certificate_dir(data_root: str, hostname: str) -> str:
    """Where Caddy keeps `hostname`'s certificate and key ({hostname}.crt, {hostname}.key), on the
    host, under its storage (`data_root`, mounted at /data in the proxy)."""
    from .render.mail import LE_CERTIFICATES

    return f"{data_root}/{LE_CERTIFICATES}/{hostname}"


class ContainerStack(pulumi.ComponentResource):
    caddyfile: str
    urls: dict[str, str]
    volumes: dict[str, docker.Volume]

    def __init__(self, name: str, args: ContainerStackArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:containers:ContainerStack", name, None, opts)
        on_host = pulumi.ResourceOptions(parent=self, provider=args.docker)
        self.volumes = {}
        images: dict[str, docker.RemoteImage] = {}

        def image(ref: str) -> pulumi.Output[str]:
            if ref not in images:
                key = ref.replace("/", "-").replace(":", "-").replace(".", "-")
                images[ref] = docker.RemoteImage(f"{name}-image-{key}", name=ref, keep_locally=True, opts=on_host)
            return images[ref].image_id

        routes = routes_for(args.apps)
        self.caddyfile = render_caddyfile(
            routes,
            acme_email=args.proxy.acme_email,
            internal_ca=args.proxy.internal_ca,
            hsts_max_age=args.proxy.hsts_max_age,
            public_https_port=args.proxy.https_port,
            default_sni=args.proxy.default_sni,
        )
        suffix = "" if args.proxy.https_port == 443 else f":{args.proxy.https_port}"
        self.urls = {r.hostname: f"https://{r.hostname}{suffix}" for r in routes if not r.certificate_only}
        proxy_data, data_root = self._proxy_storage(name, args, on_host) if routes else (None, None)

        self.containers: dict[str, docker.Container] = {}
        for app in args.apps:
            mounts = []
            for vol, path in app.volumes.items():
                stateful = vol in app.stateful_volumes
                v = docker.Volume(
                    f"{name}-{app.name}-{vol}",
                    name=f"{app.physical_name}-{vol}",
                    labels=[
                        {"label": "socle.app", "value": app.name},
                        {"label": "socle.stateful", "value": str(stateful).lower()},
                    ],
                    # A stateful volume taken out of the stack file (an app or mail removed, a
                    # server renamed) stays on the server with its data: `docker volume rm` deletes it.
                    opts=pulumi.ResourceOptions(parent=self, provider=args.docker, retain_on_delete=stateful or None),
                )
                self.volumes[f"{app.name}/{vol}"] = v
                mounts.append({"volume_name": v.name, "container_path": path})
            after = list(app.after)
            if app.tls_dir and app.hostname:
                # Read-only, that one certificate's directory: not the whole storage (every site's
                # key). A bind mount (the provider passes host paths as HostConfig.Binds:
                # kreuzwerker/terraform-provider-docker, volumeSetToDockerVolumes), so Docker
                # creates the directory if Caddy has not yet; Caddy renews the files in place.
                mounts.append({"host_path": certificate_dir(data_root, app.hostname),
                               "container_path": app.tls_dir, "read_only": True})
                after += [proxy_data] if proxy_data is not None else []
            envs: pulumi.Input[list] = [f"{k}={v}" for k, v in sorted(app.env.items()) if isinstance(v, str)]
            dynamic = {k: v for k, v in app.env.items() if not isinstance(v, str)}
            if dynamic or app.secret_env:
                # One Output for the whole list (not one per variable: at 500 sites those cost more
                # evaluation time than the resources), secret as soon as one value is.
                # A flat list of values, not dicts: Output.all lifts each dict key by key.
                keys = sorted(dynamic) + sorted(app.secret_env)
                values = {**dynamic, **app.secret_env}
                envs = pulumi.Output.all(*(values[k] for k in keys)).apply(
                    lambda v, plain=envs, keys=keys: plain + [f"{k}={x}" for k, x in zip(keys, v)])
                if app.secret_env:
                    envs = pulumi.Output.secret(envs)
            hc = None
            if app.healthcheck:
                hc = {"tests": app.healthcheck["test"], "interval": app.healthcheck.get("interval", "30s"),
                      "retries": app.healthcheck.get("retries", 3),
                      "start_period": app.healthcheck.get("start_period", "60s"), "timeout": "10s"}
            container = docker.Container(
                f"{name}-{app.name}",
                name=app.physical_name,
                image=image(app.image),
                command=app.command,
                envs=envs,
                user=app.user,
                hostname=app.container_hostname,
                networks_advanced=[{"name": self._own_network(name, app, args, on_host) if app.own_network
                                     else args.network_name, "aliases": [app.name]}],
                volumes=mounts,
                healthcheck=hc,
                # Into the container's own layer before it starts: never a file on the host's disk.
                uploads=app.files or None,
                ports=[{"internal": inside, "external": host, **({"protocol": proto} if proto != "tcp" else {})}
                       for host, proto, inside in app.publish]
                + [{"internal": p, "external": p, "ip": args.private_address} for p in app.private_publish
                   if args.private_address is not None] or None,
                restart=app.restart,
                destroy_grace_seconds=app.stop_seconds,
                labels=[{"label": "socle.app", "value": app.name}, {"label": "socle.role", "value": app.role}],
                log_opts={"max-size": "10m", "max-file": "3"},
                # The Docker provider waits for the healthcheck to pass after creating it (`wait`).
                wait=bool(app.wait_healthy and hc) or None,
                wait_timeout=300 if app.wait_healthy and hc else None,
                opts=pulumi.ResourceOptions(parent=self, provider=args.docker, depends_on=after),
            )
            self.containers[app.name] = container

        self.proxy = None
        if not routes:  # nothing to serve: no proxy, and 80/443 stay closed (components/server.py)
            self.register_outputs({"urls": self.urls})
            return
        if proxy_data is None:
            # Caddy's storage shared with the other proxies behind the load balancer (locks,
            # certificates, ACME challenge tokens): see components/load_balancer.py.
            data_mount = {"host_path": args.proxy.shared_data, "container_path": "/data"}
        else:
            data_mount = {"volume_name": proxy_data.name, "container_path": "/data"}
        self.proxy = docker.Container(
            f"{name}-proxy",
            name=f"{args.physical_name}-proxy",
            image=image(args.proxy.image),
            ports=[
                {"internal": 80, "external": args.proxy.http_port},
                {"internal": 443, "external": args.proxy.https_port},
            ],
            networks_advanced=[{"name": args.network_name, "aliases": ["proxy"]}],
            volumes=[data_mount],
            uploads=[{"file": "/etc/caddy/Caddyfile", "content": self.caddyfile}],
            restart="unless-stopped",
            labels=[{"label": "socle.role", "value": "proxy"}],
            log_opts={"max-size": "10m", "max-file": "3"},
            # Not after the app containers: Caddy starts without its upstreams (a request that comes
            # before an app answers gets a 502), so the proxy and the apps start side by side and
            # the deployment's critical path stays at its minimum (tools/bench_scale.py). Behind a
            # load balancer it waits for the previous server's proxy: one server at a time.
            opts=pulumi.ResourceOptions(parent=self, provider=args.docker, depends_on=args.proxy.after),
        )
        self.register_outputs({"urls": self.urls})

    @staticmethod
    def _own_network(name: str, app: AppSpec, args: ContainerStackArgs, on_host) -> pulumi.Output[str]:
        return docker.Network(f"{name}-{app.name}-network", name=f"{app.physical_name}-net",
                              labels=[{"label": "socle.app", "value": app.name}], opts=on_host).name

    @staticmethod
    def _proxy_storage(name: str, args: ContainerStackArgs, on_host) -> tuple[docker.Volume | None, str]:
        """Caddy's storage: the load-balanced set's shared directory, or a volume of its own; and
        where it is on the host."""
        if args.proxy.shared_data:
            return None, args.proxy.shared_data
        volume = docker.Volume(
            f"{name}-proxy-data", name=f"{args.physical_name}-proxy-data",
            # Certificates and ACME account: re-issued if lost, so not backed up.
            labels=[{"label": "socle.stateful", "value": "false"}], opts=on_host,
        )
        # Docker's local volume driver keeps a volume's files in /var/lib/docker/volumes/NAME/_data.
        return volume, f"/var/lib/docker/volumes/{args.physical_name}-proxy-data/_data"
