import copy
import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.harness import run_program, stack_config  # noqa: E402

STACKS = ["dev", "staging", "prod"]
_cache: dict = {}


def program(stack: str):
    """The recorded resource graph of a real stack file (evaluated once per test session)."""
    if stack not in _cache:
        _cache[stack] = run_program(stack)
    return _cache[stack]


@pytest.fixture(params=STACKS)
def run(request):
    return program(request.param)


@pytest.fixture(params=["staging", "prod"])
def ovh_run(request):
    return program(request.param)


def stack_values(stack: str) -> dict:
    """The socle: keys of a stack file as plain Python values (namespace stripped)."""
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return {k.split(":", 1)[1]: copy.deepcopy(v) for k, v in doc["config"].items()}


def errors_of(values: dict, secret_keys=frozenset()) -> str:
    """The config errors `values` (plain, namespace stripped) stop the program with, as printed."""
    from components.config import ConfigError, load

    with pytest.raises(ConfigError) as exc:
        load(values, secret_keys)
    return str(exc.value)


def run_values(values: dict, stack: str = "test", secret_keys: tuple = ()):
    """Evaluate the program with config given as plain values (namespace added here)."""
    config = {f"socle:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    return run_program(stack, config=config, secret_keys=[f"socle:{k}" for k in secret_keys])


__all__ = ["program", "stack_values", "run_values", "errors_of", "stack_config", "STACKS", "ROOT"]


def pytest_configure(config):
    """Where the VM tests' report goes: a file, since under pytest-xdist they run in a worker and
    this process prints the summary. Set before the workers start, which inherit it."""
    import os
    import tempfile

    if not hasattr(config, "workerinput") and "SOCLE_VM_REPORT" not in os.environ:
        fd, path = tempfile.mkstemp(prefix="socle-vm-report-", suffix=".txt")
        os.close(fd)
        os.environ["SOCLE_VM_REPORT"] = path


def report(line: str) -> None:
    """A line for the end of pytest's output (VM timings, Lynis), from any worker."""
    import os

    with open(os.environ["SOCLE_VM_REPORT"], "a") as f:
        f.write(line.rstrip("\n") + "\n")


def pytest_collection_modifyitems(config, items):
    """The Debian 12 VM tests first: they take ten minutes on one worker (pytest-xdist,
    --dist loadfile: a file stays on one worker), while the other worker runs the rest beside
    them. In collection order otherwise."""
    items.sort(key=lambda item: item.nodeid.split("::")[0] != "tests/test_vm.py")


def pytest_terminal_summary(terminalreporter):
    """What the VM tests measured (timings, Lynis), printed whatever pytest's output capture."""
    import os
    from pathlib import Path

    path = Path(os.environ.get("SOCLE_VM_REPORT", "/nonexistent"))
    if hasattr(terminalreporter.config, "workerinput") or not path.is_file():
        return
    lines = path.read_text().splitlines()
    if lines:
        terminalreporter.section("Debian 12 VMs")
        for line in lines:
            terminalreporter.write_line(line)
    path.unlink()
