/* twilio-emulator: a run of N calls on one GMainContext with one shared tick
 * (every 20 ms, or every 20/N ms with --phases N: each sub-tick serves only
 * the calls of its phase; see phases.h) */
#pragma once

#include <libsoup/soup.h>

#include <memory>
#include <string>
#include <vector>

#include "call.h"
#include "capture.h"
#include "options.h"
#include "phases.h"
#include "poll-batch.h"
#include "report.h"
#include "script.h"
#include "ticker.h"

namespace emu {

class Runner final : public CallHost {
public:
  Runner(const Options &opt, const Script &script);
  ~Runner() override;
  Runner(const Runner &) = delete;
  Runner &operator=(const Runner &) = delete;

  /* Opens the capture file, creates the HTTP session. */
  bool init(std::string &error);
  /* Runs every call to its end (or --max-duration-s). */
  void run();
  bool timed_out() const { return timed_out_; }
  std::vector<CallReport> reports() const;

  /* CallHost */
  SoupSession *session() override { return session_; }
  CaptureWriter *capture() override { return capture_.is_open() ? &capture_ : nullptr; }
  int64_t run_start_us() const override { return start_us_; }
  void call_finished(Call &call) override;

private:
  void on_tick(int64_t sub_tick, int64_t ideal_us);
  void start_due(int64_t ideal_us);
  void stop_all(const char *outcome);
  static gboolean on_max_duration(gpointer data);
  static gboolean on_grace_over(gpointer data);
  static gboolean on_signal(gpointer data);

  static constexpr guint kGraceMs = 6000; /* libsoup waits up to 5 s for a close reply */

  const Options &opt_;
  const Script &script_;
  GMainLoop *loop_ = nullptr;
  SoupSession *session_ = nullptr;
  CaptureWriter capture_;
  PhaseSchedule schedule_;
  Ticker ticker_;
  std::vector<std::unique_ptr<Call>> calls_;
  size_t next_to_start_ = 0;
  size_t finished_ = 0;
  int64_t start_us_ = 0;
  bool stopping_ = false;
  bool timed_out_ = false;
  const char *stop_outcome_ = "timeout";
  guint deadline_id_ = 0, grace_id_ = 0, sigint_id_ = 0, sigterm_id_ = 0;
  /* Poll batching (many calls, poll-batch.h) */
  PollBatcher poll_batcher_;
};

} // namespace emu
