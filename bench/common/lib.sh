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
# VP is the valgrind process while it runs (for the caller's exit trap).
callgrind_calls() {
  _server=$1 _emu=$2 _template=$3 _out=$4 _calls=$5 _audio=$6 _tmp=$7
  shift 7
  : > "$_tmp/server.out" # read below before the server may have opened it
  timeout -s KILL 600 valgrind --tool=callgrind --callgrind-out-file="$_out" "$_server" serve \
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
