"""Platform: assembles one organisation's platform from the validated stack config.

(Named socle_platform, not platform, so that it never shadows the standard library's module.)
"""

from __future__ import annotations

import functools
import json

import pulumi
import pulumi_random as random

import pulumi_docker as docker

from .backup_job import BackupJob, BackupJobArgs
from .bucket import Bucket, BucketArgs
from .config import ConfigSecret, StackConfig
from .container_stack import AppSpec, ContainerStack, ContainerStackArgs, ProxySettings
from .database import Database, DatabaseArgs
from .dns import DnsRecords, DnsRecordsArgs, Record, caa_values, relative_name
from .naming import ovh_location, physical_name
from .backup_job import RUNNER_SOURCE
from .render.files import references, render_file, text_of_source
from .render.mail import (
    CONFIG_DIR as MAIL_CONFIG,
    MAIL_APP,
    MAIL_PORTS,
    MAIL_VOLUMES,
    POSTMASTER_PASSWORD,
    TLS_DIR,
    dkim_key_path,
    dkim_value,
    dmarc_value,
    mail_command,
    mail_env,
    opendkim_files,
    postfix_overrides,
    spf_value,
    txt,
    virtual_aliases,
)
from .render.backup import (
    PING_ENV,
    RESTIC_ROOT,
    SFTP_KNOWN_HOSTS,
    backup_server_bundle,
    IMAGES_DIR,
    render_backup_gate,
    render_env,
    render_prune_units,
    render_restic_access,
    render_restic_keys,
    sftp_known_hosts,
    sftp_target,
)
from .hooks import DeployHooks, DeployHooksArgs
from .monitoring import MonitoringHost, MonitoringHostArgs
from .render import monitoring as mon
from .load_balancer import LoadBalancer, LoadBalancerArgs, Member
from .network import PrivateNetwork, PrivateNetworkArgs
from .server import Server, ServerArgs
from .shared_storage import SharedStorage, SharedStorageArgs

_CACHE_IMAGES = {"redis": "redis:{v}-alpine", "valkey": "valkey/valkey:{v}-alpine"}


def _volume_dir(name: str) -> str:
    """Where Docker keeps a named volume's files on a server (the local driver)."""
    return f"/var/lib/docker/volumes/{name}/_data"
CACHE_PORT = 6379


def shared_mount(name: str) -> str:
    """Where a server mounts the shared storage of its load-balanced set."""
    return f"/srv/socle-shared/{name}"


