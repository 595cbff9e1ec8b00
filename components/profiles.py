"""Stack-name -> config logic: a stack named pr-<number> with no socle:domain of its own gets the
review profile (profiles/review.yaml) with {number} filled in; its own keys still win."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REVIEW = re.compile(r"^pr-([1-9][0-9]{0,6})$")
PROFILE = Path(__file__).resolve().parent.parent / "profiles" / "review.yaml"


def review_number(stack: str) -> int | None:
    m = REVIEW.match(stack)
    return int(m.group(1)) if m else None


def _fill(value, number: int):
    if isinstance(value, str):
        return value.replace("{number}", str(number))
    if isinstance(value, dict):
        return {k: _fill(v, number) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, number) for v in value]
    return value


def apply_profile(stack: str, values: dict, profile: Path = PROFILE) -> dict:
    """The socle values for `stack`: its own, on top of the review profile for pr-<number> stacks."""
    number = review_number(stack)
    if number is None or "domain" in values:
        return values
    doc = yaml.safe_load(profile.read_text()) or {}
    base = {k.split(":", 1)[1]: _fill(v, number) for k, v in (doc.get("config") or {}).items()}
    return {**base, **values}
