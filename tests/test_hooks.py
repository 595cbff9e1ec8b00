"""Deployment hooks (apps.*.hooks): one-off containers of the app's image before or after its
containers change. The graph orders them; the rendered `docker run` is checked by shellcheck and
run against a stand-in `docker` that records what it was given and fails on demand."""

from __future__ import annotations

import copy
import os
import stat
import subprocess

import pytest

from components.config import ConfigError, load
from components.render.hooks import render_env_file, render_hook
from tests.conftest import run_values, stack_values
from tests.test_systems import HISTOLOGE, OC_PIZZA
from tests.tools import require

MIGRATE = ["python", "manage.py", "migrate", "--noinput"]
STATIC = ["python", "manage.py", "collectstatic", "--noinput"]


def with_hooks(base: dict, app: str, **hooks) -> dict:
    v = copy.deepcopy(base)
    v["apps"][app]["hooks"] = hooks
    return v


def commands(run, kind="command:remote:Command"):
    return {r.name: r for r in run.of_type(kind) if "-hooks-" in r.name}


def test_before_hooks_gate_every_container_of_the_app_and_after_hooks_follow_them_all():
    # Histologe's web app runs on two servers: migrations once, before either server changes.
    v = with_hooks(HISTOLOGE, "webapp", before=[["bin/console", "doctrine:migrations:migrate", "-n"]],
                   after=[["bin/console", "cache:warmup"]])
    run = run_values(v)
    hooks = commands(run)
    assert set(hooks) == {"webapp-hooks-before-0", "webapp-hooks-after-0"}, set(hooks)
    before, after = hooks["webapp-hooks-before-0"], hooks["webapp-hooks-after-0"]
    web = {r.name: r for r in run.of_type("docker:index/container:Container") if r.name.endswith("-webapp")}
    assert set(web) == {"app1-containers-webapp", "app2-containers-webapp"}, set(web)
    for c in web.values():
        assert before.urn in c.dependencies, f"{c.name} may change before the migrations ran"
        assert c.urn in after.dependencies, f"the after hook does not wait for {c.name}"
    assert before.plain["connection"]["host"] == run.exports["servers"]["app1"], "hooks run on the first server"
    assert "doctrine:migrations:migrate" in before.plain["create"] and "ghcr.io/example/histologe:1.0" in before.plain["create"]
    assert "stdin" in before.secret_paths(), "the environment (database password) is not a secret"
    for secret in run.secret_values:
        assert secret not in before.plain["create"], "a secret is on the hook's command line"
    assert "triggers" in after.plain and "triggers" not in before.plain
    # Other apps beside it are not gated by its hooks.
    worker = next(r for r in run.of_type("docker:index/container:Container") if r.name.endswith("-worker"))
    assert before.urn not in worker.dependencies


def test_hooks_run_in_order_and_the_env_file_is_what_the_app_gets():
    v = with_hooks(OC_PIZZA, "shop", before=[MIGRATE, ["python", "manage.py", "check", "--deploy"]], after=[STATIC])
    run = run_values(v)
    hooks = commands(run)
    assert hooks["shop-hooks-before-0"].urn in hooks["shop-hooks-before-1"].dependencies, "before hooks not in order"
    env = hooks["shop-hooks-before-0"].plain["stdin"]
    lines = dict(line.split("=", 1) for line in env.splitlines())
    assert lines["DJANGO_SETTINGS_MODULE"] == "ocpizza.settings.production"
    assert lines["SECRET_KEY"] in run.secret_values and lines["DATABASE_URL"].startswith("postgresql://"), lines


def test_dev_runs_hooks_on_the_local_engine():
    v = stack_values("dev")
    app = next(a for a, spec in v["apps"].items() if spec.get("hostname"))
    v["apps"][app]["hooks"] = {"before": [["true"]]}
    run = run_values(v, stack="dev")
    hooks = commands(run, "command:local:Command")
    assert list(hooks) == [f"{app}-hooks-before-0"], hooks
    assert not commands(run)


