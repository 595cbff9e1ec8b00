"""Stack-name -> config logic for review stacks, and the isolation they must keep.

A stack named pr-<number> always gets the review profile (profiles/review.yaml) with {number}
filled in. Its own file (`Pulumi.pr-<number>.yaml`, if any) may replace whole sections, except what
keeps a review stack away from staging and prod: the domain, the DNS zone and provider, and the OVH
project are fixed by the profile, and the result must share no OVH project, no DNS zone and no CI
deploy key with any other stack file of the project. A pull request's code runs in a review stack,
so this is checked by the program itself; the hard boundary is still the review environment's
credentials (README, "Trust model"), which can reach nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path

from .stack_file import StackFileError, read

REVIEW = re.compile(r"pr-([1-9][0-9]{0,6})")
ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "profiles" / "review.yaml"

# (key path in the stack config, what it protects): a review stack cannot change these.
LOCKED = (
    ("domain", "the parent of every hostname of a review stack"),
    ("dns.zone", "the only zone a review stack writes records in"),
    ("dns.provider", "the service of the review zone, the only one the review DNS token can change"),
    ("ovh.projectId", "the only OVH project the review credentials can reach"),
    ("network.vlanId", "left to be derived from the stack's name: the VLAN of another stack sharing the vRack "
                       "would join the pull request's servers to that stack's private network"),
)


def review_number(stack: str) -> int | None:
    m = REVIEW.fullmatch(stack)  # fullmatch: "$" would accept a trailing newline
    return int(m.group(1)) if m else None


def _fill(value, number: int):
    if isinstance(value, str):
        return value.replace("{number}", str(number))
    if isinstance(value, dict):
        return {k: _fill(v, number) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, number) for v in value]
    return value


def _socle_values(path: Path) -> dict:
    doc = read(path).doc
    return {k.split(":", 1)[1]: v for k, v in (doc.get("config") or {}).items()
            if isinstance(k, str) and k.startswith("socle:")}


def _get(values: dict, path: str):
    """The value at a camelCase key path, also under its snake_case spelling, which the config model
    accepts too (a stack file written either way must not slip past the comparison)."""
    node = values
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        snake = re.sub(r"(?<!^)([A-Z])", r"_\1", part).lower()
        node = node.get(part, node.get(snake))
    return node


def _zone(values: dict):
    return _get(values, "dns.zone") or values.get("domain")


def _keys(values: dict) -> set[str]:
    """The SSH public keys a stack authorises (admins' and CI's), compared by type and key only."""
    admins = _get(values, "access.adminSshKeys")
    keys = (list(admins) if isinstance(admins, list) else []) + [_get(values, "access.ciSshKey")]
    return {_bare(k) for k in keys if _bare(k)}


def _bare(key) -> str | None:
    parts = key.split() if isinstance(key, str) else []
    return " ".join(parts[:2]) if len(parts) >= 2 else None


def apply_profile(stack: str, values: dict, profile: Path = PROFILE) -> dict:
    """The socle values for `stack`: for pr-<number>, the review profile with its own sections on top."""
    number = review_number(stack)
    if number is None:
        return values
    return {**_profile_values(profile, number), **values}


def _profile_values(profile: Path, number: int) -> dict:
    return {k: _fill(v, number) for k, v in _socle_values(profile).items()}


def review_issues(stack: str, values: dict, root: Path = ROOT, profile: Path = PROFILE) -> list[tuple[str, str]]:
    """Why the effective config `values` of review stack `stack` is not isolated (key path, message).

    Empty for stacks that are not review stacks. `root` holds the project's other stack files."""
    number = review_number(stack)
    if number is None:
        return []
    own_file = f"Pulumi.{stack}.yaml"
    shown = profile.relative_to(root) if profile.is_relative_to(root) else profile
    base = _profile_values(profile, number)
    issues: list[tuple[str, str]] = []
    for path, why in LOCKED:
        want, got = _get(base, path), _get(values, path)
        if got != want:
            issues.append((path, f"{own_file} sets '{got}', but a review stack's {path} is fixed by the review "
                                 f"profile ({shown}: '{want}'): it is {why}. Remove it from {own_file}."))
    zone, project, ci_key = _zone(values), _get(values, "ovh.projectId"), _bare(_get(values, "access.ciSshKey"))
    if ci_key is None:
        issues.append(("access.ciSshKey", "required on a review stack: the public half of the review environment's "
                                          f"own CI deploy key (set in {shown}), which no other stack authorises"))
    mail = _get(values, "mail")
    if isinstance(mail, dict) and _get(values, "mail.reverseDns") is not False:
        issues.append(("mail.reverseDns", "a review stack cannot set reverse DNS: its OVH key has no rights on "
                                          "/ip (they span the whole OVH account, not one project), and its server's "
                                          f"address is recycled when the stack goes; set reverseDns: false in {own_file}"))
    # A locked key that the stack file changed is reported once, above; the rest is compared with
    # every other stack file (the profile itself could have been edited to point at prod).
    reported = {path for path, _ in issues}
    for other in sorted(root.glob("Pulumi.*.yaml")):
        name = other.name[len("Pulumi."):-len(".yaml")]
        if review_number(name) is not None:
            continue
        try:
            theirs = _socle_values(other)
        except (OSError, StackFileError) as err:
            issues.append(("", f"cannot read {other.name} to check that review stack {stack} shares nothing "
                               f"with stack {name} ({err}); fix that file first"))
            continue
        if "ovh.projectId" not in reported and project and project == _get(theirs, "ovh.projectId"):
            issues.append(("ovh.projectId", f"'{project}' is also the OVH project of stack {name} ({other.name}); "
                                            f"review stacks deploy into a project of their own ({shown})"))
        if "dns.zone" not in reported and zone and zone == _zone(theirs):
            issues.append(("dns.zone", f"'{zone}' is also the DNS zone of stack {name} ({other.name}); review "
                                       f"stacks write records only in a zone of their own ({shown})"))
        if ci_key and ci_key in _keys(theirs):
            issues.append(("access.ciSshKey", f"the review CI key '{ci_key[:40]}…' is also authorised on stack "
                                              f"{name} ({other.name}); the key a pull request's deployment holds "
                                              "must reach no other stack's servers: generate one for review only"))
    return issues


def load_stack(stack: str, values: dict, secret_keys: set[str] | frozenset = frozenset()):
    """The validated config of `stack` from its own socle values: the review profile applied and its
    isolation checked for review stacks, every problem reported together (ConfigError)."""
    from .config import ConfigError, load

    merged = apply_profile(stack, values)
    issues = review_issues(stack, merged)
    try:
        loaded = load(merged, secret_keys)
    except ConfigError as err:
        raise ConfigError(issues + err.issues) from None
    if issues:
        raise ConfigError(issues)
    return loaded
