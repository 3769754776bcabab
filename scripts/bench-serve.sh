#!/usr/bin/env bash
# Load bench for `voxpipe serve`: N concurrent Twilio-shaped calls on loopback, three processes
# (provider fakes, the server, the callers), for the native (pcmu) and the cascade pipeline of
# pipelines/serve.toml. Prints answered calls, the server's CPU and peak RSS per call, and the
# latency the server measured. Bounded: every call ends by itself (the WAV plus 3 s).
#
#   scripts/bench-serve.sh [CALLS=200] [PIPELINES="native cascade"]
#
# STAGGER_MS (default 10) spaces the calls' starts; "peak" is the most calls the server had at
# once (sampled from its metrics every 200 ms). CPU is per process: the server, the fakes and
# the callers share the machine.
#
# VOXPIPE_BIN=path runs that binary instead of building one; VOXPIPE_TURN__VAD=silero (any
# pipeline key as VOXPIPE_…) applies to the served pipelines. INPUT=samples/barge-in.wav (a
# caller who speaks over the reply) fills the barge-in column: the caller's speech onset over
# playing agent audio → the server's `clear`, and → the silence the caller heard, p50 / p95.
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
printf '| pipeline | calls | peak concurrent | completed | heard the agent | server CPU (cores) | CPU per call | fakes / callers CPU (cores) | peak RSS | RSS per call | voice-to-voice p50 / p95 | barge-in → clear, → silence p50 / p95 |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for p in $pipelines; do
  "$bin" serve pipelines/serve.toml --listen 127.0.0.1:8080 > "$out/serve-$p.log" 2>&1 &
  server=$!
  for _ in $(seq 50); do grep -q listening "$out/serve-$p.log" 2>/dev/null && break; sleep 0.1; done
  idle_rss=$(awk '/VmRSS/{print $2}' /proc/$server/status)
  t0=$(awk '{print $14+$15}' /proc/$server/stat); s0=$(date +%s.%N)
  f0=$(awk '{print $14+$15}' /proc/$fakes/stat)
  "$bin" call twilio "http://127.0.0.1:8080/twilio/voice/$p" --input "${INPUT:-samples/two-turns.wav}" --count "$calls" \
    --stagger-ms "${STAGGER_MS:-10}" --linger-ms 3000 --api-port 8794 --out "$out/caller-$p" > /dev/null 2> "$out/caller-$p.log" &
  callers=$!
  peak_calls=0
  while kill -0 $callers 2>/dev/null; do
    n=$(curl -s -H "Authorization: Bearer $VOXPIPE_API_KEY" http://127.0.0.1:8080/metrics \
      | awk '/^voxpipe_active_calls\{/{s+=$2} END{print s+0}')
    [ "${n%.*}" -gt "$peak_calls" ] && peak_calls=${n%.*}
    c1=$(awk '{print $14+$15}' /proc/$callers/stat 2>/dev/null || echo "${c1:-0}")
    sleep 0.2
  done
  wait $callers || true
  t1=$(awk '{print $14+$15}' /proc/$server/stat); s1=$(date +%s.%N)
  f1=$(awk '{print $14+$15}' /proc/$fakes/stat)
  peak=$(awk '/VmHWM/{print $2}' /proc/$server/status)
  metrics=$(curl -s -H "Authorization: Bearer $VOXPIPE_API_KEY" http://127.0.0.1:8080/metrics)
  kill -TERM $server; wait $server 2>/dev/null || true
  python3 - "$out/caller-$p/report.jsonl" "$p" "$calls" "$t0" "$t1" "$s0" "$s1" "$idle_rss" "$peak" "$peak_calls" "$f0" "$f1" "${c1:-0}" <<'PY'
import json, sys, glob, os
rep, p, n, t0, t1, s0, s1, idle, peak, peak_calls, f0, f1, c1 = sys.argv[1:]
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
wall = float(s1) - float(s0)
fakes = (float(f1) - float(f0)) / hz / wall
callers = float(c1) / hz / wall
per = max(1, int(peak_calls))
def pq(xs, x):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(x * len(xs)))] if xs else "–"
clears = [b["clear_ms"] for r in rows for b in r.get("barge_ins", []) if b.get("clear_ms") is not None]
silent = [b["silent_ms"] for r in rows for b in r.get("barge_ins", []) if b.get("clear_ms") is not None and b.get("silent_ms") is not None]
barge = f"{pq(clears, 0.5)} / {pq(clears, 0.95)}, {pq(silent, 0.5)} / {pq(silent, 0.95)} ms (n={len(clears)})" if clears else "–"
print(f"| {p} | {n} | {peak_calls} | {done} | {heard} | {cores:.2f} | {100*cores/per:.2f} % | {fakes:.2f} / {callers:.2f} | {int(peak)/1024:.0f} MB | {(int(peak)-int(idle))/1024/per:.2f} MB | {q(0.5)} / {q(0.95)} ms | {barge} |")
PY
done
