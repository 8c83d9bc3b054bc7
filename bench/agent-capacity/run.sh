#!/bin/sh
# Capacity of the whole agent relay on one machine: the per-call server
# (tools/phone-agent) running an agent template
#   twiliosrc ! realtimemodel location=ws://127.0.0.1:PORT/v1/realtime ! twiliosink
# pointed at ONE standalone local model in canned mode (tools/realtime-local
# --canned: no STT/TTS, pre-rendered replies), with N concurrent calls placed
# by tools/twilio-emulator. Same measuring approach as bench/server-echo/run.sh.
#
# usage: bench/agent-capacity/run.sh [BUILD_DIR]        (default ./build)
# env:   CALLS="10 25 50"  ladder of concurrent call counts
#        AUDIO_MS=15000    caller audio per call (synthetic speech)
#        RAMP_MS=2000      call starts spread over this time
#        TAIL_MS=1500      emulator keeps the call open this long after its audio
#        TRANSPORT=raw     emulator WebSocket client
#        PHASES=20         emulator --phases: the calls' 20 ms frames spread over this many
#                          phases (20: 1 ms apart), as independent calls' are; PHASES=1 sends
#                          every call's frame at the same instant (see bench/server-echo/run.sh)
#        MODEL_OPTS=       more realtimemodel properties (e.g. silence-duration-ms=300)
#        SINK_OPTS=        more twiliosink properties (e.g. mark-interval=100)
#        SERVER_OPTS=      more phone-agent options
#        RELAY=            measure another relay instead of phone-agent, under the same
#                          load: a shell command that starts it in the foreground (use
#                          exec), listening on 127.0.0.1:$RELAY_PORT and dialling the
#                          model at $MODEL_URL (both exported to it); see README.md
#        RELAY_PORT=5050   RELAY_WEBHOOK=/incoming-call   where the emulator calls it
#        PLACEMENT=        pinned: the server (or RELAY) on CPU 0, the emulator and the
#                          model on the others; awake: as pinned, with a SCHED_IDLE busy
#                          loop beside the server that keeps CPU 0 from idling between its
#                          rounds (what a VM's idle spells cost it; see README.md)
#
# Per N it prints: calls completed / N; p99 frame lateness (emulator pacing
# error) and playout underruns (report totals); response latency p50/p99
# (end of caller turn to first heard reply onset) when present; the server's
# CPU (user+sys from /proc/PID/stat) per call-second, the same in the steady
# state (from 1 s after the last call started to 1 s before the first one
# ends; with its split between user and kernel time) with what setting up
# and ending a call costs as follows from the two, and RSS growth per call
# (VmHWM minus the VmRSS after one short warm-up call, over N: libraries and
# plugins loaded by the first call are not counted per call); the model server's CPU per call-second
# and peak RSS; the emulator's own CPU per call-second and peak RSS.
#
# Builds nothing: run `ninja -C BUILD_DIR` first. Needs jq. Everything stays
# on 127.0.0.1; every process runs under timeout and is killed at exit.
set -eu
. "$(dirname "$0")/../common/lib.sh" # server_port, model_port, wait_for_listener, placement_*

BUILD=${1:-./build}
CALLS=${CALLS:-10 25 50}
AUDIO_MS=${AUDIO_MS:-15000}
RAMP_MS=${RAMP_MS:-2000}
TAIL_MS=${TAIL_MS:-1500}
TRANSPORT=${TRANSPORT:-raw}
PHASES=${PHASES:-20}
RELAY_PORT=${RELAY_PORT:-5050}
RELAY_WEBHOOK=${RELAY_WEBHOOK:-/incoming-call}
SERVER=$BUILD/tools/phone-agent/phone-agent
EMU=$BUILD/tools/twilio-emulator/twilio-emulator
MODEL=$BUILD/tools/realtime-local/realtime-local

for exe in "$SERVER" "$EMU" "$MODEL"; do
  if [ ! -x "$exe" ]; then
    echo "run.sh: $exe not found: build first (ninja -C $BUILD)" >&2
    exit 2
  fi
done
command -v jq > /dev/null || { echo "run.sh: jq is required" >&2; exit 2; }
PLACEMENT=${PLACEMENT:-}
placement_init "$PLACEMENT" || exit 2
BUILD_ABS=$(cd "$BUILD" && pwd)
export GST_PLUGIN_PATH="$BUILD_ABS/plugins/twilio:$BUILD_ABS/plugins/realtime${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"

