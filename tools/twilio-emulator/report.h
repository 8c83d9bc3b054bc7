/* twilio-emulator: per-call results, the JSON report and the summary.
 * Field definitions: docs/emulator.md, "The report". */
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "twilio-protocol.h"

namespace emu {

struct TurnResult {
  int64_t onset_ms = 0;
  int64_t end_ms = 0;
  bool ended = false;
  std::optional<int64_t> latency_ms;
};

struct ClearResult {
  double t_ms = 0;                      /* arrival, from stream start */
  std::optional<double> since_onset_ms; /* from the latest caller speech onset */
  size_t dropped_bytes = 0;             /* audio the clear threw away */
  /* barge-in figures (docs/emulator.md, "Clear timing") */
  size_t frames_at_arrival = 0;         /* frames played (taken) when it arrived */
  int turn = -1;                        /* index of the interrupting caller turn in the script */
  std::optional<double> audio_stop_ms;  /* end of the last frame with server audio before it */
  std::optional<double> audio_stop_since_onset_ms;
  double played_ms_at_clear = 0;        /* server audio played in the current playback run */
  double played_total_ms = 0;           /* server audio played since the stream start */
  std::optional<double> leaked_ms;      /* server audio played after it, until the turn's end */
};

struct ProtocolError {
  double t_ms = 0;
  std::string kind;   /* binary, malformed-json, missing-field, ... */
  std::string detail; /* what was wrong, and the start of the message */
};

/* Outcomes that count as success for the exit code. */
bool outcome_ok(const std::string &outcome);

struct CallReport {
  int index = 0;
  std::string call_sid, stream_sid;
  std::string outcome = "not-started";
  std::string error;
  int http_status = 0;

  /* TwiML */
  bool has_stream = false;
  std::string stream_url;
  pa::twilio::Params parameters;
  std::string says;
  bool hangup = false;
  std::vector<std::string> warnings;

  std::string transport;     /* "libsoup" or "raw" */
  std::string closed_by;     /* "emulator", "server" or "" */
  int close_code = 0;
  std::string close_reason;
  int server_close_code = 0;

  /* timing, ms */
  double started_ms = 0;     /* webhook POST, from the run's start */
  double webhook_ms = 0;     /* POST to TwiML */
  double connect_ms = 0;     /* WebSocket upgrade */
  double stream_ms = 0;      /* stream start to end */

  /* what we sent */
  uint64_t messages_sent = 0;
  uint64_t frames_sent = 0;
  uint64_t dtmf_sent = 0;
  std::vector<std::string> injected;
  std::vector<int32_t> pacing_us; /* per media frame: actual - ideal send time */

  /* what the server sent */
  uint64_t messages_received = 0;
  uint64_t media_received = 0;
  uint64_t bytes_received = 0;
  uint64_t marks_received = 0;
  uint64_t marks_echoed = 0;
  uint64_t marks_echoed_on_clear = 0;
  uint64_t clears_received = 0;
  uint64_t protocol_error_count = 0;
  std::vector<ProtocolError> protocol_errors; /* the first ones */

  /* playout */
  double played_ms = 0;      /* server audio played to the caller */
  double cleared_ms = 0;     /* server audio dropped by clears */
  double max_buffered_ms = 0;
  uint64_t underruns = 0;
  double underrun_ms = 0;
  /* when each gap was, on the monotonic clock (g_get_monotonic_time(), µs):
   * for matching with what other processes saw, e.g. a benchmark's record
   * of machine-wide stalls; the first kMaxUnderrunSpans */
  struct Span {
    int64_t start_us = 0, end_us = 0;
  };
  static constexpr size_t kMaxUnderrunSpans = 1000;
  std::vector<Span> underrun_spans;

  std::vector<TurnResult> turns;
  std::vector<ClearResult> clears;

  std::string heard_path, received_path;
};

struct RunInfo {
  std::string url;
  std::string source;
  int calls = 0;
  bool sequential = false;
  int64_t ramp_ms = 0;
  int phases = 1;
  double wall_s = 0;
  double cpu_user_s = 0, cpu_sys_s = 0;
  long max_rss_kb = 0;
  std::string capture_path;
  bool timed_out = false;
};

bool write_report(const std::string &path, const std::vector<CallReport> &calls, const RunInfo &run,
                  std::string &error);
void print_summary(FILE *out, const std::vector<CallReport> &calls, const RunInfo &run, bool per_call);

} // namespace emu
