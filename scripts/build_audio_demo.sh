#!/usr/bin/env bash
# Rebuild the shipped audio demo, edgemer/bundles/audio-demo, and the replay example
# edgemer/data/speech-example.wav, from speech synthesised with espeak-ng:
#   1. edgemer data synth-speech   12 espeak-ng voices x 5 speaking styles (folder + labels.csv)
#   2. edgemer export audio        train, convert, quantise, verify -> edgemer/bundles/audio-demo
# The bundle's manifest says it was trained on synthetic speech and how to train on RAVDESS or
# CREMA-D. Extra arguments go to 'edgemer export audio' (e.g. --epochs 40).
# Needs: pip install -e '.[export]' and espeak-ng (bash scripts/install-system-packages.sh).
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="edgemer/bundles/audio-demo"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PY" -m edgemer data synth-speech --out "$WORK/speech" --per-voice "${PER_VOICE:-12}" --seed 0
"$PY" -m edgemer export audio --data "folder:$WORK/speech" --out "$WORK/bundle" --name audio-demo --quiet "$@"
# The bundle is built outside the package and moved in whole, so no half-written bundle is ever listed.
rm -rf "$OUT"
cp -r "$WORK/bundle" "$OUT"
"$PY" - <<'PYEOF'
from edgemer.export.audio.synth import write_example_wav

print("wrote", write_example_wav("edgemer/data/speech-example.wav"))
PYEOF
"$PY" -m edgemer info audio-demo