def test_no_hooks_no_commands():
    v = copy.deepcopy(OC_PIZZA)
    v["apps"]["shop"].pop("hooks")
    assert not commands(run_values(v))


@pytest.mark.parametrize("hooks,says", [
    ({"before": [[]]}, "socle:apps.shop.hooks.before.0"),
    ({"before": "python manage.py migrate"}, "socle:apps.shop.hooks.before"),
    ({"after": [[""]]}, "socle:apps.shop.hooks.after.0.0"),
    ({"timeoutMinutes": 0}, "socle:apps.shop.hooks.timeoutMinutes"),
])
def test_bad_hooks_are_named(hooks, says):
    with pytest.raises(ConfigError) as exc:
        load(with_hooks(OC_PIZZA, "shop", **hooks), frozenset())
    assert says in str(exc.value), str(exc.value)


# ------------------------------------------------------------------------- the rendered script

def _script(**kw) -> str:
    return render_hook(name="socle-prod-shop-hook-before-0", image="ghcr.io/example/ocpizza:1.0",
                       network="socle-prod-web-net", command=kw.pop("command", MIGRATE), **kw)


def test_shellcheck_accepts_the_hook_script(tmp_path):
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\n" + _script(user="1000:1000", volumes={"socle-prod-shop-static": "/app/static"},
                                               command=["sh", "-c", "echo 'it''s $HOME'; exit 0"]))
    res = subprocess.run([require("shellcheck"), "-s", "sh", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture
def fake_docker(tmp_path):
    """A `docker` that records its arguments and stdin, and exits with $FAKE_DOCKER_STATUS."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text('#!/bin/sh\nif [ "$1" = rm ]; then exit 1; fi\n'
                    'printf "%s\\n" "$@" > "$FAKE_DOCKER_LOG"\ncat > "$FAKE_DOCKER_LOG.stdin"\n'
                    'exit "${FAKE_DOCKER_STATUS:-0}"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return bin_dir, tmp_path / "docker.log"


def _run(script: str, fake_docker, status: int, env_text: str) -> subprocess.CompletedProcess:
    bin_dir, log = fake_docker
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_DOCKER_LOG": str(log),
           "FAKE_DOCKER_STATUS": str(status)}
    return subprocess.run(["/bin/sh", "-c", script], input=env_text, capture_output=True, text=True, env=env)


def test_the_hook_passes_argv_and_env_as_they_are_and_fails_with_the_command(fake_docker):
    env_text = render_env_file({"SECRET_KEY": "a b'c\"d$e`f", "DATABASE_URL": "postgresql://u:p@h/db?sslmode=require"})
    tricky = ["sh", "-c", "echo \"$SECRET_KEY\" > /dev/null; exit 0", "--", "$(reboot)", "a b"]
    res = _run(_script(command=tricky), fake_docker, 0, env_text)
    assert res.returncode == 0, res.stderr
    _, log = fake_docker
    argv = log.read_text().splitlines()
    assert argv[:argv.index("ghcr.io/example/ocpizza:1.0")] == [
        "run", "--rm", "--name", "socle-prod-shop-hook-before-0", "--network", "socle-prod-web-net",
        "--env-file", "/dev/stdin"], argv
    assert argv[argv.index("ghcr.io/example/ocpizza:1.0") + 1:] == tricky, "the command was not passed word for word"
    assert (log.parent / "docker.log.stdin").read_text() == env_text
    failing = _run(_script(), fake_docker, 3, env_text)
    assert failing.returncode == 3, "a failing hook must fail the deployment with its status"


def test_an_env_value_with_a_newline_cannot_reach_the_env_file():
    with pytest.raises(ValueError, match="SECRET_KEY: a value with a newline"):
        render_env_file({"SECRET_KEY": "one\nDEBUG=1"})
