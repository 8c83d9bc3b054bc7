#!/usr/bin/env bash
# The main job: a phone agent on the embedded local model answers a call
# placed by the Twilio emulator, and leaves the caller-side WAV, recordings
# of both directions and a transcript behind.
#
#   scripts/demo.sh BUILD_DIR
#
# The agent is pipelines/agent.pipeline (twiliosrc ! realtimemodel !
# twiliosink) with recording tees; realtimemodel runs the embedded local
# model (VAD, pocketsphinx, a scripted receptionist, espeak-ng) because no
# location is set. Everything runs on 127.0.0.1; nothing needs an account.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
BUILD_DIR=$(readlink -f "${1:-build}")
OUT=${OUT_DIR:-$PWD/out/demo-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

export GST_PLUGIN_PATH="$BUILD_DIR/plugins/twilio:$BUILD_DIR/plugins/realtime${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
EMULATOR="$BUILD_DIR/tools/twilio-emulator/twilio-emulator"

# The caller: waits for the greeting, then asks for an appointment.
espeak-ng -v en-us+m3 -s 150 -w "$OUT/caller-voice.wav" \
  "Hello, I would like to book an appointment for tomorrow morning, please." 2>/dev/null
sox -q "$OUT/caller-voice.wav" "$OUT/caller.wav" pad 4 0

# The agent, recording what the caller said and what the agent said.
# port=0 picks a free port; -m prints it (twilio-listening) and the
# transcripts (realtime-transcript).
gst-launch-1.0 -m -e \
  twiliosrc port=0 address=127.0.0.1 ! tee name=caller \
    caller. ! queue ! realtimemodel input-transcription=local \
        greeting="Greet the caller and ask how you can help." ! tee name=agent \
      agent. ! queue ! twiliosink \
      agent. ! queue ! wavenc ! filesink location="$OUT/recording-agent.wav" \
    caller. ! queue ! wavenc ! filesink location="$OUT/recording-caller.wav" \
  > "$OUT/agent.log" 2>&1 &
AGENT=$!
trap 'kill $AGENT 2>/dev/null || true' EXIT

port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's/.*twilio-listening, port=(int)\([0-9]*\).*/\1/p' "$OUT/agent.log" | head -n 1)
  [ -n "$port" ] && break
  kill -0 $AGENT 2>/dev/null || { cat "$OUT/agent.log"; echo "the agent pipeline failed to start"; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "the agent did not report its port"; exit 1; }
echo "== agent listening on 127.0.0.1:$port; placing a call with the Twilio emulator"

# 8 s after the caller stops talking the emulator hangs up (the local model
# needs a few seconds to transcribe and answer on a small machine).
"$EMULATOR" --url "http://127.0.0.1:$port/twilio/voice" --audio "$OUT/caller.wav" --tail-ms 8000 \
  --out-dir "$OUT" --report "$OUT/report.json"

# The agent ends by itself when the call does (EOS).
for _ in $(seq 1 200); do kill -0 $AGENT 2>/dev/null || break; sleep 0.1; done
trap - EXIT
kill $AGENT 2>/dev/null || true

# The transcript: the final realtime-transcript messages, in order.
grep -o 'realtime-transcript, role=(string)[a-z]*,.*final=(boolean)true' "$OUT/agent.log" |
  sed -E 's/.*role=\(string\)([a-z]+),.*text=\(string\)("([^"]*)"|([^,]*)), final.*/\1: \3\4/' |
  sed -e 's/\\\(.\)/\1/g' -e 's/^user:/caller:/' -e 's/^assistant:/agent: /' \
  > "$OUT/transcript.txt"

echo
echo "== transcript:"
sed 's/^/   /' "$OUT/transcript.txt"
echo
echo "== done. What the caller heard:  $OUT/call-1-heard.wav"
echo "   Transcript:                    $OUT/transcript.txt"
echo "   Recordings (caller, agent):    $OUT/recording-caller.wav $OUT/recording-agent.wav"
echo "   Emulator report (JSON):        $OUT/report.json"
echo "   Agent log:                     $OUT/agent.log"
