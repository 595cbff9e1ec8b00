#!/usr/bin/env bash
# Scenario A, human error: put one app's volume or one database back as it was on a given day.
#
#   bash scripts/restore-app.sh STACK SERVER --volume NAME [--at YYYY-MM-DD] [--dry-run]
#   bash scripts/restore-app.sh STACK SERVER --database CLUSTER/DATABASE [--at YYYY-MM-DD] [--dry-run]
#
# Without --at: the latest snapshot. The containers using a restored volume are stopped during the
# restore and started again after. List what exists with:
#   bash scripts/restore-app.sh STACK SERVER --list
#
# Exit status: 0 restored (or, with --dry-run, the plan of it printed), 2 bad arguments or a missing
# tool, other: the failing command's.
set -euo pipefail
case " $* " in *" -h "*|*" --help "*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
# shellcheck source=scripts/lib/restore-common.sh
source "$(dirname "$0")/lib/restore-common.sh"

[ $# -ge 3 ] || die "usage: $0 STACK SERVER (--volume NAME | --database CLUSTER/DATABASE | --list) [--at DAY] [--dry-run]"
setup "$1" "$2"
shift 2
args=()
volumes=()
what=0
list=0
while [ $# -gt 0 ]; do
  case "$1" in
    --volume) volumes+=("$2"); args+=(--volume "$2"); what=$((what + 1)); shift 2 ;;
    --database) args+=(--database "$2"); what=$((what + 1)); shift 2 ;;
    --at) args+=(--at "$2"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --list) list=1; shift ;;
    *) die "unknown argument $1" ;;
  esac
done

if [ "$list" -eq 1 ]; then
  on_server python3 "$RUNNER" snapshots
  exit 0
fi
[ "$what" -gt 0 ] || die "say what to restore: --volume NAME or --database CLUSTER/DATABASE"

stopped=()
for volume in "${volumes[@]}"; do
  while read -r id; do
    [ -n "$id" ] && stopped+=("$id")
  done < <(on_server docker ps --quiet --filter "volume=$volume")
done
if [ "${#stopped[@]}" -gt 0 ]; then
  say "stopping ${#stopped[@]} container(s) using the volume(s)"
  act on_server docker stop "${stopped[@]}"
fi
say "restoring on $SERVER ($ADDRESS): ${args[*]}"
runner restore "${args[@]}"
if [ "${#stopped[@]}" -gt 0 ]; then
  act on_server docker start "${stopped[@]}"
fi
say "done$([ "$DRY_RUN" -eq 1 ] && echo ' (dry run: nothing was changed)')"
