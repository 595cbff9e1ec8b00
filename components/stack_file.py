"""Reads a `Pulumi.<stack>.yaml` the strict way, for every tool that reads one without the Pulumi CLI
(the offline plan, the diff, the tests, the review-stack checks).

A stack file is YAML, and YAML readers disagree: PyYAML follows YAML 1.1 and reads `2:30:00` as the
number 9000 and `no` as false; the Pulumi CLI reads it with Go's yaml.v2 (sdk/go/common/encoding/
marshal.go), which reads `no` as false but `2:30:00` as text; YAML 1.2 readers read both as text.
The same file must not mean two things, so a plain (unquoted) scalar that YAML 1.1 and YAML 1.2 read
differently is refused with "quote it". A key written twice is refused too: PyYAML keeps the last
one silently (pasting a section that already exists would drop the first one whole).

Every problem is a `StackFileError` with the file, line and column and a sentence saying what to do;
no YAML traceback reaches a person. `positions` maps each config key path ("apps.web.image") to
the line it is written on, so config errors can point at it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Plain scalars that YAML 1.1 resolves to something else than YAML 1.2 (core schema) does.
_YAML11_BOOL = re.compile(r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")
_YAML11_SEXAGESIMAL = re.compile(r"^[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$")
_YAML11_OCTAL = re.compile(r"^[-+]?0[0-7_]+$")
_YAML11_UNDERSCORE_NUMBER = re.compile(r"^[-+]?[0-9][0-9]*_[0-9_]*(\.[0-9_]*)?$")


class StackFileError(Exception):
    """A stack file that cannot be read: `problems` is a list of (line, column, message)."""

    def __init__(self, path: Path | str, problems: list[tuple[int, int, str]]):
        self.path = Path(path)
        self.problems = problems
        lines = [f"{self.path.name}:{line}:{col}: {msg}" for line, col, msg in problems]
        super().__init__("\n".join(lines))


@dataclass
class StackFile:
    path: Path
    doc: dict
    # config key path without the namespace ("apps.web.image", "domain") -> line (1-based)
    positions: dict[str, int] = field(default_factory=dict)

    def line_of(self, key_path: str) -> int | None:
        """The line of a config key path, or of its nearest parent written in the file."""
        parts = key_path.split(".")
        while parts:
            line = self.positions.get(".".join(parts))
            if line:
                return line
            parts.pop()
        return None


def _surprise(value: str) -> str | None:
    """Why YAML 1.1 and 1.2 readers disagree on this plain scalar, or None."""
    if _YAML11_BOOL.match(value):
        return f"YAML 1.1 readers (PyYAML, the Pulumi CLI) read `{value}` as a boolean, YAML 1.2 ones as text"
    if _YAML11_SEXAGESIMAL.match(value):
        return (f"YAML 1.1 readers read `{value}` as a base-60 number "
                f"({_sexagesimal(value)}), others as text")
    if _YAML11_OCTAL.match(value) and value.lstrip("+-") not in ("0",):
        return f"YAML 1.1 readers read `{value}` as an octal number ({int(value.replace('_', ''), 8)}), others as decimal"
    if _YAML11_UNDERSCORE_NUMBER.match(value):
        return f"YAML 1.1 readers read `{value}` as the number {value.replace('_', '')}, others as text"
    return None


def _sexagesimal(value: str) -> str:
    total = 0.0
    for part in value.lstrip("+-").replace("_", "").split(":"):
        total = total * 60 + float(part)
    return f"{int(total)}" if total == int(total) else f"{total}"


def _walk(node, path: tuple, positions: dict, problems: list, visited: set | None = None):
    visited = set() if visited is None else visited
    if id(node) in visited:  # the composer shares the node of an alias: `*name` refers to `&name`
        if any("anchor and alias" in p[2] for p in problems):
            return  # one alias is enough to say so (and an alias bomb must not be walked)
        problems.append((node.start_mark.line + 1, node.start_mark.column + 1,
                         f"`{'.'.join(map(str, path))}` repeats another value with a YAML anchor and alias (&name, *name); "
                         "stack files write every value out (an alias can also multiply a file's size without end)"))
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key is not None and key in seen:
                problems.append((line, key_node.start_mark.column + 1,
                                 f"`{'.'.join(map(str, path + (key,)))}` is written twice (first on line "
                                 f"{seen[key]}); YAML keeps only the last one, so everything under the first "
                                 "would be dropped: merge the two into one"))
            elif key is not None:
                seen[key] = line
            if isinstance(key_node, yaml.ScalarNode):
                _scalar(key_node, path + (key,), problems)
            positions[path + (key,)] = line
            _walk(value_node, path + (key,), positions, problems, visited)
            if len(problems) > 50:
                return
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            positions[path + (i,)] = item.start_mark.line + 1
            _walk(item, path + (i,), positions, problems, visited)
    elif isinstance(node, yaml.ScalarNode):
        _scalar(node, path, problems)


def _scalar(node: yaml.ScalarNode, path: tuple, problems: list):
    if node.style is not None or node.tag != yaml.resolver.Resolver().resolve(yaml.ScalarNode, node.value, (True, False)):
        return  # quoted, or tagged explicitly: no surprise
    why = _surprise(node.value)
    if why:
        where = ".".join(map(str, path))
        problems.append((node.start_mark.line + 1, node.start_mark.column + 1,
                         f"`{where}: {node.value}`: {why}; write it in quotes: '{node.value}'"))


def _syntax_problem(text: str, err: yaml.YAMLError) -> tuple[int, int, str]:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = getattr(err, "problem", None) or str(err)
    lines = text.splitlines()
    row = lines[line - 1] if 0 < line <= len(lines) else ""
    if "\t" in row[: max(col, 1)] or "'\\t'" in problem:
        return line, col, "a tab character: YAML indents with spaces only; replace the tab with spaces"
    return line, col, (f"not valid YAML: {problem}; check the indentation and quotes of this line and of the "
                       "lines above it (a key indented differently from its neighbours is reported where the next "
                       "block starts)")


def _not_json(value, path: tuple) -> list[tuple[tuple, object]]:
    """Values YAML can build but JSON (how the engine passes config) cannot: dates, timestamps, bytes."""
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _not_json(v, path + (k,))]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in _not_json(v, path + (i,))]
    if value is None or isinstance(value, (str, int, float, bool)):
        return []
    return [(path, value)]


_CACHE: dict[tuple, StackFile] = {}


def read(path: Path | str, text: str | None = None) -> StackFile:
    """Parse a stack file strictly; raise StackFileError naming the file, line and fix. A file read
    again unchanged (the offline plan, then the program it runs) is parsed once."""
    path = Path(path)
    if text is None and path.is_file():
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        if key not in _CACHE:
            _CACHE.clear()
            _CACHE[key] = _read(path, None)
        return _CACHE[key]
    return _read(path, text)


def _read(path: Path, text: str | None) -> StackFile:
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except (IsADirectoryError, PermissionError, FileNotFoundError) as err:
            raise StackFileError(path, [(1, 1, f"cannot be read ({err.strerror}); give the path of a stack file")]) from None
        except UnicodeDecodeError as err:
            raise StackFileError(path, [(1, 1, f"not UTF-8 text ({err.reason}); save it as UTF-8")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise StackFileError(path, [_syntax_problem(text, err)]) from None
    if node is None:
        return StackFile(path, {}, {})
    problems: list[tuple[int, int, str]] = []
    raw_positions: dict[tuple, int] = {}
    _walk(node, (), raw_positions, problems)
    if problems:
        raise StackFileError(path, problems)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:  # an anchor or tag the composer accepted but the constructor does not
        raise StackFileError(path, [_syntax_problem(text, err)]) from None
    if not isinstance(doc, dict):
        raise StackFileError(path, [(1, 1, "a stack file is a mapping with a `config:` key; see Pulumi.dev.yaml")])
    odd = _not_json(doc, ())
    if odd:
        raise StackFileError(path, [(raw_positions.get(p, 1), 1, f"`{'.'.join(map(str, p))}` is read as "
                                     + ("binary data (!!binary), which a stack config cannot hold; write the text itself"
                                        if isinstance(v, bytes) else
                                        f"a {type(v).__name__} ({v}), which a stack config cannot hold; write it in "
                                        f"quotes: '{v}'"))
                                    for p, v in odd])
    config = doc.get("config")
    if config is not None and not isinstance(config, dict):
        raise StackFileError(path, [(raw_positions.get(("config",), 1), 1,
                                     "`config:` must be a mapping of KEY: VALUE")])
    positions: dict[str, int] = {}
    for key_path, line in raw_positions.items():
        if len(key_path) >= 2 and key_path[0] == "config" and isinstance(key_path[1], str):
            ns, _, first = key_path[1].partition(":")
            if ns == "socle" and first:
                positions[".".join(map(str, (first, *key_path[2:])))] = line
    return StackFile(path, doc, positions)
