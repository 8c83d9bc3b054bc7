#!/bin/sh
# End-to-end barge-in benchmark (bench-bargein-e2e.cpp says what it does).
#
# usage: bench/bargein-e2e/run.sh [BUILD_DIR] [bench options]
#        (default ./build; options: --calls N --cycles K --noise-calls N
#         --noise-s S --lead MS --bargein "PROP=VALUE" --sink "PROP=VALUE"
#         --model "PROP=VALUE" --sets speech,noise
#         --keep DIR)
#
# Builds nothing: run `ninja -C BUILD_DIR` first. Talks to 127.0.0.1 only;
# bounded (each set stops within 3 minutes). With the defaults, per mode:
# 4 calls of 14 interruptions (56), 6 calls of 55 s of noise (5.5 min);
# about 3 minutes in all.
set -eu
BUILD=${1:-./build}
[ $# -gt 0 ] && shift
EXE=$BUILD/bench/bargein-e2e/bench-bargein-e2e
EMU=$BUILD/tools/twilio-emulator/twilio-emulator
for exe in "$EXE" "$EMU"; do
  if [ ! -x "$exe" ]; then
    echo "run.sh: $exe not found: build first (ninja -C $BUILD)" >&2
    exit 2
  fi
done
GST_PLUGIN_SYSTEM_PATH_1_0= \
GST_PLUGIN_PATH_1_0=$BUILD/plugins/twilio:$BUILD/plugins/realtime:$BUILD/plugins/bargein \
  exec "$EXE" "$EMU" --agent "$(dirname "$0")/long-replies.json" "$@"
