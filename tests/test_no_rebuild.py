"""No routine edit rebuilds or replaces a server, and the offline diff says what an edit would do.

Each routine edit is made to a copy of every OVH stack file and both versions are evaluated under
mocks; tools.diff then classifies every change with the providers' documented replace-forcing
properties (and the resources' ignoreChanges / replacementTrigger). No instance may be replaced or
rebuilt, and the edit must reach the host through host setup where it concerns the host."""

import copy
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_values, stack_values
from tools import diff, harness
from tools.plan import mask

OVH_STACKS = ["staging", "prod"]
FINGERPRINT = lambda inputs: mask(inputs, fingerprint=True)  # noqa: E731 — as tools.plan --diff-from compares
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO5mK5h3pWq9n1xV3m4Yb6cTz0aQ7fJ2rL8sE1dG4hUk new-admin@example.org"
_base: dict = {}


def base(stack):
    if stack not in _base:
        _base[stack] = run_values(stack_values(stack), stack)
    return _base[stack]


def changes_after(stack, edit):
    values = copy.deepcopy(stack_values(stack))
    edit(values)
    return diff.compare(base(stack).resources, run_values(values, stack).resources, FINGERPRINT)


def _add_key(v):
    v["access"]["adminSshKeys"].append(KEY)


def _ssh_port(v):
    v["access"]["sshPort"] = 2222


def _add_app(v):
    v["apps"]["surveys"] = {"image": "martialblog/limesurvey:6-apache", "server": "web",
                            "hostname": f"surveys.{v['domain']}", "port": 8080,
                            "volumes": {"upload": "/var/www/html/upload"}}


def _backup_settings(v):
    v["backup"]["schedule"] = "30 2 * * *"
    v["backup"]["retention"]["daily"] = 14


def _extra_ssh_port(v):
    v["access"]["extraSshPorts"] = [2222]


EDITS = {"add an admin key": (_add_key, True), "change the SSH port": (_ssh_port, True),
         "open a second SSH port (moving the port, step one)": (_extra_ssh_port, True),
         "add an app": (_add_app, False), "change backup settings": (_backup_settings, False)}


@pytest.mark.parametrize("stack", OVH_STACKS)
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_routine_edit_never_rebuilds_or_replaces_a_server(stack, edit):
    mutate, reaches_host = EDITS[edit]
    changes = changes_after(stack, mutate)
    assert changes, f"{edit}: the diff saw no change at all"
    lost = [c for c in changes if c.type.endswith("CloudInstance") and c.action != "update"]
    assert not lost, f"{stack}, {edit}: {[(c.name, c.action, c.why) for c in lost]}"
    assert not diff.dangerous(changes), f"{stack}, {edit}: {diff.dangerous(changes)}"
    setups = {c.name for c in changes if c.name.endswith("-host-setup") and c.action == "update"}
    if reaches_host:
        assert setups == {f"{s}-host-setup" for s in stack_values(stack)["servers"]}, \
            f"{stack}, {edit}: host setup must apply it to every server, got {setups}"
    else:
        assert not setups, f"{stack}, {edit}: host setup re-ran for nothing: {setups}"


@pytest.mark.parametrize("stack", OVH_STACKS)
def test_ovh_republishing_the_image_under_a_new_id_changes_nothing(stack, monkeypatch):
    monkeypatch.setitem(harness.IMAGE_IDS, "Debian 12", "image-Debian-12-republished")
    head = run_values(stack_values(stack), stack)
    vms = head.of_type("CloudInstance")
    assert vms and all(v.plain["imageId"] == "image-Debian-12-republished" for v in vms), "the lookup was not redone"
    changes = diff.compare(base(stack).resources, head.resources, FINGERPRINT)
    assert not changes, [(c.name, c.action, c.properties) for c in changes]


def test_an_explicit_rebuild_replaces_that_server_only_and_is_allowed():
    def rebuild(v):
        v["servers"]["web"]["rebuild"] = "2026-11-25"
    changes = changes_after("prod", rebuild)
    replaced = [c for c in changes if c.action in ("replace", "rebuild")]
    assert [(c.name, c.action) for c in replaced] == [("web-vm", "replace")], replaced
    assert replaced[0].why.startswith("replacementTrigger changed"), replaced[0].why
    assert not diff.dangerous(changes), "a rebuild the stack file asks for must pass"
    text = diff.render("prod", "HEAD", changes)
    assert "+- replace CloudInstance web-vm [STATEFUL]: replacementTrigger changed" in text, text


@pytest.mark.parametrize("edit,expected", [
    (lambda v: v["buckets"]["backups"].pop("objectLock"), ("backups-bucket", "replace")),
    (lambda v: v["ovh"].update(region="BHS5"), ("web-vm", "replace")),
    (lambda v: (v["databases"]["main"]["databases"].remove("etherpad"), v["apps"].pop("etherpad")),
     ("main-etherpad", "delete")),
])
def test_losing_a_protected_stateful_resource_is_refused(edit, expected):
    changes = changes_after("prod", edit)
    refused = {(c.name, c.action) for c in diff.dangerous(changes)}
    assert expected in refused, f"expected {expected} to be refused, got {refused}"
    assert "REFUSED:" in diff.render("prod", "x", changes)


