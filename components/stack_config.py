"""Reads the `socle:*` keys from the Pulumi config API and hands them to the model."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi.runtime.config as runtime_config

from .config import NAMESPACE, StackConfig, decode
from .profiles import load_stack
from .stack_file import read


def read_stack_config() -> tuple[StackConfig, dict]:
    """The validated config. The stack file is also read strictly (components.stack_file) when it is
    in the working directory: the CLI has parsed it already, but a key written twice or a value
    YAML readers disagree on must stop `pulumi up` as it stops the offline plan (StackFileError)."""
    own = Path(f"Pulumi.{pulumi.get_stack()}.yaml")
    if own.exists():
        read(own)
    prefix = NAMESPACE + ":"
    # Every key the engine passed (plus the env fallback it uses), so unknown keys are caught too.
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values = {k[len(prefix):]: decode(v) for k, v in raw.items() if k.startswith(prefix)}
    secret = {k[len(prefix):] for k in raw if k.startswith(prefix) and runtime_config.is_config_secret(k)}
    return load_stack(pulumi.get_stack(), values, secret)
