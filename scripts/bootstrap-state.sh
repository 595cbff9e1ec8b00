#!/usr/bin/env bash
# One-time set-up of the self-managed Pulumi state of ONE scope (staging, prod or review): its own
# OVH S3 bucket (versioned, so every state version can be recovered), its own passphrase for the
# secrets provider, and the GitHub environments that use them, so that no credential of one scope
# can read another scope's state (README, "Trust model"). Run it once per scope.
#
#   bash scripts/bootstrap-state.sh SCOPE BUCKET [REGION] [--dry-run]
#     SCOPE   staging | prod | review
#     BUCKET  a bucket for this scope alone, e.g. socle-state-prod
#     REGION  gra (default), sbg, de …
#
# Before: in the OVH Control Panel (Public Cloud > Object Storage > Users) create an S3 user for
# this scope's state bucket only, and export its keys as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
# Needs the aws CLI (apt-get install awscli), pulumi and openssl; with `gh` logged in to your
# repository it stores the passphrase, the state keys and PULUMI_BACKEND_URL in the scope's GitHub
# environments (never at repository level), otherwise it says what to store.
#
# Exit status: 0 done (or dry run done), 2 bad arguments or a missing tool/credential, other: the
# failing command's.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

DRY_RUN=0
args=()
for a in "$@"; do
  case "$a" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "bootstrap: unknown option $a (see --help)" >&2; exit 2 ;;
    *) args+=("$a") ;;
  esac
done
[ "${#args[@]}" -ge 2 ] || { echo "usage: $0 SCOPE BUCKET [REGION] [--dry-run]  (see --help)" >&2; exit 2; }
SCOPE=${args[0]}
BUCKET=${args[1]}
REGION=${args[2]:-gra}
# The GitHub environments of each scope: the first one deploys (read-write state keys), the others
# only read (preview, drift: give them a read-only S3 user's keys by hand, see the summary).
case "$SCOPE" in
  staging) ENVS=(staging preview-staging); STACKS=(staging) ;;
  prod) ENVS=(production preview-prod drift); STACKS=(prod) ;;
  review) ENVS=(review review-cleanup); STACKS=() ;;
  *) echo "bootstrap: scope '$SCOPE' is not one of staging, prod, review" >&2; exit 2 ;;
esac
[[ "$BUCKET" =~ ^[a-z0-9][a-z0-9.-]{2,62}$ ]] || { echo "bootstrap: bucket name '$BUCKET' is not a valid S3 name" >&2; exit 2; }
[[ "$REGION" =~ ^[a-z]{2,5}$ ]] || { echo "bootstrap: region '$REGION' should look like gra, sbg or de" >&2; exit 2; }
ENDPOINT="https://s3.$REGION.io.cloud.ovh.net"
BACKEND="s3://$BUCKET?endpoint=s3.$REGION.io.cloud.ovh.net&region=$REGION&s3ForcePathStyle=true"

say() { printf 'bootstrap: %s\n' "$*" >&2; }
act() {
  if [ "$DRY_RUN" -eq 1 ]; then printf '[dry-run] would run: %s\n' "$*" >&2; else "$@"; fi
}
# set_secret ENV NAME VALUE: the value goes through stdin, never the command line; nothing is piped
# in a dry run (a pipe into a command that does not read it fails the script under pipefail).
set_secret() {
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '[dry-run] would run: gh secret set %s --env %s (value on stdin)\n' "$2" "$1" >&2
  else
    printf '%s' "$3" | gh secret set "$2" --env "$1"
  fi
}
for tool in aws pulumi openssl; do
  command -v "$tool" >/dev/null 2>&1 || { say "$tool is not installed"; exit 2; }
done
if [ -z "${AWS_ACCESS_KEY_ID:-}" ] || [ -z "${AWS_SECRET_ACCESS_KEY:-}" ]; then
  say "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the S3 user of $SCOPE's state bucket) first"
  exit 2
fi

