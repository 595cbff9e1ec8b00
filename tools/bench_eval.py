"""How long the program takes to evaluate under mocks, imports included (target for prod: < 2 s).

Each run is a fresh Python process, so the figure includes interpreter start-up, importing Pulumi
and the provider SDKs, validating the config and registering every resource.

    python -m tools.bench_eval [STACK ...] [--runs N]
    python -m tools.bench_eval --scale [SITES] [--runs N]   # growth, overhead, critical path (tools/bench_scale.py)
    python -m tools.bench_eval --readme     # rewrite the resource counts README.md quotes, from the plan

The README quotes the counts of the stack files (its benchmark table, its plan excerpt); after a
change to a stack file, --readme updates them and keeps the measured times (tests/test_cli.py
checks that they match the plan).

Exit status: 0 measured, 1 an evaluation failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = "from tools.harness import run_program; r = run_program({stack!r}); print(len(r.resources))"


def measure(stack: str, runs: int) -> tuple[list[float], int]:
    times, count = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD.format(stack=stack)], cwd=ROOT, check=True,
                             capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        count = int(out.stdout.strip().splitlines()[-1])
    return times, count


def readme_counts(text: str) -> str:
    """README.md's text with the benchmark table's counts and the plan excerpt's first line from the plan."""
    from tools.harness import run_program

    for stack in ("dev", "staging", "prod"):
        run = run_program(stack)
        text = re.sub(rf"^({stack:<10})\s*\d+(?=\s+\d)", lambda m: f"{m.group(1)}{len(run.resources):>10}",
                      text, count=1, flags=re.M)
        if stack == "prod":
            text = re.sub(r"^\d+ resources \(.*?\)(?= would be created)", lambda _: run.count_line(), text,
                          count=1, flags=re.M)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stacks", nargs="*", default=["dev", "staging", "prod"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scale", type=int, nargs="?", const=500, metavar="SITES",
                    help="scale mode: a hosting co-op up to SITES sites (default 500) and the Caplibre example")
    ap.add_argument("--readme", action="store_true", help="rewrite the resource counts README.md quotes")
    args = ap.parse_args()
    if args.readme:
        readme = ROOT / "README.md"
        text = readme.read_text()
        new = readme_counts(text)
        readme.write_text(new)
        print(f"{readme}: resource counts {'updated' if new != text else 'already right'}")
        return
    if args.scale:
        from tools.bench_scale import report

        report(args.scale, args.runs if args.runs != 5 else 1)
        return
    print(f"{'stack':<10}{'resources':>10}{'min s':>9}{'median s':>10}{'max s':>8}   (fresh process each, {args.runs} runs)")
    for stack in args.stacks:
        times, count = measure(stack, args.runs)
        print(f"{stack:<10}{count:>10}{min(times):>9.2f}{statistics.median(times):>10.2f}{max(times):>8.2f}")


if __name__ == "__main__":
    main()
