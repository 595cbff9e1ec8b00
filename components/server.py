"""Server: an OVH Public Cloud instance driven over SSH, or the local Docker engine."""

from __future__ import annotations

import difflib
import ipaddress
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from .config import ConfigError
from .render.cloudinit import render_cloud_init
from .render.host_setup import host_setup_stdin, render_host_bundle, render_host_setup_command


@dataclass
class ServerArgs:
    target: str                      # "ovh" | "local"
    physical_name: str
    role: str = "app"                # "app" | "backup"
    deploy_user: str = "deploy"
    admin_keys: list[str] = field(default_factory=list)
    admin_cidrs: list[str] = field(default_factory=list)
    ssh_port: int = 22
    extra_ssh_ports: tuple[int, ...] = ()   # sshd listens on these too (moving sshPort, step one)
    # ovh only
    project_id: str | None = None
    region: str | None = None
    flavor: str | None = None
    image: str = "Debian 12"
    auto_backup_cron: str | None = None
    auto_backup_rotation: int | None = None
    # Size of the data volume (OVH block storage, apart from the root disk), if any.
    data_gb: int | None = None
    # Changing this (from nothing, or to another value) replaces the instance on purpose: the only
    # way socle ever rebuilds a server. Anything else that changes leaves the instance in place.
    rebuild: str | None = None
    # Extra ingress sources for SSH, as CIDR blocks (app servers pushing to a backup server).
    ssh_clients: list[pulumi.Input[str]] = field(default_factory=list)
    # The stack's private network (ovh): the instance gets an interface on it.
    private_network_id: pulumi.Input[str] | None = None
    private_subnet_id: pulumi.Input[str] | None = None
    private_cidr: str | None = None
    # Ports reached only from the private network: 80/443 behind a load balancer, a shared cache.
    private_ports: tuple[int, ...] = ()
    # False: 80/443 are reached only through a load balancer (from the private network).
    public_http: bool = True
    # False: no app with a hostname runs here (80/443 stay closed).
    serves_http: bool = True
    # File Storage shares attached and mounted: (share id, export server:/path, mount point).
    shares: list[tuple[pulumi.Input[str], pulumi.Input[str], str]] = field(default_factory=list)
    # Ports its apps serve to the Internet without the proxy (apps.*.ports): (port, protocol, app).
    public_ports: list[tuple[int, str, str]] = field(default_factory=list)
    # Watched by socle:monitoring: node_exporter installed, reached from the private network.
    node_exporter: bool = False
    # unattended-upgrades' reports by e-mail: render/monitoring.py upgrade_mail_part as JSON (a
    # secret Output: it holds the SMTP password); None removes its files.
    upgrade_mail: pulumi.Input[str] | None = None


class CatalogError(ConfigError, pulumi.RunError):
    """A flavor or image that OVH does not offer in the region: a config error naming the server's key
    (pulumi.RunError: the engine prints the message without a Python traceback)."""


def _pick(kind: str, wanted: str, region: str, key_path: str):
    def pick(items):
        for item in items or []:
            name = item["name"] if isinstance(item, dict) else item.name
            if name == wanted:
                return item["id"] if isinstance(item, dict) else item.id
        names = sorted({(i["name"] if isinstance(i, dict) else i.name) for i in items or []})
        close = difflib.get_close_matches(wanted, names, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise CatalogError([(key_path, f"{kind} '{wanted}' is not offered in region {region}; {hint}"
                                       f"(offered: {', '.join(names[:40]) or 'none'})")])

    return pick


_PRIVATE_V4 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                  "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16")]


def _public_ipv4(state) -> str | None:
    """The instance's public IPv4: the first IPv4 address, on any interface, outside the private,
    carrier-grade NAT, loopback and link-local ranges."""
    for net in (state or {}).get("networks") or []:
        for addr in net.get("addresses") or []:
            ip = addr.get("ip")
            if addr.get("version") == 4 and ip and not any(ipaddress.ip_address(ip) in n for n in _PRIVATE_V4):
                return ip
    return None


def _private_ipv4(state, network_id: str) -> str | None:
    """The instance's IPv4 on the private network `network_id`."""
    for net in (state or {}).get("networks") or []:
        if net.get("id") == network_id:
            for addr in net.get("addresses") or []:
                if addr.get("version") == 4 and addr.get("ip"):
                    return addr["ip"]
    return None


def _no_private_address(name: str) -> str:
    raise pulumi.RunError(f"server {name}: the instance has no IPv4 address on the stack's private network "
                          "(its `networks` state lists none); check the vRack network and subnet in the OVH "
                          "console, then run `pulumi refresh` and `pulumi up` again")


