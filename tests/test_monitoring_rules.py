"""socle:monitoring's rendered files, judged by the tools that read them: `promtool check config`,
`promtool check rules`, `amtool check-config`, the blackbox exporter's `--config.check`, and
`promtool test rules` unit tests for every alert: it fires when it should and stays silent when it
should not, at the thresholds of the stack under test (Histologe's 400 ms and 99.95 % here; the
cases are computed from the thresholds, not written for one value)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from components.render.monitoring import (
    Receivers,
    Thresholds,
    Watched,
    render_alertmanager,
    render_blackbox,
    render_prometheus,
    render_rules,
)
from tests.tools import require

T = Thresholds(latency_ms=400, availability_percent=99.95, disk_warning_percent=80, disk_critical_percent=90,
               disk_full_in_hours=24, backup_max_age_hours=36)
WATCHED = Watched(nodes={"web": "10.42.0.5:9100", "backup": "10.42.0.6:9100"},
                  endpoints={"https://cloud.example.org/status.php": "nextcloud"}, backed_up=("web",))
RECEIVERS = Receivers(emails=("ops@example.org",), email_from="alerts@example.org", smarthost="smtp.example.net:587",
                      smtp_password="not-a-real-one", webhook_url="https://chat.example.org/hooks/abc",
                      heartbeat_url="https://hc-ping.com/0b8e1c34")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("monitoring")
    out = {"rules": d / "rules.yml", "prometheus": d / "prometheus.yml", "alertmanager": d / "alertmanager.yml",
           "blackbox": d / "blackbox.yml"}
    out["rules"].write_text(render_rules(T, WATCHED))
    out["prometheus"].write_text(render_prometheus(WATCHED, stack="prod", retention_days=30)
                                 .replace("/etc/prometheus/socle-alerts.yml", str(out["rules"])))
    out["alertmanager"].write_text(render_alertmanager(RECEIVERS))
    out["blackbox"].write_text(render_blackbox())
    return out


def _ok(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)} refused it:\n{res.stdout}{res.stderr}"
    return res.stdout + res.stderr


def test_promtool_accepts_the_prometheus_config_and_the_rules(files):
    promtool = require("promtool", "prometheus")
    _ok([promtool, "check", "config", str(files["prometheus"])])
    out = _ok([promtool, "check", "rules", str(files["rules"])])
    assert "SUCCESS" in out, out


def test_amtool_accepts_the_alertmanager_config(files):
    out = _ok([require("amtool", "prometheus-alertmanager"), "check-config", str(files["alertmanager"])])
    assert "2 receivers" in out, out


def test_the_blackbox_exporter_accepts_its_config(files):
    _ok([require("prometheus-blackbox-exporter", "prometheus-blackbox-exporter"),
         f"--config.file={files['blackbox']}", "--config.check"])


def test_every_alert_has_a_case_below():
    rules = json.loads(render_rules(T, WATCHED))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == set(CASES), f"alerts without a test: {sorted(alerts - set(CASES))}; cases without an alert: " \
                                 f"{sorted(set(CASES) - alerts)}"


H = 3600
MAX_AGE = T.backup_max_age_hours
BUDGET = 1 - T.availability_percent / 100
SIZE = 1000


def _disk(used_percent: float) -> list[dict]:
    avail = SIZE * (100 - used_percent) / 100
    labels = 'server="web",mountpoint="/",fstype="ext4"'
    return [{"series": f"node_filesystem_size_bytes{{{labels}}}", "values": f"{SIZE}x60"},
            {"series": f"node_filesystem_avail_bytes{{{labels}}}", "values": f"{avail:g}x60"}]


# alert -> (interval, [(why, input series, eval time, fires with these labels or None)])
CASES: dict[str, tuple[str, list]] = {
    "HostDown": ("1m", [
        ("down for 10 minutes", [{"series": 'up{job="node",server="web"}', "values": "0x10"}], "5m", {"server": "web"}),
        ("down for 2 minutes only", [{"series": 'up{job="node",server="web"}', "values": "0 0 1x10"}], "4m", None),
        ("up", [{"series": 'up{job="node",server="web"}', "values": "1x10"}], "5m", None)]),
    "DiskSpaceWarning": ("1m", [
        (f"{T.disk_warning_percent + 1}% used", _disk(T.disk_warning_percent + 1), "15m", {"mountpoint": "/"}),
        (f"{T.disk_warning_percent - 1}% used", _disk(T.disk_warning_percent - 1), "15m", None)]),
    "DiskSpaceCritical": ("1m", [
        (f"{T.disk_critical_percent + 1}% used", _disk(T.disk_critical_percent + 1), "10m", {"mountpoint": "/"}),
        (f"{T.disk_critical_percent - 1}% used", _disk(T.disk_critical_percent - 1), "10m", None)]),
    "DiskFillsUp": ("10m", [
        ("60 % used and filling at the rate that ends within the horizon",
         [{"series": 'node_filesystem_size_bytes{server="web",mountpoint="/",fstype="ext4"}', "values": f"{SIZE}x60"},
          {"series": 'node_filesystem_avail_bytes{server="web",mountpoint="/",fstype="ext4"}',
           # loses the last 40 % in half the horizon
           "values": f"400-{400 / (T.disk_full_in_hours * 6 / 2):g}x60"}], "8h", {"mountpoint": "/"}),
        ("60 % used, steady", _disk(60), "8h", None)]),
    "RebootRequired": ("1h", [
        ("four days", [{"series": 'node_reboot_required{server="web"}', "values": "1x100"}], "80h", {"server": "web"}),
        ("two days", [{"series": 'node_reboot_required{server="web"}', "values": "1x100"}], "48h", None)]),
    "UpgradesPending": ("1h", [
        ("security updates for four days",
         [{"series": 'apt_upgrades_pending{server="web",origin="Debian:bookworm-security/stable-security",arch="amd64"}',
           "values": "3x100"}], "80h", {"server": "web"}),
        ("other updates wait for the point release",
         [{"series": 'apt_upgrades_pending{server="web",origin="Debian:bookworm-updates/stable-updates",arch="amd64"}',
           "values": "3x100"}], "80h", None)]),
    "EndpointDown": ("1m", [
        ("failing for 10 minutes", [{"series": 'probe_success{job="https",instance="https://a.example.org/"}',
                                     "values": "0x10"}], "5m", {"instance": "https://a.example.org/"}),
        ("answering", [{"series": 'probe_success{job="https",instance="https://a.example.org/"}', "values": "1x10"}],
         "5m", None)]),
    "EndpointSlow": ("1m", [
        (f"{T.latency_ms * 1.5:g} ms", [{"series": 'probe_duration_seconds{job="https",instance="https://a.example.org/"}',
                                         "values": f"{T.latency_ms * 1.5 / 1000:g}x40"}], "30m",
         {"instance": "https://a.example.org/"}),
        (f"{T.latency_ms / 2:g} ms", [{"series": 'probe_duration_seconds{job="https",instance="https://a.example.org/"}',
                                       "values": f"{T.latency_ms / 2000:g}x40"}], "30m", None)]),
    "CertificateExpiresSoon": ("1h", [
        ("10 days left", [{"series": 'probe_ssl_earliest_cert_expiry{job="https",instance="https://a.example.org/"}',
                           "values": f"{10 * 86400 + 3 * H}x5"}], "2h", {"instance": "https://a.example.org/"}),
        ("30 days left", [{"series": 'probe_ssl_earliest_cert_expiry{job="https",instance="https://a.example.org/"}',
                           "values": f"{30 * 86400}x5"}], "2h", None)]),
    "AvailabilityBudgetBurningFast": ("1m", [
        ("every probe failing for 2 hours", [{"series": 'probe_success{job="https",instance="https://a.example.org/"}',
                                              "values": "0x130"}], "70m", {"instance": "https://a.example.org/"}),
        ("every probe passing", [{"series": 'probe_success{job="https",instance="https://a.example.org/"}',
                                  "values": "1x130"}], "70m", None),
        # One failed probe in an hour is over 14.4 x a 99.95 % budget: a blip, not a page.
        ("one failed probe", [{"series": 'probe_success{job="https",instance="https://a.example.org/"}',
                               "values": "1x59 0 1x70"}], "70m", None)]),
    # At the recording rules' own interval: an alert reading a recorded series evaluated more
    # than 5 minutes before would find nothing (Prometheus's lookback).
    "AvailabilityBudgetBurningSlowly": ("1m", [
        # One probe in 20 failing for three hours: 5 %, far above the budget of each window.
        ("5 % failing for three hours", [{"series": 'probe_success{job="https",instance="https://a.example.org/"}',
                                          "values": " ".join(["0", "1x18"] * 12)}], "3h", {"instance": "https://a.example.org/"}),
        ("every probe passing", [{"series": 'probe_success{job="https",instance="https://a.example.org/"}',
                                  "values": "1x500"}], "3h", None)]),
    "BackupTooOld": ("1h", [
        (f"last success {MAX_AGE + 2} hours ago", [{"series": 'socle_backup_last_success_timestamp_seconds{server="web",task="run"}',
                                                  "values": "0x100"}], f"{MAX_AGE + 2}h", {"server": "web"}),
        (f"last success {MAX_AGE - 2} hours ago", [{"series": 'socle_backup_last_success_timestamp_seconds{server="web",task="run"}',
                                                  "values": f"{4 * H}x100"}], f"{MAX_AGE + 2}h", None)]),
    "BackupFailed": ("1m", [
        ("the last run failed", [{"series": 'socle_backup_last_status{server="web",task="run"}', "values": "0x5"}], "1m",
         {"server": "web"}),
        ("the last run passed", [{"series": 'socle_backup_last_status{server="web",task="run"}', "values": "1x5"}], "1m",
         None)]),
    "BackupCheckFailed": ("1m", [
        ("the last check failed", [{"series": 'socle_backup_last_status{server="web",task="check"}', "values": "0x5"}],
         "1m", {"server": "web"}),
        ("a failed run is not a failed check", [{"series": 'socle_backup_last_status{server="web",task="run"}',
                                                 "values": "0x5"}], "1m", None)]),
    "RestoreDrillFailed": ("1m", [
        ("the last drill failed", [{"series": 'socle_backup_last_status{server="web",task="drill"}', "values": "0x5"}],
         "1m", {"server": "web"}),
        ("the last drill passed", [{"series": 'socle_backup_last_status{server="web",task="drill"}', "values": "1x5"}],
         "1m", None)]),
    "BackupNeverReported": ("1h", [
        ("nothing from web", [{"series": 'up{job="node",server="web"}', "values": "1x100"}], f"{MAX_AGE + 2}h",
         {"server": "web"}),
        ("web reported", [{"series": 'socle_backup_last_success_timestamp_seconds{server="web",task="run"}',
                           "values": "1x100"}], f"{MAX_AGE + 2}h", None)]),
    "ContainerRestarting": ("1m", [
        ("a restart a minute", [{"series": 'socle_container_restarts_total{server="web",container="socle-prod-web"}',
                                 "values": "0+1x20"}], "16m", {"container": "socle-prod-web"}),
        ("no restart", [{"series": 'socle_container_restarts_total{server="web",container="socle-prod-web"}',
                         "values": "3x20"}], "16m", None)]),
    "ContainerUnhealthy": ("1m", [
        ("unhealthy for 10 minutes", [{"series": 'socle_container_healthy{server="web",container="socle-prod-main"}',
                                       "values": "0x10"}], "7m", {"container": "socle-prod-main"}),
        ("healthy", [{"series": 'socle_container_healthy{server="web",container="socle-prod-main"}', "values": "1x10"}],
         "7m", None)]),
    "DatabaseUnreachable": ("1m", [
        ("no answer for 5 minutes", [{"series": 'socle_database_up{server="web",database="socle-prod-main"}',
                                      "values": "1 1 0 0 0 0 0 0"}], "7m", {"database": "socle-prod-main"}),
        ("one missed minute", [{"series": 'socle_database_up{server="web",database="socle-prod-main"}',
                                "values": "1 1 0 1 1 1 1 1"}], "7m", None),
        ("answering", [{"series": 'socle_database_up{server="web",database="socle-prod-main"}', "values": "1x10"}],
         "7m", None)]),
    "Watchdog": ("1m", [("always", [], "1m", {})]),
    "MonitoringPartDown": ("1m", [
        ("the blackbox exporter stopped", [{"series": 'up{job="https",instance="https://a.example.org/"}', "values": "0x10"}],
         "7m", {"job": "https"}),
        ("answering", [{"series": 'up{job="https",instance="https://a.example.org/"}', "values": "1x10"}], "7m", None)]),
    "ContainerCensusStale": ("1m", [
        ("last written at 0", [{"series": 'node_textfile_mtime_seconds{server="web",file="/var/lib/prometheus/node-exporter/socle_containers.prom"}',
                                "values": "0x20"}], "15m", {"server": "web"}),
        ("written every minute", [{"series": 'node_textfile_mtime_seconds{server="web",file="/var/lib/prometheus/node-exporter/socle_containers.prom"}',
                                   "values": "0+60x20"}], "15m", None)]),
}


@pytest.mark.parametrize("alert", sorted(CASES))
def test_the_alert_fires_when_it_should_and_only_then(alert, files, tmp_path):
    interval, cases = CASES[alert]
    tests = []
    for why, series, at, labels in cases:
        keys = sorted(labels or {})
        by = ", ".join(["alertname", *keys])
        expected = [] if labels is None else [{"labels": "{" + ",".join([f'alertname="{alert}"'] + [
            f'{k}="{v}"' for k, v in sorted(labels.items())]) + "}", "value": 1}]
        tests.append({"name": why, "interval": interval, "input_series": series, "promql_expr_test": [{
            "expr": f'count by ({by}) (ALERTS{{alertstate="firing",alertname="{alert}"}})',
            "eval_time": at, "exp_samples": expected}]})
    spec = tmp_path / "test.yml"
    # Rules evaluated at the series' own interval: a sample at every evaluation, none gone stale.
    spec.write_text(json.dumps({"rule_files": [str(files["rules"])], "evaluation_interval": interval, "tests": tests}))
    res = subprocess.run([require("promtool", "prometheus"), "test", "rules", str(spec)], capture_output=True, text=True)
    assert res.returncode == 0, f"{alert}: {[c[0] for c in cases]}\n{res.stdout}{res.stderr}"
