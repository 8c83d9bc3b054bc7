#!/bin/sh
# Benchmark of the per-call server (tools/phone-agent) on the echo template:
# N concurrent calls from tools/twilio-emulator, both on this machine.
#
# usage: bench/server-echo/run.sh [BUILD_DIR]          (default ./build)
# env:   CALLS="25 50 100 150 200"  ladder of concurrent call counts
#        AUDIO_MS=20000   caller audio per call (synthetic speech)
#        RAMP_MS=2000     call starts spread over this time
#        BISECT=2         refinement steps between the last pass and the first fail
#        TEMPLATE=pipelines/echo.pipeline
#        TRANSPORT=raw    emulator WebSocket client (raw: least CPU per call)
#        PHASES=20        emulator --phases: the calls' 20 ms frames spread over this many
#                         phases (20: 1 ms apart). Real calls are independent, so their frames
#                         reach the server at independent phases; with PHASES=1 every call's
#                         frame arrives at the same instant, which flatters a server that
#                         batches work per wake-up. 1, 2, 4, 5, 8, 10, 16 or 20.
#        LATE_MS=20       the lateness limit (p99 of the caller's frame pacing)
#        STALL_MS=10      an underrun during a machine-wide stall longer than this (seen by
#                         the canary) does not fail the step (see README.md)
#        SERVER_OPTS=     more phone-agent options
#        NICE=0           run the server and the emulator at this nice level (e.g. -10 on a
#                         machine shared with other work, so that it disturbs them less; root)
#
# For each N it prints: outcomes; the caller side's frame lateness (p99 and
# max of how late the emulator sent its frames against real time, which grows
# when the machine is overloaded) and playout underruns (echo audio that came
# back too late to play on time); the server's CPU time (user+sys, from
# /proc) per call-second over the whole run, and in the steady state (from 1 s
# after the last call started to 1 s before the first ends: frames only),
# with what setting up and ending a call costs as follows from the two; its
# RSS growth per call (peak VmHWM minus the idle RSS, over N); the emulator's own CPU per call-second and peak RSS,
# since it shares the machine; how much CPU other processes took; and how
# often an independent canary process (server-echo-canary, 1 ms sleeps) woke
# up more than 10 ms late: an echo has one frame (20 ms) of slack, so such a
# machine-wide stall shows as one underrun in every call at once, whatever
# the server does. A run passes when every call completed, p99 lateness <
# LATE_MS and there were no underruns but during such stalls (dated by the
# canary and by the emulator's report; none excused when the run itself
# kept the machine over 75 % busy). The largest passing N is reported at
# the end.
#
# Builds nothing: run `ninja -C BUILD_DIR` first. Everything stays on
# 127.0.0.1; every process is bounded in time.
set -eu
. "$(dirname "$0")/../common/lib.sh" # wait_for, server_port

BUILD=${1:-./build}
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
CALLS=${CALLS:-25 50 100 150 200}
AUDIO_MS=${AUDIO_MS:-20000}
RAMP_MS=${RAMP_MS:-2000}
BISECT=${BISECT:-2}
TEMPLATE=${TEMPLATE:-$SRC/pipelines/echo.pipeline}
TRANSPORT=${TRANSPORT:-raw}
PHASES=${PHASES:-20}
LATE_MS=${LATE_MS:-20}
STALL_MS=${STALL_MS:-10}
SERVER=$BUILD/tools/phone-agent/phone-agent
EMU=$BUILD/tools/twilio-emulator/twilio-emulator
CANARY=$BUILD/bench/server-echo/server-echo-canary

for exe in "$SERVER" "$EMU" "$CANARY"; do
  if [ ! -x "$exe" ]; then
    echo "run.sh: $exe not found: build first (ninja -C $BUILD)" >&2
    exit 2
  fi
done
export GST_PLUGIN_PATH="$BUILD/plugins/twilio${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"

TICKS=$(getconf CLK_TCK)
LIMIT_S=$((AUDIO_MS / 1000 + 60))
TMP=$(mktemp -d)
SERVER_PID=
CANARY_PID=
EMU_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$EMU_PID" ]; then kill -KILL "$EMU_PID" 2>/dev/null || true; fi
  if [ -n "$CANARY_PID" ]; then kill -KILL "$CANARY_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# field NAME TEXT: the number after "NAME " or "NAME=" in TEXT
field() { printf '%s\n' "$2" | sed -n "s/.*$1[ =]\([0-9.][0-9.]*\).*/\1/p" | head -n 1; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# CPU time of all of a process's threads in ns (scheduler's count, finer than ticks)
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
# machine-wide busy and total ticks (all CPUs), from /proc/stat
machine_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat; }
status_kb() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status"; }

