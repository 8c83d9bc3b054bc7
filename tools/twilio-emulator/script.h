/* twilio-emulator: what the caller side sends, prepared once and shared by
 * every call of a run.
 *
 * Timeline (all calls): zero is the stream start, the first shared tick after
 * the WebSocket opened. `connected` and `start` go at 0; media frame j
 * (timestamp 20*j ms, 160 bytes) goes at (j+1)*20 ms, once its 20 ms of
 * audio would have been captured, as Twilio does; dtmf and injections at
 * their ms; `stop` one tick after the last frame (or at --hangup-ms).
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "options.h"
#include "specs.h"
#include "turns.h"

namespace emu {

enum class CallerEventKind { Connected, Start, Media, Dtmf, Inject, Stop };

struct CallerEvent {
  int64_t t_us = 0; /* when to send, from stream start */
  CallerEventKind kind = CallerEventKind::Media;
  /* media: bytes in Script::audio, and the fields Twilio puts in the message */
  size_t offset = 0, len = 0;
  int64_t chunk = 0, timestamp_ms = 0;
  std::string digit;                          /* dtmf */
  InjectKind inject = InjectKind::MalformedJson; /* inject */
};

struct Script {
  std::string source;               /* "file.wav", "synth:20000" or "replay file.jsonl" */
  std::vector<uint8_t> audio;       /* μ-law bytes the media events point into */
  std::vector<CallerEvent> events;  /* sorted by time */
  size_t media_frames = 0;
  int64_t end_us = 0;               /* time of `stop` */
  /* Analysis of what the server receives (silence gaps are silent). */
  std::vector<float> caller_level_db; /* one per 20 ms frame from 0 */
  std::vector<Turn> turns;
};

/* Builds the script from μ-law 8 kHz audio and the run's options. */
Script make_audio_script(std::vector<uint8_t> mulaw, const Options &opt);

/* Builds the script from a capture file (what Twilio sent in one call). */
bool make_replay_script(const Options &opt, Script &out, std::string &error);

/* Loads --audio (a WAV file or synth:MS) into μ-law 8 kHz. */
bool load_caller_audio(const std::string &spec, std::vector<uint8_t> &out, std::string &error);

} // namespace emu
