"""Database: an OVH managed PostgreSQL/MySQL cluster, or a database container with a volume."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from .naming import ovh_location
from .render.dbinit import password_var, render_db_init

_PORTS = {"postgresql": 5432, "mysql": 3306}
_IMAGES = {"postgresql": "postgres:{v}-alpine", "mysql": "mariadb:{v}"}


@dataclass
class Connection:
    """How an app reaches one logical database. `password` and `url` are secret outputs; the URL is
    built only for the apps that ask for it (an unused Output costs evaluation time at scale)."""

    host: pulumi.Output[str]
    port: pulumi.Output[str]
    name: str
    user: str
    password: pulumi.Output[str]
    engine: str
    tls: bool

    @functools.cached_property
    def address(self) -> pulumi.Output[str]:
        """host:port, for apps that take both in one setting (Nextcloud's POSTGRES_HOST, MYSQL_HOST):
        an OVH managed cluster listens on a port of its own, not the engine's default."""
        return pulumi.Output.concat(self.host, ":", self.port)

    @functools.cached_property
    def url(self) -> pulumi.Output[str]:
        return _url(self.engine, self.user, self.password, self.host, self.port, self.name, tls=self.tls)


@dataclass
class DatabaseArgs:
    engine: str
    version: str
    hosting: str                    # "managed" | "container"
    physical_name: str
    databases: list[str]
    # managed
    project_id: str | None = None
    region: str | None = None
    backup_region: str | None = None
    plan: str = "essential"
    flavor: str = "db1-4"
    nodes: int = 1
    disk_gb: int | None = None
    backup_time: str = "02:00:00"
    maintenance_time: str = "04:00:00"
    deletion_protection: bool = False
    # Changing it makes OVH generate new passwords for the users (passwordReset, in place).
    password_reset: str | None = None
    # (description, address) of each server whose apps use this database: nothing else gets in.
    allowed: list[tuple[str, pulumi.Input[str]]] = field(default_factory=list)
    # container
    docker: docker.Provider | None = None
    network_name: pulumi.Input[str] | None = None


def _url(engine: str, user: str, password, host, port, name: str, tls: bool) -> pulumi.Output[str]:
    scheme = "postgresql" if engine == "postgresql" else "mysql"
    query = ("?sslmode=require" if engine == "postgresql" else "?ssl-mode=REQUIRED") if tls else ""
    return pulumi.Output.secret(
        pulumi.Output.concat(scheme, "://", user, ":", password, "@", host, ":", port, "/", name, query)
    )


class Database(pulumi.ComponentResource):
    host: pulumi.Output[str]
    port: pulumi.Output[str]
    connections: dict[str, Connection]
    # Container hosting only: the engine's superuser, used by backups and restore drills.
    admin_user: str | None
    admin_password: pulumi.Output[str] | None

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:data:Database", name, None, opts)
        self.connections = {}
        self.admin_user = None
        self.admin_password = None
        if args.hosting == "managed":
            self._managed(name, args)
        else:
            self._container(name, args)
        self.register_outputs({"host": self.host, "port": self.port})

    def _managed(self, name: str, args: DatabaseArgs) -> None:
        import pulumi_ovh as ovh

        child = pulumi.ResourceOptions(parent=self)
        region = ovh_location(args.region)
        cluster = ovh.cloudproject.Database(
            f"{name}-cluster",
            service_name=args.project_id,
            description=args.physical_name,
            engine=args.engine,
            version=args.version,
            plan=args.plan,
            flavor=args.flavor,
            nodes=[{"region": region} for _ in range(args.nodes)],
            disk_size=args.disk_gb,
            backup_time=args.backup_time,
            # OVH applies minor upgrades in this window, away from the backup and the nightly dump.
            maintenance_time=args.maintenance_time,
            # The service keeps a copy in the nodes' region and one in the second region.
            backup_regions=[region, ovh_location(args.backup_region)],
            ip_restrictions=[
                {"ip": pulumi.Output.concat(addr, "/32"), "description": f"socle server {desc}"}
                for desc, addr in args.allowed
            ],
            deletion_protection=args.deletion_protection,
            # Creating a multi-node cluster can outlast the provider's default 20 minutes; a timed-out
            # create leaves a cluster the state does not know (then `pulumi import` it).
            opts=pulumi.ResourceOptions(parent=self, custom_timeouts=pulumi.CustomTimeouts(
                create="60m", update="60m", delete="30m")),
        )
        self.cluster = cluster
        self.host = cluster.endpoints.apply(lambda eps: eps[0].domain if eps else "")
        self.port = cluster.endpoints.apply(lambda eps: str(eps[0].port) if eps else "")
        for db in args.databases:
            instance = ovh.cloudprojectdatabase.DatabaseInstance(
                f"{name}-{db}", service_name=args.project_id, cluster_id=cluster.id, engine=args.engine,
                name=db, opts=child,
            )
            if args.engine == "postgresql":
                user = ovh.cloudprojectdatabase.PostgresSqlUser(
                    f"{name}-{db}-user", service_name=args.project_id, cluster_id=cluster.id, name=db,
                    roles=[], password_reset=args.password_reset,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[instance]),
                )
            else:
                user = ovh.cloudprojectdatabase.User(
                    f"{name}-{db}-user", service_name=args.project_id, cluster_id=cluster.id,
                    engine=args.engine, name=db, password_reset=args.password_reset,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[instance]),
                )
            # The managed service generates the password and returns it as a secret output.
            password = pulumi.Output.secret(user.password)
            self.connections[db] = Connection(
                self.host, self.port, db, db, password, args.engine, tls=True)

    def _container(self, name: str, args: DatabaseArgs) -> None:
        on_host = pulumi.ResourceOptions(parent=self, provider=args.docker)
        admin = random.RandomPassword(f"{name}-admin-password", length=32, special=False,
                                      opts=pulumi.ResourceOptions(parent=self))
        passwords = {
            db: random.RandomPassword(f"{name}-{db}-password", length=32, special=False,
                                      opts=pulumi.ResourceOptions(parent=self))
            for db in args.databases
        }
        volume = docker.Volume(
            f"{name}-data", name=f"{args.physical_name}-data",
            # The live data directory is not copied (a running engine's files are inconsistent):
            # the backup job dumps the databases instead, which the policy pack checks.
            labels=[{"label": "socle.stateful", "value": "false"}, {"label": "socle.backup", "value": "dump"},
                    {"label": "socle.database", "value": name}],
            opts=on_host,
        )
        image = docker.RemoteImage(
            f"{name}-image", name=_IMAGES[args.engine].format(v=args.version), keep_locally=True, opts=on_host
        )
        if args.engine == "postgresql":
            envs = [pulumi.Output.concat("POSTGRES_PASSWORD=", admin.result), "POSTGRES_USER=postgres"]
            data_path, health = "/var/lib/postgresql/data", ["CMD-SHELL", "pg_isready -U postgres"]
        else:
            envs = [pulumi.Output.concat("MARIADB_ROOT_PASSWORD=", admin.result)]
            data_path = "/var/lib/mysql"
            health = ["CMD", "healthcheck.sh", "--connect", "--innodb_initialized"]
        envs += [pulumi.Output.concat(password_var(db), "=", pw.result) for db, pw in passwords.items()]
        self.container = docker.Container(
            f"{name}-container",
            name=args.physical_name,
            image=image.image_id,
            envs=pulumi.Output.secret(pulumi.Output.all(*envs)),
            networks_advanced=[{"name": args.network_name, "aliases": [name]}],
            volumes=[{"volume_name": volume.name, "container_path": data_path}],
            uploads=[{
                "file": "/docker-entrypoint-initdb.d/10-socle.sh",
                "content": render_db_init(args.engine, args.databases),
                "executable": True,
            }],
            healthcheck={"tests": health, "interval": "10s", "retries": 5, "start_period": "30s"},
            restart="unless-stopped",
            labels=[{"label": "socle.role", "value": "database"},
                    {"label": "socle.database", "value": args.physical_name},
                    {"label": "socle.databases", "value": ",".join(args.databases)}],
            log_opts={"max-size": "10m", "max-file": "3"},
            opts=on_host,
        )
        self.volume = volume
        self.admin_user = "postgres" if args.engine == "postgresql" else "root"
        self.admin_password = pulumi.Output.secret(admin.result)
        self.host = pulumi.Output.from_input(name)
        self.port = pulumi.Output.from_input(str(_PORTS[args.engine]))
        for db, pw in passwords.items():
            secret = pulumi.Output.secret(pw.result)
            # On the host's private network only; no TLS between containers of one host.
            self.connections[db] = Connection(
                self.host, self.port, db, db, secret, args.engine, tls=False)
