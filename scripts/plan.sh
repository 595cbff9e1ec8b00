#!/usr/bin/env bash
# The offline plan: what a stack would create, with its policy verdicts, evaluated in-process
# under Pulumi mocks. Needs neither the Pulumi CLI, nor Docker, nor any account.
# Usage: bash scripts/plan.sh STACK [--config-file PATH] [--json] [--mermaid] [--diff-from REF]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x venv/bin/python ]; then python3 -m venv venv; fi
venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
exec venv/bin/python -m tools.plan "$@"
