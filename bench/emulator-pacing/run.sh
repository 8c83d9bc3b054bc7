#!/bin/sh
# Pacing benchmark of tools/twilio-emulator: N concurrent calls against a
# trivial loopback peer that echoes every media frame back with a mark.
#
# usage: bench/emulator-pacing/run.sh [BUILD_DIR]        (default ./build)
# env:   CALLS=500 AUDIO_MS=20000 RAMP_MS=2000 TRANSPORTS="libsoup raw"
#
# Builds nothing: run `ninja -C BUILD_DIR` first. Everything stays on
# 127.0.0.1 and every process is bounded in time. Prints, per transport:
# the pacing error of the frames the emulator sent (p50/p99/max, ms), the
# emulator's CPU time (user+sys) per call-second and its peak RSS, and the
# peer's CPU for reference.
set -eu
. "$(dirname "$0")/../common/lib.sh" # wait_for, server_port

BUILD=${1:-./build}
CALLS=${CALLS:-500}
AUDIO_MS=${AUDIO_MS:-20000}
RAMP_MS=${RAMP_MS:-2000}
TRANSPORTS=${TRANSPORTS:-libsoup raw}
EMU=$BUILD/tools/twilio-emulator/twilio-emulator
PEER=$BUILD/bench/emulator-pacing/emulator-pacing-peer

for exe in "$EMU" "$PEER"; do
  if [ ! -x "$exe" ]; then
    echo "run.sh: $exe not found: build first (ninja -C $BUILD)" >&2
    exit 2
  fi
done

LIMIT_S=$((AUDIO_MS / 1000 + 90))
TMP=$(mktemp -d)
PEER_PID=
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  if [ -n "$PEER_PID" ]; then kill "$PEER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# field NAME LINE: the number after "NAME " or "NAME=" in LINE
field() { printf '%s\n' "$2" | sed -n "s/.*$1[ =]\([0-9.][0-9.]*\).*/\1/p"; }

# busy and total CPU time of the whole machine so far, in clock ticks
cpu_ticks() {
  if [ ! -r /proc/stat ]; then
    echo "0 0"
    return
  fi
  # shellcheck disable=SC2046  # split the line into fields on purpose
  set -- $(head -n 1 /proc/stat)
  echo "$(($2 + $3 + $4 + $7 + $8)) $(($2 + $3 + $4 + $5 + $6 + $7 + $8))"
}

# CPU already busy on this machine (other work skews the figures): 1 s sample
busy_now() {
  [ -r /proc/stat ] || { echo "?"; return; }
  # shellcheck disable=SC2046  # split the line into fields on purpose
  set -- $(head -n 1 /proc/stat)
  t1=$(($2 + $3 + $4 + $5 + $6 + $7 + $8)); i1=$5
  sleep 1
  # shellcheck disable=SC2046
  set -- $(head -n 1 /proc/stat)
  t2=$(($2 + $3 + $4 + $5 + $6 + $7 + $8)); i2=$5
  echo $(( (t2 - t1 - (i2 - i1)) * 100 / (t2 - t1 + 1) ))
}

echo "emulator-pacing: $CALLS calls x $((AUDIO_MS / 1000)) s of synthetic audio, starts spread over $RAMP_MS ms;"
echo "the peer echoes every 20 ms frame back and sends a mark per frame"
echo "machine: $(nproc 2>/dev/null || echo '?') CPUs, $(busy_now)% busy before the run"
status=0
for transport in $TRANSPORTS; do
  : > "$TMP/peer.out" # read below before the peer may have opened it
  "$PEER" --max-duration-s "$LIMIT_S" > "$TMP/peer.out" 2> "$TMP/peer.err" &
  PEER_PID=$!
  if ! port=$(wait_for "$TMP/peer.out" 's/^PORT \([0-9]*\)$/\1/p'); then
    echo "run.sh: the peer did not start:" >&2
    cat "$TMP/peer.err" >&2
    exit 1
  fi

  before=$(cpu_ticks)
  rc=0
  "$EMU" --url "http://127.0.0.1:$port/voice" --calls "$CALLS" --ramp-ms "$RAMP_MS" \
    --audio "synth:$AUDIO_MS" --tail-ms 500 --transport "$transport" --max-duration-s "$LIMIT_S" \
    --report "$TMP/report-$transport.json" --quiet > "$TMP/emu.out" 2> "$TMP/emu.err" || rc=$?

  after=$(cpu_ticks)
  kill -TERM "$PEER_PID" 2>/dev/null || true
  wait "$PEER_PID" 2>/dev/null || true
  PEER_PID=

  out=$(cat "$TMP/emu.out")
  outcomes=$(printf '%s\n' "$out" | sed -n 's/^outcomes: //p')
  pacing=$(printf '%s\n' "$out" | grep '^pacing error' || true)
  process=$(printf '%s\n' "$out" | grep '^process:' || true)
  peer=$(grep '^PEER_CPU' "$TMP/peer.out" || true)

  call_s=$(printf '%s\n' "$process" | sed -n 's/.*(\([0-9.]*\) call-seconds).*/\1/p')
  peer_cpu=$(awk -v u="$(field user_s "$peer")" -v s="$(field sys_s "$peer")" -v c="${call_s:-0}" \
    'BEGIN { if (c > 0) printf "%.2f s user + %.2f s sys = %.2f ms per call-second", u, s, (u + s) * 1000 / c; else printf "%s s user + %s s sys", u, s }')

  echo
  echo "[$transport]  outcomes: ${outcomes:-?}  (exit $rc)"
  echo "  pacing error (ms):  p50 $(field p50 "$pacing")  p99 $(field p99 "$pacing")  max $(field max "$pacing")"
  echo "  emulator:           $(printf '%s\n' "$process" | sed 's/^process: //')"
  echo "  peer (reference):   $peer_cpu"
  # what the rest of the machine did meanwhile (busy CPU minus the two processes)
  hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
  printf '%s %s %s\n' "$before" "$after" "$process $peer" | awk -v hz="$hz" '{
      busy = ($3 - $1) / hz; total = ($4 - $2) / hz
      ours = 0
      for (i = 5; i <= NF; i++) {
        if (($i == "user" || $i == "sys") && $(i - 1) == "s") ours += $(i - 2)
        if ($i ~ /^(user|sys)_s=/) { split($i, kv, "="); ours += kv[2] }
      }
      other = busy - ours
      if (other < 0) other = 0
      if (total > 0) printf "  other load:         %.1f CPU-s used by other processes during the run (%.0f%% of the machine)\n", other, 100 * other / total
    }'
  if [ "$rc" -ne 0 ]; then
    sed 's/^/  /' "$TMP/emu.err" | head -5
    status=1
  fi
done
exit $status
