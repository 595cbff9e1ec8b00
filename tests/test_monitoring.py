"""socle:monitoring in the graph and on a host: node_exporter on every server, reached from the
private network only; the monitoring server's bundle scraping every server and probing every
public hostname, its secrets kept secret; the bundle applied by the real host setup program, each
file checked by its own tool and rolled back when refused. The rules themselves are judged by
promtool in tests/test_monitoring_rules.py; the whole chain runs on 127.0.0.1 in
tests/test_monitoring_live.py."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from components.render import monitoring as mon
from tests.conftest import ROOT, errors_of, run_values, stack_values

T_SG = "ovh:index/cloudSecurityGroup:CloudSecurityGroup"
MONITORING = {"server": "backup", "latencyMs": 400, "availabilityPercent": 99.95,
              "email": {"to": ["ops@example.org"], "from": "alerts@example.org", "smarthost": "smtp.example.net:587",
                        "password": {"config": "smtpPassword"}},
              "webhookUrl": {"config": "chatHook"}, "heartbeatUrl": {"config": "deadman"}}
SECRETS = {"smtpPassword": "smtp-pw-7f3a", "chatHook": "https://chat.example.org/hooks/tok-91c2",
           "deadman": "https://hc-ping.com/5d1e"}


def with_monitoring(stack: str = "prod", **change) -> dict:
    v = stack_values(stack)
    v["monitoring"] = {**copy.deepcopy(MONITORING), **change}
    v["secrets"] = {**v.get("secrets", {}), **SECRETS}
    return v


@pytest.fixture(scope="module")
def run():
    return run_values(with_monitoring(), stack="prod", secret_keys=("secrets",))


def _bundle(run, name: str) -> dict:
    r = next(r for r in run.resources if r.name == name)
    return json.loads(r.plain["stdin"])["bundle"]


def _monitoring_files(run) -> dict[str, str]:
    return {p: f["content"] for p, f in _bundle(run, "monitoring-setup")["files"].items()}


def test_every_server_runs_node_exporter_reached_from_the_private_network_only(run):
    cidr = stack_values("prod").get("network", {}).get("cidr", "10.42.0.0/16")
    servers = sorted(stack_values("prod")["servers"])
    for name in servers:
        b = _bundle(run, f"{name}-host-setup")
        assert "prometheus-node-exporter" in b["packages"] and "prometheus-node-exporter" in b["enable"], name
        sg = next(r for r in run.of_type(T_SG) if r.name == f"{name}-sg")
        sources = {x["remoteIpPrefix"] for x in sg.plain["rules"] if int(x["portRangeMin"]) == mon.NODE_PORT}
        assert sources == {cidr}, f"{name}: 9100 open to {sources}"
        firewall = b["files"]["/etc/socle/firewall.nft"]["content"]
        assert f"ip saddr {cidr} tcp dport {{ {mon.NODE_PORT} }} accept" in firewall.replace("{ 9100 }", "{ 9100 }"), \
            f"{name}: the host firewall does not let the private network reach node_exporter:\n{firewall}"


def test_the_monitoring_server_scrapes_every_server_and_probes_every_hostname(run):
    files = _monitoring_files(run)
    prom = json.loads(files[mon.PROMETHEUS_CONFIG])
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    scraped = {c["labels"]["server"] for c in jobs["node"]["static_configs"]}
    assert scraped == set(stack_values("prod")["servers"]), scraped
    apps = stack_values("prod")["apps"]
    hostnames = {a["hostname"] for a in apps.values() if a.get("hostname")}
    probed = {t.split("/")[2] for c in jobs["https"]["static_configs"] for t in c["targets"]}
    assert probed == hostnames, f"probed {probed}, served {hostnames}"
    rules = json.loads(files[mon.RULES])
    never = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "BackupNeverReported"]
    run_backups = sorted(r.name.removesuffix("-backup-install") for r in run.resources if r.name.endswith("-backup-install"))
    assert sorted(r["expr"].split('server="')[1].split('"')[0] for r in never) == run_backups


def test_thresholds_come_from_the_config(run):
    rules = json.loads(_monitoring_files(run)[mon.RULES])
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert exprs["EndpointSlow"].endswith("> 0.4"), exprs["EndpointSlow"]
    assert "> 0.0072" in exprs["AvailabilityBudgetBurningFast"], exprs["AvailabilityBudgetBurningFast"]  # 14.4 x 0.05 %


def test_alert_secrets_travel_only_in_the_secret_stdin(run):
    setup = next(r for r in run.resources if r.name == "monitoring-setup")
    assert "stdin" in setup.secret_paths()
    am = _monitoring_files(run)[mon.ALERTMANAGER_CONFIG]
    for value in SECRETS.values():
        assert value in am, f"{value} is not in Alertmanager's config"
    for r in run.resources:
        if r is setup:
            continue
        plain = json.dumps(r.plain)
        for value in SECRETS.values():
            assert value not in plain or any(value in json.dumps(r.plain.get(p.split("[")[0].split(".")[0]))
                                             for p in r.secret_paths()), f"{r.name} holds {value} in the clear"
    spec = _bundle(run, "monitoring-setup")["files"][mon.ALERTMANAGER_CONFIG]
    assert (spec["mode"], spec["owner"]) == ("0640", "root:prometheus")


def test_without_monitoring_no_server_changes():
    run = run_values(stack_values("prod"), stack="prod")
    assert not [r for r in run.resources if r.name == "monitoring-setup"]
    for r in run.resources:
        if r.name.endswith("-host-setup"):
            assert "prometheus-node-exporter" not in json.loads(r.plain["stdin"])["bundle"]["packages"], r.name


@pytest.mark.parametrize("change,says", [
    (lambda v: v["monitoring"].update(server="nowhere"), "socle:monitoring.server: unknown server 'nowhere'"),
    (lambda v: [v["monitoring"].pop("email"), v["monitoring"].pop("webhookUrl")], "alerts need somewhere to go"),
    (lambda v: v["secrets"].pop("smtpPassword"), "socle:monitoring.email.password.config: 'smtpPassword' is not set"),
    (lambda v: v["monitoring"].update(disk={"warningPercent": 90, "criticalPercent": 85}),
     "socle:monitoring.disk.warningPercent: 90 is not below criticalPercent 85"),
    (lambda v: v["monitoring"].update(latencyMs=5), "socle:monitoring.latencyMs"),
    (lambda v: v["monitoring"]["email"].update(smarthost="smtp.example.net"), "socle:monitoring.email.smarthost"),
    (lambda v: v["secrets"].update(chatHook="http://chat.example.org/tok-SECRET"),
     "socle:monitoring.webhookUrl.config: the value stored in socle:secrets is not an https:// URL"),
    (lambda v: v["secrets"].update(smtpPassword="line1\nline2-SECRET"),
     "socle:monitoring.email.password.config: the SMTP password stored in socle:secrets holds a line break"),
    (lambda v: v["monitoring"].update(upgradeReports="weekly"), "socle:monitoring.upgradeReports"),
])
def test_impossible_monitoring_settings_are_config_errors(change, says):
    v = with_monitoring()
    change(v)
    msg = errors_of(v, frozenset({"secrets"}))
    assert says in msg and "SECRET" not in msg, msg


# ---------------------------------------------------------------------------- the host setup program


def _apply(tmp_path, bundle: str):
    path = tmp_path / "bundle.json"
    path.write_text(bundle)
    return subprocess.run([sys.executable, str(ROOT / "host" / "socle_host_setup.py"), "--bundle", str(path),
                           "--root", str(tmp_path / "root")], capture_output=True, text=True, timeout=120)


def _monitoring_bundle(rules: str | None = None) -> str:
    w = mon.Watched(nodes={"web": "10.42.0.5:9100"}, endpoints={"https://cloud.example.org/": "nextcloud"},
                    backed_up=("web",))
    return mon.monitoring_bundle(
        prometheus=mon.render_prometheus(w, stack="prod", retention_days=30),
        rules=rules if rules is not None else mon.render_rules(mon.Thresholds(), w),
        alertmanager=mon.render_alertmanager(mon.Receivers(webhook_url="https://chat.example.org/hooks/x")),
        blackbox=mon.render_blackbox(), retention_days=30)


def test_the_host_setup_program_writes_checks_and_keeps_the_monitoring_files(tmp_path):
    for tool in ("promtool", "amtool", "prometheus-blackbox-exporter"):
        __import__("tests.tools", fromlist=["require"]).require(tool, "prometheus")
    res = _apply(tmp_path, _monitoring_bundle())
    assert res.returncode == 0, res.stdout + res.stderr
    root = tmp_path / "root"
    am = root / mon.ALERTMANAGER_CONFIG.lstrip("/")
    assert oct(am.stat().st_mode & 0o777) == "0o640"
    assert "--storage.tsdb.retention.time=30d" in (root / "etc/default/prometheus").read_text()
    again = _apply(tmp_path, _monitoring_bundle())
    assert again.returncode == 0 and "already up to date" in again.stdout, again.stdout


def test_rules_that_promtool_refuses_are_rolled_back(tmp_path):
    assert _apply(tmp_path, _monitoring_bundle()).returncode == 0
    rules = tmp_path / "root" / mon.RULES.lstrip("/")
    before = rules.read_text()
    broken = json.dumps({"groups": [{"name": "x", "rules": [{"alert": "Broken", "expr": "up ==== 0"}]}]})
    res = _apply(tmp_path, _monitoring_bundle(rules=broken))
    assert res.returncode == 1 and "promtool check rules" in res.stderr and "back as they were" in res.stderr, res.stderr
    assert rules.read_text() == before, "a refused rules file must not stay in place"


def test_a_refused_file_takes_back_the_whole_run_its_service_flags_included(tmp_path):
    """The retention (in /etc/default/prometheus) and the rules change together and promtool refuses
    the rules: the flags file goes back too. Left changed, the next run would find it up to date
    and never restart Prometheus with it."""
    assert _apply(tmp_path, _monitoring_bundle()).returncode == 0
    flags = tmp_path / "root" / "etc/default/prometheus"
    before = flags.read_text()
    bundle = json.loads(_monitoring_bundle(rules=json.dumps({"groups": [{"name": "x", "rules": [
        {"alert": "Broken", "expr": "up ==== 0"}]}]})))
    bundle["files"]["/etc/default/prometheus"]["content"] = mon.prometheus_args(90)
    bundle["files"]["/etc/socle-new-file"] = {"mode": "0644", "content": "new\n"}
    res = _apply(tmp_path, json.dumps(bundle))
    assert res.returncode == 1 and "back as they were" in res.stderr, res.stderr
    assert flags.read_text() == before, "the flags file stayed changed: its restart would never come"
    assert not (tmp_path / "root" / "etc/socle-new-file").exists(), "a file new in the refused run stayed"


def test_the_bundles_name_a_readiness_url_for_each_service_they_start():
    mon_bundle = json.loads(_monitoring_bundle())
    assert set(mon_bundle["ready"]) == set(mon_bundle["restart"]), mon_bundle["ready"]
    node = mon.node_exporter_part("app")
    assert set(node["ready"]) == set(node["restart"]), node["ready"]


def test_wait_ready_waits_for_a_200_and_names_the_unit_when_none_comes(tmp_path):
    import http.server
    import threading

    sys.path.insert(0, str(ROOT / "host"))
    try:
        import socle_host_setup as setup
    finally:
        sys.path.pop(0)
    answers = [503, 503, 200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(answers.pop(0) if len(answers) > 1 else answers[0])
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        setup.wait_ready("prometheus", f"http://127.0.0.1:{server.server_port}/-/ready", seconds=10, pause=0.1)
        assert answers == [200], "ready before the 200"
        answers[:] = [503]
        with pytest.raises(setup.SetupError) as err:
            setup.wait_ready("prometheus", f"http://127.0.0.1:{server.server_port}/-/ready", seconds=0.5, pause=0.1)
        assert "prometheus is not ready" in str(err.value) and "HTTP 503" in str(err.value), str(err.value)
    finally:
        server.shutdown()
    with pytest.raises(setup.SetupError) as err:
        setup.wait_ready("prometheus-alertmanager", f"http://127.0.0.1:{server.server_port}/-/ready", seconds=0.3, pause=0.1)
    assert "journalctl -u prometheus-alertmanager" in str(err.value), str(err.value)


# ---------------------------------------------------------------------------- the backup runner's metrics


def test_the_backup_runner_reports_what_the_alerts_read(tmp_path):
    """A passing run, then a failing one: the status drops to 0 and the last success stays where it
    was (so the backup's age keeps growing); promtool lints the file node_exporter reads."""
    sys.path.insert(0, str(ROOT / "backup"))
    try:
        import socle_backup
    finally:
        sys.path.remove(str(ROOT / "backup"))
    path = socle_backup.write_metrics("run", True, 12.5, now=1_700_000_000, directory=tmp_path)
    socle_backup.write_metrics("drill", True, 40, now=1_700_000_100, directory=tmp_path)
    socle_backup.write_metrics("run", False, 3, now=1_700_086_400, directory=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["socle_backup_drill.prom", "socle_backup_run.prom"], \
        "one file per task (the tasks may overlap), and no temporary file left"
    text = "".join(p.read_text() for p in sorted(tmp_path.iterdir()))
    assert 'socle_backup_last_status{task="run"} 0' in text and 'socle_backup_last_status{task="drill"} 1' in text, text
    assert 'socle_backup_last_success_timestamp_seconds{task="run"} 1700000000\n' in text, text
    assert socle_backup.write_metrics("prune", True, 1, directory=tmp_path) is None, "prune is not a watched task"
    assert socle_backup.write_metrics("run", True, 1, directory=tmp_path / "absent") is None
    from tests.tools import require

    for one in sorted(tmp_path.iterdir()):
        lint = subprocess.run([require("promtool", "prometheus"), "check", "metrics"], input=one.read_text(),
                              capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    # The names and labels the rules read (render/monitoring.py).
    rules = mon.render_rules(mon.Thresholds(), mon.Watched(nodes={}))
    for metric in ("socle_backup_last_status", "socle_backup_last_success_timestamp_seconds"):
        assert metric in rules and metric in text


# ---------------------------------------------------------------------------- the container census


def test_the_container_census_reports_restarts_and_health_as_the_rules_read_them(tmp_path):
    """Run against a stand-in `docker` that answers as Docker does (`docker inspect`'s JSON): a
    healthy container, an unhealthy one that restarted, one without a healthcheck, and a quote in
    a name; promtool lints the output, systemd-analyze the units."""
    from tests.tools import require

    part = mon.node_exporter_part("app")
    script = tmp_path / "census"
    script.write_text(part["files"][mon.CENSUS_SCRIPT]["content"])
    script.chmod(0o755)
    inspect = [
        {"Name": "/socle-prod-main", "RestartCount": 0, "State": {"Running": True, "Health": {"Status": "healthy"}}},
        {"Name": "/socle-prod-web", "RestartCount": 7, "State": {"Running": False, "Health": {"Status": "unhealthy"}}},
        {"Name": '/odd"name', "RestartCount": 1, "State": {"Running": True}},
    ]
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\nif [ \"$1\" = ps ]; then echo a; echo b; echo c; else cat " + str(tmp_path / "inspect.json") + "; fi\n")
    docker.chmod(0o755)
    (tmp_path / "inspect.json").write_text(json.dumps(inspect))
    out = tmp_path / "socle_containers.prom"
    res = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True,
                         env={"SOCLE_DOCKER": str(docker), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert 'socle_container_restarts_total{container="socle-prod-web"} 7' in text
    assert 'socle_container_healthy{container="socle-prod-web"} 0' in text
    assert 'socle_container_healthy{container="socle-prod-main"} 1' in text
    assert 'socle_container_healthy{container="odd\\"name"}' not in text, "no healthcheck, no health metric"
    lint = subprocess.run([require("promtool", "prometheus"), "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr + text
    units = tmp_path / "units"
    units.mkdir()
    for path, spec in part["files"].items():
        if path.startswith("/etc/systemd/system/"):
            (units / path.rsplit("/", 1)[1]).write_text(spec["content"].replace(mon.CENSUS_SCRIPT, str(script)))
    verify = subprocess.run([require("systemd-analyze", "systemd"), "verify", *map(str, sorted(units.iterdir()))],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def test_a_webhook_secret_that_is_not_an_https_url_is_refused_without_showing_it():
    for bad in ("https://chat.example.org/hooks/tok-SECRET%zz", "http://chat.example.org/tok-SECRET", "tok-SECRET"):
        with pytest.raises(mon.ReceiverError) as err:
            mon.render_alertmanager(mon.Receivers(webhook_url=bad))
        assert "tok-SECRET" not in str(err.value) and "socle:monitoring.webhookUrl" in str(err.value), str(err.value)


def test_an_alertmanager_config_amtool_refuses_is_rolled_back_without_quoting_it(tmp_path):
    assert _apply(tmp_path, _monitoring_bundle()).returncode == 0
    bundle = json.loads(_monitoring_bundle())
    bundle["files"][mon.ALERTMANAGER_CONFIG]["content"] = json.dumps(
        {"route": {"receiver": "nobody"}, "receivers": [{"name": "ops", "slack_configs": [{"api_url": "https://x/tok-SECRET"}]}]})
    res = _apply(tmp_path, json.dumps(bundle))
    assert res.returncode == 1 and "amtool check-config" in res.stderr and "back as they were" in res.stderr, res.stderr
    assert "tok-SECRET" not in res.stderr + res.stdout, "a refused secret file's check output was shown"


@pytest.mark.parametrize("role", ["app", "backup"])
def test_a_server_no_longer_watched_stops_what_monitoring_started(role):
    from components.render.host_setup import render_host_bundle

    def bundle(watched: bool) -> dict:
        return json.loads(render_host_bundle(role=role, deploy_user="deploy", admin_keys=["ssh-ed25519 AAAA k"],
                                             ssh_port=4660, node_exporter=watched))

    on, off = bundle(True), bundle(False)
    assert "prometheus-node-exporter" in on["enable"] and on["ready"] and not on.get("disable"), on.get("disable")
    assert off.get("disable") == {"units": mon.NODE_UNITS, "if": mon.WATCHED_MARKER}, off.get("disable")
    assert not set(off["enable"]) & set(mon.NODE_UNITS), off["enable"]
    assert mon.WATCHED_MARKER in on["files"] and mon.WATCHED_MARKER in off["absent"], "no marker of what socle started"
    started = {u for u in on["enable"] if u not in bundle(False)["enable"]}
    assert started <= set(mon.NODE_UNITS), f"monitoring starts {sorted(started)} but only {mon.NODE_UNITS} are stopped"



def test_every_server_mails_its_upgrade_reports_with_the_password_in_a_secret_root_only_file(run):
    for name in sorted(stack_values("prod")["servers"]):
        setup = next(r for r in run.resources if r.name == f"{name}-host-setup")
        assert "stdin" in setup.secret_paths(), f"{name}: the SMTP password travels in the clear"
        b = _bundle(run, f"{name}-host-setup")
        assert {"msmtp", "msmtp-mta"} <= set(b["packages"]) and not b["absent"], name
        secret = b["files"][mon.SMTP_PASSWORD]
        assert (secret["content"], secret["mode"], secret.get("secret")) == (SECRETS["smtpPassword"], "0600", True), name
        assert SECRETS["smtpPassword"] not in b["files"][mon.MSMTPRC]["content"]
        assert 'Unattended-Upgrade::Mail "ops@example.org"' in b["files"][mon.UPGRADE_MAIL_CONF]["content"]


@pytest.mark.parametrize("change", [{"upgradeReports": "off"}, {"email": None}])
def test_without_upgrade_reports_the_login_is_removed_from_every_server(change):
    v = with_monitoring(**change)
    if change.get("email", 1) is None:
        v["monitoring"].pop("email")
    run = run_values(v, stack="prod", secret_keys=("secrets",))
    for name in sorted(stack_values("prod")["servers"]):
        b = _bundle(run, f"{name}-host-setup")
        assert set(mon.UPGRADE_MAIL_FILES) <= set(b["absent"]) and not set(b["files"]) & set(mon.UPGRADE_MAIL_FILES), name
        assert SECRETS["smtpPassword"] not in json.dumps(b), name


def test_the_host_setup_program_removes_what_is_no_longer_wanted(tmp_path):
    root = tmp_path / "root"
    (root / "etc/socle").mkdir(parents=True)
    (root / "etc/socle/smtp-password").write_text("old-login")
    bundle = json.dumps({"files": {}, "absent": mon.UPGRADE_MAIL_FILES})
    res = _apply(tmp_path, bundle)
    assert res.returncode == 0 and "removed /etc/socle/smtp-password" in res.stdout, res.stdout + res.stderr
    assert not (root / "etc/socle/smtp-password").exists()
    again = _apply(tmp_path, bundle)
    assert again.returncode == 0 and "already up to date" in again.stdout, again.stdout
