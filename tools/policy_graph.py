"""Runs the policy rules over a resource graph recorded by tools.harness, with a stack's policy
config file: the same verdicts `pulumi preview --policy-pack policy` gives, without the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from policy import rules
from tools.harness import ROOT, Run


def resources(run: Run) -> list[rules.Res]:
    return [
        rules.Res(type=r.type, name=r.name, urn=r.urn, props=r.plain, parent=r.parent,
                  dependencies=list(r.dependencies), provider=r.provider, protect=bool(r.options.get("protect")))
        for r in run.resources
    ]


def policy_config_path(stack: str, path: Path | None = None) -> Path:
    """The stack's policy config file: its own, review.json for pr-<number>, else staging's."""
    from components.profiles import review_number

    if path is not None:
        return path
    own = ROOT / "policy" / "config" / f"{stack}.json"
    if own.exists():
        return own
    return ROOT / "policy" / "config" / ("review.json" if review_number(stack) else "staging.json")


def policy_config(stack: str, path: Path | None = None) -> dict:
    return json.loads(policy_config_path(stack, path).read_text())


def verdicts(run: Run, config: dict | None = None) -> list[rules.Verdict]:
    return rules.evaluate(resources(run), config if config is not None else policy_config(run.stack))
