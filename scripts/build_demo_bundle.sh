#!/usr/bin/env bash
# Rebuild the shipped demo bundle, edgemer/bundles/physio-demo, from synthetic data:
#   1. edgemer data synth-wesad   15 synthetic subjects (WESAD layout) in a temporary folder
#   2. edgemer export physio      train, convert, quantise, verify -> edgemer/bundles/physio-demo
# The bundle's manifest says it was trained on synthetic data and how to train on real WESAD.
# Extra arguments go to 'edgemer export physio' (e.g. --epochs 40). Needs: pip install -e '.[export]'
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="edgemer/bundles/physio-demo"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The edgemer CLI when it runs here; otherwise the same command functions it registers.
edgemer() {
    if "$PY" -m edgemer --version >/dev/null 2>&1; then
        "$PY" -m edgemer "$@"
    else
        "$PY" - "$@" <<'PYEOF'
import argparse
import sys

from edgemer.errors import EdgemerError
from edgemer.export.physio import commands

group, command, *rest = sys.argv[1:]
configure, run = {
    ("data", "synth-wesad"): (commands.configure_synth_wesad, commands.run_synth_wesad),
    ("export", "physio"): (commands.configure_export_physio, commands.run_export_physio),
}[(group, command)]
parser = argparse.ArgumentParser(prog=f"edgemer {group} {command}")
configure(parser)
try:
    sys.exit(run(parser.parse_args(rest)))
except EdgemerError as exc:
    sys.exit(f"edgemer: error: {exc}")
PYEOF
    fi
}

edgemer data synth-wesad --subjects 15 --seed 0 --out "$WORK/synth-wesad" --quiet
edgemer export physio --wesad "$WORK/synth-wesad" --out "$OUT" --name physio-demo --seed 0 --overwrite --strict "$@"
du -sh "$OUT"
