"""The CI/CD trust model (README, "Trust model"), checked on the real workflows and on broken copies:
no secret outside an environment, no pull-request code with secrets unless a reviewer approves,
deployment environments limited to main, secrets and write tokens in different jobs, the README's
tables equal to what the workflows do, and the repository files that carry the model."""

import copy
import fnmatch
import re

import pytest
import yaml

from tests.conftest import ROOT
from tests.trust_model import findings, job_rows, load_workflow

WORKFLOWS = {p.name: load_workflow(p) for p in sorted((ROOT / ".github" / "workflows").glob("*.yml"))}
README = (ROOT / "README.md").read_text()


def test_the_workflows_keep_the_trust_model_the_readme_describes():
    problems = findings(WORKFLOWS, README)
    assert not problems, "\n".join(problems)


def test_every_job_is_derived_and_pull_request_code_never_holds_unreviewed_secrets():
    rows = {(r.workflow, r.job): r for r in job_rows(WORKFLOWS)}
    assert len(rows) == sum(len(d["jobs"]) for d in WORKFLOWS.values())
    preview = rows[("pull-request.yml", "preview")]
    assert preview.code == "the pull request" and preview.environments == {"preview-staging", "preview-prod"}
    assert "DEPLOY_SSH_KEY" not in preview.secrets, "a preview changes nothing on servers: it gets no deploy key"
    assert rows[("review-stacks.yml", "destroy")].secrets == set(), "the close event must not hold secrets"
    assert rows[("review-reaper.yml", "reap")].code == "main"


# Broken copies: each mistake must be reported, naming the workflow and job.
def _broken(mutate):
    docs = copy.deepcopy(WORKFLOWS)
    mutate(docs)
    return findings(docs, README)


def test_a_secret_outside_an_environment_is_refused():
    def mutate(d):
        d["pull-request.yml"]["jobs"]["test"]["steps"].append({"run": "x", "env": {"T": "${{ secrets.OVH_CONSUMER_KEY }}"}})
    problems = _broken(mutate)
    assert any(p.startswith("pull-request.yml job test references secrets ['OVH_CONSUMER_KEY'] outside an environment")
               for p in problems), problems


def test_pull_request_code_with_secrets_in_an_environment_without_reviewers_is_refused():
    def mutate(d):
        d["review-stacks.yml"]["jobs"]["deploy"]["environment"] = "review-cleanup"
    problems = _broken(mutate)
    assert any("review-stacks.yml job deploy runs on ['pull_request'] with secrets of environment 'review-cleanup', "
               "which has no required reviewers" in p for p in problems), problems


def test_an_environment_the_readme_does_not_describe_is_refused():
    def mutate(d):
        d["deploy.yml"]["jobs"]["prod"]["environment"] = "prod-fast"
    problems = _broken(mutate)
    assert "deploy.yml job prod uses environment 'prod-fast', which the README's environment table does not list " \
           "with its protection rules" in problems, problems


def test_secrets_and_a_write_token_in_one_job_are_refused():
    def mutate(d):
        d["drift.yml"]["jobs"]["drift"]["permissions"]["issues"] = "write"
    problems = _broken(mutate)
    assert "drift.yml job drift holds secrets and a write token; split the writing into a job without secrets" \
           in problems, problems


def test_a_readme_row_that_differs_from_the_workflow_is_refused():
    def mutate(d):
        d["deploy.yml"]["jobs"]["staging"]["steps"].append({"run": "x", "env": {"T": "${{ secrets.EXTRA_TOKEN }}"}})
    problems = _broken(mutate)
    assert any(p.startswith("deploy.yml job staging: the README says secrets") and "EXTRA_TOKEN" in p
               for p in problems), problems
    assert any("references ['EXTRA_TOKEN'], which the README does not list for environment 'staging'" in p
               for p in problems), problems


def test_a_job_missing_from_the_readme_is_refused():
    def mutate(d):
        d["deploy.yml"]["jobs"]["smoke"] = {"runs-on": "ubuntu-latest", "permissions": {}, "steps": [{"run": "true"}]}
    assert "deploy.yml job smoke is missing from the README's 'Who runs what' table" in _broken(mutate)


