#!/usr/bin/env bash
# The offline plan: what a stack would create, with its policy verdicts, evaluated in-process
# under Pulumi mocks. Needs neither the Pulumi CLI, nor Docker, nor any account.
#   bash scripts/plan.sh STACK [--config-file PATH] [--policy-config PATH] [--json | --mermaid | --diff-from REF]
#
# Installs only what the plan needs (requirements.txt, the program's own dependencies) into ./venv,
# then runs `python -m tools.plan`, whose --help lists every option.
#
# Exit status: 0 no mandatory policy violation, 1 a mandatory violation (with --diff-from: a
# dangerous change), 2 an invalid stack file, config or command line (FILE:LINE: socle:KEY: fix),
# 130 interrupted, 141 the reader of the output went away (`| head`).
set -euo pipefail
case " $* " in *" -h "*|*" --help "*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
# Stays in the caller's directory, so that --config-file and --diff-from FILE are read from there.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x "$ROOT/venv/bin/python" ]; then python3 -m venv "$ROOT/venv"; fi
"$ROOT/venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements.txt"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$ROOT/venv/bin/python" -m tools.plan "$@"
