#!/usr/bin/env bash
# voxpipe and Pipecat back to back, on the same fake OpenAI server, WAVs, fake latencies and
# turn settings: Pipecat's harness from ../shared/peers/pipecat/ (copy it, install its venv as
# its README §1 says, export PEER_DIR). For each N it runs:
#
#   1. voxpipe: `voxpipe serve pipelines/bench/peer-serve.toml` (the cascade
#      pipelines/bench/pipecat-peer.toml: Silero, 200 ms end-of-turn silence) with N
#      Twilio-shaped callers from `voxpipe call twilio` in another process, each speaking
#      Pipecat's u1, u2, u3 in turn (3.5 s apart) for SECONDS;
#   2. Pipecat 1.14: its in-process bench.py with N sessions, RTVI off, the same duration;
#
# both against one fake_openai.py (STT 100 ms, LLM first token 200 ms + 20 ms a token, TTS
# first byte 150 ms), and prints one table with the ratios. Definitions are Pipecat's: e2e from
# the 20 ms frame holding the last speech sample (-40 dBFS on 10 ms windows) to the first reply
# audio; overhead = e2e - the fake's own time (STT answer + LLM time to the text of the first
# TTS request + TTS first byte, medians from the fake's log) - the 200 ms VAD stop wait; first
# turns of each call are cold and left out; CPU is the serving process over the run after
# WARMUP seconds, RSS its peak. Loopback only; every run ends by itself.
#
#   PEER_DIR=/path/to/peer scripts/bench-peer.sh [N...]     # default: 1 10
set -euo pipefail
cd "$(dirname "$0")/.."
peer="${PEER_DIR:?set PEER_DIR to a copy of ../shared/peers/pipecat with its venv installed}"
[ -x "$peer/venv/bin/python" ] || { echo "no venv in $PEER_DIR: follow its README §1" >&2; exit 2; }
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(1 10)
secs="${SECONDS_PER_RUN:-75}" warmup="${WARMUP:-12}"
target="${CARGO_TARGET_DIR:-target}"
bin="${VOXPIPE_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked -p voxpipe-cli >/dev/null
  bin="$target/release/voxpipe"
fi
out="out/bench-peer"
rm -rf "$out" && mkdir -p "$out"
"$bin" models pull silero-vad onnxruntime >/dev/null

# The caller: u1, u2, u3, u1, … with 3.5 s after each, for SECONDS; and where each utterance's
# speech ends, in call time.
python3 - "$peer/audio" "$out/caller.wav" "$out/t_end.json" "$secs" <<'PY'
import json, struct, sys, wave
src, dst, ends_path, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
clips = []
for name in ("u1", "u2", "u3"):
    w = wave.open(f"{src}/{name}.wav")
    assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
    clips.append(struct.unpack(f"<{w.getnframes()}h", w.readframes(w.getnframes())))
