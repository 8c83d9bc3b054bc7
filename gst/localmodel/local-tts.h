/* gst-phone-agent: espeak-ng as the local model's voice. espeak-ng keeps
 * process-wide state, so every call here is serialized by one lock. */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "local-engine.h"

namespace pa::local {

struct Speech {
  int rate = 0;                /* sample rate of @pcm */
  std::vector<int16_t> pcm;    /* mono S16 */
  struct Word {
    size_t begin = 0;          /* byte offset of the word in the text */
    double start_ms = 0;       /* when it starts in @pcm */
  };
  std::vector<Word> words;     /* whitespace-separated words of the text, in order */
};

/* Checks that espeak-ng initializes and knows @voice (e.g. "en-us",
 * "en-us+f3", "en-gb"). */
PA_LOCAL_API bool tts_check_voice(const std::string &voice, std::string &error);

/* Synthesizes UTF-8 @text with @voice at @wpm words per minute (0: espeak's
 * default) and converts it to mono S16 at @out_rate with GStreamer's
 * resampler (espeak-ng renders at 22050 Hz). */
PA_LOCAL_API bool tts_synthesize(const std::string &text, const std::string &voice, int out_rate, Speech &out,
                                 std::string &error, int wpm = 0);

} // namespace pa::local
