"""The CI/CD trust model (README, "Trust model"), checked on the real workflows and on broken copies:
no secret outside an environment, no pull-request code with secrets unless a reviewer approves,
deployment environments limited to main, secrets and write tokens in different jobs, the README's
tables equal to what the workflows do, and the repository files that carry the model."""

import copy
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
    preview = rows[("pull-request.yml", "preview")]
    assert preview.code == "the pull request" and preview.environments == {"preview-staging"}, \
        "prod's credentials never meet a pull request's code"
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


def test_a_checkout_of_the_pull_requests_head_is_pull_request_code():
    def mutate(d):
        step = d["pull-request.yml"]["jobs"]["preview"]["steps"][1]
        step["with"]["ref"] = "${{ github.event.pull_request.head.sha }}"
    problems = _broken(mutate)
    assert not any("preview: the README says code" in p for p in problems), "a head checkout is still the PR's code"
    rows = {(r.workflow, r.job): r for r in job_rows({"pull-request.yml": copy.deepcopy(WORKFLOWS["pull-request.yml"])})}
    assert rows[("pull-request.yml", "comment")].code == "the base branch"


@pytest.mark.parametrize("reference", ["${{ secrets['OVH_CONSUMER_KEY'] }}", "${{ toJSON(secrets) }}"])
def test_a_secret_reference_the_checks_cannot_read_is_refused(reference):
    def mutate(d):
        d["pull-request.yml"]["jobs"]["test"]["steps"].append({"run": "x", "env": {"T": reference}})
    problems = _broken(mutate)
    assert any(p.startswith("pull-request.yml job test refers to secrets in a form these checks cannot read") for p in problems), problems


def test_pull_request_code_on_the_deployments_runner_is_refused():
    def mutate(d):
        d["review-stacks.yml"]["jobs"]["deploy"]["runs-on"] = "${{ vars.SOCLE_RUNNER || 'ubuntu-latest' }}"
    problems = _broken(mutate)
    assert any(p.startswith("review-stacks.yml job deploy runs the pull request's code on") for p in problems), problems


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
    for name in ("preview-staging", "review"):
        assert envs[name][2].startswith("maintainers"), f"{name} runs pull-request code: it needs reviewers"
    for name in ("preview-prod", "drift", "staging", "review-cleanup"):
        assert envs[name][1] == "main only", f"{name} runs main's code without a reviewer: main only"


def test_bootstrap_sets_environment_secrets_only():
    text = (ROOT / "scripts" / "bootstrap-state.sh").read_text()
    calls = re.findall(r"gh (secret|variable) set [^\n]*", text)
    assert calls, "the bootstrap must store the state secrets"
    for line in re.findall(r"gh (?:secret|variable) set [^\n]*", text):
        assert re.search(r"--env \S", line) and "--env-file" not in line, \
            f"scripts/bootstrap-state.sh sets a repository-level value: {line}"
    assert "actions/secrets" not in text and "--org" not in text, "no repository or organisation secret via the API"
    environments = set(re.findall(r"^\| (\S+) \| (?:any|main only)", README, re.M))
    named = set(re.findall(r"ENVS=\(([^)]*)\)", text))
    assert {e for group in named for e in group.split()} <= environments, (named, environments)


def test_codeowners_give_every_file_to_the_maintainers():
    lines = [ln.split() for ln in (ROOT / ".github" / "CODEOWNERS").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines and all(len(ln) >= 2 and all(o.startswith("@") for o in ln[1:]) for ln in lines), lines
    # The last matching line wins: the last line must be the catch-all, owned by the maintainers.
    assert lines[-1][0] == "*", f"CODEOWNERS must end with '*': main's code runs with credentials, unapproved ({lines})"


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
