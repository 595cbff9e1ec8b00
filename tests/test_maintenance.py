"""The maintenance switch: the whole platform (socle:maintenance) or one app
(apps.*.maintenance) answers 503 while its containers, databases and backups keep running, and
monitoring stops probing what is in maintenance on purpose; the one-command toggle
(python -m tools.maintenance) sets the config with the Pulumi CLI and deploys, refuses unknown
names, and says what to run when the CLI is missing. Rule tests read whatever the stack files hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from components.render.caddyfile import MAINTENANCE_BODY
from tests.conftest import ROOT, run_values, stack_values
from tests.test_monitoring import MONITORING, SECRETS

T_CONTAINER = "docker:index/container:Container"


def _sites(run) -> dict[str, str]:
    """Every HTTPS site block of every proxy: hostname -> body."""
    out = {}
    for proxy in (r for r in run.of_type(T_CONTAINER) if r.name.endswith("-proxy")):
        text = proxy.plain["uploads"][0]["content"]
        for block in text.split("\n}\n"):
            head = block.strip().split("\n", 1)[0]
            if head.endswith("{") and not head.startswith(("http://", "(", "{")):
                out[head[:-1].strip()] = block
    return out


@pytest.mark.parametrize("stack", ["prod", "staging", "dev"])
def test_the_platform_switch_puts_every_hostname_in_maintenance_and_keeps_every_container(stack):
    values = stack_values(stack)
    before = run_values(values, stack=stack)
    after = run_values({**values, "maintenance": True}, stack=stack)
    sites = _sites(after)
    hostnames = {h for a in values["apps"].values() for h in ([a["hostname"]] if a.get("hostname") else [])}
    assert hostnames and hostnames <= set(sites), f"{stack}: routes {sorted(sites)}, hostnames {sorted(hostnames)}"
    for host in hostnames:
        assert MAINTENANCE_BODY in sites[host] and "503" in sites[host] and "reverse_proxy" not in sites[host], \
            f"{stack}: {host} is not in maintenance:\n{sites[host]}"
    names = lambda run: sorted(r.name for r in run.of_type(T_CONTAINER) if not r.name.endswith("-proxy"))  # noqa: E731
    assert names(after) == names(before), "maintenance must not stop or remove a container"
    assert not any(MAINTENANCE_BODY in body for body in _sites(before).values()), \
        f"{stack} is in maintenance without the switch"


def test_monitoring_does_not_probe_what_is_in_maintenance():
    values = stack_values("prod")
    values["monitoring"] = MONITORING
    values["secrets"] = {**values.get("secrets", {}), **SECRETS}
    app = sorted(n for n, a in values["apps"].items() if a.get("hostname"))[0]
    values["apps"][app]["maintenance"] = True
    run = run_values(values, stack="prod", secret_keys=("secrets",))
    bundle = json.loads(next(r for r in run.resources if r.name == "monitoring-setup").plain["stdin"])["bundle"]
    prom = json.loads(bundle["files"]["/etc/prometheus/prometheus.yml"]["content"])
    probed = {c["labels"]["app"] for j in prom["scrape_configs"] if j["job_name"] == "https" for c in j["static_configs"]}
    assert app not in probed and probed, f"probed: {probed}"


# ---------------------------------------------------------------------------- the toggle


def _toggle(tmp_path, *args, pulumi: str | None = None):
    env = {"PATH": "/usr/bin:/bin"}
    if pulumi is not None:
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        fake = bindir / "pulumi"
        fake.write_text("#!/bin/sh\necho \"$*\" >> " + str(tmp_path / "calls") + "\n" + pulumi + "\n")
        fake.chmod(0o755)
        env["PATH"] = f"{bindir}:{env['PATH']}"
    return subprocess.run([sys.executable, "-m", "tools.maintenance", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**env, "HOME": str(tmp_path)}, timeout=60)


def _an_app() -> str:
    return sorted(stack_values("prod")["apps"])[0]


def test_the_toggle_sets_the_config_then_deploys(tmp_path):
    res = _toggle(tmp_path, "on", "--stack", "prod", pulumi="exit 0")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "calls").read_text().splitlines() == [
        "config set socle:maintenance true --stack prod", "up --stack prod --yes"]
    app = _an_app()
    (tmp_path / "calls").unlink()
    res = _toggle(tmp_path, "off", "--app", app, "--stack", "prod", "--no-up", pulumi="exit 0")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "calls").read_text().splitlines() == [
        f"config set --path socle:apps.{app}.maintenance false --stack prod"]


def test_a_failing_config_set_stops_before_the_deployment(tmp_path):
    res = _toggle(tmp_path, "on", "--stack", "prod", pulumi="exit 7")
    assert res.returncode == 7 and len((tmp_path / "calls").read_text().splitlines()) == 1


def test_an_unknown_app_or_stack_is_exit_2_with_the_names_there_are(tmp_path):
    app = _an_app()
    res = _toggle(tmp_path, "on", "--app", app + "x", "--stack", "prod", pulumi="exit 0")
    assert res.returncode == 2 and f"socle:apps has no app '{app}x'" in res.stderr and f"did you mean '{app}'" in res.stderr, \
        res.stderr
    res = _toggle(tmp_path, "on", "--stack", "prd", pulumi="exit 0")
    assert res.returncode == 2 and "no stack file Pulumi.prd.yaml" in res.stderr, res.stderr
    assert not (tmp_path / "calls").exists(), "pulumi ran for a bad name"


def test_without_the_cli_it_says_what_to_run(tmp_path):
    res = _toggle(tmp_path, "on", "--stack", "prod")
    assert res.returncode == 3 and "pulumi config set socle:maintenance true --stack prod" in res.stderr, res.stderr
    assert os.environ.get("PATH") is not None


def test_a_load_balanced_app_keeps_its_health_path_up_in_maintenance():
    """Behind a load balancer, a 503 on the health path would take every member out of the pool."""
    import yaml

    from tools.harness import run_program, stack_config

    path = ROOT / "examples" / "caplibre-large" / "Pulumi.prod.yaml"
    cfg = yaml.safe_load(path.read_text())["config"]
    balanced = {n: a for n, a in cfg["socle:apps"].items() if len(a.get("servers") or []) > 1 and a.get("hostname")}
    assert balanced, "the Caplibre example has no load-balanced app"
    config, secret_keys = stack_config(path)
    config["socle:maintenance"] = "true"
    sites = _sites(run_program("prod", config=config, secret_keys=secret_keys))
    for name, app in balanced.items():
        body = sites[app["hostname"]]
        path = (app.get("healthPath") or "/").split("?")[0]
        assert f"handle {path} {{" in body and " 200" in body and " 503" in body, f"{name}:\n{body}"
