"""Prints the config reference (every `socle:` key with its type, default and description) from the
model's field docs, or with --write replaces it in README.md between the reference markers.
A test checks the README's copy against this output, so docs and code cannot drift apart."""

from __future__ import annotations

import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from components.config import StackConfig

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def _models_in(tp) -> list[type[BaseModel]]:
    out = []
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    for arg in typing.get_args(tp):
        out += _models_in(arg)
    return out


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        k, v = typing.get_args(tp)
        return f"map of {_type_name(v)}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "object"
    return getattr(tp, "__name__", str(tp))


def _default(field) -> str:
    if field.default is not PydanticUndefined:
        d = field.default
    elif field.default_factory is not None:
        d = field.default_factory()
    else:
        return "**required**"
    if d is None or isinstance(d, BaseModel) or d in ({}, []):
        return ""  # an object's defaults are listed on its own keys
    if isinstance(d, bool):
        return f"`{str(d).lower()}`"
    if d == "":
        return '`""`'
    return f"`{d}`"


def rows(model: type[BaseModel] = StackConfig, prefix: str = "socle:") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        tp = field.annotation
        origin = typing.get_origin(tp)
        is_map = origin is dict or any(typing.get_origin(a) is dict for a in typing.get_args(tp))
        desc = (field.description or "").replace("|", "\\|")
        out.append(f"| `{key}` | {_type_name(tp)} | {_default(field)} | {desc} |")
        for sub in _models_in(tp):
            if sub is model:
                continue
            child = f"{key}.<name>." if is_map else f"{key}[]." if origin is list else f"{key}."
            out += rows(sub, child)
    return out


def render() -> str:
    head = ["| key | type | default | description |", "|---|---|---|---|"]
    return "\n".join(head + rows()) + "\n"


def readme_section(text: str) -> str:
    m = re.search(re.escape(START) + r"\n(.*?)" + re.escape(END), text, re.S)
    return m.group(1) if m else ""


def main(argv: list[str] | None = None) -> int:
    import argparse

    from tools.cli import SIGNALS

    ap = argparse.ArgumentParser(prog="python -m tools.config_reference", description=__doc__, epilog=SIGNALS,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="rewrite the README's config reference in place "
                                                         "(default: print the table)")
    args = ap.parse_args(argv)
    table = render()
    if args.write:
        text = README.read_text()
        if START not in text:
            sys.exit(f"{README} has no {START} marker")
        README.write_text(text.replace(START + "\n" + readme_section(text) + END, START + "\n" + table + END))
        print(f"updated the config reference in {README}")
    else:
        print(table, end="")
    return 0


if __name__ == "__main__":
    from tools.cli import main_guard

    main_guard(main)
