/* twilio-emulator: shared absolute-deadline tick */
#include "ticker.h"

#ifdef __linux__
#include <glib-unix.h>
#include <sys/timerfd.h>
#include <unistd.h>
#endif

#include <utility>

namespace emu {

Ticker::Ticker(int64_t period_us, Callback cb, int max_catch_up)
    : period_us_(period_us), max_catch_up_(max_catch_up), cb_(std::move(cb)) {}

Ticker::~Ticker() { stop(); }

void Ticker::start(int64_t origin_us) {
  stop();
  origin_us_ = origin_us;
  index_ = 0;
  wakeups_ = 0;
#ifdef __linux__
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd_ >= 0) {
    source_ = g_unix_fd_source_new(timer_fd_, G_IO_IN);
    g_source_set_callback(source_, G_SOURCE_FUNC(+[](gint, GIOCondition, gpointer d) -> gboolean {
                            return dispatch(d);
                          }),
                          this, nullptr);
  }
#endif
  if (!source_) {
    /* a bare source driven only by its ready time */
    static GSourceFuncs funcs = {nullptr, nullptr,
                                 [](GSource *, GSourceFunc cb, gpointer d) -> gboolean { return cb(d); }, nullptr,
                                 nullptr, nullptr};
    source_ = g_source_new(&funcs, sizeof(GSource));
    g_source_set_callback(source_, dispatch, this, nullptr);
  }
  g_source_set_priority(source_, kPriority);
  g_source_attach(source_, g_main_context_get_thread_default());
  arm();
}

void Ticker::stop() {
  if (source_) {
    g_source_destroy(source_);
    g_source_unref(source_);
    source_ = nullptr;
  }
#ifdef __linux__
  if (timer_fd_ >= 0) {
    close(timer_fd_);
    timer_fd_ = -1;
  }
#endif
}

void Ticker::arm() {
  int64_t due = origin_us_ + index_ * period_us_;
#ifdef __linux__
  if (timer_fd_ >= 0) {
    /* g_get_monotonic_time() is CLOCK_MONOTONIC in µs */
    itimerspec its = {};
    its.it_value.tv_sec = due / G_USEC_PER_SEC;
    its.it_value.tv_nsec = (due % G_USEC_PER_SEC) * 1000;
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
      its.it_value.tv_nsec = 1; /* zero would disarm */
    timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &its, nullptr);
    return;
  }
#endif
  g_source_set_ready_time(source_, due);
}

gboolean Ticker::dispatch(gpointer data) {
  auto *self = static_cast<Ticker *>(data);
#ifdef __linux__
  if (self->timer_fd_ >= 0) {
    uint64_t expirations;
    while (read(self->timer_fd_, &expirations, sizeof expirations) > 0) {
    }
  }
#endif
  self->wakeups_++;
  GSource *source = self->source_;
  for (int i = 0; i < self->max_catch_up_; i++) {
    int64_t due = self->origin_us_ + self->index_ * self->period_us_;
    if (due > g_get_monotonic_time())
      break;
    int64_t index = self->index_++;
    self->cb_(index, due);
    if (self->source_ != source)
      return G_SOURCE_REMOVE; /* stopped from the callback */
  }
  self->arm();
  return G_SOURCE_CONTINUE;
}

} // namespace emu
