"""Switch the maintenance page on or off, for one app or the whole platform, in one command.

    python -m tools.maintenance on|off [--app NAME] --stack STACK [--no-up]

Sets `socle:maintenance` (the whole platform) or `socle:apps.NAME.maintenance` with `pulumi config
set` (the stack file keeps its comments and layout), then runs `pulumi up` for the stack, which
replaces only the HTTPS proxies (their Caddyfile) and the monitoring's probe list. Visitors then
get a 503 page with Retry-After; containers, databases, backups and monitoring keep running, so a
migration can run behind it. `--no-up` only sets the config (then review with `pulumi preview`).

Exit status: 0 done, 2 bad input (an unknown app or stack: the message names the file and the
names there are), 3 the Pulumi CLI is missing (the message gives the commands to run by hand).
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys

from tools.cli import SIGNALS, main_guard


def commands(state: str, app: str | None, stack: str, up: bool) -> list[list[str]]:
    value = "true" if state == "on" else "false"
    if app:
        set_cmd = ["pulumi", "config", "set", "--path", f"socle:apps.{app}.maintenance", value, "--stack", stack]
    else:
        set_cmd = ["pulumi", "config", "set", "socle:maintenance", value, "--stack", stack]
    return [set_cmd] + ([["pulumi", "up", "--stack", stack, "--yes"]] if up else [])


def _problem(app: str | None, stack: str) -> str | None:
    """What is wrong with the stack or app name, read from the stack file."""
    from components.stack_file import StackFileError, read
    from tools.harness import ROOT

    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
        return f"no stack file {path.name} (stacks here: {', '.join(known)})"
    if app is None:
        return None
    try:
        doc = read(path).doc
    except StackFileError as err:
        return str(err)
    apps = ((doc.get("config") or {}).get("socle:apps") or {})
    if app not in apps:
        near = difflib.get_close_matches(app, sorted(apps), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        return f"{path.name}: socle:apps has no app '{app}' (its apps: {', '.join(sorted(apps))}){hint}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.maintenance", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SIGNALS)
    ap.add_argument("state", choices=["on", "off"])
    ap.add_argument("--app", help="one app (default: the whole platform)")
    ap.add_argument("--stack", required=True, help="the stack (prod, staging…): required, as `pulumi up` follows")
    ap.add_argument("--no-up", action="store_true", help="set the config only; do not run pulumi up")
    args = ap.parse_args(argv)
    problem = _problem(args.app, args.stack)
    if problem:
        print(f"socle: {problem}", file=sys.stderr)
        return 2
    cmds = commands(args.state, args.app, args.stack, not args.no_up)
    if shutil.which("pulumi") is None:
        print("socle: the Pulumi CLI is not installed (https://www.pulumi.com/docs/install/); run by hand:\n"
              + "\n".join("  " + " ".join(c) for c in cmds), file=sys.stderr)
        return 3
    from tools.harness import ROOT

    for i, cmd in enumerate(cmds):
        print("+ " + " ".join(cmd), flush=True)
        res = subprocess.run(cmd, cwd=ROOT)
        if res.returncode != 0:
            if i:  # the config is set, the deployment failed
                print(f"socle: the stack file now says maintenance {args.state}, but `pulumi up` failed; "
                      "fix what it says and run it again", file=sys.stderr)
            return res.returncode if res.returncode > 0 else 1
    what = f"app {args.app}" if args.app else "the whole platform"
    print(f"socle: maintenance {args.state} for {what} on stack {args.stack}")
    return 0


if __name__ == "__main__":
    main_guard(main)
