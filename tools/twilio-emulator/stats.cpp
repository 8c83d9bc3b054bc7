/* twilio-emulator: percentiles */
#include "stats.h"

#include <algorithm>
#include <cmath>

namespace emu {

Summary summarize(std::vector<double> &values) {
  Summary s;
  s.count = values.size();
  if (values.empty())
    return s;
  std::sort(values.begin(), values.end());
  auto rank = [&](double p) {
    size_t r = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
    return values[std::min(values.size(), std::max<size_t>(r, 1)) - 1];
  };
  double sum = 0;
  for (double v : values)
    sum += v;
  s.mean = sum / static_cast<double>(values.size());
  s.p50 = rank(50);
  s.p95 = rank(95);
  s.p99 = rank(99);
  s.min = values.front();
  s.max = values.back();
  return s;
}

} // namespace emu
