/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * What the caller hears, when: a short log of the agent's μ-law audio laid
 * out on the pipeline's running time as twiliosink expects Twilio to play
 * it. bargein reads it (through twiliosink's `phoneagent/far-end` query) as
 * the far end of its echo canceller. Not thread-safe: the owner locks.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pa-api.h"

namespace pa {

class PA_API Playout {
public:
  /* @keep_ms: how much of the past is kept for readers */
  explicit Playout(unsigned keep_ms = 2000) : keep_(static_cast<uint64_t>(keep_ms) * 8) {}

  /* @n bytes of μ-law (8 kHz) that start playing at running time @rt (ns);
   * a gap since the previous audio is silence, an overlap overwrites */
  void add(uint64_t rt, const uint8_t *mu, size_t n);
  /* Nothing scheduled from @rt on plays (Twilio was told to clear). */
  void cut(uint64_t rt);
  /* @n bytes of what plays from @rt on into @out: silence (0xFF) where
   * nothing plays or nothing is known any more */
  void read(uint64_t rt, size_t n, uint8_t *out) const;
  void reset();
  /* running time (ns) after the last sample scheduled, 0 when empty */
  uint64_t end_rt() const;

  static uint64_t to_sample(uint64_t rt) { return rt / 125000; } /* 8 kHz: 125 µs */

private:
  uint64_t keep_;
  uint64_t start_ = 0; /* sample index of buf_[0] */
  std::vector<uint8_t> buf_;
};

} // namespace pa