def test_an_unprotected_resource_is_reported_not_refused_but_a_backup_bucket_is_protected_everywhere():
    changes = changes_after("staging", lambda v: v["buckets"]["documents"].__setitem__("region", "SBG"))
    assert ("documents-bucket", "replace") in {(c.name, c.action) for c in changes}
    assert not diff.dangerous(changes), "staging's data bucket is not protected: the diff reports, the policy decides"
    changes = changes_after("staging", lambda v: v["buckets"]["backups"].pop("objectLock"))
    assert ("backups-bucket", "replace") in {(c.name, c.action) for c in diff.dangerous(changes)}, \
        "a backup bucket is protected in every OVH stack: losing it must be refused in staging too"


def _plan(*args):
    return subprocess.run([sys.executable, "-m", "tools.plan", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_the_diff_command_exit_codes(tmp_path):
    same = _plan("prod", "--diff-from", str(ROOT / "Pulumi.prod.yaml"))
    assert same.returncode == 0 and "no change" in same.stdout, same.stdout + same.stderr
    doc = (ROOT / "Pulumi.prod.yaml").read_text()
    unlocked = tmp_path / "Pulumi.prod.yaml"
    unlocked.write_text(doc.replace("objectLock: {mode: compliance, days: 30}", "versioning: true"))
    assert unlocked.read_text() != doc
    res = _plan("prod", "--config-file", str(unlocked), "--diff-from", str(ROOT / "Pulumi.prod.yaml"))
    assert res.returncode == 1 and "REFUSED: Storage backups-bucket" in res.stdout, res.stdout + res.stderr
    bad = _plan("prod", "--diff-from", "no-such-ref-xyz")
    assert bad.returncode == 2 and "neither a stack file nor a git commit" in bad.stderr, bad.stderr
    both = _plan("prod", "--diff-from", "HEAD", "--json")
    assert both.returncode == 2 and "not allowed with argument --diff-from" in both.stderr


def test_the_diff_from_a_git_ref_uses_that_refs_own_code():
    res = _plan("prod", "--diff-from", "HEAD")
    assert res.returncode in (0, 1) and res.stdout.startswith("socle diff of stack 'prod' from HEAD"), res.stderr
    listed = subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    assert "socle-diff-" not in listed.stdout, "the temporary worktree was left behind"


def test_every_documented_replace_forcing_property_of_the_instance_is_in_the_table():
    """The table follows the provider: every input the installed pulumi-ovh documents as recreating or
    rebuilding an instance, a block volume, or a piece of the private network, load balancers and
    shared storage is in tools.diff.REPLACE."""
    import importlib
    import re

    modules = {"cloud_instance": "cloudInstance:CloudInstance",
               "cloud_storage_block_volume": "cloudStorageBlockVolume:CloudStorageBlockVolume",
               # the private network, load balancers and shared storage (issue 12)
               "cloud_network_private_vrack": "cloudNetworkPrivateVrack:CloudNetworkPrivateVrack",
               "cloud_network_private_vrack_subnet": "cloudNetworkPrivateVrackSubnet:CloudNetworkPrivateVrackSubnet",
               "cloud_gateway": "cloudGateway:CloudGateway", "cloud_floating_ip": "cloudFloatingIp:CloudFloatingIp",
               "cloud_loadbalancer": "cloudLoadbalancer:CloudLoadbalancer",
               "cloud_loadbalancer_listener": "cloudLoadbalancerListener:CloudLoadbalancerListener",
               "cloud_loadbalancer_pool": "cloudLoadbalancerPool:CloudLoadbalancerPool",
               "cloud_loadbalancer_pool_member": "cloudLoadbalancerPoolMember:CloudLoadbalancerPoolMember",
               "cloud_storage_file_share": "cloudStorageFileShare:CloudStorageFileShare",
               "cloud_storage_file_share_network": "cloudStorageFileShareNetwork:CloudStorageFileShareNetwork",
               "cloud_storage_file_share_acl": "cloudStorageFileShareAcl:CloudStorageFileShareAcl"}
    for module, short in modules.items():
        type_ = f"ovh:index/{short}"
        source = open(importlib.import_module(f"pulumi_ovh.{module}").__file__).read()
        documented = set(re.findall(r":param [^\]]*\]+ (\w+): [^\n]*(?:recreates the resource|wipes the root disk)", source))
        camel = {re.sub(r"_(\w)", lambda m: m.group(1).upper(), p) for p in documented}
        assert camel, f"no replace-forcing property found in pulumi_ovh.{module}: the check itself is broken"
        missing = camel - set(diff.REPLACE[type_]) - ({"*"} if "*" in diff.REPLACE[type_] else set())
        if "*" in diff.REPLACE[type_]:
            continue
        assert not missing, f"{type_}: the provider documents {sorted(missing)} as replace-forcing; add them to tools.diff.REPLACE"


def test_rotating_managed_database_passwords_updates_the_users_in_place():
    changes = changes_after("prod", lambda v: v.__setitem__("credentialsRotation", "ransomware-20261125T000000Z"))
    assert changes and {(c.short_type, c.action, c.properties) for c in changes} == {
        ("PostgresSqlUser", "update", ("passwordReset",))}, [(c.name, c.action, c.properties) for c in changes]
