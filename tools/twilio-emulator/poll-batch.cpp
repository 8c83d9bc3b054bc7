/* twilio-emulator: poll batching */
#include "poll-batch.h"

#include <algorithm>

#include "ticker.h"

namespace emu {

namespace {
/* g_main_context_set_poll_func has no user data: the one installed batcher. */
PollBatcher *active_batcher = nullptr;
} // namespace

void PollBatcher::install(GMainContext *ctx, const Ticker &ticker, int64_t batch_us) {
  uninstall();
  if (batch_us <= 0 || active_batcher)
    return;
  ctx_ = ctx ? ctx : g_main_context_default();
  ticker_ = &ticker;
  batch_us_ = batch_us;
  last_poll_us_ = 0;
  saved_poll_ = g_main_context_get_poll_func(ctx_);
  active_batcher = this;
  g_main_context_set_poll_func(ctx_, poll);
}

void PollBatcher::uninstall() {
  if (!ctx_)
    return;
  g_main_context_set_poll_func(ctx_, saved_poll_);
  if (active_batcher == this)
    active_batcher = nullptr;
  ctx_ = nullptr;
  ticker_ = nullptr;
  saved_poll_ = nullptr;
}

gint PollBatcher::poll(GPollFD *fds, guint nfds, gint timeout_ms) {
  PollBatcher *self = active_batcher;
  if (self && timeout_ms != 0) {
    int64_t now = g_get_monotonic_time();
    int64_t until = std::min(self->last_poll_us_ + self->batch_us_, self->ticker_->next_deadline_us());
    if (timeout_ms > 0)
      until = std::min(until, now + static_cast<int64_t>(timeout_ms) * 1000);
    if (until > now) {
      g_usleep(static_cast<gulong>(until - now));
      if (timeout_ms > 0)
        timeout_ms = std::max<gint>(0, timeout_ms - static_cast<gint>((until - now) / 1000));
    }
  }
  gint r = g_poll(fds, nfds, timeout_ms);
  if (self)
    self->last_poll_us_ = g_get_monotonic_time();
  return r;
}

} // namespace emu
