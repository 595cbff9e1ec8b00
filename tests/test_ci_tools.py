"""The CI helpers against stand-in `gh`, `pulumi`, `aws` commands: one PR comment edited rather
than duplicated, one drift issue, the reaper's decisions, the state bootstrap's dry run."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.tools import require, run
from tools.reaper import decide

FAKE_GH = r'''#!/usr/bin/env python3
import json, sys, pathlib
state = pathlib.Path(sys.argv[0]).parent / "github.json"
db = json.loads(state.read_text()) if state.exists() else {"comments": [], "issues": [], "calls": []}
args = sys.argv[1:]
db["calls"].append(args)
def field(name):
    for i, a in enumerate(args):
        if a == "-f" and args[i + 1].startswith(name + "="):
            return args[i + 1].split("=", 1)[1]
out = ""
if args[:2] == ["pr", "view"]:
    out = json.dumps({"state": {"10": "OPEN", "11": "CLOSED", "12": "MERGED"}.get(args[2], "OPEN")})
elif args[0] == "api":
    path, method = args[1], args[args.index("-X") + 1] if "-X" in args else "GET"
    if path.endswith("/comments") and method == "GET":
        out = json.dumps([db["comments"]])
    elif path.endswith("/comments") and method == "POST":
        db["comments"].append({"id": len(db["comments"]) + 100, "body": field("body"), "user": {"login": "github-actions[bot]"}})
    elif "/issues/comments/" in path:
        cid = int(path.rsplit("/", 1)[1])
        for c in db["comments"]:
            if c["id"] == cid:
                c["body"] = field("body")
    elif path.endswith("/issues") and method == "GET":
        out = json.dumps([i for i in db["issues"] if i["state"] == "open"])
    elif path.endswith("/issues") and method == "POST":
        db["issues"].append({"number": len(db["issues"]) + 1, "title": field("title"), "body": field("body"), "state": "open",
                             "user": {"login": "github-actions[bot]"}})
    elif "/issues/" in path and method == "PATCH":
        n = int(path.rsplit("/", 1)[1])
        for i in db["issues"]:
            if i["number"] == n:
                i["body"] = field("body")
state.write_text(json.dumps(db))
print(out)
'''


@pytest.fixture
def bin_dir(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    (d / "gh").write_text(FAKE_GH)
    (d / "gh").chmod(0o755)
    return d


def github(bin_dir):
    return json.loads((bin_dir / "github.json").read_text())


def run_tool(bin_dir, *args, env=None):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GITHUB_REPOSITORY": "org/infra",
                               **(env or {})})


def test_pr_comment_is_created_once_then_edited(bin_dir, tmp_path):
    (tmp_path / "s.txt").write_text("+ 3 to create\n")
    (tmp_path / "p.txt").write_text("~ 1 to update\n")
    for outcome in ("success", "failure"):
        res = run_tool(bin_dir, "tools.github_report", "pr-comment", "--pr", "42", "--marker", "preview",
                       "--title", "pulumi preview", f"staging={tmp_path}/s.txt:{outcome}", f"prod={tmp_path}/p.txt:success")
        assert res.returncode == 0, res.stderr
    comments = github(bin_dir)["comments"]
    assert len(comments) == 1, "a second push must edit the comment, not add one"
    body = comments[0]["body"]
    assert body.startswith("<!-- socle:preview -->") and "❌ <b>staging</b>: failure" in body and "~ 1 to update" in body
    other = run_tool(bin_dir, "tools.github_report", "pr-comment", "--pr", "42", "--marker", "review", "--title", "x",
                     f"urls={tmp_path}/s.txt:success")
    assert other.returncode == 0 and len(github(bin_dir)["comments"]) == 2, "another marker is another comment"


def test_a_comment_by_someone_else_carrying_the_marker_is_left_alone(bin_dir, tmp_path):
    (bin_dir / "github.json").write_text(json.dumps({"comments": [
        {"id": 7, "body": "<!-- socle:preview -->\nlooks official", "user": {"login": "mallory"}}],
        "issues": [], "calls": []}))
    (tmp_path / "s.txt").write_text("+ 1 to create\n")
    res = run_tool(bin_dir, "tools.github_report", "pr-comment", "--pr", "42", "--marker", "preview", "--title", "t",
                   f"staging={tmp_path}/s.txt:success")
    assert res.returncode == 0 and res.stdout.strip() == "created a comment", res.stdout + res.stderr
    comments = github(bin_dir)["comments"]
    assert comments[0]["body"] == "<!-- socle:preview -->\nlooks official", "edited somebody else's comment"
    assert len(comments) == 2 and comments[1]["user"]["login"] == "github-actions[bot]"


HOSTILE = ("+ create app\n```\n</details>\n\n**INJECTED** <img src=x onerror=alert(1)> [link](https://evil.example)\n"
           "````\nstill text\n~~~\n``````` seven\n")


def test_a_preview_cannot_break_out_of_its_block_as_github_renders_it():
    from tools.github_report import comment_body, fence

    assert fence("no ticks") == "```" and fence("a ``` b") == "````" and fence("``````` x") == "````````"
    body = comment_body("preview", "pulumi preview", [("staging", HOSTILE, "failure"), ("prod", "~ 1 to update", "success")])
    cmark = require("cmark-gfm", "cmark-gfm")
    html = run([cmark, "--unsafe", "-e", "table"], input=body).stdout
    assert html.count("<pre>") == 2 and html.count("<details>") == 2, html
    assert "<strong>INJECTED</strong>" not in html and "<img" not in html and "<a href" not in html, html
    assert "**INJECTED** &lt;img src=x onerror=alert(1)&gt;" in html, "the hostile text must be shown, escaped"
    assert html.index("still text") < html.index("</code></pre>"), "the block closed early"


def test_a_huge_preview_is_cut_to_fit_githubs_limit(bin_dir, tmp_path):
    (tmp_path / "big.txt").write_text("x" * 200_000 + "\nTHE END\n")
    res = run_tool(bin_dir, "tools.github_report", "pr-comment", "--pr", "1", "--marker", "m", "--title", "t",
                   f"staging={tmp_path}/big.txt:success")
    assert res.returncode == 0
    body = github(bin_dir)["comments"][0]["body"]
    assert len(body) < 65536 and "THE END" in body and "start cut" in body


def test_drift_opens_one_issue_then_updates_it(bin_dir, tmp_path):
    (tmp_path / "d.txt").write_text("~ ovh:CloudProject/database:Database main-cluster  [diff: ~backupTime]\n")
    for _ in range(2):
        res = run_tool(bin_dir, "tools.github_report", "drift-issue", "--stack", "prod", str(tmp_path / "d.txt"))
        assert res.returncode == 0, res.stderr
    issues = github(bin_dir)["issues"]
    assert len(issues) == 1 and issues[0]["title"] == "Drift detected on stack prod" and "backupTime" in issues[0]["body"]
    posts = [c for c in github(bin_dir)["calls"] if "POST" in c and c[1].endswith("/issues")]
    assert any("labels[]=drift" in c for c in posts[0])


NOW = time.time()


@pytest.mark.parametrize("stack,tags,state,expected", [
    ("pr-10", {"socle:created-at": str(NOW - 3600)}, "OPEN", None),
    ("pr-11", {"socle:created-at": str(NOW - 3600)}, "CLOSED", "its pull request is closed"),
    ("pr-12", {}, "MERGED", "its pull request is merged"),
    ("pr-10", {"socle:created-at": str(NOW - 9 * 86400)}, "OPEN", "it is 9.0 days old (TTL 7)"),
    ("pr-10", {}, "OPEN", None),                        # no creation time: never destroyed on a guess
    ("pr-10", {"socle:created-at": "garbage"}, None, None),
    ("staging", {"socle:created-at": "0"}, "CLOSED", None),  # never a non-review stack
])
def test_reaper_decisions(stack, tags, state, expected):
    assert decide(stack, tags, state, NOW, 7) == expected


def fake_pulumi(bin_dir, fail_destroy=False):
    log = bin_dir / "pulumi.log"
    tags = {"pr-10": {"socle:created-at": str(NOW - 3600)}, "pr-11": {"socle:created-at": str(NOW - 3600)},
            "pr-13": {"socle:created-at": str(NOW - 30 * 86400)}}
    (bin_dir / "tags.json").write_text(json.dumps(tags))
    (bin_dir / "pulumi").write_text(f'''#!/bin/sh
echo "$*" >> {log}
case "$*" in
  "stack ls --json") echo '[{{"name":"staging"}},{{"name":"prod"}},{{"name":"pr-10"}},{{"name":"pr-11"}},{{"name":"pr-13"}}]' ;;
  "stack tag ls --stack "*) python3 -c "import json,sys; print(json.dumps(json.load(open('{bin_dir}/tags.json'))[sys.argv[1]]))" "$5" ;;
  destroy*) {"exit 1" if fail_destroy else "true"} ;;
esac
''')
    (bin_dir / "pulumi").chmod(0o755)
    return log


def test_reaper_destroys_closed_and_expired_review_stacks_only(bin_dir):
    log = fake_pulumi(bin_dir)
    res = run_tool(bin_dir, "tools.reaper", "--ttl-days", "7")
    assert res.returncode == 0, res.stderr
    assert "keep    pr-10" in res.stdout and "reap    pr-11: its pull request is closed" in res.stdout
    assert "reap    pr-13: it is 30.0 days old (TTL 7)" in res.stdout
    calls = log.read_text().splitlines()
    for stack in ("pr-11", "pr-13"):
        i = calls.index(f"config refresh --stack {stack} --force")
        assert calls[i + 1].startswith(f"destroy --stack {stack} --yes") and calls[i + 2] == f"stack rm {stack} --yes"
    assert not any(s in c for c in calls for s in ("pr-10 --yes", "staging --yes", "prod --yes"))


def test_reaper_only_one_stack_and_never_an_open_pull_requests(bin_dir):
    log = fake_pulumi(bin_dir)
    res = run_tool(bin_dir, "tools.reaper", "--only", "pr-11")
    assert res.returncode == 0 and "reap    pr-11: its pull request is closed" in res.stdout, res.stdout + res.stderr
    assert "pr-13" not in res.stdout, "--only must leave the other stacks alone"
    log.unlink()
    res = run_tool(bin_dir, "tools.reaper", "--only", "pr-10")
    assert res.returncode == 0 and "keep    pr-10" in res.stdout
    assert not any(c.startswith(("destroy", "stack rm")) for c in log.read_text().splitlines()), "destroyed an open PR's stack"
    res = run_tool(bin_dir, "tools.reaper", "--only", "prod")
    assert res.returncode == 2 and "'prod' is not a review stack name" in res.stderr, res.stderr


def test_reaper_dry_run_and_failed_destroy(bin_dir):
    log = fake_pulumi(bin_dir)
    res = run_tool(bin_dir, "tools.reaper", "--dry-run")
    assert res.returncode == 0 and not any("destroy" in c or "stack rm" in c for c in log.read_text().splitlines())
    log = fake_pulumi(bin_dir, fail_destroy=True)
    res = run_tool(bin_dir, "tools.reaper")
    assert res.returncode == 1 and "FAILED  pr-11" in res.stderr
    assert not any(c.startswith("stack rm") for c in log.read_text().splitlines()), "removed a stack that failed to destroy"


def _bootstrap_tools(bin_dir, gh_logged_in=True):
    log = bin_dir / "calls.log"
    for tool in ("aws", "pulumi", "gh"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n'
                                    + ('case "$*" in "s3api head-bucket"*) exit 1 ;; esac\n' if tool == "aws" else "")
                                    + (f'case "$*" in "auth status") exit {0 if gh_logged_in else 1} ;; esac\n'
                                       if tool == "gh" else ""))
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"}
    env.pop("PULUMI_CONFIG_PASSPHRASE", None)
    return log, env


@pytest.mark.parametrize("scope,environments", [
    ("prod", ["production", "preview-prod", "drift"]),
    ("staging", ["staging", "preview-staging"]),
    ("review", ["review", "review-cleanup"]),
])
def test_bootstrap_dry_run_changes_nothing_and_never_prints_the_passphrase(bin_dir, scope, environments):
    log, env = _bootstrap_tools(bin_dir)
    for attempt in range(5):  # a pipe into a command that does not read used to exit 141 in most runs
        res = subprocess.run(["bash", "scripts/bootstrap-state.sh", scope, f"socle-state-{scope}", "gra", "--dry-run"],
                             cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
        assert res.returncode == 0, (attempt, res.returncode, res.stderr)
    calls = log.read_text().splitlines()
    assert set(calls) == {f"aws s3api head-bucket --bucket socle-state-{scope} --endpoint-url https://s3.gra.io.cloud.ovh.net",
                          "gh auth status"}, calls
    assert "[dry-run] would run: aws s3api put-bucket-versioning" in res.stderr
    assert (f"[dry-run] would run: pulumi login s3://socle-state-{scope}?endpoint=s3.gra.io.cloud.ovh.net&region=gra"
            "&s3ForcePathStyle=true") in res.stderr
    for e in environments:
        assert f"[dry-run] would run: gh secret set PULUMI_CONFIG_PASSPHRASE --env {e} (value on stdin)" in res.stderr
        assert f"[dry-run] would run: gh variable set PULUMI_BACKEND_URL --env {e} --body s3://socle-state-{scope}" \
            in res.stderr
    assert f"gh secret set STATE_AWS_ACCESS_KEY_ID --env {environments[0]}" in res.stderr
    assert "gh secret set STATE_AWS_ACCESS_KEY_ID --env preview" not in res.stderr, "previews get read-only keys, by hand"
    assert all("--env" in line for line in res.stderr.splitlines() if "gh secret set" in line or "gh variable set" in line)
    assert "SK" not in res.stderr.replace("SKIP", ""), "a secret value was printed"
    assert "Still to do by hand" in res.stderr and environments[0] in res.stderr.split("Still to do by hand")[1]


def test_bootstrap_help_and_bad_arguments(bin_dir):
    log, env = _bootstrap_tools(bin_dir)
    res = subprocess.run(["bash", "scripts/bootstrap-state.sh", "--help"], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=60)
    assert res.returncode == 0 and "SCOPE   staging | prod | review" in res.stdout and "Exit status" in res.stdout
    assert not log.exists(), "--help must run nothing"
    for args, fragment in ((["qa", "socle-state"], "scope 'qa' is not one of staging, prod, review"),
                           (["prod"], "usage:"), (["prod", "Bad_Bucket"], "not a valid S3 name"),
                           (["prod", "b-ok", "--force"], "unknown option --force")):
        res = subprocess.run(["bash", "scripts/bootstrap-state.sh", *args], cwd=ROOT, capture_output=True, text=True,
                             env=env, timeout=60)
        assert res.returncode == 2 and fragment in res.stderr, (args, res.stderr)


def test_bootstrap_needs_the_state_users_keys(bin_dir):
    for tool in ("aws", "pulumi"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    res = subprocess.run(["bash", "scripts/bootstrap-state.sh", "prod", "socle-state"], cwd=ROOT, capture_output=True,
                         text=True, env=env, timeout=60)
    assert res.returncode == 2 and "export AWS_ACCESS_KEY_ID" in res.stderr
