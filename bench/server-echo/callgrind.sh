#!/bin/sh
# Instructions the echo server spends on its calls, counted by callgrind:
# independent of the machine's load, so a change to the per-frame path can
# be compared run against run on a noisy VM where CPU time cannot.
#
# usage: bench/server-echo/callgrind.sh [BUILD_DIR] [OUT_FILE]   (default ./build, a temp file)
# env:   CALLS=3 AUDIO_MS=8000   the emulator's calls (one media thread serves them)
#        SERVER_OPTS=            more phone-agent options
#
# Prints the program total and the inclusive instructions of the
# per-frame functions: the media thread's loop, the inbound handling,
# twiliosink's render and the outbound media and mark. Compare
# two builds by running it on each; the raw profile stays in OUT_FILE for
# callgrind_annotate. Needs valgrind. Talks only to 127.0.0.1; every process
# is bounded by timeout.
set -eu
. "$(dirname "$0")/../common/lib.sh" # callgrind_calls, kill_wrapped
BUILD=${1:-./build}
OUT=${2:-$(mktemp /tmp/callgrind.echo.XXXXXX)}
CALLS=${CALLS:-3}
AUDIO_MS=${AUDIO_MS:-8000}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SERVER=$BUILD/tools/phone-agent/phone-agent
EMU=$BUILD/tools/twilio-emulator/twilio-emulator
for exe in "$SERVER" "$EMU"; do
  [ -x "$exe" ] || { echo "callgrind.sh: $exe not found: build first (ninja -C $BUILD)" >&2; exit 2; }
done
command -v valgrind > /dev/null || { echo "callgrind.sh: valgrind is required" >&2; exit 2; }
BUILD_ABS=$(cd "$BUILD" && pwd)
export GST_PLUGIN_PATH="$BUILD_ABS/plugins/twilio"
TMP=$(mktemp -d)
VP=
cleanup() { kill_wrapped $VP; rm -rf "$TMP"; }
trap cleanup EXIT

callgrind_calls "$SERVER" "$EMU" "$SRC/pipelines/echo.pipeline" "$OUT" "$CALLS" "$AUDIO_MS" "$TMP" || exit 1
echo "callgrind: echo server, $CALLS calls x $AUDIO_MS ms on one media thread ($BUILD); profile in $OUT"
callgrind_annotate "$OUT" 2> /dev/null | grep "PROGRAM TOTALS"
callgrind_annotate --inclusive=yes --tree=none "$OUT" 2> /dev/null | awk '
  { for (i = 0; i < 5; i++) if (index($0, f[i]) && !(f[i] in seen)) { seen[f[i]] = 1; printf "%15s  %s\n", $1, f[i] } }
  BEGIN { f[0] = "SocketLoop::Impl::run()"; f[1] = "pa_call_handle_text("; f[2] = "gst_twilio_sink_render(";
          f[3] = "send_media("; f[4] = "send_mark_locked(" }'
