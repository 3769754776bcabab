#!/usr/bin/env bash
# README's first command: set up a fresh machine, build voxpipe, and run the main job on the
# offline default. Safe to run again (everything is cached).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --locked -p voxpipe-cli
bin=target/release/voxpipe
mkdir -p out

# The native pipeline against the local Realtime fake, on the bundled sample call.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" fake realtime --port "$port" > out/fake-realtime.log 2>&1 &
fake=$!
trap 'kill $fake 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening out/fake-realtime.log 2>/dev/null && break; sleep 0.1; done
OPENAI_API_KEY="${OPENAI_API_KEY:-sk-local-fake}" "$bin" run pipelines/native-fake.toml \
  --set "stages[0].url=ws://127.0.0.1:$port/v1/realtime"
