"""The project's promises about itself: the README's commands, CI, pinned dependencies, docs."""

import os
import re
import stat

import yaml

from tests.conftest import ROOT
from tests.tools import require, run
from tools import config_reference


def test_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert text.index("```bash") < 40, "the README must open with the two commands"
    assert "bash scripts/up.sh" in first_block and "bash scripts/test.sh" in first_block, first_block


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec bash scripts/test\.sh\b", ci, re.M), ci
    assert os.stat(ROOT / ".ci" / "run").st_mode & stat.S_IXUSR


def test_readme_config_reference_matches_the_model():
    text = (ROOT / "README.md").read_text()
    assert config_reference.readme_section(text) == config_reference.render(), (
        "README config reference is stale: run `python -m tools.config_reference --write`")


def test_every_config_key_has_a_description():
    missing = [r for r in config_reference.rows() if r.rstrip().endswith("|  |")]
    assert not missing, "keys without a description:\n" + "\n".join(missing)


def test_requirements_are_pinned():
    for f in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / f).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "-r")):
                assert re.match(r"^[A-Za-z0-9_.\-]+==[0-9][^ ]*$", line), f"{f}: '{line}' is not pinned"


def test_pulumi_project_uses_python_with_pip_and_venv():
    doc = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert doc["name"] == "socle"
    assert doc["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}


def test_shell_scripts_pass_shellcheck():
    files = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "scripts").rglob("*.sh"))] + [".ci/run"]
    assert len(files) >= 8, files
    res = run([require("shellcheck"), "-x", *files], cwd=ROOT)
    assert res.returncode == 0, res.stdout


def _fake_bin(tmp_path, name, body):
    p = tmp_path / name
    p.write_text(f"#!/bin/sh\n{body}\n")
    p.chmod(0o755)


def test_up_without_pulumi_cli_points_to_the_offline_plan(tmp_path):
    _fake_bin(tmp_path, "docker", "exit 0")
    res = run(["bash", str(ROOT / "scripts" / "up.sh")], env={"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert res.returncode == 3, res
    assert "the Pulumi CLI" in res.stderr and "bash scripts/plan.sh dev" in res.stderr, res.stderr
    assert "Docker" not in res.stderr.split("missing")[1].split("You can")[0], "Docker is there and was reported missing"


def test_up_without_a_running_docker_engine_says_so(tmp_path):
    _fake_bin(tmp_path, "pulumi", "exit 0")
    _fake_bin(tmp_path, "docker", "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    res = run(["bash", str(ROOT / "scripts" / "up.sh"), "dev"], env={"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert res.returncode == 3, res
    assert "a running Docker engine" in res.stderr and "Pulumi CLI" not in res.stderr, res.stderr
