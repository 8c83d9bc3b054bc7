/* gst-phone-agent benchmarks: CPU time of the calling thread, and the mean
 * cost of one run of a piece of work (the parse benches). */
#pragma once

#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace bench {

inline double thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

/* Runs @once 1000 times to warm up, then @iterations times, and returns the
 * thread's CPU ns per run. @once returns false on failure (after saying
 * why): the bench stops. */
template <typename F> double ns_per_run(long iterations, F once) {
  for (int i = 0; i < 1000; i++)
    once();
  double t0 = thread_cpu_ns();
  for (long i = 0; i < iterations; i++)
    if (!once())
      exit(1);
  return (thread_cpu_ns() - t0) / static_cast<double>(iterations);
}

} // namespace bench
