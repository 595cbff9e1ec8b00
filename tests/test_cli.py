"""Every command-line entry point behaves like a good Unix tool: `--help` describes it in full with
its exit statuses and changes nothing; output piped into `head` ends quietly; the plan prints the
same bytes on every run; options that exclude each other are refused."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = [sys.executable, "-m"]
ENTRY_POINTS = [
    PY + ["tools.plan"], PY + ["tools.reaper"], PY + ["tools.github_report"], PY + ["tools.bench_eval"],
    PY + ["tools.bench_backup"], PY + ["tools.config_reference"], PY + ["tests.broken.generate"], PY + ["tools.dossier"],
    PY + ["tools.ovh_prices"],
    [sys.executable, "backup/socle_backup.py"], [sys.executable, "host/socle_host_setup.py"],
] + [["bash", str(p.relative_to(ROOT))] for p in sorted((ROOT / "scripts").glob("*.sh"))] + [
    ["bash", "tests/vm/build-image.sh"]]


def _tree_state() -> str:
    """Tracked and untracked files with their content hashes: what a side effect would change."""
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    diff = subprocess.run(["git", "diff", "--stat"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out + diff


def test_every_script_is_an_entry_point_here():
    listed = {c[-1] for c in ENTRY_POINTS if c[0] == "bash" and c[-1].startswith("scripts/")}
    assert listed == {f"scripts/{p.name}" for p in (ROOT / "scripts").glob("*.sh")}


@pytest.mark.parametrize("cmd", ENTRY_POINTS, ids=lambda c: c[-1])
def test_help_describes_the_tool_and_changes_nothing(cmd, tmp_path):
    # Any tool a side effect would need fails loudly and leaves a trace.
    shims = tmp_path / "bin"
    shims.mkdir()
    trace = tmp_path / "called"
    for tool in ("apt-get", "pip", "npm", "pulumi", "docker", "gh", "restic", "ssh", "aws", "sudo", "curl"):
        (shims / tool).write_text(f"#!/bin/sh\necho {tool} >> {trace}\nexit 97\n")
        (shims / tool).chmod(0o755)
    before = _tree_state()
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"}
    res = subprocess.run([*cmd, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"{cmd[-1]} --help exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    text = res.stdout
    assert len(text.splitlines()) >= 5, f"{cmd[-1]} --help says too little:\n{text}"
    assert "exit" in text.lower(), f"{cmd[-1]} --help does not give its exit statuses:\n{text}"
    assert not trace.exists(), f"{cmd[-1]} --help ran {trace.read_text().split()}"
    assert _tree_state() == before, f"{cmd[-1]} --help changed files of the project"


def test_plan_output_piped_into_head_ends_quietly():
    res = subprocess.run(f"{sys.executable} -m tools.plan prod | head -1", shell=True, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.stdout.startswith("socle plan for stack 'prod'"), res.stdout
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr


def test_plan_output_is_the_same_on_every_run():
    def plan(seed: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": seed}  # set iteration order differs from run to run
        return subprocess.run([*PY, "tools.plan", "prod"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120).stdout

    first, second = plan("1"), plan("2")
    assert first == second, "two runs of the plan differ"


def test_plan_shows_every_setting_in_full(capsys):
    from tools import plan

    assert plan.main(["prod"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out, "a setting is cut off"
    assert "allowed=" in out and "203.0.113." in out.split("allowed=", 1)[1].split("\n", 1)[0]


def test_exclusive_options_are_refused(capsys):
    from tools import plan

    with pytest.raises(SystemExit) as err:
        plan.main(["prod", "--json", "--mermaid"])
    assert err.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_one_resource_count_in_plan_benchmark_and_readme():
    from tools.harness import run_program

    run = run_program("prod")
    plan_line = subprocess.run([*PY, "tools.plan", "prod"], cwd=ROOT, capture_output=True, text=True,
                               timeout=120).stdout.splitlines()[1]
    assert plan_line.startswith(run.count_line()), plan_line
    bench = (ROOT / "tools" / "bench_eval.py").read_text()
    assert "len(r.resources)" in bench, "the benchmark counts something else than the plan"
    readme = (ROOT / "README.md").read_text()
    fix = "; `python -m tools.bench_eval --readme` rewrites the counts"
    for stack in ("dev", "staging", "prod"):
        n = len(run_program(stack).resources)
        assert f"\n{stack:<10}{n:>10}" in readme, f"the README's benchmark table gives another count for {stack} ({n}){fix}"
    assert f"{run.count_line()} would be created" in readme, f"the README's plan example gives another count{fix}"


def test_bench_eval_readme_rewrites_the_counts_and_keeps_the_times():
    from tools.bench_eval import readme_counts

    readme = (ROOT / "README.md").read_text()
    assert readme_counts(readme) == readme, "the README's counts are not the plan's"
    stale = re.sub(r"^(prod {6})\s*\d+", r"\1       999", readme, count=1, flags=re.M)
    stale = re.sub(r"^\d+ resources \(", "999 resources (", stale, count=1, flags=re.M)
    assert stale != readme and readme_counts(stale) == readme, "--readme does not put the plan's counts back"


def test_readme_exit_table_matches_the_plan(tmp_path, capsys):
    import re

    from tools import plan

    readme = (ROOT / "README.md").read_text()
    table = readme.split("| exit | `tools.plan` (and `scripts/plan.sh`) |", 1)[1].split("\n\n", 1)[0]
    codes = {c for row in re.findall(r"^\| ([0-9, ]+) \|", table, re.M) for c in re.split(r",\s*", row)}
    assert codes == {"0", "1", "2", "130", "141"}, codes
    assert plan.main(["prod"]) == 0
    from tests.broken.generate import write

    assert plan.main(["prod", "--config-file", str(write("app-publishes-8080", tmp_path))]) == 1
    bad = tmp_path / "Pulumi.prod.yaml"
    bad.write_text((ROOT / "Pulumi.prod.yaml").read_text().replace("region: GRA11", "region: GRA-11"))
    assert plan.main(["prod", "--config-file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"Pulumi\.prod\.yaml:\d+: socle:ovh\.region: 'GRA-11'", err), err


def test_plan_script_installs_only_the_runtime_and_test_script_waits_for_apt():
    plan_sh = (ROOT / "scripts" / "plan.sh").read_text()
    assert '-r "$ROOT/requirements.txt"' in plan_sh and "requirements-dev" not in plan_sh
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    assert "DPkg::Lock::Timeout=" in test_sh and "retrying" in test_sh


def test_a_policy_config_with_a_typo_is_refused_not_obeyed(tmp_path, capsys):
    import json

    from tools import plan
    from tools.policy_graph import policy_config, policy_config_problems

    for stack in ("dev", "staging", "prod", "review"):
        assert policy_config_problems(policy_config(stack, ROOT / "policy" / "config" / f"{stack}.json")) == []
    bad = tmp_path / "p.json"
    for conf, says in (({"all": "mandatory", "only-proxy-publishes-ports": {"enforcementLevel": "mandatroy"}},
                        "'mandatroy' is not an enforcement level (advisory, mandatory, disabled); did you mean 'mandatory'?"),
                       ({"all": "mandatory", "only-proxy-publish-ports": "mandatory"},
                        "only-proxy-publish-ports: no such rule; did you mean 'only-proxy-publishes-ports'?"),
                       ({"all": "mandatory", "instance-backups": {"minRotaton": 7}}, "instance-backups.minRotaton: no such setting"),
                       ([1], "must be a JSON object")):
        bad.write_text(json.dumps(conf))
        assert plan.main(["prod", "--policy-config", str(bad)]) == 2
        assert says in capsys.readouterr().err
    bad.write_text("{bad")
    assert plan.main(["prod", "--policy-config", str(bad)]) == 2
    assert "cannot be read as JSON" in capsys.readouterr().err


def test_missing_or_unreadable_stack_files_are_messages(tmp_path, capsys):
    from tools import plan

    assert plan.main(["prod", "--config-file", str(tmp_path / "nope.yaml")]) == 2
    assert f"plan: {tmp_path / 'nope.yaml'}: no such file" in capsys.readouterr().err
    assert plan.main(["prod", "--config-file", str(tmp_path)]) == 2
    assert "cannot be read (Is a directory)" in capsys.readouterr().err


def test_plan_script_reads_relative_files_from_the_callers_directory(tmp_path):
    (tmp_path / "mine.yaml").write_text((ROOT / "Pulumi.prod.yaml").read_text())
    env = {**os.environ, "PATH": os.environ["PATH"]}
    res = subprocess.run(["bash", str(ROOT / "scripts" / "plan.sh"), "prod", "--config-file", "mine.yaml"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "(mine.yaml)" in res.stdout.splitlines()[0], res.stderr[-2000:]