TICKS=$(getconf CLK_TCK)
LIMIT_S=$((AUDIO_MS / 1000 + RAMP_MS / 1000 + 60))   # emulator's own bound
KILL_S=$((LIMIT_S + 30))                             # hard bound on every process
TMP=$(mktemp -d)
SERVER_PID=   # the timeout wrappers (they forward TERM to their child)
MODEL_PID=
EMU_PID=
spid=          # the server and model processes themselves
mpid=
SPIN_PID=      # PLACEMENT=awake's busy loop
cleanup() {
  for p in $spid $mpid; do kill -KILL "$p" 2>/dev/null || true; done
  for p in $SERVER_PID $MODEL_PID $EMU_PID; do kill -TERM "$p" 2>/dev/null || true; done
  [ -z "$SPIN_PID" ] || kill_wrapped "$SPIN_PID"
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# user and system ticks, "U S"
cpu_split() { awk '{ print $14, $15 }' "/proc/$1/stat"; }
# CPU time of all of a process's threads in ns (scheduler's count, finer than ticks)
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
status_kb() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status"; }

run_once() {
  n=$1
  # the model: one process for all calls, fresh for each N
  $LOAD_ON timeout --foreground -s KILL "$KILL_S" "$MODEL" --address 127.0.0.1 --port 0 --canned > "$TMP/model.out" 2> "$TMP/model.err" &
  MODEL_PID=$!
  if ! mport=$(model_port "$TMP/model.out"); then
    echo "run.sh: the model did not start:" >&2; cat "$TMP/model.out" "$TMP/model.err" >&2; exit 1
  fi
  if [ -n "${RELAY:-}" ]; then
    # something already there would be measured in the relay's place
    if wait_for_listener "$RELAY_PORT" 0; then
      echo "run.sh: 127.0.0.1:$RELAY_PORT is already in use: stop what listens there or set RELAY_PORT" >&2; exit 1
    fi
    MODEL_URL="ws://127.0.0.1:$mport/v1/realtime" RELAY_PORT=$RELAY_PORT \
      $RELAY_ON timeout --foreground -s KILL "$KILL_S" sh -c "$RELAY" > "$TMP/server.out" 2> "$TMP/server.err" &
    SERVER_PID=$!
    port=$RELAY_PORT
    if ! wait_for_listener "$port" 10; then
      echo "run.sh: the relay is not listening on 127.0.0.1:$port:" >&2; cat "$TMP/server.out" "$TMP/server.err" >&2; exit 1
    fi
    webhook="http://127.0.0.1:$port$RELAY_WEBHOOK"
  else
    printf 'twiliosrc ! realtimemodel location=ws://127.0.0.1:%s/v1/realtime %s ! twiliosink %s\n' \
      "$mport" "${MODEL_OPTS:-}" "${SINK_OPTS:-}" > "$TMP/agent.pipeline"
    $RELAY_ON timeout --foreground -s KILL "$KILL_S" "$SERVER" serve --pipeline "$TMP/agent.pipeline" --address 127.0.0.1 --port 0 \
      --max-calls 0 --grace-period 5 --out-dir "$TMP" --log-level error ${SERVER_OPTS:-} > "$TMP/server.out" 2> "$TMP/server.err" &
    SERVER_PID=$!
    if ! port=$(server_port "$TMP/server.out"); then
      echo "run.sh: the server did not start:" >&2; cat "$TMP/server.out" "$TMP/server.err" >&2; exit 1
    fi
    webhook="http://127.0.0.1:$port/twilio/voice"
  fi
  # $! is timeout's PID; measure its child
  spid=$(pgrep -P "$SERVER_PID" | head -n 1); spid=${spid:-$SERVER_PID}
  if [ -n "${RELAY:-}" ] && [ "$(cat "/proc/$spid/comm" 2> /dev/null)" = sh ]; then
    # RELAY without exec: measure the program under the shell
    c=$(pgrep -P "$spid" | head -n 1); spid=${c:-$spid}
  fi
  mpid=$(pgrep -P "$MODEL_PID" | head -n 1); mpid=${mpid:-$MODEL_PID}
  cold=$(status_kb "$spid" VmRSS)
  # one short call first: what the first call loads once (the realtime
  # plugin, libwebsockets, OpenSSL, ...) is not a cost per call
  $LOAD_ON timeout --foreground -s KILL 60 "$EMU" --url "$webhook" --audio synth:1000 --tail-ms 500 \
    --transport "$TRANSPORT" --max-duration-s 30 --quiet > /dev/null 2>&1 || true
  sleep 0.5
  rss0=$(status_kb "$spid" VmRSS)
  mrss0=$(status_kb "$mpid" VmRSS)
  t0=$(cpu_ticks "$spid")
  mt0=$(cpu_ticks "$mpid")

  rc=0
  $LOAD_ON timeout --foreground -s KILL "$KILL_S" "$EMU" --url "$webhook" --calls "$n" --ramp-ms "$RAMP_MS" \
    --audio "synth:$AUDIO_MS" --tail-ms "$TAIL_MS" --transport "$TRANSPORT" --phases "$PHASES" --max-duration-s "$LIMIT_S" \
    --report "$TMP/report.json" --quiet > "$TMP/emu.out" 2> "$TMP/emu.err" &
  EMU_PID=$!
  # steady state: from 1 s after the last call started to 1 s before the
  # first one ends (every call up: frames, turns and replies, no set-up)
  window_ms=$((AUDIO_MS - RAMP_MS - 2000))
  s0=; s1=; u0=; u1=
  if [ "$window_ms" -ge 2000 ]; then
    sleep "$(awk -v ms=$((RAMP_MS + 1000)) 'BEGIN { print ms / 1000 }')"
    s0=$(cpu_ns "$spid"); u0=$(cpu_split "$spid")
    sleep "$(awk -v ms="$window_ms" 'BEGIN { print ms / 1000 }')"
    s1=$(cpu_ns "$spid"); u1=$(cpu_split "$spid")
  fi
  wait "$EMU_PID" || rc=$?
  EMU_PID=

  t1=$(cpu_ticks "$spid")
  mt1=$(cpu_ticks "$mpid")
  hwm=$(status_kb "$spid" VmHWM)
  mhwm=$(status_kb "$mpid" VmHWM)
  kill -TERM "$spid" "$mpid" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  wait "$MODEL_PID" 2>/dev/null || true
  SERVER_PID=
  MODEL_PID=
  spid=
  mpid=

  if [ ! -s "$TMP/report.json" ]; then
    echo "N=$n: no emulator report (exit $rc)"; cat "$TMP/emu.err" >&2; return 0
  fi
  # completed p99_ms underruns lat_p50 lat_p99 lat_count turns call_s emu_cpu emu_rss_kb
  set -- $(jq -r '[ (.totals.outcomes.completed // 0), (.totals.pacing_error_us.p99 / 1000),
      .totals.underruns, (.totals.response_latency_ms.p50 // "-"), (.totals.response_latency_ms.p99 // "-"),
      (.totals.response_latency_ms.count // 0), .totals.turns_ended, .totals.call_seconds,
      .process.cpu_ms_per_call_second, .process.max_rss_kb ] | map(tostring) | join(" ")' "$TMP/report.json")
  awk -v n="$n" -v c="$1" -v p99="$2" -v u="$3" -v l50="$4" -v l99="$5" -v lc="$6" -v te="$7" -v cs="$8" \
      -v ec="$9" -v er="${10}" -v hz="$TICKS" -v t="$((t1 - t0))" -v mt="$((mt1 - mt0))" -v r0="$rss0" -v hwm="$hwm" \
      -v mr0="$mrss0" -v mhwm="$mhwm" -v rc="$rc" -v cold="$cold" -v s0="${s0:-}" -v s1="${s1:-}" -v w="$window_ms" -v u0="${u0:-}" -v u1="${u1:-}" 'BEGIN {
    steady = "steady n/a (AUDIO_MS too short)"
    if (s0 != "" && s1 != "" && w > 0) {
      sc = (s1 - s0) / 1e6 / (n * w / 1000)
      steady = sprintf("steady %.2f ms/call-s over %.0f s", sc, w / 1000)
      if (split(u0, a, " ") == 2 && split(u1, b, " ") == 2 && b[1] + b[2] > a[1] + a[2])
        steady = steady sprintf(" (%.0f %% user, %.0f %% kernel)", 100 * (b[1] - a[1]) / (b[1] + b[2] - a[1] - a[2]), 100 * (b[2] - a[2]) / (b[1] + b[2] - a[1] - a[2]))
      if (cs > 0)
        steady = steady sprintf(", so about %.1f ms per call to set up and end", (t * 1000 / hz - sc * cs) / n)
    }
    printf "N=%-4d completed %d/%d | late p99 %.2f ms, underruns %d | response latency p50 %s p99 %s ms (%d/%d turns) | server %.2f ms CPU/call-s (%s), %.0f kB RSS/call (before any call %.1f MB, after one %.1f MB, peak %.1f MB) | model %.2f ms CPU/call-s (peak RSS %.1f MB) | emulator %.2f ms CPU/call-s (%.1f MB)%s\n",
      n, c, n, p99, u, l50, l99, lc, te, (cs > 0 ? t * 1000 / hz / cs : 0), steady, (hwm - r0) / n, cold / 1024, r0 / 1024, hwm / 1024,
      (cs > 0 ? mt * 1000 / hz / cs : 0), mhwm / 1024, ec, er / 1024, (rc != 0 ? sprintf(" (emulator exit %d)", rc) : "")
  }'
}

echo "agent-capacity: ${RELAY:+RELAY=\"$RELAY\" (instead of }phone-agent + realtimemodel${RELAY:+)} -> realtime-local --canned, $((AUDIO_MS / 1000)) s of synthetic speech per call," \
     "starts spread over $RAMP_MS ms, emulator transport $TRANSPORT; $(nproc 2>/dev/null || echo '?') CPUs ($(uname -m)), $PLACEMENT_SAY"
# bounded by the whole ladder's time
placement_spin "$PLACEMENT" $(( $(echo "$CALLS" | wc -w) * (KILL_S + 30) ))
for n in $CALLS; do
  run_once "$n"
done
