/* twilio-emulator: synthetic caller audio */
#include "synth.h"

#include <algorithm>
#include <cmath>

#include "pa-audio.h"

namespace emu {

std::vector<uint8_t> synth_caller_mulaw(int64_t ms) {
  constexpr int kRate = pa::kMulawRate;
  constexpr int64_t kLead = 500, kSpeech = 1200, kPause = 1300;
  const size_t n = static_cast<size_t>(ms < 0 ? 0 : ms) * kRate / 1000;
  std::vector<int16_t> pcm(n, 0);
  for (size_t i = 0; i < n; i++) {
    double t = static_cast<double>(i) / kRate;
    int64_t t_ms = static_cast<int64_t>(i) * 1000 / kRate;
    if (t_ms < kLead)
      continue;
    int64_t in_cycle = (t_ms - kLead) % (kSpeech + kPause);
    if (in_cycle >= kSpeech)
      continue;
    double u = static_cast<double>(in_cycle) / kSpeech; /* 0..1 over the utterance */
    double envelope = std::sin(M_PI * u) * (0.55 + 0.45 * std::sin(2 * M_PI * 4.0 * t));
    double v = 0;
    for (int h = 1; h <= 8; h++)
      v += std::sin(2 * M_PI * 140.0 * h * t) / h;
    pcm[i] = static_cast<int16_t>(std::lround(v * envelope * 4500.0));
  }
  std::vector<uint8_t> out(n);
  pa::mulaw_encode_block(pcm.data(), out.data(), n);
  return out;
}

void mix_echo_mulaw(const uint8_t *caller, const uint8_t *heard, double gain, uint8_t *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double v = pa::mulaw_decode(caller[i]) + gain * pa::mulaw_decode(heard[i]);
    v = std::max(-32768.0, std::min(32767.0, v));
    int16_t s = static_cast<int16_t>(std::lround(v));
    pa::mulaw_encode_block(&s, &out[i], 1);
  }
}

int64_t echo_source_frame(int64_t timestamp_ms, int64_t delay_ms, int64_t played, int64_t slots) {
  int64_t k = timestamp_ms / 20 - delay_ms / 20;
  return k >= 0 && k < played && k >= played - slots ? k : -1;
}

} // namespace emu
