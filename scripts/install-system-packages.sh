#!/usr/bin/env bash
# Debian packages edgemer's optional parts and tests use (run as root, or with sudo):
#   espeak-ng     speech synthesis for the audio demo bundle and the audio tests
#   libportaudio2 the PortAudio library behind sounddevice (live microphone, extra [audio])
# Idempotent: apt-get skips what is already installed. Append new packages to PACKAGES.
# With arguments, installs those packages instead (scripts/install-arm64-emulation.sh uses this).
set -euo pipefail

PACKAGES=(espeak-ng libportaudio2)
if [ "$#" -gt 0 ]; then
    PACKAGES=("$@")
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "Debian packages already installed: ${PACKAGES[*]}"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
