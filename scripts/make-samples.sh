#!/usr/bin/env bash
# Regenerates the bundled sample calls in samples/ with espeak-ng and sox (16 kHz mono PCM16).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
say() { espeak-ng -v en-us -s 150 -w "$tmp/$1.raw.wav" "$2"; sox "$tmp/$1.raw.wav" -r 16000 -c 1 -b 16 "$tmp/$1.wav"; }
sil() { sox -n -r 16000 -c 1 -b 16 "$tmp/$1.wav" trim 0 "$2"; }
sil s0 0.5; sil s1 7.0; sil s2 1.0; sil s3 1.4; sil s4 6.0

# The fake pipelines' call (the tests of the native and cascade fakes use it).
say t1 "Hi, I would like to check the status of my order."
say t2 "Thanks. Can you also book an appointment for tomorrow morning?"
sox "$tmp/s0.wav" "$tmp/t1.wav" "$tmp/s1.wav" "$tmp/t2.wav" "$tmp/s2.wav" samples/two-turns.wav
echo "samples/two-turns.wav: $(soxi -D samples/two-turns.wav) s"

# The offline default's call (pipelines/local.toml): the first question needs its stock tool.
say t1 "Hi, is the black coat in stock?"
sox "$tmp/s0.wav" "$tmp/t1.wav" "$tmp/s1.wav" "$tmp/t2.wav" "$tmp/s2.wav" samples/shop-call.wav
echo "samples/shop-call.wav: $(soxi -D samples/shop-call.wav) s"

# A caller who speaks over the agent (scripts/bench-serve.sh times the barge-in): the question,
# then, half a second into the reply on the fakes, "wait" and a correction.
say t1 "Hi, I would like to check the status of my order."
say b1 "Wait, sorry, I meant the order from last week."
sox "$tmp/s0.wav" "$tmp/t1.wav" "$tmp/s3.wav" "$tmp/b1.wav" "$tmp/s4.wav" samples/barge-in.wav
echo "samples/barge-in.wav: $(soxi -D samples/barge-in.wav) s"
