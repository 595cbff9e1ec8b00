#!/usr/bin/env bash
# Scenario C, total server loss: `pulumi up` a new server, then restore all its data.
#
#   bash scripts/restore-server.sh STACK SERVER [--at YYYY-MM-DD] [--dry-run]
#
# `pulumi refresh` notices the lost instance, `pulumi up` creates a new one with the same
# cloud-init, containers and backup job (same repository password and keys: they are in the
# state), then the runner restores every volume and database from the latest (or --at) snapshot.
#
# Exit status: 0 restored (or, with --dry-run, the plan of it printed), 2 bad arguments or a missing
# tool, other: the failing command's.
set -euo pipefail
case " $* " in *" -h "*|*" --help "*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
# shellcheck source=scripts/lib/restore-common.sh
source "$(dirname "$0")/lib/restore-common.sh"

[ $# -ge 2 ] || die "usage: $0 STACK SERVER [--at DAY] [--dry-run]"
STACK=$1
SERVER=$2
shift 2
at=()
while [ $# -gt 0 ]; do
  case "$1" in
    --at) at=(--at "$2"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) die "unknown argument $1" ;;
  esac
done
need pulumi "see the README (Deploying staging and prod)"
use_policy "$STACK"
say "1/2 recreating what is missing in stack $STACK"
act pulumi refresh --stack "$STACK" --yes
act pulumi up --stack "$STACK" --yes "${POLICY[@]}"
setup "$STACK" "$SERVER"
say "2/2 restoring every volume and database of $SERVER"
containers=$(app_containers | tr '\n' ' ')
# shellcheck disable=SC2086 # one word per container id
[ -n "$containers" ] && act on_server docker stop $containers
runner restore --all "${at[@]}"
# shellcheck disable=SC2086
[ -n "$containers" ] && act on_server docker start $containers
say "done$([ "$DRY_RUN" -eq 1 ] && echo ' (dry run: nothing was changed)')"
