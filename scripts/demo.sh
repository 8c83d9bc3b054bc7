#!/usr/bin/env bash
# The main job: a phone agent on the embedded local model answers a call
# placed by the Twilio emulator, books an appointment in a demo calendar
# (tools/demo-calendar, through realtimemodel's tool-url), and leaves the
# caller-side WAV, recordings of both directions, the booking and a
# transcript behind.
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

CALENDAR="$BUILD_DIR/tools/demo-calendar/demo-calendar"

# The caller: waits for the greeting, asks for an appointment, and takes the
# first slot the agent offers.
espeak-ng -v en-us -s 150 -w "$OUT/caller-ask.wav" \
  "Hello, I would like to book an appointment for tomorrow morning, please." 2>/dev/null
espeak-ng -v en-us -s 150 -w "$OUT/caller-yes.wav" "Yes, please." 2>/dev/null
sox -q "$OUT/caller-ask.wav" "$OUT/caller-ask-padded.wav" pad "${ASK_AT:-7}" 0
sox -q "$OUT/caller-yes.wav" "$OUT/caller-yes-padded.wav" pad "${YES_AFTER:-13}" 0
sox -q "$OUT/caller-ask-padded.wav" "$OUT/caller-yes-padded.wav" "$OUT/caller.wav"
rm -f "$OUT"/caller-ask*.wav "$OUT"/caller-yes*.wav

# The receptionist's calendar (agents/receptionist-tools.json), which
# realtimemodel calls through tool-url; bookings land in bookings.jsonl.
# (each log exists before its process starts: a background job opens its
# redirection only once it runs, and the loops below read the file at once)
: > "$OUT/calendar.log"
"$CALENDAR" --port 0 --bookings "$OUT/bookings.jsonl" > "$OUT/calendar.log" 2>&1 &
CAL=$!
trap 'kill $CAL 2>/dev/null || true' EXIT
tools_url=""
for _ in $(seq 1 100); do
  tools_url=$(sed -n 's/^demo-calendar: serving \(http:[^ ]*\).*/\1/p' "$OUT/calendar.log" | head -n 1)
  [ -n "$tools_url" ] && break
  sleep 0.05
done
[ -n "$tools_url" ] || { cat "$OUT/calendar.log"; echo "the demo calendar did not start"; exit 1; }

# The agent, recording what the caller said and what the agent said.
# port=0 picks a free port; -m prints it (twilio-listening) and the
# transcripts (realtime-transcript).
: > "$OUT/agent.log"
gst-launch-1.0 -m -e \
  twiliosrc port=0 address=127.0.0.1 ! tee name=caller \
    caller. ! queue ! realtimemodel input-transcription=local \
        tools-file=agents/receptionist-tools.json tool-url="$tools_url" \
        greeting="Greet the caller and ask how you can help." ! tee name=agent \
      agent. ! queue ! twiliosink \
      agent. ! queue ! wavenc ! filesink location="$OUT/recording-agent.wav" \
    caller. ! queue ! wavenc ! filesink location="$OUT/recording-caller.wav" \
  > "$OUT/agent.log" 2>&1 &
AGENT=$!
trap 'kill $AGENT $CAL 2>/dev/null || true' EXIT

port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's/.*twilio-listening, port=(int)\([0-9]*\).*/\1/p' "$OUT/agent.log" | head -n 1)
  [ -n "$port" ] && break
  kill -0 $AGENT 2>/dev/null || { cat "$OUT/agent.log"; echo "the agent pipeline failed to start"; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "the agent did not report its port"; exit 1; }
echo "== agent listening on 127.0.0.1:$port; placing a call with the Twilio emulator"

# 14 s after the caller stops talking the emulator hangs up (the local model
# needs a few seconds to transcribe and answer on a small machine).
"$EMULATOR" --url "http://127.0.0.1:$port/twilio/voice" --audio "$OUT/caller.wav" --tail-ms "${TAIL_MS:-14000}" \
  --out-dir "$OUT" --report "$OUT/report.json"

# The agent ends by itself when the call does (EOS).
for _ in $(seq 1 200); do kill -0 $AGENT 2>/dev/null || break; sleep 0.1; done
trap - EXIT
kill $AGENT 2>/dev/null || true
kill $CAL 2>/dev/null || true

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
echo "   Bookings (demo calendar):      $OUT/bookings.jsonl"
echo "   Emulator report (JSON):        $OUT/report.json"
echo "   Agent log:                     $OUT/agent.log"
