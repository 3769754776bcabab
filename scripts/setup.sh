#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build and run voxpipe.
# Idempotent: a second run installs nothing new.
set -euo pipefail
# libopus-dev: the browser transport's Opus; chromium: the voice page's end-to-end test.
pkgs=(cmake libclang-dev libasound2-dev libespeak-ng-dev espeak-ng sox pkg-config libopenblas-dev libopus-dev chromium)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
