"""Helpers for tests that run the real tools. A missing tool fails the test (never skips it):
`.ci/run` installs every one of them."""

import shutil
import subprocess

import pytest


def require(tool: str, package: str | None = None) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if shutil.which(f"/usr/sbin/{tool}") else None)
    if not path:
        pytest.fail(f"{tool} is not installed; run `apt-get install -y {package or tool}` (bash .ci/run does it)")
    return path


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)
