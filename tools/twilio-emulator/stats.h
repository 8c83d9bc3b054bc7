/* twilio-emulator: percentiles for the report */
#pragma once

#include <cstddef>
#include <vector>

namespace emu {

struct Summary {
  size_t count = 0;
  double mean = 0, p50 = 0, p95 = 0, p99 = 0, max = 0, min = 0;
};

/* Nearest-rank percentiles (the smallest value with at least p% of the
 * samples at or below it). Sorts @values in place. */
Summary summarize(std::vector<double> &values);

} // namespace emu
