"""One-off hook containers (apps.*.hooks): the `docker run` a deployment runs before or after an
app's containers change. Pure; the environment arrives on stdin (an env file), never in the
command line, which Pulumi keeps in its state in plain text."""

from __future__ import annotations

import shlex


def render_hook(*, name: str, image: str, network: str, command: list[str], user: str | None = None,
                volumes: dict[str, str] | None = None) -> str:
    """A shell command: run `command` in a throw-away container of the app's image, on the app's
    network, with the environment read from stdin; its exit status is the command's (a failing
    hook fails the deployment). `name` is unique per run attempt's resource."""
    args = ["docker", "run", "--rm", "--name", name, "--network", network, "--env-file", "/dev/stdin"]
    if user:
        args += ["--user", user]
    for vol, path in sorted((volumes or {}).items()):
        args += ["--mount", f"type=volume,source={vol},target={path}"]
    args += [image, *command]
    script = " ".join(shlex.quote(a) for a in args)
    return (f"set -eu\n"
            f"docker rm -f {shlex.quote(name)} >/dev/null 2>&1 || true  # a previous attempt cut short\n"
            f"exec {script}\n")


def render_env_file(env: dict[str, str]) -> str:
    """docker's --env-file: one VAR=value per line, the value taken as it is (no quotes, no
    expansion); config values never hold newlines (components/config.py refuses them)."""
    for k, v in env.items():
        if "\n" in str(v) or "\r" in str(v):
            raise ValueError(f"{k}: a value with a newline cannot go through an env file")
    return "".join(f"{k}={v}\n" for k, v in sorted(env.items()))
