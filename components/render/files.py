"""Files put into an app's containers (apps.*.files): `${VAR}` takes the value of one of the app's
environment variables (its env, secrets, and what its databases, buckets and caches give it);
`$${` writes a literal `${`. Pure: the platform decides what is secret."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: where `source` paths start
MAX_BYTES = 64 * 1024
_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def references(template: str) -> list[str]:
    """The variables a file refers to, in order of first use."""
    out: list[str] = []
    for m in _REF.finditer(template):
        if m.group(1) and m.group(1) not in out:
            out.append(m.group(1))
    return out


def render_file(template: str, values: dict[str, str]) -> str:
    """`template` with each `${VAR}` replaced by values[VAR] and `$${` by `${`."""
    return _REF.sub(lambda m: "${" if m.group(1) is None else str(values[m.group(1)]), template)


def text_of_source(source: str, root: Path = ROOT) -> tuple[str, str | None]:
    """(the text of a repository file, None), or ("", why not): a regular file inside the
    repository (no .. nor a symlink out of it), at most MAX_BYTES of UTF-8."""
    path = (root / source).resolve()
    if not path.is_relative_to(root.resolve()):
        return "", f"'{source}' leads out of the repository ({path}); keep the file inside it"
    if not path.is_file():
        return "", f"'{source}' is not a file of the repository (looked for {path})"
    size = path.stat().st_size
    if size > MAX_BYTES:
        return "", f"'{source}' is {size:,} bytes; files put into containers hold at most {MAX_BYTES:,}"
    try:
        return path.read_text(encoding="utf-8"), None
    except UnicodeDecodeError:
        return "", f"'{source}' is not UTF-8 text"
