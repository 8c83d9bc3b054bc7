/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "bargein-echo.h"

#include <webrtc/modules/audio_processing/include/audio_processing.h>
#include <webrtc/modules/interface/module_common_types.h>

#include <algorithm>
#include <cmath>

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
}

} // namespace bargein
