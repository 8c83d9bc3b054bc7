#!/bin/sh
# Instructions the agent relay's server spends on its calls, counted by
# callgrind: independent of the machine's load, so a change to the per-frame
# path can be compared run against run on a noisy VM where CPU time cannot.
#
# usage: bench/agent-capacity/callgrind.sh [BUILD_DIR] [OUT_FILE]   (default ./build, a temp file)
# env:   CALLS=3 AUDIO_MS=20000   the emulator's calls (one media thread serves them)
#        SERVER_OPTS=             more phone-agent options (e.g. --call-log= for none)
#        MODEL_OPTS=              more realtimemodel properties (e.g. turn-append-ms=0)
#        CACHE_KB=                simulate a last-level cache of this many kB (e.g. 128)
#                                 and print the data lines each function misses per frame
#
# The server (tools/phone-agent, one media thread) runs under callgrind with
#   twiliosrc ! realtimemodel location=ws://127.0.0.1:PORT/v1/realtime ! twiliosink
# against realtime-local --canned, natively. Prints the program total, the
# frames each way (from the emulator's report) and the inclusive
# instructions of the per-frame functions: the media thread's loop, the
# caller's side (inbound text handled, realtimemodel's chain) and the
# model's side (its events handled, twiliosink sending to Twilio). How much of each
# call the agent speaks depends on where the synthetic caller's barge-ins
# fall under callgrind's timing, so compare the caller's side per inbound
# frame and the model's side per frame heard, not the totals. The raw
# profile stays in OUT_FILE for callgrind_annotate. Needs valgrind and jq.
# Talks only to 127.0.0.1; every process is bounded by timeout.
set -eu
. "$(dirname "$0")/../common/lib.sh" # model_port, callgrind_calls, kill_wrapped
BUILD=${1:-./build}
OUT=${2:-$(mktemp /tmp/callgrind.agent.XXXXXX)}
CALLS=${CALLS:-3}
AUDIO_MS=${AUDIO_MS:-20000}
SERVER=$BUILD/tools/phone-agent/phone-agent
EMU=$BUILD/tools/twilio-emulator/twilio-emulator
MODEL=$BUILD/tools/realtime-local/realtime-local
for exe in "$SERVER" "$EMU" "$MODEL"; do
  [ -x "$exe" ] || { echo "callgrind.sh: $exe not found: build first (ninja -C $BUILD)" >&2; exit 2; }
done
command -v valgrind > /dev/null || { echo "callgrind.sh: valgrind is required" >&2; exit 2; }
command -v jq > /dev/null || { echo "callgrind.sh: jq is required" >&2; exit 2; }
BUILD_ABS=$(cd "$BUILD" && pwd)
export GST_PLUGIN_PATH="$BUILD_ABS/plugins/twilio:$BUILD_ABS/plugins/realtime"
TMP=$(mktemp -d)
VP=
MP=
cleanup() {
  kill_wrapped $VP $MP
  rm -rf "$TMP"
}
trap cleanup EXIT

timeout -s KILL 600 "$MODEL" --address 127.0.0.1 --port 0 --canned > "$TMP/model.out" 2> "$TMP/model.err" &
MP=$!
MPORT=$(model_port "$TMP/model.out") ||
  { echo "callgrind.sh: the model did not start:" >&2; cat "$TMP/model.err" >&2; exit 1; }
printf 'twiliosrc ! realtimemodel location=ws://127.0.0.1:%s/v1/realtime %s ! twiliosink\n' "$MPORT" "${MODEL_OPTS:-}" > "$TMP/agent.pipeline"

callgrind_calls "$SERVER" "$EMU" "$TMP/agent.pipeline" "$OUT" "$CALLS" "$AUDIO_MS" "$TMP" --report "$TMP/report.json" ||
  exit 1
[ -s "$TMP/report.json" ] || { echo "callgrind.sh: no emulator report" >&2; exit 1; }
# frames the caller sent, and the agent's frames the caller heard (20 ms each)
set -- $(jq -r '[ ([.calls[].frames_sent // 0] | add), ([.calls[].played_ms // 0] | add / 20 | floor) ] | map(tostring) | join(" ")' "$TMP/report.json")
IN=$1
HEARD=$2
echo "callgrind: agent server, $CALLS calls x $AUDIO_MS ms on one media thread ($BUILD); profile in $OUT"
echo "frames: $IN from the caller, $HEARD of the agent heard"
callgrind_annotate "$OUT" 2> /dev/null | grep "PROGRAM TOTALS"
# per_frame EVENTS DIGITS: the per-frame functions' inclusive counts of
# callgrind's EVENTS (a comma list, summed; "" for instructions) and the same
# per frame, with DIGITS decimals. A count is a column of the annotation
# (with a percentage after it), or "." for none.
per_frame() {
  callgrind_annotate --inclusive=yes --tree=none ${1:+--show=$1} "$OUT" 2> /dev/null |
    awk -v in_f="$IN" -v out_f="$HEARD" -v ncols="$(echo "${1:-Ir}" | awk -F, '{ print NF }')" -v digits="$2" '
    function num(s) { gsub(",", "", s); return s + 0 }
    { n = 0; t = 0
      for (i = 1; i <= NF && n < ncols; i++) if ($i ~ /^([0-9,]+|\.)$/) { n++; t += ($i == "." ? 0 : num($i)) }
      if (n < ncols) next
      for (k = 0; k < 5; k++) if (index($0, f[k]) && !(f[k] in seen)) {
        seen[f[k]] = 1; per = (d[k] == "in" ? in_f : out_f)
        printf "%15s  %-38s %8.*f per %s frame\n", (ncols == 1 ? $1 : t), f[k], digits, (per > 0 ? t / per : 0),
          (d[k] == "in" ? "caller" : "heard") } }
    BEGIN { f[0] = "SocketLoop::Impl::run()"; d[0] = "in"; f[1] = "pa_call_handle_text("; d[1] = "in";
            f[2] = "gstrealtimemodel.cpp:sink_chain("; d[2] = "in"; f[3] = "gstrealtimemodel.cpp:on_ws_message("; d[3] = "out";
            f[4] = "gsttwiliosink.cpp:send_held("; d[4] = "out" }'
}
per_frame "" 0
if [ -n "${CACHE_KB:-}" ]; then
  echo "data lines missed in a ${CACHE_KB} kB last-level cache (reads + writes):"
  per_frame DLmr,DLmw 1
fi
