/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "bargein-echo.h"

#include <webrtc/modules/audio_processing/include/audio_processing.h>
#include <webrtc/modules/interface/module_common_types.h>

#include <algorithm>
#include <cmath>

#include "bargein-detector.h"

namespace bargein {

struct EchoCanceller::Apm {
  webrtc::AudioProcessing *apm = nullptr;
  webrtc::AudioFrame near, far;
  ~Apm() { delete apm; }
};

/* Why AECM and not webrtc's full AEC (EchoCancellation, "AEC2"): barge-in
 * is double talk by definition, and AEC2's non-linear stage took a caller
 * talking 12 dB over the echo down by 25-35 dB for most of a sentence
 * (tests/bargein/test-bargein-echo.cpp tried both). AECM, in its quietest
 * routing mode, keeps such a caller within 1 dB and takes the echo 25 dB
 * down once it has learnt the line (about a second of the agent's speech);
 * it finds the delay by itself, up to several hundred ms, and costs little. */
EchoCanceller::EchoCanceller(int rate) : rate_(rate == 16000 ? 16000 : 8000) {
  std::unique_ptr<Apm> a(new Apm);
  a->apm = webrtc::AudioProcessing::Create();
  if (!a->apm)
    return;
  webrtc::EchoControlMobile *m = a->apm->echo_control_mobile();
  if (m->Enable(true) != webrtc::AudioProcessing::kNoError ||
      m->set_routing_mode(webrtc::EchoControlMobile::kQuietEarpieceOrHeadset) != webrtc::AudioProcessing::kNoError)
    return;
  m->enable_comfort_noise(false);
  for (webrtc::AudioFrame *f : {&a->near, &a->far}) {
    f->sample_rate_hz_ = rate_;
    f->num_channels_ = 1;
    f->samples_per_channel_ = frame_samples();
  }
  apm_ = std::move(a);
}

EchoCanceller::~EchoCanceller() = default;

void EchoCanceller::far(const int16_t *pcm8k) {
  if (!apm_)
    return;
  webrtc::AudioFrame &f = apm_->far;
  f.sample_rate_hz_ = rate_;
  f.num_channels_ = 1;
  f.samples_per_channel_ = frame_samples();
  if (rate_ == 8000) {
    std::copy(pcm8k, pcm8k + 80, f.data_);
  } else {
    /* 8 -> 16 kHz, linear: the far end only has to look like the echo */
    for (size_t i = 0; i < 80; i++) {
      int next = i + 1 < 80 ? pcm8k[i + 1] : pcm8k[i];
      f.data_[2 * i] = pcm8k[i];
      f.data_[2 * i + 1] = static_cast<int16_t>((pcm8k[i] + next) / 2);
    }
  }
  apm_->apm->AnalyzeReverseStream(&f);
  far_frames_++;
}

void EchoCanceller::near(int16_t *pcm) {
  if (!apm_)
    return;
  webrtc::AudioFrame &f = apm_->near;
  const size_t n = frame_samples();
  f.sample_rate_hz_ = rate_;
  f.num_channels_ = 1;
  f.samples_per_channel_ = n;
  std::copy(pcm, pcm + n, f.data_);
  /* the far end is fed as it plays: what is left is the line's own delay,
   * which AECM's delay estimator finds */
  apm_->apm->set_stream_delay_ms(0);
  if (apm_->apm->ProcessStream(&f) == webrtc::AudioProcessing::kNoError)
    std::copy(f.data_, f.data_ + n, pcm);
}

void EchoPresence::add(double far_db, double near_db) {
  const unsigned size = kWindow + kMaxLag;
  /* a shift register: newest last (90 doubles, once per 10 ms) */
  std::copy(far_ + 1, far_ + size, far_);
  std::copy(near_ + 1, near_ + size, near_);
  far_[size - 1] = std::max(far_db, -70.0);
  near_[size - 1] = std::max(near_db, -70.0);
  if (n_ < size)
    n_++;
  /* the window: the newest frames, up to kWindow, with kMaxLag of the far
   * end before them */
  if (n_ <= kMaxLag)
    return;
  const unsigned w = std::min(n_ - kMaxLag, kWindow);
  const double *nw = near_ + size - w;
  unsigned active = 0;
  for (unsigned i = 0; i < w; i++)
    active += far_[size - w + i] > -60.0;
  if (active < 30)
    return; /* the agent is mostly silent: keep what was said */
  /* Pearson correlation of near[t] and far[t - lag] over the window */
  double nm = 0;
  for (unsigned i = 0; i < w; i++)
    nm += nw[i];
  nm /= w;
  double best = -1;
  unsigned best_lag = 0;
  for (unsigned lag = 0; lag <= kMaxLag; lag++) {
    const double *fw = far_ + size - w - lag;
    double fm = 0;
    for (unsigned i = 0; i < w; i++)
      fm += fw[i];
    fm /= w;
    double sfn = 0, sff = 0, snn = 0;
    for (unsigned i = 0; i < w; i++) {
      double a = fw[i] - fm, b = nw[i] - nm;
      sfn += a * b;
      sff += a * a;
      snn += b * b;
    }
    if (sff > 0 && snn > 0 && sfn / std::sqrt(sff * snn) > best) {
      best = sfn / std::sqrt(sff * snn);
      best_lag = lag;
    }
  }
  corr_ = best;
  lag_ = best_lag;
  known_ = true;
  /* the loss at that lag, where the agent was clearly audible (not where
   * the line's noise is all the near end has) */
  const double *fw = far_ + size - w - best_lag;
  double sum = 0;
  unsigned loud = 0;
  for (unsigned i = 0; i < w; i++)
    if (fw[i] > -45.0) {
      sum += nw[i] - fw[i];
      loud++;
    }
  if (loud)
    loss_ = sum / loud;
}

EchoPath::EchoPath(int rate) : aec_(rate), clean_(aec_.frame_samples()) {
  std::fill(far_hist_, far_hist_ + kHistory, -100.0);
}

/* the loudest the agent's echo should be in this frame: the far end's
 * level at the line's delay (a frame either way: the delay is known to
 * 10 ms, and a syllable's edge can fall either side), plus the line's loss */
double EchoPath::predicted_echo_db() const {
  const unsigned lag = presence_.lag();
  double far = -100.0;
  for (unsigned back = lag ? lag - 1 : 0; back <= lag + 1 && back < kHistory; back++)
    if (back < pos_)
      far = std::max(far, far_hist_[(pos_ - 1 - back) % kHistory]);
  return far + presence_.loss_db();
}

const int16_t *EchoPath::frame(const int16_t *far, const int16_t *near, Detector &det) {
  const size_t n = aec_.frame_samples();
  far_db_ = level_db(far, 80);
  near_db_ = level_db(near, n);
  far_hist_[pos_ % kHistory] = far_db_;
  pos_++;
  if (!line_echoes_) {
    presence_.add(far_db_, near_db_);
    line_echoes_ = presence_.known() && presence_.correlation() >= kEchoCorrelation;
  }
  const bool quiet = far_db_ < kFarQuietDb;
  quiet_ = quiet ? quiet_ + 1 : 0;
  const int16_t *heard = near;
  ran_ = false;
  taken_db_ = 0;
  if (quiet_ < kTailFrames && aec_.ok()) {
    std::copy(near, near + n, clean_.data());
    aec_.far(far);
    aec_.near(clean_.data());
    ran_ = true;
    taken_db_ = near_db_ - level_db(clean_.data(), n);
    frames_++;
    if (!quiet) {
      heard_++;
      taken_avg_ += (taken_db_ - taken_avg_) / static_cast<double>(std::min<uint64_t>(heard_, 500));
    }
    /* on a line that echoes, once the canceller has learnt it, the
     * detector hears what the canceller leaves: the caller (within a dB
     * or so), a noise on the line, without the agent's voice mixed in.
     * Not on a line without echo (the canceller could only do harm), nor
     * before it has learnt the line: until then it also takes the start
     * of a caller's words now and then. */
    if (learnt())
      heard = clean_.data();
  }
  if (line_echoes_) {
    /* every frame, the canceller running or not, so that the agent's
     * voice at the line's delay is at hand from the first frame it could
     * come back in: what the canceller lets through of the agent (in
     * double talk, and in the first frames after the agent was silent,
     * before it has caught up) is not taken for the caller's voice */
    det.far_end(far, near, std::min(presence_.lag(), Detector::max_echo_delay_frames()));
    if (heard == near)
      det.echo_ceiling(predicted_echo_db() + kEchoCeilingMarginDb);
  } else if (!presence_.known()) {
    /* not known yet whether the line echoes (the agent's first 300 ms or
     * so): as if it echoed as loud as a line may, at any delay */
    double loudest = -100.0;
    for (unsigned back = 0; back < kHistory && back < pos_; back++)
      loudest = std::max(loudest, far_hist_[(pos_ - 1 - back) % kHistory]);
    det.echo_ceiling(loudest + kLoudestLossDb + kEchoCeilingMarginDb);
  }
  return heard;
}

} // namespace bargein
