/* gst-phone-agent: voice activity detection and turn taking for the local
 * model. The frame classifier is webrtc-audio-processing's VoiceDetection
 * (the WebRTC GMM VAD over 10 ms frames at 16 kHz) gated by an energy floor;
 * TurnDetector turns frame decisions into speech started / stopped with
 * OpenAI's server_vad parameters. */
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "local-engine.h"

namespace pa::local {

constexpr int kVadRate = 16000;
constexpr size_t kVadFrame = 160; /* 10 ms at 16 kHz */

class PA_LOCAL_API Vad {
public:
  /* @threshold as in server_vad (0..1): higher needs louder, clearer speech. */
  explicit Vad(double threshold = 0.5);
  ~Vad();
  Vad(const Vad &) = delete;
  Vad &operator=(const Vad &) = delete;

  void set_threshold(double threshold);
  /* One 10 ms frame (160 samples at 16 kHz): TRUE if it holds speech. */
  bool is_speech(const int16_t *frame);
  /* Level of the last frame, dBFS. */
  double last_level_db() const { return last_db_; }

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  double floor_db_ = -40.0;
  double last_db_ = -100.0;
};

struct TurnParams {
  double threshold = 0.5;
  int prefix_padding_ms = 300;
  int silence_duration_ms = 500;
  int min_speech_ms = 100;  /* voiced time (within 150 ms) before speech_started */
  int max_turn_ms = 30000;  /* a longer turn is cut (bounds transcription cost) */
};

struct TurnEvent {
  enum class Kind { Started, Stopped } kind;
  /* Absolute 16 kHz sample positions in the session's appended audio:
   * Started: where the turn's audio begins (includes prefix padding);
   * Stopped: the end of the turn's audio (includes the trailing silence). */
  uint64_t sample;
};

/* Feeds 16 kHz audio in any block size; reports turn boundaries. */
class PA_LOCAL_API TurnDetector {
public:
  explicit TurnDetector(TurnParams params = TurnParams());
  void set_params(const TurnParams &params);
  const TurnParams &params() const { return params_; }
  /* Appends the turn events the block completes. */
  void process(const int16_t *samples, size_t n, std::vector<TurnEvent> &events);
  /* Ends the current turn without an event (manual commit, clear). */
  void reset_turn();
  bool in_speech() const { return in_speech_; }
  /* Samples consumed so far (absolute position of the next sample). */
  uint64_t position() const { return pos_ + pending_.size(); }

private:
  void frame(const int16_t *f, std::vector<TurnEvent> &events);

  TurnParams params_;
  Vad vad_;
  std::vector<int16_t> pending_;
  uint64_t pos_ = 0;            /* absolute sample index of pending_[0] */
  std::vector<bool> window_;    /* last 15 frame decisions */
  size_t window_pos_ = 0;
  bool in_speech_ = false;
  uint64_t turn_start_ = 0;
  uint64_t last_voice_end_ = 0;
  int recent_voiced_ = 0;       /* voiced frames among the last 5 */
  std::vector<bool> recent_;
  size_t recent_pos_ = 0;
};

} // namespace pa::local
