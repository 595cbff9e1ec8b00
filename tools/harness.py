"""Run the real socle program in-process under Pulumi mocks and record the resource graph.

Used by the tests, the offline plan and the benchmarks: no Pulumi CLI, Docker engine or cloud
account is involved. The program's config comes from a real `Pulumi.<stack>.yaml`, fed through the
same config API the engine uses. Values the stack file holds encrypted (`secure:`) cannot be
decrypted without the stack's passphrase, so they are replaced by placeholders that stay secret.

Each recorded resource keeps its inputs exactly as the engine (and so CrossGuard) would see them:
camelCase property names, with secret values wrapped in Pulumi's secret signature.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "socle"
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

# Flavors and images the fake OVH catalog offers (real OVH names).
FLAVORS = ["d2-2", "d2-4", "d2-8", "b3-8", "b3-16", "b3-32", "c3-4", "c3-8", "r3-16"]
IMAGES = ["Debian 12", "Debian 11", "Ubuntu 24.04"]
# Image ids by name, where a test wants OVH to have republished an image under a new id.
IMAGE_IDS: dict[str, str] = {}


@dataclass
class Resource:
    urn: str
    type: str
    name: str
    parent: str | None
    inputs: dict            # as the engine sees them: camelCase, secrets wrapped
    plain: dict             # the same with secrets unwrapped
    dependencies: list[str]
    custom: bool
    provider: str | None    # URN of the resource's provider (the engine's "<urn>::<id>" without the id)
    outputs: dict = field(default_factory=dict)
    # Resource options the engine acts on in a diff: protect, ignoreChanges, replaceOnChanges,
    # retainOnDelete, deleteBeforeReplace, replacementTrigger (only those set).
    options: dict = field(default_factory=dict)
    # The resource's Python class, the class of the property bag it handed the SDK, and every
    # property that bag declares (inputs and outputs, as the class names them), set or not: the
    # SDK makes an Output of each and translates them with the classes' type metadata. The
    # benchmark's bare replay registers the same (tools/bench_scale.py).
    python_class: type | None = None
    props_class: type | None = None
    declared: list[str] = field(default_factory=list)

    def secret_paths(self) -> set[str]:
        out: set[str] = set()

        def walk(v, path):
            if isinstance(v, dict):
                if v.get(SECRET_SIG_KEY) == SECRET_SIG:
                    out.add(path)
                    return
                for k, x in v.items():
                    walk(x, f"{path}.{k}" if path else k)
            elif isinstance(v, list):
                for i, x in enumerate(v):
                    walk(x, f"{path}[{i}]")

        walk(self.inputs, "")
        return out


@dataclass
class Run:
    stack: str
    resources: list[Resource]
    exports: dict
    export_secrets: set[str]
    secret_values: set[str]          # every secret value the mocks handed out or the config held

    def of_type(self, suffix: str) -> list[Resource]:
        return [r for r in self.resources if r.type == suffix or r.type.endswith(suffix)]

    def by_urn(self) -> dict[str, Resource]:
        return {r.urn: r for r in self.resources}

    def objects(self) -> list[Resource]:
        """What a deployment creates at a provider: cloud and Docker objects and explicit providers."""
        return [r for r in self.resources if r.custom or r.type.startswith("pulumi:providers:")]

    def count_line(self) -> str:
        """The one resource count every tool prints (plan, benchmark, README): every resource the
        program registers, the stack and socle's components included, as `pulumi preview` counts
        them (the engine adds its default providers on top)."""
        objects = len(self.objects())
        return (f"{len(self.resources)} resources ({objects} cloud and Docker objects, "
                f"{len(self.resources) - objects} socle components and the stack)")


def unwrap(v: Any) -> Any:
    if isinstance(v, dict):
        if v.get(SECRET_SIG_KEY) == SECRET_SIG:
            return unwrap(v.get("value"))
        return {k: unwrap(x) for k, x in v.items()}
    if isinstance(v, list):
        return [unwrap(x) for x in v]
    return v


def _fake(kind: str, name: str, n: int = 12) -> str:
    return f"{kind}-" + hashlib.sha256(f"{kind}/{name}".encode()).hexdigest()[:n]


def stack_config(path: Path) -> tuple[dict[str, str], list[str]]:
    """A stack file's `config:` as the engine passes it: 'ns:key' -> string (JSON for objects).
    Read strictly (components.stack_file): duplicate keys or YAML 1.1 surprises raise StackFileError."""
    from components.stack_file import read

    doc = read(path).doc
    config, secret_keys = {}, []
    for key, value in (doc.get("config") or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        has_secret = False

        def strip(v):
            nonlocal has_secret
            if isinstance(v, dict) and set(v) == {"secure"}:
                has_secret = True
                return "placeholder-" + hashlib.sha256(str(v["secure"]).encode()).hexdigest()[:16]
            if isinstance(v, dict):
                return {k: strip(x) for k, x in v.items()}
            if isinstance(v, list):
                return [strip(x) for x in v]
            return v

        value = strip(value)
        if has_secret:
            secret_keys.append(full)
        config[full] = value if isinstance(value, str) else json.dumps(value)
    return config, secret_keys


class _ExpectedConfigErrors:
    """A logging filter for asyncio: a program stopped by invalid config (what a test of a broken
    stack expects) leaves Outputs whose futures hold the error, and asyncio logs each one
    ("Future exception was never retrieved") when it is collected, which __main__.py's raised GC
    threshold puts off until the process ends: hundreds of tracebacks after a test run, for errors
    that were the expected result. Those go; any other exception is still logged."""

    def filter(self, record) -> bool:
        from components.config import ConfigError

        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, ConfigError) and "never retrieved" in record.getMessage())


def _quiet_expected_errors() -> None:
    import logging

    log = logging.getLogger("asyncio")
    if not any(isinstance(f, _ExpectedConfigErrors) for f in log.filters):
        log.addFilter(_ExpectedConfigErrors())


def run_program(stack: str = "dev", config_file: Path | None = None,
                config: dict[str, str] | None = None, secret_keys: list[str] | None = None,
                preview: bool = False, program=None) -> Run:
    """Evaluate __main__.py for `stack` and return every registered resource.

    `program` (a callable) runs instead of __main__.py, under the same mocks: the benchmark's bare
    replay of a recorded graph (tools/bench_scale.py).

    preview=True evaluates as `pulumi preview` of a new stack does: what the cloud computes
    (addresses, generated passwords, IDs) is unknown, and so is everything derived from it; the
    recorded inputs then hold the engine's unknown sentinels where a value is not known yet.

    Raises the program's error (pulumi.RunError for invalid config) if it fails."""
    import pulumi
    from google.protobuf import json_format
    from pulumi.runtime import mocks as pmocks
    from pulumi.runtime import settings as psettings
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    if config is None:
        path = Path(config_file or ROOT / f"Pulumi.{stack}.yaml")
        # A stack without a file has no config (as with the CLI): a review stack pr-<number>
        # then gets the review profile from the program itself.
        config, secret_keys = stack_config(path) if path.exists() or config_file else ({}, [])
    secret_values: set[str] = set()
    subnets: dict[str, str] = {}  # mocked subnet id -> first address of its allocation pool
    for k in secret_keys or []:
        secret_values.update(_leaves(config[k]))

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            outs = dict(args.inputs)
            t, n = args.typ, args.name
            if preview:  # only the inputs are known: every computed output stays unknown
                return _fake("id", n), outs
            if t.endswith("RandomPassword"):
                outs["result"] = _fake("secret", n, 24)
                secret_values.add(outs["result"])
            elif t.endswith("CloudNetworkPrivateVrackSubnet"):
                subnets[_fake("id", n)] = args.inputs.get("allocationPools", [{}])[0].get("start") or "10.0.0.16"
            elif t.endswith("CloudInstance"):
                octet = int(hashlib.sha256(n.encode()).hexdigest()[:2], 16) % 250 + 2
                networks = [{"id": "ext-net", "addresses": [{"ip": f"203.0.113.{octet}", "version": 4, "type": "FIXED"},
                                                            {"ip": "2001:db8::1", "version": 6, "type": "FIXED"}]}]
                for entry in args.inputs.get("networks") or []:
                    if entry.get("networkId"):  # a private interface: an address from its subnet's pool
                        base = ipaddress.ip_address(subnets.get(entry.get("subnetId"), "10.0.0.16"))
                        networks.append({"id": entry["networkId"], "subnetId": entry.get("subnetId"), "addresses": [
                            {"ip": str(base + octet), "version": 4, "type": "FIXED"}]})
                outs["currentState"] = {"networks": networks}
            elif t.endswith("CloudFloatingIp"):
                outs["currentState"] = {"ip": f"198.51.100.{int(hashlib.sha256(n.encode()).hexdigest()[:2], 16) % 250 + 2}"}
            elif t.endswith("CloudStorageFileShare"):
                outs["currentState"] = {"exportLocations": [
                    {"path": f"10.42.0.9:/shares/share-{_fake('id', n)[3:]}", "preferred": True}]}
            elif t.endswith("/database:Database"):
                outs["endpoints"] = [{"component": "postgresql", "domain": f"{n}.database.cloud.ovh.net",
                                      "port": 20184, "ssl": True, "sslMode": "require", "scheme": "postgresql",
                                      "path": "", "uri": ""}]
            elif t.endswith("PostgresSqlUser") or t.endswith("/user:User") and "Database" in t:
                outs["password"] = _fake("secret", n, 24)
                secret_values.add(outs["password"])
            elif t.endswith("S3Credential"):
                outs["accessKeyId"] = _fake("AK", n).upper()
                outs["secretAccessKey"] = _fake("secret", n, 32)
                secret_values.add(outs["secretAccessKey"])
            elif t.endswith("RemoteImage"):
                outs["imageId"] = "sha256:" + hashlib.sha256(str(args.inputs.get("name")).encode()).hexdigest()
            elif t.endswith("PrivateKey") and args.inputs.get("algorithm") == "RSA":
                from tools.ssh_keys import rsa_pair  # a real one: the DKIM tests sign and verify with it

                outs["privateKeyPem"], outs["publicKeyPem"] = rsa_pair(f"{stack}:{n}", int(args.inputs.get("rsaBits") or 2048))
                secret_values.add(outs["privateKeyPem"].splitlines()[1])
            elif t.endswith("PrivateKey"):
                # A real key pair (sshd and ssh use it in the VM tests), derived from the name.
                from tools.ssh_keys import ed25519_pair

                outs["privateKeyOpenssh"], outs["publicKeyOpenssh"] = ed25519_pair(f"{stack}:{n}")
                outs["privateKeyPem"] = outs["privateKeyOpenssh"]
                secret_values.add(outs["privateKeyOpenssh"].split("\n")[1])
            elif t.endswith("remote:Command"):
                outs["stdout"] = "24.0.7"
            return _fake("id", n), outs

        def call(self, args: pulumi.runtime.MockCallArgs):
            if args.token.endswith("getCloudInstanceFlavors"):
                return {"flavors": [{"id": f"flavor-{f}", "name": f} for f in FLAVORS]}
            if args.token.endswith("getCloudInstanceImages"):
                return {"images": [{"id": IMAGE_IDS.get(i, f"image-{i.replace(' ', '-')}"), "name": i} for i in IMAGES]}
            return {}

    _quiet_expected_errors()
    recorded: list[Resource] = []

    class Monitor(pmocks.MockMonitor):
        def RegisterResource(self, request):
            resp = super().RegisterResource(request)
            raw = json_format.MessageToDict(request.object, preserving_proto_field_name=True)
            recorded.append(Resource(
                urn=resp.urn, type=request.type, name=request.name, parent=request.parent or None,
                inputs=raw, plain=unwrap(raw), dependencies=list(request.dependencies),
                custom=bool(request.custom),
                provider=request.provider.rsplit("::", 1)[0] if request.provider else None,
                outputs=unwrap(json_format.MessageToDict(resp.object)) if resp.object else {},
                options=_options(request),
            ))
            return resp

    # The properties each resource class declares, by (type, name): CustomResource.__init__ is where
    # every generated class hands over its full property dict.
    declared: dict[tuple[str, str], tuple[type, type, list[str]]] = {}
    real_init = pulumi.CustomResource.__init__

    def __init__(self, t, name, props=None, *args, **kwargs):  # named so: the SDK's source
        if props is not None:                                    # positions count __init__ frames
            declared[(t, name)] = (type(self), type(props),
                                   list(props if isinstance(props, dict) else vars(props)))
        return real_init(self, t, name, props, *args, **kwargs)

    exports: dict[str, Any] = {}
    psettings.reset_options(project=PROJECT, stack=stack, preview=preview)
    pulumi.runtime.set_all_config(config, secret_keys or [])
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=Monitor(mocks))
    real_export = pulumi.export
    pulumi.export = lambda k, v: exports.__setitem__(k, v)
    cwd = os.getcwd()
    sys.path.insert(0, str(ROOT))
    pulumi.CustomResource.__init__ = __init__
    try:
        os.chdir(ROOT)
        _sync_await(run_pulumi_func(program or (lambda: runpy.run_path(str(ROOT / "__main__.py"),
                                                                         run_name="__main__"))))
        resolved, secret_exports = _resolve_exports(exports)
    finally:
        pulumi.CustomResource.__init__ = real_init
        pulumi.export = real_export
        os.chdir(cwd)
        sys.path.remove(str(ROOT))
    for r in recorded:
        r.python_class, r.props_class, r.declared = declared.get((r.type, r.name), (None, None, []))
    return Run(stack, recorded, resolved, secret_exports, secret_values)


