/* gst-phone-agent: the server's call log, an SQLite database.
 *
 * One row per call in `calls` (written when the stream starts, completed
 * when the call ends), the conversation's final transcripts in
 * `transcript` and the call's other element messages in `events`, both
 * written when the call ends, in one transaction with the row's ending.
 * The schema is in docs/server.md ("Call log").
 *
 * The writes run on a thread of the log's own, in order: a slow or stalled
 * disk never holds up the thread that reports a call (the server's context,
 * which also answers webhooks). started() and ended() only queue. */
#pragma once

#include <glib.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pa-api.h"
#include "twilio-protocol.h"

namespace pa {

/* What a call's element messages said, gathered as they are posted. */
struct CallLogMessages {
  guint turns = 0;                  /* realtime-latency messages: turns the agent answered */
  std::vector<double> latencies_ms; /* their latency-ms, where known (not -1) */
  guint barge_ins = 0, function_calls = 0;
  gint64 total_tokens = 0;
  struct Line {
    double running_time_s;
    std::string a, b; /* transcript: role, text; events: message name, its fields */
  };
  std::vector<Line> transcript, events;
  guint lines_dropped = 0; /* over the limit of lines kept per call */
};

/* What the server knows of one call. */
struct CallLogEntry {
  std::string call_sid, account_sid, stream_sid, from, to;
  twilio::Params parameters; /* the stream's custom parameters */
  gint64 started_us = 0;     /* wall clock (g_get_real_time()) */
  gint64 ended_us = 0;
  std::string end_reason; /* as in the server's call-ended signal */
  std::string error;      /* the pipeline's error message, if any */
  double caller_audio_s = 0, agent_audio_s = 0;
  CallLogMessages messages;
};

class PA_API CallLog {
public:
  /* Opens the database at @path, creating it and its tables if needed
   * (synchronously: a path that does not work fails here). */
  static std::unique_ptr<CallLog> open(const std::string &path, std::string &error);
  /* Writes what is queued, then closes. */
  ~CallLog();
  CallLog(const CallLog &) = delete;
  CallLog &operator=(const CallLog &) = delete;

  /* The call's row, as the stream starts (replaces a row of the same call). */
  void started(const CallLogEntry &e);
  /* The row completed, and the call's transcript and events, at once. */
  void ended(CallLogEntry e);

  /* Writes queued and not done yet; writes that failed (each also logged). */
  guint pending() const { return pending_; }
  guint64 errors() const { return errors_; }

private:
  CallLog() = default;
  void post(std::function<void()> job);
  void queue_write(CallLogEntry e, bool end);
  void run();
  struct Stmt;
  void bind_start(Stmt &st, const CallLogEntry &e) const;
  bool write_started(const CallLogEntry &e, std::string &error);
  bool write_ended(const CallLogEntry &e, std::string &error);

  struct Db;
  std::unique_ptr<Db> db_; /* the writer thread's, once it runs */
  std::string path_;
  std::string instance_; /* host:pid */
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::atomic<guint> pending_{0};
  std::atomic<guint64> errors_{0};
  std::thread thread_;
};

} // namespace pa