say "1/4 bucket $BUCKET in $REGION, versioned (scope $SCOPE only)"
if aws s3api head-bucket --bucket "$BUCKET" --endpoint-url "$ENDPOINT" >/dev/null 2>&1; then
  say "    already exists"
else
  act aws s3api create-bucket --bucket "$BUCKET" --endpoint-url "$ENDPOINT"
fi
act aws s3api put-bucket-versioning --bucket "$BUCKET" --endpoint-url "$ENDPOINT" \
  --versioning-configuration Status=Enabled

say "2/4 passphrase of $SCOPE's secrets provider"
if [ -n "${PULUMI_CONFIG_PASSPHRASE:-}" ]; then
  say "    using PULUMI_CONFIG_PASSPHRASE from the environment"
else
  PULUMI_CONFIG_PASSPHRASE=$(openssl rand -base64 33)
  export PULUMI_CONFIG_PASSPHRASE
  say "    generated a new one (never printed): store it in your password manager too; without it the"
  say "    stacks' secrets cannot be decrypted. Each scope has its own."
fi
if command -v gh >/dev/null 2>&1 && gh auth status >/dev/null 2>&1; then
  for env in "${ENVS[@]}"; do
    set_secret "$env" PULUMI_CONFIG_PASSPHRASE "$PULUMI_CONFIG_PASSPHRASE"
    act gh variable set PULUMI_BACKEND_URL --env "$env" --body "$BACKEND"
  done
  set_secret "${ENVS[0]}" STATE_AWS_ACCESS_KEY_ID "$AWS_ACCESS_KEY_ID"
  set_secret "${ENVS[0]}" STATE_AWS_SECRET_ACCESS_KEY "$AWS_SECRET_ACCESS_KEY"
  if [ "$SCOPE" = review ]; then
    set_secret review-cleanup STATE_AWS_ACCESS_KEY_ID "$AWS_ACCESS_KEY_ID"
    set_secret review-cleanup STATE_AWS_SECRET_ACCESS_KEY "$AWS_SECRET_ACCESS_KEY"
  fi
else
  say "    gh is not logged in: set PULUMI_CONFIG_PASSPHRASE and the variable PULUMI_BACKEND_URL in the"
  say "    environments ${ENVS[*]}, and the state keys in ${ENVS[0]}, by hand (README: Trust model)"
fi

say "3/4 log in to $BACKEND"
act pulumi login "$BACKEND"

say "4/4 stacks of scope $SCOPE (passphrase secrets provider)"
for stack in "${STACKS[@]}"; do
  if [ "$DRY_RUN" -eq 0 ] && pulumi stack select "$stack" >/dev/null 2>&1; then
    say "    $stack exists"
  else
    act pulumi stack init "$stack" --secrets-provider passphrase
  fi
done
[ "${#STACKS[@]}" -gt 0 ] || say "    none: review stacks pr-<number> are created by review-stacks.yml"

say "done$([ "$DRY_RUN" -eq 1 ] && echo ' (dry run: nothing was changed)'). PULUMI_BACKEND_URL=$BACKEND"
say "Still to do by hand for scope $SCOPE (README, \"Trust model\", has the full table):"
case "$SCOPE" in
  staging)
    say "  environment staging:         deployment branches: main only"
    say "  environment preview-staging: required reviewers (maintainers), prevent self-review; read-only state keys"
    ;;
  prod)
    say "  environment production:      required reviewers (maintainers), prevent self-review, deployment branches: main only"
    say "  environment preview-prod:    deployment branches: main only; read-only state keys"
    say "  environment drift:           deployment branches: main only; read-only state keys"
    ;;
  review)
    say "  environment review:          required reviewers (maintainers), prevent self-review"
    say "  environment review-cleanup:  deployment branches: main only"
    ;;
esac
say "  in each: OVH_APPLICATION_KEY/SECRET, OVH_CONSUMER_KEY (limited to this scope's project),"
say "  GANDI_PERSONAL_ACCESS_TOKEN (limited to this scope's zone) and, where it deploys, DEPLOY_SSH_KEY"
say "  (this scope's own key: its public half is access.ciSshKey of the scope's stack file)"