# run_once N: one run; prints a result line, returns 0 when it passed.
run_once() {
  n=$1
  : > "$TMP/server.out"
  nice -n "${NICE:-0}" "$SERVER" serve --pipeline "$TEMPLATE" --address 127.0.0.1 --port 0 --max-calls 0 --grace-period 5 \
    --out-dir "$TMP" --log-level error ${SERVER_OPTS:-} > "$TMP/server.out" 2> "$TMP/server.err" &
  SERVER_PID=$!
  if ! port=$(server_port "$TMP/server.out"); then
    echo "run.sh: the server did not start:" >&2
    cat "$TMP/server.err" >&2
    exit 1
  fi
  rss0=$(status_kb "$SERVER_PID" VmRSS)
  t0=$(cpu_ticks "$SERVER_PID")
  m0=$(machine_ticks)

  nice -n "${NICE:-0}" "$CANARY" "$LIMIT_S" > "$TMP/canary.out" &
  CANARY_PID=$!
  rc=0
  nice -n "${NICE:-0}" "$EMU" --url "http://127.0.0.1:$port/twilio/voice" --calls "$n" --ramp-ms "$RAMP_MS" \
    --audio "synth:$AUDIO_MS" --tail-ms 500 --transport "$TRANSPORT" --phases "$PHASES" --max-duration-s "$LIMIT_S" \
    --report "$TMP/report.json" --quiet > "$TMP/emu.out" 2> "$TMP/emu.err" &
  EMU_PID=$!
  # steady state: from 1 s after the last call started to 1 s before the
  # first one ends, every call is up and only frames are handled
  window_ms=$((AUDIO_MS - RAMP_MS - 2000))
  s0=; s1=
  if [ "$window_ms" -ge 2000 ]; then
    sleep "$(awk -v ms=$((RAMP_MS + 1000)) 'BEGIN { print ms / 1000 }')"
    s0=$(cpu_ns "$SERVER_PID")
    sleep "$(awk -v ms="$window_ms" 'BEGIN { print ms / 1000 }')"
    s1=$(cpu_ns "$SERVER_PID")
  fi
  wait "$EMU_PID" || rc=$?
  EMU_PID=

  t1=$(cpu_ticks "$SERVER_PID")
  m1=$(machine_ticks)
  hwm=$(status_kb "$SERVER_PID" VmHWM)
  kill -TERM "$SERVER_PID" "$CANARY_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  wait "$CANARY_PID" 2>/dev/null || true
  SERVER_PID=
  CANARY_PID=
  stall_max=$(field max_ms "$(cat "$TMP/canary.out")")
  stalls=$(field stalls "$(cat "$TMP/canary.out")")

  out=$(cat "$TMP/emu.out")
  outcomes=$(printf '%s\n' "$out" | sed -n 's/^outcomes: //p')
  pacing=$(printf '%s\n' "$out" | grep '^pacing error' || true)
  sent=$(printf '%s\n' "$out" | grep '^sent ' || true)
  process=$(printf '%s\n' "$out" | grep '^process:' || true)
  p99=$(field p99 "$pacing")
  pmax=$(field max "$pacing")
  underruns=$(printf '%s\n' "$sent" | sed -n 's/.* \([0-9]*\) underruns.*/\1/p')
  call_s=$(printf '%s\n' "$process" | sed -n 's/.*(\([0-9.]*\) call-seconds).*/\1/p')
  emu_cpu=$(printf '%s\n' "$process" | sed -n 's/.*= \([0-9.]*\) ms per call-second.*/\1/p')
  emu_cpu_s=$(printf '%s\n' "$process" | awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "s" && ($(i + 2) == "user" || $(i + 2) == "sys")) s += $i } END { print s + 0 }')
  emu_rss=$(printf '%s\n' "$process" | sed -n 's/.*peak RSS \([0-9.]*\) MiB.*/\1/p')
  completed=$(printf '%s\n' "$outcomes" | sed -n 's/.*completed=\([0-9]*\).*/\1/p')
  # underruns during a machine-wide stall: a gap in some call's playout that
  # overlaps (or began within a frame after) a wake-up of the canary more
  # than STALL_MS late
  stalled=$( { grep '^STALL ' "$TMP/canary.out" || true
               jq -r '.calls[].underrun_spans_us[]? | "GAP \(.[0]) \(.[1])"' "$TMP/report.json" 2> /dev/null || true; } |
    awk -v min="$STALL_MS" '
      $1 == "STALL" && $3 - $2 > min * 1000 { sf[++ns] = $2; st[ns] = $3 }
      $1 == "GAP" { gf[++ng] = $2; gt[ng] = $3 }
      END {
        c = 0
        for (i = 1; i <= ng; i++)
          for (k = 1; k <= ns; k++)
            if (sf[k] <= gt[i] && st[k] >= gf[i] - 20000) { c++; break }
        print c + 0
      }')

  # ... unless the server and the emulator kept the machine over 75 % busy:
  # then they may have held the canary up themselves
  ours=$(awk -v t="$((t1 - t0))" -v hz="$TICKS" -v ecs="${emu_cpu_s:-0}" -v m0="$m0" -v m1="$m1" 'BEGIN {
    split(m0, a, " "); split(m1, b, " "); total = (b[2] - a[2]) / hz
    print (total > 0 ? int(100 * (t / hz + ecs) / total) : 100) }')
  if [ "$ours" -gt 75 ]; then stalled=0; fi
  verdict=$(awk -v n="$n" -v c="${completed:-0}" -v p="${p99:-999}" -v u="${underruns:-1}" -v l="$LATE_MS" \
    -v su="${stalled:-0}" 'BEGIN { print (c == n && p < l && u - su == 0) ? "PASS" : "FAIL" }')
  awk -v n="$n" -v t="$((t1 - t0))" -v hz="$TICKS" -v cs="${call_s:-0}" -v r0="$rss0" -v hwm="$hwm" \
      -v p99="${p99:-?}" -v pmax="${pmax:-?}" -v u="${underruns:-?}" -v ec="${emu_cpu:-?}" -v er="${emu_rss:-?}" \
      -v oc="${outcomes:-?}" -v v="$verdict" -v rc="$rc" -v m0="$m0" -v m1="$m1" -v ecs="${emu_cpu_s:-0}" \
      -v smax="${stall_max:-?}" -v sn="${stalls:-?}" -v s0="${s0:-}" -v s1="${s1:-}" -v w="$window_ms" \
      -v su="${stalled:-0}" -v sm="$STALL_MS" -v ours="$ours" 'BEGIN {
    cpu = t / hz
    steady = "steady n/a (AUDIO_MS too short)"
    if (s0 != "" && s1 != "" && w > 0) {
      sc = (s1 - s0) / 1e6 / (n * w / 1000)
      steady = sprintf("steady %.3f ms/call-s over %.0f s", sc, w / 1000)
      if (cs > 0)
        steady = steady sprintf(", so about %.1f ms per call to set up and end", (cpu * 1000 - sc * cs) / n)
    }
    split(m0, a, " "); split(m1, b, " ")
    busy = (b[1] - a[1]) / hz; total = (b[2] - a[2]) / hz
    others = busy - cpu - ecs; if (others < 0) others = 0
    excused = ours > 75 ? sprintf("none excused: the run kept the machine %d %% busy", ours) : sprintf("%s in stalls > %s ms", su, sm)
    printf "%-4s N=%-4d %-28s late p99 %6s ms max %7s ms, underruns %-4s (%s) | server %.3f ms CPU/call-s (%.1f s; %s), %.0f kB RSS/call (idle %.1f MB, peak %.1f MB) | emulator %s ms CPU/call-s, %s MiB | other processes %.0f%% of the machine, stalls > 10 ms: %s (worst %s ms)%s\n",
      v, n, oc, p99, pmax, u, excused, (cs > 0 ? cpu * 1000 / cs : 0), cpu, steady, (hwm - r0) / n, r0 / 1024, hwm / 1024, ec, er,
      (total > 0 ? 100 * others / total : 0), sn, smax, (rc != 0 ? sprintf(" (emulator exit %d)", rc) : "")
  }'
  [ "$verdict" = PASS ]
}

echo "server-echo: $(basename "$TEMPLATE") ${SERVER_OPTS:-}, $((AUDIO_MS / 1000)) s of synthetic speech per call, starts spread over" \
     "$RAMP_MS ms, emulator transport $TRANSPORT, $PHASES frame phases, nice ${NICE:-0}; $(nproc 2>/dev/null || echo '?') CPUs ($(uname -m))"
best=0
fail=0
for n in $CALLS; do
  if run_once "$n"; then
    best=$n
  else
    fail=$n
    break
  fi
done
# refine between the last pass and the first fail
step=0
while [ "$fail" -gt 0 ] && [ "$step" -lt "$BISECT" ] && [ $((fail - best)) -gt 5 ]; do
  mid=$(((best + fail) / 2))
  if run_once "$mid"; then best=$mid; else fail=$mid; fi
  step=$((step + 1))
done
if [ "$fail" -gt 0 ]; then
  echo "largest N that passed: $best (first failure at N=$fail)"
else
  echo "largest N that passed: $best (every N of the ladder passed)"
fi
