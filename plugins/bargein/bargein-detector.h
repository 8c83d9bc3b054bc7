/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The barge-in decision, without GStreamer objects: 10 ms frames of the
 * caller's PCM in, pause / confirm / resume decisions out. bargein (the
 * element), its tests and bench/bargein use it. Not a GObject.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace bargein {

struct Params {
  unsigned min_speech_ms = 200;      /* speech needed to confirm (at least half of it voiced) */
  unsigned onset_ms = 20;            /* loud frames in a row before pausing */
  unsigned hangover_ms = 120;        /* quiet that ends a burst */
  double snr_db = 12.0;              /* above the tracked noise floor */
  double min_level_db = -50.0;       /* absolute floor (dBFS) */
  double echo_margin_db = 20.0;      /* below the agent's level: echo */
  int vad_aggressiveness = 2;        /* 0..3, webrtc VAD mode */
  bool ignore_dtmf = true;
  bool backchannel = false;          /* short voiced bursts don't interrupt */
  unsigned backchannel_max_ms = 700; /* voiced bursts up to this are backchannel */
};

enum class Action { None, Pause, Confirm, Resume };

/* What a frame led to. Times are sample offsets from the first sample fed
 * (the element turns them into running times). */
struct Decision {
  Action action = Action::None;
  uint64_t onset = 0;     /* first sample of the burst */
  uint64_t at = 0;        /* sample after the frame that decided */
  unsigned voiced_ms = 0; /* voiced speech in the burst so far */
  unsigned sound_ms = 0;  /* loud frames in the burst so far */
  unsigned tonal_ms = 0;  /* tonal (music-like) frames in the burst so far */
  const char *reason = "";
};

/* Per-frame analysis, exposed for tests and the benchmark. */
struct FrameInfo {
  double level_db = -100.0; /* RMS, dBFS (full-scale sine: -3 dB) */
  double floor_db = -100.0; /* tracked noise floor */
  bool dtmf = false;        /* dual-tone energy dominates */
  bool vad = false;         /* the VAD's verdict */
  double periodicity = 0;   /* best normalized autocorrelation at a pitch lag (60-400 Hz) of the
                               signal high-passed at 300 Hz and pre-emphasized, last 20 ms (loud
                               frames only, else 0) */
  double prediction_gain_db = 0; /* 10th-order linear prediction gain, last 20 ms: high for a few
                                    clean tones (loud frames only, else 0) */
  unsigned pitch_lag = 0;   /* the lag (samples at 8 kHz) of that periodicity (loud frames only) */
  /* with far_end() (a line that echoes; pitched frames only, else 0): */
  double far_periodicity = 0; /* the agent's periodicity at this frame's pitch lag, at the line's delay */
  double far_coherence = 0;   /* when that is high: how well this frame's waveform matches the agent's
                                 at the line's delay (best normalized cross-correlation; the search
                                 stops once it is enough to call the frame the agent's) */
  double raw_periodicity = 0; /* when not the agent's: the periodicity of the line's audio before the
                                 canceller (the search stops once it is enough) */
  bool echo_voiced = false;   /* pitched with the agent's pitch and waveform: the agent's echo */
  bool loud = false;        /* above floor + snr, min level and echo level, not DTMF */
};

/* Whether the agent is audible right now, asked at the start of each burst:
 * speaking is false only when downstream answered "nothing is playing";
 * level_db is the agent's recent level when known (echo guard), else
 * below -99. */
struct AgentState {
  bool speaking = true;
  double level_db = -100.0;
};

class Vad; /* webrtc-audio-processing's VoiceDetection */

class Detector {
public:
  /* @rate: 8000 or 16000 */
  Detector(int rate, const Params &params);
  ~Detector();
  Detector(const Detector &) = delete;
  Detector &operator=(const Detector &) = delete;

  size_t frame_samples() const { return static_cast<size_t>(rate_ / 100); }
  /* one frame of frame_samples() samples */
  Decision process(const int16_t *pcm, const std::function<AgentState()> &agent);
  /* On a line that echoes the agent, where @pcm of process() is an echo
   * canceller's output, before process() of the same 10 ms: what the
   * caller heard of the agent then (80 samples at 8 kHz), the line's audio
   * before the canceller (frame_samples()), and the line's delay in frames
   * (EchoPresence::lag(), up to max_echo_delay_frames()). A pitched frame
   * then counts as the caller's voice only when it is not the agent's
   * (its pitch and waveform at that delay) and the audio before the
   * canceller was pitched too. Frames without it are judged as before. */
  void far_end(const int16_t *far8k, const int16_t *raw, unsigned delay_frames);
  static constexpr unsigned max_echo_delay_frames() { return 31; }
  /* For the next process() only: sound at or below @db (dBFS) is the
   * agent's echo, in every state (an onset is not made of it either). */
  void echo_ceiling(double db) {
    ceiling_db_ = db;
    ceiling_fresh_ = true;
  }
  const FrameInfo &last() const { return info_; }
  bool vad_is_webrtc() const;
  /* the burst that paused is still open (a resume or confirm is owed) */
  bool paused() const { return state_ == State::Candidate; }
  uint64_t position() const { return pos_; }

private:
  enum class State { Idle, Candidate, Confirmed, Ignored };
  int rate_;
  Params p_;
  std::unique_ptr<Vad> vad_;
  std::vector<float> ana_, pe_; /* the last 40 ms at 8 kHz: as is, and high-passed and pre-emphasized */
  /* high-pass at 300 Hz, then pre-emphasis: what the pitch is taken on */
  struct PitchFilter {
    double x1 = 0, x2 = 0, y1 = 0, y2 = 0;
    float prev = 0;
    float step(float v);
  };
  PitchFilter pitch_filter_, far_filter_, raw_filter_;
  std::vector<float> raw_pe_; /* the line before the canceller, filtered as pe_: the last 50 ms */
  std::vector<float> far_pe_; /* the far end, filtered as pe_: the last 40 ms and the delay before them */
  unsigned far_delay_ = 0;
  bool far_fresh_ = false;    /* far_end() came for this frame */
  bool far_last_ = false;     /* ... and for the frame before */
  double ceiling_db_ = -100.0; /* echo_ceiling() */
  bool ceiling_fresh_ = false; /* ... came for this frame */
  double far_match(size_t lag) const;
  double far_coherence() const;
  FrameInfo info_;
  State state_ = State::Idle;
  bool have_floor_ = false;
  double floor_db_ = -100.0;
  double echo_db_ = -100.0;
  unsigned loud_run_ = 0, quiet_ms_ = 0, candidate_ms_ = 0, loud_ms_ = 0, voiced_ms_ = 0, tonal_ms_ = 0, dtmf_hold_ = 0;
  bool dtmf_in_burst_ = false; /* a key tone came during the paused burst */
  uint64_t pos_ = 0, onset_ = 0;
};

/* Goertzel check on one frame: energy at the strongest DTMF row and column
 * frequencies over the frame's energy (1.0 for a clean dual tone). */
double dtmf_ratio(const int16_t *pcm, size_t n, int rate);
double level_db(const int16_t *pcm, size_t n);
/* voicing: the best normalized autocorrelation of the last @win samples of
 * @x (which holds at least @win + rate/60 samples) at lags of 60-400 Hz */
double periodicity(const int16_t *x, size_t n, size_t win, int rate);
/* tonality: the gain (dB) of an @order-th order (at most 32) linear
 * predictor on @n samples (at most 512; Hamming window, autocorrelation
 * method), capped at 40 dB */
double prediction_gain_db(const float *x, size_t n, int order);

} // namespace bargein
