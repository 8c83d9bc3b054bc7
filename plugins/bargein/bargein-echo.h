/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * bargein's echo canceller: webrtc-audio-processing's AECM (its echo
 * control for mobile: an NLMS filter with its own delay estimator and a
 * gentle suppressor), the agent's audio as heard by the caller as the far
 * end, the caller's audio as the near end. The detector hears what is left
 * where the canceller took most of a frame, so the agent's own voice coming
 * back down the line is not taken for the caller. Not a GObject.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace bargein {

class EchoCanceller {
public:
  /* @rate: 8000 or 16000 (the near end's; the far end comes at 8000 and is
   * brought to @rate here) */
  explicit EchoCanceller(int rate);
  ~EchoCanceller();
  EchoCanceller(const EchoCanceller &) = delete;
  EchoCanceller &operator=(const EchoCanceller &) = delete;

  bool ok() const { return apm_ != nullptr; }
  /* 10 ms at the near end's rate */
  size_t frame_samples() const { return static_cast<size_t>(rate_ / 100); }
  /* One 10 ms frame of the far end, 80 samples at 8 kHz, before the near
   * end frame of the same time. */
  void far(const int16_t *pcm8k);
  /* One 10 ms frame of the near end (frame_samples()), echo removed in
   * place. */
  void near(int16_t *pcm);

  /* far-end frames fed so far (AECM needs about a second of the agent's
   * speech to learn the line) */
  uint64_t far_frames() const { return far_frames_; }

private:
  int rate_;
  struct Apm;
  std::unique_ptr<Apm> apm_;
  uint64_t far_frames_ = 0;
};

/* Whether the caller's line echoes the agent at all: the correlation of the
 * two sides' frame levels (dB) over the last 600 ms, at the best lag up to
 * 300 ms. An echo follows the agent's syllables; line noise and a caller do
 * not. Cheap, and known after 300 ms of the agent's voice, where the
 * canceller needs about two seconds to learn the line. */
class EchoPresence {
public:
  /* one 10 ms frame: the far end's level and the near end's, dBFS */
  void add(double far_db, double near_db);
  /* there was enough to say, once: 300 ms of the agent audible in the last
   * 600 ms (and it stays said through the agent's pauses) */
  bool known() const { return known_; }
  /* the best correlation (-1..1) the last time there was enough to say; 0
   * before */
  double correlation() const { return corr_; }
  /* the lag (10 ms frames, 0..30) of that correlation: the line's delay */
  unsigned lag() const { return lag_; }

private:
  static constexpr unsigned kWindow = 60, kMaxLag = 30;
  double far_[kWindow + kMaxLag] = {}, near_[kWindow + kMaxLag] = {};
  unsigned n_ = 0;
  bool known_ = false;
  double corr_ = 0;
  unsigned lag_ = 0;
};

} // namespace bargein
