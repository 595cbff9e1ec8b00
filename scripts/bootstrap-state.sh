#!/usr/bin/env bash
# One-time set-up of a self-managed Pulumi state: an OVH S3 bucket (versioned, so every state
# version can be recovered), a passphrase for the secrets provider, and the staging and prod stacks.
#
#   bash scripts/bootstrap-state.sh BUCKET [REGION] [--dry-run]      # REGION: gra (default), sbg, de …
#
# Before: in the OVH Control Panel, Public Cloud > Object Storage > Users, create an S3 user for the
# state and export its keys as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Needs the aws CLI
# (apt-get install awscli) and pulumi; with `gh` logged in to your repository, the passphrase and
# keys are stored as repository secrets directly, otherwise the script says what to store.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
args=()
for a in "$@"; do
  case "$a" in
    --dry-run) DRY_RUN=1 ;;
    -*) echo "unknown option $a" >&2; exit 2 ;;
    *) args+=("$a") ;;
  esac
done
[ "${#args[@]}" -ge 1 ] || { echo "usage: $0 BUCKET [REGION] [--dry-run]" >&2; exit 2; }
BUCKET=${args[0]}
REGION=${args[1]:-gra}
[[ "$BUCKET" =~ ^[a-z0-9][a-z0-9.-]{2,62}$ ]] || { echo "bucket name '$BUCKET' is not a valid S3 name" >&2; exit 2; }
[[ "$REGION" =~ ^[a-z]{2,5}$ ]] || { echo "region '$REGION' should look like gra, sbg or de" >&2; exit 2; }
ENDPOINT="https://s3.$REGION.io.cloud.ovh.net"
BACKEND="s3://$BUCKET?endpoint=s3.$REGION.io.cloud.ovh.net&region=$REGION&s3ForcePathStyle=true"

say() { printf 'bootstrap: %s\n' "$*" >&2; }
act() {
  if [ "$DRY_RUN" -eq 1 ]; then printf '[dry-run] would run: %s\n' "$*" >&2; else "$@"; fi
}
for tool in aws pulumi openssl; do
  command -v "$tool" >/dev/null 2>&1 || { say "$tool is not installed"; exit 2; }
done
if [ -z "${AWS_ACCESS_KEY_ID:-}" ] || [ -z "${AWS_SECRET_ACCESS_KEY:-}" ]; then
  say "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the state bucket's S3 user) first"
  exit 2
fi

say "1/4 bucket $BUCKET in $REGION, versioned"
if aws s3api head-bucket --bucket "$BUCKET" --endpoint-url "$ENDPOINT" >/dev/null 2>&1; then
  say "    already exists"
else
  act aws s3api create-bucket --bucket "$BUCKET" --endpoint-url "$ENDPOINT"
fi
act aws s3api put-bucket-versioning --bucket "$BUCKET" --endpoint-url "$ENDPOINT" \
  --versioning-configuration Status=Enabled

say "2/4 passphrase of the secrets provider"
if [ -n "${PULUMI_CONFIG_PASSPHRASE:-}" ]; then
  say "    using PULUMI_CONFIG_PASSPHRASE from the environment"
else
  PULUMI_CONFIG_PASSPHRASE=$(openssl rand -base64 33)
  export PULUMI_CONFIG_PASSPHRASE
  say "    generated a new one (never printed): store it in your password manager too; without it the"
  say "    stacks' secrets cannot be decrypted"
fi
if command -v gh >/dev/null 2>&1 && gh auth status >/dev/null 2>&1; then
  printf '%s' "$PULUMI_CONFIG_PASSPHRASE" | act gh secret set PULUMI_CONFIG_PASSPHRASE
  printf '%s' "$AWS_ACCESS_KEY_ID" | act gh secret set STATE_AWS_ACCESS_KEY_ID
  printf '%s' "$AWS_SECRET_ACCESS_KEY" | act gh secret set STATE_AWS_SECRET_ACCESS_KEY
  act gh variable set PULUMI_BACKEND_URL --body "$BACKEND"
else
  say "    gh is not logged in: set the repository secrets PULUMI_CONFIG_PASSPHRASE, STATE_AWS_ACCESS_KEY_ID,"
  say "    STATE_AWS_SECRET_ACCESS_KEY and the variable PULUMI_BACKEND_URL by hand (README: CI/CD)"
fi

say "3/4 log in to $BACKEND"
act pulumi login "$BACKEND"

say "4/4 stacks staging and prod (passphrase secrets provider)"
for stack in staging prod; do
  if [ "$DRY_RUN" -eq 0 ] && pulumi stack select "$stack" >/dev/null 2>&1; then
    say "    $stack exists"
  else
    act pulumi stack init "$stack" --secrets-provider passphrase
  fi
done
say "done$([ "$DRY_RUN" -eq 1 ] && echo ' (dry run: nothing was changed)'). PULUMI_BACKEND_URL=$BACKEND"
