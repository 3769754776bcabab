#!/usr/bin/env bash
# Soak for `voxpipe serve`: about CONCURRENCY Twilio-shaped calls in flight for MINUTES, calls
# starting and ending continuously, on loopback (the same three processes as bench-serve.sh:
# `voxpipe fake all`, `voxpipe serve pipelines/serve.toml`, `voxpipe call twilio`). Every 10 s it
# samples the server's RSS (and its anonymous part, the heap), open file descriptors, threads,
# alive tokio tasks and active calls into out/soak/samples.csv; at the end it prints whether
# they stayed flat.
#
#   scripts/soak.sh [MINUTES=30] [CONCURRENCY=100] [PIPELINE=cascade]
#
# How calls overlap: each call is samples/two-turns.wav plus 3 s on the line (~19.5 s), so a new
# call starts every 19.5 s / CONCURRENCY. Callers run in batches of BATCH_SECS (60) worth of
# starts, one `voxpipe call twilio --count N --stagger-ms S` process each; the next batch starts
# when the previous one has started its last call, so the previous batch's calls end while the
# next one's begin. No new call starts after MINUTES; the run ends when the last one has ended,
# plus 100 s at zero calls (HTTP pools let idle connections go after 90 s).
#
# Disk: serve keeps a directory per call (recording, event log, summary) under out/soak/calls.
# Every 10 s the finished ones (call.json written more than 5 s ago) are read for their
# voice-to-voice metrics and deleted, so a run holds at most a few hundred of them. Caller
# reports go to out/soak/callers/ (stdout lines; no heard audio is written).
#
# Warm-up is the first WARMUP_MIN minutes (5; a third of the run when that is shorter): RSS,
# fds and tasks are compared from its end. VOXPIPE_BIN=path runs that binary instead of building
# one; SOAK_PORT (8080) is the server's port; the fakes use their fixed ports 8787..8793.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-30}"
conc="${2:-100}"
pipeline="${3:-cascade}"
port="${SOAK_PORT:-8080}"
batch_secs="${BATCH_SECS:-60}"
linger_ms=3000
target="${CARGO_TARGET_DIR:-target}"
bin="${VOXPIPE_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked -p voxpipe-cli >/dev/null
  bin="$target/release/voxpipe"
fi
for p in "$port" 8787 8788 8789 8790 8791 8792 8793; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p is in use: another serve or fakes run? (SOAK_PORT moves the server)" >&2
    exit 1
  fi
done
out="out/soak"
calls_dir="$out/calls"
rm -rf "$out/calls" "$out/callers" "$out/samples.csv" "$out/v2v.csv" "$out/summary.md" "$out/pids"
mkdir -p "$calls_dir" "$out/callers"
export TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef TWILIO_AUTH_TOKEN=soak-token
export OPENAI_API_KEY=sk-fake FAKE_API_KEY=sk-fake VOXPIPE_API_KEY=soak-key
export VOXPIPE_SERVE_LIMITS__MAX_CALLS=$((conc * 2 + 10)) VOXPIPE_SERVE_RECORDINGS_DIR="$calls_dir" RUST_LOG=warn

wav_ms=$(python3 -c 'import wave,sys; w=wave.open(sys.argv[1]); print(int(1000*w.getnframes()/w.getframerate()))' samples/two-turns.wav)
call_ms=$((wav_ms + linger_ms))
stagger_ms=$(( (call_ms + conc / 2) / conc ))
per_batch=$(( batch_secs * 1000 / stagger_ms ))
total_secs=$((minutes * 60))
warmup_secs=$(( ${WARMUP_MIN:-5} * 60 ))
[ $warmup_secs -gt $((total_secs / 3)) ] && warmup_secs=$((total_secs / 3))

fakes= server= driver=
cleanup() {
  [ -n "$driver" ] && kill "$driver" 2>/dev/null || true
  if [ -f "$out/pids" ]; then
    # Only callers still running (a finished caller's pid may belong to someone else by now).
    while read -r p; do
      grep -qa "call" "/proc/$p/cmdline" 2>/dev/null && grep -qa "$bin" "/proc/$p/cmdline" 2>/dev/null && kill "$p" 2>/dev/null || true
    done < "$out/pids"
  fi
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  [ -n "$fakes" ] && kill "$fakes" 2>/dev/null || true
}
trap cleanup EXIT

"$bin" fake all > "$out/fakes.log" 2>&1 &
fakes=$!
sleep 1
"$bin" serve pipelines/serve.toml --listen "127.0.0.1:$port" --public-url "http://127.0.0.1:$port" \
  > "$out/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q listening "$out/serve.log" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$out/serve.log" || { echo "serve did not start:" >&2; cat "$out/serve.log" >&2; exit 1; }

