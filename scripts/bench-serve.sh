#!/usr/bin/env bash
# Load bench for `voxpipe serve`: N concurrent Twilio-shaped calls on loopback, three processes
# (provider fakes, the server, the callers), for the native (pcmu) and the cascade pipeline of
# pipelines/serve.toml. Prints answered calls, the server's CPU and peak RSS per call, and the
# latency the server measured. Bounded: every call ends by itself (the WAV plus 3 s).
#
#   scripts/bench-serve.sh [CALLS=200] [PIPELINES="native cascade"]
#
# VOXPIPE_BIN=path runs that binary instead of building one; VOXPIPE_TURN__VAD=silero (any
# pipeline key as VOXPIPE_…) applies to the served pipelines.
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${1:-200}"
pipelines="${2:-native cascade}"
target="${CARGO_TARGET_DIR:-target}"
bin="${VOXPIPE_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked -p voxpipe-cli >/dev/null
  bin="$target/release/voxpipe"
fi
out="out/bench-serve"
rm -rf "$out" out/calls && mkdir -p "$out"
export TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef TWILIO_AUTH_TOKEN=bench-token
export OPENAI_API_KEY=sk-fake FAKE_API_KEY=sk-fake VOXPIPE_API_KEY=bench-key
export VOXPIPE_SERVE_LIMITS__MAX_CALLS=$((calls + 10)) RUST_LOG=warn
"$bin" fake all > "$out/fakes.log" 2>&1 &
fakes=$!
trap 'kill $fakes $server 2>/dev/null || true' EXIT
server=
sleep 1
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
printf '| pipeline | calls | completed | heard the agent | server CPU (cores, avg) | CPU per call | peak RSS | RSS per call | voice-to-voice p50 / p95 |\n|---|---|---|---|---|---|---|---|---|\n'
for p in $pipelines; do
  "$bin" serve pipelines/serve.toml --listen 127.0.0.1:8080 > "$out/serve-$p.log" 2>&1 &
  server=$!
  for _ in $(seq 50); do grep -q listening "$out/serve-$p.log" 2>/dev/null && break; sleep 0.1; done
  idle_rss=$(awk '/VmRSS/{print $2}' /proc/$server/status)
  t0=$(awk '{print $14+$15}' /proc/$server/stat); s0=$(date +%s.%N)
  "$bin" call twilio "http://127.0.0.1:8080/twilio/voice/$p" --input samples/two-turns.wav --count "$calls" \
    --stagger-ms 10 --linger-ms 3000 --api-port 8794 --out "$out/caller-$p" > /dev/null 2> "$out/caller-$p.log" || true
  t1=$(awk '{print $14+$15}' /proc/$server/stat); s1=$(date +%s.%N)
  peak=$(awk '/VmHWM/{print $2}' /proc/$server/status)
  metrics=$(curl -s -H "Authorization: Bearer $VOXPIPE_API_KEY" http://127.0.0.1:8080/metrics)
  kill -TERM $server; wait $server 2>/dev/null || true
  python3 - "$out/caller-$p/report.jsonl" "$p" "$calls" "$t0" "$t1" "$s0" "$s1" "$idle_rss" "$peak" "$out/calls-$p" <<'PY'
import json, sys, glob, os
rep, p, n, t0, t1, s0, s1, idle, peak, _ = sys.argv[1:]
rows = [json.loads(l) for l in open(rep)] if os.path.exists(rep) else []
done = sum(r["status"] == "completed" for r in rows)
heard = sum(r["first_audio_ms"] is not None for r in rows)
hz = os.sysconf("SC_CLK_TCK")
cores = (float(t1) - float(t0)) / hz / (float(s1) - float(s0))
n = int(n)
v2v = []
for f in glob.glob("out/calls/*/events.jsonl"):
    for l in open(f):
        e = json.loads(l)
        if e.get("type") == "metric" and e.get("name") == "voice_to_voice_ms" and e.get("pipeline") == p:
            v2v.append(e["value_ms"])
v2v.sort()
q = lambda x: v2v[min(len(v2v) - 1, int(x * len(v2v)))] if v2v else 0
print(f"| {p} | {n} | {done} | {heard} | {cores:.2f} | {100*cores/n:.2f} % | {int(peak)/1024:.0f} MB | {(int(peak)-int(idle))/1024/n:.2f} MB | {q(0.5)} / {q(0.95)} ms |")
PY
done
