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


LEVELS = ("advisory", "mandatory", "disabled")


def policy_config_problems(config) -> list[str]:
    """What is wrong in a policy config (the Pulumi CLI checks a pack's config against its schema;
    the offline plan does the same, so a typo cannot turn a mandatory rule into a pass)."""
    import difflib

    if not isinstance(config, dict):
        return ["must be a JSON object: {\"all\": \"mandatory\", \"RULE\": LEVEL or {...}}"]
    by_name = {r.name: r for r in rules.RULES}
    out = []
    for key, entry in config.items():
        if key == "all":
            if entry not in LEVELS:
                out.append(f"all: '{entry}' is not an enforcement level ({', '.join(LEVELS)})")
            continue
        if key not in by_name:
            close = difflib.get_close_matches(key, list(by_name), n=1)
            out.append(f"{key}: no such rule" + (f"; did you mean '{close[0]}'?" if close else ""))
            continue
        level = entry if isinstance(entry, str) else entry.get("enforcementLevel") if isinstance(entry, dict) else None
        if not isinstance(entry, (str, dict)):
            out.append(f"{key}: must be a level or an object")
        elif level is not None and level not in LEVELS:
            close = difflib.get_close_matches(str(level), LEVELS, n=1)
            out.append(f"{key}: '{level}' is not an enforcement level ({', '.join(LEVELS)})"
                       + (f"; did you mean '{close[0]}'?" if close else ""))
        if isinstance(entry, dict):
            for k in entry:
                if k != "enforcementLevel" and k not in by_name[key].config:
                    out.append(f"{key}.{k}: no such setting (known: {', '.join(sorted(by_name[key].config)) or 'none'})")
    return out
