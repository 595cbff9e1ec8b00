"""The CI/CD trust model, derived from the workflows themselves, and its rules.

`job_rows` reads what each job really does (trigger, whose code it runs, environment, secrets);
`readme_tables` reads the README's two tables; `findings` returns every broken rule as a sentence
naming the workflow and job. Pure functions over parsed YAML and text, so the tests can feed them
the real files and deliberately broken copies alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

PR_TRIGGERS = {"pull_request", "pull_request_target", "workflow_run", "issue_comment", "pull_request_review",
               "pull_request_review_comment"}
SECRET = re.compile(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)")
# Any other way to name secrets (an index, the whole context, `secrets: inherit`) hides which ones.
OPAQUE_SECRETS = re.compile(r"secrets\s*\[|toJSON\(\s*secrets\s*\)|secrets:\s*inherit|\(\s*secrets\s*\)")
# Where a job that runs a pull request's code may run: GitHub-hosted, or the ephemeral review runner
# (never the deployments' runner, SOCLE_RUNNER, which outlives the job).
PR_RUNNERS = {"ubuntu-latest", "${{ vars.SOCLE_REVIEW_RUNNER || 'ubuntu-latest' }}"}
BASE_REFS = {"${{ github.event.pull_request.base.sha }}", "${{ github.event.pull_request.base.ref }}"}
ALL_EIGHT = {"PULUMI_CONFIG_PASSPHRASE", "STATE_AWS_ACCESS_KEY_ID", "STATE_AWS_SECRET_ACCESS_KEY", "OVH_APPLICATION_KEY",
             "OVH_APPLICATION_SECRET", "OVH_CONSUMER_KEY", "GANDI_PERSONAL_ACCESS_TOKEN", "DEPLOY_SSH_KEY"}


def load_workflow(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def triggers(doc: dict) -> list[str]:
    on = doc["on"]
    return [on] if isinstance(on, str) else list(on)


@dataclass(frozen=True)
class JobRow:
    workflow: str
    job: str
    triggers: frozenset
    code: str                    # "the pull request", "the base branch", "main", "nothing"
    environments: frozenset
    secrets: frozenset
    runner: str = ""
    opaque: bool = False

    @property
    def name(self) -> str:
        return f"{self.workflow} job {self.job}"


def _environments(job: dict) -> set[str]:
    env = job.get("environment")
    if env is None:
        return set()
    name = env["name"] if isinstance(env, dict) else env
    m = re.search(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", name)
    if m:
        values = job.get("strategy", {}).get("matrix", {}).get(m.group(1), [])
        return {name[:m.start()] + str(v) + name[m.end():] for v in values}
    return {name}


def _code(job: dict, trig: set[str]) -> str:
    checkouts = [s for s in job.get("steps", []) if str(s.get("uses", "")).startswith("actions/checkout@")]
    if not trig & PR_TRIGGERS:
        return "main" if checkouts else "nothing"
    # Only a checkout of the base branch by name is trusted code; no ref, or any other ref, is the PR's.
    if any((s.get("with") or {}).get("ref") not in BASE_REFS for s in checkouts):
        return "the pull request"
    return "the base branch" if checkouts else "nothing"


def job_rows(workflows: dict[str, dict]) -> list[JobRow]:
    rows = []
    for fname, doc in sorted(workflows.items()):
        trig = set(triggers(doc))
        for job_id, job in doc["jobs"].items():
            text = yaml.safe_dump(job)
            secrets = frozenset(set(SECRET.findall(text)) - {"GITHUB_TOKEN"})
            rows.append(JobRow(fname, job_id, frozenset(trig), _code(job, trig), frozenset(_environments(job)), secrets,
                               str(job.get("runs-on", "")), bool(OPAQUE_SECRETS.search(text))))
    return rows


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(text: str, header_start: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header_start):
            head = _cells(line)
            out = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                out.append(dict(zip(head, _cells(row))))
            return out
    raise KeyError(f"no table starting with '{header_start}' in the README")


def _secret_cell(cell: str) -> set[str]:
    if cell.startswith("none"):
        return set()
    if cell.startswith("all eight but "):
        return ALL_EIGHT - set(re.findall(r"[A-Z_]{4,}", cell))
    if cell.startswith("all eight"):
        return set(ALL_EIGHT)
    return set(re.findall(r"[A-Z][A-Z0-9_]{3,}", cell))


def readme_tables(text: str) -> tuple[list[JobRow], dict[str, dict[str, str]]]:
    jobs = []
    for r in _table(text, "| workflow | job | trigger |"):
        envs = frozenset() if r["environment"] == "—" else frozenset(e.strip() for e in r["environment"].split(","))
        code = "nothing" if r["runs code from"].startswith("nothing") else r["runs code from"]
        jobs.append(JobRow(r["workflow"], r["job"], frozenset(t.strip() for t in r["trigger"].split(",")), code,
                           envs, frozenset(_secret_cell(r["secrets"]))))
    envs = {r["environment"]: r for r in _table(text, "| environment | deployment branches |")}
    return jobs, envs


def findings(workflows: dict[str, dict], readme: str) -> list[str]:
    """Every way the workflows break the trust model or disagree with the README's tables."""
    out: list[str] = []
    rows = job_rows(workflows)
    documented, envs = readme_tables(readme)
    for row in rows:
        pr = bool(row.triggers & PR_TRIGGERS)
        if row.opaque:
            out.append(f"{row.name} refers to secrets in a form these checks cannot read (an index, toJSON(secrets) "
                       "or `secrets: inherit`); name each one as secrets.NAME")
        if row.code == "the pull request" and row.runner not in PR_RUNNERS:
            out.append(f"{row.name} runs the pull request's code on '{row.runner}'; only GitHub-hosted or the "
                       "ephemeral review runner may: a persistent runner would carry what it leaves to deployments")
        if row.secrets and not row.environments:
            out.append(f"{row.name} references secrets {sorted(row.secrets)} outside an environment: they would "
                       "have to be repository secrets, which any pull request can read; move them to an environment")
        for env in sorted(row.environments):
            rules = envs.get(env)
            if rules is None:
                out.append(f"{row.name} uses environment '{env}', which the README's environment table does not "
                           "list with its protection rules")
                continue
            reviewed = rules["required reviewers"].startswith("maintainers")
            main_only = rules["deployment branches"] == "main only"
            if pr and row.secrets and not reviewed:
                out.append(f"{row.name} runs on {sorted(row.triggers & PR_TRIGGERS)} with secrets of environment "
                           f"'{env}', which has no required reviewers: any pull request would get them unapproved")
            if not pr and row.secrets and not (main_only or reviewed):
                out.append(f"{row.name} uses environment '{env}', open to every branch with no reviewer: a "
                           "workflow_dispatch on any branch would get its secrets; limit it to main")
            missing = row.secrets - _secret_cell(rules["secrets"])
            if missing and not rules["secrets"].startswith("the same values as"):
                out.append(f"{row.name} references {sorted(missing)}, which the README does not list for "
                           f"environment '{env}'")
        if row.secrets and "write" in _permissions(workflows[row.workflow], row.job).values():
            out.append(f"{row.name} holds secrets and a write token; split the writing into a job without secrets")
    want = {(r.workflow, r.job): r for r in rows}
    said = {(r.workflow, r.job): r for r in documented}
    for key in sorted(want.keys() - said.keys()):
        out.append(f"{key[0]} job {key[1]} is missing from the README's 'Who runs what' table")
    for key in sorted(said.keys() - want.keys()):
        out.append(f"the README's 'Who runs what' table lists {key[0]} job {key[1]}, which no workflow has")
    for key in sorted(want.keys() & said.keys()):
        w, s = want[key], said[key]
        for field in ("triggers", "code", "environments", "secrets"):
            if getattr(w, field) != getattr(s, field):
                out.append(f"{w.name}: the README says {field} {_show(getattr(s, field))}, the workflow has "
                           f"{_show(getattr(w, field))}")
    used = {e for r in rows for e in r.environments}
    for env in sorted(set(envs) - used):
        out.append(f"the README's environment table lists '{env}', which no workflow uses")
    return out


def _permissions(doc: dict, job: str) -> dict:
    perms = doc["jobs"][job].get("permissions", doc.get("permissions")) or {}
    return perms if isinstance(perms, dict) else {"all": perms.split("-")[0]}


def _show(v) -> str:
    return str(sorted(v)) if isinstance(v, frozenset) else repr(v)
