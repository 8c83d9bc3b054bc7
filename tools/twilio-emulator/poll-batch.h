/* twilio-emulator: poll batching (--poll-batch-us) for a run with many calls.
 *
 * Replaces a GMainContext's poll function: before polling, sleep until at
 * most batch_us after the previous poll returned, so that one main-loop
 * iteration finds many sockets ready and serves them together, but never
 * past the ticker's next deadline (a tick is never delayed).
 *
 * With --phases 20 the ticker's period (1 ms) is the batch interval, so
 * nearly every wake-up is also a tick's: the ticker must not outrank the
 * sockets (ticker.h, Ticker::kPriority), or those wake-ups would run only
 * the tick and the sockets would wait (the echo coming back late or never).
 */
#pragma once

#include <glib.h>

#include <cstdint>

namespace emu {

class Ticker;

class PollBatcher {
public:
  PollBatcher() = default;
  ~PollBatcher() { uninstall(); }
  PollBatcher(const PollBatcher &) = delete;
  PollBatcher &operator=(const PollBatcher &) = delete;

  /* Installs the batching poll on @ctx (nullptr: the default context); bounded
   * by @ticker's next deadline. One PollBatcher at a time (GLib's poll
   * function has no user data). @batch_us <= 0: does nothing. */
  void install(GMainContext *ctx, const Ticker &ticker, int64_t batch_us);
  /* Restores the context's previous poll function. */
  void uninstall();
  bool installed() const { return ctx_ != nullptr; }

private:
  static gint poll(GPollFD *fds, guint nfds, gint timeout_ms);

  GMainContext *ctx_ = nullptr;
  const Ticker *ticker_ = nullptr;
  int64_t batch_us_ = 0;
  int64_t last_poll_us_ = 0;
  GPollFunc saved_poll_ = nullptr;
};

} // namespace emu
