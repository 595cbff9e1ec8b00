# shellcheck shell=bash
# Shared by the restore scripts: argument checks, dry-run, and running the backup runner on a
# server (over SSH on ovh, in the backup container on local).

RUNNER=/usr/local/lib/socle/socle_backup.py
DRY_RUN=0

say() { printf 'socle-restore: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

# Run a command that changes something, or only show it in dry-run mode.
act() {
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '[dry-run] would run: %s\n' "$*" >&2
  else
    "$@"
  fi
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed: $2"
}

# stack_output STACK KEY.PATH -> prints one value of `pulumi stack output --json`
stack_output() {
  pulumi stack output --stack "$1" --json | python3 -c '
import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1].split("."):
    value = value[key]
print(value if isinstance(value, (str, int)) else json.dumps(value))' "$2"
}

PROJECT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# use_policy STACK: sets POLICY to the policy pack and this stack's config, passed to every
# `pulumi up` a restore runs, so a restore is held to the same rules as a deployment.
use_policy() {
  local config="$PROJECT_ROOT/policy/config/$1.json"
  [ -f "$config" ] || die "no policy config $config for stack $1: a restore deploys under the same policy pack as CI"
  # shellcheck disable=SC2034 # read by the scripts that source this file
  POLICY=(--policy-pack "$PROJECT_ROOT/policy" --policy-pack-config "$config")
}

# setup STACK SERVER: sets ADDRESS, SSH_USER, SSH_PORT, and checks the server has a backup job.
setup() {
  STACK=$1
  SERVER=$2
  need pulumi "see the README (Deploying staging and prod)"
  need python3 "apt-get install python3"
  ADDRESS=$(stack_output "$STACK" "servers.$SERVER") || die "stack $STACK has no server $SERVER"
  SSH_USER=$(stack_output "$STACK" ssh.user)
  SSH_PORT=$(stack_output "$STACK" ssh.port)
  stack_output "$STACK" backups | grep -q "\"$SERVER\"" || die "server $SERVER of stack $STACK has no backup job"
}

# on_server CMD...: run on the server (root), through SSH, or in the dev backup container.
on_server() {
  if [ "$ADDRESS" = "127.0.0.1" ]; then
    docker exec "socle-$STACK-$SERVER-backup" "$@"
  else
    # ssh joins its arguments into one remote command line: quote each word for that shell.
    ssh -p "$SSH_PORT" -o BatchMode=yes "$SSH_USER@$ADDRESS" "sudo $(printf '%q ' "$@")"
  fi
}

# runner ARGS...: the backup runner; read-only in dry-run mode (it gets --dry-run itself).
runner() {
  if [ "$DRY_RUN" -eq 1 ]; then
    on_server python3 "$RUNNER" --dry-run "$@"
  else
    on_server python3 "$RUNNER" "$@"
  fi
}

# app_containers: the app containers of this server (they are stopped while their data is restored).
app_containers() {
  on_server docker ps --quiet --filter label=socle.role=app
}
