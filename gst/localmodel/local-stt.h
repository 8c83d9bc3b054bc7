/* gst-phone-agent: pocketsphinx transcription for the local model.
 *
 * Each utterance is decoded in one batch (full-utterance cepstral mean
 * normalization), which is markedly more accurate on short phone turns than
 * the live mode. The general US English language model can be interpolated
 * with a small bigram model built from the agent's example phrases, which
 * biases recognition towards what the scripted agent understands. */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "local-engine.h"

namespace pa::local {

constexpr int kSttRate = 16000;

struct SttConfig {
  /* Directory with en-us/ (acoustic model), en-us.lm.bin, cmudict-en-us.dict.
   * Empty: $PA_POCKETSPHINX_MODEL, else Debian's /usr/share/pocketsphinx/model/en-us. */
  std::string model_dir;
  /* Sentences for the agent language model; empty: general model only. */
  std::vector<std::string> agent_sentences;
  /* Interpolation weight of the agent model (0..1); 0: general model only. */
  double agent_weight = 0.3;
};

/* The model directory that SttConfig would use, and whether it is complete. */
PA_LOCAL_API std::string stt_model_dir(const SttConfig &config);
PA_LOCAL_API bool stt_check_models(const SttConfig &config, std::string &error);

/* Lower-case words, apostrophes kept, everything else a separator. */
PA_LOCAL_API std::vector<std::string> normalize_words(const std::string &text);

/* An ARPA bigram model (absolute discounting, back-off to add-one unigrams)
 * of @sentences; empty string when there are none. */
PA_LOCAL_API std::string build_arpa(const std::vector<std::string> &sentences);

/* One pocketsphinx decoder. Not thread-safe: use from one thread at a time. */
class PA_LOCAL_API Recognizer {
public:
  static std::unique_ptr<Recognizer> create(const SttConfig &config, std::string &error);
  ~Recognizer();
  Recognizer(const Recognizer &) = delete;
  Recognizer &operator=(const Recognizer &) = delete;

  /* Decodes one utterance of mono S16 at 16 kHz in one batch (cepstral
   * mean over the whole utterance); lower-case words. */
  std::string transcribe(const int16_t *pcm, size_t n);

  /* Streaming decoding: the cepstral mean comes from earlier utterances
   * (live mode), so prime() the decoder with representative speech first. */
  void begin();
  void feed(const int16_t *pcm, size_t n);
  std::string partial();
  std::string end();
  /* Decodes @pcm in live mode and forgets the words: adapts the live
   * cepstral mean to the channel. */
  void prime(const int16_t *pcm, size_t n);
  /* prime() with a short espeak-ng sentence carried as 8 kHz μ-law, as the
   * engine does before its first stream. */
  void prime_phone_band();

  struct Impl;

private:
  Recognizer();
  std::unique_ptr<Impl> impl_;
};

/* G.711 μ-law at 8 kHz to S16 at 16 kHz (GStreamer's resampler). */
PA_LOCAL_API std::vector<int16_t> mulaw8k_to_16k(const uint8_t *mulaw, size_t n);

} // namespace pa::local
