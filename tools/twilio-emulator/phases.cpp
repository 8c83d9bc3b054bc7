/* twilio-emulator: the frame phases of a run's calls */
#include "phases.h"

namespace emu {

bool PhaseSchedule::valid(int phases) { return phases >= 1 && phases <= kMaxPhases && kFrameUs % phases == 0; }

std::string PhaseSchedule::valid_list() {
  std::string s;
  for (int n = 1; n <= kMaxPhases; n++) {
    if (!valid(n))
      continue;
    if (!s.empty())
      s += n == kMaxPhases ? " or " : ", ";
    s += std::to_string(n);
  }
  return s;
}

PhaseSchedule::PhaseSchedule(int phases, size_t calls)
    : phases_(valid(phases) ? phases : 1), buckets_(static_cast<size_t>(phases_)) {
  for (auto &b : buckets_)
    b.reserve(calls / static_cast<size_t>(phases_) + 1);
  for (size_t i = 0; i < calls; i++)
    buckets_[static_cast<size_t>(phase_of(i))].push_back(i);
}

} // namespace emu