def _security_rules(args: ServerArgs) -> list[dict]:
    rules: list[dict] = []
    for port in sorted(set(args.private_ports)):
        if args.private_cidr:
            rules.append({"direction": "INGRESS", "ethernet_type": "IPV4", "protocol": "TCP", "port_range_min": port,
                          "port_range_max": port, "remote_ip_prefix": args.private_cidr,
                          "description": f"private network {port}"})
    if args.role == "app" and args.public_http and args.serves_http:
        for port in (80, 443):
            for eth, anywhere in (("IPV4", "0.0.0.0/0"), ("IPV6", "::/0")):
                rules.append(
                    {"direction": "INGRESS", "ethernet_type": eth, "protocol": "TCP", "port_range_min": port,
                     "port_range_max": port, "remote_ip_prefix": anywhere, "description": f"https proxy {port}"}
                )
    for port, protocol, app in sorted(set(args.public_ports)):
        for eth, anywhere in (("IPV4", "0.0.0.0/0"), ("IPV6", "::/0")):
            rules.append(
                {"direction": "INGRESS", "ethernet_type": eth, "protocol": protocol.upper(), "port_range_min": port,
                 "port_range_max": port, "remote_ip_prefix": anywhere, "description": f"app {app} {port}/{protocol}"}
            )
    for port in (args.ssh_port, *args.extra_ssh_ports):
        for cidr in args.admin_cidrs:
            rules.append(
                {"direction": "INGRESS", "ethernet_type": "IPV6" if ":" in cidr else "IPV4", "protocol": "TCP",
                 "port_range_min": port, "port_range_max": port, "remote_ip_prefix": cidr,
                 "description": "ssh from admin network"}
            )
        for client in args.ssh_clients:
            rules.append(
                {"direction": "INGRESS", "ethernet_type": "IPV4", "protocol": "TCP", "port_range_min": port,
                 "port_range_max": port, "remote_ip_prefix": client, "description": "ssh from socle servers"}
            )
    return rules


