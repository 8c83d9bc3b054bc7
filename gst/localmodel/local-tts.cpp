/* gst-phone-agent: espeak-ng synthesis to memory */
#include "local-tts.h"

#include <espeak-ng/speak_lib.h>
#include <glib.h>

#include <cstring>
#include <mutex>

#include "pa-audio.h"

namespace pa::local {

namespace {

std::mutex g_espeak_lock;
int g_espeak_rate = 0; /* 0: not initialized; <0: failed */

struct Collector {
  std::vector<int16_t> pcm;
  std::vector<std::pair<int, int>> word_events; /* (character position, 1-based; audio ms) */
};

int synth_callback(short *wav, int numsamples, espeak_EVENT *events) {
  Collector *c = nullptr;
  for (espeak_EVENT *e = events; e && e->type != espeakEVENT_LIST_TERMINATED; e++) {
    c = static_cast<Collector *>(e->user_data);
    if (c && e->type == espeakEVENT_WORD)
      c->word_events.emplace_back(e->text_position, e->audio_position);
  }
  if (!c && events)
    c = static_cast<Collector *>(events->user_data);
  if (c && wav && numsamples > 0)
    c->pcm.insert(c->pcm.end(), wav, wav + numsamples);
  return 0;
}

/* Called with the lock held. */
bool ensure_init(std::string &error) {
  if (g_espeak_rate == 0) {
    int rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, nullptr, espeakINITIALIZE_DONT_EXIT);
    g_espeak_rate = rate > 0 ? rate : -1;
    if (rate > 0)
      espeak_SetSynthCallback(synth_callback);
  }
  if (g_espeak_rate < 0) {
    error = "espeak-ng failed to initialize (is espeak-ng-data installed?)";
    return false;
  }
  return true;
}

std::vector<size_t> word_starts(const std::string &text) {
  std::vector<size_t> starts;
  bool in_word = false;
  for (size_t i = 0; i < text.size(); i++) {
    bool space = g_ascii_isspace(text[i]);
    if (!space && !in_word)
      starts.push_back(i);
    in_word = !space;
  }
  return starts;
}

} // namespace

bool tts_check_voice(const std::string &voice, std::string &error) {
  std::lock_guard<std::mutex> lock(g_espeak_lock);
  if (!ensure_init(error))
    return false;
  if (espeak_SetVoiceByName(voice.c_str()) != EE_OK) {
    error = "espeak-ng has no voice '" + voice + "' (see espeak-ng --voices)";
    return false;
  }
  return true;
}

bool tts_synthesize(const std::string &text, const std::string &voice, int out_rate, Speech &out,
                    std::string &error, int wpm) {
  Collector c;
  int rate = 0;
  {
    std::lock_guard<std::mutex> lock(g_espeak_lock);
    if (!ensure_init(error))
      return false;
    if (espeak_SetVoiceByName(voice.c_str()) != EE_OK) {
      error = "espeak-ng has no voice '" + voice + "'";
      return false;
    }
    espeak_SetParameter(espeakRATE, wpm > 0 ? wpm : espeakRATE_NORMAL, 0);
    espeak_ERROR r = espeak_Synth(text.c_str(), text.size() + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, nullptr, &c);
    if (r != EE_OK) {
      error = "espeak-ng failed to synthesize";
      return false;
    }
    rate = g_espeak_rate;
  }
  out.rate = out_rate;
  out.pcm = resample_to_mono(c.pcm, rate, 1, out_rate);

  /* Map espeak's word events (character positions) onto our whitespace
   * words, so transcript deltas can follow the audio. */
  std::vector<std::pair<size_t, double>> events; /* (byte offset, ms) */
  for (auto &[chars, ms] : c.word_events) {
    if (chars < 1)
      continue;
    glong len = g_utf8_strlen(text.c_str(), static_cast<gssize>(text.size()));
    glong idx = std::min<glong>(chars - 1, len);
    const char *p = g_utf8_offset_to_pointer(text.c_str(), idx);
    events.emplace_back(static_cast<size_t>(p - text.c_str()), static_cast<double>(ms));
  }
  out.words.clear();
  size_t e = 0;
  double t = 0;
  for (size_t begin : word_starts(text)) {
    while (e < events.size() && events[e].first <= begin) {
      t = std::max(t, events[e].second);
      e++;
    }
    out.words.push_back({begin, t});
  }
  return true;
}

} // namespace pa::local
