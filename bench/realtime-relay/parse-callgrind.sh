#!/bin/sh
# Instructions one model event costs parse_server_event(), counted by
# callgrind: independent of the machine's load, so two builds can be
# compared on a noisy VM where the nanoseconds of realtime-relay-parse
# cannot. Each event is parsed 1 and 10001 times; the difference over 10000
# is the cost of one parse (start-up cancels out).
#
# usage: bench/realtime-relay/parse-callgrind.sh [BUILD_DIR]   (default ./build)
# Needs valgrind.
set -eu
BUILD=${1:-./build}
EXE=$BUILD/bench/realtime-relay/realtime-relay-parse
[ -x "$EXE" ] || { echo "parse-callgrind.sh: $EXE not found: build first (ninja -C $BUILD)" >&2; exit 2; }
command -v valgrind > /dev/null || { echo "parse-callgrind.sh: valgrind is required" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
total() {
  timeout -s KILL 300 valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" "$EXE" "$1" "$2" > /dev/null 2>&1
  sed -n 's/^summary: *//p' "$TMP/cg.out"
}
printf '%-18s %14s\n' event "instructions"
for ev in audio.delta transcript.delta speech_started response.done; do
  one=$(total 1 "$ev")
  many=$(total 10001 "$ev")
  printf '%-18s %14d\n' "$ev" $(( (many - one) / 10000 ))
done
