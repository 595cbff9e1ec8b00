#!/usr/bin/env bash
# Scenario B, ransomware: the server and its online copies cannot be trusted. Rebuild the server
# from a clean image, read the object-locked bucket as it was BEFORE the attack, restore all.
#
#   bash scripts/restore-ransomware.sh STACK SERVER --before 2026-11-20T00:00:00Z [--dry-run]
#
# The bucket's object lock keeps every version for objectLock.days, whatever the attacker deleted
# with the server's keys; rclone --s3-version-at reads the versions current at that instant.
set -euo pipefail
# shellcheck source=scripts/lib/restore-common.sh
source "$(dirname "$0")/lib/restore-common.sh"

[ $# -ge 4 ] || die "usage: $0 STACK SERVER --before TIMESTAMP [--dry-run]"
STACK=$1
SERVER=$2
shift 2
before=""
while [ $# -gt 0 ]; do
  case "$1" in
    --before) before=$2; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) die "unknown argument $1" ;;
  esac
done
[[ "$before" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]] || die "--before must be a UTC timestamp like 2026-11-20T00:00:00Z"
need pulumi "see the README (Deploying staging and prod)"
use_policy "$STACK"

urn=$(pulumi stack --stack "$STACK" --show-urns | python3 -c '
import re, sys
server = sys.argv[1]
for line in sys.stdin:
    m = re.search(r"(urn:pulumi:\S*ovh:index/cloudInstance:CloudInstance::" + re.escape(server) + r"-vm)(\s|$)", line)
    if m:
        print(m.group(1)); break' "$SERVER")
[ -n "$urn" ] || die "stack $STACK has no OVH instance for server $SERVER"
say "1/3 rebuilding $SERVER from a clean image (the compromised instance is destroyed)"
act pulumi up --stack "$STACK" --replace "$urn" --yes "${POLICY[@]}"
setup "$STACK" "$SERVER"
bucket=$(on_server python3 -c 'import json; t=[t for t in json.load(open("/etc/socle/backup.json"))["targets"] if t["kind"] == "s3"]; print(t[0]["repository"] if t else "")')
[ -n "$bucket" ] || die "server $SERVER has no bucket target: restore from the backup server with restore-server.sh"
remote=${bucket#s3:https://}
endpoint=${remote%%/*}
path=${remote#*/}
say "2/3 copying $path as it was at $before from the locked bucket"
# Single quotes: AWS_DEFAULT_REGION is expanded on the server, from the job's env file.
# shellcheck disable=SC2016
rclone_copy='set -a; . /etc/socle/backup.env; exec rclone copy --s3-version-at "$1" --s3-provider Other --s3-endpoint "https://$2" --s3-region "$AWS_DEFAULT_REGION" --s3-env-auth ":s3:$3" /var/lib/socle-backup/recovered'
act on_server sh -c "$rclone_copy" \
  sh "$before" "$endpoint" "$path"
say "3/3 restoring every volume and database from that copy"
containers=$(app_containers | tr '\n' ' ')
# shellcheck disable=SC2086 # one word per container id
[ -n "$containers" ] && act on_server docker stop $containers
runner restore --all --from-repo /var/lib/socle-backup/recovered
# shellcheck disable=SC2086
[ -n "$containers" ] && act on_server docker start $containers
say "done$([ "$DRY_RUN" -eq 1 ] && echo ' (dry run: nothing was changed)'); rotate the secrets the attacker may have read"
