"""The policy rules over the mocked resource graph of whole stacks: the real stacks pass every
mandatory rule; each broken stack file produces exactly its expected violation; the offline plan
reports both with the right exit status."""

import json
import subprocess
import sys

import pytest

import yaml

from tests.broken.generate import CASES, expected_messages, render, write
from tests.conftest import ROOT, STACKS, program
from tools import plan
from tools.harness import run_program
from tools.policy_graph import policy_config, verdicts


@pytest.mark.parametrize("stack", STACKS)
def test_real_stacks_pass_every_rule(stack):
    found = verdicts(program(stack))
    assert not found, "\n".join(f"[{v.level}] {v.finding.policy}: {v.finding.message}" for v in found)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_broken_stack_is_its_base_with_the_mistake(name):
    """Derived from the stack file as it is now (an app added there is in it too)."""
    base = CASES[name][0]
    broken = yaml.safe_load(render(name))["config"]
    assert broken != yaml.safe_load((ROOT / f"Pulumi.{base}.yaml").read_text())["config"], f"{name}: no mistake made"


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_stack_produces_exactly_its_violation(name, tmp_path):
    base, _, _, _, _ = CASES[name]
    expected = sorted(expected_violations(name))
    run = run_program(base, config_file=write(name, tmp_path))
    found = sorted((v.finding.policy, v.finding.message, v.level) for v in verdicts(run, policy_config(base)))
    assert len(found) == len(expected), f"{name}: expected {expected}, got:\n" + "\n".join(map(str, found))
    for (got_policy, got_message, level), (policy, want) in zip(found, expected):
        assert (level, got_policy) == ("mandatory", policy), found
        assert got_message.startswith(want), got_message


def expected_violations(name) -> list[tuple[str, str]]:
    """(policy, start of message) pairs: one mistake can break one rule in several places, or two
    rules (a backup region in the data's location moves both the database backups and the backup
    server beside the data)."""
    _, _, _, policy, _ = CASES[name]
    messages = expected_messages(name)
    policies = policy if isinstance(policy, tuple) else (policy,) * len(messages)
    return list(zip(policies, messages))


def test_every_rule_reachable_from_config_has_a_broken_stack():
    covered = {p for c in CASES.values() for p in (c[3] if isinstance(c[3], tuple) else (c[3],))}
    from policy.rules import RULES
    unreachable = {"load-balancer-listeners-https",  # socle's load balancers always pass 80/443 to the proxies (test_scale_out)
                   # refused by the config validation before a graph exists (tests/corpus/cases.yaml):
                   "backup-server-offsite", "database-backups-offsite", "ssh-from-admin-networks-only"}
    assert {r.name for r in RULES} - unreachable <= covered, {r.name for r in RULES} - unreachable - covered


@pytest.mark.parametrize("stack", STACKS)
def test_plan_exits_0_and_reports_for_real_stacks(stack, capsys):
    assert plan.main([stack]) == 0
    out = capsys.readouterr().out
    assert f"socle plan for stack '{stack}'" in out and "all rules pass." in out
    assert "Critical path:" in out and "Server " in out


@pytest.mark.parametrize("name", sorted(CASES))
def test_plan_exits_1_for_each_broken_stack(name, capsys, tmp_path):
    base = CASES[name][0]
    assert plan.main([base, "--config-file", str(write(name, tmp_path))]) == 1
    out = capsys.readouterr().out
    for policy, want in expected_violations(name):
        assert f"[MANDATORY] {policy}: {want}" in out, out[-3000:]


def test_plan_json_is_one_document_with_secrets_masked(capsys):
    assert plan.main(["prod", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["stack"] == "prod" and doc["violations"] == []
    assert {"type", "name", "parent", "inputs", "dependencies"} <= set(doc["resources"][0])
    text = json.dumps(doc)
    leaked = [s for s in program("prod").secret_values if s in text]
    assert not leaked, f"secret values in the JSON plan: {leaked[:3]}"
    assert "[secret:" in text, "secrets are shown as [secret:<digest of the stand-in>] so that the diff can compare them"
    assert doc["criticalPath"]["length"] == len(doc["criticalPath"]["resources"]) >= 5


def test_plan_json_lists_violations_with_level_and_resource(capsys, tmp_path):
    assert plan.main(["prod", "--json", "--config-file", str(write("app-publishes-8080", tmp_path))]) == 1
    (v,) = json.loads(capsys.readouterr().out)["violations"]
    assert v["policy"] == "only-proxy-publishes-ports" and v["level"] == "mandatory" and v["resource"]


def test_plan_mermaid_draws_servers_apps_databases_buckets_and_names(capsys):
    assert plan.main(["prod", "--mermaid"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart LR")
    from components.config import load
    from tests.conftest import stack_values

    cfg, _ = load(stack_values("prod"))
    app, use = next((n, a.databases[0].use.split(".")[0]) for n, a in sorted(cfg.apps.items()) if a.databases)
    hostname = next(a.hostname for a in cfg.apps.values() if a.hostname)
    needles = [f"subgraph srv_{next(iter(cfg.servers))}", f"app_{app}", f"db_{use}[(", f'"https://{hostname}"',
               f"app_{app} --> db_{use}", "-. restic .->", *(f"bucket_{b}[(" for b in cfg.buckets)]
    for needle in needles:
        assert needle in out, f"{needle} missing from the diagram"


def test_plan_exits_2_on_invalid_config_naming_the_key(tmp_path, capsys):
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text((ROOT / "Pulumi.dev.yaml").read_text().replace("server: local\n      hostname: pad", "server: nowhere\n      hostname: pad"))
    assert plan.main(["bad", "--config-file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "socle:apps.etherpad.server: unknown server 'nowhere' (known servers: local)" in err, err


def test_plan_exits_2_on_a_missing_stack_file(capsys):
    assert plan.main(["nosuchstack"]) == 2
    assert "no stack file" in capsys.readouterr().err


def test_plan_runs_as_a_command_from_the_repository_root():
    res = subprocess.run([sys.executable, "-m", "tools.plan", "dev"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "all rules pass." in res.stdout
