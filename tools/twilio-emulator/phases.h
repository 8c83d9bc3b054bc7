/* twilio-emulator: the frame phases of a run's calls (--phases N).
 *
 * Real calls are independent: each one's 20 ms frames come at its own phase.
 * With N phases the run's ticker fires every 20/N ms (a sub-tick); call i
 * (0-based) belongs to phase i mod N and acts only on the sub-ticks of its
 * phase, at offset (i mod N) x 20/N ms within each 20 ms frame. Sub-tick s is
 * frame s / N of phase s mod N, and its deadline (origin + s x 20/N ms) is the
 * ideal time of that frame for the calls of that phase: each call keeps an
 * exact 20 ms grid of its own. N = 1 is the single shared tick.
 *
 * The calls are bucketed by phase, so a sub-tick touches only its own
 * phase's calls. Within a bucket the order rotates by one every frame (the
 * call that goes first changes), as the single tick always did.
 *
 * A pure class: no clock, no I/O (unit-tested in tests/unit/test-emulator.cpp).
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace emu {

class PhaseSchedule {
public:
  static constexpr int64_t kFrameUs = 20000;
  static constexpr int kMaxPhases = 20;

  /* True when 1 <= @phases <= kMaxPhases and 20 ms divides into @phases equal
   * whole microseconds (1, 2, 4, 5, 8, 10, 16, 20). */
  static bool valid(int phases);
  /* The valid values, for messages: "1, 2, 4, 5, 8, 10, 16 or 20". */
  static std::string valid_list();

  /* @phases must be valid(); @calls calls, indexed from 0. */
  PhaseSchedule(int phases, size_t calls);

  int phases() const { return phases_; }
  /* The ticker's period: 20 ms / phases. */
  int64_t period_us() const { return kFrameUs / phases_; }
  int phase_of(size_t call) const { return static_cast<int>(call % static_cast<size_t>(phases_)); }
  /* Sub-tick @sub (counted from 0): the frame (counted from 0) and the phase it serves. */
  int64_t frame_of(int64_t sub) const { return sub / phases_; }
  int phase_at(int64_t sub) const { return static_cast<int>(sub % phases_); }
  /* Offset of @phase within a frame. */
  int64_t offset_us(int phase) const { return phase * period_us(); }
  /* The calls of @phase, in index order. */
  const std::vector<size_t> &bucket(int phase) const { return buckets_[static_cast<size_t>(phase)]; }

  /* Calls @f(call index) for every call of @phase, in the order of @frame
   * (the bucket rotated by @frame). With one phase this is the order the
   * single shared tick used: call (i + frame) mod calls for i = 0, 1, ... */
  template <typename F> void for_each(int64_t frame, int phase, F &&f) const {
    const std::vector<size_t> &b = bucket(phase);
    const size_t n = b.size();
    if (!n)
      return;
    const size_t first = static_cast<size_t>(frame) % n;
    for (size_t i = first; i < n; i++)
      f(b[i]);
    for (size_t i = 0; i < first; i++)
      f(b[i]);
  }

private:
  int phases_;
  std::vector<std::vector<size_t>> buckets_;
};

} // namespace emu
