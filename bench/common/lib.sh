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
