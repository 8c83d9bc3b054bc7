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
#include <vector>

#include "bargein-detector.h"

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
  /* the line's echo loss (dB, <= 0 when it echoes as loud or quieter):
   * the mean of the near end's level minus the far end's at that lag, over
   * the window's frames where the agent was clearly audible (-45 dBFS) */
  double loss_db() const { return loss_; }

private:
  static constexpr unsigned kWindow = 60, kMaxLag = 30;
  double far_[kWindow + kMaxLag] = {}, near_[kWindow + kMaxLag] = {};
  unsigned n_ = 0;
  bool known_ = false;
  double corr_ = 0;
  unsigned lag_ = 0;
  double loss_ = 0;
};

/* What bargein does around its detector on a line with a far end, frame by
 * frame (the element and bench/bargein share it):
 * - EchoPresence tells whether the line echoes the agent, its delay and
 *   its loss;
 * - the canceller runs while the agent was audible in the last second;
 * - on a line that echoes, the detector is given the far end and the line's
 *   audio before the canceller on every frame (Detector::far_end: the
 *   agent's pitch and waveform at the line's delay are not the caller's),
 *   and it hears the canceller's output once the canceller has heard 2 s of
 *   the agent; until then it hears the line as is, where sound at most
 *   kEchoCeilingMarginDb over the echo the far end predicts for this frame
 *   (its level at the line's delay, a frame either way, plus the line's
 *   loss) is the agent's (Detector::echo_ceiling);
 * - before it is known whether the line echoes, sound up to
 *   kEchoCeilingMarginDb over the loudest echo a line could return of the
 *   agent's last 330 ms is the agent's.
 * Not a GObject; one per call. */
class EchoPath {
public:
  /* @rate: the near end's, 8000 or 16000 */
  explicit EchoPath(int rate);

  bool ok() const { return aec_.ok(); }
  size_t frame_samples() const { return aec_.frame_samples(); }
  /* One 10 ms frame: @far, 80 samples at 8 kHz of what the caller heard
   * then, and @near, the line's audio of the same 10 ms (frame_samples()).
   * Returns what @det is to hear of it (@near, or the canceller's output,
   * valid until the next call) and gives @det what goes with it. */
  const int16_t *frame(const int16_t *far, const int16_t *near, Detector &det);

  /* the line was found to echo the agent (it stays so: the same line) */
  bool line_echoes() const { return line_echoes_; }
  const EchoPresence &presence() const { return presence_; }
  /* the detector hears the canceller's output */
  bool learnt() const { return line_echoes_ && heard_ >= kLearntFrames; }

  /* the last frame: the far end's level and the line's (dBFS), what the
   * canceller took out of it (dB; 0 when it did not run) */
  double far_db() const { return far_db_; }
  double near_db() const { return near_db_; }
  double taken_db() const { return taken_db_; }
  bool ran() const { return ran_; }
  /* frames through the canceller; what it took out of those where the
   * agent spoke (average, dB) */
  uint64_t frames() const { return frames_; }
  double taken_avg_db() const { return taken_avg_; }

  /* the line echoes the agent: its level follows the agent's this closely */
  static constexpr double kEchoCorrelation = 0.8;
  /* 200 frames of the agent heard: the canceller has learnt the line */
  static constexpr uint64_t kLearntFrames = 200;
  /* after a second of the agent's silence (longer than a line's echo tail)
   * there is nothing to cancel: the canceller rests */
  static constexpr unsigned kTailFrames = 100;
  /* the far end below this (dBFS) is silence */
  static constexpr double kFarQuietDb = -60.0;
  /* the echo's level is predicted within a couple of dB; this over it is
   * something else (a caller talking over the agent, about 5 dB louder
   * than its echo) */
  static constexpr double kEchoCeilingMarginDb = 6.0;
  /* until it is known whether the line echoes, it is taken to echo as loud
   * as a line may (a hybrid's echo return loss is at least 6 dB, ITU-T
   * G.168; with the margin, sound 4 dB under the agent's loudest of the
   * last 330 ms is the agent's) */
  static constexpr double kLoudestLossDb = -10.0;

private:
  double predicted_echo_db() const;

  EchoCanceller aec_;
  EchoPresence presence_;
  std::vector<int16_t> clean_;
  static constexpr unsigned kHistory = 34; /* the far end's levels: the longest delay and a frame either way */
  double far_hist_[kHistory] = {};
  uint64_t pos_ = 0; /* frames seen */
  bool line_echoes_ = false;
  unsigned quiet_ = 0;  /* far-end frames of silence in a row */
  uint64_t heard_ = 0;  /* far-end frames with the agent's voice, through the canceller */
  uint64_t frames_ = 0;
  double taken_avg_ = 0;
  double far_db_ = -100, near_db_ = -100, taken_db_ = 0;
  bool ran_ = false;
};

} // namespace bargein
