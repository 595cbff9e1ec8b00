"""renovate.json: Renovate opens a pull request for each new tag of an image socle deploys. Its
regular expressions (JavaScript/RE2 syntax, run here with Python's re after renaming the named
groups) must find every image of every stack file, of the review profile and of the examples,
and socle's default images, with the image name and tag Renovate would look up. What this does not
prove: Renovate's own schema (its validator is the whole renovate npm package) and the registries."""

from __future__ import annotations

import json
import re
import subprocess

from tests.conftest import ROOT

CONFIG = json.loads((ROOT / "renovate.json").read_text())


def _py(pattern: str) -> re.Pattern:
    return re.compile(pattern.replace("(?<", "(?P<"))


def _files(manager: dict) -> list[str]:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    pats = [_py(p.strip("/")) for p in manager["managerFilePatterns"]]
    return [f for f in tracked if any(p.search(f) for p in pats)]


def _found() -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {}
    for manager in CONFIG["customManagers"]:
        for f in _files(manager):
            text = (ROOT / f).read_text()
            for pattern in manager["matchStrings"]:
                for m in _py(pattern).finditer(text):
                    out.setdefault(f, set()).add((m.group("depName"), m.group("currentValue")))
    return out


def test_every_image_of_every_stack_file_profile_and_example_is_found():
    found = _found()
    tracked = subprocess.run(["git", "ls-files", "Pulumi.*.yaml", "profiles", "examples"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    missing = []
    for f in (x for x in tracked if x.endswith(".yaml")):
        for line in (ROOT / f).read_text().splitlines():
            m = re.match(r"\s*image:\s*[\"']?([^\s\"']+)", line)
            if m:
                name, _, tag = m.group(1).rpartition(":")
                if (name, tag) not in found.get(f, set()):
                    missing.append(f"{f}: {m.group(1)}")
    assert not missing, f"images Renovate would not update: {missing}"


def test_socles_default_images_are_found():
    from components.config import Mail, Proxy

    defaults = {Proxy.model_fields["image"].default, Mail.model_fields["image"].default}
    found = {f"{n}:{t}" for n, t in _found().get("components/config.py", set())}
    assert defaults <= found, f"default images Renovate would not update: {sorted(defaults - found)}"


def test_a_registry_with_a_port_and_a_digest_are_read_as_renovate_would():
    manager = CONFIG["customManagers"][0]
    m = _py(manager["matchStrings"][0]).search(
        "    image: registry.example.org:5000/team/app:1.2.3@sha256:" + "a" * 64 + "\n")
    assert m and (m.group("depName"), m.group("currentValue"), m.group("currentDigest")) == \
        ("registry.example.org:5000/team/app", "1.2.3", "sha256:" + "a" * 64)
    assert not _py(manager["matchStrings"][0]).search("    imageName: nginx:1.27\n"), "matched another key"


def test_no_ignored_path_hides_the_examples():
    """config:recommended ignores **/examples/** (its :ignoreModulesAndTests preset) unless
    ignorePaths is set: the examples are stacks people copy, so their images must be updated too."""
    assert CONFIG.get("ignorePaths") == ["**/node_modules/**"], CONFIG.get("ignorePaths")
