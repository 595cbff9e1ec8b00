#!/usr/bin/env bash
# Brings up the `dev` stack (or the stack given as first argument) on the local Docker engine with
# a local state backend: no account, no cloud. Needs the Pulumi CLI and a running Docker engine;
# without them it says so and points to the offline plan, which needs neither.
#
#   bash scripts/up.sh [STACK]
#
# Exit status: 0 deployed, 3 the Pulumi CLI or Docker is missing (the message says how to get them
# and how to plan offline instead), other: pulumi's.
set -euo pipefail
case " $* " in *" -h "*|*" --help "*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
STACK="${1:-dev}"

missing=()
command -v pulumi >/dev/null 2>&1 || missing+=("the Pulumi CLI (https://www.pulumi.com/docs/install/ : curl -fsSL https://get.pulumi.com | sh)")
if ! command -v docker >/dev/null 2>&1; then
  missing+=("Docker (apt-get install docker.io, or Docker Desktop)")
elif ! docker info >/dev/null 2>&1; then
  missing+=("a running Docker engine you may use ('docker info' fails: start it, or add yourself to the docker group)")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  {
    echo "socle: cannot bring up stack '$STACK': missing"
    for m in "${missing[@]}"; do echo "  - $m"; done
    echo
    echo "You can still see exactly what '$STACK' would create, with no CLI, Docker or account:"
    echo "  bash scripts/plan.sh $STACK"
  } >&2
  exit 3
fi

if [ ! -x venv/bin/python ]; then python3 -m venv venv; fi
venv/bin/pip install -q --disable-pip-version-check -r requirements.txt

# Local state in ./.state (git-ignored) unless the caller chose a backend.
mkdir -p .state
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$PWD/.state}"
# dev keeps no secret in its stack file (its passwords come from pulumi-random and are encrypted
# in the local state); an empty passphrase is the documented default for it. Set your own for
# anything shared.
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-}"

pulumi stack select "$STACK" 2>/dev/null || pulumi stack init "$STACK" --secrets-provider passphrase
pulumi up --stack "$STACK" --yes "${@:2}"
echo
echo "socle: '$STACK' is up. Its URLs:"
pulumi stack output urls --stack "$STACK"
echo "Browsers trust the HTTPS certificates once Caddy's root is trusted:"
echo "  docker cp socle-$STACK-local-proxy:/data/caddy/pki/authorities/local/root.crt ./caddy-root.crt"