class Platform(pulumi.ComponentResource):
    servers: dict[str, Server]
    databases: dict[str, Database]
    buckets: dict[str, Bucket]
    stacks: dict[str, ContainerStack]
    urls: dict[str, str]

    def __init__(self, name: str, cfg: StackConfig, secrets: dict[str, str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:platform:Platform", name, None, opts)
        self.cfg = cfg
        self._secrets = secrets
        self._generated: dict[str, random.RandomPassword] = {}
        self._restic_keys: dict[str, list] = {}
        # Each backed-up server's public SSH key (backup server or external SFTP targets).
        self.backup_public_keys: dict[str, pulumi.Output[str]] = {}
        project, stack = pulumi.get_project(), pulumi.get_stack()
        self.pname = lambda *parts: physical_name(project, stack, *parts)
        self._child = pulumi.ResourceOptions(parent=self)
        self._stateful = pulumi.ResourceOptions(parent=self, protect=cfg.protect)

        # The table of contents: each step uses what the ones above made.
        self.network = self._private_network()
        self.shared = self._shared_storage()
        self.servers = self._servers()
        self.databases = self._databases()
        self.buckets = self._buckets()
        self.backups: dict[str, BackupJob] = {}
        # On OVH the backup jobs come first: an image update's backup (_backup_gates) runs the job
        # as this deployment installs it. In dev the job is a container of the server's stack.
        if cfg.backup.enabled and cfg.target == "ovh":
            self._backup_jobs()
        self.stacks, self.urls = self._containers()
        self.load_balancers = self._load_balancers()
        if cfg.backup.enabled and cfg.target != "ovh":
            self._backup_jobs()
        self.dns = self._dns()
        self.mail_reverse = self._mail_reverse()
        self.monitoring = self._monitoring()
        self.register_outputs({"urls": self.urls})

    # ------------------------------------------------------------------ network and servers

    def _private_network(self) -> PrivateNetwork | None:
        cfg, ovh = self.cfg, self.cfg.ovh
        if cfg.target != "ovh" or ovh is None:
            return None
        regions = [ovh.region] + ([ovh.backup_region] if any(s.role == "backup" for s in cfg.servers.values())
                                  and ovh.backup_region != ovh.region else [])
        return PrivateNetwork("private", PrivateNetworkArgs(
            project_id=ovh.project_id, regions=regions, cidr=cfg.network.cidr, vlan_id=cfg.network.vlan_id,
            physical_name=self.pname(), gateway=bool(cfg.balanced_sets())), opts=self._child)

    def _balanced_app(self, members: tuple[str, ...]) -> str:
        """The app (first by name) whose hostname a load-balanced set serves: it names the load
        balancer and its certificate storage, and its health check is theirs. Named after an app,
        not the servers, so adding a server keeps the load balancer, its address and its storage."""
        return next(n for n, a in sorted(self.cfg.apps.items())
                    if a.hostnames() and tuple(sorted(a.hosts())) == members)

    def _set_of(self, server: str) -> tuple[str, ...] | None:
        """The load-balanced set `server` belongs to, if any (at most one: components/checks.py)."""
        return next((m for m in self.cfg.balanced_sets() if server in m), None)

    def _balanced_name(self, members: tuple[str, ...]) -> str:
        return f"lb-{self._balanced_app(members)}"

    def _shared_storage(self) -> dict[tuple[str, ...], SharedStorage]:
        """One File Storage share per load-balanced set of servers: their proxies' Caddy storage."""
        cfg, ovh, net = self.cfg, self.cfg.ovh, self.network
        if net is None:
            return {}
        return {members: SharedStorage(f"{self._balanced_name(members)}-certs", SharedStorageArgs(
            project_id=ovh.project_id, region=ovh.region, physical_name=self.pname(self._balanced_name(members), "certs"),
            network_id=net.networks[ovh.region], subnet_id=net.subnets[ovh.region],
            size_gb=cfg.load_balancing.shared_storage_gb), opts=self._child)
            for members in cfg.balanced_sets()}

    def _servers(self) -> dict[str, Server]:
        cfg, ovh, net = self.cfg, self.cfg.ovh, self.network
        servers: dict[str, Server] = {}
        # App servers first: without a private network, backup servers open SSH to their public
        # addresses. With one, to the private network: a backup server then waits for no other
        # server (the restic user's keys are each forced to their own client's repository).
        for sname, srv in sorted(cfg.servers.items(), key=lambda kv: kv[1].role != "app"):
            clients = ([cfg.network.cidr] if net else
                       [pulumi.Output.concat(servers[a].address, "/32") for a in cfg.app_servers()]) \
                if srv.role == "backup" else []
            region = (ovh.backup_region if srv.role == "backup" else ovh.region) if ovh else None
            members = self._set_of(sname)
            servers[sname] = Server(sname, ServerArgs(
                target=cfg.target, physical_name=self.pname(sname), role=srv.role,
                deploy_user=cfg.access.deploy_user, admin_keys=cfg.access.authorized_keys(),
                admin_cidrs=list(cfg.access.admin_cidrs), ssh_port=cfg.access.ssh_port,
                extra_ssh_ports=tuple(cfg.access.extra_ssh_ports),
                # A backup server lives in the backup region, away from the data it keeps.
                project_id=ovh.project_id if ovh else None, region=region,
                flavor=srv.flavor, image=srv.image,
                auto_backup_cron=srv.auto_backup.cron if srv.auto_backup else None,
                auto_backup_rotation=srv.auto_backup.rotation if srv.auto_backup else None,
                rebuild=srv.rebuild, data_gb=srv.disk_gb,
                ssh_clients=clients,
                private_network_id=net.networks[region] if net else None,
                private_subnet_id=net.subnets[region] if net else None,
                private_cidr=cfg.network.cidr if net else None,
                private_ports=self._private_ports(sname),
                public_http=self._public_http(sname),
                serves_http=any(a.hostnames() and sname in a.hosts() for a in cfg.apps.values())
                or (cfg.mail is not None and cfg.mail.server == sname),
                shares=[(self.shared[members].id, self.shared[members].export,
                         shared_mount(self._balanced_name(members)))] if members in self.shared else [],
                public_ports=[(p.port, p.protocol, aname) for aname, app in cfg.apps.items()
                              if sname in app.hosts() for p in app.ports]
                + ([(p, "tcp", MAIL_APP) for p, _ in MAIL_PORTS] if cfg.mail and cfg.mail.server == sname else []),
                node_exporter=self._watched(), upgrade_mail=self._upgrade_mail(),
            ), opts=self._stateful)
        return servers

    def _upgrade_mail(self) -> pulumi.Output[str] | None:
        """unattended-upgrades' reports by e-mail on every server (socle:monitoring.email and
        upgradeReports): msmtp with the alerts' SMTP login, a secret."""
        m = self.cfg.monitoring
        if not self._watched() or m.email is None or m.upgrade_reports == "off":
            return None
        return pulumi.Output.secret(self._secret(m.email.password)).apply(
            lambda pw: json.dumps(mon.upgrade_mail_part(self._receivers(pw), m.upgrade_reports), sort_keys=True))

    def _receivers(self, password, webhook=None, heartbeat=None) -> "mon.Receivers":
        """Where socle:monitoring sends: its e-mail settings (with the SMTP password resolved), and
        the webhook and heartbeat URLs when given."""
        e = self.cfg.monitoring.email
        return mon.Receivers(emails=tuple(e.to) if e else (), email_from=e.sender if e else None,
                             smarthost=e.smarthost if e else None, smtp_username=e.username if e else None,
                             smtp_password=password, webhook_url=webhook, heartbeat_url=heartbeat)

    @functools.cached_property
    def sftp_authorized_keys(self) -> dict[str, pulumi.Output[str]]:
        """With an external SFTP backup target: for each server, the line its owner adds to the
        host's authorized_keys (`restrict`: no forwarding, no agent, no pty; `from`: that server's
        address only)."""
        if not self.cfg.backup.targets.sftp:
            return {}
        # from=: only this server's public address may use its key.
        return {name: pulumi.Output.all(key, self.servers[name].address).apply(
                    lambda v, n=name: f'restrict,from="{v[1]}" {v[0].strip()} {self.pname(n)}')
                for name, key in self.backup_public_keys.items()}

    def _public_http(self, server: str) -> bool:
        """80/443 open to the Internet, for a server that serves hostnames (ServerArgs.serves_http):
        unless every hostname it serves is behind a load balancer."""
        hosts = [a.hosts() for a in self.cfg.apps.values() if a.hostnames() and server in a.hosts()]
        return not hosts or any(len(h) == 1 for h in hosts)

    def _private_ports(self, server: str) -> tuple[int, ...]:
        """Ports only the private network reaches: the proxy's behind a load balancer, and a
        persistent or shared cache that apps on other servers use."""
        cfg = self.cfg
        if cfg.target != "ovh":
            return ()
        ports = {80, 443} if self._set_of(server) else set()
        if self._watched():  # node_exporter, scraped by the monitoring server
            ports.add(mon.NODE_PORT)
        for cname in cfg.caches:
            if cfg.host_of("caches", cname) == server and any(s != server for s in cfg.servers_using("caches", cname)):
                ports.add(CACHE_PORT)
        return tuple(sorted(ports))

    # ------------------------------------------------------------------ data

    def _databases(self) -> dict[str, Database]:
        cfg, ovh = self.cfg, self.cfg.ovh
        databases = {}
        for dname, db in cfg.databases.items():
            hosting = cfg.database_hosting(dname)
            host = self.servers[cfg.host_of("databases", dname)] if hosting == "container" else None
            users = cfg.servers_using("databases", dname)
            databases[dname] = Database(dname, DatabaseArgs(
                engine=db.engine, version=db.version, hosting=hosting, physical_name=self.pname(dname),
                databases=list(db.databases),
                project_id=ovh.project_id if ovh else None, region=ovh.region if ovh else None,
                backup_region=ovh.backup_region if ovh else None, plan=db.plan, flavor=db.flavor,
                nodes=db.nodes, disk_gb=db.disk_gb, backup_time=db.backup_time, maintenance_time=db.maintenance_time,
                deletion_protection=db.deletion_protection, password_reset=cfg.credentials_rotation,
                allowed=[(s, self.servers[s].address) for s in users],
                docker=host.docker if host else None, network_name=host.network_name if host else None,
            ), opts=self._stateful)
        return databases

    def _buckets(self) -> dict[str, Bucket]:
        cfg, ovh = self.cfg, self.cfg.ovh
        buckets = {}
        for bname, b in cfg.buckets.items():
            host = self.servers[cfg.host_of("buckets", bname)] if cfg.target == "local" else None
            is_backup = bname == cfg.backup_bucket()
            lifecycle = [r.model_dump() for r in b.lifecycle]
            if is_backup and b.object_lock:
                # Versions that restic's prune deleted stay locked for objectLock.days, then go.
                lifecycle.append({"prefix": "", "expire_days": None, "noncurrent_expire_days": b.object_lock.days + 1})
            default_region = (ovh.backup_region if is_backup else ovh.region) if ovh else None
            buckets[bname] = Bucket(bname, BucketArgs(
                target=cfg.target, physical_name=self.pname(bname),
                region=b.region or (ovh_location(default_region) if ovh else None),
                project_id=ovh.project_id if ovh else None,
                versioning=b.versioning, encryption=b.encryption,
                object_lock_mode=b.object_lock.mode if b.object_lock else None,
                object_lock_days=b.object_lock.days if b.object_lock else None,
                lifecycle=lifecycle, purpose="backup" if is_backup else "data",
                docker=host.docker if host else None, network_name=host.network_name if host else None,
                # A backup bucket is protected in every OVH stack, staging included (and retained
                # on delete by the Bucket component), since replacing it deletes every object.
            ), opts=pulumi.ResourceOptions(parent=self, protect=True) if is_backup and cfg.target == "ovh"
               else self._stateful)
        return buckets

    # ------------------------------------------------------------------ containers

    def _containers(self) -> tuple[dict[str, ContainerStack], dict[str, str]]:
        cfg = self.cfg
        # Servers in an order where each server of an app on several servers comes after the ones
        # listed before it (one server at a time, below).
        order = sorted(cfg.servers, key=lambda s: max([a.hosts().index(s) for a in cfg.apps.values()
                                                       if s in a.hosts()] or [0]))
        specs: dict[str, list[AppSpec]] = {s: [] for s in order}
        cache_conn = {}
        for cname, cache in cfg.caches.items():
            host = cfg.host_of("caches", cname)
            spec, cache_conn[cname] = self._cache(cname, cache, host)
            specs[host].append(spec)
        for aname, app in cfg.apps.items():
            for sname in app.hosts():
                specs[sname].append(self._app_spec(aname, app, cache_conn, sname))
        if cfg.mail is not None:
            specs[cfg.mail.server].append(self._mail_server())

        gates = self._backup_gates()
        hooks = {aname: self._hooks(aname, app, specs, gates.get(aname, [])) for aname, app in cfg.apps.items()
                 if app.hooks.before or app.hooks.after}
        stacks, urls = {}, {}
        for sname, apps in specs.items():
            if not apps:
                continue
            for spec in apps:
                self._one_server_at_a_time(spec, sname, stacks)
                spec.after = [*spec.after, *gates.get(spec.name, [])]
                if spec.name in hooks:  # no server's containers change before the `before` hooks pass
                    spec.after = [*spec.after, *hooks[spec.name].done]
            srv = self.servers[sname]
            st = ContainerStack(f"{sname}-containers", ContainerStackArgs(
                physical_name=self.pname(sname), docker=srv.docker, network_name=srv.network_name,
                proxy=self._proxy_settings(sname, stacks), apps=apps, private_address=srv.private_address,
            ), opts=self._child)
            stacks[sname] = st
            urls.update(st.urls)
        for aname, h in hooks.items():
            h.run_after([stacks[s].containers[aname] for s in cfg.apps[aname].hosts()])
        return stacks, urls

    def _data_holders(self) -> dict[str, tuple[str, dict[str, list[str]]]]:
        """What holds data, by container name: its image, and the servers whose backup jobs keep
        that data, each with the data's volume directories there. An app: the server of its
        backed-up stateful volumes, and the one that dumps each database it uses (the same rule as
        _backup_jobs); the mail server; a persistent cache. (A database container is not gated:
        its image changes only with its engine's major version, which needs a dump and a restore
        anyway, README "Databases".)"""
        cfg = self.cfg
        images = {aname: app.image for aname, app in cfg.apps.items()}
        if cfg.mail is not None:
            images[MAIL_APP] = cfg.mail.image
        images.update({c: _CACHE_IMAGES[cache.engine].format(v=cache.version) for c, cache in cfg.caches.items()
                       if cache.persistent})
        servers: dict[str, dict[str, list[str]]] = {}
        for server, owner, vol, _ in cfg.backed_up_volumes():
            servers.setdefault(owner, {}).setdefault(server, []).append(_volume_dir(self.pname(owner, vol)))
        for aname, app in cfg.apps.items():
            for use in app.databases:
                servers.setdefault(aname, {}).setdefault(cfg.dumping_server(use.use.split(".")[0]), [])
        return {o: (images[o], servers[o]) for o in images if o in servers}

    def _backup_gates(self) -> dict[str, list[pulumi.Resource]]:
        """Before a container holding data (_data_holders) changes image, a backup of that data,
        which must pass (render/backup.py render_backup_gate), on each server whose backup job
        keeps it. Its containers and `before` hooks (migrations) wait for it. On target ovh; dev
        has no data to keep.

        No `triggers`: pulumi-command replaces a Command whose triggers change, creating the new
        one before deleting the old, and the old one's delete (which removes the image record)
        would then erase the record just written. The image is in the script instead, so a new
        image updates the gate in place, and an update without an `update` command runs `create`
        again (pulumi-command docs, Command.create)."""
        cfg = self.cfg
        if cfg.target != "ovh" or not cfg.backup.enabled:
            return {}
        import pulumi_command as command

        gates: dict[str, list[pulumi.Resource]] = {}
        for name, (image, servers) in self._data_holders().items():
            for sname in sorted(servers):
                srv = self.servers[sname]
                conn = command.remote.ConnectionArgs(host=srv.address, port=cfg.access.ssh_port,
                                                     user=cfg.access.deploy_user, dial_error_limit=30)
                gates.setdefault(name, []).append(command.remote.Command(
                    f"{name}-{sname}-backup-gate", connection=conn, create=render_backup_gate(name, image, servers[sname]),
                    # Taken out (the app moved, or backups off): its record goes, or a stale one would
                    # compare with a later deployment's image.
                    delete=f"sudo rm -f {IMAGES_DIR}/{name}",
                    # After this deployment's backup installer on that server: a manifest or runner
                    # that changes with the image is the one that backs up.
                    # Replaced (if ever), the old one goes first: its delete removes the record,
                    # which the new one then writes. `triggers` ignored: gates made before they were
                    # dropped keep theirs in the state, and dropping them would replace every gate.
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[
                        r for r in (srv.host_setup, self.backups.get(sname)) if r is not None],
                        delete_before_replace=True, ignore_changes=["triggers"],
                        custom_timeouts=pulumi.CustomTimeouts(create="180m", update="180m"))))
        return gates

    def _hooks(self, aname: str, app, specs: dict[str, list[AppSpec]], gates: list) -> DeployHooks:
        """The app's deployment hooks, on its first server, with the environment its containers
        get there (components/hooks.py)."""
        first = app.hosts()[0]
        spec = next(s for s in specs[first] if s.name == aname)
        srv = self.servers[first]
        return DeployHooks(f"{aname}-hooks", DeployHooksArgs(
            target=self.cfg.target, physical_name=spec.physical_name, image=app.image,
            network=srv.network_name, env={**spec.env, **spec.secret_env},
            before=app.hooks.before, after=app.hooks.after, user=app.user,
            volumes={f"{spec.physical_name}-{v}": path for v, path in spec.volumes.items()},
            timeout_minutes=app.hooks.timeout_minutes, address=srv.address,
            ssh_port=self.cfg.access.ssh_port, deploy_user=self.cfg.access.deploy_user,
            # After the backup gates: a migration runs on data that was just backed up.
            ready=[r for r in (srv.host_setup, srv.network) if r is not None] + gates,
        ), opts=self._child)

    def _one_server_at_a_time(self, spec: AppSpec, server: str, stacks: dict) -> None:
        """An app on several servers is updated one server at a time, in the order of its `servers`,
        each waiting for the previous one to be healthy again (README "Several servers")."""
        hosts = self.cfg.apps[spec.name].hosts() if spec.name in self.cfg.apps else [server]
        if len(hosts) > 1:
            spec.wait_healthy = True
            before = hosts[:hosts.index(server)]
            if before and before[-1] in stacks:
                spec.after = [stacks[before[-1]].containers[spec.name]]

    def _proxy_settings(self, server: str, stacks: dict) -> ProxySettings:
        """The server's HTTPS proxy; behind a load balancer, with the Caddy storage the other proxies
        of its set share (NFS), after the previous server's proxy, and a name for clients without SNI."""
        cfg = self.cfg
        members = self._set_of(server) if self.shared else None
        return ProxySettings(
            image=cfg.proxy.image, internal_ca=cfg.target == "local", acme_email=cfg.proxy.acme_email,
            hsts_max_age=cfg.proxy.hsts_max_age, http_port=cfg.proxy.http_port, https_port=cfg.proxy.https_port,
            shared_data=f"{shared_mount(self._balanced_name(members))}/caddy" if members else None,
            after=self._previous_proxy(members, server, stacks) if members else [],
            default_sni=self._health_host(members) if members else None,
        )

    def _health_host(self, members: tuple[str, ...]) -> str:
        """The hostname the load balancer of `members` asks for in its health checks."""
        return self.cfg.apps[self._balanced_app(members)].hostnames()[0]

    @staticmethod
    def _previous_proxy(members: tuple[str, ...], server: str, stacks: dict) -> list:
        """The proxy of the server before `server` in its load-balanced set, if made already."""
        before = [m for m in members[:members.index(server)] if m in stacks and stacks[m].proxy is not None]
        return [stacks[before[-1]].proxy] if before else []

    def _cache(self, cname: str, cache, host: str) -> tuple[AppSpec, dict]:
        """A Redis/Valkey container. Persistent (sessions): an append-only file on a backed-up volume
        and `noeviction` (a full cache refuses writes rather than drop a session); otherwise a pure
        cache, nothing on disk, least recently used keys evicted. Apps on other servers reach it at
        its server's private address."""
        pw = random.RandomPassword(f"{cname}-password", length=32, special=False, opts=self._child)
        durability = ('--appendonly yes --appendfsync everysec --save "" --maxmemory-policy noeviction'
                      if cache.persistent else '--save "" --appendonly no --maxmemory-policy allkeys-lru')
        shared = any(s != host for s in self.cfg.servers_using("caches", cname))
        spec = AppSpec(
            name=cname, image=_CACHE_IMAGES[cache.engine].format(v=cache.version),
            physical_name=self.pname(cname), role="cache",
            # The password travels in the environment, not on the command line (`ps` shows that).
            command=["sh", "-c", 'exec redis-server --requirepass "$CACHE_PASSWORD" '
                     f'{durability} --maxmemory {cache.max_memory_mb}mb'],
            secret_env={"CACHE_PASSWORD": pw.result},
            healthcheck={"test": ["CMD-SHELL", 'REDISCLI_AUTH="$CACHE_PASSWORD" redis-cli ping | grep -q PONG'],
                         "interval": "10s"},
            volumes={"data": "/data"} if cache.persistent else {},
            stateful_volumes={"data"} if cache.persistent else set(),
            private_publish=[CACHE_PORT] if shared else [],
        )
        secret_pw = pulumi.Output.secret(pw.result)
        local = {"host": cname, "port": str(CACHE_PORT), "password": secret_pw,
                 "url": pulumi.Output.secret(pulumi.Output.concat("redis://:", secret_pw, "@", cname, f":{CACHE_PORT}/0"))}
        conn = {"local": local}
        if shared:
            address = self.servers[host].private_address
            conn["remote"] = {"host": address, "port": str(CACHE_PORT), "password": secret_pw,
                              "url": pulumi.Output.secret(pulumi.Output.concat("redis://:", secret_pw, "@", address,
                                                                                 f":{CACHE_PORT}/0"))}
        conn["server"] = host
        return spec, conn

    # ------------------------------------------------------------------ load balancers and DNS

    def _load_balancers(self) -> dict[tuple[str, ...], LoadBalancer]:
        cfg, ovh, net = self.cfg, self.cfg.ovh, self.network
        out = {}
        for members in cfg.balanced_sets():
            first = cfg.apps[self._balanced_app(members)]
            lb = self._balanced_name(members)
            out[members] = LoadBalancer(lb, LoadBalancerArgs(
                project_id=ovh.project_id, region=ovh.region, physical_name=self.pname(lb),
                flavor=cfg.load_balancing.flavor, network_id=net.networks[ovh.region],
                subnet_id=net.subnets[ovh.region], health_host=first.hostnames()[0], health_path=first.health_path,
                members=[Member(s, self.servers[s].private_address, net.subnets[ovh.region]) for s in members],
                http_port=cfg.proxy.http_port, https_port=cfg.proxy.https_port,
            ), opts=pulumi.ResourceOptions(parent=self, depends_on=[self.stacks[s] for s in members]))
        return out

    def _dns(self) -> DnsRecords | None:
        cfg = self.cfg
        if cfg.dns.provider == "none":
            return None
        zone = cfg.dns_zone()
        records = []
        for aname, app in cfg.apps.items():
            if not app.hostnames():
                continue
            # A load-balanced name points at its load balancer's floating IP, published once the load
            # balancer exists (the policy pack checks that an A record points at a TLS terminator).
            lb = self.load_balancers.get(tuple(sorted(app.hosts())))
            address = lb.address if lb else self.servers[app.hosts()[0]].address
            named = ([(f"app-{aname}", app.hostname)] if app.hostname else []) + \
                [(f"site-{aname}-{site.name}", site.hostname) for site in app.sites]
            records += [Record(key, relative_name(h, zone), "A", [address], cfg.dns.ttl, after=[lb.lb] if lb else [])
                        for key, h in named]
        records += [Record(f"{r.type.lower()}-{i}", r.name, r.type, list(r.values), r.ttl or cfg.dns.ttl)
                    for i, r in enumerate(cfg.dns.records)]
        # CAA at the stack's domain, not the zone apex: a lookup climbs from the hostname, so this
        # covers every app, and a staging stack in a shared zone never owns (or destroys) prod's.
        at = relative_name(cfg.domain, zone)
        if cfg.dns.caa_issuers and not any(r.type == "CAA" and r.name == at for r in cfg.dns.records):
            records.append(Record("caa", at, "CAA", caa_values(cfg.dns.caa_issuers, cfg.proxy.acme_email),
                                  cfg.dns.ttl))
        records += self._mail_records(zone)
        return DnsRecords("dns", DnsRecordsArgs(provider=cfg.dns.provider, zone=zone, records=records),
                          opts=self._child)

    def _mail_records(self, zone: str) -> list[Record]:
        """socle:mail: the mail host's A record, MX, SPF, DMARC and the DKIM key (components/render/mail.py).
        The DKIM key pair is made here (RSA 2048, the size every receiver verifies; its private half a
        Pulumi secret) and named after its selector: a new selector is a new key and record, and the
        old ones go (mail in transit signed with the old key then fails DKIM)."""
        mail = self.cfg.mail
        if mail is None:
            return []
        cfg = self.cfg
        at = relative_name(cfg.domain, zone)
        under = "" if at == "@" else f".{at}"
        host = self.mail_host
        ttl = cfg.dns.ttl
        return [
            Record("mail-host", relative_name(host, zone), "A", [self.servers[mail.server].address], ttl),
            Record("mail-mx", at, "MX", [f"10 {host}."], ttl),
            Record("mail-spf", at, "TXT", [txt(spf_value(mail.spf_include))], ttl),
            Record("mail-dmarc", f"_dmarc{under}", "TXT", [txt(dmarc_value(mail.dmarc.policy, mail.dmarc.report_to))], ttl),
            Record("mail-dkim", f"{mail.dkim_selector}._domainkey{under}", "TXT",
                   [self.dkim_key.public_key_pem.apply(lambda pem: txt(dkim_value(pem)))], ttl),
        ]

    @property
    def mail_host(self) -> str:
        return self.cfg.mail_host()

    @functools.cached_property
    def dkim_key(self):
        """socle:mail's DKIM key pair (RSA 2048, the size every receiver verifies; its private half a
        Pulumi secret), named after its selector: a new selector is a new key."""
        import pulumi_tls as tls

        # Not protected: a new selector must be able to replace it (a protected key would stop
        # `pulumi up`), and losing it costs a new DNS record, not data.
        return tls.PrivateKey(f"mail-dkim-{self.cfg.mail.dkim_selector}", algorithm="RSA", rsa_bits=2048,
                              opts=self._child)

    @functools.cached_property
    def postmaster_password(self) -> random.RandomPassword:
        """The password of postfix's first mailbox, postmaster@<domain> (stack output
        mailPostmasterPassword): made at the first start, so that the server runs before anyone
        has made a mailbox."""
        return random.RandomPassword("mail-postmaster-password", length=24, special=False, opts=self._child)

    def _mail_server(self) -> AppSpec:
        """socle:mail's server: docker-mailserver on mail.server (components/render/mail.py). Its four
        ports published (and opened in that server's security group only: _servers); the DKIM key
        and OpenDKIM's tables uploaded into the container (the key a Pulumi secret); the certificate
        read, read-only, from the HTTPS proxy, which gets and renews it for the mail host."""
        cfg, mail = self.cfg, self.cfg.mail
        host = self.mail_host
        files = [{"file": path, "content": text, "permissions": "0444"}
                 for path, text in opendkim_files(cfg.domain, mail.dkim_selector).items()]
        files.append({"file": dkim_key_path(cfg.domain, mail.dkim_selector), "permissions": "0400",
                      "content": pulumi.Output.secret(self.dkim_key.private_key_pem)})
        files.append({"file": f"{MAIL_CONFIG}/postfix-main.cf", "content": postfix_overrides(), "permissions": "0444"})
        files.append({"file": f"{MAIL_CONFIG}/postfix-virtual.cf", "content": virtual_aliases(mail.aliases),
                      "permissions": "0444"})
        files.append({"file": POSTMASTER_PASSWORD, "permissions": "0400",
                      "content": pulumi.Output.secret(self.postmaster_password.result)})
        forwards_out = any(not a.lower().endswith("@" + cfg.domain) for to in mail.aliases.values() for a in to)
        return AppSpec(
            name=MAIL_APP, image=mail.image, physical_name=self.pname(MAIL_APP), role="mail",
            env=mail_env(hostname=host, postmaster=mail.postmaster or f"postmaster@{cfg.domain}",
                         max_message_mb=mail.max_message_mb, time_zone=cfg.time_zone, forwards_out=forwards_out),
            command=mail_command(host, f"postmaster@{cfg.domain}"), files=files,
            volumes=dict(MAIL_VOLUMES), stateful_volumes=set(MAIL_VOLUMES),
            hostname=host, certificate_only=True, tls_dir=TLS_DIR, container_hostname=host,
            publish=[(port, "tcp", port) for port, _ in MAIL_PORTS],
            # A network of its own: a compromised Postfix or Dovecot reaches no database or cache.
            own_network=True,
            # docker-mailserver asks for time to flush its queue and stop its daemons cleanly.
            stop_seconds=60,
        )

    def _mail_reverse(self):
        """The reverse DNS (PTR) of the mail server's public IPv4 address, at OVH (ovh.ip.Reverse).
        OVH accepts it only once the name resolves to the address (the provider retries a 400 for
        readiness_timeout_duration), hence after the mail host's record. Every argument forces a
        new resource (terraform-provider-ovh ovh/resource_ip_reverse.go: ip, ip_reverse, reverse
        all ForceNew) and the new one has the old one's ID (the address): replaced delete first, or
        the old one's deletion would remove the reverse just set. OVH wants the name with its final
        dot (docs.ovh.com "Configuring reverse DNS"), and returns it so: no diff after a refresh.
        (pulumi-ovh calls the provider's ip_reverse and reverse `ReverseIp` and `ReverseValue`.)"""
        mail = self.cfg.mail
        if mail is None or not mail.reverse_dns or self.cfg.target != "ovh":
            return None
        import pulumi_ovh as ovh

        address = self.servers[mail.server].address
        after = self.dns.records.get("mail-host", []) if self.dns else []
        return ovh.ip.Reverse(
            "mail-reverse", ip=pulumi.Output.concat(address, "/32"), reverse_ip=address,
            reverse_value=f"{self.mail_host}.", readiness_timeout_duration="15m",
            opts=pulumi.ResourceOptions(parent=self, depends_on=after, delete_before_replace=True))

    def _watched(self) -> bool:
        return self.cfg.monitoring is not None and self.cfg.target == "ovh"

    def _secret(self, value) -> pulumi.Input[str] | None:
        """A setting written as a plain value or as {config: NAME} (a key of socle:secrets)."""
        if value is None or isinstance(value, str):
            return value
        return pulumi.Output.secret(self._secrets[value.config])

    def _monitoring(self) -> MonitoringHost | None:
        """socle:monitoring (components/render/monitoring.py): every server's node_exporter (its own
        host setup), every public hostname probed over HTTPS, the backups of every server that
        has some, alerts by e-mail and/or webhook, the Watchdog to the heartbeat URL."""
        m = self.cfg.monitoring
        if not self._watched():
            return None
        cfg = self.cfg
        names = sorted(self.servers)
        # Not a hostname in maintenance: its 503 is on purpose, and would page and burn its budget.
        endpoints = {f"https://{h}{'' if cfg.proxy.https_port == 443 else f':{cfg.proxy.https_port}'}{app.health_path}": a
                     for a, app in sorted(cfg.apps.items()) if not (app.maintenance or cfg.maintenance)
                     for h in app.hostnames()}
        t = mon.Thresholds(latency_ms=m.latency_ms, availability_percent=m.availability_percent,
                           disk_warning_percent=m.disk.warning_percent, disk_critical_percent=m.disk.critical_percent,
                           disk_full_in_hours=m.disk.full_in_hours, backup_max_age_hours=cfg.backup.max_age_hours)
        e = m.email
        secrets = [self._secret(e.password) if e else None, self._secret(m.webhook_url), self._secret(m.heartbeat_url)]

        def bundle(v: list) -> str:
            addresses, (password, webhook, heartbeat) = v[:len(names)], v[len(names):]
            watched = mon.Watched(nodes={n: f"{a}:{mon.NODE_PORT}" for n, a in zip(names, addresses)},
                                  endpoints=endpoints, backed_up=tuple(sorted(self.backups)))
            receivers = self._receivers(password, webhook=webhook, heartbeat=heartbeat)
            return mon.monitoring_bundle(
                prometheus=mon.render_prometheus(watched, stack=pulumi.get_stack(), retention_days=m.retention_days),
                rules=mon.render_rules(t, watched), alertmanager=mon.render_alertmanager(receivers),
                blackbox=mon.render_blackbox(), retention_days=m.retention_days)

        srv = self.servers[m.server]
        return MonitoringHost("monitoring", MonitoringHostArgs(
            address=srv.address, ssh_port=cfg.access.ssh_port, deploy_user=cfg.access.deploy_user,
            bundle=pulumi.Output.all(*[self.servers[n].private_address for n in names], *secrets).apply(bundle),
            instance_id=srv.instance.id,
            ready=[*(s.host_setup for s in self.servers.values() if s.host_setup is not None), *self.stacks.values(),
                   *([self.dns] if self.dns else [])]), opts=self._child)

    def _backup_jobs(self) -> None:
        """One BackupJob per app server holding state: its stateful volumes, the databases it runs
        as containers, and the managed databases its apps use (dumped by the first such server)."""
        cfg, ovh = self.cfg, self.cfg.ovh
        local = cfg.target == "local"
        b = cfg.backup
        volumes: dict[str, list[dict]] = {s: [] for s in cfg.app_servers()}
        databases: dict[str, list[dict]] = {s: [] for s in cfg.app_servers()}
        passwords: dict[str, dict[str, pulumi.Input[str]]] = {s: {} for s in cfg.app_servers()}

        def vol_path(name: str) -> str:
            return f"/volumes/{name}" if local else _volume_dir(name)

        for server, owner, v, spec in cfg.backed_up_volumes():
            # (a cache's append-only file is read as it is by restic; see README "Caches")
            name = self.pname(owner, v)
            entry = {"name": name, "path": vol_path(name)}
            volumes[server].append({**entry, "include": list(spec.include), "exclude": list(spec.exclude)} if spec
                                   else {**entry, "exclude": []})
        if local:
            for bname in cfg.buckets:
                name = f"{self.pname(bname)}-data"
                volumes[cfg.host_of("buckets", bname)].append({"name": name, "path": vol_path(name), "exclude": []})
        for dname, db in cfg.databases.items():
            comp = self.databases[dname]
            server = cfg.dumping_server(dname)
            if cfg.database_hosting(dname) == "container":
                user, password, tls = comp.admin_user, comp.admin_password, False
            else:
                tls = True
            for logical in db.databases:
                env = f"SOCLE_DB_PASSWORD_{dname}_{logical}".upper().replace("-", "_")
                # The drill's throw-away server: the engine the dump came from.
                scratch_image = (f"postgres:{db.version}-alpine" if db.engine == "postgresql"
                                 else f"mysql:{db.version}" if cfg.database_hosting(dname) == "managed"
                                 else f"mariadb:{db.version}")
                entry = {"cluster": self.pname(dname), "database": logical, "engine": db.engine,
                         "host": comp.host, "port": comp.port, "tls": tls, "passwordEnv": env,
                         "scratchImage": scratch_image}
                if cfg.database_hosting(dname) == "container":
                    entry.update({"user": user, "container": self.pname(dname),
                                  "mode": "tcp" if local else "exec", "host": dname,
                                  "port": "5432" if db.engine == "postgresql" else "3306"})
                    passwords[server][env] = password
                else:
                    conn = comp.connections[logical]
                    # Dumped with the official image of the engine at the cluster's major version,
                    # never an older client from the distribution (pg_dump refuses newer servers).
                    client = f"postgres:{db.version}" if db.engine == "postgresql" else f"mysql:{db.version}"
                    entry.update({"user": conn.user, "mode": "tcp", "clientImage": client})
                    passwords[server][env] = conn.password
                databases[server].append(entry)

        schedules = {"run": b.schedule, "check": b.check_schedule, "drill": b.drill_schedule}
        jobs: dict[str, BackupJobArgs] = {}
        for sname in cfg.app_servers():
            if not volumes[sname] and not databases[sname]:
                continue
            srv = self.servers[sname]
            restic_password = random.RandomPassword(f"{sname}-restic-password", length=40, special=False,
                                                    opts=pulumi.ResourceOptions(parent=self)).result
            secret_env: dict = {"RESTIC_PASSWORD": restic_password}
            secret_env.update(passwords[sname])
            # One dead-man URL per job (the runner's PING_ENV): run, check and drill report apart.
            pings = {"run": b.ping_url, "check": b.check_ping_url, "drill": b.drill_ping_url}
            for job, url in pings.items():
                if url is not None:
                    secret_env[PING_ENV[job]] = self._secret(url)
            targets: list = []
            mounts = [(v["name"], v["path"]) for v in volumes[sname]]
            ssh_key = None
            if b.targets.bucket:
                bk = self.buckets[b.targets.bucket]
                targets.append(pulumi.Output.all(bk.endpoint, bk.bucket).apply(lambda eb, s=sname: {
                    "name": "bucket", "kind": "s3", "repository": f"s3:{eb[0]}/{eb[1]}/{s}",
                    "env": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"]}))
                secret_env.update({"AWS_ACCESS_KEY_ID": bk.access_key, "AWS_SECRET_ACCESS_KEY": bk.secret_key,
                                   "AWS_DEFAULT_REGION": bk.region})
            if b.targets.server or b.targets.sftp:
                import pulumi_tls as tls

                # This server's own key, for socle's backup server and for an external SFTP host.
                key = tls.PrivateKey(f"{sname}-backup-ssh-key", algorithm="ED25519",
                                     opts=pulumi.ResourceOptions(parent=self))
                ssh_key = key.private_key_openssh
                self.backup_public_keys[sname] = key.public_key_openssh
            if b.targets.server:
                self._restic_keys.setdefault(b.targets.server, []).append(
                    (sname, key.public_key_openssh, restic_password))
                port = cfg.access.ssh_port
                # Append-only: the key's forced command on the backup server serves this server's own
                # repository and refuses every deletion; the backup server prunes it itself.
                # Over the private network when there is one: the backup server is then reached
                # at no public address by its clients.
                backup_srv = self.servers[b.targets.server]
                backup_ip = backup_srv.private_address if backup_srv.private_address is not None else backup_srv.address
                targets.append(backup_ip.apply(lambda ip, s=sname, p=port: {
                    "name": "backup-server", "kind": "rclone-ssh", "repository": "rclone:", "appendOnly": True,
                    "path": f"/srv/restic/{s}", "sshHost": f"restic@{ip}", "port": p,
                    "sshOptions": ["-i", "/etc/socle/backup_ssh_key", "-o", "BatchMode=yes",
                                   "-o", "StrictHostKeyChecking=accept-new",
                                   "-o", "UserKnownHostsFile=/var/lib/socle-backup/known_hosts"]}))
            files: dict[str, str] = {}
            if b.targets.sftp:
                t = b.targets.sftp
                # The physical name: two stacks (staging, prod) sharing the host never share a directory.
                targets.append(sftp_target(self.pname(sname), t.host, t.port, t.user, t.path))
                files[SFTP_KNOWN_HOSTS] = sftp_known_hosts(t.host, t.port, t.host_key)
            if b.targets.local_path:
                repo = docker.Volume(f"{sname}-backup-repo", name=f"{self.pname(sname)}-backup-repo",
                                     labels=[{"label": "socle.stateful", "value": "false"},
                                             {"label": "socle.backup", "value": "repository"}],
                                     opts=pulumi.ResourceOptions(parent=self, provider=srv.docker))
                mounts.append((repo.name, b.targets.local_path))
                targets.append({"name": "local", "kind": "local",
                                "repository": f"{b.targets.local_path}/{sname}"})
            manifest = {
                "version": 1, "stack": pulumi.get_stack(), "host": sname, "schedule": b.schedule,
                "retention": b.retention.model_dump(), "volumes": volumes[sname],
                "check": {"schedule": b.check_schedule, "subset": b.check_subset, "maxAgeHours": b.max_age_hours},
                # Which jobs report to a dead-man URL (the URLs themselves are secrets, in the env file).
                "watched": sorted(job for job, url in pings.items() if url is not None),
                "drill": {"schedule": b.drill_schedule, "scratch": {"kind": "same" if local else "docker"}},
                "databases": databases[sname],  # hosts and ports may be outputs: resolved by the job
            }
            jobs[sname] = BackupJobArgs(
                target=cfg.target, host=sname, physical_name=self.pname(sname),
                manifest=manifest, targets=targets, secret_env=secret_env, schedules=schedules,
                time_zone=cfg.time_zone, files=files,
                target_kinds=[k for k, on in (("s3", b.targets.bucket), ("append-only", b.targets.server),
                                              ("sftp", b.targets.sftp), ("local", b.targets.local_path)) if on],
                ssh_key=ssh_key, address=srv.address, ssh_port=cfg.access.ssh_port,
                deploy_user=cfg.access.deploy_user, docker=srv.docker, network_name=srv.network_name,
                volume_mounts=mounts,
                # On OVH the installer needs only the host (its timers run the first backup at
                # night, long after the containers); the local backup container mounts the stack's
                # volumes by name, so it must come after them (else Docker would create empty ones).
                depends_on=[st for st in [self.stacks.get(sname)] if st is not None] if local
                else [srv.host_setup] if srv.host_setup else [],
            )
        # The backup server's access first: a client's installer creates its repository there
        # (`init`, over the key that restic-access installs), so on the first `pulumi up` it must
        # not run before that key exists.
        access = {server: self._restic_access(server, keys) for server, keys in self._restic_keys.items()}
        for sname, args in jobs.items():
            if b.targets.server and b.targets.server in access:
                args.install_after = [access[b.targets.server]]
            self.backups[sname] = BackupJob(sname, args, opts=pulumi.ResourceOptions(parent=self))

    def _restic_access(self, server: str, clients: list) -> pulumi.Resource:
        """On the backup server, over SSH (not in its user data, so adding an app server never
        replaces it): each client's append-only key, and the server-side prune of every client's
        repository with the stack's retention (the clients cannot delete anything themselves)."""
        import pulumi_command as command

        srv = self.servers[server]
        b = self.cfg.backup
        names = [n for n, _, _ in clients]
        manifest = {"version": 1, "host": server, "stack": pulumi.get_stack(), "retention": b.retention.model_dump(),
                    "targets": [{"name": n, "kind": "local", "repository": f"{RESTIC_ROOT}/{n}", "host": n,
                                 "passwordEnv": f"SOCLE_RESTIC_PASSWORD_{n.upper().replace('-', '_')}"} for n in names]}
        bundle = pulumi.Output.secret(pulumi.Output.all(
            pulumi.Output.all(*[k for _, k, _ in clients]), pulumi.Output.all(*[p for _, _, p in clients])).apply(
            lambda v: backup_server_bundle(
                render_restic_keys(list(zip(names, v[0]))), manifest, RUNNER_SOURCE,
                render_prune_units(b.prune_schedule, self.cfg.time_zone),
                render_env({t["passwordEnv"]: pw for t, pw in zip(manifest["targets"], v[1])}))))
        return command.remote.Command(
            f"{server}-restic-access",
            connection=command.remote.ConnectionArgs(host=srv.address, port=self.cfg.access.ssh_port,
                                                     user=self.cfg.access.deploy_user, dial_error_limit=60),
            create=render_restic_access(),
            update=render_restic_access(),
            stdin=bundle,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[srv.host_setup] if srv.host_setup else []),
        )

    @staticmethod
    def _app_files(app, env: dict, secret_env: dict) -> list[dict]:
        """apps.*.files as Docker uploads: `${VAR}` filled from the app's environment, and the file
        a secret as soon as one value it takes is (components/render/files.py)."""
        out = []
        for path, f in app.files.items():
            text = f.content if f.content is not None else text_of_source(f.source)[0]
            refs = references(text)
            values = {**env, **secret_env}
            content: pulumi.Input[str]
            if not refs:
                content = render_file(text, {})
            else:
                content = pulumi.Output.all(*(values[v] for v in refs)).apply(
                    lambda vs, t=text, r=refs: render_file(t, dict(zip(r, vs))))
                if any(v in secret_env for v in refs):
                    content = pulumi.Output.secret(content)
            out.append({"file": path, "content": content, "permissions": "0555" if f.executable else "0444"})
        return out

    def _app_spec(self, aname: str, app, cache_conn: dict, server: str) -> AppSpec:
        """The app's containers on `server` (the same on each of its servers, but for the address of
        a cache that runs on another server)."""
        env: dict = dict(app.env)
        secret_env: dict = {}
        for var, src in app.secrets.items():
            if isinstance(src, ConfigSecret):
                secret_env[var] = pulumi.Output.secret(self._secrets[src.config])
            else:
                key = f"shared-{src.shared}" if src.shared else f"{aname}-{var.lower().replace('_', '-')}"
                if key not in self._generated:
                    self._generated[key] = random.RandomPassword(
                        key, length=src.generate, special=False, opts=pulumi.ResourceOptions(parent=self))
                secret_env[var] = self._generated[key].result
        for use in app.databases:
            dname, logical = use.use.split(".")
            conn = self.databases[dname].connections[logical]
            for fld, var in use.env.items():
                (secret_env if fld in ("password", "url") else env)[var] = getattr(conn, fld)
        for use in app.buckets:
            b = self.buckets[use.use]
            fields = {"endpoint": b.endpoint, "bucket": b.bucket, "region": b.region,
                      "accessKey": b.access_key, "secretKey": b.secret_key}
            for fld, var in use.env.items():
                (secret_env if fld in ("accessKey", "secretKey") else env)[var] = fields[fld]
        for use in app.caches:
            c = cache_conn[use.use]["local" if cache_conn[use.use]["server"] == server else "remote"]
            for fld, var in use.env.items():
                (secret_env if fld in ("password", "url") else env)[var] = c[fld]
        return AppSpec(
            name=aname, image=app.image, physical_name=self.pname(aname), command=app.command,
            env=env, secret_env=secret_env, files=self._app_files(app, env, secret_env),
            volumes={v: spec.path for v, spec in app.volumes.items()},
            stateful_volumes={v for v, spec in app.volumes.items() if spec.stateful},
            hostname=app.hostname, sites=[site.hostname for site in app.sites], port=app.port,
            maintenance=app.maintenance or self.cfg.maintenance,
            health_path=app.health_path if len(app.hosts()) > 1 else None,
            healthcheck=app.healthcheck.model_dump() if app.healthcheck else None,
            restart=app.restart, user=app.user,
            publish=[(p.port, p.protocol, p.container_port or p.port) for p in app.ports],
        )
