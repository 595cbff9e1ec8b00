"""Files of a backup job: schedules (systemd timers on servers, crontab in the local container),
the installer run over SSH, and the secrets env file. Pure functions."""

from __future__ import annotations

import json
import shlex

from .cloudinit import RESTIC_KEYS

RUNNER_PATH = "/usr/local/lib/socle/socle_backup.py"
MANIFEST_PATH = "/etc/socle/backup.json"
ENV_PATH = "/etc/socle/backup.env"
SSH_KEY_PATH = "/etc/socle/backup_ssh_key"
SFTP_KNOWN_HOSTS = "/etc/socle/sftp_known_hosts"
# The env file's dead-man URL of each job; the runner (standalone on the server) has the same
# table, PING_ENV, and a test keeps the two equal.
PING_ENV = {"run": "SOCLE_PING_URL", "check": "SOCLE_PING_URL_CHECK", "drill": "SOCLE_PING_URL_DRILL"}
# rclone reads the object-locked bucket as it was before an attack (--s3-version-at).
PACKAGES = ["restic", "postgresql-client", "mariadb-client", "rsync", "rclone", "python3"]

_DOW = {"0": "Sun", "1": "Mon", "2": "Tue", "3": "Wed", "4": "Thu", "5": "Fri", "6": "Sat", "7": "Sun"}


class ScheduleError(ValueError):
    pass