rate, gap = 16000, [0] * int(16000 * 3.5)
pcm, ends = [0] * 8000, []
i = 0
while len(pcm) + len(clips[i % 3]) + len(gap) <= secs * rate:
    clip = clips[i % 3]
    # Last 10 ms window above -40 dBFS (Pipecat's definition), then the 20 ms frame holding it.
    last = max(w for w in range(0, len(clip) - 160, 160)
               if (sum(s * s for s in clip[w:w + 160]) / 160) ** 0.5 > 32768 * 0.01)
    last_sample = len(pcm) + last + 159
    ends.append((last_sample * 1000 // rate) // 20 * 20)
    pcm += list(clip) + gap
    i += 1
out = wave.open(dst, "wb"); out.setnchannels(1); out.setsampwidth(2); out.setframerate(rate)
out.writeframes(struct.pack(f"<{len(pcm)}h", *pcm)); out.close()
json.dump(ends, open(ends_path, "w"))
PY

nice -n -10 "$peer/venv/bin/python" "$peer/fake_openai.py" --port 8765 > "$out/fake.log" 2>&1 &
fake=$!
server=
trap 'kill $fake $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:8765/health >/dev/null && break; sleep 0.1; done
export TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef TWILIO_AUTH_TOKEN=bench-token
export VOXPIPE_API_KEY=bench-key PEER_API_KEY=sk-voxpipe RUST_LOG=warn
hz=$(getconf CLK_TCK)
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $(date -u '+%d %b %H:%M UTC')"
echo
echo "| N | framework | turns answered (warm) | e2e p50 / p95 | overhead p50 / p95 | CPU of a core | CPU per call | peak RSS | RSS per call |"
echo "|---|---|---|---|---|---|---|---|---|"
for n in "${sizes[@]}"; do
  # voxpipe
  curl -sf -X POST http://127.0.0.1:8765/reset >/dev/null
  "$bin" serve pipelines/bench/peer-serve.toml > "$out/serve-$n.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do grep -q listening "$out/serve-$n.log" 2>/dev/null && break; sleep 0.1; done
  idle=$(awk '/VmRSS/{print $2}' /proc/$server/status)
  stagger=$(( n > 1 ? 4000 / (n - 1) : 0 ))
  "$bin" call twilio http://127.0.0.1:8080/twilio/voice/cascade --input "$out/caller.wav" --count "$n" \
    --stagger-ms "$stagger" --linger-ms 2000 --api-port 8794 --out "$out/caller-$n" > /dev/null 2> "$out/caller-$n.log" &
  callers=$!
  sleep "$warmup"
  c0=$(awk '{print $14+$15}' /proc/$server/stat); s0=$(date +%s.%N)
  sleep $(( secs - warmup - 5 ))
  c1=$(awk '{print $14+$15}' /proc/$server/stat); s1=$(date +%s.%N)
  wait $callers || true
  peak=$(awk '/VmHWM/{print $2}' /proc/$server/status)
  kill -TERM $server; wait $server 2>/dev/null || true; server=
  curl -sf http://127.0.0.1:8765/events > "$out/events-voxpipe-$n.json"
  python3 - "$out" "$n" "$c0" "$c1" "$s0" "$s1" "$hz" "$idle" "$peak" <<'PY'
import glob, json, statistics, sys, time
out, n, c0, c1, s0, s1, hz, idle, peak = sys.argv[1:]
n, hz = int(n), int(hz)
ends = json.load(open(f"{out}/t_end.json"))
ev = json.load(open(f"{out}/events-voxpipe-{n}.json"))["events"]
tokens = ["Sure", ",", " here", " is", " a", " short", " answer", ".", " It", " has", " exactly", " two", " sentences", "."]
# The callers log their clock's zero in Unix ms; the fake logs CLOCK_MONOTONIC seconds.
mono_minus_unix = time.monotonic() - time.time()
stts = sorted((e for e in ev if e["kind"] == "stt" and "t_response" in e), key=lambda e: e["t_arrival"])
llms = sorted((e for e in ev if e["kind"] == "llm" and e.get("t_tokens")), key=lambda e: e["t_arrival"])
ttss = sorted((e for e in ev if e["kind"] == "tts" and "t_first_byte" in e), key=lambda e: e["t_arrival"])
after = lambda xs, t: next((x for x in xs if x["t_arrival"] > t), None)
rows = []  # one per warm turn: the hops, in ms
total = 0
for f in sorted(glob.glob(f"{out}/caller-{n}/timing-*.jsonl")):
    log = [json.loads(l) for l in open(f)]
    zero = float(next(r["name"] for r in log if r["event"] == "clock")) / 1000 + mono_minus_unix
    starts = [r["t_ms"] for r in log if r["event"] == "audio_start"]
    for end in ends[1:]:
        total += 1
        heard = next((s for s in starts if end < s < end + 5000), None)
        if heard is None:
            continue
        t_end, t_heard = zero + end / 1000, zero + heard / 1000
        stt = after(stts, t_end)
        llm = stt and after(llms, stt["t_response"] - 0.001)
        tts = llm and after(ttss, llm["t_arrival"])
        if not (stt and llm and tts) or tts["t_first_byte"] > t_heard:
            rows.append({"e2e": heard - end})
            continue
        text = tts["text"].strip()
        k = next((i for i in range(len(tokens)) if len("".join(tokens[:i + 1]).strip()) >= len(text)), len(tokens) - 1)
        t_text = llm["t_tokens"][min(k, len(llm["t_tokens"]) - 1)]
        ms = lambda a, b: 1000 * (b - a)
        r = {"e2e": heard - end, "to_stt": ms(t_end, stt["t_arrival"]), "stt": ms(stt["t_arrival"], stt["t_response"]),
             "stt_to_llm": ms(stt["t_response"], llm["t_arrival"]), "llm_text": ms(llm["t_arrival"], t_text),
             "text_to_tts": ms(t_text, tts["t_arrival"]), "tts": ms(tts["t_arrival"], tts["t_first_byte"]),
             "byte_to_ear": ms(tts["t_first_byte"], t_heard)}
        r["overhead"] = r["e2e"] - r["stt"] - r["llm_text"] - r["tts"] - 200
        rows.append(r)
q = lambda key, p: (lambda xs: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan"))(sorted(r[key] for r in rows if key in r))
cores = (float(c1) - float(c0)) / hz / (float(s1) - float(s0))
answered = len(rows)
print(f"| {n} | voxpipe | {answered} of {total} | {q('e2e', .5):.0f} / {q('e2e', .95):.0f} ms | {q('overhead', .5):.0f} / {q('overhead', .95):.0f} ms "
      f"| {100 * cores:.1f} % | {100 * cores / n:.2f} % | {int(peak) / 1024:.0f} MB | {(int(peak) - int(idle)) / 1024 / n:.2f} MB |")
hops = {k: q(k, .5) for k in ("to_stt", "stt", "stt_to_llm", "llm_text", "text_to_tts", "tts", "byte_to_ear", "e2e")}
json.dump({"n": n, "e2e_p50": q("e2e", .5), "e2e_p95": q("e2e", .95), "over_p50": q("overhead", .5), "over_p95": q("overhead", .95),
           "cpu_pct": 100 * cores, "rss_mb": int(peak) / 1024, "rss_per_call": (int(peak) - int(idle)) / 1024 / n,
           "hops_p50": hops, "joined": sum("overhead" in r for r in rows)},
          open(f"{out}/voxpipe-{n}.json", "w"))
PY
  # Pipecat, same fake, same N and duration.
  curl -sf -X POST http://127.0.0.1:8765/reset >/dev/null
  (cd "$peer" && timeout 250 nice -n -10 ./venv/bin/python bench.py --n "$n" --duration "$secs" --warmup "$warmup" \
     --stagger 4 --no-rtvi --out "$OLDPWD/$out/pipecat-$n.json" > "$OLDPWD/$out/pipecat-$n.out" 2> "$OLDPWD/$out/pipecat-$n.err") || true
  python3 - "$out" "$n" <<'PY'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
try:
    s = json.load(open(f"{out}/pipecat-{n}.json"))["summary"]
except Exception as e:
    print(f"| {n} | Pipecat 1.14 | run failed ({e}); see {out}/pipecat-{n}.err | | | | | | |")
    sys.exit()
m = s["metrics"]
e, o = m["e2e"] or {}, m["overhead"] or {}
rss_per = (s["rss_peak_mb"] - s["rss_baseline_mb"]) / n
print(f"| {n} | Pipecat 1.14 | {s['turns_measured']} of {s['turns_total'] - n} | {e.get('p50_ms', 0):.0f} / {e.get('p95_ms', 0):.0f} ms "
      f"| {o.get('p50_ms', 0):.0f} / {o.get('p95_ms', 0):.0f} ms | {s['cpu_pct_window']:.1f} % | {s['cpu_pct_window'] / n:.2f} % "
      f"| {s['rss_peak_mb']:.0f} MB | {rss_per:.2f} MB |")
v = json.load(open(f"{out}/voxpipe-{n}.json"))
ratio = lambda a, b: f"{a / b:.1f}×" if b > 0 else "–"
print(f"| {n} | **ratio** (Pipecat ÷ voxpipe) | | {ratio(e.get('p50_ms', 0), v['e2e_p50'])} | {ratio(o.get('p50_ms', 0), v['over_p50'])} "
      f"| {ratio(s['cpu_pct_window'], v['cpu_pct'])} | | {ratio(s['rss_peak_mb'], v['rss_mb'])} | {ratio(rss_per, v['rss_per_call'])} |")
PY
done
echo
echo "Where the time goes, p50 ms (warm turns; voxpipe's hops joined from the caller's and the fake's logs, N = 1 only; Pipecat's from its bench):"
echo
echo "| N | framework | end of speech → STT request (incl. 200 ms stop wait) | STT (fake) | STT → LLM request | LLM to the first TTS text (fake) | text → TTS request | TTS first byte (fake) | first byte → heard | e2e |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for n in "${sizes[@]}"; do
  python3 - "$out" "$n" <<'PY'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
h = json.load(open(f"{out}/voxpipe-{n}.json"))["hops_p50"]
# The callers share one key, so the fake's log tells calls apart only by time: exact for one
# call; with several, a turn may be joined to another call's request, so only N = 1 is shown.
if n == 1: print(f"| {n} | voxpipe | {h['to_stt']:.0f} | {h['stt']:.0f} | {h['stt_to_llm']:.0f} | {h['llm_text']:.0f} | {h['text_to_tts']:.0f} | {h['tts']:.0f} | {h['byte_to_ear']:.0f} | {h['e2e']:.0f} |")
try:
    m = json.load(open(f"{out}/pipecat-{n}.json"))["summary"]["metrics"]
except Exception:
    sys.exit()
g = lambda k: (m.get(k) or {}).get("p50_ms", float("nan"))
print(f"| {n} | Pipecat 1.14 | {g('vad_lag') + g('vad_stop_to_stt_req'):.0f} | {g('stt_server'):.0f} | {g('stt_resp_to_llm_req'):.0f} | {g('llm_server_first_sentence'):.0f} | {g('sentence_to_tts_req'):.0f} | {g('tts_server_ttfb'):.0f} | {g('tts_byte_to_audio_out'):.0f} | {g('e2e'):.0f} |")
PY
done
