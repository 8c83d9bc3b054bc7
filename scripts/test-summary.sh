#!/usr/bin/env bash
# Prints the closing line of a test run, "N passed, N failed", from meson's
# JSON test log, so a run that executed nothing cannot look green.
log=${1:?usage: test-summary.sh build/meson-logs/testlog.json}
passed=0
failed=0
if [ -f "$log" ]; then
  passed=$(grep -c '"result": "OK"' "$log" || true)
  total=$(grep -c '"result": ' "$log" || true)
  skipped=$(grep -c '"result": "SKIP"' "$log" || true)
  failed=$((total - passed - skipped))
fi
if [ "${skipped:-0}" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
