"""socle:monitoring, rendered: the configuration of Debian 12's own Prometheus (2.42),
Alertmanager (0.25) and blackbox exporter (0.23) on the monitoring server, and of node_exporter
(1.5) on every server. Pure: plain values in, file contents out. The tests check each file with
the tool that reads it (promtool check config / check rules / test rules, amtool check-config)
and run them together on 127.0.0.1 (tests/test_monitoring_live.py).

Debian's packages rather than containers: the backup server (a good monitoring server) runs no
Docker, the packages get Debian's security updates through unattended-upgrades like the rest of
the host, and the tests run the very binaries the servers run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .backup import MANIFEST_PATH as BACKUP_MANIFEST  # the census probes its managed databases

PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
RULES = "/etc/prometheus/socle-alerts.yml"
ALERTMANAGER_CONFIG = "/etc/prometheus/alertmanager.yml"
BLACKBOX_CONFIG = "/etc/prometheus/blackbox.yml"
# node_exporter's textfile collector: the backup runner and the container census write here.
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
NODE_PORT = 9100
# The monitoring server's own services listen on its loopback only: their pages are reached over
# SSH (`ssh -L 9090:127.0.0.1:9090 …`), never from the Internet or the private network.
PROMETHEUS_ADDRESS, ALERTMANAGER_ADDRESS, BLACKBOX_ADDRESS = "127.0.0.1:9090", "127.0.0.1:9093", "127.0.0.1:9115"
MONITOR_PACKAGES = ["prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter"]
# node_exporter and Debian's textfile collectors (apt_info: upgrades pending; reboot required).
NODE_PACKAGES = ["prometheus-node-exporter", "prometheus-node-exporter-collectors"]
# Filesystems that hold data: not the kernel's, Docker's overlays or its per-container mounts.
_FS = 'fstype!~"tmpfs|devtmpfs|overlay|squashfs|nsfs|fuse.*",mountpoint!~"/var/lib/docker/.+|/run.*|/boot.*"'


@dataclass(frozen=True)
class Thresholds:
    latency_ms: int = 400
    availability_percent: float = 99.9
    disk_warning_percent: int = 80
    disk_critical_percent: int = 90
    disk_full_in_hours: int = 24
    backup_max_age_hours: int = 36


@dataclass(frozen=True)
class Receivers:
    emails: tuple[str, ...] = ()
    email_from: str | None = None
    smarthost: str | None = None
    smtp_username: str | None = None
    smtp_password: str | None = None
    webhook_url: str | None = None
    heartbeat_url: str | None = None


@dataclass(frozen=True)
class Watched:
    """What the monitoring server watches: each server's node_exporter (name -> host:port), each
    public endpoint (URL -> app), the servers whose backups it expects."""
    nodes: dict[str, str]
    endpoints: dict[str, str] = field(default_factory=dict)
    backed_up: tuple[str, ...] = ()


def _yaml(doc) -> str:
    """YAML as JSON (a subset of YAML 1.2 that every tool here reads): no quoting surprises."""
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def render_prometheus(watched: Watched, *, stack: str, retention_days: int) -> str:
    del retention_days  # a command-line flag (prometheus_args), kept beside the config for callers
    scrape = [
        {"job_name": "node", "static_configs": [{"targets": [target], "labels": {"server": name}}
                                                for name, target in sorted(watched.nodes.items())]},
        {"job_name": "prometheus", "static_configs": [{"targets": [PROMETHEUS_ADDRESS]}]},
        {"job_name": "alertmanager", "static_configs": [{"targets": [ALERTMANAGER_ADDRESS]}]},
    ]
    if watched.endpoints:
        scrape.append({
            "job_name": "https", "metrics_path": "/probe", "params": {"module": ["https_2xx"]},
            "scrape_interval": "30s", "scrape_timeout": "15s",
            "static_configs": [{"targets": [url], "labels": {"app": app}} for url, app in sorted(watched.endpoints.items())],
            # The blackbox exporter probes the target; the series keep the URL as `instance`.
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": BLACKBOX_ADDRESS},
            ],
        })
    return _yaml({
        "global": {"scrape_interval": "30s", "evaluation_interval": "30s", "external_labels": {"stack": stack}},
        "rule_files": [RULES],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [ALERTMANAGER_ADDRESS]}]}]},
        "scrape_configs": scrape,
    })


def prometheus_args(retention_days: int) -> str:
    return (f'ARGS="--config.file={PROMETHEUS_CONFIG} --web.listen-address={PROMETHEUS_ADDRESS} '
            f'--storage.tsdb.retention.time={retention_days}d"\n')


def alertmanager_args() -> str:
    # No cluster: one Alertmanager, and no gossip port open on the host.
    return (f'ARGS="--config.file={ALERTMANAGER_CONFIG} --web.listen-address={ALERTMANAGER_ADDRESS} '
            '--cluster.listen-address="\n')


def blackbox_args() -> str:
    return f'ARGS="--config.file={BLACKBOX_CONFIG} --web.listen-address={BLACKBOX_ADDRESS}"\n'


def node_exporter_args() -> str:
    """Every address, port 9100: the security group and the host firewall let only the stack's
    private network reach it (components/server.py, render/firewall.py)."""
    return f'ARGS="--web.listen-address=:{NODE_PORT} --collector.textfile.directory={TEXTFILE_DIR}"\n'


def render_blackbox() -> str:
    return _yaml({"modules": {
        # HTTPS only, the certificate verified, redirects followed (a health path may redirect).
        "https_2xx": {"prober": "http", "timeout": "10s",
                      "http": {"method": "GET", "fail_if_not_ssl": True, "preferred_ip_protocol": "ip4",
                               "ip_protocol_fallback": False}},
        "tcp_connect": {"prober": "tcp", "timeout": "5s"},
    }})


def _alert(name: str, expr: str, hold: str, severity: str, summary: str, description: str) -> dict:
    rule = {"alert": name, "expr": expr}
    if hold != "0s":
        rule["for"] = hold
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule


# Multi-window, multi-burn-rate alerts (Google SRE workbook, "Alerting on SLOs", table 5-8): the
# share of the error budget a window burns, and the shorter window that confirms it still burns.
BURN_RATES = (("AvailabilityBudgetBurningFast", "critical", (("1h", "5m", 14.4), ("6h", "30m", 6.0))),
              ("AvailabilityBudgetBurningSlowly", "warning", (("1d", "2h", 3.0), ("3d", "6h", 1.0))))
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


def render_rules(t: Thresholds, watched: Watched) -> str:
    budget = round(1 - t.availability_percent / 100, 6)
    fs = _FS
    recording = [{"record": f"socle:probe_errors:ratio_{w}", "expr": f'1 - avg_over_time(probe_success{{job="https"}}[{w}])'}
                 for w in WINDOWS]
    burn = []
    for name, severity, pairs in BURN_RATES:
        # And at least three failed probes in the short window: at 30 s a probe, one failure in an
        # hour is already 14.4 times a 99.95 % budget, and a single blip must not page anyone.
        expr = " or ".join(f"(socle:probe_errors:ratio_{long} > {rate * budget:.6g} and "
                           f"socle:probe_errors:ratio_{short} > {rate * budget:.6g} and "
                           f'(count_over_time(probe_success{{job="https"}}[{short}]) - '
                           f'sum_over_time(probe_success{{job="https"}}[{short}])) >= 3)' for long, short, rate in pairs)
        burn.append(_alert(name, expr, "2m" if severity == "critical" else "15m", severity,
                           "{{ $labels.instance }} is using up its error budget",
                           f"At this rate of failed probes, {{{{ $labels.instance }}}} misses its {t.availability_percent}% "
                           "availability objective for the month."))
    hosts = [
        _alert("HostDown", 'up{job="node"} == 0', "3m", "critical", "Server {{ $labels.server }} does not answer",
               "The monitoring server has not reached {{ $labels.server }}'s node_exporter for 3 minutes: the server, "
               "its network or the exporter is down."),
        _alert("DiskSpaceWarning", f"100 * (1 - node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}}) "
                                   f"> {t.disk_warning_percent}", "10m", "warning",
               "{{ $labels.server }}: {{ $labels.mountpoint }} is {{ $value | humanize }}% full",
               f"Over {t.disk_warning_percent}% used."),
        _alert("DiskSpaceCritical", f"100 * (1 - node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}}) "
                                    f"> {t.disk_critical_percent}", "5m", "critical",
               "{{ $labels.server }}: {{ $labels.mountpoint }} is {{ $value | humanize }}% full",
               f"Over {t.disk_critical_percent}% used: databases and backups fail when it is full."),
        _alert("DiskFillsUp", f"predict_linear(node_filesystem_avail_bytes{{{fs}}}[6h], {t.disk_full_in_hours * 3600}) < 0 "
                              f"and node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}} < 0.5",
               "30m", "warning", "{{ $labels.server }}: {{ $labels.mountpoint }} fills up within "
                                 f"{t.disk_full_in_hours} hours",
               "At the rate of the last six hours."),
        _alert("RebootRequired", "node_reboot_required > 0", "72h", "warning",
               "{{ $labels.server }} waits for a reboot",
               "Security updates are installed but not running for three days: the nightly reboot window did not take them."),
        # Security updates only: unattended-upgrades installs those (render/cloudinit.py's
        # origins); the others wait for a point release, by design.
        _alert("UpgradesPending", 'sum by (server) (apt_upgrades_pending{origin=~".*-security.*"}) > 0', "72h", "warning",
               "{{ $labels.server }} has security updates not installed for three days",
               "unattended-upgrades installs security updates every day; some are stuck (held or failing)."),
    ]
    endpoints = [
        _alert("EndpointDown", 'probe_success{job="https"} == 0', "3m", "critical", "{{ $labels.instance }} is down",
               "HTTPS probes from the monitoring server fail for 3 minutes."),
        _alert("EndpointSlow", f'avg_over_time(probe_duration_seconds{{job="https"}}[10m]) > {t.latency_ms / 1000:g}',
               "10m", "warning", "{{ $labels.instance }} answers in {{ $value | humanizeDuration }}",
               f"Slower than {t.latency_ms} ms on average for 10 minutes."),
        _alert("CertificateExpiresSoon", 'probe_ssl_earliest_cert_expiry{job="https"} - time() < 14 * 86400', "1h",
               "warning", "{{ $labels.instance }}'s certificate expires in {{ $value | humanizeDuration }}",
               "The HTTPS proxy renews 30 days ahead: renewal is failing."),
        *burn,
    ]
    max_age = t.backup_max_age_hours * 3600
    backups = [
        _alert("BackupTooOld", f'time() - socle_backup_last_success_timestamp_seconds{{task="run"}} > {max_age}', "0s",
               "critical", "{{ $labels.server }}: no successful backup for {{ $value | humanizeDuration }}",
               f"The last successful backup is older than {t.backup_max_age_hours} hours."),
        _alert("BackupFailed", 'socle_backup_last_status{task="run"} == 0', "0s", "critical",
               "{{ $labels.server }}: the last backup failed", "See `journalctl -u socle-backup.service` on the server."),
        _alert("BackupCheckFailed", 'socle_backup_last_status{task="check"} == 0', "0s", "critical",
               "{{ $labels.server }}: the backup check failed", "restic check or the freshness check failed."),
        _alert("RestoreDrillFailed", 'socle_backup_last_status{task="drill"} == 0', "0s", "critical",
               "{{ $labels.server }}: the restore drill failed", "The last restore drill could not restore the backup."),
        *[_alert("BackupNeverReported", f'absent(socle_backup_last_success_timestamp_seconds{{server="{s}",task="run"}})',
                 f"{t.backup_max_age_hours}h", "critical", f"{s}: no backup has ever reported",
                 f"{s} holds data but has reported no successful backup for {t.backup_max_age_hours} hours.")
          for s in sorted(watched.backed_up)],
    ]
    watchers = [
        # Without these, a dead exporter would leave every alert that reads it silent.
        _alert("MonitoringPartDown", 'up{job=~"https|prometheus|alertmanager"} == 0', "5m", "critical",
               "{{ $labels.job }} is not scraped on the monitoring server",
               "A part of the monitoring does not answer: the alerts that read it cannot fire."),
        _alert("ContainerCensusStale", 'time() - node_textfile_mtime_seconds{file=~".*socle_containers.prom"} > 600',
               "0s", "warning", "{{ $labels.server }}: the container census stopped",
               "socle-container-metrics.timer has not written for 10 minutes: the container alerts are blind."),
    ]
    containers = [
        _alert("ContainerRestarting", "increase(socle_container_restarts_total[15m]) > 2", "0s", "warning",
               "{{ $labels.server }}: container {{ $labels.container }} restarts in a loop",
               "More than two restarts in 15 minutes."),
        _alert("ContainerUnhealthy", "socle_container_healthy == 0", "5m", "critical",
               "{{ $labels.server }}: container {{ $labels.container }} is unhealthy",
               "Its healthcheck fails for 5 minutes (a database container: the apps cannot reach it)."),
        _alert("DatabaseUnreachable", "socle_database_up == 0", "3m", "critical",
               "{{ $labels.server }} cannot reach the database {{ $labels.database }}",
               "The managed PostgreSQL database has not answered from the server that dumps it for 3 minutes: its apps "
               "and its backups fail."),
    ]
    watchdog = [_alert("Watchdog", "vector(1)", "0s", "none", "The monitoring works",
                       "Always firing: Alertmanager sends it to the heartbeat URL every minute; silence means the "
                       "monitoring server is down.")]
    return _yaml({"groups": [
        {"name": "socle-recording", "rules": recording},
        {"name": "socle-hosts", "rules": hosts},
        {"name": "socle-endpoints", "rules": endpoints},
        {"name": "socle-backups", "rules": backups},
        {"name": "socle-containers", "rules": containers},
        {"name": "socle-monitoring", "rules": watchers},
        {"name": "socle-watchdog", "rules": watchdog},
    ]})


class ReceiverError(ValueError):
    """A receiver setting that cannot work; the message never holds the value (often a secret)."""


def check_https_url(value: str | None, key: str) -> None:
    from urllib.parse import urlsplit

    if value is None:
        return
    try:
        url = urlsplit(value)
        ok = url.scheme == "https" and bool(url.hostname) and not any(c in value for c in " \n\r\t%\"'")
    except ValueError:
        ok = False
    if not ok:
        raise ReceiverError(f"socle:monitoring.{key}: the value stored in socle:secrets is not an https:// URL "
                            "without spaces, quotes or percent-escapes (not shown: it is a secret)")


def render_alertmanager(r: Receivers) -> str:
    """Alerts grouped per alert and server, repeated every 4 hours while they last, resolved
    ones announced; the Watchdog every minute to the heartbeat URL, nowhere else."""
    check_https_url(r.webhook_url, "webhookUrl")
    check_https_url(r.heartbeat_url, "heartbeatUrl")
    ops: dict = {"name": "ops"}
    glob: dict = {"resolve_timeout": "5m"}
    if r.emails:
        glob.update({"smtp_smarthost": r.smarthost, "smtp_from": r.email_from,
                     "smtp_auth_username": r.smtp_username or r.email_from,
                     "smtp_auth_password": r.smtp_password, "smtp_require_tls": True})
        ops["email_configs"] = [{"to": ", ".join(r.emails), "send_resolved": True}]
    if r.webhook_url:
        ops["slack_configs"] = [{"api_url": r.webhook_url, "send_resolved": True,
                                 "title": '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} {{ .CommonLabels.server }}',
                                 "text": '{{ range .Alerts }}{{ .Annotations.summary }}\n{{ end }}'}]
    heartbeat = {"name": "heartbeat"}
    if r.heartbeat_url:
        heartbeat["webhook_configs"] = [{"url": r.heartbeat_url, "send_resolved": False}]
    return _yaml({
        "global": glob,
        "route": {"receiver": "ops", "group_by": ["alertname", "server", "instance"], "group_wait": "30s",
                  "group_interval": "5m", "repeat_interval": "4h",
                  "routes": [{"matchers": ['alertname="Watchdog"'], "receiver": "heartbeat", "group_wait": "0s",
                              "group_interval": "1m", "repeat_interval": "1m"}]},
        # A server that is down does not also page for each of its disks and containers.
        "inhibit_rules": [{"source_matchers": ['alertname="HostDown"'], "target_matchers": ['severity=~"warning|critical"',
                                                                                           'alertname!="HostDown"'],
                           "equal": ["server"]}],
        "receivers": [ops, heartbeat],
    })


def monitoring_bundle(*, prometheus: str, rules: str, alertmanager: str, blackbox: str, retention_days: int) -> str:
    """The monitoring server's part, for host/socle_host_setup.py: Debian's packages, socle's files,
    each checked by its own tool before anything is restarted (a refused file goes back to what it
    was), and the services restarted when their files changed."""
    files = {
        PROMETHEUS_CONFIG: prometheus, RULES: rules, BLACKBOX_CONFIG: blackbox,
        "/etc/default/prometheus": prometheus_args(retention_days),
        "/etc/default/prometheus-alertmanager": alertmanager_args(),
        "/etc/default/prometheus-blackbox-exporter": blackbox_args(),
    }
    spec = {path: {"mode": "0644", "content": text} for path, text in files.items()}
    # The SMTP password and the webhook URLs: root and the prometheus user only (Debian runs the
    # four daemons as that user); amtool's output on it is not repeated (it can quote them).
    spec[ALERTMANAGER_CONFIG] = {"mode": "0640", "owner": "root:prometheus", "content": alertmanager, "secret": True}
    return json.dumps({
        "packages": MONITOR_PACKAGES,
        "files": spec,
        "checks": {RULES: ["promtool", "check", "rules", "{path}"],
                   PROMETHEUS_CONFIG: ["promtool", "check", "config", "--syntax-only", "{path}"],
                   ALERTMANAGER_CONFIG: ["amtool", "check-config", "{path}"],
                   BLACKBOX_CONFIG: ["prometheus-blackbox-exporter", "--config.file={path}", "--config.check"]},
        "restart": {"prometheus": [PROMETHEUS_CONFIG, RULES, "/etc/default/prometheus"],
                    "prometheus-alertmanager": [ALERTMANAGER_CONFIG, "/etc/default/prometheus-alertmanager"],
                    "prometheus-blackbox-exporter": [BLACKBOX_CONFIG, "/etc/default/prometheus-blackbox-exporter"]},
        "enable": ["prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter"],
        # Each must answer once (re)started (host/socle_host_setup.py wait_ready).
        "ready": {"prometheus": f"http://{PROMETHEUS_ADDRESS}/-/ready",
                  "prometheus-alertmanager": f"http://{ALERTMANAGER_ADDRESS}/-/ready",
                  "prometheus-blackbox-exporter": f"http://{BLACKBOX_ADDRESS}/-/healthy"},
    }, sort_keys=True)


CENSUS_SCRIPT = "/usr/local/lib/socle/container-metrics"
CENSUS_UNIT = "socle-container-metrics"

# Every minute on an app server: each container's restarts, whether it runs, and its healthcheck,
# for node_exporter's textfile collector (ContainerRestarting, ContainerUnhealthy); and whether
# each managed PostgreSQL database this server dumps (its backup manifest) answers (DatabaseUnreachable).
# Python, as Debian's cloud image has it; docker's own JSON, no parsing of its text output.
_CENSUS = r'''#!/usr/bin/python3
"""socle: the containers' restarts and health, and the managed databases' answers, for
node_exporter (render/monitoring.py)."""
import json
import os
import socket
import ssl
import struct
import subprocess
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else "TEXTFILE/socle_containers.prom"
DOCKER = os.environ.get("SOCLE_DOCKER", "docker")
MANIFEST = os.environ.get("SOCLE_BACKUP_MANIFEST", "@MANIFEST@")


def label(value):
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def answers(host, port):
    """Whether a PostgreSQL server answers at host:port, without logging in: its one-byte reply to
    an SSLRequest, then (on "S") a TLS handshake, closed before any startup packet, which the
    server does not log (an SSLRequest left without its handshake would log an error every
    minute). The certificate is not checked: this asks whether it answers, nothing is sent."""
    try:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.settimeout(5)
            s.sendall(struct.pack("!ii", 8, 80877103))
            reply = s.recv(1)
            if reply == b"S":
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                tls = ctx.wrap_socket(s, server_hostname=host)
                try:  # close_notify, so the server sees a clean end rather than a reset
                    tls.unwrap()
                except (OSError, ValueError):
                    pass
            return reply in (b"S", b"N")
    except (OSError, ValueError, TypeError):
        return False


def databases():
    """The managed PostgreSQL databases this server's backup job dumps, one per cluster. Not
    MySQL: it counts a connection that stops before logging in against max_connect_errors (100 by
    default) and, past it, blocks the host, the apps and the nightly dump included."""
    try:
        with open(MANIFEST) as f:
            dbs = json.load(f).get("databases") or []
    except (OSError, ValueError):
        return []
    seen = {}
    for d in dbs:
        if d.get("mode") == "tcp" and not d.get("container") and d.get("engine") == "postgresql":
            seen.setdefault(d.get("cluster", "?"), (d.get("host"), d.get("port")))
    return sorted(seen.items())


ids = subprocess.run([DOCKER, "ps", "-aq"], capture_output=True, text=True, check=True).stdout.split()
containers = json.loads(subprocess.run([DOCKER, "inspect", *ids], capture_output=True, text=True,
                                       check=True).stdout) if ids else []
lines = ["# HELP socle_container_restarts_total Restarts by the container's restart policy.",
         "# TYPE socle_container_restarts_total counter",
         "# HELP socle_container_running 1 if the container runs.",
         "# TYPE socle_container_running gauge",
         "# HELP socle_container_healthy 1 if its healthcheck passes, 0 if it fails (containers with one).",
         "# TYPE socle_container_healthy gauge"]
for c in sorted(containers, key=lambda c: c["Name"]):
    name = label(c["Name"].lstrip("/"))
    state = c.get("State") or {}
    lines.append(f'socle_container_restarts_total{{container="{name}"}} {int(c.get("RestartCount") or 0)}')
    lines.append(f'socle_container_running{{container="{name}"}} {1 if state.get("Running") else 0}')
    health = (state.get("Health") or {}).get("Status")
    if health in ("healthy", "unhealthy"):
        lines.append(f'socle_container_healthy{{container="{name}"}} {1 if health == "healthy" else 0}')
clusters = databases()
if clusters:
    lines += ["# HELP socle_database_up 1 if the managed PostgreSQL database answers from this server (no login).",
              "# TYPE socle_database_up gauge"]
for cluster, (host, port) in clusters:
    lines.append(f'socle_database_up{{database="{label(cluster)}"}} {1 if answers(host, port) else 0}')
tmp = OUT + ".tmp"
with open(tmp, "w") as f:
    f.write("\n".join(lines) + "\n")
os.chmod(tmp, 0o644)
os.replace(tmp, OUT)
'''.replace("TEXTFILE", TEXTFILE_DIR).replace("@MANIFEST@", BACKUP_MANIFEST)

_CENSUS_SERVICE = f"""[Unit]
Description=socle: container restarts and health for node_exporter
After=docker.service