_MONTHS = {m: str(i) for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_DAY_NAMES = {d: str(i) for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


def _field(value: str, what: str, base: int = 0, dow: bool = False) -> str:
    """One cron field as a systemd calendar component: *, N, N,M, N-M, */S, N-M/S. `base` is the
    field's first value (days and months start at 1: systemd rejects `0/2` there). Weekday
    ranges are spelt out (systemd orders weeks Mon..Sun, so cron's 0-6 cannot be `Sun..Sat`)."""
    names = _DAY_NAMES if dow else _MONTHS if what == "month" else {}
    parts: list[str] = []
    for item in value.lower().split(","):
        step = None
        if "/" in item:
            item, step = item.split("/", 1)
            if not step.isdigit() or int(step) == 0:
                raise ScheduleError(f"cannot convert {what} step '{step}'")
        if item == "*":
            if dow:
                if step is not None:
                    raise ScheduleError("weekday steps are not supported; list the days, e.g. 1,3,5")
                parts.append("*")
            else:
                parts.append("*" if step is None else f"{base}/{step}")
            continue
        lo, _, hi = item.partition("-")
        lo, hi = names.get(lo, lo), names.get(hi, hi)
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ScheduleError(f"cannot convert {what} '{item}'")
        if dow:
            if step:
                raise ScheduleError("weekday steps are not supported; list the days, e.g. 1,3,5")
            days = range(int(lo), int(hi or lo) + 1)
            parts += [_DOW[str(d)] for d in days if str(d) in _DOW and _DOW[str(d)] not in parts]
        else:
            parts.append(lo + (f"..{hi}" if hi else "") + (f"/{step}" if step else ""))
    return ",".join(parts)


def cron_to_oncalendar(cron: str, zone: str = "UTC") -> str:
    """A 5-field cron expression as a systemd OnCalendar= value, in time zone `zone` (an IANA name:
    systemd ≥ 245 reads it from the calendar spec and follows its daylight-saving changes; a local
    time the spring change skips does not run that day, which the config checks refuse)."""
    fields = cron.split()
    if len(fields) != 5:
        raise ScheduleError(f"'{cron}' is not a 5-field cron expression")
    minute, hour, dom, month, dow = fields
    if dom != "*" and dow != "*":
        # cron ORs the two; systemd ANDs them. Refuse rather than change the meaning.
        raise ScheduleError(f"'{cron}' sets both day-of-month and day-of-week; set only one")
    date = f"*-{_field(month, 'month', base=1)}-{_field(dom, 'day of month', base=1)}"
    time = f"{_field(hour, 'hour')}:{_field(minute, 'minute')}:00"
    prefix = "" if dow == "*" else _field(dow, "day of week", dow=True) + " "
    return f"{prefix}{date} {time} {zone}"


def render_systemd_units(schedules: dict[str, str], zone: str = "UTC") -> dict[str, str]:
    """socle-backup{,-check,-drill}.service/.timer. systemd records each run's exit status
    (`systemctl status`, `systemctl --failed`, the journal)."""
    units = {}
    for job, cron in schedules.items():
        name = "socle-backup" if job == "run" else f"socle-backup-{job}"
        units[f"/etc/systemd/system/{name}.service"] = "\n".join([
            "[Unit]",
            f"Description=socle backup: {job}",
            "Wants=network-online.target",
            "After=network-online.target docker.service",
            "",
            "[Service]",
            "Type=oneshot",
            # A shutdown inhibitor for the job's duration: socle-reboot (which checks inhibitors)
            # never reboots in the middle of a backup.
            f"ExecStart=/usr/bin/systemd-inhibit --what=shutdown --mode=block --who=socle-backup "
            f"'--why=socle backup: {job}' /usr/bin/python3 {RUNNER_PATH} {job}",
            # Dumps and scratch restores are readable by root only.
            "UMask=0077",
            "Nice=10",
            "IOSchedulingClass=idle",
            "TimeoutStartSec=6h",
            "",
        ])
        units[f"/etc/systemd/system/{name}.timer"] = "\n".join([
            "[Unit]",
            f"Description=socle backup schedule: {job}",
            "",
            "[Timer]",
            f"OnCalendar={cron_to_oncalendar(cron, zone)}",
            "Persistent=true",
            "RandomizedDelaySec=300",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ])
    return units


def render_crontab(schedules: dict[str, str], zone: str = "UTC") -> str:
    """Crontab of the local backup container: busybox crond reads the times in the container's
    TZ, which the container sets to `zone` (with Alpine's tzdata)."""
    lines = [f"# socle backup jobs ({zone}); output goes to the container log"]
    for job, cron in schedules.items():
        lines.append(f"{cron} python3 {RUNNER_PATH} {job} >/proc/1/fd/1 2>&1")
    return "\n".join(lines) + "\n"


def render_env(values: dict[str, str]) -> str:
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in sorted(values.items()))


def sftp_known_hosts(host: str, port: int, host_key: str) -> str:
    """The one known_hosts line that pins an external SFTP host's key (OpenSSH's `[host]:port` form
    for another port than 22)."""
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {host_key}\n"


def sftp_target(server: str, host: str, port: int, user: str, path: str,
                key_path: str = SSH_KEY_PATH, known_hosts: str = SFTP_KNOWN_HOSTS) -> dict:
    """The manifest entry of an external SFTP host: restic's sftp backend over ssh with this
    server's key, StrictHostKeyChecking=yes against the pinned key only (no global known_hosts,
    no trust on first use), each server in a directory of its own."""
    return {
        "name": "sftp", "kind": "sftp", "external": True,
        "repository": f"sftp:{user}@{host}:{path.rstrip('/')}/{server}",
        "sshHost": f"{user}@{host}", "port": port,
        "sshOptions": ["-i", key_path, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                       "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
                       "-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=no"],
    }


def render_bundle(manifest: dict, runner: str, units: dict[str, str]) -> str:
    """What the installer reads on stdin: the manifest and the files to write (no secret)."""
    files = {RUNNER_PATH: {"mode": "0755", "content": runner}}
    files.update({p: {"mode": "0644", "content": c} for p, c in units.items()})
    return json.dumps({"manifest": manifest, "files": files}, sort_keys=True)


def coverage(manifest: dict, kinds: list[str] | None = None) -> dict:
    """What a backup job covers, the part of its manifest the policy pack judges: volumes, databases,
    retention, dead-man pings, how many targets and of which kinds. Known at `pulumi preview`, unlike the manifest
    itself (it holds the managed database's address); policy.rules.manifest_coverage is its twin."""
    return {
        "host": manifest.get("host"),
        "volumes": sorted(v["name"] for v in manifest.get("volumes") or []),
        "databases": sorted(f"{d['cluster']}/{d['database']}" for d in manifest.get("databases") or []),
        "retention": manifest.get("retention") or {},
        "watched": sorted(manifest.get("watched") or []),
        "targets": len(manifest.get("targets") or []),
        # Given apart when the targets are not known yet (their addresses are outputs).
        "targetKinds": sorted(kinds if kinds is not None else (target_kind(t) for t in manifest.get("targets") or [])),
        "maxAgeHours": (manifest.get("check") or {}).get("maxAgeHours"),
    }


def target_kind(target: dict) -> str:
    """What a target is to the policy pack: s3 (a bucket; its lock judged apart), append-only
    (socle's backup server), sftp (an external host) or local; policy.rules has its twin."""
    return "append-only" if target.get("appendOnly") else str(target.get("kind"))


COVERAGE_MARK = "COVERAGE = json.loads(r\'\'\'"


def render_installer(timers: list[str], declared: dict | None = None) -> str:
    """Run over SSH (as the deploy user, with sudo) with the bundle on stdin. Idempotent: running
    it again with a new bundle updates the job in place.

    `declared` (coverage() of the manifest) is written into the script itself, where the policy
    pack reads it at preview; the script refuses a bundle whose manifest covers anything else, so
    what the pack judged is what gets installed."""
    enable = " ".join(f"{t}.timer" for t in timers)
    check = ""
    if declared is not None:
        check = (f"{COVERAGE_MARK}{json.dumps(declared, sort_keys=True)}\'\'\')\n"
                 + "m = bundle[\"manifest\"]\n"
                 + "got = {\"host\": m.get(\"host\"), \"volumes\": sorted(v[\"name\"] for v in m.get(\"volumes\") or []),\n"
                 + "       \"databases\": sorted(d[\"cluster\"] + \"/\" + d[\"database\"] for d in m.get(\"databases\") or []),\n"
                 + "       \"retention\": m.get(\"retention\") or {}, \"watched\": sorted(m.get(\"watched\") or []),\n"
                 + "       \"targets\": len(m.get(\"targets\") or []), \"maxAgeHours\": (m.get(\"check\") or {}).get(\"maxAgeHours\"),\n"
                 + "       \"targetKinds\": sorted(\"append-only\" if t.get(\"appendOnly\") else str(t.get(\"kind\"))\n"
                 + "                              for t in m.get(\"targets\") or [])}\n"
                 + "if got != COVERAGE:\n"
                 + "    sys.exit(\"socle-backup: the manifest covers %s, not what was reviewed (%s); nothing installed\" % (got, COVERAGE))\n")
    return f"""set -eu
bundle=$(mktemp)
trap 'rm -f "$bundle"' EXIT
cat > "$bundle"
sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q {" ".join(PACKAGES)} >/dev/null
sudo install -d -m 0755 /usr/local/lib/socle /var/lib/socle-backup
sudo install -d -m 0700 /etc/socle
sudo python3 - "$bundle" <<'PY'
import json, os, sys
bundle = json.load(open(sys.argv[1]))
{check}with open("{MANIFEST_PATH}", "w") as f:
    json.dump(bundle["manifest"], f, indent=1, sort_keys=True)
for path, spec in bundle["files"].items():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(spec["content"])
    os.chmod(path, int(spec["mode"], 8))
PY
sudo systemctl daemon-reload
# The repositories are created here, once and on purpose; the nightly run never creates one (but
# for an external SFTP host that did not know this server's key yet: created once, when it does).
sudo python3 {RUNNER_PATH} init
sudo systemctl enable --now {enable}
echo "socle-backup installed: $(systemctl list-timers --no-legend 'socle-backup*' | wc -l) timers"
"""


def render_secrets_installer() -> str:
    """Writes the env file (and the SSH key, if any) from stdin, readable by root only."""
    return f"""set -eu
umask 077
sudo install -d -m 0700 /etc/socle
sudo python3 -c '
import json, os, sys
data = json.load(sys.stdin)
for path, content in data.items():
    with open(path, "w") as f:
        f.write(content)
    os.chmod(path, 0o600)
'
echo "socle-backup secrets installed"
"""


def secrets_bundle(env_text: str, ssh_key: str | None) -> str:
    data = {ENV_PATH: env_text}
    if ssh_key:
        data[SSH_KEY_PATH] = ssh_key
    return json.dumps(data, sort_keys=True)


RESTIC_ROOT = "/srv/restic"
PRUNE_MANIFEST = "/etc/socle/prune.json"
PRUNE_ENV = "/etc/socle/prune.env"


def render_restic_keys(clients: list[tuple[str, str]], root: str = RESTIC_ROOT) -> str:
    """The backup server's authorized keys: each client's key may only run an append-only restic
    server (rclone) in that client's own directory: it can add snapshots, never delete or overwrite
    one, and reaches no other repository, no shell, no file of the host."""
    lines = []
    for name, key in clients:
        key = key.strip()
        if not name.replace("-", "").isalnum() or "\n" in key or not key:
            raise ValueError(f"bad backup client '{name}' or key")
        command = f"/usr/bin/rclone serve restic --stdio --append-only {root}/{name}"
        lines.append(f'restrict,command="{command}" {" ".join(key.split()[:2])} socle-backup-{name}\n')
    return "".join(lines)


def render_prune_units(schedule: str, zone: str = "UTC") -> dict[str, str]:
    """socle-prune: the retention of every client's repository, on the backup server itself, as the
    restic user; the repository passwords stay in a root-only file the runner reads before dropping
    to that user."""
    return {
        "/etc/systemd/system/socle-prune.service": "\n".join([
            "[Unit]",
            "Description=socle backup server: retention of every client's repository",
            "",
            "[Service]",
            "Type=oneshot",
            "UMask=0077",
            # Root takes the shutdown inhibitor (logind refuses one to an unprivileged user without
            # polkit) and the runner reads the root-only manifest and passwords in /etc/socle, then
            # drops to restic, the repositories' owner, before touching them (--run-as). A
            # `User=restic` service could read neither (found in the test VM).
            "ExecStart=/usr/bin/systemd-inhibit --what=shutdown --mode=block --who=socle-prune '--why=socle prune' "
            f"/usr/bin/python3 {RUNNER_PATH} --manifest {PRUNE_MANIFEST} --env-file {PRUNE_ENV} --run-as restic prune",
            "Nice=10",
            "IOSchedulingClass=idle",
            "TimeoutStartSec=6h",
            "",
        ]),
        "/etc/systemd/system/socle-prune.timer": "\n".join([
            "[Unit]",
            "Description=socle backup server: retention schedule",
            "",
            "[Timer]",
            f"OnCalendar={cron_to_oncalendar(schedule, zone)}",
            "Persistent=true",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]),
    }


def backup_server_bundle(keys: str, manifest: dict, runner: str, units: dict[str, str], env: str) -> str:
    return json.dumps({"keys": keys, "manifest": manifest, "runner": runner, "units": units, "env": env},
                      sort_keys=True)


def render_restic_access() -> str:
    """On the backup server (stdin: backup_server_bundle, a secret): the clients' forced-command keys
    (root-owned), the restic user's shell for them, and the server-side prune (runner, manifest,
    root-only passwords, timer). Idempotent."""
    return f"""set -eu
umask 077
bundle=$(mktemp)
trap 'rm -f "$bundle"' EXIT
cat > "$bundle"
sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q restic rclone python3 >/dev/null
sudo usermod -s /bin/sh restic
sudo install -d -o restic -g restic -m 0700 {RESTIC_ROOT}
sudo install -d -m 0755 /usr/local/lib/socle
sudo install -d -m 0700 /etc/socle
sudo python3 - "$bundle" <<'PY'
import json, os, sys
b = json.load(open(sys.argv[1]))
def put(path, content, mode):
    with open(path + ".new", "w") as f:
        f.write(content)
    os.chmod(path + ".new", mode)
    os.replace(path + ".new", path)
put("{RESTIC_KEYS}", b["keys"], 0o644)
put("{RUNNER_PATH}", b["runner"], 0o755)
put("{PRUNE_MANIFEST}", json.dumps(b["manifest"], indent=1, sort_keys=True), 0o644)
put("{PRUNE_ENV}", b["env"], 0o600)
for path, content in b["units"].items():
    put(path, content, 0o644)
PY
sudo systemctl daemon-reload
sudo systemctl enable --now socle-prune.timer
echo "restic access: $(wc -l < {RESTIC_KEYS}) client keys, append-only; prune timer enabled"
"""


# Where each app server records the image of each app holding data, as last deployed.
IMAGES_DIR = "/var/lib/socle/images"
# The runner's stamp of its last run that passed: "STARTED ENDED MANIFEST_SHA256"
# (backup/socle_backup.py _stamp).
LAST_RUN_OK = "/var/lib/socle-backup/last-run-ok"
# The gates of one server take turns on this lock (flock), in a directory only root writes, the
# lock file the deploy user's: no other local user can make the gates fail or hang. A backup that
# started at most FRESH_SECONDS before a gate, with the manifest installed now, serves it (the
# gates of a server start together, right after its backup installer). A failed one is recorded
# beside it: the gates still waiting stop at once instead of failing one after the other.
GATE_DIR = "/run/socle"
GATE_LOCK = f"{GATE_DIR}/backup-gate.lock"
GATE_FAILED = f"{GATE_DIR}/backup-gate.failed"
FRESH_SECONDS = 600


def render_backup_gate(app: str, image: str, data_paths: list[str] = ()) -> str:
    """Run over SSH before the containers of `app` change image. A backup runs first, and must
    pass (else the deployment stops here and the old containers keep running), when:
    - the image recorded for the app on this server differs from the new one; or
    - no image is recorded here yet (the app's data moved to this server's backup job, or the
      server predates the gates), but data is here already: one of `data_paths` (its volumes)
      holds files, or this server's backup has passed before (its databases are dumped from
      here). A first deployment on a new server backs up nothing (its volumes, made before the
      gate, are still empty).

    One backup serves every gate of the server in a deployment: the gates take turns (flock), and
    one that finds a passed run that started at most FRESH_SECONDS before itself, with the backup
    manifest installed now, relies on it. A run the timer started earlier (or with the manifest
    before this deployment's) is joined by `systemctl start` (a oneshot service is not started
    twice), then run once more."""
    import shlex

    marker = shlex.quote(f"{IMAGES_DIR}/{app}")
    probes = " || ".join([*(f"sudo find {shlex.quote(p)} -mindepth 1 -print -quit 2>/dev/null | grep -q ." for p in data_paths),
                          f"sudo test -e {LAST_RUN_OK}"])
    return f"""set -eu
new={shlex.quote(image)}
start=$(date +%s)
since=$(( start - {FRESH_SECONDS} ))
old=
if sudo test -f {marker}; then old=$(sudo cat {marker}); fi
why=
if [ -n "$old" ]; then
  if [ "$old" != "$new" ]; then why="image $old -> $new"; fi
elif {probes}; then
  why="no image recorded here for it, and its data is here (now $new)"
fi
number() {{
  case $1 in ''|*[!0-9]*) echo 0 ;; *) echo "$1" ;; esac
}}
fresh() {{
  # A run that passed, started since $since and not in the future, with the manifest installed now.
  stamp=$(sudo cat {LAST_RUN_OK} 2>/dev/null || true)
  began=$(number "$(printf '%s' "$stamp" | cut -d' ' -f1)")
  stamped=$(printf '%s' "$stamp" | cut -d' ' -f3)
  sum=$(sudo sha256sum {MANIFEST_PATH} 2>/dev/null || true)
  [ "$began" -ge "$since" ] && [ "$began" -le "$(date +%s)" ] && [ -n "$stamped" ] && [ "$stamped" = "${{sum%% *}}" ]
}}
backup() {{
  if ! sudo systemctl start socle-backup.service; then
    date +%s | sudo tee {GATE_FAILED} >/dev/null
    echo "socle: the backup before updating {app} failed: its containers are left as they are (journalctl -u socle-backup.service)" >&2
    exit 1
  fi
}}
if [ -n "$why" ]; then
  if ! systemctl cat socle-backup.service >/dev/null 2>&1; then
    echo "socle: {app} holds data and changes ($why), but this server has no backup job; refusing to update it" >&2
    exit 1
  fi
  sudo install -d -m 0755 -o root {GATE_DIR}
  sudo touch {GATE_LOCK}
  sudo chown "$(id -u)" {GATE_LOCK}
  sudo chmod 0600 {GATE_LOCK}
  exec 9>>{GATE_LOCK}
  flock 9
  failed=$(number "$(sudo cat {GATE_FAILED} 2>/dev/null || true)")
  if [ "$failed" -gt "$start" ]; then
    echo "socle: the backup another update of this deployment ran on this server failed; {app} is left as it is (journalctl -u socle-backup.service)" >&2
    exit 1
  fi
  if fresh; then
    echo "socle: {app}: $why; a backup that started {FRESH_SECONDS // 60} minutes ago or less passed, it serves {app} too"
  else
    echo "socle: {app}: $why; backing up first (socle-backup.service)"
    backup
    if ! fresh; then
      echo "socle: that backup had started earlier, or with the manifest before this deployment's; once more"
      backup
    fi
    echo "socle: backup done; updating {app}"
  fi
fi
sudo mkdir -p {IMAGES_DIR}
printf '%s\\n' "$new" | sudo tee {marker} >/dev/null
"""
