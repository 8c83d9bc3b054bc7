#!/usr/bin/env bash
# gst-phone-agent: set-up and the two jobs the README promises.
#
#   ./run.sh demo   install what is needed, build, and run the main job
#   ./run.sh test   install what is needed, build, and run every test
#   ./run.sh deps | build     only those steps
#
# Works as root on a fresh Debian 12 (apt-get), or as a user with sudo.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

BUILD_DIR=${BUILD_DIR:-build}

# Debian 12 packages: toolchain, GStreamer 1.22 and its base/good plugins,
# libsoup 3, json-glib, OpenSSL, the local model's parts (VAD,
# pocketsphinx, espeak-ng), the call log's databases.
PACKAGES=(
  g++ pkg-config meson ninja-build
  libglib2.0-dev libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  libsoup-3.0-dev libjson-glib-dev libssl-dev
  libwebrtc-audio-processing-dev libpocketsphinx-dev pocketsphinx-en-us
  libespeak-ng-dev espeak-ng sox jq
  libsqlite3-dev libpq-dev
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

deps() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "== dependencies: all ${#PACKAGES[@]} Debian packages present"
    return
  fi
  echo "== installing ${#missing[@]} Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    meson setup "$BUILD_DIR" >/dev/null
  fi
  echo "== building in $BUILD_DIR"
  ninja -C "$BUILD_DIR" | tail -n 1
}

run_tests() {
  echo "== running the tests"
  local rc=0
  meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2 "$@" || rc=$?
  scripts/test-summary.sh "$BUILD_DIR/meson-logs/testlog.json"
  return $rc
}

case "${1:-}" in
  deps) deps ;;
  build) deps; build ;;
  demo) deps; build; shift; scripts/demo.sh "$BUILD_DIR" "$@" ;;
  test) deps; build; shift; run_tests "$@" ;;
  *)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
