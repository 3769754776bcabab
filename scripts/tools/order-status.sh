#!/bin/sh
# Example `command` tool: reads the arguments as JSON on stdin, prints the result as JSON.
# A real deployment would query the order system here.
args=$(cat)
order=$(printf '%s' "$args" | sed -n 's/.*"order_id"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
if [ -z "$order" ]; then
  echo "missing order_id" >&2
  exit 2
fi
printf '{"order_id":"%s","status":"shipped","carrier":"UPS","eta":"tomorrow"}\n' "$order"
