"""socle's CrossGuard policy pack: only builds the PolicyPack; the rules live in rules.py.

    pulumi preview --policy-pack policy --policy-pack-config policy/config/<stack>.json
"""

import os
import sys
from collections.abc import Mapping, Sequence

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rules  # noqa: E402


def _plain(value):
    """Undo pulumi_policy's unknown-checking proxies, which raise on access to an unknown value:
    the rules want the raw values, sentinels included, and decide themselves."""
    if isinstance(value, Mapping):
        inner = value if isinstance(value, dict) else value["__target"]
        return {k: _plain(v) for k, v in inner.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        inner = value if isinstance(value, list) else value["__target"]
        return [_plain(v) for v in inner]
    return value


def _res(r) -> rules.Res:
    parent = getattr(r, "parent", None)
    provider = getattr(r, "provider", None)
    return rules.Res(
        type=r.resource_type, name=r.name, urn=r.urn, props=_plain(r.props),
        parent=parent.urn if parent is not None else None,
        dependencies=[d.urn for d in getattr(r, "dependencies", []) or []],
        provider=provider.urn if provider is not None else None,
        protect=bool(getattr(getattr(r, "opts", None), "protect", False)),
    )


def _schema(rule):
    props = {}
    for key, default in rule.config.items():
        kind = {bool: "boolean", int: "integer", list: "array", dict: "object"}.get(type(default), "string")
        props[key] = {"type": kind, "default": default}
    return PolicyConfigSchema(properties=props) if props else None


def _resource_policy(rule):
    def validate(args, report_violation):
        if args.resource_type not in rule.types:
            return
        res = rules.Res(type=args.resource_type, name=args.name, urn=args.urn, props=_plain(args.props),
                        provider=args.provider.urn if args.provider is not None else None,
                        protect=bool(getattr(getattr(args, "opts", None), "protect", False)))
        for f in rules.run_resource_rule(rule, res, dict(args.get_config() or {})):
            if not f.unknown:  # unknown at preview: checked again on update
                report_violation(f.message)

    return ResourceValidationPolicy(name=rule.name, description=rule.description, validate=validate,
                                    config_schema=_schema(rule))


def _stack_policy(rule):
    def validate(args, report_violation):
        resources = [_res(r) for r in args.resources]
        for f in rules.run_stack_rule(rule, resources, dict(args.get_config() or {})):
            if not f.unknown:
                report_violation(f.message)

    return StackValidationPolicy(name=rule.name, description=rule.description, validate=validate,
                                 config_schema=_schema(rule))


PolicyPack(
    name="socle",
    # Advisory unless a policy config file says otherwise (policy/config/<stack>.json).
    enforcement_level=EnforcementLevel.ADVISORY,
    policies=[_resource_policy(r) if r.kind == "resource" else _stack_policy(r) for r in rules.RULES],
)
