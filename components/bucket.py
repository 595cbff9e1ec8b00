"""Bucket: OVH S3 object storage with its own user, or a MinIO container with the same S3 API."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from .render.s3policy import bucket_policy, ovh_s3_endpoint

MINIO_IMAGE = "minio/minio:RELEASE.2025-04-22T22-12-26Z"
MC_IMAGE = "minio/mc:RELEASE.2025-04-16T18-13-26Z"


@dataclass
class BucketArgs:
    target: str
    physical_name: str               # also the S3 bucket name: unique per project and stack
    region: str | None = None        # ovh
    project_id: str | None = None    # ovh
    versioning: bool = True          # safe default
    encryption: bool = True          # safe default
    object_lock_mode: str | None = None
    object_lock_days: int | None = None
    lifecycle: list[dict] = field(default_factory=list)  # {prefix, expire_days, noncurrent_expire_days}
    purpose: str = "data"                                 # "data" | "backup" (tagged, for the policy pack)
    docker: docker.Provider | None = None                 # local
    network_name: pulumi.Input[str] | None = None         # local


class Bucket(pulumi.ComponentResource):
    """Outputs: `bucket` (name), `endpoint`, `region`, and the credentials of a user that can use
    this bucket and no other (`access_key`, `secret_key`: secrets)."""

    bucket: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    region: pulumi.Output[str]
    access_key: pulumi.Output[str]
    secret_key: pulumi.Output[str]

    def __init__(self, name: str, args: BucketArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("socle:storage:Bucket", name, None, opts)
        if args.object_lock_days and not args.versioning:
            # S3 object lock is defined on object versions.
            raise ValueError(f"bucket {name}: object lock needs versioning")
        if args.target == "ovh":
            self._ovh(name, args)
        else:
            self._local(name, args)
        self.register_outputs({"bucket": self.bucket, "endpoint": self.endpoint, "region": self.region})

    def _ovh(self, name: str, args: BucketArgs) -> None:
        import pulumi_ovh as ovh

        child = pulumi.ResourceOptions(parent=self)
        lock = None
        if args.object_lock_days:
            # Object lock cannot be lifted once set: adding or removing it replaces the bucket, and the
            # provider empties a bucket it replaces (terraform-provider-ovh deleteBucket).
            lock = {"status": "enabled",
                    "rule": {"mode": args.object_lock_mode, "period": f"P{args.object_lock_days}D"}}
        storage = ovh.cloudproject.Storage(
            f"{name}-bucket",
            service_name=args.project_id,
            region_name=args.region,
            name=args.physical_name,
            versioning={"status": "enabled" if args.versioning else "disabled"},
            encryption={"sse_algorithm": "AES256" if args.encryption else "plaintext"},
            object_lock=lock,
            tags={"socle-purpose": args.purpose},
            hide_objects=True,
            # A backup bucket outlives a `pulumi destroy` and a replacement: the engine forgets it and
            # leaves it, with every version, in place (retainOnDelete).
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.purpose == "backup"),
        )
        if args.lifecycle:
            rules = []
            for i, rule in enumerate(args.lifecycle):
                r: dict = {"id": f"socle-{i}", "status": "enabled", "filter": {"prefix": rule.get("prefix", "")}}
                if rule.get("expire_days"):
                    r["expiration"] = {"days": rule["expire_days"]}
                if rule.get("noncurrent_expire_days"):
                    r["noncurrent_version_expiration"] = {"noncurrent_days": rule["noncurrent_expire_days"]}
                rules.append(r)
            ovh.CloudProjectStorageObjectBucketLifecycleConfiguration(
                f"{name}-lifecycle", service_name=args.project_id, region_name=args.region,
                container_name=storage.name, rules=rules, opts=child,
            )
        user = ovh.cloudproject.User(
            f"{name}-user", service_name=args.project_id, description=f"{args.physical_name} bucket access",
            role_names=["objectstore_operator"], opts=child,
        )
        creds = ovh.cloudproject.S3Credential(f"{name}-credentials", service_name=args.project_id,
                                              user_id=user.id, opts=child)
        ovh.cloudproject.S3Policy(f"{name}-policy", service_name=args.project_id, user_id=user.id,
                                  policy=bucket_policy(args.physical_name), opts=child)
        self.storage = storage
        self.bucket = storage.name
        self.endpoint = pulumi.Output.from_input(ovh_s3_endpoint(args.region))
        self.region = pulumi.Output.from_input(args.region.lower())
        self.access_key = pulumi.Output.secret(creds.access_key_id)
        self.secret_key = pulumi.Output.secret(creds.secret_access_key)

    def _local(self, name: str, args: BucketArgs) -> None:
        on_host = pulumi.ResourceOptions(parent=self, provider=args.docker)
        user = random.RandomPassword(f"{name}-access-key", length=20, special=False, upper=True, lower=False,
                                     opts=pulumi.ResourceOptions(parent=self))
        secret = random.RandomPassword(f"{name}-secret-key", length=40, special=False,
                                       opts=pulumi.ResourceOptions(parent=self))
        volume = docker.Volume(
            f"{name}-data", name=f"{args.physical_name}-data",
            labels=[{"label": "socle.stateful", "value": "true"}, {"label": "socle.bucket", "value": name}],
            opts=on_host,
        )
        image = docker.RemoteImage(f"{name}-image", name=MINIO_IMAGE, keep_locally=True, opts=on_host)
        host = f"{name}-s3"
        creds_env = pulumi.Output.secret(pulumi.Output.all(
            pulumi.Output.concat("MINIO_ROOT_USER=", user.result),
            pulumi.Output.concat("MINIO_ROOT_PASSWORD=", secret.result),
        ))
        server = docker.Container(
            f"{name}-minio",
            name=f"{args.physical_name}-s3",
            image=image.image_id,
            command=["server", "/data"],
            envs=creds_env,
            networks_advanced=[{"name": args.network_name, "aliases": [host]}],
            volumes=[{"volume_name": volume.name, "container_path": "/data"}],
            healthcheck={"tests": ["CMD", "mc", "ready", "local"], "interval": "10s", "retries": 5},
            restart="unless-stopped",
            labels=[{"label": "socle.role", "value": "object-store"}],
            opts=on_host,
        )
        mc = docker.RemoteImage(f"{name}-mc-image", name=MC_IMAGE, keep_locally=True, opts=on_host)
        flags = "--with-versioning" if args.versioning else ""
        if args.object_lock_days:
            flags = "--with-lock"
        setup = f"mc alias set s3 http://{host}:9000 \"$MINIO_ROOT_USER\" \"$MINIO_ROOT_PASSWORD\" && " \
                f"mc mb --ignore-existing {flags} s3/{args.physical_name}"
        if args.object_lock_days:
            setup += (f" && mc retention set --default {args.object_lock_mode.upper()} "
                      f"{args.object_lock_days}d s3/{args.physical_name}")
        # A one-shot job: Pulumi waits for it (attach) and fails the update if it fails.
        docker.Container(
            f"{name}-create",
            name=f"{args.physical_name}-create",
            image=mc.image_id,
            entrypoints=["/bin/sh", "-c"],
            command=[setup],
            envs=creds_env,
            networks_advanced=[{"name": args.network_name}],
            attach=True, must_run=False, logs=True, restart="no",
            labels=[{"label": "socle.role", "value": "bucket-create"}],
            opts=pulumi.ResourceOptions(parent=self, provider=args.docker, depends_on=[server]),
        )
        self.bucket = pulumi.Output.from_input(args.physical_name)
        self.endpoint = pulumi.Output.from_input(f"http://{host}:9000")
        self.region = pulumi.Output.from_input("us-east-1")
        self.access_key = pulumi.Output.secret(user.result)
        self.secret_key = pulumi.Output.secret(secret.result)
