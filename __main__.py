"""socle: load the stack config, build the platform, export what people need. No logic here."""

import gc

import pulumi

from components.config import ConfigError
from components.stack_file import StackFileError
from components.socle_platform import Platform
from components.stack_config import read_stack_config

try:
    cfg, secrets = read_stack_config()
except (ConfigError, StackFileError) as err:
    # Stop before any resource is registered, with every problem listed by key path.
    raise pulumi.RunError(str(err)) from None

# Python's collector rescans the SDK's many long-lived objects at every generation-0 threshold (700
# allocations by default): evaluation grew as resources^1.25. A larger threshold keeps it linear and
# about 45 % faster at 500 sites (`python -m tools.bench_eval --scale`); cycles are still collected.
gc.set_threshold(100_000, 50, 100)
platform = Platform("socle", cfg, secrets)

pulumi.export("urls", platform.urls)
pulumi.export("servers", {name: s.address for name, s in platform.servers.items()})
pulumi.export("privateAddresses", {name: s.private_address for name, s in platform.servers.items()
                                   if s.private_address is not None})
pulumi.export("databases", {name: {"host": d.host, "port": d.port} for name, d in platform.databases.items()})
pulumi.export("ssh", {"user": cfg.access.deploy_user, "port": cfg.access.ssh_port})
pulumi.export("backups", sorted(platform.backups))
if platform.sftp_authorized_keys:
    pulumi.export("sftpAuthorizedKeys", platform.sftp_authorized_keys)
if cfg.mail is not None:  # postmaster@<domain>'s first password: `pulumi stack output --show-secrets`
    pulumi.export("mailPostmasterPassword", pulumi.Output.secret(platform.postmaster_password.result))
pulumi.export("buckets", {name: {"bucket": b.bucket, "endpoint": b.endpoint} for name, b in platform.buckets.items()})
