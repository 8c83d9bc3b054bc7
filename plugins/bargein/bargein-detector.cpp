/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "bargein-detector.h"

#include <webrtc/modules/audio_processing/include/audio_processing.h>
#include <webrtc/modules/interface/module_common_types.h>

#include <algorithm>
#include <cmath>

namespace bargein {

/* ------------------------------------------------------------ the VAD */

/* webrtc-audio-processing's VoiceDetection (the GMM voice activity detector
 * from WebRTC's common_audio/vad), with every other processing stage off. */
class Vad {
public:
  Vad(int rate, int aggressiveness) : apm_(webrtc::AudioProcessing::Create()) {
    if (!apm_)
      return;
    static const webrtc::VoiceDetection::Likelihood modes[] = {
        webrtc::VoiceDetection::kHighLikelihood, webrtc::VoiceDetection::kModerateLikelihood,
        webrtc::VoiceDetection::kLowLikelihood, webrtc::VoiceDetection::kVeryLowLikelihood};
    webrtc::VoiceDetection *vd = apm_->voice_detection();
    vd->set_likelihood(modes[std::clamp(aggressiveness, 0, 3)]);
    vd->set_frame_size_ms(10);
    vd->Enable(true);
    frame_.sample_rate_hz_ = rate;
    frame_.num_channels_ = 1;
    frame_.samples_per_channel_ = static_cast<size_t>(rate / 100);
  }
  ~Vad() { delete apm_; }
  bool ok() const { return apm_ != nullptr; }
  bool voiced(const int16_t *pcm) {
    std::copy(pcm, pcm + frame_.samples_per_channel_, frame_.data_);
    frame_.sample_rate_hz_ = static_cast<int>(frame_.samples_per_channel_ * 100);
    frame_.num_channels_ = 1;
    if (apm_->ProcessStream(&frame_) != webrtc::AudioProcessing::kNoError)
      return false;
    return apm_->voice_detection()->stream_has_voice();
  }

private:
  webrtc::AudioProcessing *apm_;
  webrtc::AudioFrame frame_;
};

/* ------------------------------------------------------------ helpers */

double level_db(const int16_t *pcm, size_t n) {
  if (!n)
    return -100.0;
  double e = 0;
  for (size_t i = 0; i < n; i++)
    e += static_cast<double>(pcm[i]) * pcm[i];
  e /= static_cast<double>(n) * 32768.0 * 32768.0;
  return e > 1e-10 ? 10.0 * std::log10(e) : -100.0;
}

static double goertzel(const int16_t *pcm, size_t n, double freq, int rate) {
  const double c = 2.0 * std::cos(2.0 * M_PI * freq / rate);
  double s1 = 0, s2 = 0;
  for (size_t i = 0; i < n; i++) {
    double s = pcm[i] + c * s1 - s2;
    s2 = s1;
    s1 = s;
  }
  return s1 * s1 + s2 * s2 - c * s1 * s2;
}

static const double kRows[] = {697, 770, 852, 941};
static const double kCols[] = {1209, 1336, 1477, 1633};

/* fraction of the frame's energy in the strongest row and column tone,
 * row and column separately */
static void dtmf_parts(const int16_t *pcm, size_t n, int rate, double &row, double &col) {
  double e = 0;
  for (size_t i = 0; i < n; i++)
    e += static_cast<double>(pcm[i]) * pcm[i];
  row = col = 0;
  if (e <= 0)
    return;
  /* a sinusoid of amplitude A: Goertzel power (A n / 2)^2, energy n A^2 / 2 */
  const double norm = 2.0 / (static_cast<double>(n) * e);
  for (double f : kRows)
    row = std::max(row, goertzel(pcm, n, f, rate) * norm);
  for (double f : kCols)
    col = std::max(col, goertzel(pcm, n, f, rate) * norm);
}

double dtmf_ratio(const int16_t *pcm, size_t n, int rate) {
  double row, col;
  dtmf_parts(pcm, n, rate, row, col);
  return row + col;
}

/* the best normalized autocorrelation of the last @win samples of @x at
 * lags @kmin..@kmax (and its lag in @lag); the search stops at the first
 * lag that reaches @enough */
template <typename T>
static double best_autocorrelation(const T *x, size_t n, size_t win, size_t kmin, size_t kmax, size_t *lag = nullptr,
                                   double enough = 2.0) {
  if (lag)
    *lag = 0;
  if (n < win + kmax)
    return 0;
  const T *w = x + n - win;
  double e0 = 0, ek = 0;
  for (size_t i = 0; i < win; i++) {
    e0 += static_cast<double>(w[i]) * w[i];
    ek += static_cast<double>(w[i - kmin]) * w[i - kmin];
  }
  if (e0 <= 0)
    return 0;
  double best = 0;
  for (size_t k = kmin; k <= kmax; k++) {
    double c = 0;
    for (size_t i = 0; i < win; i++)
      c += static_cast<double>(w[i]) * w[i - k];
    if (ek > 0 && c / std::sqrt(e0 * ek) > best) {
      best = c / std::sqrt(e0 * ek);
      if (lag)
        *lag = k;
      if (best >= enough)
        break;
    }
    if (k < kmax) {
      /* the lagged window's energy, slid one sample back */
      const double in = w[-static_cast<std::ptrdiff_t>(k) - 1], out = w[win - 1 - k];
      ek = std::max(0.0, ek + in * in - out * out);
    }
  }
  return best;
}

/* the normalized autocorrelation of the last @win samples of @x (which
 * holds at least @win + @k) at lag @k */
static double autocorrelation_at(const float *x, size_t n, size_t win, size_t k) {
  if (n < win + k)
    return 0;
  const float *w = x + n - win;
  double e0 = 0, ek = 0, c = 0;
  for (size_t i = 0; i < win; i++) {
    const double a = w[i], b = w[static_cast<std::ptrdiff_t>(i) - static_cast<std::ptrdiff_t>(k)];
    e0 += a * a;
    ek += b * b;
    c += a * b;
  }
  return e0 > 0 && ek > 0 ? c / std::sqrt(e0 * ek) : 0;
}

double periodicity(const int16_t *x, size_t n, size_t win, int rate) {
  return best_autocorrelation(x, n, win, static_cast<size_t>(rate / 400), static_cast<size_t>(rate / 60));
}

double prediction_gain_db(const float *x, size_t n, int order) {
  constexpr int kMaxOrder = 32;
  constexpr size_t kMaxN = 512;
  n = std::min(n, kMaxN);
  order = std::min(order, kMaxOrder);
  if (n < 2 || order < 1)
    return 0;
  /* Hamming window, autocorrelation, Levinson-Durbin (no allocation: this
   * runs for every loud frame) */
  double w[kMaxN], r[kMaxOrder + 1], a[kMaxOrder + 1] = {1.0}, prev[kMaxOrder + 1];
  for (size_t i = 0; i < n; i++)
    w[i] = x[i] * (0.54 - 0.46 * std::cos(2.0 * M_PI * static_cast<double>(i) / static_cast<double>(n - 1)));
  for (int k = 0; k <= order; k++) {
    double acc = 0;
    for (size_t i = static_cast<size_t>(k); i < n; i++)
      acc += w[i] * w[i - static_cast<size_t>(k)];
    r[k] = acc;
  }
  if (r[0] <= 0)
    return 0;
  const double r0 = r[0];
  double e = r[0] * (1.0 + 1e-4); /* a -40 dB white floor: the gain stays under 40 dB */
  for (int i = 1; i <= order; i++) {
    double acc = r[i];
    for (int j = 1; j < i; j++)
      acc += a[j] * r[i - j];
    const double k = -acc / e;
    std::copy(a, a + i, prev);
    for (int j = 1; j < i; j++)
      a[j] = prev[j] + k * prev[i - j];
    a[i] = k;
    e *= 1.0 - k * k;
    if (e <= 0)
      return 40.0;
  }
  return 10.0 * std::log10(r0 / e);
}

/* ------------------------------------------------------------ detector */

static const unsigned kTurnGapMs = 600;
/* The pitch and tonality analysis runs on the last 20 ms (40 ms of history
 * for lags down to 60 Hz) at 8 kHz. */
static const size_t kAnaWin = 160;
static const size_t kAnaKeep = 320;
/* voicing: the best normalized autocorrelation at a pitch lag of the
 * signal high-passed at 300 Hz and pre-emphasized (y[n] = h[n] - 0.85
 * h[n-1]). The plain signal's autocorrelation is dominated by its low end:
 * pink hiss and rumble correlate at every short lag and looked voiced.
 * Filtered, pink hiss at -45..-35 dBFS stays under 0.4 (99 % of its
 * frames under 0.31), white hiss and coughs nearly always (97 % of cough
 * frames); 70 % of the espeak-ng speech frames the VAD calls voice are
 * over it. A voice keeps its period in its harmonics
 * above 300 Hz. */
static const double kMinPeriodicity = 0.4;
static const double kHighPassHz = 300;
static const float kPreEmphasis = 0.85f;
/* tonality: a few clean tones (music-like notes: three harmonics of a
 * constant F0) repeat almost exactly (periodicity >= 0.85 even where the
 * integer lag misses a high note's period) AND are predicted well by a
 * short linear predictor (10th order, gain >= 16 dB: the inverse of the
 * spectral flatness of its envelope; 20-24 dB for the notes, still 16-19
 * dB at -35 dBFS over a -62 dBFS line). Voiced speech, a comb of many
 * harmonics under formants, is one or the other now and then, rarely both
 * (in bench/bargein's first second of a burst: espeak-ng at most 36 % of
 * its pitched frames, music-like notes 87-97 %). Such frames are not voiced, and a burst with more of them than
 * voiced frames is not speech. */
static const double kTonalPeriodicity = 0.85;
static const double kTonalPredictionGainDb = 16.0;
static const int kLpcOrder = 10;
/* On a line that echoes, with the far end (Detector::far_end): a pitched
 * frame of the canceller's output is the agent's echo when the agent, at
 * the line's delay (a frame either way), was this periodic at the frame's
 * pitch lag (a sample either way; kEchoPitchMatch) AND the frame's
 * waveform, filtered as for the pitch, correlates this well with the
 * agent's within 10 ms of that delay (kEchoCoherence). Measured on the
 * coughs of tests/bargein/test-bargein-echo over an echo 15 dB down: the
 * echo the canceller let through 0.46-0.79; espeak-ng callers over the
 * echo whose pitch lag matched the agent's by chance (a female voice's
 * lag is often found at twice its period, where a male agent's is)
 * 0.07-0.28, now and then 0.56. On the 90 e2e phrases talking over the
 * echo, pitch alone made 15 confirmations later, by up to 350 ms; with
 * the waveform, 2, by 10 and 50 ms. */
static const double kEchoPitchMatch = 0.5;
static const double kEchoCoherence = 0.4;
/* ... and is not the caller's when the line's audio before the canceller
 * had no pitch (below this at any lag, in this frame and the one before):
 * a loud cough through AECM comes out with periodicities of 0.4-0.6 at a
 * different lag each frame, where the cough itself, with or without the
 * echo, stays at 0.2-0.35. A caller is pitched before the canceller as
 * after it (and on a line with a loud echo, so is the echo). */
static const double kRawPeriodicity = 0.3;

struct Biquad {
  double b0, b1, b2, a1, a2;
};
/* RBJ cookbook high-pass, Q 0.707 (2nd-order Butterworth) */
static Biquad highpass(double f, double rate) {
  const double w = 2 * M_PI * f / rate, alpha = std::sin(w) / (2 * M_SQRT1_2), c = std::cos(w), a0 = 1 + alpha;
  return {(1 + c) / 2 / a0, -(1 + c) / a0, (1 + c) / 2 / a0, -2 * c / a0, (1 - alpha) / a0};
}
static const Biquad kHighPass = highpass(kHighPassHz, 8000);
static const unsigned kMaxCandidateMs = 1000;
/* quiet that ends a burst with some voicing in it (outside backchannel
 * mode): the gap between two words, as in "Stop, stop", does not end it */
static const unsigned kVoicedHangoverMs = 350;
static const unsigned kVoicedForHangoverMs = 40;

float Detector::PitchFilter::step(float v) {
  const Biquad &f = kHighPass;
  const double h = f.b0 * v + f.b1 * x1 + f.b2 * x2 - f.a1 * y1 - f.a2 * y2;
  x2 = x1;
  x1 = v;
  y2 = y1;
  y1 = h;
  const float out = static_cast<float>(h - kPreEmphasis * prev);
  prev = static_cast<float>(h);
  return out;
}

void Detector::far_end(const int16_t *far8k, const int16_t *raw, unsigned delay_frames) {
  if (!far_last_) {
    /* the first frame, or the first after frames without: what was kept
     * is not the audio right before this */
    far_pe_.clear();
    raw_pe_.clear();
    far_filter_ = PitchFilter();
    raw_filter_ = PitchFilter();
  }
  for (size_t i = 0; i < 80; i++)
    far_pe_.push_back(far_filter_.step(far8k[i]));
  const size_t step = rate_ >= 16000 ? 2 : 1;
  for (size_t i = 0; i + step <= frame_samples(); i += step)
    raw_pe_.push_back(raw_filter_.step(step == 2 ? 0.5f * (static_cast<float>(raw[i]) + raw[i + 1]) : raw[i]));
  if (raw_pe_.size() > kAnaKeep + 80)
    raw_pe_.erase(raw_pe_.begin(), raw_pe_.end() - static_cast<long>(kAnaKeep + 80));
  const size_t keep = kAnaKeep + (max_echo_delay_frames() + 1) * 80;
  if (far_pe_.size() > keep)
    far_pe_.erase(far_pe_.begin(), far_pe_.end() - static_cast<long>(keep));
  far_delay_ = std::min(delay_frames, max_echo_delay_frames() - 1);
  far_fresh_ = true;
}

/* the far end's periodicity at @lag (and a sample either side), on the
 * 20 ms that ended the line's delay ago (and a frame either side): how
 * well the agent's voice then explains a pitch at @lag now */
double Detector::far_match(size_t lag) const {
  double best = 0;
  for (unsigned d = far_delay_ ? far_delay_ - 1 : 0; d <= far_delay_ + 1; d++) {
    const size_t back = d * 80;
    if (far_pe_.size() < back + kAnaWin + lag + 1)
      continue;
    const size_t n = far_pe_.size() - back;
    for (size_t k = lag - 1; k <= lag + 1; k++)
      best = std::max(best, autocorrelation_at(far_pe_.data(), n, kAnaWin, k));
  }
  return best;
}

double Detector::far_coherence() const {
  if (pe_.size() < kAnaWin)
    return 0;
  const float *w = pe_.data() + pe_.size() - kAnaWin;
  double e0 = 0;
  for (size_t i = 0; i < kAnaWin; i++)
    e0 += static_cast<double>(w[i]) * w[i];
  double best = 0;
  const size_t center = far_delay_ * 80;
  for (size_t back = center > 80 ? center - 80 : 0; back <= center + 80; back++) {
    if (far_pe_.size() < back + kAnaWin)
      break;
    const float *f = far_pe_.data() + far_pe_.size() - back - kAnaWin;
    double c = 0, ef = 0;
    for (size_t i = 0; i < kAnaWin; i++) {
      c += static_cast<double>(w[i]) * f[i];
      ef += static_cast<double>(f[i]) * f[i];
    }
    if (e0 > 0 && ef > 0)
      best = std::max(best, std::fabs(c) / std::sqrt(e0 * ef));
    if (best >= kEchoCoherence)
      break; /* enough to tell */
  }
  return best;
}

Detector::Detector(int rate, const Params &params) : rate_(rate), p_(params) {
  vad_.reset(new Vad(rate, p_.vad_aggressiveness));
  if (!vad_->ok())
    vad_.reset();
}

Detector::~Detector() = default;

bool Detector::vad_is_webrtc() const { return vad_ != nullptr; }

Decision Detector::process(const int16_t *pcm, const std::function<AgentState()> &agent) {
  const size_t n = frame_samples();
  const unsigned frame_ms = 10;
  Decision d;
  const uint64_t start = pos_;
  pos_ += n;
  d.at = pos_;

  FrameInfo &fi = info_;
  fi.level_db = level_db(pcm, n);
  fi.dtmf = false;
  if (p_.ignore_dtmf && fi.level_db > p_.min_level_db) {
    double row, col;
    dtmf_parts(pcm, n, rate_, row, col);
    /* 80 % of the energy in one row and one column tone, twist under ~8 dB */
    if (row + col > 0.8 && row > 0.15 && col > 0.15)
      fi.dtmf = true;
  }
  if (fi.dtmf)
    dtmf_hold_ = 5; /* the tone's ragged end and a little more */
  else if (dtmf_hold_)
    dtmf_hold_--;
  fi.vad = vad_ ? vad_->voiced(pcm) : false;
  /* the pitch and tonality analysis runs at 8 kHz (a 16 kHz stream is
   * halved by averaging pairs: phone audio has nothing above 4 kHz, and an
   * empty upper band would make any sound look tonal to the predictor) */
  {
    const size_t step = rate_ >= 16000 ? 2 : 1;
    for (size_t i = 0; i + step <= n; i += step) {
      float v = step == 2 ? 0.5f * (static_cast<float>(pcm[i]) + pcm[i + 1]) : static_cast<float>(pcm[i]);
      ana_.push_back(v);
      pe_.push_back(pitch_filter_.step(v));
    }
    if (ana_.size() > kAnaKeep) {
      ana_.erase(ana_.begin(), ana_.end() - static_cast<long>(kAnaKeep));
      pe_.erase(pe_.begin(), pe_.end() - static_cast<long>(kAnaKeep));
    }
  }

  /* noise floor: follows drops at once, rises by at most 0.2 dB per frame
   * between bursts and 0.02 dB per frame within one (so steady line noise is
   * learnt in a second or two, and speech barely lifts it) */
  if (!have_floor_) {
    floor_db_ = fi.level_db;
    have_floor_ = true;
  } else if (fi.level_db < floor_db_) {
    floor_db_ = fi.level_db;
  } else {
    bool in_burst = state_ == State::Candidate || (state_ == State::Idle && loud_run_ > 0);
    double rise = in_burst ? 0.02 : 0.2;
    floor_db_ += std::min(fi.level_db - floor_db_, rise);
  }
  fi.floor_db = floor_db_;

  double threshold = std::max(floor_db_ + p_.snr_db, p_.min_level_db);
  if (state_ != State::Idle)
    threshold = std::max(threshold, echo_db_ - p_.echo_margin_db);
  if (ceiling_fresh_)
    threshold = std::max(threshold, ceiling_db_);
  ceiling_fresh_ = false;
  fi.loud = fi.level_db > threshold && !fi.dtmf && dtmf_hold_ == 0;
  /* pitch and tonality, for loud frames only (nothing else uses them) */
  fi.periodicity = 0;
  fi.prediction_gain_db = 0;
  fi.pitch_lag = 0;
  fi.far_periodicity = 0;
  fi.far_coherence = 0;
  fi.raw_periodicity = 0;
  fi.echo_voiced = false;
  if (fi.loud) {
    size_t lag = 0;
    fi.periodicity = best_autocorrelation(pe_.data(), pe_.size(), kAnaWin, 8000 / 400, 8000 / 60, &lag);
    fi.pitch_lag = static_cast<unsigned>(lag);
    if (ana_.size() >= kAnaWin)
      fi.prediction_gain_db = prediction_gain_db(ana_.data() + ana_.size() - kAnaWin, kAnaWin, kLpcOrder);
  }
  /* voiced speech: the VAD says speech, the sound has a pitch (noise
   * bursts, coughs and hiss don't, whatever the VAD thinks early on), and
   * it is not a few clean tones (see kTonalPeriodicity) */
  const bool pitched = fi.loud && (vad_ ? fi.vad : true) && fi.periodicity >= kMinPeriodicity;
  const bool tonal =
      pitched && fi.periodicity >= kTonalPeriodicity && fi.prediction_gain_db >= kTonalPredictionGainDb;
  /* On a line that echoes the agent (far_end() came for this frame) the
   * detector hears the canceller's output, and in double talk (a cough over
   * the agent's voice) that holds pitches that are not the caller's: the
   * agent's own voice, let through while the canceller is thrown by the
   * cough, and pitches the canceller's processing makes of the cough. A
   * pitched frame is the caller's only when it is neither the agent's
   * pitch and waveform at the line's delay, nor missing from the line's
   * audio before the canceller. */
  bool callers = true;
  if (pitched && far_fresh_) {
    fi.far_periodicity = far_match(fi.pitch_lag);
    if (fi.far_periodicity >= kEchoPitchMatch) {
      fi.far_coherence = far_coherence();
      fi.echo_voiced = fi.far_coherence >= kEchoCoherence;
    }
    if (!fi.echo_voiced) {
      /* this frame or the one before: the canceller's output lags its input
       * by up to a frame, and a falling voice moves its pitch meanwhile */
      for (size_t back = 0; back <= 80 && kAnaWin + 8000 / 60 + back <= raw_pe_.size(); back += 80)
        if (fi.raw_periodicity < kRawPeriodicity)
          fi.raw_periodicity = std::max(fi.raw_periodicity,
                                        best_autocorrelation(raw_pe_.data(), raw_pe_.size() - back, kAnaWin, 8000 / 400,
                                                             8000 / 60, nullptr, kRawPeriodicity));
    }
    const bool raw_known = raw_pe_.size() >= kAnaWin + 8000 / 60;
    callers = !fi.echo_voiced && (!raw_known || fi.raw_periodicity >= kRawPeriodicity);
  }
  far_last_ = far_fresh_;
  far_fresh_ = false;
  const bool voiced = pitched && !tonal && callers;

  switch (state_) {
  case State::Idle:
    if (!fi.loud) {
      loud_run_ = 0;
      break;
    }
    if (loud_run_++ == 0) {
      onset_ = start;
      voiced_ms_ = 0;
      tonal_ms_ = 0;
      loud_ms_ = 0;
      dtmf_in_burst_ = false;
    }
    loud_ms_ += frame_ms;
    if (voiced)
      voiced_ms_ += frame_ms;
    if (tonal)
      tonal_ms_ += frame_ms;
    if (loud_run_ * frame_ms < p_.onset_ms)
      break;
    {
      AgentState a = agent ? agent() : AgentState();
      echo_db_ = a.level_db;
      quiet_ms_ = 0;
      loud_run_ = 0;
      if (!a.speaking) {
        state_ = State::Ignored;
        break;
      }
      /* the onset frames were judged without the echo guard: judge again */
      if (fi.level_db <= echo_db_ - p_.echo_margin_db) {
        state_ = State::Idle;
        break;
      }
      state_ = State::Candidate;
      candidate_ms_ = 0;
      d.action = Action::Pause;
      d.onset = onset_;
      d.voiced_ms = voiced_ms_;
      d.sound_ms = loud_ms_;
      d.tonal_ms = tonal_ms_;
      d.reason = "onset";
    }
    break;
  case State::Candidate: {
    candidate_ms_ += frame_ms;
    if (fi.dtmf)
      dtmf_in_burst_ = true;
    if (fi.loud)
      loud_ms_ += frame_ms;
    if (voiced)
      voiced_ms_ += frame_ms;
    if (tonal)
      tonal_ms_ += frame_ms;
    quiet_ms_ = fi.loud ? 0 : quiet_ms_ + frame_ms;
    unsigned needed = p_.backchannel ? std::max(p_.min_speech_ms, p_.backchannel_max_ms + frame_ms) : p_.min_speech_ms;
    d.onset = onset_;
    d.voiced_ms = voiced_ms_;
    d.sound_ms = loud_ms_;
    d.tonal_ms = tonal_ms_;
    /* speech: that much sound, at least half of it voiced ("stop" is a short
     * vowel between unvoiced consonants; a cough has no voicing at all), and
     * not mostly clean tones (music) */
    const bool speech_like = voiced_ms_ * 2 >= needed && tonal_ms_ < voiced_ms_;
    if (speech_like && loud_ms_ >= needed) {
      state_ = State::Confirmed;
      d.action = Action::Confirm;
      d.reason = "speech";
    } else if (speech_like && !p_.backchannel && !dtmf_in_burst_ && quiet_ms_ >= p_.hangover_ms) {
      /* a short word that ended before min_speech_ms of sound (a quiet
       * "Stop." can be a 150 ms vowel between consonants under the
       * threshold): judged on the whole burst, once it has ended. Not a
       * burst with a key tone in it: the tone's ragged edges, over the
       * agent's echo, can look voiced */
      state_ = State::Confirmed;
      d.action = Action::Confirm;
      d.reason = "speech";
    } else if (candidate_ms_ >= std::max(3 * needed, kMaxCandidateMs)) {
      /* loud for long but without a pitch: a change of line noise, not a
       * caller; wait for a quiet gap (the floor meanwhile learns it) */
      state_ = State::Ignored;
      d.action = Action::Resume;
      d.reason = "not-speech";
    } else if (quiet_ms_ >= (!p_.backchannel && voiced_ms_ >= kVoicedForHangoverMs
                                 ? std::max(p_.hangover_ms, kVoicedHangoverMs)
                                 : p_.hangover_ms)) {
      state_ = State::Idle;
      d.action = Action::Resume;
      if (fi.dtmf || dtmf_hold_)
        d.reason = "dtmf";
      else if (p_.backchannel && loud_ms_ >= p_.min_speech_ms && voiced_ms_ * 2 >= p_.min_speech_ms)
        d.reason = "backchannel";
      else
        d.reason = "too-short";
    }
    break;
  }
  case State::Confirmed:
  case State::Ignored:
    /* the caller's turn goes on across the gaps between words: a new burst
     * (and a new question to downstream) only after a real pause */
    quiet_ms_ = fi.loud ? 0 : quiet_ms_ + frame_ms;
    if (quiet_ms_ >= std::max(p_.hangover_ms, kTurnGapMs))
      state_ = State::Idle;
    break;
  }
  return d;
}

} // namespace bargein
