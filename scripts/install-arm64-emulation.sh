#!/usr/bin/env bash
# Optional Debian packages for `python3 -m edgemer.benchmarks.arm64_parity` (the emulated
# aarch64 parity check; not part of install-system-packages.sh, so CI stays fast):
#   qemu-user-static  runs aarch64 binaries on x86-64 (qemu-aarch64-static)
#   debootstrap       builds the arm64 Debian root filesystem
#   binfmt-support    registers qemu with the kernel (update-binfmts), needed for debootstrap's
#                     second stage; without it the script unpacks the packages instead
# Run as root (or with sudo). Idempotent.
set -euo pipefail

exec bash "$(dirname "$0")/install-system-packages.sh" qemu-user-static debootstrap binfmt-support
