"""The corpus of realistic stack-file mistakes (tests/corpus/cases.yaml), made to a copy of a real
stack file (tests/corpus/base-*.yaml): each one is written to a file, planned offline exactly as
`python -m tools.plan STACK --config-file FILE` would, and must end with the expected exit code and
message, never with a traceback. The legitimate variations
must plan clean, so the checks refuse mistakes, not ways of working."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import pytest
import yaml

from tools import plan

ROOT = Path(__file__).resolve().parents[1]
CASES = yaml.safe_load((Path(__file__).parent / "corpus" / "cases.yaml").read_text())
# The cases change a copy of socle's prod and staging stack files as they were when the cases were
# written: they judge the checker, so they hold whatever the project's own stack files become
# (apps added, renamed, a server added: tests/test_adding_an_app.py). The shipped stack files
# themselves are judged by tests/test_stacks.py and tests/test_policy_stacks.py.
BASES = Path(__file__).parent / "corpus"


def _node(doc: dict, path: str, create: bool = True):
    *parents, last = path.split(".")
    node = doc["config"]
    first = f"socle:{parents[0]}" if parents else f"socle:{last}"
    if not parents:
        return node, first
    node = node.setdefault(first, {}) if create else node[first]
    for p in parents[1:]:
        key = int(p) if isinstance(node, list) else p
        node = node[key] if isinstance(node, list) or not create else node.setdefault(key, {})
    return node, (int(last) if isinstance(node, list) else last)


def build(case: dict) -> str:
    """The stack file of a case: the base file, changed as the case says."""
    text = (BASES / f"base-{case.get('base', 'prod')}.yaml").read_text()
    if any(k in case for k in ("set", "delete", "append")):
        doc = copy.deepcopy(yaml.safe_load(text))
        for path, value in (case.get("set") or {}).items():
            node, key = _node(doc, path)
            node[key] = value
        for path in case.get("delete") or []:
            node, key = _node(doc, path, create=False)
            del node[key]
        for path, item in (case.get("append") or {}).items():
            node, key = _node(doc, path)
            node.setdefault(key, [])
            node[key] += item if isinstance(item, list) else [item]
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)
    for old, new in case.get("text") or []:
        assert old in text, f"case {case['name']}: text to replace not found: {old!r}"
        text = text.replace(old, new, 1)
    return text


def test_corpus_is_big_enough():
    broken = [c for c in CASES if c["exit"] != 0]
    legit = [c for c in CASES if c["exit"] == 0]
    names = [c["name"] for c in CASES]
    assert len(set(names)) == len(names), "two cases share a name"
    assert len(broken) >= 60 and len(legit) >= 10, f"{len(broken)} broken and {len(legit)} legitimate cases"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case, tmp_path):
    stack = case.get("base", "prod")
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(build(case))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = plan.main([stack, "--config-file", str(path)])
    text = out.getvalue() + err.getvalue()
    assert "Traceback" not in text, f"{case['name']}: a traceback instead of a message:\n{text}"
    assert code == case["exit"], f"{case['name']} ({case['why']}): exit {code}, expected {case['exit']}:\n{text[-3000:]}"
    assert case["says"] in text, f"{case['name']}: the output does not say {case['says']!r}:\n{text[-3000:]}"
    if code == 2:
        assert text.count("\n  ") == len({line for line in text.splitlines() if line.startswith("  ")}), \
            f"{case['name']}: a problem reported twice:\n{text}"


def test_readme_gives_the_corpus_size():
    readme = (ROOT / "README.md").read_text()
    broken = sum(1 for c in CASES if c["exit"] != 0)
    legit = len(CASES) - broken
    assert f"holds {broken} such mistakes" in readme and f"{legit}\nlegitimate variations" in readme, \
        f"the README does not say {broken} mistakes and {legit} legitimate variations"
    assert f"plans {broken} broken copies" in readme and f"and {legit} legitimate ones" in readme
