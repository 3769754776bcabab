#!/bin/sh
# The stock-lookup tool of pipelines/local.toml: a `command` tool (arguments as JSON on stdin,
# the result on stdout, a non-zero exit for a failure). A stand-in for a real stock system,
# so the offline default needs no server.
#
#   echo '{"product": "Blue Jumpers"}' | pipelines/tools/check-stock.sh
set -eu
args=$(cat)
product=$(printf '%s' "$args" | sed -n 's/.*"product"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
if [ -z "$product" ]; then
  echo "expected {\"product\": \"...\"}, got: $args" >&2
  exit 2
fi
# Match loosely, as a caller names things: lower case, "jumpers" finds "jumper".
key=$(printf '%s' "$product" | tr '[:upper:]' '[:lower:]')
case "$key" in
  *blue*jumper*) echo "The blue jumper is in stock: 12 left, at 35 pounds." ;;
  *jumper*) echo "Jumpers come in blue (in stock) and grey (sold out until the 2nd of December)." ;;
  *black*coat*|*coat*) echo "The black coat is sold out until the 4th of December." ;;
  *scarf*) echo "The wool scarf is in stock: 30 left, at 15 pounds." ;;
  *trainer*|*sneaker*|*shoe*) echo "The white trainers are in stock in sizes 38 to 45, at 60 pounds." ;;
  *) echo "We do not sell \"$product\"." ;;
esac
