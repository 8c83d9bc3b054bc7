#!/usr/bin/env bash
# Prints the closing lines of a test run from meson's JSON test log: for
# each test that did not pass, the check lines that say why (so they are
# the last thing a CI log shows, past any debug output), then
# "N passed, N failed", so a run that executed nothing cannot look green.
log=${1:?usage: test-summary.sh build/meson-logs/testlog.json}
passed=0
failed=0
if [ -f "$log" ]; then
  passed=$(grep -c '"result": "OK"' "$log" || true)
  total=$(grep -c '"result": ' "$log" || true)
  skipped=$(grep -c '"result": "SKIP"' "$log" || true)
  failed=$((total - passed - skipped))
fi
if [ "$failed" -gt 0 ]; then
  # gst-check's verdicts ("file.cpp:LINE:F:tcase:test:0: message"; E for
  # an error: a signal, a timeout); meson is a Python program, so python3
  # is there
  python3 - "$log" <<'PY' || true
import json, os, re, subprocess, sys
verdict = re.compile(r"^\S+:\d+:[FE]:[^:]*:[^:]*:\d+: ")
gstlog = re.compile(r"^\s*\d+:\d\d:\d\d\.\d+ |^\d+%: Checks:")
print("== why they failed")
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    t = json.loads(line)
    if t.get("result") in ("OK", "SKIP", "EXPECTEDFAIL"):
        continue
    print(f"{t['name']}: {t['result']} (exit {t.get('returncode')})")
    lines = t.get("stdout", "").splitlines()
    shown = 0
    for i, l in enumerate(lines):
        if not verdict.search(l) or shown >= 10:
            continue
        print("    " + l[:400])
        shown += 1
        # a message's own further lines (not GStreamer's log lines)
        for more in lines[i + 1:i + 9]:
            if gstlog.match(more) or verdict.search(more):
                break
            print("      " + more[:400])
    # a crash's backtrace (tests/common/pa-check.h prints it to stderr):
    # frames without a symbol resolved with addr2line while the build is
    # still there
    err = t.get("stderr", "").splitlines()
    for i, l in enumerate(err):
        if not l.startswith("== crash backtrace"):
            continue
        print("    " + l)
        for f in err[i + 1:i + 40]:
            if f.startswith("== end of crash backtrace"):
                break
            where = ""
            m = re.match(r"^(.+)\(\+0x([0-9a-f]+)\)\[", f)
            if m and os.path.exists(m.group(1)):
                try:
                    out = subprocess.run(["addr2line", "-f", "-C", "-e", m.group(1), "0x" + m.group(2)],
                                         capture_output=True, text=True, timeout=10).stdout.split("\n")
                    if out and out[0] != "??":
                        where = f"  {out[0][:120]} {out[1].rsplit('/', 1)[-1] if len(out) > 1 else ''}"
                except (OSError, subprocess.SubprocessError):
                    pass
            print("      " + f[:200] + where)
        break
PY
fi
if [ "${skipped:-0}" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
