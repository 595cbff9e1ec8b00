"""The offline diff: what a change to a stack would create, update in place, replace, rebuild or
delete, computed from two evaluations of the program under mocks (no cloud, no state).

    python -m tools.plan STACK --diff-from REF        (REF: a git ref, or a stack file)

Two resources are the same when their URNs are. A changed input replaces the resource when the
provider documents it as replace-forcing (REPLACE below, from each provider's own docs or schema),
when the resource lists it in replaceOnChanges, or when its replacementTrigger changed; an input
the resource ignores (ignoreChanges) changes nothing. "rebuild" is OVH's in-place reinstall of an
instance, which wipes its root disk like a replacement does.

A stack whose resources are protected (socle:protect) fails the diff (exit 1) when a stateful
resource would be replaced, rebuilt or deleted, unless the stack file asks for exactly that: a
changed servers.<name>.rebuild allows that server's instance to be replaced, and nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Input properties whose change replaces the resource ("replace") or reinstalls it in place,
# wiping its disk ("rebuild"), per type; ALL: every input. Read for the versions requirements.txt
# pins, from the providers' own docs and the schemas they bridge:
# - CloudInstance, CloudStorageBlockVolume: pulumi-ovh 2.22.0 docs. image_id "rebuilds the instance
#   and wipes the root disk"; a user_data change "reinstall[s] the instance (root disk wiped)";
#   region, service_name, ssh_key_name, group_id, availability_zone "recreate the resource";
#   flavor_id "resizes the instance in place".
# - The other ovh: types: ovh/terraform-provider-ovh (ForceNew / RequiresReplace in
#   resource_cloud_project_database*.go, _storage*.go, _user*.go, _workflow_backup.go, ...).
#   Replacing a Storage bucket first deletes every object and version in it.
# - docker: kreuzwerker/terraform-provider-docker (pulumi-docker bridges it; containers are
#   replaced delete-first): a container keeps only the inputs in CONTAINER_IN_PLACE; a network
#   has no update at all; a deleted volume loses its data.
# - gandi: go-gandi/terraform-provider-gandi v2.3.0 resource_livedns_record.go.
# - random, tls: hashicorp/terraform-provider-random v3.9.0, -tls v4.2.1: every input.
# - command:remote:Command: only `triggers` (pulumi-command marks it replaceOnChanges; the engine
#   sees that as the resource's replaceOnChanges, handled below); the rest re-runs in place.
ALL = "*"
REPLACE: dict[str, dict[str, str]] = {
    "ovh:index/cloudInstance:CloudInstance": {
        "imageId": "rebuild", "userData": "rebuild", "region": "replace", "serviceName": "replace",
        "sshKeyName": "replace", "groupId": "replace", "availabilityZone": "replace"},
    "ovh:index/cloudStorageBlockVolume:CloudStorageBlockVolume": {
        "region": "replace", "serviceName": "replace", "createFrom": "replace", "encryption": "replace"},
    "ovh:CloudProject/database:Database": {"serviceName": "replace", "engine": "replace", "nodes": "replace"},
    "ovh:CloudProjectDatabase/databaseInstance:DatabaseInstance": {ALL: "replace"},
    "ovh:CloudProjectDatabase/postgresSqlUser:PostgresSqlUser": {
        "serviceName": "replace", "clusterId": "replace", "name": "replace"},
    "ovh:CloudProject/storage:Storage": {"name": "replace", "regionName": "replace", "objectLock": "replace"},
    "ovh:CloudProject/user:User": {"serviceName": "replace", "description": "replace"},
    "ovh:CloudProject/s3Credential:S3Credential": {"serviceName": "replace", "userId": "replace"},
    "ovh:CloudProject/s3Policy:S3Policy": {"serviceName": "replace", "userId": "replace"},
    "ovh:index/cloudSecurityGroup:CloudSecurityGroup": {"serviceName": "replace", "region": "replace"},
    "ovh:CloudProject/workflowBackup:WorkflowBackup": {ALL: "replace"},
    "ovh:index/cloudProjectStorageObjectBucketLifecycleConfiguration:"
    "CloudProjectStorageObjectBucketLifecycleConfiguration": {
        "serviceName": "replace", "regionName": "replace", "containerName": "replace"},
    # The private network, load balancers and shared storage (issue 12): pulumi-ovh v2.22 docs.
    "ovh:index/cloudNetworkPrivateVrack:CloudNetworkPrivateVrack": {
        "region": "replace", "serviceName": "replace", "description": "replace", "vlanId": "replace"},
    "ovh:index/cloudNetworkPrivateVrackSubnet:CloudNetworkPrivateVrackSubnet": {
        "cidr": "replace", "networkId": "replace", "region": "replace", "serviceName": "replace"},
    "ovh:index/cloudGateway:CloudGateway": {"region": "replace", "serviceName": "replace", "availabilityZone": "replace"},
    "ovh:index/cloudFloatingIp:CloudFloatingIp": {
        "region": "replace", "serviceName": "replace", "availabilityZone": "replace"},
    "ovh:index/cloudLoadbalancer:CloudLoadbalancer": {
        "flavorName": "replace", "network": "replace", "region": "replace", "serviceName": "replace",
        "availabilityZone": "replace"},
    "ovh:index/cloudLoadbalancerListener:CloudLoadbalancerListener": {
        "loadbalancerId": "replace", "protocol": "replace", "protocolPort": "replace", "serviceName": "replace"},
    "ovh:index/cloudLoadbalancerPool:CloudLoadbalancerPool": {
        "loadbalancerId": "replace", "protocol": "replace", "serviceName": "replace"},
    "ovh:index/cloudLoadbalancerPoolMember:CloudLoadbalancerPoolMember": {
        "address": "replace", "loadbalancerId": "replace", "poolId": "replace", "protocolPort": "replace",
        "serviceName": "replace", "subnetId": "replace"},
    "ovh:index/cloudStorageFileShare:CloudStorageFileShare": {
        "protocol": "replace", "region": "replace", "serviceName": "replace", "availabilityZone": "replace",
        "createFrom": "replace", "encryption": "replace", "shareNetworkId": "replace", "shareType": "replace"},
    "ovh:index/cloudStorageFileShareNetwork:CloudStorageFileShareNetwork": {ALL: "replace"},
    "ovh:index/cloudStorageFileShareAcl:CloudStorageFileShareAcl": {ALL: "replace"},
    "docker:index/volume:Volume": {"name": "replace", "driver": "replace", "driverOpts": "replace",
                                   "labels": "replace", "cluster": "replace"},
    "docker:index/network:Network": {ALL: "replace"},
    "docker:index/remoteImage:RemoteImage": {"name": "replace", "pullTriggers": "replace", "triggers": "replace",
                                             "platform": "replace", "build": "replace"},
    "gandi:livedns/record:Record": {"zone": "replace", "name": "replace", "type": "replace"},
    "random:index/randomPassword:RandomPassword": {ALL: "replace"},
    "tls:index/privateKey:PrivateKey": {ALL: "replace"},
}
# A container is replaced on a change of any input but these (applied live, or kept in state only).
CONTAINER_IN_PLACE = {"restart", "maxRetryCount", "cpuShares", "cpuSet", "memory", "memoryReservation", "memorySwap",
                      "deviceReadBps", "deviceReadIops", "deviceWriteBps", "deviceWriteIops", "mustRun",
                      "healthcheck", "init", "tmpfs", "cpuPeriod", "cpuQuota", "rm", "start", "attach", "logs",
                      "wait", "waitTimeout", "destroyGraceSeconds", "removeVolumes",
                      "containerReadRefreshTimeoutMilliseconds"}

# Resources that hold data a replacement or deletion loses (a server: its root disk).
STATEFUL = {
    "ovh:index/cloudInstance:CloudInstance",
    "ovh:index/cloudStorageBlockVolume:CloudStorageBlockVolume",
    "ovh:CloudProject/database:Database",
    "ovh:CloudProjectDatabase/databaseInstance:DatabaseInstance",
    "ovh:CloudProject/storage:Storage",
    "docker:index/volume:Volume",
}


@dataclass(frozen=True)
class Change:
    action: str            # create, update, replace, rebuild, delete
    urn: str
    type: str
    name: str
    properties: tuple      # the inputs that changed (sorted)
    why: str               # what forces a replacement, for replace / rebuild
    stateful: bool
    protected: bool

    @property
    def short_type(self) -> str:
        return self.type.split(":")[-1]


def _forcing(type_: str, prop: str, old, new) -> str | None:
    if type_ == "docker:index/container:Container":
        return None if prop in CONTAINER_IN_PLACE else "replace"
    if type_ == "ovh:CloudProject/database:Database" and prop == "nodes":
        # Adding a node updates in place; moving an existing node to another region or network
        # replaces the cluster (customdiff.ForceNewIfChange on nodes in the provider).
        pairs = zip(old or [], new or [])
        moved = any((a or {}).get(k) != (b or {}).get(k) for a, b in pairs for k in ("region", "networkId"))
        return "replace" if moved else None
    table = REPLACE.get(type_, {})
    return table.get(prop) or table.get(ALL)


def _same(a, b) -> bool:
    """Equal, where a secret masked by an older plan ("[secret]", no digest) matches any secret."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if "[secret]" in (a, b) and all(isinstance(x, str) and x.startswith("[secret") for x in (a, b)):
        return True
    return a == b


def _changed(old: dict, new: dict, ignored: set[str]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if k not in ignored and not _same(old.get(k), new.get(k)))


def compare(base: list, head: list, normalize=lambda inputs: inputs) -> list[Change]:
    """The changes from `base` to `head`, two lists of harness Resources (custom resources only).
    `normalize` maps inputs to the form both sides share (tools.plan masks secrets on both)."""
    old = {r.urn: r for r in base if r.custom}
    new = {r.urn: r for r in head if r.custom}
    out: list[Change] = []
    for urn in sorted(old.keys() | new.keys()):
        a, b = old.get(urn), new.get(urn)
        r = b or a
        stateful = r.type in STATEFUL
        protected = bool(r.options.get("protect"))
        if a is None or b is None:
            out.append(Change("create" if a is None else "delete", urn, r.type, r.name, (), "", stateful, protected))
            continue
        ignored = set(b.options.get("ignoreChanges", []))
        before, after = normalize(a.inputs), normalize(b.inputs)
        props = _changed(before, after, ignored)
        trigger = a.options.get("replacementTrigger") != b.options.get("replacementTrigger")
        if not props and not trigger:
            continue
        forced = {p: _forcing(r.type, p, before.get(p), after.get(p)) for p in props}
        on_changes = set(b.options.get("replaceOnChanges", []))
        forced.update({p: "replace" for p in props
                       if p in on_changes or any(c.split("[")[0].split(".")[0] == p for c in on_changes)})
        reasons = [f"{p} ({kind})" for p, kind in sorted(forced.items()) if kind]
        if trigger:
            action = "replace"
            reasons.insert(0, "replacementTrigger changed (servers.<name>.rebuild)")
        elif any(kind == "replace" for kind in forced.values()):
            action = "replace"
        elif any(kind == "rebuild" for kind in forced.values()):
            action = "rebuild"
        else:
            action = "update"
        out.append(Change(action, urn, r.type, r.name, tuple(props), ", ".join(reasons), stateful, protected))
    return out


def dangerous(changes: list[Change]) -> list[Change]:
    """Stateful resources of a protected stack that would be replaced, rebuilt or deleted without the
    stack file asking for it (a changed servers.<name>.rebuild asks for that server's instance)."""
    return [c for c in changes if c.stateful and c.protected and c.action in ("replace", "rebuild", "delete")
            and not c.why.startswith("replacementTrigger changed")]


# ---------------------------------------------------------------------------- the command

@dataclass
class _Plain:
    """A resource read back from `tools.plan --json` (the base side, evaluated with the base's code)."""
    urn: str
    type: str
    name: str
    inputs: dict
    custom: bool
    options: dict


def _from_json(doc: dict) -> list[_Plain]:
    return [_Plain(r["urn"], r["type"], r["name"], r["inputs"],
                   r.get("custom", not r["type"].startswith(("socle:", "pulumi:pulumi:"))), r.get("options", {}))
            for r in doc["resources"]]


def base_resources(stack: str, ref: str, root) -> list[_Plain]:
    """The base side: a stack file evaluated with the current code, or a git ref evaluated with that
    ref's own code and stack file (in a temporary worktree), so code changes show too."""
    def plan_json(cwd, *args):
        return subprocess.run([sys.executable, "-m", "tools.plan", stack, *args, "--json"], cwd=cwd,
                              capture_output=True, text=True)

    path = Path(ref)
    if path.is_file():
        res = plan_json(root, "--config-file", str(path.resolve()))
    else:
        check = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=root,
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise DiffError(f"--diff-from '{ref}' is neither a stack file nor a git commit of {root}")
        with tempfile.TemporaryDirectory(prefix="socle-diff-") as tmp:
            tree = Path(tmp) / "base"
            add = subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), check.stdout.strip()],
                                 cwd=root, capture_output=True, text=True)
            if add.returncode != 0:
                raise DiffError(f"cannot check out {ref}: {add.stderr.strip()}")
            try:
                if not (tree / f"Pulumi.{stack}.yaml").exists():
                    return []  # the stack is new in this change: everything is a creation
                res = plan_json(tree)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root, capture_output=True)
    if res.returncode == 2 or not res.stdout.strip().startswith("{"):
        raise DiffError(f"the base ({ref}) does not evaluate: {res.stderr.strip()[-1500:]}")
    return _from_json(json.loads(res.stdout))


