/* twilio-emulator: the tick of a run (20 ms, or 20/N ms with --phases N).
 *
 * Absolute deadlines on the monotonic clock (tick k is due at
 * origin + k * period), so lateness never accumulates into drift. On Linux a
 * timerfd armed with TFD_TIMER_ABSTIME wakes the main loop with microsecond
 * precision; elsewhere g_source_set_ready_time (millisecond precision).
 * A dispatch that finds several ticks due runs them in order (each with its
 * own ideal time), at most max_catch_up per wake-up so I/O is not starved
 * (a run with N phases allows N times as many sub-ticks: the same time span).
 *
 * Priority: the ticker runs at the sockets' priority (kPriority), not above
 * them. In one main-loop iteration GLib dispatches only the ready sources of
 * the best priority among them: a higher-priority ticker made every wake-up
 * that found a tick due serve no socket at all. With --phases 20 (a 1 ms
 * tick) and poll batching (poll-batch.h, which sleeps up to the next tick)
 * that was nearly every wake-up: the calls' sockets were read far too late,
 * the echo missed the playout and what was still unread at the stream's end
 * was lost. At the same priority a wake-up runs the tick first (the ticker is
 * attached before the calls' sources) and then every ready socket.
 */
#pragma once

#include <glib.h>

#include <cstdint>
#include <functional>

namespace emu {

class Ticker {
public:
  /* @index counts from 0; @ideal_us is the tick's deadline (monotonic µs). */
  using Callback = std::function<void(int64_t index, int64_t ideal_us)>;

  static constexpr int kDefaultMaxCatchUp = 5;
  /* That of the calls' sockets (see above). */
  static constexpr gint kPriority = G_PRIORITY_DEFAULT;

  Ticker(int64_t period_us, Callback cb, int max_catch_up = kDefaultMaxCatchUp);
  ~Ticker();
  Ticker(const Ticker &) = delete;
  Ticker &operator=(const Ticker &) = delete;

  /* Starts with tick 0 due at @origin_us, on the thread-default context. */
  void start(int64_t origin_us);
  void stop();
  int64_t period_us() const { return period_us_; }
  /* Deadline of the next tick not yet run (monotonic µs). */
  int64_t next_deadline_us() const { return origin_us_ + index_ * period_us_; }
  /* Main-loop dispatches of the ticker since start() (each runs the ticks then due). */
  int64_t wakeups() const { return wakeups_; }

private:
  static gboolean dispatch(gpointer data);
  void arm();

  int64_t period_us_;
  int max_catch_up_;
  Callback cb_;
  GSource *source_ = nullptr;
  int timer_fd_ = -1;
  int64_t origin_us_ = 0;
  int64_t index_ = 0;
  int64_t wakeups_ = 0;
};

} // namespace emu
