#!/bin/sh
# Word error rate of the local model's transcription (pocketsphinx) on
# phone-band speech: 8 kHz G.711 mu-law, upsampled to 16 kHz as the engine
# does. Prints one summary line per configuration (takes a few minutes).
#
#   bench/local-model-wer/run.sh [BUILD_DIR]
#
# Caller voices: espeak-ng en-us+f2 (a variant the agent does not use) and,
# if the flite package is installed, flite's rms, awb and slt voices (more
# natural; closer to a human caller, still synthetic). Sentences:
# general.txt (nothing to do with the agent) with the general language model,
# receptionist.txt (what callers say to agents/receptionist.json) with the
# agent's phrases mixed in, as the engine runs it. "stream" is the engine's
# path for server_vad turns (live decoding while the caller speaks), "batch"
# its path for manual commits.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-${PA_BUILD_ROOT:-$here/../../build}}
bin=$build/bench/local-model-wer/local-model-wer
if [ ! -x "$bin" ]; then
  echo "run.sh: $bin not found; build first (ninja -C $build)" >&2
  exit 1
fi
run() { # label, args...
  label=$1; shift
  printf '%-44s ' "$label"
  "$bin" -q "$@" | head -n 1 | sed 's/, wav-list [^,]*//'
}
run "espeak-ng en-us+f2, general, stream" --stream -s "$here/general.txt" -w 0
run "espeak-ng en-us+f2, receptionist, stream" --stream -s "$here/receptionist.txt"
run "espeak-ng en-us+f2, receptionist, batch" -s "$here/receptionist.txt"
run "espeak-ng en-us+f2, general, 16 kHz batch" -s "$here/general.txt" -w 0 --wideband

if command -v flite >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  for voice in rms awb slt; do
    for set in general receptionist; do
      n=0
      : > "$tmp/$set-$voice.tsv"
      grep -v '^#' "$here/$set.txt" | while IFS= read -r line; do
        n=$((n + 1))
        flite -voice "$voice" -t "$line" -o "$tmp/$set-$voice-$n.wav"
        printf '%s\t%s\n' "$tmp/$set-$voice-$n.wav" "$line" >> "$tmp/$set-$voice.tsv"
      done
    done
    run "flite $voice, general, stream" --stream --wav-list "$tmp/general-$voice.tsv" -w 0
    run "flite $voice, receptionist, stream" --stream --wav-list "$tmp/receptionist-$voice.tsv"
  done
  run "flite rms, receptionist, batch" --wav-list "$tmp/receptionist-rms.tsv"
  run "flite rms, general, 16 kHz batch" --wav-list "$tmp/general-rms.tsv" -w 0 --wideband
else
  echo "(flite not installed: apt-get install flite for the more natural reference voices)"
fi
