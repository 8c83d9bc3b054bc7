#!/usr/bin/env bash
# The main job: a phone agent answers a call placed by the Twilio emulator,
# and leaves what the caller heard (and a recording) behind.
#
#   scripts/demo.sh BUILD_DIR
#
# Today's agent is the echo pipeline (pipelines/echo.pipeline): the caller
# hears themselves. Everything runs on 127.0.0.1; nothing needs an account.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
BUILD_DIR=$(readlink -f "${1:-build}")
OUT=${OUT_DIR:-$PWD/out/demo-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

export GST_PLUGIN_PATH="$BUILD_DIR/plugins/twilio${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
EMULATOR="$BUILD_DIR/tools/twilio-emulator/twilio-emulator"

# The caller: a synthesized voice asking for an appointment.
espeak-ng -v en-us -s 150 -w "$OUT/caller.wav" \
  "Hello, I would like to book an appointment for tomorrow morning, please." 2>/dev/null

# The agent: the echo pipeline, recording both directions as WAV files.
# port=0 picks a free port; -m prints it in the twilio-listening message.
gst-launch-1.0 -m -e \
  twiliosrc port=0 address=127.0.0.1 ! tee name=caller \
    caller. ! queue ! twiliosink \
    caller. ! queue ! wavenc ! filesink location="$OUT/recording-caller.wav" \
  > "$OUT/agent.log" 2>&1 &
AGENT=$!
trap 'kill $AGENT 2>/dev/null || true' EXIT

port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*twilio-listening, port=(int)\([0-9]*\).*/\1/p' "$OUT/agent.log" | head -n 1)
  [ -n "$port" ] && break
  kill -0 $AGENT 2>/dev/null || { cat "$OUT/agent.log"; echo "the agent pipeline failed to start"; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "the agent did not report its port"; exit 1; }
echo "== agent listening on 127.0.0.1:$port; placing a call with the Twilio emulator"

"$EMULATOR" --url "http://127.0.0.1:$port/twilio/voice" --audio "$OUT/caller.wav" \
  --out-dir "$OUT" --report "$OUT/report.json"

# The agent ends by itself when the call does (EOS).
for _ in $(seq 1 100); do kill -0 $AGENT 2>/dev/null || break; sleep 0.1; done
trap - EXIT
kill $AGENT 2>/dev/null || true

echo
echo "== done. What the caller heard:  $OUT/call-1-heard.wav"
echo "   What the caller said:          $OUT/recording-caller.wav"
echo "   Emulator report (JSON):        $OUT/report.json"
echo "   Agent log:                     $OUT/agent.log"
