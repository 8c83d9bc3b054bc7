/* gst-phone-agent: one Realtime WebSocket session of the local model
 * (internal to the engine; runs on the engine's thread). */
#pragma once

#include <libsoup/soup.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "local-agent.h"
#include "local-engine.h"
#include "local-tts.h"

namespace pa::local {

struct Stats {
  std::atomic<uint64_t> sessions_total{0}, sessions_active{0}, events_received{0}, events_sent{0},
      errors_sent{0}, malformed_json{0}, unknown_events{0}, binary_frames{0}, turns{0}, commits{0},
      transcriptions{0}, transcription_ms{0}, responses{0}, responses_cancelled{0}, tool_calls{0},
      audio_in_ms{0}, audio_out_ms{0}, synthesis_ms{0}, truncations{0};
};

/* A streaming transcription bound to one decoder: audio is decoded while
 * the caller speaks. Destroying an unfinished stream abandons it. */
class SttStream {
public:
  virtual ~SttStream() = default;
  virtual void feed(std::vector<int16_t> pcm16k) = 0;
  /* @done runs on the engine thread; decode_ms is the time spent after the
   * end of the turn (finishing the utterance). */
  virtual void finish(std::function<void(std::string text, double decode_ms)> done) = 0;
};

/* What a session needs from the engine. Callbacks of the async helpers run
 * on the engine thread. */
struct Services {
  EngineConfig config;
  std::shared_ptr<const Agent> agent;
  Stats stats;
  GMainContext *context = nullptr;
  /* canned mode: the pre-rendered reply in both output formats */
  std::vector<uint8_t> canned_pcmu;
  std::vector<int16_t> canned_pcm24;
  std::string canned_text;
  std::vector<std::pair<size_t, double>> canned_words;

  /* one utterance in a batch */
  std::function<void(std::vector<int16_t> pcm16k, std::function<void(std::string text, double decode_ms)> done)>
      transcribe;
  /* a stream on a free decoder, or nullptr when all are streaming */
  std::function<std::unique_ptr<SttStream>()> open_stream;
  std::function<void(std::string text, std::string voice, int rate, int wpm,
                     std::function<void(bool ok, Speech speech, std::string error)> done)>
      synthesize;
};

enum class Dialect { GA, Beta };

class Session {
public:
  Session(Services &svc, SoupWebsocketConnection *ws, Dialect dialect, std::string model);
  ~Session();
  Session(const Session &) = delete;
  Session &operator=(const Session &) = delete;

  /* Sends session.created. */
  void start();
  /* Closes the socket (the engine then destroys the session). */
  void close(gushort code, const char *reason);
  SoupWebsocketConnection *websocket() const { return ws_; }

  struct Impl;

private:
  std::unique_ptr<Impl> impl_;
  SoupWebsocketConnection *ws_;
};

} // namespace pa::local