[Service]
Type=oneshot
ExecStart={CENSUS_SCRIPT}
"""

_CENSUS_TIMER = """[Unit]
Description=socle: container restarts and health for node_exporter, every minute

[Timer]
OnCalendar=minutely
AccuracySec=5s

[Install]
WantedBy=timers.target
"""


# unattended-upgrades' reports by e-mail (socle:monitoring.upgradeReports): it pipes its report to
# /usr/sbin/sendmail -oi -t (unattended-upgrades 2.9, send_summary_mail), which msmtp-mta provides;
# apt-listchanges' news (which=news) go the same way, to root, an alias of the alert addresses.
# Debian's msmtp installs its AppArmor profile disabled (debconf msmtp/apparmor, default false), so
# passwordeval may read the password file.
MSMTPRC = "/etc/msmtprc"
MSMTP_ALIASES = "/etc/socle/msmtp-aliases"
# The password in a file of its own, read by msmtp's passwordeval: msmtprc has no escape for a
# value (an unquoted one is taken literally to the end of the line, unless it starts and ends
# with a double quote, which are then dropped), and a file carries any character but a newline.
SMTP_PASSWORD = "/etc/socle/smtp-password"
UPGRADE_MAIL_CONF = "/etc/apt/apt.conf.d/53socle-upgrade-mail"
UPGRADE_MAIL_FILES = [MSMTPRC, MSMTP_ALIASES, SMTP_PASSWORD, UPGRADE_MAIL_CONF]
TRUST_FILE = "/etc/ssl/certs/ca-certificates.crt"


def upgrade_mail_part(r: Receivers | None, report: str = "on-change") -> dict:
    """Each server's host bundle: msmtp as its sendmail, with the alerts' SMTP settings, and
    unattended-upgrades told to mail its report; or, without e-mail (or reports off), those files
    removed (a login left behind on every server is a login to steal)."""
    if r is None or not r.emails or report == "off":
        return {"packages": [], "files": {}, "absent": list(UPGRADE_MAIL_FILES)}
    host, port = r.smarthost.rsplit(":", 1)
    rc = "\n".join([
        "# Managed by socle (socle:monitoring.email): unattended-upgrades' reports by e-mail.",
        "defaults", "auth on", "tls on", f"tls_trust_file {TRUST_FILE}",
        # 465 is TLS from the first byte; any other port must offer STARTTLS (never plain text).
        f"tls_starttls {'off' if port == '465' else 'on'}", "syslog LOG_MAIL", f"aliases {MSMTP_ALIASES}", "",
        "account socle", f"host {host}", f"port {port}", f"from {r.email_from}",
        f"user {r.smtp_username or r.email_from}", f"passwordeval cat {SMTP_PASSWORD}", "",
        "account default : socle", ""])
    if any(c in (r.smtp_password or "") for c in "\n\r\0") or any(c.isspace() for c in (r.smtp_username or "")):
        raise ReceiverError("socle:monitoring.email: a line break in the SMTP password or a space in the username "
                            "(not shown) cannot be handed to msmtp")
    to = ", ".join(r.emails)
    aliases = f"# Managed by socle: mail to local users goes to the alert addresses.\nroot: {to}\ndefault: {to}\n"
    conf = (f'Unattended-Upgrade::Mail "{",".join(r.emails)}";\n'
            f'Unattended-Upgrade::MailReport "{report}";\n'
            f'Unattended-Upgrade::Sender "{r.email_from}";\n')
    return {"packages": ["msmtp", "msmtp-mta"], "absent": [], "files": {
        MSMTPRC: {"mode": "0600", "content": rc},
        SMTP_PASSWORD: {"mode": "0600", "content": r.smtp_password or "", "secret": True},
        MSMTP_ALIASES: {"mode": "0644", "content": aliases},
        UPGRADE_MAIL_CONF: {"mode": "0644", "content": conf}}}


# What node_exporter_part starts, stopped on a server no longer watched (monitoring taken out):
# the package stays installed, unused; the firewall already closed its port. Only where this
# marker says socle started them: a node_exporter the operator runs on an unwatched stack is theirs.
NODE_UNITS = ["prometheus-node-exporter", f"{CENSUS_UNIT}.timer"]
WATCHED_MARKER = "/etc/socle/watched"


def node_exporter_part(role: str = "app") -> dict:
    """What every server's host bundle adds for node_exporter (render/host_setup.py); on an app
    server, the container census too."""
    path = "/etc/default/prometheus-node-exporter"
    part = {"packages": NODE_PACKAGES, "files": {
                path: {"mode": "0644", "content": node_exporter_args()},
                WATCHED_MARKER: {"mode": "0644", "content": "node_exporter and the container census are socle's "
                                                            "(socle:monitoring); taken out, socle stops them.\n"}},
            "restart": {"prometheus-node-exporter": [path]}, "enable": ["prometheus-node-exporter"],
            "ready": {"prometheus-node-exporter": f"http://127.0.0.1:{NODE_PORT}/metrics"}}
    if role == "app":
        part["files"].update({
            CENSUS_SCRIPT: {"mode": "0755", "content": _CENSUS},
            f"/etc/systemd/system/{CENSUS_UNIT}.service": {"mode": "0644", "content": _CENSUS_SERVICE},
            f"/etc/systemd/system/{CENSUS_UNIT}.timer": {"mode": "0644", "content": _CENSUS_TIMER},
        })
        part["enable"].append(f"{CENSUS_UNIT}.timer")
    return part
