"""Reports to GitHub through the `gh` CLI, written so a re-run edits instead of duplicating:

    python -m tools.github_report pr-comment --pr N --marker KEY --title T SECTION...
    python -m tools.github_report drift-issue --stack prod FILE

A SECTION is NAME=FILE[:OUTCOME]: the file's text goes in a folded code block whose fence is longer
than any run of backticks in the text, so nothing in a preview (which a pull request's code writes)
can close the block and inject Markdown or HTML into the comment. The PR comment carries a hidden
marker (<!-- socle:KEY -->); the comment edited is the one that carries it *and* was written by the
workflow's own token (--author, github-actions[bot] by default): a marker pasted into somebody
else's comment is ignored. Otherwise one comment is created.
The drift issue is the one open issue labelled `drift` (edited, or opened). Repository and token
come from GITHUB_REPOSITORY and GH_TOKEN, as in a workflow step.

Exit status: 0 reported, 1 a gh command failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

LIMIT = 60000  # GitHub refuses bodies over 65536 characters
BOT = "github-actions[bot]"  # the login of the GITHUB_TOKEN's comments


def gh(*args: str, body: str | None = None) -> str:
    cmd = ["gh", "api", *args]
    if body is not None:
        cmd += ["-f", f"body={body}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"github_report: gh {' '.join(args[:2])} failed: {res.stderr.strip()}")
    return res.stdout


def fence(text: str) -> str:
    """A CommonMark code fence that `text` cannot close: longer than its longest run of backticks."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def fold(name: str, text: str, outcome: str, budget: int) -> str:
    icon = {"success": "✅", "failure": "❌", "cancelled": "⏹", "skipped": "⏭"}.get(outcome, "•")
    if len(text) > budget:
        text = "… (start cut, see the workflow log)\n" + text[-budget:]
    f = fence(text)
    return (f"<details><summary>{icon} <b>{html.escape(name)}</b>: {html.escape(outcome)}</summary>\n\n"
            f"{f}text\n{text.strip()}\n{f}\n</details>\n")


def comment_body(marker: str, title: str, sections: list[tuple[str, str, str]], footer: str = "") -> str:
    budget = max(1000, (LIMIT - 2000) // max(1, len(sections)))
    parts = [f"<!-- socle:{marker} -->", f"### {title}", ""]
    parts += [fold(n, t, o, budget) for n, t, o in sections]
    if footer:
        parts.append(footer)
    return "\n".join(parts)


def parse_section(spec: str) -> tuple[str, str, str]:
    name, _, rest = spec.partition("=")
    path, _, outcome = rest.partition(":")
    p = Path(path)
    return name, p.read_text(errors="replace") if p.exists() else "(no output)", outcome or "unknown"


def upsert_pr_comment(repo: str, pr: int, marker: str, body: str, author: str = BOT) -> str:
    tag = f"<!-- socle:{marker} -->"
    pages = json.loads(gh(f"repos/{repo}/issues/{pr}/comments", "--paginate", "--slurp") or "[]")
    existing = [c for page in pages for c in page
                if c.get("body", "").startswith(tag) and (c.get("user") or {}).get("login") == author]
    if existing:
        gh(f"repos/{repo}/issues/comments/{existing[0]['id']}", "-X", "PATCH", body=body)
        return f"edited comment {existing[0]['id']}"
    gh(f"repos/{repo}/issues/{pr}/comments", "-X", "POST", body=body)
    return "created a comment"


def upsert_drift_issue(repo: str, stack: str, diff: str) -> str:
    title = f"Drift detected on stack {stack}"
    body = comment_body(f"drift-{stack}", title, [(f"pulumi preview --refresh --stack {stack}", diff, "failure")],
                        "Someone changed the infrastructure outside Pulumi, or a provider changed a default. "
                        "Either bring the change into the code (a pull request), or run `pulumi up` to put it "
                        "back as the code says. Closed by hand once resolved.")
    issues = json.loads(gh(f"repos/{repo}/issues", "-X", "GET", "-f", "labels=drift", "-f", "state=open") or "[]")
    mine = [i for i in issues if i.get("title") == title and (i.get("user") or {}).get("login") == BOT]
    if mine:
        gh(f"repos/{repo}/issues/{mine[0]['number']}", "-X", "PATCH", body=body)
        return f"updated issue #{mine[0]['number']}"
    gh(f"repos/{repo}/issues", "-X", "POST", "-f", f"title={title}", "-f", "labels[]=drift", body=body)
    return "opened an issue"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.github_report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("pr-comment")
    c.add_argument("--pr", type=int, required=True)
    c.add_argument("--marker", required=True)
    c.add_argument("--title", required=True)
    c.add_argument("--footer", default="")
    c.add_argument("--author", default=BOT, help=f"login whose marked comment is edited (default {BOT})")
    c.add_argument("sections", nargs="+", help="NAME=FILE[:OUTCOME]")
    d = sub.add_parser("drift-issue")
    d.add_argument("--stack", required=True)
    d.add_argument("file", type=Path)
    args = ap.parse_args(argv)
    repo = os.environ.get("GITHUB_REPOSITORY")
    if not repo:
        ap.error("GITHUB_REPOSITORY is not set (owner/name)")
    if args.cmd == "pr-comment":
        body = comment_body(args.marker, args.title, [parse_section(s) for s in args.sections], args.footer)
        print(upsert_pr_comment(repo, args.pr, args.marker, body, args.author))
    else:
        print(upsert_drift_issue(repo, args.stack, args.file.read_text(errors="replace")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
