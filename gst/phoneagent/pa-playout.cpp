/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "pa-playout.h"

#include <algorithm>
#include <cstring>

#include "pa-audio.h"

namespace pa {

void Playout::add(uint64_t rt, const uint8_t *mu, size_t n) {
  if (!n)
    return;
  uint64_t s = to_sample(rt);
  if (buf_.empty() || s < start_ || s > start_ + buf_.size() + keep_) {
    /* the first audio, or a jump too far to pad: start again there */
    buf_.clear();
    start_ = s;
  }
  size_t off = static_cast<size_t>(s - start_);
  if (buf_.size() < off + n)
    buf_.resize(off + n, kMulawSilence);
  std::memcpy(buf_.data() + off, mu, n);
  /* keep what plays from keep_ before the newest sample */
  if (buf_.size() > 2 * keep_) {
    size_t drop = buf_.size() - keep_;
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<long>(drop));
    start_ += drop;
  }
}

void Playout::cut(uint64_t rt) {
  uint64_t s = to_sample(rt);
  if (s <= start_)
    buf_.clear();
  else if (s < start_ + buf_.size())
    buf_.resize(static_cast<size_t>(s - start_));
}

void Playout::read(uint64_t rt, size_t n, uint8_t *out) const {
  std::memset(out, kMulawSilence, n);
  uint64_t s = to_sample(rt);
  uint64_t end = start_ + buf_.size();
  uint64_t from = std::max(s, start_), to = std::min(s + n, end);
  if (from < to)
    std::memcpy(out + (from - s), buf_.data() + (from - start_), static_cast<size_t>(to - from));
}

void Playout::reset() {
  buf_.clear();
  start_ = 0;
}

uint64_t Playout::end_rt() const { return buf_.empty() ? 0 : (start_ + buf_.size()) * 125000; }

} // namespace pa
