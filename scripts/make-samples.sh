#!/usr/bin/env bash
# Regenerates the bundled sample calls in samples/ with espeak-ng and sox (16 kHz mono PCM16).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
say() { espeak-ng -v en-us -s 150 -w "$tmp/$1.raw.wav" "$2"; sox "$tmp/$1.raw.wav" -r 16000 -c 1 -b 16 "$tmp/$1.wav"; }
sil() { sox -n -r 16000 -c 1 -b 16 "$tmp/$1.wav" trim 0 "$2"; }
sil s0 0.5; sil s1 7.0; sil s2 1.0

# The fake pipelines' call (the tests of the native and cascade fakes use it).
say t1 "Hi, I would like to check the status of my order."
say t2 "Thanks. Can you also book an appointment for tomorrow morning?"
sox "$tmp/s0.wav" "$tmp/t1.wav" "$tmp/s1.wav" "$tmp/t2.wav" "$tmp/s2.wav" samples/two-turns.wav
echo "samples/two-turns.wav: $(soxi -D samples/two-turns.wav) s"

# The offline default's call (pipelines/local.toml): the first question needs its stock tool.
say t1 "Hi, is the black coat in stock?"
sox "$tmp/s0.wav" "$tmp/t1.wav" "$tmp/s1.wav" "$tmp/t2.wav" "$tmp/s2.wav" samples/shop-call.wav
echo "samples/shop-call.wav: $(soxi -D samples/shop-call.wav) s"
