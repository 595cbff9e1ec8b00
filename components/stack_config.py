"""Reads the `socle:*` keys from the Pulumi config API and hands them to the model."""

from __future__ import annotations

import pulumi
import pulumi.runtime.config as runtime_config

from .config import NAMESPACE, StackConfig, decode
from .profiles import load_stack


def read_stack_config() -> tuple[StackConfig, dict]:
    prefix = NAMESPACE + ":"
    # Every key the engine passed (plus the env fallback it uses), so unknown keys are caught too.
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values = {k[len(prefix):]: decode(v) for k, v in raw.items() if k.startswith(prefix)}
    secret = {k[len(prefix):] for k in raw if k.startswith(prefix) and runtime_config.is_config_secret(k)}
    return load_stack(pulumi.get_stack(), values, secret)
