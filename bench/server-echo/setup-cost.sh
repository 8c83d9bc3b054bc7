#!/bin/sh
# What setting up and ending a call costs the server, and on which threads:
# short echo calls one after another, so that set-up dominates.
#
# usage: bench/server-echo/setup-cost.sh [BUILD_DIR]      (default ./build)
# env:   CALLS=200      calls, started GAP_MS apart (a few are up at a time)
#        GAP_MS=50
#        AUDIO_MS=200   caller audio per call
#        TEMPLATE=pipelines/echo.pipeline
#        AGENT=1        the agent template instead (twiliosrc ! realtimemodel ! twiliosink
#                       against a realtime-local --canned started here): what a call
#                       with a model connection costs to set up
#        SERVER_OPTS=   more phone-agent options
#
# After one warm-up call (the first loads the plugins), prints the server's
# CPU time (user and sys, from /proc) per call, then per thread name the CPU
# time and the voluntary context switches per call, for the threads alive
# at the end (a thread that ended in between counts in the process total
# only: the worker pools' threads come and go). Each call also carries
# AUDIO_MS of frames (about 20 us of CPU a frame), and the media thread
# wakes up to 100 times a second whatever the number of calls. Talks only to
# 127.0.0.1; every process is bounded in time.
set -eu
. "$(dirname "$0")/../common/lib.sh" # server_port, model_port
BUILD=${1:-./build}
CALLS=${CALLS:-200}
GAP_MS=${GAP_MS:-50}
AUDIO_MS=${AUDIO_MS:-200}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
TEMPLATE=${TEMPLATE:-$SRC/pipelines/echo.pipeline}
SERVER=$BUILD/tools/phone-agent/phone-agent
EMU=$BUILD/tools/twilio-emulator/twilio-emulator
MODEL=$BUILD/tools/realtime-local/realtime-local
AGENT=${AGENT:-0}
for exe in "$SERVER" "$EMU" $([ "$AGENT" = 1 ] && echo "$MODEL"); do
  [ -x "$exe" ] || { echo "setup-cost.sh: $exe not found: build first (ninja -C $BUILD)" >&2; exit 2; }
done
BUILD_ABS=$(cd "$BUILD" && pwd)
export GST_PLUGIN_PATH="$BUILD_ABS/plugins/twilio:$BUILD_ABS/plugins/realtime"
TMP=$(mktemp -d)
PID=
MPID=
cleanup() {
  for p in $PID $MPID; do kill "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
LIMIT_S=$((CALLS * GAP_MS / 1000 + AUDIO_MS / 1000 + 60))

if [ "$AGENT" = 1 ]; then
  timeout -s KILL "$((LIMIT_S + 30))" "$MODEL" --address 127.0.0.1 --port 0 --canned > "$TMP/model.out" 2> "$TMP/model.err" &
  MPID=$!
  mport=$(model_port "$TMP/model.out") ||
    { echo "setup-cost.sh: the model did not start:" >&2; cat "$TMP/model.err" >&2; exit 1; }
  TEMPLATE=$TMP/agent.pipeline
  printf 'twiliosrc ! realtimemodel location=ws://127.0.0.1:%s/v1/realtime ! twiliosink\n' "$mport" > "$TEMPLATE"
fi

: > "$TMP/server.out"
timeout -s KILL "$((LIMIT_S + 30))" "$SERVER" serve --pipeline "$TEMPLATE" --address 127.0.0.1 --port 0 \
  --max-calls 0 --out-dir "$TMP" --log-level error ${SERVER_OPTS:-} > "$TMP/server.out" 2> "$TMP/server.err" &
PID=$!
port=$(server_port "$TMP/server.out") || { echo "setup-cost.sh: the server did not start:" >&2; cat "$TMP/server.err" >&2; exit 1; }
SPID=$(pgrep -P "$PID" | head -n 1) # the server under timeout
emu() {
  timeout -s KILL "$LIMIT_S" "$EMU" --url "http://127.0.0.1:$port/twilio/voice" --tail-ms 100 --transport raw \
    --quiet --max-duration-s "$LIMIT_S" "$@"
}

# thread id, name (numbers in names folded to N), CPU ticks, voluntary switches
threads() {
  for t in /proc/"$SPID"/task/*; do
    name=$(sed 's/[0-9][0-9]*/N/g' "$t/comm")
    printf '%s %s %s %s\n' "${t##*/}" "$name" "$(awk '{ print $14 + $15 }' "$t/stat")" \
      "$(awk '/^voluntary_ctxt_switches/ { print $2 }' "$t/status")"
  done
}
process() { awk '{ print $14, $15 }' /proc/"$SPID"/stat; }

emu --calls 1 --audio synth:500 > /dev/null 2>&1
sleep 1
threads > "$TMP/before"
p0=$(process)
emu --calls "$CALLS" --ramp-ms "$((CALLS * GAP_MS))" --audio "synth:$AUDIO_MS" > "$TMP/emu.out" 2>&1 || true
sleep 1
p1=$(process)
threads > "$TMP/after"
hz=$(getconf CLK_TCK)

echo "setup-cost: $CALLS calls of $AUDIO_MS ms, $GAP_MS ms apart, $(basename "$TEMPLATE") ${SERVER_OPTS:-}"
grep -o 'completed=[0-9]*' "$TMP/emu.out" | head -n 1 | sed 's/^/  outcomes: /'
echo "$p0 $p1" | awk -v n="$CALLS" -v hz="$hz" '{
  printf "  process: user %.2f sys %.2f total %.2f ms per call\n", ($3 - $1) * 1000 / hz / n, ($4 - $2) * 1000 / hz / n,
    ($3 + $4 - $1 - $2) * 1000 / hz / n }'
awk -v n="$CALLS" -v hz="$hz" 'NR == FNR { cpu[$1] = $3; cs[$1] = $4; next }
  { t[$2] += $3 - ($1 in cpu ? cpu[$1] : 0); w[$2] += $4 - ($1 in cs ? cs[$1] : 0) }
  END { for (k in t) if (t[k] > 0 || w[k] >= n / 10)
          printf "  thread %-16s %.2f ms per call, %.1f context switches per call\n", k, t[k] * 1000 / hz / n, w[k] / n }' \
  "$TMP/before" "$TMP/after" | sort -k3 -rn
