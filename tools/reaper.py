"""Destroys review stacks (pr-<number>) whose pull request is closed or whose age passed a TTL.

    python -m tools.reaper [--ttl-days 7] [--only pr-<number>] [--dry-run]

Reads `pulumi stack ls --json`, each review stack's `socle:created-at` tag (seconds since the
epoch, set when the stack was created) and the pull request's state from `gh pr view`. For each
stack to reap: `pulumi config refresh` (restores the stack file and its encryption salt), then
`pulumi destroy --yes` and `pulumi stack rm --yes`. A stack that fails to destroy is reported
and left in place (nothing is removed from the state while resources may remain). `--only` limits
the run to one review stack (review-stacks.yml asks for it when a pull request closes); it is still
destroyed only for one of the reasons above, so starting the reaper by hand cannot destroy the
stack of an open pull request.

Exit status: 0 done (or nothing to do), 1 a stack failed to destroy, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from components.profiles import review_number


def decide(stack: str, tags: dict, pr_state: str | None, now: float, ttl_days: float) -> str | None:
    """Why `stack` should go, or None to keep it."""
    if review_number(stack) is None:
        return None
    if pr_state in ("CLOSED", "MERGED"):
        return f"its pull request is {pr_state.lower()}"
    created = tags.get("socle:created-at")
    try:
        age_days = (now - float(created)) / 86400 if created is not None else None
    except ValueError:
        age_days = None
    if age_days is None:
        return None  # no creation time: never destroy on a guess
    if age_days > ttl_days:
        return f"it is {age_days:.1f} days old (TTL {ttl_days:g})"
    return None


def sh(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.reaper", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ttl-days", type=float, default=7)
    ap.add_argument("--only", default="", metavar="pr-<number>",
                    help="consider only this review stack (empty: all of them)")
    ap.add_argument("--dry-run", action="store_true", help="say what would be destroyed, destroy nothing")
    args = ap.parse_args(argv)
    if args.only and review_number(args.only) is None:
        ap.error(f"--only '{args.only}' is not a review stack name (pr-<number>); the reaper destroys nothing else")
    stacks = [s["name"].split("/")[-1] for s in json.loads(sh(["pulumi", "stack", "ls", "--json"]).stdout or "[]")]
    failures = 0
    for stack in stacks:
        number = review_number(stack)
        if number is None or (args.only and stack != args.only):
            continue
        tags = json.loads(sh(["pulumi", "stack", "tag", "ls", "--stack", stack, "--json"]).stdout or "{}")
        view = sh(["gh", "pr", "view", str(number), "--json", "state"], check=False)
        state = json.loads(view.stdout).get("state") if view.returncode == 0 else None
        why = decide(stack, tags, state, time.time(), args.ttl_days)
        if why is None:
            print(f"keep    {stack}")
            continue
        print(f"reap    {stack}: {why}")
        if args.dry_run:
            continue
        for cmd in (["pulumi", "config", "refresh", "--stack", stack, "--force"],
                    ["pulumi", "destroy", "--stack", stack, "--yes", "--skip-preview"],
                    ["pulumi", "stack", "rm", stack, "--yes"]):
            res = sh(cmd, check=False)
            if res.returncode != 0:
                print(f"FAILED  {stack}: {' '.join(cmd[:3])}: {res.stderr.strip()[-500:]}", file=sys.stderr)
                failures += 1
                break
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
