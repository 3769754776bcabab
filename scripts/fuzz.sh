#!/usr/bin/env bash
# Runs every fuzz target (proptest properties in crates/*/tests/fuzz.rs) for SECONDS each
# (default 600: ten minutes per target), in the `fuzz` profile: release speed with overflow
# checks and debug assertions, so arithmetic that overflows on hostile input panics and is
# found. Prints the cases run per target; exits non-zero on the first failure, which proptest
# reports shrunk to a minimal input (make it a named regression test beside the target).
#
#   scripts/fuzz.sh          # 10 minutes per target
#   scripts/fuzz.sh 60       # one minute per target
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [seconds per target]" >&2; exit 2 ;; esac

# crate:test-name of every target.
targets=(
  voxpipe-realtime:fuzz_realtime_server_events
  voxpipe-llm:fuzz_sse_parser
  voxpipe-llm:fuzz_openai_chat_stream
  voxpipe-llm:fuzz_anthropic_stream
  voxpipe-llm:fuzz_gemini_stream
  voxpipe-tts:fuzz_elevenlabs_messages
  voxpipe-twilio:fuzz_twilio_media_stream
  voxpipe-transport:fuzz_wav_reader
  voxpipe-config:fuzz_config_loader
  voxpipe-eval:fuzz_scenario_loader
)
# Built crate by crate (one build of all would unify features differently and leave each run
# to rebuild); the test binaries then run directly, so no cargo lock is held for the long runs
# and other builds can go on beside them.
declare -A bin
for crate in $(printf '%s\n' "${targets[@]%%:*}" | uniq); do
  exe="$(cargo test --locked --profile fuzz -p "$crate" --test fuzz --no-run --message-format=json \
    | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)"
  [ -x "$exe" ] || { echo "FAILED: no fuzz binary for $crate" >&2; exit 1; }
  bin[$crate]="$exe"
done

summary=()
for t in "${targets[@]}"; do
  crate="${t%%:*}" name="${t#*:}"
  echo "== $crate $name: ${secs} s"
  log="$(mktemp)"
  if ! (cd "crates/$crate" && VOXPIPE_FUZZ_SECS="$secs" RUST_BACKTRACE=0 "${bin[$crate]}" \
      "$name" --exact --nocapture --test-threads=1) 2>&1 | tee "$log"; then
    echo "FAILED: $crate $name (the minimal failing input is above)" >&2
    exit 1
  fi
  line="$(grep -o "fuzz target ${name#fuzz_}: .*" "$log" | tail -1 || true)"
  rm -f "$log"
  [ -n "$line" ] || { echo "FAILED: $crate $name printed no case count" >&2; exit 1; }
  summary+=("$crate  $line")
done
echo
echo "== all ${#targets[@]} targets, ${secs} s each:"
printf '%s\n' "${summary[@]}"
