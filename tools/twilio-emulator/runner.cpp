/* twilio-emulator: the run */
#include "runner.h"

#include <glib-unix.h>

#include <csignal>

namespace emu {

Runner::Runner(const Options &opt, const Script &script)
    : opt_(opt), script_(script), schedule_(opt.phases, static_cast<size_t>(opt.calls)),
      ticker_(
          schedule_.period_us(), [this](int64_t t, int64_t ideal) { on_tick(t, ideal); },
          Ticker::kDefaultMaxCatchUp * schedule_.phases()) {}

Runner::~Runner() {
  ticker_.stop();
  for (guint *id : {&deadline_id_, &grace_id_, &sigint_id_, &sigterm_id_})
    if (*id)
      g_source_remove(*id);
  calls_.clear(); /* before the session they use */
  g_clear_object(&session_);
  if (loop_)
    g_main_loop_unref(loop_);
}

bool Runner::init(std::string &error) {
  if (!opt_.capture.empty() && !capture_.open(opt_.capture, error))
    return false;
  /* Enough connections for every call at once; webhooks time out like Twilio's. */
  guint conns = static_cast<guint>(opt_.calls) * 2 + 16;
  session_ = soup_session_new_with_options("max-conns", conns, "max-conns-per-host", conns, "timeout",
                                           static_cast<guint>(opt_.webhook_timeout_s), "user-agent",
                                           "TwilioProxy/1.1", nullptr);
  loop_ = g_main_loop_new(g_main_context_get_thread_default(), FALSE);
  for (int i = 0; i < opt_.calls; i++)
    calls_.push_back(std::make_unique<Call>(*this, opt_, script_, i + 1));
  return true;
}

void Runner::run() {
  start_us_ = g_get_monotonic_time();
  deadline_id_ = g_timeout_add_seconds(static_cast<guint>(opt_.max_duration_s), on_max_duration, this);
  sigint_id_ = g_unix_signal_add(SIGINT, on_signal, this);
  sigterm_id_ = g_unix_signal_add(SIGTERM, on_signal, this);
  GMainContext *ctx = g_main_context_get_thread_default();
  if (!ctx)
    ctx = g_main_context_default();
  poll_batcher_.install(ctx, ticker_, opt_.poll_batch_us);
  /* before any call's socket source: a wake-up that finds a tick due and
   * sockets ready runs the tick first, then the sockets (Ticker::kPriority) */
  ticker_.start(start_us_);
  if (!calls_.empty())
    g_main_loop_run(loop_);
  ticker_.stop();
  poll_batcher_.uninstall();
}

/* Call starts (webhook POSTs) are checked on every sub-tick, whatever the phase. */
void Runner::start_due(int64_t ideal_us) {
  if (stopping_)
    return;
  if (opt_.sequential) {
    if (next_to_start_ == finished_ && next_to_start_ < calls_.size())
      calls_[next_to_start_++]->start();
    return;
  }
  const int64_t elapsed_ms = (ideal_us - start_us_) / 1000;
  const size_t n = calls_.size();
  while (next_to_start_ < n &&
         (opt_.ramp_ms <= 0 ||
          elapsed_ms >= static_cast<int64_t>(next_to_start_) * opt_.ramp_ms / static_cast<int64_t>(n)))
    calls_[next_to_start_++]->start();
}

/* Sub-tick @sub_tick is frame F of phase P (phases.h): only P's calls act,
 * and for them it is their frame F due at @ideal_us. Each frame rotates who
 * goes first so the time spent sending is spread evenly. With libsoup (one
 * write per message) every call's media goes out before any playout and
 * mark echo; the raw client writes each call's media and echoes together, so
 * it takes calls one at a time. */
void Runner::on_tick(int64_t sub_tick, int64_t ideal_us) {
  start_due(ideal_us);
  const int64_t frame = schedule_.frame_of(sub_tick);
  const int phase = schedule_.phase_at(sub_tick);
  if (opt_.raw_transport) {
    schedule_.for_each(frame, phase, [&](size_t i) {
      Call &c = *calls_[i];
      if (c.ticking())
        c.on_tick(frame, ideal_us);
    });
  } else {
    schedule_.for_each(frame, phase, [&](size_t i) {
      Call &c = *calls_[i];
      if (c.ticking())
        c.tick_send(frame, ideal_us);
    });
    schedule_.for_each(frame, phase, [&](size_t i) { calls_[i]->tick_play(ideal_us); });
  }
}

void Runner::call_finished(Call &) {
  finished_++;
  if (finished_ == calls_.size())
    g_main_loop_quit(loop_);
}

void Runner::stop_all(const char *outcome) {
  if (stopping_)
    return;
  stopping_ = true;
  stop_outcome_ = outcome;
  for (auto &c : calls_)
    c->shutdown(outcome);
  if (finished_ < calls_.size())
    grace_id_ = g_timeout_add(kGraceMs, on_grace_over, this);
}

gboolean Runner::on_max_duration(gpointer data) {
  auto *self = static_cast<Runner *>(data);
  self->deadline_id_ = 0;
  self->timed_out_ = true;
  g_printerr("twilio-emulator: --max-duration-s %d reached, ending every call\n", self->opt_.max_duration_s);
  self->stop_all("timeout");
  return G_SOURCE_REMOVE;
}

gboolean Runner::on_grace_over(gpointer data) {
  auto *self = static_cast<Runner *>(data);
  self->grace_id_ = 0;
  for (auto &c : self->calls_)
    c->force_finish(self->stop_outcome_);
  g_main_loop_quit(self->loop_);
  return G_SOURCE_REMOVE;
}

gboolean Runner::on_signal(gpointer data) {
  auto *self = static_cast<Runner *>(data);
  if (self->stopping_) {
    if (self->grace_id_)
      g_source_remove(self->grace_id_);
    on_grace_over(data); /* second signal: do not wait */
    return G_SOURCE_CONTINUE;
  }
  g_printerr("twilio-emulator: interrupted, ending every call\n");
  self->stop_all("interrupted");
  return G_SOURCE_CONTINUE;
}

std::vector<CallReport> Runner::reports() const {
  std::vector<CallReport> out;
  out.reserve(calls_.size());
  for (const auto &c : calls_)
    out.push_back(c->report());
  return out;
}

} // namespace emu
