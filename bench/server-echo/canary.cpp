/* server-echo-canary: watches for machine-wide scheduling stalls while a
 * benchmark runs. Sleeps 1 ms at a time and records how much later than
 * asked it wakes up. On SIGTERM (or after SECONDS) it prints one line per
 * wake-up more than 2 ms late,
 *   STALL <from_us> <to_us>
 * from when it should have woken to when it did, on the monotonic clock
 * (µs, as g_get_monotonic_time() and the emulator's report), then
 *   CANARY max_ms=<worst extra delay> stalls=<wake-ups later than 10 ms>
 * A playout underrun of the echo benchmark that coincides with a stall here
 * was not the server's doing: an independent process was held up too. */
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <vector>

namespace {
volatile sig_atomic_t stop = 0;
void on_signal(int) { stop = 1; }
double now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}
} // namespace

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 600;
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  double start = now_ms(), last = start, worst = 0;
  long stalls = 0;
  struct Span {
    double from, to;
  };
  std::vector<Span> spans; /* at most one per 3 ms of the run */
  timespec one_ms = {0, 1000000};
  while (!stop && last - start < seconds * 1000) {
    nanosleep(&one_ms, nullptr);
    double t = now_ms();
    double late = t - last - 1.0;
    if (late > worst)
      worst = late;
    if (late > 10.0)
      stalls++;
    if (late > 2.0)
      spans.push_back({last + 1.0, t});
    last = t;
  }
  for (const Span &s : spans)
    printf("STALL %.0f %.0f\n", s.from * 1000, s.to * 1000);
  printf("CANARY max_ms=%.1f stalls=%ld\n", worst, stalls);
  return 0;
}
