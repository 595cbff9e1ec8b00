"""What every socle command-line tool shares: Unix manners and readable config errors.

- `main_guard(main)` runs a tool's main(): output piped into `head` that closes early ends quietly
  (exit 141, like a process killed by SIGPIPE) instead of a BrokenPipeError traceback; Ctrl-C exits
  130 without a traceback.
- `config_problems(err)` formats a stack-file or config error as `FILE:LINE: socle:KEY: message`
  lines, so an editor or a person jumps to the line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

# Appended to every tool's --help, after the exit statuses its own description lists.
SIGNALS = "Every tool also exits 130 when interrupted and 141 when the reader of its output goes away (`| head`)."


def main_guard(main: Callable[[], int | None]) -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's documented recipe: point stdout at /dev/null so the interpreter's final flush
        # does not fail a second time, then exit as SIGPIPE would have.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(141)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit as done:  # argparse's --help and usage errors
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(done.code if isinstance(done.code, int) else (0 if done.code is None else 2))
    sys.stderr.flush()
    # Skip the interpreter's teardown: the Pulumi SDK leaves an asyncio loop whose finaliser can
    # print an "Exception ignored ... Invalid file descriptor" traceback at exit, after the work is done.
    os._exit(code or 0)


def config_problems(err: Exception, stack_file=None) -> str:
    """StackFileError / ConfigError as lines a person and an editor can act on."""
    from components.config import NAMESPACE, ConfigError
    from components.stack_file import StackFileError

    if isinstance(err, StackFileError):
        n = len(err.problems)
        return (f"{err.path.name}: cannot be read ({n} problem{'s' if n != 1 else ''}):\n  "
                + "\n  ".join(str(err).splitlines()))
    if isinstance(err, ConfigError):
        name = Path(stack_file.path).name if stack_file is not None else None
        lines = []
        for path, msg in err.issues:
            key = f"{NAMESPACE}:{path}" if path else NAMESPACE
            line = stack_file.line_of(path) if stack_file is not None and path else None
            where = f"{name}:{line}: " if name and line else (f"{name}: " if name else "")
            lines.append(f"{where}{key}: {msg}")
        n = len(err.issues)
        return f"invalid stack config ({n} problem{'s' if n != 1 else ''}):\n  " + "\n  ".join(lines)
    return str(err)