def test_a_malformed_readme_table_is_an_error_not_a_pass():
    with pytest.raises(KeyError, match="no table starting with"):
        findings(WORKFLOWS, README.replace("| workflow | job | trigger |", "| workflow | step | trigger |"))


def test_protected_environments_say_who_approves():
    envs = {}
    for line in README.split("#### The environments to create", 1)[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) > 3 and cells[0] not in ("environment",):
            envs[cells[0]] = cells
    assert envs["production"][1] == "main only" and "prevent self-review" in envs["production"][2]
    for name in ("preview-staging", "preview-prod", "review"):
        assert envs[name][2].startswith("maintainers"), f"{name} runs pull-request code: it needs reviewers"


def test_bootstrap_sets_environment_secrets_only():
    text = (ROOT / "scripts" / "bootstrap-state.sh").read_text()
    calls = re.findall(r"gh (secret|variable) set [^\n]*", text)
    assert calls, "the bootstrap must store the state secrets"
    for line in re.findall(r"gh (?:secret|variable) set [^\n]*", text):
        assert "--env" in line, f"scripts/bootstrap-state.sh sets a repository-level value: {line}"
    environments = set(re.findall(r"^\| (\S+) \| (?:any|main only)", README, re.M))
    named = set(re.findall(r"ENVS=\(([^)]*)\)", text))
    assert {e for group in named for e in group.split()} <= environments, (named, environments)


def _owned(path: str, patterns: list[str]) -> bool:
    for pat in patterns:
        p = pat.lstrip("/")
        if p.endswith("/") and path.startswith(p):
            return True
        if fnmatch.fnmatch(path, p):
            return True
    return False


def test_codeowners_cover_what_decides_who_deploys_what():
    lines = [ln.split() for ln in (ROOT / ".github" / "CODEOWNERS").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert all(len(ln) >= 2 and ln[1].startswith("@") for ln in lines), lines
    patterns = [ln[0] for ln in lines]
    for path in (".github/workflows/deploy.yml", ".github/actions/setup/action.yml", ".github/CODEOWNERS",
                 "policy/rules.py", "policy/config/prod.json", "profiles/review.yaml", "Pulumi.prod.yaml",
                 "Pulumi.staging.yaml", "scripts/bootstrap-state.sh", "requirements.txt", "components/profiles.py"):
        assert _owned(path, patterns), f"CODEOWNERS does not cover {path}"
    assert not _owned("components/server.py", patterns), "the matcher must not accept everything"


def test_each_scope_has_its_own_project_and_ci_key():
    """Across every stack file and the review profile: no OVH project and no CI key shared."""
    scopes = {}
    for path in sorted(ROOT.glob("Pulumi.*.yaml")) + [ROOT / "profiles" / "review.yaml"]:
        cfg = {k.split(":", 1)[1]: v for k, v in (yaml.safe_load(path.read_text())["config"]).items()}
        if cfg.get("target") == "ovh":
            scopes[path.name] = cfg
    assert len(scopes) >= 3, scopes.keys()
    seen_projects, seen_keys = {}, {}
    for name, cfg in scopes.items():
        project = cfg["ovh"]["projectId"]
        assert project not in seen_projects, f"{name} shares OVH project {project} with {seen_projects.get(project)}"
        seen_projects[project] = name
        key = cfg["access"].get("ciSshKey")
        assert key, f"{name} has no access.ciSshKey: each scope deploys with its own key"
        bare = " ".join(key.split()[:2])
        assert bare not in seen_keys, f"{name} shares its CI key with {seen_keys.get(bare)}"
        for other, ocfg in scopes.items():
            if other != name:
                others = {" ".join(k.split()[:2]) for k in ocfg["access"]["adminSshKeys"]}
                assert bare not in others, f"{name}'s CI key is an admin key of {other}"
        seen_keys[bare] = name
