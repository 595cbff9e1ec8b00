"""Outputs inside plain structures, resolved with one Output.

`pulumi.Output.from_input` lifts a nested dict or list level by level (an Output.all and an apply
per dict, list and key), which at 500 sites cost more evaluation time than the resources that use
the values (tools/bench_scale.py). `resolved` finds the few Outputs in the structure, waits for
them together, and rebuilds the structure once. Secrets and dependencies carry over, as with
from_input."""

from __future__ import annotations

from typing import Any

import pulumi


def resolved(value: Any) -> pulumi.Output[Any]:
    """`value` with every Output (or awaitable input) inside its dicts, lists and tuples replaced by
    its value, as one Output."""
    leaves: list[Any] = []

    def collect(v):
        if isinstance(v, dict):
            for x in v.values():
                collect(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                collect(x)
        elif isinstance(v, pulumi.Output):
            leaves.append(v)

    collect(value)
    if not leaves:
        return pulumi.Output.from_input(value) if not isinstance(value, (dict, list, tuple)) \
            else pulumi.Output.all().apply(lambda _: value)

    def rebuild(values: list[Any]) -> Any:
        it = iter(values)

        def build(v):
            if isinstance(v, dict):
                return {k: build(x) for k, x in v.items()}
            if isinstance(v, list):
                return [build(x) for x in v]
            if isinstance(v, tuple):
                return tuple(build(x) for x in v)
            if isinstance(v, pulumi.Output):
                return next(it)
            return v

        return build(value)

    return pulumi.Output.all(*leaves).apply(rebuild)
