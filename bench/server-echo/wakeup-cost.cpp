/* server-echo-wakeup: what one thread wake-up costs on this machine, the
 * fixed price a media thread pays each time it wakes, whatever it then does
 * (docs/architecture.md, "media-fill"). THREADS threads each sleep until the
 * next multiple of PERIOD_US (clock_nanosleep, absolute) WAKEUPS times and
 * do nothing else; the process's CPU time (getrusage) over the wake-ups is
 * the cost. With TOUCH_KB, each wake-up then reads one word of every 64-byte
 * line of a TOUCH_KB buffer of its own, in a random cycle (each read's
 * address comes from the one before, so neither the prefetcher nor the
 * out-of-order core hides a miss): the state a media thread's round goes
 * through, and what it costs to find it again after the sleep. Prints
 *   WAKEUP threads=<n> period_us=<p> touch_kb=<k> cpu_us_per_wakeup=<c>
 * usage: server-echo-wakeup [THREADS=1] [PERIOD_US=10000] [WAKEUPS=500] [TOUCH_KB=0] */
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

namespace {
double cpu_us() {
  rusage r;
  getrusage(RUSAGE_SELF, &r);
  return (static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec)) * 1e6 +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

constexpr size_t kLine = 64 / sizeof(size_t); /* words in a cache line */

/* A random cycle through the buffer's lines: line i holds the next one's index. */
std::vector<size_t> make_cycle(long touch_kb, unsigned seed) {
  size_t lines = static_cast<size_t>(touch_kb) * 1024 / 64;
  std::vector<size_t> buf(lines * kLine, 0);
  if (lines < 2)
    return buf;
  std::vector<size_t> order(lines);
  std::iota(order.begin(), order.end(), size_t{0});
  std::shuffle(order.begin() + 1, order.end(), std::mt19937(seed));
  for (size_t i = 0; i < lines; i++)
    buf[order[i] * kLine] = order[(i + 1) % lines];
  return buf;
}

void sleeper(long period_us, int wakeups, const std::vector<size_t> &buf, size_t *sink) {
  size_t lines = buf.size() / kLine, at = 0;
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  for (int i = 0; i < wakeups; i++) {
    ts.tv_nsec += period_us * 1000;
    while (ts.tv_nsec >= 1000000000L) {
      ts.tv_nsec -= 1000000000L;
      ts.tv_sec++;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) != 0) {
    }
    for (size_t n = 0; n < lines; n++)
      at = buf[at * kLine];
  }
  *sink = at; /* the reads have a use, so they stay */
}
} // namespace

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  long period_us = argc > 2 ? atol(argv[2]) : 10000;
  int wakeups = argc > 3 ? atoi(argv[3]) : 500;
  long touch_kb = argc > 4 ? atol(argv[4]) : 0;
  if (threads < 1 || threads > 64 || period_us < 100 || wakeups < 1 || wakeups > 100000 || touch_kb < 0 ||
      touch_kb > 1024 * 1024) {
    fprintf(stderr, "usage: %s [THREADS 1-64] [PERIOD_US >= 100] [WAKEUPS 1-100000] [TOUCH_KB 0-1048576]\n", argv[0]);
    return 2;
  }
  std::vector<size_t> sinks(static_cast<size_t>(threads));
  std::vector<std::vector<size_t>> bufs; /* built (and their pages touched) before the count starts */
  for (int i = 0; i < threads; i++)
    bufs.push_back(make_cycle(touch_kb, static_cast<unsigned>(i + 1)));
  std::vector<std::thread> all;
  double c0 = cpu_us();
  for (int i = 0; i < threads; i++)
    all.emplace_back(sleeper, period_us, wakeups, std::cref(bufs[static_cast<size_t>(i)]), &sinks[static_cast<size_t>(i)]);
  for (auto &t : all)
    t.join();
  double c1 = cpu_us();
  printf("WAKEUP threads=%d period_us=%ld touch_kb=%ld cpu_us_per_wakeup=%.1f\n", threads, period_us, touch_kb,
         (c1 - c0) / (static_cast<double>(threads) * wakeups));
  return 0;
}
