#!/usr/bin/env bash
# Optional Debian packages for `python3 -m edgemer.benchmarks.arm64_parity` (the emulated
# aarch64 parity check; not part of install-system-packages.sh, so CI stays fast):
#   qemu-user-static  runs aarch64 binaries on x86-64 (qemu-aarch64-static)
#   debootstrap       builds the arm64 Debian root filesystem
#   binfmt-support    registers qemu with the kernel (update-binfmts), needed for debootstrap's
#                     second stage; without it the script unpacks the packages instead
# Run as root (or with sudo). Idempotent.
set -euo pipefail

PACKAGES=(qemu-user-static debootstrap binfmt-support)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "arm64 emulation packages already installed: ${PACKAGES[*]}"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
