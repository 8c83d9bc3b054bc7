/* gst-phone-agent: helpers for gst-check tests */
#pragma once

#include <gst/check/gstcheck.h>

#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <string>

/* A test that crashes says where: the crashing thread's backtrace goes to
 * stderr between "== crash backtrace" lines (scripts/test-summary.sh shows
 * it at the end of a CI log), then the signal ends the process as it would
 * have, and gst-check reports it. (Not under AddressSanitizer, whose own
 * report says more.) */
#ifndef __SANITIZE_ADDRESS__
namespace pa_check_crash {
inline void write_str(const char *s) {
  ssize_t ignored = write(STDERR_FILENO, s, strlen(s));
  (void)ignored;
}
inline void on_signal(int sig) {
  char num[4] = {static_cast<char>('0' + sig / 10 % 10), static_cast<char>('0' + sig % 10), ')', 0};
  write_str("== crash backtrace (signal ");
  write_str(num);
  write_str("\n");
  void *frames[64];
  int n = backtrace(frames, 64);
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  write_str("== end of crash backtrace\n");
  signal(sig, SIG_DFL);
  raise(sig);
}
struct Handler {
  Handler() {
    void *warm[1];
    backtrace(warm, 1); /* loads libgcc now, not in the handler */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT})
      sigaction(sig, &sa, nullptr);
  }
};
inline Handler installed; /* one per test program, before main() */
} // namespace pa_check_crash
#endif

/* Compares two strings held by value, so temporaries (a std::string returned
 * by the expression under test) live long enough to be printed. */
#define assert_str(a, b)                                                                                      \
  do {                                                                                                        \
    std::string _pa_a = (a);                                                                                  \
    std::string _pa_b = (b);                                                                                  \
    fail_unless(_pa_a == _pa_b, "'%s' != '%s'", _pa_a.c_str(), _pa_b.c_str());                               \
  } while (0)

/* A uint64 field of a statistics structure (the structure is freed); fails
 * the test when the field is missing. */
static inline guint64 pa_check_stat(GstStructure *stats, const char *name) {
  guint64 v = 0;
  fail_unless(gst_structure_get_uint64(stats, name, &v), "no stat %s", name);
  gst_structure_free(stats);
  return v;
}
