"""The organisations' ready-to-copy stacks (examples/*/): each folder holds its stack files, a
README that maps its document to them, and at most its own policy config, which may only allow
ports with reasons; each plans clean under its stack's policies (tests/test_scale_out.py); and the
sizes, schedules and retention its stack file asks for are what the offline plan's JSON shows.
Every expectation is read from the stack file itself, so the tests hold for whatever it says."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from components.render.backup import cron_to_oncalendar
from tests.conftest import ROOT
from tests.test_scale_out import EXAMPLES, _stack_of, _values, example, example_policy_path
from tools import plan
from tools.policy_graph import policy_config

FOLDERS = sorted({p.parent for p in EXAMPLES})
ORGANISATIONS = ("le-pic", "histologe", "skills-hub", "caplibre", "oc-pizza")


def test_every_organisation_has_an_example():
    names = [f.name for f in FOLDERS]
    missing = [o for o in ORGANISATIONS if not any(n == o or n.startswith(o + "-") for n in names)]
    assert not missing, f"no example folder for {missing} in examples/"
    assert sum(n.startswith("caplibre-") for n in names) >= 4, f"Caplibre's four use cases: {names}"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_each_example_has_a_readme_naming_its_stack_files(folder):
    readme = folder / "README.md"
    assert readme.exists(), f"{folder.relative_to(ROOT)} has no README.md mapping its document to its keys"
    text = readme.read_text()
    for stack_file in sorted(folder.glob("Pulumi.*.yaml")):
        assert stack_file.name in text, f"{readme.relative_to(ROOT)} does not mention {stack_file.name}"


WITH_OWN_POLICY = [p for p in EXAMPLES if example_policy_path(p)]


def test_examples_that_publish_ports_bring_their_reasons():
    assert WITH_OWN_POLICY, "no example allows a port: the policy files' own test would check nothing"


@pytest.mark.parametrize("path", WITH_OWN_POLICY, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_an_examples_own_policy_only_allows_ports_with_reasons(path):
    own = example_policy_path(path)
    mine, project = json.loads(own.read_text()), policy_config(_stack_of(path))
    allowed = mine.get("only-proxy-publishes-ports", {}).get("allowedPorts", {})
    mine["only-proxy-publishes-ports"] = {**mine.get("only-proxy-publishes-ports", {}), "allowedPorts": {}}
    assert mine == {**project, "only-proxy-publishes-ports": {**project.get("only-proxy-publishes-ports", {}),
                                                              "allowedPorts": {}}}, \
        f"{own.relative_to(ROOT)} changes more than allowedPorts: an example must not weaken the project's policies"
    containers = {r.plain.get("name") for r in example(path).of_type("docker:index/container:Container")}
    for name, ports in allowed.items():
        assert name in containers, f"{own.relative_to(ROOT)} allows ports for '{name}', which this example does not run"
        assert all(len(str(why).strip()) >= 10 for why in ports.values()), f"{name}: a port without its reason"


def _plan_json(path: Path) -> tuple[int, dict]:
    out = io.StringIO()
    argv = [_stack_of(path), "--config-file", str(path), "--json"]
    if example_policy_path(path):
        argv[1:1] = ["--policy-config", str(example_policy_path(path))]
    with contextlib.redirect_stdout(out):
        code = plan.main(argv)
    return code, json.loads(out.getvalue())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_plan_shows_the_sizes_schedules_and_retention_the_stack_file_asks_for(path):
    values = _values(path)
    code, doc = _plan_json(path)
    assert code == 0 and not [v for v in doc["violations"] if v["level"] == "mandatory"], doc["violations"]
    by_name = {r["name"]: r for r in doc["resources"]}
    ovh = values.get("ovh") or {}
    for sname, srv in values["servers"].items():
        vm = by_name[f"{sname}-vm"]["inputs"]
        # The mocks answer OVH's flavor lookup with "flavor-NAME": the plan shows which one was asked.
        assert vm["flavorId"].endswith(srv["flavor"]), f"{sname}: flavor {vm['flavorId']}, the stack file says {srv['flavor']}"
        region = ovh.get("backupRegion") if srv.get("role") == "backup" else ovh.get("region")
        assert vm["region"] == (srv.get("region") or region), f"{sname}: region {vm['region']}"
        if srv.get("diskGb"):
            assert by_name[f"{sname}-data"]["inputs"]["size"] == srv["diskGb"], f"{sname}: data volume size"
        if srv.get("autoBackup"):
            snap = by_name[f"{sname}-autobackup"]["inputs"]
            assert (snap["cron"], snap["rotation"]) == (srv["autoBackup"]["cron"], srv["autoBackup"]["rotation"]), sname
    for dname, db in (values.get("databases") or {}).items():
        if db.get("hosting") == "container":
            continue
        cluster = by_name[f"{dname}-cluster"]["inputs"]
        for key in ("engine", "version", "plan", "flavor"):
            if key in db:
                assert cluster[key] == db[key], f"{dname}.{key}: {cluster[key]} in the plan, {db[key]} in the stack file"
        assert len(cluster["nodes"]) == db.get("nodes", 1), f"{dname}: {len(cluster['nodes'])} nodes"
        missing = sorted(set(db["databases"]) - {r["inputs"]["name"] for r in doc["resources"]
                                                 if r["type"].endswith("databaseInstance:DatabaseInstance")})
        assert not missing, f"{dname}: logical databases not in the plan: {missing}"
    backup = values.get("backup") or {}
    if backup.get("enabled", True) and backup.get("schedule"):
        installs = [r for r in doc["resources"] if r["name"].endswith("-backup-install")]
        assert installs, "backups configured but no backup job in the plan"
        when = "OnCalendar=" + cron_to_oncalendar(backup["schedule"], values.get("timeZone", "UTC"))
        for r in installs:
            assert when in json.dumps(r["inputs"]["stdin"]).replace("\\\\n", "\\n"), f"{r['name']}: no {when}"
            declared = json.loads(re.search(r"COVERAGE = json.loads\(r'''(.*?)'''", r["inputs"]["create"], re.S).group(1))
            asked = backup.get("retention") or {}
            assert {k: declared["retention"].get(k) for k in asked} == asked, f"{r['name']}: {declared['retention']}"