class Server(pulumi.ComponentResource):
    """`address`: public IPv4 (127.0.0.1 on local). `docker`: a Docker provider for this host,
    usable only once cloud-init has finished. `network`: the host's private Docker network."""

    address: pulumi.Output[str]
    docker: docker.Provider | None
    network: docker.Network | None
    network_name: pulumi.Output[str] | None

    def __init__(self, name: str, args: ServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:compute:Server", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.docker = None
        self.host_setup = None
        self.volume = None
        self.network = None
        self.network_name = None
        self.private_address = None
        if args.target == "ovh":
            self._ovh(name, args, child)
        else:
            self.address = pulumi.Output.from_input("127.0.0.1")
            self.docker = docker.Provider(f"{name}-docker", host="unix:///var/run/docker.sock", opts=child)
        if args.role == "app":
            self.network = docker.Network(
                f"{name}-net",
                name=f"{args.physical_name}-net",
                driver="bridge",
                attachable=False,
                labels=[{"label": "managed-by", "value": "socle"}],
                opts=pulumi.ResourceOptions(parent=self, provider=self.docker),
            )
            self.network_name = self.network.name
        self.register_outputs({"address": self.address})

    def _ovh(self, name: str, args: ServerArgs, child: pulumi.ResourceOptions) -> None:
        import pulumi_command as command
        import pulumi_ovh as ovh

        flavors = ovh.get_cloud_instance_flavors_output(region=args.region, service_name=args.project_id)
        images = ovh.get_cloud_instance_images_output(region=args.region, service_name=args.project_id)
        flavor_id = flavors.flavors.apply(_pick("flavor", args.flavor, args.region, f"servers.{name}.flavor"))
        image_id = images.images.apply(_pick("image", args.image, args.region, f"servers.{name}.image"))

        sg = ovh.CloudSecurityGroup(
            f"{name}-sg",
            service_name=args.project_id,
            region=args.region,
            name=f"{args.physical_name}-sg",
            description=f"socle {args.role} server: "
            + ("80/443 open, " if args.role == "app" and args.public_http and args.serves_http else "")
            + ("80/443 from the load balancer, " if args.role == "app" and not args.public_http else "")
            + f"SSH {args.ssh_port} from admin networks only",
            rules=_security_rules(args),
            opts=child,
        )
        user_data = render_cloud_init(
            hostname=args.physical_name,
            role=args.role,
            deploy_user=args.deploy_user,
            admin_keys=args.admin_keys,
            ssh_port=args.ssh_port,
        )
        # pulumi-ovh CloudInstance (provider docs, v2.22): changing image_id "rebuilds the instance and
        # wipes the root disk", changing user_data reinstalls it, region / service_name / ssh_key_name
        # / group_id recreate it; flavor_id resizes in place. So the user data is first-boot only and
        # the image is the one resolved at creation: both are ignored afterwards (an admin key, the
        # SSH port or an image that OVH renames and republishes under the same name changes nothing
        # here), and what changes in normal life goes through host setup below. A rebuild happens
        # only when the stack file changes servers.<name>.rebuild (replacement_trigger).
        volume = None
        if args.data_gb:
            # The server's data (Docker's data root, or the backup repositories) on a block storage
            # volume: a rebuild or a replacement of the instance leaves it, and it is not deleted
            # with the stack (retainOnDelete). Its size grows in place; region and service name
            # would replace it (pulumi-ovh CloudStorageBlockVolume docs).
            volume = ovh.CloudStorageBlockVolume(
                f"{name}-data", service_name=args.project_id, region=args.region, size=args.data_gb,
                name=f"{args.physical_name}-data",
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True))
        self.volume = volume
        instance = ovh.CloudInstance(
            f"{name}-vm",
            service_name=args.project_id,
            region=args.region,
            name=args.physical_name,
            flavor_id=flavor_id,
            image_id=image_id,
            # A private interface joins in place (the networks list updates without a rebuild:
            # terraform-provider-ovh cloud_instance resource, no RequiresReplace on networks).
            networks=[{"auto_assign_public_ip": True}] + (
                [{"network_id": args.private_network_id, "subnet_id": args.private_subnet_id}]
                if args.private_network_id is not None else []),
            security_group_ids=[sg.id],
            user_data=user_data,
            volume_ids=[volume.id] if volume else None,
            # Delete first on an explicit rebuild: a volume is attached to one instance at a time.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["user_data", "image_id"],
                                        replacement_trigger=args.rebuild, delete_before_replace=True),
        )
        self.instance = instance
        self.address = instance.current_state.apply(lambda s: _public_ipv4(s) or "")
        if args.private_network_id is not None:
            # No address on the private network is an error, not "": a cache published on "" would
            # listen on every interface, the public one included.
            self.private_address = pulumi.Output.all(instance.current_state, args.private_network_id).apply(
                lambda v: _private_ipv4(v[0], v[1]) or _no_private_address(name))
        # Access to the shared storage by an access rule for this server's private address, made
        # after the instance: the instance does not wait for the share (an instance's own `shares`
        # would), and host setup, which mounts it, waits for the rule.
        acls = [ovh.CloudStorageFileShareAcl(
            f"{name}-share-{i}", service_name=args.project_id, share_id=sid, access_level="READ_WRITE",
            access_to=self.private_address, opts=child) for i, (sid, _, _) in enumerate(args.shares)
            if self.private_address is not None]
        if args.auto_backup_cron and args.auto_backup_rotation:
            ovh.cloudproject.WorkflowBackup(
                f"{name}-autobackup",
                service_name=args.project_id,
                region_name=args.region,
                instance_id=instance.id,
                name=f"{args.physical_name}-snapshots",
                cron=args.auto_backup_cron,
                rotation=args.auto_backup_rotation,
                opts=child,
            )
        # Over SSH, with the key from the SSH agent of whoever runs `pulumi up` (no private key
        # enters the state): wait for first boot, then apply host setup, in place, whenever the
        # admin keys, sshd settings or packages change.
        conn = command.remote.ConnectionArgs(host=self.address, port=args.ssh_port, user=args.deploy_user,
                                             dial_error_limit=60)
        ready = command.remote.Command(
            f"{name}-cloud-init",
            connection=conn,
            # A failed first boot stops here, with cloud-init's own account of what failed.
            create="cloud-init status --wait >/dev/null || { cloud-init status --long; exit 1; }",
            triggers=[instance.id],
            opts=child,
        )
        private = (args.private_cidr, tuple(args.private_ports)) if args.private_cidr else None
        bundle = pulumi.Output.all(volume.id if volume else "", args.upgrade_mail or "",
                                   *[e for _, e, _ in args.shares]).apply(
            lambda v: render_host_bundle(role=args.role, deploy_user=args.deploy_user, admin_keys=args.admin_keys,
                                         ssh_port=args.ssh_port, volume_id=v[0] or None,
                                         extra_ports=tuple(args.extra_ssh_ports), private=private,
                                         nfs_mounts=[(export, where) for export, (_, _, where)
                                                     in zip(v[2:], args.shares)], web=args.serves_http,
                                         node_exporter=args.node_exporter, upgrade_mail=v[1] or None))
        self.host_setup = command.remote.Command(
            f"{name}-host-setup",
            connection=conn,
            create=render_host_setup_command(),
            update=render_host_setup_command(),
            stdin=bundle.apply(host_setup_stdin),
            triggers=[instance.id],
            # After first boot (cloud-init still owns the packages and files until it ends), and
            # after the shared storage lets this server in (host setup mounts it).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ready, *acls]),
        )
        if args.role != "app":
            return
        self.docker = docker.Provider(
            f"{name}-docker",
            host=pulumi.Output.concat("ssh://", args.deploy_user, "@", self.address, ":", str(args.ssh_port)),
            ssh_opts=["-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.host_setup]),
        )
