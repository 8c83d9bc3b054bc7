/* gst-phone-agent: local model VAD (webrtc-audio-processing) and turns */
#include "local-vad.h"

#include <webrtc/modules/audio_processing/include/audio_processing.h>
#include <webrtc/modules/interface/module_common_types.h>

#include <algorithm>
#include <cmath>

namespace pa::local {

/* ------------------------------------------------------------------ Vad */

struct Vad::Impl {
  std::unique_ptr<webrtc::AudioProcessing> apm;
  webrtc::AudioFrame frame;
};

namespace {
webrtc::VoiceDetection::Likelihood likelihood_for(double threshold) {
  /* WebRTC's likelihood is how readily a frame is called voice: the higher
   * the server_vad threshold, the less readily. */
  if (threshold < 0.3)
    return webrtc::VoiceDetection::kHighLikelihood;
  if (threshold < 0.6)
    return webrtc::VoiceDetection::kModerateLikelihood;
  if (threshold < 0.8)
    return webrtc::VoiceDetection::kLowLikelihood;
  return webrtc::VoiceDetection::kVeryLowLikelihood;
}
} // namespace

Vad::Vad(double threshold) : impl_(new Impl) {
  impl_->apm.reset(webrtc::AudioProcessing::Create());
  impl_->apm->Initialize(kVadRate, kVadRate, kVadRate, webrtc::AudioProcessing::kMono,
                         webrtc::AudioProcessing::kMono, webrtc::AudioProcessing::kMono);
  impl_->apm->voice_detection()->Enable(true);
  impl_->apm->voice_detection()->set_frame_size_ms(10);
  set_threshold(threshold);
}

Vad::~Vad() = default;

void Vad::set_threshold(double threshold) {
  threshold = std::clamp(threshold, 0.0, 1.0);
  impl_->apm->voice_detection()->set_likelihood(likelihood_for(threshold));
  /* Energy gate: the GMM alone fires on steady line noise. 0.5 -> -40 dBFS. */
  floor_db_ = -55.0 + 30.0 * threshold;
}

bool Vad::is_speech(const int16_t *samples) {
  double energy = 0;
  for (size_t i = 0; i < kVadFrame; i++)
    energy += static_cast<double>(samples[i]) * samples[i];
  double rms = std::sqrt(energy / kVadFrame);
  last_db_ = rms > 0 ? 20.0 * std::log10(rms / 32768.0) : -100.0;

  webrtc::AudioFrame &f = impl_->frame;
  f.UpdateFrame(0, 0, samples, kVadFrame, kVadRate, webrtc::AudioFrame::kNormalSpeech,
                webrtc::AudioFrame::kVadUnknown, 1);
  if (impl_->apm->ProcessStream(&f) != webrtc::AudioProcessing::kNoError)
    return last_db_ >= floor_db_ + 6.0; /* should not happen: fall back to energy alone */
  return impl_->apm->voice_detection()->stream_has_voice() && last_db_ >= floor_db_;
}

/* --------------------------------------------------------- TurnDetector */

namespace {
constexpr size_t kWindow = 15; /* frames considered for a speech start (150 ms) */
constexpr size_t kRecent = 5;  /* smoothing while in speech (50 ms) */
} // namespace

TurnDetector::TurnDetector(TurnParams params)
    : params_(params), vad_(params.threshold), window_(kWindow, false), recent_(kRecent, false) {}

void TurnDetector::set_params(const TurnParams &params) {
  params_ = params;
  vad_.set_threshold(params.threshold);
}

void TurnDetector::reset_turn() {
  in_speech_ = false;
  std::fill(window_.begin(), window_.end(), false);
  std::fill(recent_.begin(), recent_.end(), false);
  recent_voiced_ = 0;
}

void TurnDetector::process(const int16_t *samples, size_t n, std::vector<TurnEvent> &events) {
  size_t i = 0;
  /* complete a partial frame first */
  if (!pending_.empty()) {
    size_t take = std::min(n, kVadFrame - pending_.size());
    pending_.insert(pending_.end(), samples, samples + take);
    i = take;
    if (pending_.size() < kVadFrame)
      return;
    frame(pending_.data(), events);
    pending_.clear();
  }
  for (; i + kVadFrame <= n; i += kVadFrame)
    frame(samples + i, events);
  if (i < n)
    pending_.assign(samples + i, samples + n);
}

void TurnDetector::frame(const int16_t *f, std::vector<TurnEvent> &events) {
  const uint64_t start = pos_;
  const uint64_t end = pos_ + kVadFrame;
  pos_ = end;
  const bool voiced = vad_.is_speech(f);

  window_[window_pos_] = voiced;
  window_pos_ = (window_pos_ + 1) % kWindow;
  recent_voiced_ += (voiced ? 1 : 0) - (recent_[recent_pos_] ? 1 : 0);
  recent_[recent_pos_] = voiced;
  recent_pos_ = (recent_pos_ + 1) % kRecent;

  const uint64_t per_ms = kVadRate / 1000;
  if (!in_speech_) {
    size_t need = static_cast<size_t>(std::clamp(params_.min_speech_ms / 10, 1, static_cast<int>(kWindow)));
    size_t count = static_cast<size_t>(std::count(window_.begin(), window_.end(), true));
    if (count < need)
      return;
    /* oldest voiced frame in the window: the speech began there */
    uint64_t first = start;
    for (size_t k = 0; k < kWindow; k++) {
      size_t idx = (window_pos_ + k) % kWindow; /* window_pos_ is the oldest slot now */
      if (window_[idx]) {
        uint64_t back = static_cast<uint64_t>(kWindow - k) * kVadFrame;
        first = end >= back ? end - back : 0;
        break;
      }
    }
    uint64_t pad = static_cast<uint64_t>(std::max(0, params_.prefix_padding_ms)) * per_ms;
    in_speech_ = true;
    turn_start_ = first;
    last_voice_end_ = end;
    events.push_back({TurnEvent::Kind::Started, first > pad ? first - pad : 0});
    return;
  }
  if (recent_voiced_ >= 3)
    last_voice_end_ = end;
  uint64_t silence = static_cast<uint64_t>(std::max(0, params_.silence_duration_ms)) * per_ms;
  uint64_t max_turn = static_cast<uint64_t>(std::max(1000, params_.max_turn_ms)) * per_ms;
  if (end - last_voice_end_ >= silence || end - turn_start_ >= max_turn) {
    events.push_back({TurnEvent::Kind::Stopped, end});
    reset_turn();
  }
}

} // namespace pa::local