start=$(date +%s)
echo "t_s,rss_kb,rss_anon_kb,fds,fds_metric,tasks,threads,active_calls,calls_ended,call_dirs,load1" > "$out/samples.csv"
metrics() { curl -s -m 5 -H "Authorization: Bearer $VOXPIPE_API_KEY" "http://127.0.0.1:$port/metrics"; }
sample() {
  local m rss anon thr fds
  m=$(metrics || true)
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$server/status")
  anon=$(awk '/^RssAnon/{print $2}' "/proc/$server/status")
  thr=$(awk '/^Threads/{print $2}' "/proc/$server/status")
  fds=$(find "/proc/$server/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  awk -v t=$(($(date +%s) - start)) -v rss="$rss" -v anon="$anon" -v thr="$thr" -v fds="$fds" \
    -v dirs="$(find "$calls_dir" -mindepth 1 -maxdepth 1 | wc -l)" -v load="$(cut -d' ' -f1 /proc/loadavg)" '
    /^voxpipe_active_calls\{/ {a += $2}
    /^voxpipe_calls_total\{/ {e += $2}
    /^voxpipe_runtime_alive_tasks / {k = $2}
    /^voxpipe_process_open_fds / {f = $2}
    END {printf "%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%s\n", t, rss, anon, fds, f, k, thr, a, e, dirs, load}' <<<"$m" \
    >> "$out/samples.csv"
}
# Reads the voice-to-voice metrics of finished calls, then deletes their directories.
harvest() {
  python3 - "$calls_dir" "$out/v2v.csv" "$start" <<'PY'
import json, os, shutil, sys, time
calls, dest, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
rows = []
for d in os.listdir(calls):
    path = os.path.join(calls, d)
    summary = os.path.join(path, "call.json")
    try:
        if time.time() - os.path.getmtime(summary) < 5:
            continue
    except OSError:
        continue
    try:
        with open(os.path.join(path, "events.jsonl")) as f:
            for line in f:
                e = json.loads(line)
                if e.get("type") == "metric" and e.get("name") == "voice_to_voice_ms":
                    rows.append(f"{os.path.getmtime(summary) - start:.0f},{e['value_ms']}\n")
    except (OSError, ValueError):
        pass
    shutil.rmtree(path, ignore_errors=True)
with open(dest, "a") as f:
    f.writelines(rows)
PY
}

echo "soak: $minutes min, ~$conc calls in flight ($pipeline), a call every $stagger_ms ms, batches of $per_batch; load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
sample  # idle, before the first call
ls -l "/proc/$server/fd" > "$out/fds-idle.txt" 2>&1 || true

(
  k=0
  while :; do
    now=$(date +%s)
    left=$((start + total_secs - now))
    [ $left -le 0 ] && break
    n=$((left * 1000 / stagger_ms))
    [ $n -gt $per_batch ] && n=$per_batch
    [ $n -lt 1 ] && break
    "$bin" call twilio "http://127.0.0.1:$port/twilio/voice/$pipeline" --input samples/two-turns.wav \
      --count "$n" --stagger-ms "$stagger_ms" --linger-ms "$linger_ms" \
      > "$out/callers/batch-$k.jsonl" 2> "$out/callers/batch-$k.log" &
    echo $! >> "$out/pids"
    k=$((k + 1))
    sleep "$(awk -v n="$n" -v s="$stagger_ms" 'BEGIN{printf "%.3f", n * s / 1000}')"
  done
  wait
) &
driver=$!

while kill -0 "$driver" 2>/dev/null; do
  sleep 10
  sample
  harvest
done
load_end=$(($(date +%s) - start))
wait "$driver" || true
driver=
# Zero calls: keep sampling for 100 s (idle pooled connections close after 90 s).
for _ in $(seq 10); do
  sleep 10
  sample
  harvest
done
# What the server still holds with no call: its descriptors and sockets (for the write-up).
ls -l "/proc/$server/fd" > "$out/fds-final.txt" 2>&1 || true
ss -tanp 2>/dev/null | grep "pid=$server," > "$out/sockets-final.txt" || true
final_metrics=$(metrics || true)
echo "$final_metrics" > "$out/metrics-final.txt"
kill -TERM "$server"; wait "$server" 2>/dev/null || true
server=

python3 - "$out" "$warmup_secs" "$load_end" "$minutes" "$conc" "$pipeline" "$(nproc)" <<'PY' | tee "$out/summary.md"
import csv, glob, json, sys
out, warm, load_end, minutes, conc, pipeline, cores = sys.argv[1:]
warm, load_end = int(warm), int(load_end)
rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(open(f"{out}/samples.csv"))]
idle0 = rows[0]
# Steady state: after warm-up, while calls still start (not the wind-down of the last batch).
steady = [r for r in rows if warm <= r["t_s"] <= load_end - 30 and r["active_calls"] > 0]
zero = [r for r in rows if r["t_s"] > load_end and r["active_calls"] == 0]
if not steady:
    sys.exit("no samples after warm-up")
w, last = steady[0], steady[-1]
rss = [r["rss_kb"] for r in steady]
spread = 100 * (max(rss) - min(rss)) / w["rss_kb"]
dev = 100 * max(abs(x - w["rss_kb"]) for x in rss) / w["rss_kb"]
n = len(steady)
mt = sum(r["t_s"] for r in steady) / n
mr = sum(rss) / n
den = sum((r["t_s"] - mt) ** 2 for r in steady) or 1
slope = sum((r["t_s"] - mt) * (r["rss_kb"] - mr) for r in steady) / den * 600  # KB per 10 min
calls = [json.loads(l) for f in glob.glob(f"{out}/callers/batch-*.jsonl") for l in open(f) if l.startswith("{")]
done = sum(c.get("status") == "completed" for c in calls)
heard = sum(c.get("first_audio_ms") is not None for c in calls)
v2v = [tuple(map(float, l.split(","))) for l in open(f"{out}/v2v.csv")] if glob.glob(f"{out}/v2v.csv") else []
def q(xs, p):
    xs = sorted(xs)
    return f"{xs[min(len(xs) - 1, int(p * len(xs)))]:.0f}" if xs else "-"
allv = [v for _, v in v2v]
first5 = [v for t, v in v2v if t <= warm]
last5 = [v for t, v in v2v if t >= load_end - 300]
loads = [r["load1"] for r in rows]
conc_s = [r["active_calls"] for r in steady]
mb = lambda kb: f"{kb / 1024:.1f} MB"
z0, z1 = (zero[0], zero[-1]) if zero else (None, None)
def at(r, k):
    return "-" if r is None else f"{r[k]:.0f}"
print(f"""
Soak of `voxpipe serve`: {minutes} min, {pipeline}, ~{conc} calls in flight; warm-up {warm // 60} min {warm % 60} s; {len(rows)} samples every 10 s, {n} in steady state (t = {w['t_s']:.0f}..{last['t_s']:.0f} s)

| measure | value |
|---|---|
| calls placed / completed / failed / heard the agent | {len(calls)} / {done} / {len(calls) - done} / {heard} |
| calls in flight in steady state (min / mean / max) | {min(conc_s):.0f} / {sum(conc_s) / n:.0f} / {max(conc_s):.0f} |
| RSS idle before the first call | {mb(idle0['rss_kb'])} |
| RSS at the end of warm-up | {mb(w['rss_kb'])} |
| RSS after warm-up: min / max / last | {mb(min(rss))} / {mb(max(rss))} / {mb(last['rss_kb'])} |
| RSS spread after warm-up ((max - min) / warm-up; largest deviation from warm-up) | {spread:.1f} %; {dev:.1f} % |
| RSS trend after warm-up (least squares) | {slope / 1024:+.2f} MB per 10 min |
| anonymous RSS (heap; RssAnon) at the end of warm-up / min / max / last after warm-up | {mb(w['rss_anon_kb'])} / {mb(min(r['rss_anon_kb'] for r in steady))} / {mb(max(r['rss_anon_kb'] for r in steady))} / {mb(last['rss_anon_kb'])} |
| RSS at zero calls after the run: first / last (100 s later) | {mb(z0['rss_kb']) if z0 else '-'} / {mb(z1['rss_kb']) if z1 else '-'} |
| open fds: idle before / end of warm-up / last in steady state / zero calls after (first, last) | {idle0['fds']:.0f} / {w['fds']:.0f} / {last['fds']:.0f} / {at(z0, 'fds')}, {at(z1, 'fds')} |
| open fds in steady state (min / max) | {min(r['fds'] for r in steady):.0f} / {max(r['fds'] for r in steady):.0f} |
| alive tokio tasks: idle before / end of warm-up / last in steady state / zero calls after (first, last) | {idle0['tasks']:.0f} / {w['tasks']:.0f} / {last['tasks']:.0f} / {at(z0, 'tasks')}, {at(z1, 'tasks')} |
| alive tokio tasks in steady state (min / max) | {min(r['tasks'] for r in steady):.0f} / {max(r['tasks'] for r in steady):.0f} |
| threads: idle before / last in steady state / zero calls after | {idle0['threads']:.0f} / {last['threads']:.0f} / {at(z1, 'threads')} |
| voice-to-voice p50 / p95 (all turns, n = {len(allv)}) | {q(allv, .5)} / {q(allv, .95)} ms |
| … during warm-up / last 5 min | {q(first5, .5)} / {q(first5, .95)} ms; {q(last5, .5)} / {q(last5, .95)} ms |
| load average (1 min) over the run: min / mean / max, {cores} cores | {min(loads):.2f} / {sum(loads) / len(loads):.2f} / {max(loads):.2f} |
""")
PY
