#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build and run voxpipe, and the Python venv
# of the SDK conformance tests (target/conformance-venv, from tests/conformance/requirements.txt).
# Idempotent: a second run installs nothing new.
# First checks, quickly, what it cannot install itself (Rust; elsewhere than Debian/Ubuntu, the
# C toolchain and libclang) and says what to do.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
  echo "setup.sh: $*" >&2
  exit 1
}

# Rust: rustup's, not apt's (Debian's is older than voxpipe needs).
min_rust=1.91
command -v cargo >/dev/null 2>&1 || need "cargo not found: install Rust >= $min_rust with rustup: https://rustup.rs (then open a new shell, or run: . \"\$HOME/.cargo/env\")"
command -v rustc >/dev/null 2>&1 || need "rustc not found (cargo is): install Rust >= $min_rust with rustup: https://rustup.rs"
rust=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n' "$min_rust" "$rust" | sort -V | head -n1)" != "$min_rust" ]; then
  need "Rust $rust found; voxpipe needs >= $min_rust: run \`rustup update stable\` (or install with rustup: https://rustup.rs)"
fi

# libopus-dev: the browser transport's Opus; chromium: the voice page's end-to-end test;
# librsvg2-bin: rsvg-convert, which renders the A/B report's plots in its test.
pkgs=(cmake libclang-dev libasound2-dev libespeak-ng-dev espeak-ng sox pkg-config libopenblas-dev libopus-dev chromium librsvg2-bin)
if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  # Not Debian/Ubuntu: nothing is installed; check the build's own needs and name what lacks.
  lacking=()
  command -v cc >/dev/null 2>&1 || lacking+=("a C compiler (cc)")
  command -v c++ >/dev/null 2>&1 || lacking+=("a C++ compiler (c++)")
  command -v cmake >/dev/null 2>&1 || lacking+=("cmake")
  command -v pkg-config >/dev/null 2>&1 || lacking+=("pkg-config")
  if [ -z "${LIBCLANG_PATH:-}" ] && ! { ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so'; }; then
    lacking+=("clang's library libclang, for bindgen (e.g. clang-devel or libclang-dev; or set LIBCLANG_PATH)")
  fi
  command -v python3 >/dev/null 2>&1 || lacking+=("python3 with venv (the SDK conformance tests)")
  if [ ${#lacking[@]} -gt 0 ]; then
    need "no apt-get here (this script installs Debian/Ubuntu packages); install yourself: $(printf '%s; ' "${lacking[@]}")and the development packages of ALSA, espeak-ng, OpenBLAS and Opus, sox and chromium (Debian names: ${pkgs[*]})"
  fi
  echo "setup.sh: no apt-get here; the C toolchain and libclang are present, so the system packages are up to you (Debian names: ${pkgs[*]})" >&2
else
  # The C/C++ toolchain (cmake builds whisper.cpp and others) and Python's venv (the SDK
  # conformance tests), where a minimal image lacks them.
  command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 || pkgs+=(build-essential)
  if ! command -v python3 >/dev/null 2>&1; then
    pkgs+=(python3 python3-venv)
  elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    pkgs+=(python3-venv)
  fi
  missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 || need "installing ${missing[*]} needs root: run this script as root, or install sudo"
      sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
fi

# The official SDKs for the conformance tests (tests/tests/conformance.rs), pinned in
# requirements.txt; skipped when the venv already has exactly that list installed.
venv=target/conformance-venv
req=tests/conformance/requirements.txt
stamp="$venv/.requirements.txt"
if [ -x "$venv/bin/python" ] && cmp -s "$req" "$stamp"; then
  echo "setup.sh: $venv is up to date with $req"
else
  echo "setup.sh: installing $req into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || need "python3 -m venv failed: install Python 3 with venv (Debian: apt-get install python3-venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  "$venv/bin/python" -c 'import openai, anthropic, websockets' || need "$venv: the SDKs do not import after installing $req"
  cp "$req" "$stamp"
fi
