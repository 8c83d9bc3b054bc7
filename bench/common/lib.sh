# Shared by the benchmarks' shell scripts (sourced, POSIX sh).

# wait_for FILE SED_EXPR [SECONDS]: prints the first match of SED_EXPR in
# FILE once it appears (the file may not exist yet: a background process
# opens it when it starts), within SECONDS (default 5); fails otherwise.
wait_for() {
  _tries=$(( ${3:-5} * 20 ))
  while [ "$_tries" -gt 0 ]; do
    _v=$(sed -n "$2" "$1" 2> /dev/null | head -n 1)
    if [ -n "$_v" ]; then echo "$_v"; return 0; fi
    sleep 0.05
    _tries=$((_tries - 1))
  done
  return 1
}

# server_port FILE [SECONDS]: the port tools/phone-agent says it listens on
server_port() {
  wait_for "$1" 's/^phone-agent: listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "${2:-5}"
}

# model_port FILE [SECONDS]: the port tools/realtime-local says it serves on
model_port() {
  wait_for "$1" 's/^realtime-local: serving ws:\/\/127\.0\.0\.1:\([0-9]*\)\/.*/\1/p' "${2:-5}"
}

# wait_for_listener PORT [SECONDS]: waits until something listens on TCP
# 127.0.0.1:PORT (or any address), read from /proc/net/tcp: needs no tool
wait_for_listener() {
  _hex=$(printf '%04X' "$1")
  _end=$(( $(date +%s) + ${2:-5} ))
  # local_address is ADDR:PORT in hex; state 0A is LISTEN
  until awk -v p=":$_hex" 'substr($2, length($2) - 4) == p && $4 == "0A" { found = 1 } END { exit !found }' \
      /proc/net/tcp /proc/net/tcp6 2> /dev/null; do
    [ "$(date +%s)" -lt "$_end" ] || return 1
    sleep 0.05
  done
}

# kill_wrapped PID...: kills each process started as `timeout ... PROGRAM &`
# ($! is timeout's PID) and the program under it: SIGKILL to timeout alone
# would leave the program running until its own end.
kill_wrapped() {
  for _p in "$@"; do
    pkill -KILL -P "$_p" 2> /dev/null || true
    kill -KILL "$_p" 2> /dev/null || true
  done
}

# callgrind_calls SERVER EMU TEMPLATE OUT CALLS AUDIO_MS TMPDIR [EMULATOR OPTIONS...]:
# runs SERVER (tools/phone-agent) under callgrind (profile in OUT) with the
# pipeline TEMPLATE on one media thread, places CALLS calls of AUDIO_MS of
# synthetic speech with EMU (tools/twilio-emulator; more options after),
# then stops the server with SIGINT so that callgrind writes its profile.
# SERVER_OPTS (environment) adds phone-agent options, e.g. --call-log= (no call log).
# CACHE_KB (environment, a power of two from 64) turns on callgrind's cache
# simulation with a last-level cache of that many kB (32 kB first-level
# caches): the lines a frame misses there are, roughly, the state it finds
# cold, which on a VM is what a line untouched for a frame's 20 ms costs.
# VP is the valgrind process while it runs (for the caller's exit trap).
callgrind_calls() {
  _server=$1 _emu=$2 _template=$3 _out=$4 _calls=$5 _audio=$6 _tmp=$7
  shift 7
  _cache=
  if [ -n "${CACHE_KB:-}" ]; then
    _cache="--cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=$((CACHE_KB * 1024)),8,64"
  fi
  : > "$_tmp/server.out" # read below before the server may have opened it
  # shellcheck disable=SC2086 # _cache: several options, or none
  timeout -s KILL 600 valgrind --tool=callgrind $_cache --callgrind-out-file="$_out" "$_server" serve \
    --pipeline "$_template" --address 127.0.0.1 --port 0 --max-calls 0 --media-threads 1 \
    --out-dir "$_tmp" --log-level error ${SERVER_OPTS:-} > "$_tmp/server.out" 2> "$_tmp/server.err" &
  VP=$!
  _port=$(server_port "$_tmp/server.out" 60) ||
    { echo "callgrind: the server did not start:" >&2; cat "$_tmp/server.err" >&2; return 1; }
  timeout -s KILL 180 "$_emu" --url "http://127.0.0.1:$_port/twilio/voice" --calls "$_calls" --audio "synth:$_audio" \
    --tail-ms 1000 --transport raw --quiet --max-duration-s 120 "$@" > /dev/null 2>&1 || true
  sleep 1
  kill -INT "$VP"
  wait "$VP" || true
  VP=
}

# placement_init MODE: where a bench's processes run, from MODE (the
# benches take it from PLACEMENT in their environment):
#   ""       the scheduler places every process (the default)
#   pinned   the relay measured on CPU 0, the load (emulator, model) on the
#            other CPUs
#   awake    as pinned, and a busy loop at the lowest priority (SCHED_IDLE)
#            on CPU 0 that keeps that CPU from going idle between the
#            relay's rounds: it runs only when the relay does not, and the
#            relay's CPU time is counted as before. On a VM each idle spell
#            of the virtual CPU adds to what a thread pays for waking up
#            (docs/performance.md); this mode shows the relay's cost
#            without that, and `pinned` is its control.
# Sets RELAY_ON and LOAD_ON (command prefixes, empty unless pinned) and
# PLACEMENT_SAY (a phrase for the bench's first line). Needs taskset and
# chrt (util-linux) and at least 2 CPUs; fails with a message otherwise.
# shellcheck disable=SC2034 # RELAY_ON, LOAD_ON and PLACEMENT_SAY are the caller's
placement_init() {
  RELAY_ON=''
  LOAD_ON=''
  PLACEMENT_SAY="no CPU pinning"
  case "$1" in
    "") return 0 ;;
    pinned|awake) ;;
    *) echo "PLACEMENT=$1: expected pinned or awake (or nothing)" >&2; return 1 ;;
  esac
  _n=$(nproc)
  if [ "$_n" -lt 2 ]; then echo "PLACEMENT=$1 needs 2 CPUs or more; this machine has $_n" >&2; return 1; fi
  for _t in taskset chrt; do
    command -v "$_t" > /dev/null || { echo "PLACEMENT=$1 needs $_t (util-linux)" >&2; return 1; }
  done
  _load=1
  [ "$_n" -gt 2 ] && _load="1-$((_n - 1))"
  RELAY_ON="taskset -c 0"
  LOAD_ON="taskset -c $_load"
  PLACEMENT_SAY="relay on CPU 0, emulator and model on CPU $_load"
  [ "$1" = awake ] && PLACEMENT_SAY="$PLACEMENT_SAY, CPU 0 kept awake by a SCHED_IDLE busy loop"
  return 0
}

# placement_spin MODE SECONDS: with MODE awake, starts the busy loop on
# CPU 0 for at most SECONDS and sets SPIN_PID (stop it with kill_wrapped);
# otherwise does nothing.
# shellcheck disable=SC2034 # SPIN_PID is the caller's
placement_spin() {
  SPIN_PID=
  [ "$1" = awake ] || return 0
  timeout -s KILL "$2" taskset -c 0 chrt -i 0 sh -c 'while :; do :; done' &
  SPIN_PID=$!
}