def _options(request) -> dict:
    from google.protobuf import json_format

    out = {}
    for key in ("protect", "retainOnDelete", "deleteBeforeReplace"):
        if getattr(request, key, False):
            out[key] = True
    for key in ("ignoreChanges", "replaceOnChanges"):
        if list(getattr(request, key, [])):
            out[key] = sorted(getattr(request, key))
    timeouts = {k: getattr(request.customTimeouts, k) for k in ("create", "update", "delete")
                if request.HasField("customTimeouts") and getattr(request.customTimeouts, k)}
    if timeouts:
        out["customTimeouts"] = timeouts
    if request.HasField("replacement_trigger"):
        value = json_format.MessageToDict(request.replacement_trigger)
        if value is not None:
            out["replacementTrigger"] = unwrap(value)
    return out


def _leaves(raw: str) -> set[str]:
    try:
        v = json.loads(raw)
    except ValueError:
        return {raw}
    out: set[str] = set()

    def walk(x):
        if isinstance(x, dict):
            for y in x.values():
                walk(y)
        elif isinstance(x, list):
            for y in x:
                walk(y)
        elif isinstance(x, str):
            out.add(x)

    walk(v)
    return out


def _resolve_exports(exports: dict) -> tuple[dict, set[str]]:
    import pulumi
    from pulumi.runtime.sync_await import _sync_await

    resolved, secret = {}, set()

    async def one(v):
        o = pulumi.Output.from_input(v)
        return await o.future(), await o.is_secret()

    for k, v in exports.items():
        value, is_secret = _sync_await(one(v))
        resolved[k] = value
        if is_secret:
            secret.add(k)
    return resolved, secret