class DiffError(Exception):
    pass


SYMBOL = {"create": "+", "update": "~", "replace": "+-", "rebuild": "!!", "delete": "-"}


def render(stack: str, ref: str, changes: list[Change]) -> str:
    counts = {a: sum(c.action == a for c in changes) for a in SYMBOL}
    lines = [f"socle diff of stack '{stack}' from {ref}, evaluated offline under Pulumi mocks:",
             ", ".join(f"{n} to {a}" for a, n in counts.items() if n) or "no change", ""]
    order = list(SYMBOL)
    for c in sorted(changes, key=lambda c: (order.index(c.action), c.type, c.name)):
        flag = " [STATEFUL]" if c.stateful and c.action in ("replace", "rebuild", "delete") else ""
        detail = f" ({', '.join(c.properties)})" if c.properties and c.action == "update" else ""
        why = f": {c.why}" if c.why else ""
        lines.append(f"  {SYMBOL[c.action]:>2} {c.action:<7} {c.short_type} {c.name}{flag}{detail}{why}")
    for c in dangerous(changes):
        lines.append("")
        lines.append(f"REFUSED: {c.short_type} {c.name} is stateful and protected, and would be {c.action}d"
                     + (f" because of {c.why}" if c.why else "") + ". Its data would be lost. If that is "
                     "really intended for a server, set servers.<name>.rebuild; otherwise undo the change.")
    return "\n".join(lines)
