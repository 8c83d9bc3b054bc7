/* server-echo-wakeup: what one thread wake-up costs on this machine, the
 * fixed price a media thread pays each time it wakes, whatever it then does
 * (docs/architecture.md, "media-fill"). THREADS threads each sleep until the
 * next multiple of PERIOD_US (clock_nanosleep, absolute) WAKEUPS times and
 * do nothing else; the process's CPU time (getrusage) over the wake-ups is
 * the cost. Prints
 *   WAKEUP threads=<n> period_us=<p> cpu_us_per_wakeup=<c>
 * usage: server-echo-wakeup [THREADS=1] [PERIOD_US=10000] [WAKEUPS=500] */
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <thread>
#include <vector>

namespace {
double cpu_us() {
  rusage r;
  getrusage(RUSAGE_SELF, &r);
  return (static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec)) * 1e6 +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

void sleeper(long period_us, int wakeups) {
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
  }
}
} // namespace

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  long period_us = argc > 2 ? atol(argv[2]) : 10000;
  int wakeups = argc > 3 ? atoi(argv[3]) : 500;
  if (threads < 1 || threads > 64 || period_us < 100 || wakeups < 1 || wakeups > 100000) {
    fprintf(stderr, "usage: %s [THREADS 1-64] [PERIOD_US >= 100] [WAKEUPS 1-100000]\n", argv[0]);
    return 2;
  }
  double c0 = cpu_us();
  std::vector<std::thread> all;
  for (int i = 0; i < threads; i++)
    all.emplace_back(sleeper, period_us, wakeups);
  for (auto &t : all)
    t.join();
  double c1 = cpu_us();
  printf("WAKEUP threads=%d period_us=%ld cpu_us_per_wakeup=%.1f\n", threads, period_us,
         (c1 - c0) / (static_cast<double>(threads) * wakeups));
  return 0;
}
