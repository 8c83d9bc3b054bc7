/* twilio-emulator: turn detection by energy */
#include "turns.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "pa-audio.h"

namespace emu {

float mulaw_level_db(const uint8_t *mulaw, size_t n) {
  if (!n)
    return -120.0f;
  double sum = 0;
  int16_t pcm[256];
  for (size_t done = 0; done < n;) {
    size_t chunk = std::min(n - done, sizeof pcm / sizeof pcm[0]);
    pa::mulaw_decode_block(mulaw + done, pcm, chunk);
    for (size_t i = 0; i < chunk; i++)
      sum += static_cast<double>(pcm[i]) * pcm[i];
    done += chunk;
  }
  double rms = std::sqrt(sum / static_cast<double>(n));
  if (rms < 1.0)
    return -120.0f;
  return static_cast<float>(20.0 * std::log10(rms / 32768.0));
}

std::vector<Turn> detect_turns(const std::vector<float> &level_db, const TurnParams &p) {
  std::vector<Turn> turns;
  const int64_t end_frames = std::max<int64_t>(1, (p.end_silence_ms + p.frame_ms - 1) / p.frame_ms);
  const int64_t min_frames = std::max<int64_t>(1, (p.min_speech_ms + p.frame_ms - 1) / p.frame_ms);

  bool in_turn = false;
  int64_t onset = 0, last_speech = 0, speech_frames = 0;
  auto close_turn = [&](bool ended) {
    if (speech_frames >= min_frames)
      turns.push_back({onset * p.frame_ms, (last_speech + 1) * p.frame_ms, ended});
    in_turn = false;
  };
  const int64_t n = static_cast<int64_t>(level_db.size());
  for (int64_t k = 0; k < n; k++) {
    bool speech = level_db[static_cast<size_t>(k)] > p.threshold_db;
    if (speech) {
      if (!in_turn) {
        in_turn = true;
        onset = k;
        speech_frames = 0;
      }
      last_speech = k;
      speech_frames++;
    } else if (in_turn && k - last_speech >= end_frames) {
      close_turn(true);
    }
  }
  if (in_turn)
    close_turn(false);
  return turns;
}

std::vector<std::optional<int64_t>> response_latencies(const std::vector<Turn> &turns,
                                                       const std::vector<float> &heard_db,
                                                       const TurnParams &p) {
  std::vector<std::optional<int64_t>> out(turns.size());
  const int64_t n = static_cast<int64_t>(heard_db.size());
  for (size_t i = 0; i < turns.size(); i++) {
    if (!turns[i].ended)
      continue;
    int64_t limit_ms = i + 1 < turns.size() ? turns[i + 1].onset_ms : std::numeric_limits<int64_t>::max();
    int64_t first = (turns[i].end_ms + p.frame_ms - 1) / p.frame_ms;
    for (int64_t k = first; k < n && k * p.frame_ms < limit_ms; k++) {
      bool loud = heard_db[static_cast<size_t>(k)] > p.threshold_db;
      bool prev_loud = k > 0 && heard_db[static_cast<size_t>(k - 1)] > p.threshold_db;
      if (loud && !prev_loud) {
        out[i] = k * p.frame_ms - turns[i].end_ms;
        break;
      }
    }
  }
  return out;
}

std::optional<int64_t> latest_onset(const std::vector<Turn> &turns, int64_t t_ms) {
  std::optional<int64_t> best;
  for (const auto &t : turns)
    if (t.onset_ms <= t_ms)
      best = t.onset_ms;
  return best;
}

int latest_turn(const std::vector<Turn> &turns, int64_t t_ms) {
  int best = -1;
  for (size_t i = 0; i < turns.size(); i++)
    if (turns[i].onset_ms <= t_ms)
      best = static_cast<int>(i);
  return best;
}

std::optional<int64_t> last_audio_end_ms(const std::vector<uint8_t> &server_bytes, size_t frames, int64_t frame_ms) {
  for (size_t k = std::min(frames, server_bytes.size()); k > 0; k--)
    if (server_bytes[k - 1])
      return static_cast<int64_t>(k) * frame_ms;
  return std::nullopt;
}

double audio_ms_between(const std::vector<uint8_t> &server_bytes, size_t from_frame, int64_t until_ms,
                        int64_t frame_ms) {
  uint64_t bytes = 0;
  for (size_t k = from_frame; k < server_bytes.size() && static_cast<int64_t>(k) * frame_ms < until_ms; k++)
    bytes += server_bytes[k];
  return static_cast<double>(bytes) / 8.0;
}

} // namespace emu
